//! The apps' calendars as the core holds them: a scheduled trigger whose date a calendar of
//! its job or workflow excludes is skipped at fire time (no instance), counted, and the next
//! trigger is planned as usual. The rule itself is [`crate::calendar::excluded_by`].
//!
//! Checking at fire time keeps every planning step bounded: a calendar that excludes every
//! date makes each trigger one skipped wheel event, never a search for a date it allows.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::calendar::{excluded_by, Calendar};
use crate::ids::{AppId, JobId, WorkflowId};
use crate::server::calendar_repo::CalendarRecord;
use crate::time_expression::EpochMs;

use super::Core;

/// An app's calendars by name.
pub(crate) type AppCalendars = BTreeMap<String, Arc<Calendar>>;

/// What names a calendar: jobs and workflows.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct CalendarUsers {
    pub(crate) jobs: Vec<JobId>,
    pub(crate) workflows: Vec<WorkflowId>,
}

impl CalendarUsers {
    pub(crate) fn is_empty(&self) -> bool {
        self.jobs.is_empty() && self.workflows.is_empty()
    }
}

impl Core {
    /// Holds `record` (created or replaced); a record that no longer parses is dropped with
    /// an error log (it then excludes nothing).
    pub(crate) fn calendar_put(&mut self, record: &CalendarRecord) {
        match record.calendar() {
            Ok(cal) => {
                self.calendars
                    .entry(record.app_id)
                    .or_default()
                    .insert(record.name.clone(), Arc::new(cal));
            }
            Err(e) => {
                tracing::error!(app = record.app_id.0, calendar = %record.name, error = %e, "stored calendar no longer valid; it excludes nothing");
                self.calendar_deleted(record.app_id, &record.name);
            }
        }
    }

    /// Forgets calendar `name` of `app`.
    pub(crate) fn calendar_deleted(&mut self, app: AppId, name: &str) {
        if let Some(cals) = self.calendars.get_mut(&app) {
            cals.remove(name);
            if cals.is_empty() {
                self.calendars.remove(&app);
            }
        }
    }

    /// The first of `names` that `app` has no calendar of.
    pub(crate) fn unknown_calendar<'a>(&self, app: AppId, names: &'a [String]) -> Option<&'a str> {
        let cals = self.calendars.get(&app);
        names
            .iter()
            .find(|n| !cals.is_some_and(|c| c.contains_key(n.as_str())))
            .map(String::as_str)
    }

    /// The live jobs and workflows of `app` that name calendar `name`, in id order.
    pub(crate) fn calendar_users(&self, app: AppId, name: &str) -> CalendarUsers {
        let mut users = CalendarUsers::default();
        for job in self.jobs.values() {
            let r = &job.def.record;
            if !job.deleted && r.app_id == app && r.calendars.iter().any(|c| c == name) {
                users.jobs.push(job.id);
            }
        }
        for (id, wf) in &self.workflows {
            if !wf.deleted
                && wf.app == app
                && wf.cur().dag.def().calendars.iter().any(|c| c == name)
            {
                users.workflows.push(*id);
            }
        }
        users.jobs.sort_unstable_by_key(|j| j.0);
        users.workflows.sort_unstable_by_key(|w| w.0);
        users
    }

    /// The calendar among `names` (of `app`) that excludes trigger `at`; a name `app` has no
    /// calendar of excludes nothing.
    pub(crate) fn excluding_calendar(
        &self,
        app: AppId,
        names: &[String],
        at: EpochMs,
    ) -> Option<String> {
        if names.is_empty() {
            return None;
        }
        let cals = self.calendars.get(&app)?;
        let named = names
            .iter()
            .filter_map(|n| cals.get_key_value(n.as_str()))
            .map(|(n, c)| (n.as_str(), &**c));
        excluded_by(named, at).map(str::to_owned)
    }

    /// Counts a scheduled trigger of `job` a calendar excluded.
    pub(crate) fn count_calendar_skipped(&mut self, job: JobId) {
        if let Some(j) = self.jobs.get_mut(&job) {
            j.calendar_skipped = j.calendar_skipped.saturating_add(1);
        }
        self.metrics.count_calendar_skip();
    }
}
