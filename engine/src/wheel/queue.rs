//! Slot queues: the FIFO of timers in one wheel slot (or the ready or overflow list), stored
//! as a vector of slab indices with tombstones, and beside it each timer's deadline.
//!
//! ```text
//!   items:     [ 17 | NIL | 4  | 90 | NIL | 23 ]    NIL = cancelled or already popped
//!   deadlines: [ d17|  -  | d4 | d90|  -  | d23]    a copy of the entry's deadline
//!                ^head                              entry.pos = its index in `items`
//!   live = 4
//! ```
//!
//! Why vectors and not an intrusive linked list: a cascade walks a whole slot. Walking a
//! linked list is a chain of dependent loads, one cache miss per timer; walking these vectors
//! is a sequential scan, and because the deadline travels with the index the cascade never
//! *reads* the timer's entry (it only stores its new position). At one million timers this
//! made the wheel 3 to 6 times faster (see BENCHMARKS.md). Cancel stays O(1): the entry knows
//! its position, and its cell becomes a tombstone.
//!
//! Invariants:
//! - every live index in `items[head..]` names an entry whose `pos` is its position here;
//! - `live` counts the non-tombstone cells in `items[head..]`; `live == 0` implies `items`
//!   is empty and `head == 0` (the vector is cleared, keeping its capacity);
//! - tombstones never outnumber live cells by more than [`SLACK`] plus `live` (a compaction
//!   restores this), so memory stays O(live timers) however many cancels happen;
//! - order is FIFO: `push` appends, compaction keeps relative order.

use super::entry::Entry;

/// The "no entry" index: a tombstone cell, or the end of the slab's free list.
pub(super) const NIL: u32 = u32::MAX;

/// Garbage cells (tombstones and the popped prefix) a queue tolerates before compacting.
const SLACK: usize = 64;

#[derive(Debug, Default)]
pub(super) struct SlotQueue {
    items: Vec<u32>,
    /// `deadlines[i]` is the deadline of `items[i]` (meaningless for a tombstone).
    deadlines: Vec<u64>,
    head: usize,
    live: usize,
}

impl SlotQueue {
    pub(super) const EMPTY: SlotQueue = SlotQueue {
        items: Vec::new(),
        deadlines: Vec::new(),
        head: 0,
        live: 0,
    };

    pub(super) fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// Heap bytes held (the whole capacity).
    pub(super) fn heap_bytes(&self) -> usize {
        self.items.capacity() * std::mem::size_of::<u32>()
            + self.deadlines.capacity() * std::mem::size_of::<u64>()
    }

    /// Appends `idx`, whose deadline is `deadline`, and records its position in the entry.
    pub(super) fn push<T>(&mut self, entries: &mut [Entry<T>], idx: u32, deadline: u64) {
        entries[idx as usize].pos = self.items.len() as u32;
        self.items.push(idx);
        self.deadlines.push(deadline);
        self.live += 1;
    }

    /// Removes the entry at `pos` (which must be live here) in O(1) amortised.
    pub(super) fn remove<T>(&mut self, entries: &mut [Entry<T>], pos: u32) {
        let cell = &mut self.items[pos as usize];
        debug_assert_ne!(*cell, NIL, "removing a tombstone");
        *cell = NIL;
        self.live -= 1;
        self.after_removal(entries);
    }

    /// Whether this queue holds entry `idx` at position `pos`.
    pub(super) fn holds(&self, pos: u32, idx: u32) -> bool {
        self.items.get(pos as usize) == Some(&idx)
    }

    /// The deadline of entry `idx` at position `pos`, if this queue holds it there.
    pub(super) fn deadline_of(&self, pos: u32, idx: u32) -> Option<u64> {
        if self.holds(pos, idx) {
            self.deadlines.get(pos as usize).copied()
        } else {
            None
        }
    }

    /// Removes and returns the oldest live entry and its deadline.
    pub(super) fn pop_front<T>(&mut self, entries: &mut [Entry<T>]) -> Option<(u32, u64)> {
        while let Some(&idx) = self.items.get(self.head) {
            let deadline = self.deadlines.get(self.head).copied().unwrap_or_default();
            self.head += 1;
            if idx != NIL {
                self.live -= 1;
                self.after_removal(entries);
                return Some((idx, deadline));
            }
        }
        self.clear();
        None
    }

    /// The live `(index, deadline)` pairs in order, for a cascade that moves them all.
    pub(super) fn live(&self) -> impl Iterator<Item = (u32, u64)> + '_ {
        let items = self.items.get(self.head..).unwrap_or_default();
        let deadlines = self.deadlines.get(self.head..).unwrap_or_default();
        items
            .iter()
            .copied()
            .zip(deadlines.iter().copied())
            .filter(|&(idx, _)| idx != NIL)
    }

    /// Empties the queue, keeping its capacity.
    pub(super) fn clear(&mut self) {
        self.items.clear();
        self.deadlines.clear();
        self.head = 0;
        self.live = 0;
    }

    fn after_removal<T>(&mut self, entries: &mut [Entry<T>]) {
        if self.live == 0 {
            self.clear();
            return;
        }
        let garbage = self.items.len() - self.live;
        if garbage > SLACK && garbage > self.live {
            self.compact(entries);
        }
    }

    /// Drops tombstones and the popped prefix, renumbering the moved entries' `pos`.
    fn compact<T>(&mut self, entries: &mut [Entry<T>]) {
        let mut write = 0;
        for read in self.head..self.items.len() {
            let idx = self.items[read];
            if idx != NIL {
                self.items[write] = idx;
                self.deadlines[write] = self.deadlines[read];
                entries[idx as usize].pos = write as u32;
                write += 1;
            }
        }
        self.items.truncate(write);
        self.deadlines.truncate(write);
        self.head = 0;
        debug_assert_eq!(write, self.live);
    }
}
