//! The embedded scheduler's core: a sans-IO state machine that owns the timing wheel and the
//! jobs' schedules.
//!
//! It reads no clock and does no I/O. The driver feeds it, in this order, on every turn:
//!
//! 1. [`Core::handle`]`(now, command)` for each command that arrived (add, remove, enable,
//!    disable, trigger, a fixed-delay run's completion);
//! 2. [`Core::poll`]`(now, &mut fires)`, which pops every timer due at `now` from the wheel,
//!    plans its fires ([`crate::schedule`]: the misfire policy), applies the concurrency
//!    limit, arms each job's next trigger and appends a [`Fire`] per run to launch (or per
//!    trigger to report as skipped);
//! 3. [`Core::next_wakeup`], the instant to sleep until (unless a command arrives first).
//!
//! # Invariants
//! - A job has at most one schedule timer in the wheel (`DriverState::timer`); a disabled or
//!   removed job has none. So a trigger can never fire twice.
//! - The core keeps no table of jobs: each wheel entry and each command carries the job's
//!   `Arc<JobDef>`, and the per-job scheduling state lives in `JobDef::driver`, which only the
//!   driver thread reads or writes. A scheduled fire costs no map lookup, and a job costs the
//!   scheduler one `JobDef`, one wheel entry (a pointer) and one registry slot (a pointer).
//! - A wheel entry is the job alone; a manual trigger's own data (instance id, parameters)
//!   waits in `Core::triggers` under its timer's key, so a timer whose key is there is a manual
//!   trigger and any other is the job's schedule timer. Manual triggers are never cancelled,
//!   so that table holds exactly the pending manual triggers.
//! - Ticks are instants: `tick` maps every `EpochMs` to its own wheel tick and `instant` maps
//!   it back, so a timer's deadline is its trigger time, exactly.
//! - Only the core reserves a slot of a job's `running` count, and only when it emits a run,
//!   within `max_instances`; each run releases its slot once. So the limit is never exceeded.
//! - A FIXED_DELAY job has either a timer or is `awaiting_completion` of the run it fired,
//!   never both; the run's completion schedules the next trigger.
//! - Trigger times are never rounded: the wheel's 1 ms tick is the unit of every expression.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;

use crate::ids::{InstanceId, JobId};
use crate::schedule::{FirePlan, RunningCount};
use crate::time_expression::{EpochMs, TimeExpression};
use crate::wheel::{TimerKey, TimerWheel};

use super::job::{JobSpec, StoredSpec};
use super::processor::Processor;
use super::report::SkipReason;

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

    fn flag(&self, flag: u8) -> bool {
        self.driver_flags.load(Ordering::Relaxed) & flag != 0
    }

    fn set_flag(&self, flag: u8, on: bool) {
        let flags = self.driver_flags.load(Ordering::Relaxed);
        let flags = if on { flags | flag } else { flags & !flag };
        self.driver_flags.store(flags, Ordering::Relaxed);
    }

    /// Takes the job's schedule timer out of its slot, if one is armed.
    fn take_timer(&self) -> Option<TimerKey> {
        TimerKey::from_bits(
            self.driver
                .timer
                .swap(TimerKey::NONE_BITS, Ordering::Relaxed),
        )
    }

    fn set_timer(&self, key: Option<TimerKey>) {
        let bits = key.map_or(TimerKey::NONE_BITS, TimerKey::to_bits);
        self.driver.timer.store(bits, Ordering::Relaxed);
    }

    fn anchor(&self) -> EpochMs {
        self.driver.anchor.load(Ordering::Relaxed)
    }

    fn set_anchor(&self, anchor: EpochMs) {
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

/// What the core is told.
#[derive(Debug)]
pub(crate) enum Command {
    /// Start scheduling a newly registered job.
    Add(Arc<JobDef>),
    /// Stop scheduling a job and forget it.
    Remove(Arc<JobDef>),
    /// Enable or disable a job's schedule.
    SetEnabled(Arc<JobDef>, bool),
    /// Run a job once, `delay_ms` from now, as `instance`.
    Trigger {
        def: Arc<JobDef>,
        instance: InstanceId,
        params: Option<Arc<str>>,
        delay_ms: u64,
    },
    /// A scheduled run of a FIXED_DELAY job finished at `finished_at`.
    Completed {
        def: Arc<JobDef>,
        finished_at: EpochMs,
    },
}

/// A run to launch, or a trigger to report as skipped.
#[derive(Debug)]
pub(crate) struct Fire {
    pub(crate) def: Arc<JobDef>,
    pub(crate) instance: InstanceId,
    /// The trigger time served.
    pub(crate) scheduled_at: EpochMs,
    pub(crate) instance_params: Option<Arc<str>>,
    /// Whether the run comes from the job's schedule (not a manual trigger).
    pub(crate) from_schedule: bool,
    /// `Some`: do not run; report this reason.
    pub(crate) skip: Option<SkipReason>,
}

/// A manual trigger waiting in the wheel (the wheel entry itself is the job).
#[derive(Debug)]
struct PendingTrigger {
    instance: InstanceId,
    params: Option<Arc<str>>,
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
const SCHEDULED: u8 = 1;
/// Flag: the job fires on its schedule (initially [`JobSpec::enabled`]).
const ENABLED: u8 = 1 << 1;
/// Flag (FIXED_DELAY): a scheduled run is in flight; its completion arms the next trigger.
const AWAITING_COMPLETION: u8 = 1 << 2;

/// The wheel tick of instant `at`: an order-preserving bijection of `i64` onto `u64` (the sign
/// bit flipped), so every instant, however far in the past, has its own tick. The wheel's
/// 2^36-tick epochs therefore start at fixed instants (every ~2.18 years, the next in 2028):
/// a timer beyond the next one waits in the wheel's overflow queue and is re-placed when it
/// is reached, one cascade like those of the wheel's top level.
fn tick(at: EpochMs) -> u64 {
    at.cast_unsigned() ^ (1 << 63)
}

/// The instant of wheel tick `tick`; the inverse of [`tick`].
fn instant(tick: u64) -> EpochMs {
    (tick ^ (1 << 63)).cast_signed()
}

/// Tunables of the core.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CoreConfig {
    /// A trigger later than this is a misfire and follows the job's misfire policy.
    pub(crate) misfire_threshold_ms: u64,
}

/// See the module documentation.
#[derive(Debug)]
pub(crate) struct Core {
    /// Every timer: a job's schedule timer or a manual trigger of the job. Ticks are instants
    /// ([`tick`], [`instant`]).
    wheel: TimerWheel<Arc<JobDef>>,
    /// The pending manual triggers, by the key of their timer.
    triggers: HashMap<TimerKey, PendingTrigger>,
    next_instance: Arc<AtomicU64>,
    config: CoreConfig,
    /// Scratch space of `on_due`, kept to fire without allocating.
    plan: FirePlan,
}

impl Core {
    /// A core whose clock reads `now`; instance ids are drawn from `next_instance`.
    pub(crate) fn new(now: EpochMs, next_instance: Arc<AtomicU64>, config: CoreConfig) -> Self {
        Core {
            wheel: TimerWheel::new(tick(now)),
            triggers: HashMap::new(),
            next_instance,
            config,
            plan: FirePlan::with_capacity(4),
        }
    }

    /// Applies one command at `now`.
    pub(crate) fn handle(&mut self, now: EpochMs, command: Command) {
        match command {
            Command::Add(def) => {
                let spec = &def.spec;
                let after = spec.resume_after().unwrap_or(now);
                def.set_flag(SCHEDULED, true);
                def.set_anchor(after);
                if def.flag(ENABLED) {
                    self.arm(&def, after);
                }
            }
            Command::Remove(def) => {
                def.set_flag(SCHEDULED, false);
                def.set_flag(ENABLED, false);
                if let Some(key) = def.take_timer() {
                    self.wheel.cancel(key);
                }
                def.counters.next_fire_at.store(i64::MIN, Ordering::Relaxed);
            }
            Command::SetEnabled(def, enabled) => self.set_enabled(now, &def, enabled),
            Command::Trigger {
                def,
                instance,
                params,
                delay_ms,
            } => {
                let due = now.saturating_add(i64::try_from(delay_ms).unwrap_or(i64::MAX));
                let key = self.wheel.insert(tick(due), def);
                self.triggers
                    .insert(key, PendingTrigger { instance, params });
            }
            Command::Completed { def, finished_at } => {
                if !def.flag(SCHEDULED) || !def.flag(ENABLED) || !def.flag(AWAITING_COMPLETION) {
                    return;
                }
                def.set_flag(AWAITING_COMPLETION, false);
                def.set_anchor(finished_at);
                self.arm(&def, finished_at);
            }
        }
    }

    fn set_enabled(&mut self, now: EpochMs, def: &Arc<JobDef>, enabled: bool) {
        if !def.flag(SCHEDULED) || def.flag(ENABLED) == enabled {
            return;
        }
        def.set_flag(ENABLED, enabled);
        if !enabled {
            def.set_flag(AWAITING_COMPLETION, false);
            if let Some(key) = def.take_timer() {
                self.wheel.cancel(key);
            }
            def.counters.next_fire_at.store(i64::MIN, Ordering::Relaxed);
            return;
        }
        // A fixed delay counts from the moment the job is enabled again; other
        // expressions keep their grid. The disabled period is not a misfire.
        if matches!(def.spec.expression, TimeExpression::FixedDelay { .. }) {
            def.set_anchor(now);
        }
        self.arm(def, now);
    }

    /// Arms the job's schedule timer at its first trigger strictly after `after`, if any.
    fn arm(&mut self, def: &Arc<JobDef>, after: EpochMs) {
        let anchor = def.anchor();
        let next = def.spec.schedule().first_trigger(anchor, after);
        self.arm_at(def, next);
    }

    /// Arms the job's schedule timer at `next` (`None`: disarms it).
    fn arm_at(&mut self, def: &Arc<JobDef>, next: Option<EpochMs>) {
        if let Some(key) = def.take_timer() {
            self.wheel.cancel(key);
        }
        def.counters
            .next_fire_at
            .store(next.unwrap_or(i64::MIN), Ordering::Relaxed);
        if let Some(due) = next {
            def.set_timer(Some(self.wheel.insert(tick(due), Arc::clone(def))));
        }
    }

    /// The instant (ms since the epoch) at which [`Core::poll`] has work next, if any.
    pub(crate) fn next_wakeup(&self) -> Option<EpochMs> {
        self.wheel.next_expiration().map(instant)
    }

    /// Pops the timers due at `now` and appends the resulting fires to `out`, stopping once
    /// `out` holds at least `limit` fires (call again for the rest: nothing due is lost, and
    /// the order is kept). Returns whether it stopped because of the limit.
    pub(crate) fn poll(&mut self, now: EpochMs, out: &mut Vec<Fire>, limit: usize) -> bool {
        let now_tick = tick(now);
        loop {
            if out.len() >= limit {
                return true;
            }
            let Some(expired) = self.wheel.poll(now_tick) else {
                return false;
            };
            let (def, due) = (expired.value, instant(expired.deadline));
            let trigger = if self.triggers.is_empty() {
                None
            } else {
                self.triggers.remove(&expired.key)
            };
            match trigger {
                None => self.on_due(now, def, due, out),
                Some(PendingTrigger { instance, params }) => {
                    let removed = !def.flag(SCHEDULED);
                    let skip = if removed {
                        Some(SkipReason::JobRemoved)
                    } else {
                        admit(&def)
                    };
                    out.push(Fire {
                        def,
                        instance,
                        scheduled_at: due,
                        instance_params: params,
                        from_schedule: false,
                        skip,
                    });
                }
            }
        }
    }

    fn on_due(&mut self, now: EpochMs, def: Arc<JobDef>, due: EpochMs, out: &mut Vec<Fire>) {
        def.set_timer(None);
        if !def.flag(SCHEDULED) || !def.flag(ENABLED) {
            return;
        }
        let threshold_ms = self.config.misfire_threshold_ms;
        let mut plan = std::mem::take(&mut self.plan);
        def.spec
            .schedule()
            .plan_into(threshold_ms, due, now, &mut plan);

        let fixed_delay = matches!(def.spec.expression, TimeExpression::FixedDelay { .. });
        let late_ms = u64::try_from(now.saturating_sub(due)).unwrap_or(0);
        if late_ms > threshold_ms && !fixed_delay {
            tracing::warn!(
                job = def.id.0,
                name = %def.spec.name,
                late_ms,
                policy = ?def.spec.misfire(),
                running = plan.fires.len(),
                dropped = plan.dropped,
                truncated = plan.truncated,
                "misfire"
            );
        }
        let mut ran = false;
        for &at in &plan.fires {
            let skip = admit(&def);
            ran |= skip.is_none();
            out.push(self.fire(&def, at, skip));
        }
        if let Some(first) = plan.first_dropped {
            def.counters
                .skipped
                .fetch_add(plan.dropped, Ordering::Relaxed);
            out.push(self.fire(
                &def,
                first,
                Some(SkipReason::Misfired {
                    missed: plan.dropped,
                }),
            ));
        }
        if fixed_delay && !plan.fires.is_empty() {
            if ran {
                // The run's completion arms the next trigger.
                def.set_flag(AWAITING_COMPLETION, true);
                def.counters.next_fire_at.store(i64::MIN, Ordering::Relaxed);
            } else {
                // Nothing ran, so no completion will come: count the delay from now.
                def.set_anchor(now);
                self.arm(&def, now);
            }
        } else {
            self.arm_at(&def, plan.next);
        }
        self.plan = plan;
    }

    fn fire(&self, def: &Arc<JobDef>, scheduled_at: EpochMs, skip: Option<SkipReason>) -> Fire {
        Fire {
            def: Arc::clone(def),
            instance: InstanceId(self.next_instance.fetch_add(1, Ordering::Relaxed)),
            scheduled_at,
            instance_params: None,
            from_schedule: true,
            skip,
        }
    }
}

/// Takes a run slot of `def` if its `max_instances` allows; otherwise the reason to skip.
fn admit(def: &JobDef) -> Option<SkipReason> {
    let counters = &def.counters;
    if !def.running.try_reserve(def.spec.max_instances()) {
        counters.skipped.fetch_add(1, Ordering::Relaxed);
        return Some(SkipReason::TooManyInstances);
    }
    counters.fired.fetch_add(1, Ordering::Relaxed);
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time_expression::{Lifecycle, MisfirePolicy, TimeExpressionType};

    const T0: EpochMs = 1_767_225_600_000; // 2026-01-01T00:00:00Z

    fn core() -> Core {
        Core::new(
            T0,
            Arc::new(AtomicU64::new(1)),
            CoreConfig {
                misfire_threshold_ms: 1_000,
            },
        )
    }

    fn noop() -> Arc<dyn Processor> {
        Arc::new(|_ctx: super::super::RunContext| async {
            Ok::<_, super::super::BoxError>(String::new())
        })
    }

    fn def(id: u64, spec: JobSpec) -> Arc<JobDef> {
        Arc::new(JobDef::new(JobId(id), spec, noop()))
    }

    fn expr(kind: TimeExpressionType, e: &str) -> TimeExpression {
        TimeExpression::parse(kind, e, None).expect("valid expression")
    }

    /// Polls at `now` and returns (scheduled_at - T0, skipped?) of each fire.
    fn poll(core: &mut Core, now: EpochMs) -> Vec<(i64, Option<SkipReason>)> {
        let mut out = Vec::new();
        assert!(!core.poll(now, &mut out, usize::MAX));
        out.into_iter()
            .map(|f| {
                if f.skip.is_none() {
                    f.def.running.release();
                }
                (f.scheduled_at - T0, f.skip)
            })
            .collect()
    }

    #[test]
    fn fixed_rate_fires_on_its_grid_without_drift() {
        let mut c = core();
        let d = def(
            1,
            JobSpec::new("r", expr(TimeExpressionType::FixedRate, "250")),
        );
        c.handle(T0, Command::Add(d));
        assert_eq!(c.next_wakeup(), Some(T0 + 250));
        assert!(poll(&mut c, T0 + 249).is_empty());
        assert_eq!(poll(&mut c, T0 + 250), [(250, None)]);
        // Polled late (within the threshold): still the grid times, each exactly once.
        assert_eq!(poll(&mut c, T0 + 760), [(500, None), (750, None)]);
        assert_eq!(c.next_wakeup(), Some(T0 + 1_000));
    }

    #[test]
    fn fixed_delay_waits_for_completion() {
        let mut c = core();
        let d = def(
            1,
            JobSpec::new("d", expr(TimeExpressionType::FixedDelay, "100")),
        );
        c.handle(T0, Command::Add(Arc::clone(&d)));
        assert_eq!(poll(&mut c, T0 + 100), [(100, None)]);
        assert_eq!(
            c.next_wakeup(),
            None,
            "nothing armed while the run is in flight"
        );
        c.handle(
            T0 + 130,
            Command::Completed {
                def: d,
                finished_at: T0 + 130,
            },
        );
        assert_eq!(c.next_wakeup(), Some(T0 + 230));
        assert_eq!(poll(&mut c, T0 + 230), [(230, None)]);
    }

    #[test]
    fn misfire_policies() {
        // Threshold 1 s, a 1 s rate, asleep for 10 s: the triggers at 1..8 s are late by more
        // than the threshold (missed); 9 s and 10 s are merely late and always run.
        let on_time = [(9_000, None), (10_000, None)];
        for (policy, missed_runs, dropped) in [
            (MisfirePolicy::FireOnce, vec![1_000], Some((2_000, 7))),
            (
                MisfirePolicy::FireAll,
                vec![1_000, 2_000, 3_000, 4_000, 5_000, 6_000, 7_000, 8_000],
                None,
            ),
            (MisfirePolicy::Skip, vec![], Some((1_000, 8))),
        ] {
            let mut expected: Vec<(i64, Option<u64>)> =
                missed_runs.into_iter().map(|at| (at, None)).collect();
            expected.extend(on_time);
            expected.extend(dropped.map(|(at, n)| (at, Some(n))));
            let mut c = core();
            let spec =
                JobSpec::new("m", expr(TimeExpressionType::FixedRate, "1000")).with_misfire(policy);
            c.handle(T0, Command::Add(def(1, spec)));
            // Asleep for 10 s: triggers at 1 s .. 8 s are missed by more than the threshold.
            let got: Vec<(i64, Option<u64>)> = poll(&mut c, T0 + 10_000)
                .into_iter()
                .map(|(at, skip)| {
                    let missed = skip.map(|s| match s {
                        SkipReason::Misfired { missed } => missed,
                        other => panic!("unexpected skip {other:?}"),
                    });
                    (at, missed)
                })
                .collect();
            assert_eq!(got, expected, "{policy:?}");
            // Back on schedule after the catch-up: the next grid point after now.
            assert_eq!(c.next_wakeup(), Some(T0 + 11_000), "{policy:?}");
        }
    }

    #[test]
    fn fire_all_catches_up_at_most_the_shared_cap() {
        // 149 missed triggers (1 s .. 149 s): the oldest MAX_CATCH_UP run, the rest are reported
        // once; 150 s and 151 s are on time.
        let mut c = core();
        let spec = JobSpec::new("all", expr(TimeExpressionType::FixedRate, "1000"))
            .with_misfire(MisfirePolicy::FireAll);
        c.handle(T0, Command::Add(def(1, spec)));
        let got = poll(&mut c, T0 + 151_000);
        let cap = crate::schedule::MAX_CATCH_UP;
        let runs: Vec<i64> = got
            .iter()
            .filter(|(_, skip)| skip.is_none())
            .map(|(at, _)| *at)
            .collect();
        let mut expected: Vec<i64> = (1..=i64::from(cap)).map(|k| k * 1_000).collect();
        expected.extend([150_000, 151_000]);
        assert_eq!(runs, expected);
        let missed = 149 - u64::from(cap);
        assert_eq!(
            got.last(),
            Some(&(
                (i64::from(cap) + 1) * 1_000,
                Some(SkipReason::Misfired { missed })
            ))
        );
        assert_eq!(c.next_wakeup(), Some(T0 + 152_000));
    }

    #[test]
    fn max_instances_skips_while_running() {
        let mut c = core();
        let spec =
            JobSpec::new("x", expr(TimeExpressionType::FixedRate, "10")).with_max_instances(1);
        let d = def(1, spec);
        c.handle(T0, Command::Add(Arc::clone(&d)));
        let mut out = Vec::new();
        c.poll(T0 + 10, &mut out, usize::MAX);
        assert!(out[0].skip.is_none());
        assert_eq!(d.running.count(), 1);
        out.clear();
        c.poll(T0 + 20, &mut out, usize::MAX);
        assert_eq!(out[0].skip, Some(SkipReason::TooManyInstances));
        d.running.release();
        out.clear();
        c.poll(T0 + 30, &mut out, usize::MAX);
        assert!(out[0].skip.is_none());
    }

    #[test]
    fn disable_enable_and_remove() {
        let mut c = core();
        let d = def(
            1,
            JobSpec::new("x", expr(TimeExpressionType::FixedRate, "100")),
        );
        c.handle(T0, Command::Add(Arc::clone(&d)));
        c.handle(T0 + 50, Command::SetEnabled(Arc::clone(&d), false));
        assert_eq!(c.next_wakeup(), None);
        assert!(
            poll(&mut c, T0 + 500).is_empty(),
            "disabled: no fires, no misfires"
        );
        c.handle(T0 + 500, Command::SetEnabled(Arc::clone(&d), true));
        assert_eq!(c.next_wakeup(), Some(T0 + 600), "the grid is kept");
        c.handle(T0 + 550, Command::Remove(Arc::clone(&d)));
        assert_eq!(c.next_wakeup(), None);
        c.handle(T0 + 560, Command::SetEnabled(d, true));
        assert_eq!(c.next_wakeup(), None, "a removed job cannot be re-enabled");
    }

    #[test]
    fn manual_trigger_after_delay_and_after_removal() {
        let mut c = core();
        let d = def(1, JobSpec::new("api", expr(TimeExpressionType::Api, "")));
        c.handle(T0, Command::Add(Arc::clone(&d)));
        assert_eq!(c.next_wakeup(), None, "API jobs never fire on their own");
        for delay in [0, 40] {
            c.handle(
                T0,
                Command::Trigger {
                    def: Arc::clone(&d),
                    instance: InstanceId(100 + delay),
                    params: Some("p".into()),
                    delay_ms: delay,
                },
            );
        }
        assert_eq!(poll(&mut c, T0), [(0, None)]);
        c.handle(T0 + 1, Command::Remove(Arc::clone(&d)));
        assert_eq!(poll(&mut c, T0 + 40), [(40, Some(SkipReason::JobRemoved))]);
    }

    #[test]
    fn schedule_timers_and_manual_triggers_share_one_wheel_in_insertion_order() {
        let mut c = core();
        let rate = def(
            1,
            JobSpec::new("r", expr(TimeExpressionType::FixedRate, "50")),
        );
        let api = def(2, JobSpec::new("a", expr(TimeExpressionType::Api, "")));
        c.handle(T0, Command::Add(Arc::clone(&api)));
        let trigger = |instance: u64| Command::Trigger {
            def: Arc::clone(&api),
            instance: InstanceId(instance),
            params: Some(format!("#{instance}").into()),
            delay_ms: 50,
        };
        // Due at T0 + 50: a trigger, then the schedule timer, then another trigger.
        c.handle(T0, trigger(7));
        c.handle(T0, Command::Add(Arc::clone(&rate)));
        c.handle(T0, trigger(8));
        assert_eq!(c.triggers.len(), 2);
        let mut out = Vec::new();
        assert!(!c.poll(T0 + 50, &mut out, usize::MAX));
        let got: Vec<(u64, bool, Option<&str>, i64)> = out
            .iter()
            .map(|f| {
                (
                    f.def.id.0,
                    f.from_schedule,
                    f.instance_params.as_deref(),
                    f.scheduled_at - T0,
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                (2, false, Some("#7"), 50),
                (1, true, None, 50),
                (2, false, Some("#8"), 50)
            ]
        );
        assert_eq!(
            (out[0].instance, out[2].instance),
            (InstanceId(7), InstanceId(8))
        );
        assert!(c.triggers.is_empty(), "a fired trigger leaves the table");
        assert_eq!(c.next_wakeup(), Some(T0 + 100), "the schedule re-armed");
    }

    #[test]
    fn every_instant_has_its_own_tick_in_order() {
        let instants = [i64::MIN, -T0, -1, 0, 1, T0, T0 + 1, i64::MAX];
        for pair in instants.windows(2) {
            assert!(tick(pair[0]) < tick(pair[1]), "{pair:?}");
        }
        for at in instants {
            assert_eq!(instant(tick(at)), at);
        }
    }

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

    #[test]
    fn lifecycle_window_bounds_the_schedule() {
        let mut c = core();
        let spec = JobSpec::new("w", expr(TimeExpressionType::FixedRate, "100")).with_lifecycle(
            Lifecycle {
                start: Some(T0 + 1_000),
                end: Some(T0 + 1_250),
            },
        );
        c.handle(T0, Command::Add(def(1, spec)));
        assert_eq!(
            c.next_wakeup(),
            Some(T0 + 1_100),
            "anchored at the window's start"
        );
        assert_eq!(poll(&mut c, T0 + 1_100), [(1_100, None)]);
        assert_eq!(poll(&mut c, T0 + 1_200), [(1_200, None)]);
        assert_eq!(c.next_wakeup(), None, "1300 is past the end");
    }

    #[test]
    fn resume_after_replays_missed_triggers_by_policy() {
        let mut c = core();
        let spec = JobSpec::new("r", expr(TimeExpressionType::FixedRate, "1000"))
            .with_resume_after(T0 - 5_000)
            .with_misfire(MisfirePolicy::FireOnce);
        c.handle(T0, Command::Add(def(1, spec)));
        // Missed by more than the 1 s threshold: -4 s, -3 s, -2 s; FIRE_ONCE runs the first and
        // drops two. -1 s and 0 are merely late and run.
        assert_eq!(
            poll(&mut c, T0),
            [
                (-4_000, None),
                (-1_000, None),
                (0, None),
                (-3_000, Some(SkipReason::Misfired { missed: 2 }))
            ]
        );
        assert_eq!(c.next_wakeup(), Some(T0 + 1_000));
    }
}
