//! Intrusive FIFO lists threaded through the slab by index.
//!
//! Each wheel slot, the ready list and the overflow list is a [`List`]: just a head and a tail
//! index. The links live in the entries themselves (`prev`/`next`), so linking and unlinking
//! allocate nothing and unlinking any entry is O(1).
//!
//! ```text
//!   List { head ─────────────────────────────┐      tail ──────────────┐ }
//!                                            v                         v
//!   slab: [ .. | Entry{prev: NIL, next: 7} | .. | Entry{prev: 3, next: NIL} | .. ]
//!                 index 3                          index 7
//! ```
//!
//! Invariant: an entry is in at most one list; its `list` field names that list; `prev`/`next`
//! are [`NIL`] exactly at the ends. Lists are FIFO: `push_back` appends, `pop_front` takes the
//! oldest, so moving a whole list entry by entry into other lists keeps relative order.

use super::entry::Entry;

/// The "no entry" link.
pub(super) const NIL: u32 = u32::MAX;

/// A FIFO list of slab entries, linked through their `prev`/`next` fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct List {
    head: u32,
    tail: u32,
}

impl List {
    pub(super) const EMPTY: List = List {
        head: NIL,
        tail: NIL,
    };

    pub(super) fn is_empty(&self) -> bool {
        self.head == NIL
    }

    /// Appends `idx`, which must be linked in no list.
    pub(super) fn push_back<T>(&mut self, entries: &mut [Entry<T>], idx: u32) {
        let tail = self.tail;
        {
            let entry = &mut entries[idx as usize];
            entry.prev = tail;
            entry.next = NIL;
        }
        if tail == NIL {
            self.head = idx;
        } else {
            entries[tail as usize].next = idx;
        }
        self.tail = idx;
    }

    /// Removes and returns the oldest entry, leaving its links cleared.
    pub(super) fn pop_front<T>(&mut self, entries: &mut [Entry<T>]) -> Option<u32> {
        if self.head == NIL {
            return None;
        }
        let idx = self.head;
        self.unlink(entries, idx);
        Some(idx)
    }

    /// Removes `idx`, which must be linked in this list, in O(1).
    pub(super) fn unlink<T>(&mut self, entries: &mut [Entry<T>], idx: u32) {
        let (prev, next) = {
            let entry = &mut entries[idx as usize];
            let links = (entry.prev, entry.next);
            entry.prev = NIL;
            entry.next = NIL;
            links
        };
        if prev == NIL {
            debug_assert_eq!(self.head, idx, "unlinked entry is not in this list");
            self.head = next;
        } else {
            entries[prev as usize].next = next;
        }
        if next == NIL {
            debug_assert_eq!(self.tail, idx, "unlinked entry is not in this list");
            self.tail = prev;
        } else {
            entries[next as usize].prev = prev;
        }
    }
}
