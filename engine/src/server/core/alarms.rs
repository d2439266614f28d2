//! Alarm evaluation: the rules of a job are evaluated at each final transition of its
//! instances (the alarms go into that transition's batch, the outbox) and, once a second, for
//! the time-driven rules (the dead man's switch, overruns of runs still going). Delivery is
//! the runtime's (`runtime/alarm.rs`).

use std::collections::BTreeMap;

use crate::alarm::{Alarm, AlarmRules, JobAlarms, RunOutcome};
use crate::ids::{AppId, JobId};
use crate::model::InstanceStatus;
use crate::server::alarm_repo::AlarmRecord;
use crate::server::{InstanceRecord, JobRecord};
use crate::time_expression::EpochMs;

use super::{is_running, Core};

/// The rules `job` is evaluated with: its own, without the dead man's switch while it is
/// disabled (a disabled job is not expected to succeed).
pub(crate) fn effective_rules(job: &JobRecord) -> AlarmRules {
    let mut rules = job.alarm.clone();
    if !job.enabled {
        rules.dead_man_ms = None;
    }
    rules
}

impl Core {
    /// The evaluator of `job` with `rules`, created or updated.
    fn book(&mut self, job: JobId, rules: &AlarmRules, now: EpochMs) -> &mut JobAlarms {
        let book = self
            .alarm_books
            .entry(job)
            .or_insert_with(|| JobAlarms::new(job, rules.clone(), now));
        if book.rules() != rules {
            book.set_rules(rules.clone());
        }
        book
    }

    /// The alarms `rec`'s final transition at `now` raises, as records for the outbox (none
    /// unless its job has rules).
    pub(crate) fn alarms_on_final(
        &mut self,
        rec: &InstanceRecord,
        now: EpochMs,
    ) -> Vec<AlarmRecord> {
        let backfilled = self.backfill_created.remove(&rec.id);
        let rules = match self.jobs.get(&rec.job_id) {
            Some(job) => effective_rules(&job.def.record),
            None => AlarmRules::default(),
        };
        if rules.is_empty() {
            self.alarm_books.remove(&rec.job_id);
            return Vec::new();
        }
        let outcome = match rec.status {
            InstanceStatus::Succeed => RunOutcome::Succeeded,
            InstanceStatus::Failed => RunOutcome::Failed,
            _ => RunOutcome::Neutral,
        };
        // A workflow node's trigger time is its workflow's: its start is late counted from
        // its creation (when its predecessors let it run). A backfill run's is in the past
        // on purpose: from its creation too.
        let due = match (self.node_runs.get(&rec.id), backfilled) {
            (Some(run), _) => run.created_at,
            (None, Some(created)) => Some(created),
            (None, None) => Some(rec.trigger_time),
        };
        let channels = rules.channels.clone();
        let book = self.book(rec.job_id, &rules, now);
        let mut raised: Vec<Alarm> = Vec::new();
        if let Some(dispatched) = rec.actual_trigger_time {
            raised.extend(book.on_dispatched(dispatched, rec.id, due));
        }
        raised.extend(book.on_finished(now, rec.id, outcome, rec.actual_trigger_time));
        self.metrics.count_alarms_raised(raised.len());
        raised
            .into_iter()
            .map(|a| {
                tracing::warn!(alarm = %a.id, "{}", a.message);
                AlarmRecord::raised(rec.app_id, a, channels.clone())
            })
            .collect()
    }

    /// The time-driven rules at `now`: the dead man's switch of every enabled job that has
    /// one, and the overrun of every running instance of a job with `overrun_ms`. A job's
    /// switch counts from its last success seen by this server, or from when this server
    /// first polled it.
    pub(crate) fn time_rule_alarms(&mut self, now: EpochMs) -> Vec<AlarmRecord> {
        // Jobs with a time-driven rule, with their effective rules and app, in id order.
        let mut timed: BTreeMap<JobId, (AlarmRules, AppId)> = BTreeMap::new();
        for job in self.jobs.values() {
            let rules = effective_rules(&job.def.record);
            if rules.dead_man_ms.is_some() || rules.overrun_ms.is_some() {
                timed.insert(job.id, (rules, job.def.record.app_id));
            }
        }
        let jobs = &self.jobs;
        self.alarm_books.retain(|id, _| jobs.contains_key(id));
        if timed.is_empty() {
            return Vec::new();
        }
        // Running instances of jobs watched for overrun: (job, instance, dispatch time).
        let mut running = Vec::new();
        for st in self.active.values() {
            let watched = timed
                .get(&st.rec.job_id)
                .is_some_and(|(r, _)| r.overrun_ms.is_some());
            if let (true, true, Some(at)) = (
                watched,
                is_running(st.rec.status),
                st.rec.actual_trigger_time,
            ) {
                running.push((st.rec.job_id, st.rec.id, at));
            }
        }
        running.sort_unstable_by_key(|(_, id, _)| id.0);
        let mut raised = Vec::new();
        for (job, (rules, app)) in &timed {
            let book = self.book(*job, rules, now);
            for (_, id, at) in running.iter().filter(|(j, _, _)| j == job) {
                // Not a dispatch event for late start (no trigger time given): only tracked.
                let _ = book.on_dispatched(*at, *id, None);
            }
            for a in book.poll(now) {
                tracing::warn!(alarm = %a.id, "{}", a.message);
                raised.push(AlarmRecord::raised(*app, a, rules.channels.clone()));
            }
        }
        self.metrics.count_alarms_raised(raised.len());
        raised
    }
}
