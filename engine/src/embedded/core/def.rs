//! A registered job as the core sees it: [`JobDef`] (the spec, the processor, the live
//! [`JobCounters`] and [`RunState`]) and the driver's per-job scheduling state (the schedule
//! timer's key or the anchor, and the flags), which only the core reads or writes, on the
//! driver thread.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

use crate::ids::JobId;
use crate::time_expression::{EpochMs, TimeExpression};
use crate::wheel::TimerKey;

use super::super::job::{JobSpec, StoredSpec};
use super::super::processor::Processor;

/// `JobCounters::next_fire_at` when no schedule timer is armed.
const NO_FIRE: EpochMs = i64::MIN;

/// A registered job, shared by the core, the scheduler handle and the job's runs.
pub(crate) struct JobDef {
    pub(crate) id: JobId,
    pub(crate) spec: StoredSpec,
    pub(crate) processor: Arc<dyn Processor>,
    /// Runs in progress and cancelled, and the driver's flags.
    state: RunState,
    pub(crate) counters: JobCounters,
    /// While a schedule timer is armed (`counters.next_fire_at` is not [`NO_FIRE`]), its key
    /// ([`TimerKey::to_bits`]); otherwise the anchor (see [`JobDef::anchor`]). Read and
    /// written only by the core, on the driver thread, so every access is `Relaxed`.
    slot: AtomicU64,
}

impl JobDef {
    /// A job that is not yet scheduled (the core's `Command::Add` schedules it).
    pub(crate) fn new(id: JobId, spec: JobSpec, processor: Arc<dyn Processor>) -> Self {
        let flags = if spec.enabled { ENABLED } else { 0 };
        JobDef {
            id,
            spec: StoredSpec::from(spec),
            processor,
            state: RunState::new(flags),
            counters: JobCounters::default(),
            slot: AtomicU64::new(0),
        }
    }

    /// Runs in progress.
    pub(crate) fn running(&self) -> u32 {
        self.state.running()
    }

    /// Runs cancelled by a shutdown.
    pub(crate) fn cancelled(&self) -> u64 {
        self.state.cancelled()
    }

    /// Takes a run slot if fewer than `max` runs are in progress (`max` 0: unlimited); the
    /// core does, on the driver thread. Every successful reservation is paired with one
    /// [`JobDef::release`].
    pub(crate) fn try_reserve(&self, max: u32) -> bool {
        self.state.try_reserve(max)
    }

    /// Returns a run slot taken by [`JobDef::try_reserve`], counting the run as cancelled if
    /// `cancelled`.
    pub(crate) fn release(&self, cancelled: bool) {
        self.state.release(cancelled);
    }

    pub(super) fn flag(&self, flag: u8) -> bool {
        self.state.flags() & flag != 0
    }

    pub(super) fn set_flag(&self, flag: u8, on: bool) {
        self.state.set_flag(flag, on);
    }

    /// The armed schedule timer's trigger time, if one is armed.
    fn armed_at(&self) -> Option<EpochMs> {
        let next = self.counters.next_fire_at.load(Ordering::Relaxed);
        (next != NO_FIRE).then_some(next)
    }

    /// The armed schedule timer's key, if one is armed.
    pub(super) fn armed_timer(&self) -> Option<TimerKey> {
        self.armed_at()
            .and_then(|_| TimerKey::from_bits(self.slot.load(Ordering::Relaxed)))
    }

    /// Records that the job's schedule timer `key`, due at `at`, is armed (none was).
    pub(super) fn set_armed(&self, at: EpochMs, key: TimerKey) {
        debug_assert!(self.armed_at().is_none(), "one schedule timer per job");
        self.slot.store(key.to_bits(), Ordering::Relaxed);
        self.counters.next_fire_at.store(at, Ordering::Relaxed);
    }

    /// Forgets the job's schedule timer (cancelled by the caller, or just fired) and returns
    /// its key, if one was armed; the slot keeps the anchor from then on.
    pub(super) fn disarm(&self) -> Option<TimerKey> {
        let at = self.armed_at()?;
        let key = TimerKey::from_bits(self.slot.load(Ordering::Relaxed));
        self.slot
            .store(self.anchor_before(at).cast_unsigned(), Ordering::Relaxed);
        self.counters.next_fire_at.store(NO_FIRE, Ordering::Relaxed);
        key
    }

    /// FIXED_RATE's grid anchor: its triggers are `anchor + k·period` (k >= 1, see
    /// [`Schedule::first_trigger`](crate::schedule::Schedule::first_trigger)). Other
    /// expressions ignore it: FIXED_DELAY's anchor is always the instant it is armed from
    /// (the previous run's completion, or the moment it was scheduled or enabled), which the
    /// core passes when it arms the job, and CRON and DAILY_TIME_INTERVAL have none.
    ///
    /// The schedule's start is kept only until its first trigger is armed. An armed trigger
    /// `t` lies on the grid, so `t - period` is an anchor of the same grid, and one that gives
    /// the same first trigger after any instant the job is re-armed from: `t` was the first
    /// trigger after some instant `a` (within the lifecycle), so either `t - period` is the
    /// anchor itself, or it is at most `a`, or the lifecycle excludes it; and the job is
    /// re-armed from instants no earlier than `a`. So the slot holds the timer's key while a
    /// timer is armed, and `t - period` once it is not.
    pub(super) fn anchor(&self) -> EpochMs {
        match self.armed_at() {
            Some(at) => self.anchor_before(at),
            None => self.slot.load(Ordering::Relaxed).cast_signed(),
        }
    }

    /// Sets the anchor of a job with no schedule timer armed (one being scheduled).
    pub(super) fn set_anchor(&self, anchor: EpochMs) {
        debug_assert!(self.armed_at().is_none(), "the slot holds a timer's key");
        if self.armed_at().is_none() {
            self.slot.store(anchor.cast_unsigned(), Ordering::Relaxed);
        }
    }

    /// The FIXED_RATE grid point one period before its trigger `at` (`at` for other
    /// expressions, which ignore the anchor).
    fn anchor_before(&self, at: EpochMs) -> EpochMs {
        match self.spec.expression() {
            TimeExpression::FixedRate { period_ms } => {
                // `at` is `anchor + k·period` with k >= 1, so this is at least the anchor and
                // cannot underflow; saturate anyway.
                i64::try_from(i128::from(at) - i128::from(*period_ms)).unwrap_or(at)
            }
            _ => at,
        }
    }
}

impl std::fmt::Debug for JobDef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobDef")
            .field("id", &self.id)
            .field("spec", &self.spec)
            .finish_non_exhaustive()
    }
}

/// Live figures of one job (besides those in [`RunState`]). Relaxed orderings: these are
/// statistics.
#[derive(Debug)]
pub(crate) struct JobCounters {
    pub(crate) fired: AtomicU64,
    pub(crate) succeeded: AtomicU64,
    pub(crate) failed: AtomicU64,
    pub(crate) skipped: AtomicU64,
    /// The armed schedule timer's trigger time (ms since the epoch), or [`NO_FIRE`] when none
    /// is armed. Written only by the core, on the driver thread.
    pub(crate) next_fire_at: AtomicI64,
}

impl Default for JobCounters {
    fn default() -> Self {
        JobCounters {
            fired: AtomicU64::new(0),
            succeeded: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
            next_fire_at: AtomicI64::new(NO_FIRE),
        }
    }
}

/// A job's runs in progress, its runs cancelled by a shutdown and the driver's flags, in one
/// word so that a job costs one word for all three:
///
/// ```text
///   63            35 34   32 31                   0
///  ┌────────────────┬───────┬──────────────────────┐
///  │ cancelled (29) │ flags │ running (32)         │
///  └────────────────┴───────┴──────────────────────┘
/// ```
///
/// - `running`: the core reserves a slot (on the driver thread) within `max_instances`, each
///   run releases it. A reservation is an Acquire read-modify-write and a release a Release
///   one, so a slot freed by a finished run is reused only after everything that run did.
/// - `flags`: [`SCHEDULED`], [`ENABLED`], [`AWAITING_COMPLETION`]; read and written only by
///   the core, on the driver thread (Relaxed read-modify-writes, so that they never undo a
///   run's concurrent release).
/// - `cancelled`: runs cancelled by a shutdown while in progress. A job's runs are cancelled
///   only by its scheduler's one shutdown, so this is at most the runs in progress then; it
///   saturates at 2^29 − 1 (half a billion runs of one job in progress at once, each a tokio
///   task, is far beyond any memory).
#[derive(Debug)]
struct RunState(AtomicU64);

const RUNNING_MASK: u64 = (1 << 32) - 1;
const FLAGS_SHIFT: u32 = 32;
const CANCELLED_SHIFT: u32 = 35;
const CANCELLED_MAX: u64 = (1 << (64 - CANCELLED_SHIFT)) - 1;

impl RunState {
    fn new(flags: u8) -> Self {
        RunState(AtomicU64::new(u64::from(flags) << FLAGS_SHIFT))
    }

    fn running(&self) -> u32 {
        (self.0.load(Ordering::Relaxed) & RUNNING_MASK) as u32
    }

    fn cancelled(&self) -> u64 {
        self.0.load(Ordering::Relaxed) >> CANCELLED_SHIFT
    }

    fn flags(&self) -> u8 {
        ((self.0.load(Ordering::Relaxed) >> FLAGS_SHIFT) & 0b111) as u8
    }

    fn set_flag(&self, flag: u8, on: bool) {
        let bits = u64::from(flag) << FLAGS_SHIFT;
        if on {
            self.0.fetch_or(bits, Ordering::Relaxed);
        } else {
            self.0.fetch_and(!bits, Ordering::Relaxed);
        }
    }

    fn try_reserve(&self, max: u32) -> bool {
        self.0
            .fetch_update(Ordering::Acquire, Ordering::Relaxed, |w| {
                let n = (w & RUNNING_MASK) as u32;
                if max != 0 && n >= max {
                    None
                } else {
                    n.checked_add(1).map(|_| w + 1)
                }
            })
            .is_ok()
    }

    fn release(&self, cancelled: bool) {
        let before = self
            .0
            .fetch_update(Ordering::Release, Ordering::Relaxed, |w| {
                if w & RUNNING_MASK == 0 {
                    return None;
                }
                let w = w - 1;
                Some(if cancelled && w >> CANCELLED_SHIFT < CANCELLED_MAX {
                    w + (1 << CANCELLED_SHIFT)
                } else {
                    w
                })
            });
        debug_assert!(before.is_ok(), "released a slot that was not reserved");
    }
}

/// Flag: `Command::Add` has been handled (and `Command::Remove` not yet).
pub(super) const SCHEDULED: u8 = 1;
/// Flag: the job fires on its schedule (initially [`JobSpec::enabled`]).
pub(super) const ENABLED: u8 = 1 << 1;
/// Flag (FIXED_DELAY): a scheduled run is in flight; its completion arms the next trigger.
pub(super) const AWAITING_COMPLETION: u8 = 1 << 2;

#[cfg(test)]
mod tests {
    use super::*;

    /// What one registered job costs in memory, held in place on 64-bit targets: the heap
    /// bytes per job that BENCHMARKS.md reports are these plus the name, the wheel's entry and
    /// queue record and the registry's slot.
    #[cfg(target_pointer_width = "64")]
    #[test]
    fn a_job_and_its_wheel_entry_stay_small() {
        use std::mem::size_of;
        assert_eq!(size_of::<TimeExpression>(), 16);
        assert_eq!(
            size_of::<StoredSpec>(),
            32,
            "name and expression, nothing else"
        );
        assert_eq!(size_of::<JobDef>(), 112);
        assert_eq!(
            size_of::<Option<Arc<JobDef>>>(),
            8,
            "a wheel value is a pointer"
        );
    }

    #[test]
    fn run_state_keeps_running_flags_and_cancelled_apart() {
        let s = RunState::new(ENABLED);
        assert!(s.try_reserve(2));
        assert!(s.try_reserve(2));
        assert!(!s.try_reserve(2), "the limit holds");
        s.set_flag(SCHEDULED, true);
        s.set_flag(ENABLED, false);
        assert_eq!((s.running(), s.flags()), (2, SCHEDULED));
        s.release(true);
        s.release(false);
        assert_eq!((s.running(), s.cancelled(), s.flags()), (0, 1, SCHEDULED));

        // Unlimited: the count stops at u32::MAX instead of spilling into the flags.
        let flags = u64::from(AWAITING_COMPLETION) << FLAGS_SHIFT;
        let s = RunState(AtomicU64::new(flags | (RUNNING_MASK - 1)));
        assert!(s.try_reserve(0));
        assert!(!s.try_reserve(0));
        assert_eq!((s.running(), s.flags()), (u32::MAX, AWAITING_COMPLETION));

        // The cancelled count saturates instead of wrapping.
        let s = RunState(AtomicU64::new(
            flags | (CANCELLED_MAX << CANCELLED_SHIFT) | 2,
        ));
        s.release(true);
        s.release(true);
        assert_eq!(
            (s.running(), s.cancelled(), s.flags()),
            (0, CANCELLED_MAX, AWAITING_COMPLETION)
        );
    }
}
