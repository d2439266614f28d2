//! A hierarchical timing wheel: O(1) insert, O(1) cancel (amortised), timers fire in exactly
//! the tick they are due, in insertion order within a tick.
//!
//! The design follows Varghese & Lauck, "Hashed and Hierarchical Timing Wheels: Data
//! Structures for the Efficient Implementation of a Timer Facility" (SOSP 1987), as refined by
//! tokio's `runtime/time/wheel` (bitmap levels, XOR level selection) and Kafka's purgatory.
//!
//! The wheel reads no clock. It sees only `u64` *ticks*; ferrojob's drivers use one tick per
//! millisecond and round deadlines up, so "fires in tick `d`" means "not before `d` ms".
//!
//! # Levels
//!
//! [`LEVELS`] levels of [`SLOTS`] slots each. A slot of level `k` is `SLOTS^k` ticks wide, so a
//! level spans `SLOTS^(k+1)` ticks and the levels together [`RANGE`] = `2^(6*6)` ticks:
//!
//! | level | slot width (ticks = ms)      | level span                   |
//! |------:|------------------------------|------------------------------|
//! | 0     | 1 ms                         | 64 ms                        |
//! | 1     | 64 ms                        | 4.096 s                      |
//! | 2     | 4.096 s                      | 262.144 s (≈ 4 min 22 s)     |
//! | 3     | 262.144 s (≈ 4 min 22 s)     | 16 777.216 s (≈ 4 h 40 min)  |
//! | 4     | ≈ 4 h 40 min                 | 1 073 741.824 s (≈ 12.4 d)   |
//! | 5     | ≈ 12.4 d                     | 68 719 476.736 s (≈ 2.18 y)  |
//!
//! A timer goes to the level given by the highest bit in which the current tick and its
//! deadline differ (`level = bit / 6`); see `level::level_for`. When that bit is 36 or above
//! (roughly: more than 2.18 years ahead, or across a 2^36-tick *epoch* boundary) the timer is
//! parked in the *overflow* queue and re-placed when the wheel reaches its epoch.
//!
//! ```text
//!             now = 0b 000000 000011 000001 000010 000000 000101   (levels 5..0)
//!   deadline      = 0b 000000 000011 000001 000111 010000 000000
//!                                           ^^^^^^ highest differing group: level 2, slot 7
//! ```
//!
//! When the wheel reaches the first tick of an occupied slot of level `k > 0` (a *cascade
//! point*), the slot's timers are re-placed relative to the new tick, landing in lower levels
//! or in the ready queue. Each timer cascades at most [`LEVELS`] times, so the amortised cost
//! stays O(1) per timer. The wheel jumps straight to a slot's earliest deadline when that is
//! due (each slot keeps a lower bound of its deadlines), which is why
//! [`TimerWheel::next_expiration`] names the earliest deadline rather than a cascade point.
//!
//! Each slot is a FIFO *queue*: a vector of slab indices with tombstones, each with a copy of
//! its deadline (`queue.rs`). tokio and the classic design thread intrusive linked lists
//! through the entries instead; a cascade then chases one pointer per timer, a cache miss
//! each, whereas a vector is scanned sequentially and the cascade never reads the entries.
//! Measured at one million timers this was 3 to 6 times faster (BENCHMARKS.md).
//!
//! # Invariants
//!
//! - A timer is never in the slot the wheel currently stands in: every occupied slot lies
//!   strictly in the future, so no slot wraps around and lower levels always expire first.
//! - All timers with the same deadline are in the same queue (a slot, the ready queue or the
//!   overflow queue), in insertion order. Queues are FIFO and a cascade moves a queue front to
//!   back, so timers due in the same tick come out in insertion order.
//! - The ready queue holds only timers whose firing tick is [`TimerWheel::now`].
//! - The wheel never allocates per timer in steady state: entries live in a slab whose freed
//!   cells are reused, and slot queues keep their capacity; a processed slot's vectors are
//!   recycled as the next spare.
//! - `now` never goes backwards.
//!
//! # Ordering contract
//!
//! A timer *fires in* tick `max(deadline, now at insert)`: a deadline at or before
//! [`TimerWheel::now`] is due immediately. `poll` returns timers in order of firing tick, then
//! insertion order. While draining a far jump, `now()` is the tick of the timer just returned,
//! so a timer inserted between two `poll` calls fires in its own tick, not late.

#![forbid(unsafe_code)]
#![deny(clippy::unwrap_used, clippy::expect_used)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

mod entry;
mod key;
mod level;
mod queue;
mod slab;
#[cfg(test)]
mod tests;

use std::fmt;
use std::mem::size_of;

use entry::ListId;
pub use key::{Expired, TimerKey};
use level::{level_for, slot_for, slot_start, Level};
use queue::SlotQueue;
use slab::Slab;

/// Bits of a deadline each level resolves.
pub const SLOT_BITS: u32 = 6;
/// Slots per level; one `u64` occupancy bitmap per level.
pub const SLOTS: usize = 1 << SLOT_BITS;
/// Number of levels.
pub const LEVELS: usize = 6;
/// Bits of tick the levels cover together (36).
pub const RANGE_BITS: u32 = SLOT_BITS * LEVELS as u32;
/// Ticks the levels cover together: 2^36 ms ≈ 2.18 years. Timers farther out wait in the
/// overflow queue.
pub const RANGE: u64 = 1 << RANGE_BITS;

/// A hierarchical timing wheel of timers carrying values `T`. See the [module docs](self).
///
/// Call order: `insert`/`cancel`/`reschedule` at any time; a driver asks
/// [`next_expiration`](Self::next_expiration), sleeps until that tick, then calls
/// [`poll`](Self::poll) (or [`drain_expired`](Self::drain_expired)) with the current tick until
/// it returns `None`.
pub struct TimerWheel<T> {
    /// The current tick: the last tick the wheel was advanced to.
    elapsed: u64,
    slab: Slab<T>,
    levels: Box<[Level; LEVELS]>,
    /// Timers whose firing tick is `elapsed`, in order.
    ready: SlotQueue,
    /// Timers beyond the levels' range (different 2^36 epoch than `elapsed`).
    overflow: SlotQueue,
    /// Lower bound of the overflow deadlines (`u64::MAX` when empty).
    overflow_earliest: u64,
    /// An empty queue kept for its capacity, swapped in for a slot being cascaded.
    spare: SlotQueue,
}

/// The next place where the wheel has work: a slot (or the overflow queue) whose first tick
/// is `start` and whose earliest deadline is at least `earliest`.
#[derive(Clone, Copy, Debug)]
struct Event {
    start: u64,
    earliest: u64,
    source: Source,
}

#[derive(Clone, Copy, Debug)]
enum Source {
    Slot { level: usize, slot: usize },
    Overflow,
}

impl<T> TimerWheel<T> {
    /// An empty wheel standing at tick `now`.
    pub fn new(now: u64) -> Self {
        Self::with_capacity(now, 0)
    }

    /// An empty wheel standing at tick `now`, with room for `capacity` timers before its slab
    /// reallocates.
    pub fn with_capacity(now: u64, capacity: usize) -> Self {
        TimerWheel {
            elapsed: now,
            slab: Slab::with_capacity(capacity),
            levels: Box::new([Level::EMPTY; LEVELS]),
            ready: SlotQueue::EMPTY,
            overflow: SlotQueue::EMPTY,
            overflow_earliest: u64::MAX,
            spare: SlotQueue::EMPTY,
        }
    }

    /// The current tick: the last tick the wheel was advanced to by `poll`.
    pub fn now(&self) -> u64 {
        self.elapsed
    }

    /// Number of live timers (inserted and neither fired nor cancelled).
    pub fn len(&self) -> usize {
        self.slab.len()
    }

    /// Whether no timer is live.
    pub fn is_empty(&self) -> bool {
        self.slab.len() == 0
    }

    /// Timers the slab holds without reallocating.
    pub fn capacity(&self) -> usize {
        self.slab.capacity()
    }

    /// Makes room for at least `additional` more live timers without reallocating.
    pub fn reserve(&mut self, additional: usize) {
        self.slab.reserve(additional);
    }

    /// Heap bytes the wheel holds: the slab's and the slot queues' whole capacity plus the
    /// level arrays.
    pub fn heap_bytes(&self) -> usize {
        self.slab.heap_bytes()
            + size_of::<[Level; LEVELS]>()
            + self.levels.iter().map(Level::heap_bytes).sum::<usize>()
            + self.ready.heap_bytes()
            + self.overflow.heap_bytes()
            + self.spare.heap_bytes()
    }

    /// Schedules `value` for tick `deadline` and returns its key. O(1).
    ///
    /// A deadline at or before [`now`](Self::now) is due immediately: the next `poll` returns
    /// it. Deadlines up to `u64::MAX` are accepted.
    ///
    /// # Panics
    ///
    /// Only if `u32::MAX - 1` timers are already live.
    #[inline]
    pub fn insert(&mut self, deadline: u64, value: T) -> TimerKey {
        let (idx, key) = self.slab.insert(value);
        self.place(idx, deadline);
        key
    }

    /// Cancels the timer `key` names and returns its value; `None` if the key is stale (its
    /// timer already fired or was cancelled) or unknown. O(1).
    #[inline]
    pub fn cancel(&mut self, key: TimerKey) -> Option<T> {
        let idx = self.slab.lookup(key)?;
        self.unlink(idx);
        self.slab.remove(idx).map(|(_, value)| value)
    }

    /// Moves the live timer `key` to `deadline`, keeping its key and value; `false` for a stale
    /// or unknown key. Within its new firing tick it counts as inserted now. O(1).
    pub fn reschedule(&mut self, key: TimerKey, deadline: u64) -> bool {
        let Some(idx) = self.slab.lookup(key) else {
            return false;
        };
        self.unlink(idx);
        self.place(idx, deadline);
        true
    }

    /// The deadline the live timer `key` was inserted (or rescheduled) with.
    pub fn deadline(&self, key: TimerKey) -> Option<u64> {
        let idx = self.slab.lookup(key)?;
        let pos = self.slab.entry(idx).pos;
        self.queue_of(idx).deadline_of(pos, idx)
    }

    /// The value of the live timer `key`.
    pub fn get(&self, key: TimerKey) -> Option<&T> {
        let idx = self.slab.lookup(key)?;
        self.slab.entry(idx).value.as_ref()
    }

    /// The value of the live timer `key`, mutably.
    pub fn get_mut(&mut self, key: TimerKey) -> Option<&mut T> {
        let idx = self.slab.lookup(key)?;
        self.slab.entry_mut(idx).value.as_mut()
    }

    /// The earliest tick at which [`poll`](Self::poll) can return a timer, or `None` when the
    /// wheel is empty. A driver sleeps until this tick.
    ///
    /// Never later than the earliest firing tick. It is exactly that tick, except after a
    /// `cancel`/`reschedule` took the earliest timer out of a slot or of the overflow queue
    /// that still holds others: the bound is then stale and earlier (one spurious wake-up,
    /// after which `poll` has refreshed it). `now()` when timers are due already. O(levels).
    pub fn next_expiration(&self) -> Option<u64> {
        if !self.ready.is_empty() {
            return Some(self.elapsed);
        }
        self.next_event().map(|event| event.earliest)
    }

    /// Advances the wheel to tick `now` and returns the next timer due by then, in order of
    /// firing tick then insertion; `None` once nothing is due at `now`.
    ///
    /// `now` is monotonic: an earlier tick than [`now()`](Self::now) is treated as `now()`.
    /// The wheel advances lazily, jumping from one occupied slot to the next rather than
    /// tick by tick, so a poll far ahead costs O(occupied slots crossed), not O(ticks). While
    /// it returns timers, `now()` is the firing tick of the timer just returned; it reaches
    /// `now` when `poll` returns `None`.
    #[inline]
    pub fn poll(&mut self, now: u64) -> Option<Expired<T>> {
        let now = now.max(self.elapsed);
        loop {
            if let Some((idx, deadline)) = self.ready.pop_front() {
                if let Some((key, value)) = self.slab.remove(idx) {
                    return Some(Expired {
                        key,
                        deadline,
                        value,
                    });
                }
                debug_assert!(false, "ready queue held a vacant entry");
                continue;
            }
            let event = match self.next_event() {
                Some(event) if event.start <= now => event,
                _ => {
                    self.elapsed = now;
                    return None;
                }
            };
            // Jump to the event: to its earliest deadline if that is due, else to `now` (which
            // is inside the event's slot). Either way every timer in the slot is at or after
            // the new tick, and every other occupied slot starts after it.
            self.elapsed = event.earliest.min(now);
            self.process(event.source);
        }
    }

    /// Appends every timer due at `now` to `out`, in the order [`poll`](Self::poll) returns
    /// them, and leaves the wheel at `now`.
    pub fn drain_expired(&mut self, now: u64, out: &mut Vec<Expired<T>>) {
        while let Some(expired) = self.poll(now) {
            out.push(expired);
        }
    }

    /// Puts the unqueued entry `idx`, whose deadline is `deadline`, into the queue that
    /// deadline belongs to at `elapsed`. Writes the entry but never reads it, which is what
    /// keeps a cascade a sequential scan.
    #[inline]
    fn place(&mut self, idx: u32, deadline: u64) {
        let (list, pos) = if deadline <= self.elapsed {
            // Only the ready queue is popped, so only it can fill up with a popped prefix.
            if self.ready.should_compact_before_push() {
                self.ready.compact(self.slab.entries_mut());
            }
            (ListId::Ready, self.ready.push(idx, deadline))
        } else if let Some(level) = level_for(self.elapsed, deadline) {
            let slot = slot_for(deadline, level);
            let pos = self.levels[level].push(slot, idx, deadline);
            let list = ListId::Slot {
                level: level as u8,
                slot: slot as u8,
            };
            (list, pos)
        } else {
            self.overflow_earliest = self.overflow_earliest.min(deadline);
            (ListId::Overflow, self.overflow.push(idx, deadline))
        };
        let entry = self.slab.entry_mut(idx);
        entry.pos = pos;
        entry.list = list;
    }

    /// Takes the live entry `idx` out of its queue.
    fn unlink(&mut self, idx: u32) {
        let entry = self.slab.entry(idx);
        let (list, pos) = (entry.list, entry.pos);
        let entries = self.slab.entries_mut();
        match list {
            ListId::Ready => self.ready.remove(entries, pos),
            // A level-0 slot became the ready queue wholesale when the wheel reached it.
            ListId::Slot { level: 0, slot }
                if !self.levels[0].queue(slot as usize).holds(pos, idx) =>
            {
                self.ready.remove(entries, pos);
            }
            ListId::Slot { level, slot } => {
                self.levels[level as usize].remove(slot as usize, entries, pos);
            }
            ListId::Overflow => {
                self.overflow.remove(entries, pos);
                if self.overflow.is_empty() {
                    self.overflow_earliest = u64::MAX;
                }
            }
            ListId::Vacant => debug_assert!(false, "unlinking a vacant entry"),
        }
    }

    /// The queue holding the live entry `idx`.
    fn queue_of(&self, idx: u32) -> &SlotQueue {
        let entry = self.slab.entry(idx);
        match entry.list {
            ListId::Slot { level, slot } => {
                let queue = self.levels[level as usize].queue(slot as usize);
                // A level-0 slot became the ready queue wholesale when the wheel reached it.
                if level == 0 && !queue.holds(entry.pos, idx) {
                    &self.ready
                } else {
                    queue
                }
            }
            ListId::Overflow => &self.overflow,
            ListId::Ready | ListId::Vacant => &self.ready,
        }
    }

    /// The earliest slot (or the overflow queue) holding timers. Lower levels always expire
    /// before higher ones, and the overflow queue after all levels.
    fn next_event(&self) -> Option<Event> {
        for (level, wheel_level) in self.levels.iter().enumerate() {
            if let Some(slot) = wheel_level.next_slot() {
                return Some(Event {
                    start: slot_start(self.elapsed, level, slot),
                    earliest: wheel_level.earliest(slot),
                    source: Source::Slot { level, slot },
                });
            }
        }
        if self.overflow.is_empty() {
            return None;
        }
        Some(Event {
            start: self.overflow_earliest & !(RANGE - 1),
            earliest: self.overflow_earliest,
            source: Source::Overflow,
        })
    }

    /// Re-places every timer of `source` relative to the (just advanced) `elapsed`, front to
    /// back so that insertion order survives. Called only when the ready queue is empty.
    fn process(&mut self, source: Source) {
        debug_assert!(self.ready.is_empty());
        let taken = match source {
            Source::Slot { level: 0, slot } => {
                // Every timer of a level-0 slot is due now: the slot becomes the ready queue
                // as it is, without touching a single entry.
                let empty = std::mem::take(&mut self.ready);
                self.ready = self.levels[0].take(slot, empty);
                return;
            }
            Source::Slot { level, slot } => {
                let spare = std::mem::take(&mut self.spare);
                self.levels[level].take(slot, spare)
            }
            Source::Overflow => {
                self.overflow_earliest = u64::MAX;
                let spare = std::mem::take(&mut self.spare);
                std::mem::replace(&mut self.overflow, spare)
            }
        };
        for (idx, deadline) in taken.live() {
            self.place(idx, deadline);
        }
        let mut taken = taken;
        taken.clear();
        self.spare = taken;
    }
}

impl<T> Default for TimerWheel<T> {
    /// An empty wheel at tick 0.
    fn default() -> Self {
        Self::new(0)
    }
}

impl<T> fmt::Debug for TimerWheel<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        struct Bitmaps<'a>(&'a [Level; LEVELS]);
        impl fmt::Debug for Bitmaps<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_list()
                    .entries(
                        self.0
                            .iter()
                            .map(|level| format!("{:#018x}", level.occupied())),
                    )
                    .finish()
            }
        }
        f.debug_struct("TimerWheel")
            .field("now", &self.elapsed)
            .field("len", &self.len())
            .field("next_expiration", &self.next_expiration())
            .field("occupied", &Bitmaps(&self.levels))
            .field("overflow", &!self.overflow.is_empty())
            .finish()
    }
}
