//! What the wheel hands out: a [`TimerKey`] on insert and an [`Expired`] timer on poll.

/// Names one timer in a [`TimerWheel`](super::TimerWheel): the index of its entry in the slab
/// plus the generation of that entry.
///
/// Invariant: a key is *live* from the `insert` that returned it until the timer is cancelled or
/// returned by `poll`. Every operation taking a key checks the generation, so a stale key (its
/// timer fired or was cancelled and the entry was reused) never reaches another timer; it is
/// simply unknown (`None`/`false`). Generations are 32-bit and wrap: a key kept across 2^32
/// reuses of the same entry could alias, which no realistic caller reaches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TimerKey {
    pub(super) index: u32,
    pub(super) generation: u32,
}

/// A timer returned by [`TimerWheel::poll`](super::TimerWheel::poll).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Expired<T> {
    /// The key `insert` returned; it is stale from now on.
    pub key: TimerKey,
    /// The deadline the timer was inserted with, in ticks. It is earlier than the tick the
    /// timer came out in only when the deadline was already past at insert time; callers
    /// measure lateness as `wheel.now() - deadline`.
    pub deadline: u64,
    /// The value the timer carried.
    pub value: T,
}
