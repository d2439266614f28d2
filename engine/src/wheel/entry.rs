//! One timer's storage in the slab.

use super::list::NIL;

/// Which list an entry is linked in; [`ListId::Vacant`] for a free slab entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum ListId {
    /// Free: `value` is `None` and `next` links the slab's free list.
    Vacant,
    /// Due at the wheel's current tick, waiting to be returned by `poll`.
    Ready,
    /// Too far ahead for the levels; parked until its epoch comes into range.
    Overflow,
    /// In slot `slot` (0..64) of level `level` (0..6).
    Slot { level: u8, slot: u8 },
}

/// A slab entry: a live timer or a free cell.
///
/// Invariant: `value.is_some()` exactly when `list != ListId::Vacant`. `generation` changes each
/// time the entry is freed, which is what makes old [`TimerKey`](super::TimerKey)s stale.
#[derive(Debug)]
pub(super) struct Entry<T> {
    pub(super) value: Option<T>,
    /// The deadline as inserted, in ticks (never clamped).
    pub(super) deadline: u64,
    pub(super) prev: u32,
    pub(super) next: u32,
    pub(super) generation: u32,
    pub(super) list: ListId,
}

impl<T> Entry<T> {
    pub(super) fn vacant(next_free: u32) -> Self {
        Entry {
            value: None,
            deadline: 0,
            prev: NIL,
            next: next_free,
            generation: 0,
            list: ListId::Vacant,
        }
    }
}
