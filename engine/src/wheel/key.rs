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

impl TimerKey {
    /// A value no live key ever has (its index is the slab's "no entry" index): a stored
    /// [`to_bits`](Self::to_bits) can use it for "no timer".
    pub const NONE_BITS: u64 = u64::MAX;

    /// The key as one `u64` (generation in the high half, index in the low half), e.g. to keep
    /// it in an atomic. Never [`NONE_BITS`](Self::NONE_BITS).
    #[inline]
    pub fn to_bits(self) -> u64 {
        (u64::from(self.generation) << 32) | u64::from(self.index)
    }

    /// The key [`to_bits`](Self::to_bits) encoded, or `None` for
    /// [`NONE_BITS`](Self::NONE_BITS). Any other value is a key: one that names no live timer
    /// is stale, and every operation checks that.
    #[inline]
    pub fn from_bits(bits: u64) -> Option<TimerKey> {
        (bits != Self::NONE_BITS).then_some(TimerKey {
            index: bits as u32,
            generation: (bits >> 32) as u32,
        })
    }
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
