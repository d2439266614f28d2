//! One level of the wheel: 64 slots, an occupancy bitmap, and each slot's earliest deadline.
//!
//! ```text
//!   occupied: u64   bit s set  <=>  slots[s] is non-empty
//!   slots[64]:      FIFO queue of (slab index, deadline) per slot
//!   earliest[64]:   lower bound of the deadlines in slots[s] (u64::MAX when empty)
//! ```
//!
//! Level `k` slots are `2^(6k)` ticks wide; slot `s` of level `k` holds deadlines whose bits
//! `6k..6k+6` equal `s`. Which level a deadline goes to is [`level_for`].
//!
//! Invariants:
//! - bit `s` of `occupied` is set exactly when `slots[s]` is non-empty;
//! - `earliest[s]` is never later than the earliest deadline in `slots[s]`; it equals it
//!   unless that timer was cancelled while others stayed in the slot (a cancel does not rescan
//!   the slot, to stay O(1)).

use super::entry::Entry;
use super::queue::SlotQueue;
use super::{LEVELS, SLOTS, SLOT_BITS};

/// Bits of `elapsed ^ deadline` below this mask never change the level: they index level 0.
const SLOT_MASK: u64 = (SLOTS as u64) - 1;

/// The level a timer with `deadline` belongs to when the wheel stands at `elapsed`, or `None`
/// when it is beyond the levels' range and must be parked in the overflow list.
///
/// The level is the index of the highest bit in which `elapsed` and `deadline` differ, divided
/// by [`SLOT_BITS`]: level `k` holds deadlines in the same level-`k+1` slot as `elapsed` but
/// in a later level-`k` slot. So a timer is never in the slot `elapsed` is in, slots never wrap
/// around, and lower levels always fire before higher ones. Requires `deadline > elapsed`.
#[inline]
pub(super) fn level_for(elapsed: u64, deadline: u64) -> Option<usize> {
    debug_assert!(deadline > elapsed);
    let masked = (elapsed ^ deadline) | SLOT_MASK;
    let significant = 63 - masked.leading_zeros();
    let level = (significant / SLOT_BITS) as usize;
    (level < LEVELS).then_some(level)
}

/// The slot of `deadline` in `level`.
#[inline]
pub(super) fn slot_for(deadline: u64, level: usize) -> usize {
    ((deadline >> (level as u32 * SLOT_BITS)) & SLOT_MASK) as usize
}

/// The first tick of slot `slot` of `level`, in the rotation of that level `elapsed` is in.
#[inline]
pub(super) fn slot_start(elapsed: u64, level: usize, slot: usize) -> u64 {
    let slot_bits = level as u32 * SLOT_BITS;
    let rotation_bits = slot_bits + SLOT_BITS;
    let rotation_start = if rotation_bits >= u64::BITS {
        0
    } else {
        (elapsed >> rotation_bits) << rotation_bits
    };
    rotation_start | ((slot as u64) << slot_bits)
}

#[derive(Debug)]
pub(super) struct Level {
    occupied: u64,
    slots: [SlotQueue; SLOTS],
    earliest: [u64; SLOTS],
}

impl Level {
    pub(super) const EMPTY: Level = Level {
        occupied: 0,
        slots: [SlotQueue::EMPTY; SLOTS],
        earliest: [u64::MAX; SLOTS],
    };

    pub(super) fn occupied(&self) -> u64 {
        self.occupied
    }

    /// The lowest occupied slot. Since a timer is never in the slot the wheel stands in, this
    /// is also the next slot to expire.
    pub(super) fn next_slot(&self) -> Option<usize> {
        (self.occupied != 0).then(|| self.occupied.trailing_zeros() as usize)
    }

    /// The lower bound of the deadlines in `slot`.
    pub(super) fn earliest(&self, slot: usize) -> u64 {
        self.earliest[slot]
    }

    pub(super) fn queue(&self, slot: usize) -> &SlotQueue {
        &self.slots[slot]
    }

    /// Heap bytes held by the slot queues.
    pub(super) fn heap_bytes(&self) -> usize {
        self.slots.iter().map(SlotQueue::heap_bytes).sum()
    }

    /// Appends `idx` with `deadline` to `slot` and returns its position there.
    #[inline]
    pub(super) fn push(&mut self, slot: usize, idx: u32, deadline: u64) -> u32 {
        self.occupied |= 1 << slot;
        let earliest = &mut self.earliest[slot];
        *earliest = (*earliest).min(deadline);
        self.slots[slot].push(idx, deadline)
    }

    /// Removes the entry at `pos` of `slot`.
    pub(super) fn remove<T>(&mut self, slot: usize, entries: &mut [Entry<T>], pos: u32) {
        let queue = &mut self.slots[slot];
        queue.remove(entries, pos);
        if queue.is_empty() {
            self.occupied &= !(1 << slot);
            self.earliest[slot] = u64::MAX;
        }
    }

    /// Detaches the whole of `slot`, leaving `replacement` (an empty queue) in its place.
    pub(super) fn take(&mut self, slot: usize, replacement: SlotQueue) -> SlotQueue {
        debug_assert!(replacement.is_empty());
        self.occupied &= !(1 << slot);
        self.earliest[slot] = u64::MAX;
        std::mem::replace(&mut self.slots[slot], replacement)
    }
}
