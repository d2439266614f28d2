//! Slot queues: the FIFO of timers in one wheel slot (or the ready or overflow list), stored
//! as one vector of records, each a slab index with a copy of the timer's deadline.
//!
//! ```text
//!   records: [ 17,d17 | NIL | 4,d4 | 90,d90 | NIL | 23,d23 ]   NIL = cancelled or popped
//!              ^head                                          entry.pos = its index here
//!   live = 4
//! ```
//!
//! Why a vector and not an intrusive linked list: a cascade walks a whole slot. Walking a
//! linked list is a chain of dependent loads, one cache miss per timer; walking this vector
//! is a sequential scan, and because the deadline travels with the index the cascade never
//! *reads* the timer's entry (it only stores its new position). At one million timers this
//! made the wheel 3 to 6 times faster (see BENCHMARKS.md). Cancel stays O(1): the entry knows
//! its position, and its record becomes a tombstone.
//!
//! A record is 12 bytes: the deadline is split into two `u32` halves so that the record needs
//! only 4-byte alignment (a `(u32, u64)` pair would be padded to 16). One vector rather than
//! one of indices and one of deadlines: one capacity check per push and one stream per scan.
//!
//! Invariants:
//! - every live index in `records[head..]` names an entry whose `pos` is its position here;
//! - `live` counts the non-tombstone records in `records[head..]`; `live == 0` implies
//!   `records` is empty and `head == 0` (the vector is cleared, keeping its capacity);
//! - after a cancel, garbage (tombstones and the popped prefix) never outnumbers live records
//!   by more than [`SLACK`] plus `live` (a compaction restores this), so memory stays
//!   O(live timers) however many cancels happen; popping does not compact, but a push that
//!   would grow a vector at least half garbage compacts first, which bounds a queue that is
//!   popped and pushed forever (the ready queue) at no cost to a plain drain;
//! - order is FIFO: `push` appends, compaction keeps relative order.

use super::entry::Entry;

/// The "no entry" index: a tombstone cell, or the end of the slab's free list.
pub(super) const NIL: u32 = u32::MAX;

/// Garbage cells (tombstones and the popped prefix) a queue tolerates before compacting.
const SLACK: usize = 64;

/// One timer in a queue: its slab index (or [`NIL`]) and its deadline in two halves.
#[derive(Clone, Copy, Debug)]
struct Record {
    idx: u32,
    deadline_lo: u32,
    deadline_hi: u32,
}

impl Record {
    #[inline]
    fn new(idx: u32, deadline: u64) -> Self {
        Record {
            idx,
            deadline_lo: deadline as u32,
            deadline_hi: (deadline >> 32) as u32,
        }
    }

    #[inline]
    fn deadline(self) -> u64 {
        (u64::from(self.deadline_hi) << 32) | u64::from(self.deadline_lo)
    }
}

#[derive(Debug, Default)]
pub(super) struct SlotQueue {
    records: Vec<Record>,
    head: usize,
    live: usize,
}

impl SlotQueue {
    pub(super) const EMPTY: SlotQueue = SlotQueue {
        records: Vec::new(),
        head: 0,
        live: 0,
    };

    #[inline]
    pub(super) fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// Heap bytes held (the whole capacity).
    pub(super) fn heap_bytes(&self) -> usize {
        self.records.capacity() * std::mem::size_of::<Record>()
    }

    /// Appends `idx`, whose deadline is `deadline`, and returns its position (which the
    /// caller stores in the entry).
    #[inline]
    pub(super) fn push(&mut self, idx: u32, deadline: u64) -> u32 {
        let pos = self.records.len() as u32;
        self.records.push(Record::new(idx, deadline));
        self.live += 1;
        pos
    }

    /// Removes the entry at `pos` (which must be live here) in O(1) amortised.
    pub(super) fn remove<T>(&mut self, entries: &mut [Entry<T>], pos: u32) {
        let Some(record) = self.records.get_mut(pos as usize) else {
            debug_assert!(false, "removing past the end of a queue");
            return;
        };
        debug_assert_ne!(record.idx, NIL, "removing a tombstone");
        record.idx = NIL;
        self.live -= 1;
        if self.live == 0 {
            self.clear();
            return;
        }
        let garbage = self.records.len() - self.live;
        if garbage > SLACK && garbage > self.live {
            self.compact(entries);
        }
    }

    /// Whether this queue holds entry `idx` at position `pos`.
    #[inline]
    pub(super) fn holds(&self, pos: u32, idx: u32) -> bool {
        self.records.get(pos as usize).is_some_and(|r| r.idx == idx)
    }

    /// The deadline of entry `idx` at position `pos`, if this queue holds it there.
    pub(super) fn deadline_of(&self, pos: u32, idx: u32) -> Option<u64> {
        self.records
            .get(pos as usize)
            .filter(|r| r.idx == idx)
            .map(|r| r.deadline())
    }

    /// Whether a push would grow the vector although at least half of it is garbage (the
    /// popped prefix and tombstones): then [`compact`](Self::compact) first. This bounds a
    /// queue that is popped and pushed forever without ever emptying, at no cost to a drain.
    #[inline]
    pub(super) fn should_compact_before_push(&self) -> bool {
        let garbage = self.records.len() - self.live;
        self.records.len() == self.records.capacity() && garbage > SLACK && garbage >= self.live
    }

    /// Removes and returns the oldest live entry and its deadline.
    ///
    /// Popping never compacts: the popped prefix is skipped by `head` and the whole vector is
    /// cleared when the last live record goes, so a drain costs one read per record.
    #[inline]
    pub(super) fn pop_front(&mut self) -> Option<(u32, u64)> {
        while let Some(&record) = self.records.get(self.head) {
            self.head += 1;
            if record.idx != NIL {
                self.live -= 1;
                if self.live == 0 {
                    self.clear();
                }
                return Some((record.idx, record.deadline()));
            }
        }
        self.clear();
        None
    }

    /// The live `(index, deadline)` pairs in order, for a cascade that moves them all.
    #[inline]
    pub(super) fn live(&self) -> impl Iterator<Item = (u32, u64)> + '_ {
        self.records
            .get(self.head..)
            .unwrap_or_default()
            .iter()
            .filter(|r| r.idx != NIL)
            .map(|r| (r.idx, r.deadline()))
    }

    /// Empties the queue, keeping its capacity.
    #[inline]
    pub(super) fn clear(&mut self) {
        self.records.clear();
        self.head = 0;
        self.live = 0;
    }

    /// Drops tombstones and the popped prefix, renumbering the moved entries' `pos`.
    pub(super) fn compact<T>(&mut self, entries: &mut [Entry<T>]) {
        let mut write = 0;
        for read in self.head..self.records.len() {
            let record = self.records[read];
            if record.idx != NIL {
                self.records[write] = record;
                entries[record.idx as usize].pos = write as u32;
                write += 1;
            }
        }
        self.records.truncate(write);
        self.head = 0;
        debug_assert_eq!(write, self.live);
    }
}
