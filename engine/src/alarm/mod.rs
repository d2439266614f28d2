//! Alarm rules and their evaluation: which alarms a job's runs raise, decided from instance
//! events and a `now` passed in.
//!
//! [`AlarmRules`] are stored with the job. [`JobAlarms`] holds one job's evaluation state and
//! is driven sans-IO, like the scheduling core: the caller feeds it what happened
//! ([`JobAlarms::on_dispatched`], [`JobAlarms::on_finished`]) and asks it what is due
//! ([`JobAlarms::poll`], waking at [`JobAlarms::next_check`]); each call returns the
//! [`Alarm`]s to raise. It reads no clock and does no I/O, so every rule is tested on virtual
//! time.
//!
//! | rule | fires when | at most |
//! |---|---|---|
//! | `failures` | the `threshold`-th failed run within `window_ms` ends | once per `silence_ms` |
//! | `late_start_ms` | a run is dispatched more than that after its trigger time | once per run |
//! | `overrun_ms` | a run is still going (or ended) that long after its dispatch | once per run |
//! | `dead_man_ms` | no run succeeded within that long (since the last success, or since the rules were set) | once per deadline |
//! | `recovered` | a run succeeds after the job raised any other alarm | once per alarmed spell |
//!
//! Every alarm has a stable [`Alarm::id`] built from what caused it — the job, the rule and the
//! run (or the missed deadline) — so a receiver de-duplicates an alarm delivered twice, and
//! evaluating the same events again gives the same ids.
//!
//! Bounds: a job tracks at most [`MAX_TRACKED_RUNS`] running instances (the oldest are
//! forgotten beyond) and at most `threshold` failure times.

#![forbid(unsafe_code)]
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
#![cfg_attr(
    test,
    allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)
)]

use std::collections::{BTreeMap, VecDeque};

use rkyv::{Archive, Deserialize as RkyvDeserialize, Serialize as RkyvSerialize};
use serde::{Deserialize, Serialize};

use crate::ids::{InstanceId, JobId};
use crate::time_expression::EpochMs;

pub mod channel;
#[cfg(feature = "server")]
pub mod deliver;
#[cfg(test)]
mod tests;

/// Most running instances of one job whose overrun is watched.
pub const MAX_TRACKED_RUNS: usize = 1024;
/// Most channels one rule set names.
pub const MAX_RULE_CHANNELS: usize = 16;
/// Largest failure threshold.
pub const MAX_FAILURE_THRESHOLD: u32 = 1000;

/// The failures rule: alarm when at least `threshold` runs failed within `window_ms`, then
/// stay silent for `silence_ms` (PowerJob's threshold, statistic window and silence window).
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    Archive,
    RkyvSerialize,
    RkyvDeserialize,
)]
#[serde(deny_unknown_fields)]
#[rkyv(derive(Debug))]
pub struct FailureRule {
    /// Failed runs that raise the alarm, 1 to [`MAX_FAILURE_THRESHOLD`].
    pub threshold: u32,
    /// The window the failures are counted in, ms; 0 = no window (every failure counts).
    #[serde(default)]
    pub window_ms: u64,
    /// No further failures alarm for this long after one, ms; default 0.
    #[serde(default)]
    pub silence_ms: u64,
}

/// A job's alarm rules; the default raises nothing.
#[derive(
    Clone,
    Debug,
    Default,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    Archive,
    RkyvSerialize,
    RkyvDeserialize,
)]
#[serde(deny_unknown_fields)]
#[rkyv(derive(Debug))]
pub struct AlarmRules {
    /// The failures rule; default none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failures: Option<FailureRule>,
    /// Alarm when a run is dispatched more than this many ms after its trigger time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub late_start_ms: Option<u64>,
    /// Alarm when a run is still going this many ms after its dispatch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overrun_ms: Option<u64>,
    /// Alarm when no run succeeded for this many ms (a dead man's switch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_man_ms: Option<u64>,
    /// Send one notice when a job that alarmed succeeds again; default false.
    #[serde(default, skip_serializing_if = "is_false")]
    pub recovered: bool,
    /// Names of the app's channels the alarms go to (at most [`MAX_RULE_CHANNELS`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub channels: Vec<String>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl AlarmRules {
    /// True when no rule is set: the job raises nothing.
    pub fn is_empty(&self) -> bool {
        self.failures.is_none()
            && self.late_start_ms.is_none()
            && self.overrun_ms.is_none()
            && self.dead_man_ms.is_none()
            && !self.recovered
    }

    /// Checks the rules; the error is `(field, message)` with the field's API name.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if let Some(f) = &self.failures {
            if !(1..=MAX_FAILURE_THRESHOLD).contains(&f.threshold) {
                return Err((
                    "alarm.failures.threshold",
                    format!("must be 1 to {MAX_FAILURE_THRESHOLD}, got {}", f.threshold),
                ));
            }
        }
        for (field, v) in [
            (
                "alarm.failures.window_ms",
                self.failures.map(|f| f.window_ms),
            ),
            (
                "alarm.failures.silence_ms",
                self.failures.map(|f| f.silence_ms),
            ),
            ("alarm.late_start_ms", self.late_start_ms),
            ("alarm.overrun_ms", self.overrun_ms),
            ("alarm.dead_man_ms", self.dead_man_ms),
        ] {
            if v.is_some_and(|v| v > i64::MAX as u64 / 2) {
                return Err((field, "must fit in i64 milliseconds".to_owned()));
            }
        }
        for (field, v) in [
            ("alarm.overrun_ms", self.overrun_ms),
            ("alarm.dead_man_ms", self.dead_man_ms),
        ] {
            if v == Some(0) {
                return Err((field, "must be at least 1".to_owned()));
            }
        }
        if self.channels.len() > MAX_RULE_CHANNELS {
            return Err((
                "alarm.channels",
                format!("at most {MAX_RULE_CHANNELS} channels"),
            ));
        }
        if self.channels.iter().any(|c| c.trim().is_empty()) {
            return Err(("alarm.channels", "names must not be empty".to_owned()));
        }
        Ok(())
    }
}

/// Which rule raised an alarm.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    Archive,
    RkyvSerialize,
    RkyvDeserialize,
)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[rkyv(derive(Debug, PartialEq, Eq))]
pub enum AlarmKind {
    /// Too many failed runs within the window.
    Failures,
    /// A run was dispatched late.
    LateStart,
    /// A run went on too long.
    Overrun,
    /// No successful run within the dead man's switch.
    DeadMan,
    /// The job succeeded again after alarming.
    Recovered,
}

impl AlarmKind {
    /// The kind's name in alarm ids and bodies (`failures`, `late_start`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            AlarmKind::Failures => "failures",
            AlarmKind::LateStart => "late_start",
            AlarmKind::Overrun => "overrun",
            AlarmKind::DeadMan => "dead_man",
            AlarmKind::Recovered => "recovered",
        }
    }
}

/// An alarm to raise.
#[derive(Clone, Debug, PartialEq, Eq)]
#[must_use = "an alarm that is not written is lost"]
pub struct Alarm {
    /// Stable id: `job-{job}-{kind}-{instance}` for an alarm a run caused,
    /// `job-{job}-dead_man-{deadline}` for a missed deadline (ms since the epoch).
    pub id: String,
    /// The job.
    pub job_id: JobId,
    /// The run that caused it, if one did.
    pub instance_id: Option<InstanceId>,
    /// The rule.
    pub kind: AlarmKind,
    /// When it was raised, ms since the epoch.
    pub raised_at: EpochMs,
    /// A sentence saying what happened.
    pub message: String,
}

/// How a run ended, as the rules see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunOutcome {
    /// SUCCEED.
    Succeeded,
    /// FAILED (after its retries), or stopped by a timeout.
    Failed,
    /// CANCELED or STOPPED by a user: neither a failure nor a success.
    Neutral,
}

/// One job's evaluation state (see the module docs for the call order and the rules).
#[derive(Clone, Debug)]
pub struct JobAlarms {
    job: JobId,
    rules: AlarmRules,
    /// End times of recent failed runs, oldest first, at most `threshold` of them.
    failures: VecDeque<EpochMs>,
    /// When the failures rule last fired.
    last_failures_alarm: Option<EpochMs>,
    /// A non-recovery alarm was raised and no run succeeded since.
    alarmed: bool,
    /// The last success, or when evaluation started.
    last_success: EpochMs,
    /// The dead man's deadline that already fired (it fires once per deadline).
    dead_man_fired: Option<EpochMs>,
    /// Running instances: dispatch time and whether their overrun fired.
    running: BTreeMap<InstanceId, (EpochMs, bool)>,
}

impl JobAlarms {
    /// Starts evaluating `rules` for `job` at `now` (the dead man's switch counts from here).
    pub fn new(job: JobId, rules: AlarmRules, now: EpochMs) -> JobAlarms {
        JobAlarms {
            job,
            rules,
            failures: VecDeque::new(),
            last_failures_alarm: None,
            alarmed: false,
            last_success: now,
            dead_man_fired: None,
            running: BTreeMap::new(),
        }
    }

    /// The rules evaluated.
    pub fn rules(&self) -> &AlarmRules {
        &self.rules
    }

    /// Replaces the rules (a job update), keeping what was observed.
    pub fn set_rules(&mut self, rules: AlarmRules) {
        self.rules = rules;
        let cap = self.failure_cap();
        while self.failures.len() > cap {
            self.failures.pop_front();
        }
    }

    fn failure_cap(&self) -> usize {
        self.rules
            .failures
            .map_or(0, |f| usize::try_from(f.threshold).unwrap_or(usize::MAX))
    }

    fn alarm(
        &mut self,
        kind: AlarmKind,
        instance: Option<InstanceId>,
        tail: String,
        now: EpochMs,
        message: String,
    ) -> Alarm {
        if kind != AlarmKind::Recovered {
            self.alarmed = true;
        }
        Alarm {
            id: format!("job-{}-{}-{tail}", self.job.0, kind.as_str()),
            job_id: self.job,
            instance_id: instance,
            kind,
            raised_at: now,
            message,
        }
    }

    /// `instance`, triggered at `trigger_at`, was dispatched at `now`.
    pub fn on_dispatched(
        &mut self,
        now: EpochMs,
        instance: InstanceId,
        trigger_at: Option<EpochMs>,
    ) -> Vec<Alarm> {
        let mut out = Vec::new();
        if self.rules.overrun_ms.is_some() {
            self.running.entry(instance).or_insert((now, false));
            while self.running.len() > MAX_TRACKED_RUNS {
                self.running.pop_first();
            }
        }
        if let (Some(limit), Some(trigger)) = (self.rules.late_start_ms, trigger_at) {
            let late = now.saturating_sub(trigger);
            if late > i64::try_from(limit).unwrap_or(i64::MAX) {
                out.push(self.alarm(
                    AlarmKind::LateStart,
                    Some(instance),
                    instance.0.to_string(),
                    now,
                    format!("{instance} of {} started {late} ms after its trigger time (limit {limit} ms)", self.job),
                ));
            }
        }
        out
    }

    /// `instance` ended at `now` with `outcome`; `started_at` is its dispatch time when known
    /// (an instance dispatched before a restart is not tracked).
    pub fn on_finished(
        &mut self,
        now: EpochMs,
        instance: InstanceId,
        outcome: RunOutcome,
        started_at: Option<EpochMs>,
    ) -> Vec<Alarm> {
        let mut out = Vec::new();
        let tracked = self.running.remove(&instance);
        if let Some(limit) = self.rules.overrun_ms {
            let already = tracked.is_some_and(|(_, fired)| fired);
            let start = tracked.map(|(t, _)| t).or(started_at);
            if let (false, Some(start)) = (already, start) {
                let took = now.saturating_sub(start);
                if took >= i64::try_from(limit).unwrap_or(i64::MAX) {
                    out.push(self.alarm(
                        AlarmKind::Overrun,
                        Some(instance),
                        instance.0.to_string(),
                        now,
                        format!(
                            "{instance} of {} ran {took} ms (limit {limit} ms)",
                            self.job
                        ),
                    ));
                }
            }
        }
        match outcome {
            RunOutcome::Succeeded => {
                self.last_success = now;
                self.dead_man_fired = None;
                self.failures.clear();
                if self.alarmed {
                    self.alarmed = false;
                    if self.rules.recovered {
                        out.push(self.alarm(
                            AlarmKind::Recovered,
                            Some(instance),
                            instance.0.to_string(),
                            now,
                            format!("{} recovered: {instance} succeeded", self.job),
                        ));
                    }
                }
            }
            RunOutcome::Failed => {
                if let Some(rule) = self.rules.failures {
                    self.failures.push_back(now);
                    let window = i64::try_from(rule.window_ms).unwrap_or(i64::MAX);
                    if rule.window_ms > 0 {
                        while self
                            .failures
                            .front()
                            .is_some_and(|t| now.saturating_sub(*t) > window)
                        {
                            self.failures.pop_front();
                        }
                    }
                    let cap = self.failure_cap();
                    while self.failures.len() > cap {
                        self.failures.pop_front();
                    }
                    let silence = i64::try_from(rule.silence_ms).unwrap_or(i64::MAX);
                    let silent = self
                        .last_failures_alarm
                        .is_some_and(|t| now.saturating_sub(t) < silence);
                    if self.failures.len() >= cap && !silent {
                        self.last_failures_alarm = Some(now);
                        let n = self.failures.len();
                        out.push(self.alarm(
                            AlarmKind::Failures,
                            Some(instance),
                            instance.0.to_string(),
                            now,
                            format!(
                                "{} failed {n} times within {} ms (last: {instance})",
                                self.job, rule.window_ms
                            ),
                        ));
                    }
                }
            }
            RunOutcome::Neutral => {}
        }
        out
    }

    /// The time-driven rules (overrun of running instances, the dead man's switch) at `now`.
    pub fn poll(&mut self, now: EpochMs) -> Vec<Alarm> {
        let mut out = Vec::new();
        if let Some(limit) = self.rules.overrun_ms {
            let limit_ms = i64::try_from(limit).unwrap_or(i64::MAX);
            let due: Vec<(InstanceId, EpochMs)> = self
                .running
                .iter()
                .filter(|(_, (start, fired))| !fired && now.saturating_sub(*start) >= limit_ms)
                .map(|(id, (start, _))| (*id, *start))
                .collect();
            for (id, start) in due {
                if let Some(entry) = self.running.get_mut(&id) {
                    entry.1 = true;
                }
                let took = now.saturating_sub(start);
                out.push(self.alarm(
                    AlarmKind::Overrun,
                    Some(id),
                    id.0.to_string(),
                    now,
                    format!(
                        "{id} of {} still running after {took} ms (limit {limit} ms)",
                        self.job
                    ),
                ));
            }
        }
        if let Some(deadline) = self.dead_man_deadline() {
            if now >= deadline && self.dead_man_fired != Some(deadline) {
                self.dead_man_fired = Some(deadline);
                let since = now.saturating_sub(self.last_success);
                out.push(self.alarm(
                    AlarmKind::DeadMan,
                    None,
                    deadline.to_string(),
                    now,
                    format!("{} has had no successful run for {since} ms", self.job),
                ));
            }
        }
        out
    }

    fn dead_man_deadline(&self) -> Option<EpochMs> {
        let x = i64::try_from(self.rules.dead_man_ms?).ok()?;
        Some(self.last_success.saturating_add(x))
    }

    /// When [`poll`](JobAlarms::poll) has something to check next; `None` = nothing pending.
    pub fn next_check(&self) -> Option<EpochMs> {
        let dead_man = self
            .dead_man_deadline()
            .filter(|d| self.dead_man_fired != Some(*d));
        let overrun = self.rules.overrun_ms.and_then(|limit| {
            let limit = i64::try_from(limit).ok()?;
            self.running
                .values()
                .filter(|(_, fired)| !fired)
                .map(|(start, _)| start.saturating_add(limit))
                .min()
        });
        match (dead_man, overrun) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}
