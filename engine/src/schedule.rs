//! The scheduling rules shared by the embedded scheduler and the server: when a job fires first,
//! what fires when one of its triggers comes due (the misfire walk), and the max-instances
//! reservation.
//!
//! Pure: no I/O, no clock (instants come in as [`EpochMs`] arguments), no allocation on the
//! common path when [`Schedule::plan_into`] reuses a [`FirePlan`].
//!
//! # The fire plan
//!
//! A scheduler arms one timer per job, at its next trigger. When it comes due (at `now`, maybe
//! late), [`Schedule::plan`] walks every trigger from `due` up to `now`, oldest first:
//!
//! ```text
//!            missed: the policy decides           on time: always fire
//!   due ─────────────────────────────────────┬──────────────────────────┤ now ──► next
//!    t0   t1   t2   t3   ...                  now - threshold_ms
//!   FIRE_ALL   the first MAX_CATCH_UP fire, the rest are dropped
//!   FIRE_ONCE  the first one fires, the rest are dropped
//!   SKIP       all are dropped
//! ```
//!
//! - A trigger late by at most `threshold_ms` is on time and fires. A trigger later than that
//!   was missed; the job's [`MisfirePolicy`] says how many of the missed ones fire (the oldest
//!   first, each as its own instance with its own trigger time), the rest are dropped and
//!   counted in [`FirePlan::dropped`].
//! - `next` is the first trigger strictly after `now`, computed from the last trigger walked.
//! - FIXED_DELAY never misfires: it has one pending trigger at a time, armed from the
//!   completion of the run the previous one started, so its plan fires `due` and arms nothing.
//! - API and WORKFLOW never fire on their own: their plan is empty.
//! - Triggers outside the job's [`Lifecycle`] never fire and are not counted: a `due` before
//!   the window starts begins the walk at the window's first trigger; past its end, nothing.
//! - A `due` later than `now` (a timer that rounded) is treated as on time at `due`.
//!
//! One plan covers every trigger due by `now`: the caller creates `fires.len()` instances and
//! arms `next`, and never sees a trigger of this walk again.
//!
//! The walk is bounded. Each part (missed, on time) visits at most [`MAX_WALK_STEPS`]
//! triggers: a FIXED_RATE job with a 1 ms period missed for a year costs 100 000 steps, then
//! jumps to the first on-time trigger, and [`FirePlan::truncated`] says that `dropped` is a
//! lower bound. The on-time part holds at most `threshold_ms + 1` triggers (triggers are
//! distinct milliseconds), so it is cut only when the threshold is 100 s or more.
//!
//! ## Why this rule
//!
//! Both schedulers had their own copy of the walk, and they had drifted. This one keeps what
//! they agreed on (the threshold test, the oldest missed triggers fire first, on-time triggers
//! always fire, FIXED_DELAY never misfires) and settles the rest:
//! - The FIRE_ALL cap is one constant, [`MAX_CATCH_UP`], not a per-scheduler setting: a job's
//!   misfire behaviour must not depend on which scheduler runs it.
//! - The step bound counts every trigger visited, so no input makes a plan expensive, and a
//!   cut walk resumes at the first on-time trigger rather than at `now`: triggers within the
//!   threshold are never lost to the bound on the missed ones.
//! - On-time triggers already due by `now` fire in the same plan instead of being re-armed one
//!   at a time in the past: each trigger is decided exactly once, against one `now`.
//!
//! # The first trigger
//!
//! [`Schedule::first_trigger`] is the trigger to arm when a job is scheduled or rescheduled
//! (created, enabled, updated, restarted, a FIXED_DELAY run completed);
//! [`Schedule::next_after_fire`] the one to arm after a fire without a misfire walk.
//!
//! # Max instances
//!
//! [`RunningCount`] is a job's count of instances in progress: [`RunningCount::try_reserve`]
//! takes a slot if `max_instances` allows, [`RunningCount::release`] returns it.

#![forbid(unsafe_code)]
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::sync::atomic::{AtomicU32, Ordering};

use crate::time_expression::{EpochMs, Lifecycle, MisfirePolicy, TimeExpression};

/// Most missed triggers a FIRE_ALL job runs in one catch-up; the older ones fire, the rest are
/// dropped. It bounds the burst of instances a long outage can release at once (100 instances
/// of a job is a large burst for any worker pool, and a job that needs every missed run should
/// not rely on a scheduler outage being short).
pub const MAX_CATCH_UP: u32 = 100;

/// Most triggers one part of a walk (the missed ones, the on-time ones) visits. Computing a
/// trigger costs about 0.1 µs (FIXED_RATE, a per-second CRON; release build), so a walk cut
/// at this bound costs milliseconds, however long the job was missed.
pub const MAX_WALK_STEPS: u32 = 100_000;

/// How a job's schedule fires: its time expression, lifecycle window and misfire policy.
///
/// A view of borrowed fields, cheap to build from any job record.
#[derive(Debug, Clone, Copy)]
pub struct Schedule<'a> {
    /// When the job fires.
    pub expression: &'a TimeExpression,
    /// The window outside which it never fires.
    pub lifecycle: &'a Lifecycle,
    /// What happens to triggers missed by more than the misfire threshold.
    pub misfire: MisfirePolicy,
}

/// What to do now that a trigger came due: see the module documentation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[must_use]
pub struct FirePlan {
    /// Each trigger time to create an instance for, ascending, all at or before `now`.
    pub fires: Vec<EpochMs>,
    /// The next trigger to arm, strictly after `now`; `None`: nothing to arm (the schedule
    /// ended, FIXED_DELAY waits for a completion, API and WORKFLOW never fire on their own).
    pub next: Option<EpochMs>,
    /// Missed triggers the misfire policy dropped.
    pub dropped: u64,
    /// The oldest dropped trigger, if any (to report the drop against).
    pub first_dropped: Option<EpochMs>,
    /// The walk hit [`MAX_WALK_STEPS`]: triggers it skipped over are neither fired nor counted
    /// in `dropped`, which is then a lower bound.
    pub truncated: bool,
}

impl FirePlan {
    /// An empty plan whose `fires` can hold `capacity` triggers without allocating.
    pub fn with_capacity(capacity: usize) -> FirePlan {
        FirePlan {
            fires: Vec::with_capacity(capacity),
            ..FirePlan::default()
        }
    }

    fn clear(&mut self) {
        self.fires.clear();
        self.next = None;
        self.dropped = 0;
        self.first_dropped = None;
        self.truncated = false;
    }

    fn drop_trigger(&mut self, at: EpochMs) {
        self.dropped = self.dropped.saturating_add(1);
        self.first_dropped.get_or_insert(at);
    }
}

impl Schedule<'_> {
    /// The first trigger strictly after `after` of a schedule anchored at `anchor`: the one to
    /// arm when the job is (re)scheduled. `None` when it never fires again (API, WORKFLOW, past
    /// the lifecycle's end, past CRON's last match).
    ///
    /// FIXED_RATE fires at `a + k·period_ms` and FIXED_DELAY at `a + k·delay_ms` (k >= 1), with
    /// `a = max(anchor, lifecycle.start)`: a window that opens later starts the grid at its
    /// start, whenever the job was created. The anchor is the moment the schedule started
    /// (FIXED_RATE), the previous run's completion or the moment the job was enabled
    /// (FIXED_DELAY); CRON and DAILY_TIME_INTERVAL ignore it. Usually `after == anchor`;
    /// `after` is later to resume a FIXED_RATE grid (a re-enabled job). To replay triggers
    /// already past (a restart that knows the last trigger that ran), pass that trigger as
    /// both: the result may be before `now`, and its plan applies the misfire policy.
    pub fn first_trigger(&self, anchor: EpochMs, after: EpochMs) -> Option<EpochMs> {
        let anchor = match self.lifecycle.start {
            Some(start) => anchor.max(start),
            None => anchor,
        };
        self.expression.next_within(self.lifecycle, anchor, after)
    }

    /// The trigger after a fire at `at` (a trigger of this schedule): `None` for FIXED_DELAY
    /// (it waits for the run's completion), API and WORKFLOW, and past the lifecycle's end.
    pub fn next_after_fire(&self, at: EpochMs) -> Option<EpochMs> {
        match self.expression {
            TimeExpression::FixedDelay { .. } => None,
            _ => self.step(at),
        }
    }

    /// The trigger after `at`, with `at` as FIXED_RATE's anchor: a trigger lies on its own
    /// grid, so this is the grid's next point.
    fn step(&self, at: EpochMs) -> Option<EpochMs> {
        self.expression.next_within(self.lifecycle, at, at)
    }

    /// The walk's first trigger: `due` itself, unless it lies outside the window.
    fn walk_start(&self, due: EpochMs) -> Option<EpochMs> {
        if self.lifecycle.contains(due) {
            Some(due)
        } else {
            self.step(due)
        }
    }

    /// The trigger times in `[from, to)`, ascending, at most `cap` of them: what a backfill
    /// of the range runs. CRON and DAILY_TIME_INTERVAL give their own trigger times;
    /// FIXED_RATE and FIXED_DELAY a grid that starts at `from` (`from`, `from + period`, ...),
    /// since a past range has no runs of its own to space them from. Triggers outside the
    /// lifecycle window are left out. The walk visits at most `cap + 1` triggers.
    pub fn backfill_times(
        &self,
        from: EpochMs,
        to: EpochMs,
        cap: usize,
    ) -> Result<Vec<EpochMs>, BackfillError> {
        if from >= to {
            return Err(BackfillError::EmptyRange { from, to });
        }
        if matches!(
            self.expression,
            TimeExpression::Api | TimeExpression::Workflow
        ) {
            return Err(BackfillError::NoTriggers);
        }
        // The grid is `anchor + k·step` for k >= 1: anchor one step before `from` so that
        // `from` is its first point.
        let anchor = match fixed_step(self.expression) {
            Some(step) => from.saturating_sub(i64::try_from(step).unwrap_or(i64::MAX)),
            None => from,
        };
        let mut out = Vec::new();
        let mut t = self
            .expression
            .next_within(self.lifecycle, anchor, from.saturating_sub(1));
        while let Some(at) = t.filter(|at| *at < to) {
            if out.len() == cap {
                return Err(BackfillError::TooMany { cap });
            }
            out.push(at);
            t = self.step(at);
        }
        debug_assert!(out.windows(2).all(|w| w.first() < w.last()), "ascending");
        Ok(out)
    }

    /// What fires now that the trigger `due` came due at `now`, with a misfire threshold of
    /// `threshold_ms` milliseconds: see the module documentation.
    pub fn plan(&self, threshold_ms: u64, due: EpochMs, now: EpochMs) -> FirePlan {
        let mut plan = FirePlan::with_capacity(1);
        self.plan_into(threshold_ms, due, now, &mut plan);
        plan
    }

    /// [`Schedule::plan`] into `plan` (cleared first), reusing its allocation.
    pub fn plan_into(&self, threshold_ms: u64, due: EpochMs, now: EpochMs, plan: &mut FirePlan) {
        plan.clear();
        let now = now.max(due);
        match self.expression {
            TimeExpression::Api | TimeExpression::Workflow => return,
            TimeExpression::FixedDelay { .. } => {
                match self.walk_start(due) {
                    Some(at) if at <= now => plan.fires.push(at),
                    other => plan.next = other,
                }
                return;
            }
            TimeExpression::FixedRate { .. }
            | TimeExpression::Cron(_)
            | TimeExpression::DailyTimeInterval(_) => {}
        }
        let threshold = i64::try_from(threshold_ms).unwrap_or(i64::MAX);
        // Triggers at or after `on_time` are late by at most the threshold.
        let on_time = now.saturating_sub(threshold);
        let cap = match self.misfire {
            MisfirePolicy::FireAll => MAX_CATCH_UP,
            MisfirePolicy::FireOnce => 1,
            MisfirePolicy::Skip => 0,
        };

        // The missed triggers: the oldest `cap` fire, the rest are dropped.
        let mut t = self.walk_start(due);
        let mut missed_fired = 0u32;
        let mut steps = 0u32;
        while let Some(at) = t.filter(|at| *at < on_time) {
            if steps == MAX_WALK_STEPS {
                // Jump to the first on-time trigger; `at` and the ones up to it go uncounted.
                plan.truncated = true;
                t = self
                    .expression
                    .next_within(self.lifecycle, at, on_time.saturating_sub(1));
                break;
            }
            steps += 1;
            if missed_fired < cap {
                plan.fires.push(at);
                missed_fired += 1;
            } else {
                plan.drop_trigger(at);
            }
            t = self.step(at);
        }

        // The on-time triggers: all fire.
        let mut steps = 0u32;
        while let Some(at) = t.filter(|at| *at <= now) {
            if steps == MAX_WALK_STEPS {
                plan.truncated = true;
                t = self.expression.next_within(self.lifecycle, at, now);
                break;
            }
            steps += 1;
            plan.fires.push(at);
            t = self.step(at);
        }
        plan.next = t;

        debug_assert!(plan.next.is_none_or(|n| n > now), "next is after now");
        debug_assert!(
            plan.fires.windows(2).all(|w| w.first() < w.last()),
            "fires ascend"
        );
        debug_assert!(plan.fires.last().is_none_or(|f| *f <= now));
        debug_assert!(plan.dropped == 0 || missed_fired == cap);
    }
}

/// Most runs one backfill creates: a range holding more trigger times is refused whole, so
/// that a backfill never does part of what was asked.
pub const MAX_BACKFILL_RUNS: usize = 1000;

/// Why a backfill range has no plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BackfillError {
    /// `from` is not before `to`.
    #[error("the range is empty: from {from} is not before to {to}")]
    EmptyRange {
        /// Start of the range (inclusive), epoch ms.
        from: EpochMs,
        /// End of the range (exclusive), epoch ms.
        to: EpochMs,
    },
    /// API and WORKFLOW jobs have no trigger times of their own.
    #[error("the job's time expression has no trigger times to backfill")]
    NoTriggers,
    /// The range holds more than `cap` trigger times.
    #[error("the range holds more than {cap} trigger times; narrow it")]
    TooMany {
        /// The cap that was passed.
        cap: usize,
    },
}

/// A FIXED_RATE or FIXED_DELAY grid's step, ms.
fn fixed_step(expression: &TimeExpression) -> Option<u64> {
    match expression {
        TimeExpression::FixedRate { period_ms } => Some(*period_ms),
        TimeExpression::FixedDelay { delay_ms } => Some(*delay_ms),
        _ => None,
    }
}

/// A job's instances in progress, against its `max_instances`.
///
/// Orderings: a reservation is an Acquire read-modify-write and a release a Release one, so a
/// slot freed by a finished run is reused only after everything that run did. Every
/// read-modify-write of the one counter is totally ordered, so the limit holds under any
/// number of concurrent reservers.
#[derive(Debug, Default)]
pub struct RunningCount(AtomicU32);

impl RunningCount {
    /// No instance in progress.
    pub const fn new() -> RunningCount {
        RunningCount(AtomicU32::new(0))
    }

    /// Takes a slot if fewer than `max` instances are in progress (`max` 0: unlimited).
    /// Returns whether it did; every successful reservation is paired with one
    /// [`RunningCount::release`].
    pub fn try_reserve(&self, max: u32) -> bool {
        self.0
            .fetch_update(Ordering::Acquire, Ordering::Relaxed, |n| {
                if max != 0 && n >= max {
                    None
                } else {
                    n.checked_add(1)
                }
            })
            .is_ok()
    }

    /// Returns a slot taken by [`RunningCount::try_reserve`].
    pub fn release(&self) {
        let before = self
            .0
            .fetch_update(Ordering::Release, Ordering::Relaxed, |n| n.checked_sub(1));
        debug_assert!(before.is_ok(), "released a slot that was not reserved");
    }

    /// Instances in progress.
    pub fn count(&self) -> u32 {
        self.0.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn running_count_honours_the_limit() {
        let c = RunningCount::new();
        assert!(c.try_reserve(2));
        assert!(c.try_reserve(2));
        assert!(!c.try_reserve(2), "the limit is reached");
        assert_eq!(c.count(), 2);
        c.release();
        assert!(c.try_reserve(2), "a released slot is reused");
        assert!(!c.try_reserve(1), "a lower limit than the count refuses");
        assert_eq!(c.count(), 2);
    }

    #[test]
    fn running_count_zero_is_unlimited() {
        let c = RunningCount::new();
        for _ in 0..1000 {
            assert!(c.try_reserve(0));
        }
        assert_eq!(c.count(), 1000);
        for _ in 0..1000 {
            c.release();
        }
        assert_eq!(c.count(), 0);
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "released a slot that was not reserved")]
    fn running_count_underflow_is_caught() {
        RunningCount::new().release();
    }

    #[test]
    fn running_count_under_contention_never_exceeds_the_limit() {
        use std::sync::atomic::AtomicU32 as Peak;
        let c = RunningCount::new();
        let peak = Peak::new(0);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..10_000 {
                        if c.try_reserve(3) {
                            peak.fetch_max(c.count(), Ordering::Relaxed);
                            c.release();
                        }
                    }
                });
            }
        });
        assert!(peak.load(Ordering::Relaxed) <= 3);
        assert_eq!(c.count(), 0);
    }
}
