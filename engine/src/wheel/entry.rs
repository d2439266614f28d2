//! One timer's storage in the slab.

/// Which queue an entry is in; [`ListId::Vacant`] for a free slab entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum ListId {
    /// Free: `value` is `None` and `pos` links the slab's free list.
    Vacant,
    /// Inserted already due; in the ready queue.
    Ready,
    /// Too far ahead for the levels; parked until its epoch comes into range.
    Overflow,
    /// In slot `slot` (0..64) of level `level` (0..6). A level-0 slot becomes the ready queue
    /// wholesale when the wheel reaches it, without touching its entries: a level-0 entry
    /// that its slot's queue does not hold at `pos` is therefore in the ready queue.
    Slot { level: u8, slot: u8 },
}

/// A slab entry: a live timer or a free cell. The timer's deadline is not here but beside its
/// index in its queue, where cascades read it without touching the entry.
///
/// Invariant: `value.is_some()` exactly when `list != ListId::Vacant`. `generation` changes each
/// time the entry is freed, which is what makes old [`TimerKey`](super::TimerKey)s stale.
#[derive(Debug)]
pub(super) struct Entry<T> {
    pub(super) value: Option<T>,
    /// Position in its queue; for a vacant entry, the next free entry (or
    /// [`NIL`](super::queue::NIL)).
    pub(super) pos: u32,
    pub(super) generation: u32,
    pub(super) list: ListId,
}

impl<T> Entry<T> {
    pub(super) fn vacant(next_free: u32) -> Self {
        Entry {
            value: None,
            pos: next_free,
            generation: 0,
            list: ListId::Vacant,
        }
    }
}
