//! Slot queues: the FIFO of timers in one wheel slot (or the ready or overflow list), stored
//! as a vector of slab indices with tombstones.
//!
//! ```text
//!   items: [ 17 | NIL | 4 | 90 | NIL | 23 ]      NIL = cancelled or already popped
//!            ^head                               entry.pos = its index in `items`
//!   live = 4
//! ```
//!
//! Why a vector and not an intrusive linked list: a cascade walks a whole slot. Walking a
//! linked list is a chain of dependent loads, one cache miss after another; walking a vector
//! of indices issues independent loads the CPU overlaps. At one million timers this is the
//! difference between missing and meeting the throughput target (see BENCHMARKS.md). Cancel
//! stays O(1): the entry knows its position, and its cell becomes a tombstone.
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
    head: usize,
    live: usize,
}

impl SlotQueue {
    pub(super) const EMPTY: SlotQueue = SlotQueue {
        items: Vec::new(),
        head: 0,
        live: 0,
    };

    pub(super) fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// Heap bytes held (the whole capacity).
    pub(super) fn heap_bytes(&self) -> usize {
        self.items.capacity() * std::mem::size_of::<u32>()
    }

    /// Appends `idx` and records its position in the entry.
    pub(super) fn push<T>(&mut self, entries: &mut [Entry<T>], idx: u32) {
        entries[idx as usize].pos = self.items.len() as u32;
        self.items.push(idx);
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

    /// Removes and returns the oldest live entry.
    pub(super) fn pop_front<T>(&mut self, entries: &mut [Entry<T>]) -> Option<u32> {
        while let Some(&idx) = self.items.get(self.head) {
            self.head += 1;
            if idx != NIL {
                self.live -= 1;
                self.after_removal(entries);
                return Some(idx);
            }
        }
        self.clear();
        None
    }

    /// The live indices in order, for a cascade that moves them all.
    pub(super) fn live(&self) -> impl Iterator<Item = u32> + '_ {
        self.items
            .get(self.head..)
            .unwrap_or_default()
            .iter()
            .copied()
            .filter(|&idx| idx != NIL)
    }

    /// Empties the queue, keeping its capacity.
    pub(super) fn clear(&mut self) {
        self.items.clear();
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
                entries[idx as usize].pos = write as u32;
                write += 1;
            }
        }
        self.items.truncate(write);
        self.head = 0;
        debug_assert_eq!(write, self.live);
    }
}
