//! A registered job as the core sees it: [`JobDef`] (the spec, the processor, the live
//! [`JobCounters`]) and the driver's per-job scheduling state (the schedule timer's key, the
//! anchor and the flags), which only the core reads or writes, on the driver thread.

use std::sync::atomic::{AtomicI64, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;

use crate::ids::JobId;
use crate::schedule::RunningCount;
use crate::time_expression::EpochMs;
use crate::wheel::TimerKey;

use super::super::job::{JobSpec, StoredSpec};
use super::super::processor::Processor;

/// A registered job, shared by the core, the scheduler handle and the job's runs.
pub(crate) struct JobDef {
    pub(crate) id: JobId,
    pub(crate) spec: StoredSpec,
    pub(crate) processor: Arc<dyn Processor>,
    /// Runs in progress: the core reserves a slot (on the driver thread), each run releases it.
    pub(crate) running: RunningCount,
    pub(crate) counters: JobCounters,
    /// Scheduling state; read and written only by the core, on the driver thread.
    driver: DriverState,
    /// The [`DriverState`] flags, kept here rather than in it so that they fill the padding
    /// after `running` instead of adding a word to every job.
    driver_flags: AtomicU8,
}

impl JobDef {
    /// A job that is not yet scheduled (the core's `Command::Add` schedules it).
    pub(crate) fn new(id: JobId, spec: JobSpec, processor: Arc<dyn Processor>) -> Self {
        let flags = if spec.enabled { ENABLED } else { 0 };
        JobDef {
            id,
            spec: StoredSpec::from(spec),
            processor,
            running: RunningCount::new(),
            counters: JobCounters::default(),
            driver: DriverState {
                timer: AtomicU64::new(TimerKey::NONE_BITS),
                anchor: AtomicI64::new(0),
            },
            driver_flags: AtomicU8::new(flags),
        }
    }

    pub(super) fn flag(&self, flag: u8) -> bool {
        self.driver_flags.load(Ordering::Relaxed) & flag != 0
    }

    pub(super) fn set_flag(&self, flag: u8, on: bool) {
        let flags = self.driver_flags.load(Ordering::Relaxed);
        let flags = if on { flags | flag } else { flags & !flag };
        self.driver_flags.store(flags, Ordering::Relaxed);
    }

    /// Takes the job's schedule timer out of its slot, if one is armed.
    pub(super) fn take_timer(&self) -> Option<TimerKey> {
        TimerKey::from_bits(
            self.driver
                .timer
                .swap(TimerKey::NONE_BITS, Ordering::Relaxed),
        )
    }

    pub(super) fn set_timer(&self, key: Option<TimerKey>) {
        let bits = key.map_or(TimerKey::NONE_BITS, TimerKey::to_bits);
        self.driver.timer.store(bits, Ordering::Relaxed);
    }

    pub(super) fn anchor(&self) -> EpochMs {
        self.driver.anchor.load(Ordering::Relaxed)
    }

    pub(super) fn set_anchor(&self, anchor: EpochMs) {
        self.driver.anchor.store(anchor, Ordering::Relaxed);
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

/// Live figures of one job (besides `JobDef::running`). Relaxed orderings: these are
/// statistics.
#[derive(Debug)]
pub(crate) struct JobCounters {
    pub(crate) fired: AtomicU64,
    pub(crate) succeeded: AtomicU64,
    pub(crate) failed: AtomicU64,
    pub(crate) cancelled: AtomicU64,
    pub(crate) skipped: AtomicU64,
    /// Next scheduled trigger (ms since the epoch), or `i64::MIN` for none.
    pub(crate) next_fire_at: AtomicI64,
}

impl Default for JobCounters {
    fn default() -> Self {
        JobCounters {
            fired: AtomicU64::new(0),
            succeeded: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            cancelled: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
            next_fire_at: AtomicI64::new(i64::MIN),
        }
    }
}

/// A job's scheduling state, owned by the core. Atomics only because the `JobDef` is shared
/// with other threads; only the driver thread touches these, so every access is `Relaxed`.
/// Its flags live in `JobDef::driver_flags`: [`SCHEDULED`], [`ENABLED`],
/// [`AWAITING_COMPLETION`].
#[derive(Debug)]
struct DriverState {
    /// The schedule timer's key ([`TimerKey::to_bits`]), or [`TimerKey::NONE_BITS`].
    timer: AtomicU64,
    /// FIXED_RATE's grid origin (fires at anchor + k·period); FIXED_DELAY's last completion.
    anchor: AtomicI64,
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
    /// bytes per job that BENCHMARKS.md reports are these plus the name, the wheel's queue
    /// record and the registry's slot.
    #[cfg(target_pointer_width = "64")]
    #[test]
    fn a_job_and_its_wheel_entry_stay_small() {
        assert_eq!(std::mem::size_of::<JobDef>(), 144);
        assert_eq!(
            std::mem::size_of::<Option<Arc<JobDef>>>(),
            8,
            "a wheel value is a pointer"
        );
    }
}
