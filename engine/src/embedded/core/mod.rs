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
//! - A job has at most one schedule timer in the wheel (its key in `JobDef::slot`, its
//!   trigger time in `next_fire_at`); a disabled or removed job has none. So a trigger can
//!   never fire twice.
//! - The core keeps no table of jobs: each wheel entry and each command carries the job's
//!   `Arc<JobDef>`, and the per-job scheduling state (the timer's key or the anchor, the
//!   flags) lives in the `JobDef`, where only the driver thread writes it. A scheduled fire costs no map lookup, and a job costs the
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

mod def;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::ids::InstanceId;
use crate::schedule::FirePlan;
use crate::time_expression::{EpochMs, TimeExpression};
use crate::wheel::{TimerKey, TimerWheel};

use super::report::SkipReason;

pub(crate) use def::JobDef;
use def::{AWAITING_COMPLETION, ENABLED, SCHEDULED};

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
                    self.arm(&def, after, after);
                }
            }
            Command::Remove(def) => {
                def.set_flag(SCHEDULED, false);
                def.set_flag(ENABLED, false);
                if let Some(key) = def.disarm() {
                    self.wheel.cancel(key);
                }
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
                self.arm(&def, finished_at, finished_at);
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
            if let Some(key) = def.disarm() {
                self.wheel.cancel(key);
            }
            return;
        }
        // A fixed delay counts from the moment the job is enabled again; other
        // expressions keep their grid. The disabled period is not a misfire.
        let anchor = if matches!(def.spec.expression(), TimeExpression::FixedDelay { .. }) {
            now
        } else {
            def.anchor()
        };
        self.arm(def, anchor, now);
    }

    /// Arms the job's schedule timer at its first trigger strictly after `after` on a
    /// schedule anchored at `anchor`, if any.
    fn arm(&mut self, def: &Arc<JobDef>, anchor: EpochMs, after: EpochMs) {
        let next = def.spec.schedule().first_trigger(anchor, after);
        self.arm_at(def, next);
    }

    /// Arms the job's schedule timer at `next` (`None`: disarms it).
    fn arm_at(&mut self, def: &Arc<JobDef>, next: Option<EpochMs>) {
        if let Some(key) = def.disarm() {
            self.wheel.cancel(key);
        }
        if let Some(due) = next {
            def.set_armed(due, self.wheel.insert(tick(due), Arc::clone(def)));
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
                None => {
                    debug_assert_eq!(def.armed_timer(), Some(expired.key), "the job's timer");
                    self.on_due(now, def, due, out);
                }
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
        // The timer came out of the wheel; its key is stale.
        def.disarm();
        if !def.flag(SCHEDULED) || !def.flag(ENABLED) {
            return;
        }
        let threshold_ms = self.config.misfire_threshold_ms;
        let mut plan = std::mem::take(&mut self.plan);
        def.spec
            .schedule()
            .plan_into(threshold_ms, due, now, &mut plan);

        let fixed_delay = matches!(def.spec.expression(), TimeExpression::FixedDelay { .. });
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
            } else {
                // Nothing ran, so no completion will come: count the delay from now.
                self.arm(&def, now, now);
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
    if !def.try_reserve(def.spec.max_instances()) {
        counters.skipped.fetch_add(1, Ordering::Relaxed);
        return Some(SkipReason::TooManyInstances);
    }
    counters.fired.fetch_add(1, Ordering::Relaxed);
    None
}
