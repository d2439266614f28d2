//! Plan, apply and export of a [`JobsFile`] against a server, through the [`Client`].
//!
//! [`plan`] is a pure function of the file and the app's current jobs and workflows
//! ([`AppState`], from [`fetch_state`]): it matches them by name and answers a [`Plan`], the
//! list of [`Change`]s that would make the server match the file, each update with its
//! field-by-field [`FieldDiff`]s. [`apply`] makes those changes in order; a second plan of the
//! same file is empty, so applying twice changes nothing. [`export`] writes the app as a file
//! that plans to no change.
//!
//! Order of the changes (so that every reference exists when it is used and nothing still
//! referenced is deleted): calendars created or updated, jobs created, jobs updated,
//! workflows created or updated (a workflow after those it nests), workflows deleted (a
//! workflow before those it nests), jobs deleted, calendars deleted. Deletions happen only
//! with `prune`.
//!
//! Names are keys: a name the file uses that two server jobs (or workflows) share is an
//! error, since either could be meant. A workflow node's `job` and `workflow` name an entry
//! of the file, or, without `prune`, one already on the server.
//!
//! Each time expression is parsed before anything is planned, so a typo stops `plan`, not
//! `apply` halfway. Comparison is on the bodies as the server stores them ([`normalize_job`]): a lifecycle
//! written with an offset equals the same instant in UTC.

use std::collections::{HashMap, HashSet};
use std::fmt;

use serde::Serialize;
use serde_json::Value;

use super::jobs_file::{
    normalize_job, CalendarSpec, JobsFile, JobsFileError, WorkflowSpec, MAX_ENTRIES,
};
use super::{Client, ClientError};
use crate::api::{JobBody, JobQuery, JobView, WorkflowQuery, WorkflowView};
use crate::ids::{JobId, WorkflowId};
use crate::time_expression::{TimeExpression, TimeExpressionType};

mod apply;
mod diff;

pub use apply::{apply, export, fetch_state};
pub use diff::diff_values;

/// An app's jobs and workflows as the server has them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AppState {
    /// Every job, in id order.
    pub jobs: Vec<JobView>,
    /// Every workflow, in id order.
    pub workflows: Vec<WorkflowView>,
    /// Every calendar, by name.
    pub calendars: Vec<crate::api::CalendarView>,
}

/// One field that differs: `before` is the server's value, `after` the file's, both as JSON.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FieldDiff {
    /// The field's path, e.g. `time_expression`, `lifecycle.start`, `nodes[1].params`.
    pub field: String,
    /// The server's value (absent: the field is missing there).
    pub before: Option<String>,
    /// The file's value (absent: the field is missing there).
    pub after: Option<String>,
}

/// One change of a [`Plan`].
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Change {
    /// A job the server does not have.
    CreateJob {
        /// The job's name.
        name: String,
        /// Its body.
        body: Box<JobBody>,
    },
    /// A job whose definition differs.
    UpdateJob {
        /// The server's job.
        id: JobId,
        /// Its name.
        name: String,
        /// What differs.
        diffs: Vec<FieldDiff>,
        /// The new body.
        body: Box<JobBody>,
    },
    /// A job the file no longer names (with `prune`).
    DeleteJob {
        /// The server's job.
        id: JobId,
        /// Its name.
        name: String,
    },
    /// A workflow the server does not have.
    CreateWorkflow {
        /// The workflow's name.
        name: String,
        /// Its definition.
        spec: Box<WorkflowSpec>,
    },
    /// A workflow whose definition differs.
    UpdateWorkflow {
        /// The server's workflow.
        id: WorkflowId,
        /// Its name.
        name: String,
        /// What differs.
        diffs: Vec<FieldDiff>,
        /// The new definition.
        spec: Box<WorkflowSpec>,
    },
    /// A workflow the file no longer names (with `prune`).
    DeleteWorkflow {
        /// The server's workflow.
        id: WorkflowId,
        /// Its name.
        name: String,
    },
    /// A calendar the server does not have.
    CreateCalendar {
        /// The calendar's name.
        name: String,
        /// Its definition.
        spec: Box<CalendarSpec>,
    },
    /// A calendar whose definition differs.
    UpdateCalendar {
        /// Its name.
        name: String,
        /// What differs.
        diffs: Vec<FieldDiff>,
        /// The new definition.
        spec: Box<CalendarSpec>,
    },
    /// A calendar the file no longer names (with `prune`).
    DeleteCalendar {
        /// Its name.
        name: String,
    },
}

/// What applying a file would do; see the [module docs](self) for the order.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Plan {
    /// The changes, in the order [`apply`] makes them.
    pub changes: Vec<Change>,
    /// Jobs and workflows the file names that already match.
    pub unchanged: usize,
}

impl Plan {
    /// No change.
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    /// (to create, to change, to delete).
    pub fn counts(&self) -> (usize, usize, usize) {
        let mut c = (0, 0, 0);
        for change in &self.changes {
            match change {
                Change::CreateJob { .. }
                | Change::CreateWorkflow { .. }
                | Change::CreateCalendar { .. } => c.0 += 1,
                Change::UpdateJob { .. }
                | Change::UpdateWorkflow { .. }
                | Change::UpdateCalendar { .. } => c.1 += 1,
                Change::DeleteJob { .. }
                | Change::DeleteWorkflow { .. }
                | Change::DeleteCalendar { .. } => c.2 += 1,
            }
        }
        c
    }
}

fn value<T: Serialize>(v: &T) -> Result<Value, JobsFileError> {
    serde_json::to_value(v).map_err(|e| JobsFileError::invalid(e.to_string()))
}

/// Names used twice in `names` (by `kind`) are an error.
fn unique<'a>(kind: &str, names: impl Iterator<Item = &'a str>) -> Result<(), JobsFileError> {
    let mut seen = HashSet::new();
    for name in names {
        if !seen.insert(name) {
            return Err(JobsFileError::invalid(format!(
                "two {kind}s of the file are named {name:?}; names are the keys"
            )));
        }
    }
    Ok(())
}

/// The ids of the server's entries of one kind, by name.
fn by_name<'a, I: Copy>(items: impl Iterator<Item = (&'a str, I)>) -> HashMap<&'a str, Vec<I>> {
    let mut map: HashMap<&str, Vec<I>> = HashMap::new();
    for (name, id) in items {
        map.entry(name).or_default().push(id);
    }
    map
}

/// The one server entry named `name`, if any; two or more is an error.
fn lookup<I: Copy + fmt::Display>(
    kind: &str,
    map: &HashMap<&str, Vec<I>>,
    name: &str,
) -> Result<Option<I>, JobsFileError> {
    match map.get(name).map(Vec::as_slice) {
        None | Some([]) => Ok(None),
        Some([id]) => Ok(Some(*id)),
        Some(ids) => Err(JobsFileError::invalid(format!(
            "the server has {} {kind}s named {name:?} ({}); rename or delete all but one",
            ids.len(),
            ids.iter()
                .map(|i| i.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

/// Orders `items` so that each comes after those of `deps(item)` that are in the list too
/// (by name); a cycle is an error naming a member.
fn dependency_order<T>(
    items: Vec<T>,
    name: impl Fn(&T) -> &str,
    deps: impl Fn(&T) -> Vec<String>,
) -> Result<Vec<T>, JobsFileError> {
    let names: HashSet<String> = items.iter().map(|i| name(i).to_owned()).collect();
    let mut placed: HashSet<String> = HashSet::new();
    let mut pending = items;
    let mut out = Vec::with_capacity(pending.len());
    while !pending.is_empty() {
        let before = pending.len();
        let mut rest = Vec::new();
        for item in pending {
            let ready = deps(&item)
                .iter()
                .all(|d| !names.contains(d) || placed.contains(d) || d == name(&item));
            if ready {
                placed.insert(name(&item).to_owned());
                out.push(item);
            } else {
                rest.push(item);
            }
        }
        if rest.len() == before {
            let who = rest.first().map(|i| name(i).to_owned()).unwrap_or_default();
            return Err(JobsFileError::invalid(format!(
                "workflow {who:?} is on a cycle of nested workflows"
            )));
        }
        pending = rest;
    }
    Ok(out)
}

/// What applying `file` to an app in `state` would do; see the [module docs](self).
pub fn plan(file: &JobsFile, state: &AppState, prune: bool) -> Result<Plan, JobsFileError> {
    unique("job", file.jobs.iter().map(|j| j.name.as_str()))?;
    unique("workflow", file.workflows.iter().map(|w| w.name.as_str()))?;
    let server_jobs = by_name(state.jobs.iter().map(|j| (j.body.name.as_str(), j.id)));
    let server_wfs = by_name(state.workflows.iter().map(|w| (w.body.name.as_str(), w.id)));
    let jobs_by_id: HashMap<JobId, &JobView> = state.jobs.iter().map(|j| (j.id, j)).collect();
    let wfs_by_id: HashMap<WorkflowId, &WorkflowView> =
        state.workflows.iter().map(|w| (w.id, w)).collect();

    let mut plan = Plan::default();
    unique("calendar", file.calendars.iter().map(|c| c.name.as_str()))?;
    let server_cals: HashMap<&str, &crate::api::CalendarView> = state
        .calendars
        .iter()
        .map(|c| (c.name.as_str(), c))
        .collect();
    for cal in &file.calendars {
        let spec = cal.normalized();
        crate::calendar::check_calendar_name(&spec.name)
            .and_then(|()| {
                crate::calendar::Calendar::new(
                    spec.time_zone.as_deref().unwrap_or_default(),
                    &spec.excluded,
                )
            })
            .map_err(|e| JobsFileError::invalid(format!("calendar {:?}: {e}", cal.name)))?;
        match server_cals.get(cal.name.as_str()) {
            None => plan.changes.push(Change::CreateCalendar {
                name: cal.name.clone(),
                spec: Box::new(spec),
            }),
            Some(view) => {
                let current = value(&CalendarSpec::from_view(view))?;
                let diffs = diff_values(&current, &value(&spec)?);
                if diffs.is_empty() {
                    plan.unchanged += 1;
                } else {
                    plan.changes.push(Change::UpdateCalendar {
                        name: cal.name.clone(),
                        diffs,
                        spec: Box::new(spec),
                    });
                }
            }
        }
    }
    let mut job_updates = Vec::new();
    for job in &file.jobs {
        let body = normalize_job(job)?;
        check_expression(
            "job",
            &job.name,
            job.time_expression_type,
            &job.time_expression,
            job.time_zone.as_deref(),
        )?;
        match lookup("job", &server_jobs, &job.name)? {
            None => plan.changes.push(Change::CreateJob {
                name: job.name.clone(),
                body: Box::new(body),
            }),
            Some(id) => {
                let current = jobs_by_id
                    .get(&id)
                    .map(|j| value(&j.body))
                    .transpose()?
                    .unwrap_or(Value::Null);
                let diffs = diff_values(&current, &value(&body)?);
                if diffs.is_empty() {
                    plan.unchanged += 1;
                } else {
                    job_updates.push(Change::UpdateJob {
                        id,
                        name: job.name.clone(),
                        diffs,
                        body: Box::new(body),
                    });
                }
            }
        }
    }
    plan.changes.extend(job_updates);

    // Names of the server's entries, to write its workflows in the file's terms.
    let job_names: HashMap<JobId, String> = state
        .jobs
        .iter()
        .map(|j| (j.id, j.body.name.clone()))
        .collect();
    let wf_names: HashMap<WorkflowId, String> = state
        .workflows
        .iter()
        .map(|w| (w.id, w.body.name.clone()))
        .collect();
    let file_jobs: HashSet<&str> = file.jobs.iter().map(|j| j.name.as_str()).collect();
    let file_wfs: HashSet<&str> = file.workflows.iter().map(|w| w.name.as_str()).collect();
    let mut wf_changes = Vec::new();
    for wf in &file.workflows {
        check_expression(
            "workflow",
            &wf.name,
            wf.time_expression_type,
            &wf.time_expression,
            wf.time_zone.as_deref(),
        )?;
        for node in &wf.nodes {
            check_ref(
                wf,
                node.id.0,
                "job",
                node.job.as_deref(),
                &file_jobs,
                &server_jobs,
                prune,
            )?;
            check_ref(
                wf,
                node.id.0,
                "workflow",
                node.workflow.as_deref(),
                &file_wfs,
                &server_wfs,
                prune,
            )?;
        }
        match lookup("workflow", &server_wfs, &wf.name)? {
            None => wf_changes.push(Change::CreateWorkflow {
                name: wf.name.clone(),
                spec: Box::new(wf.clone()),
            }),
            Some(id) => {
                let current = match wfs_by_id.get(&id) {
                    Some(view) => {
                        value(&WorkflowSpec::from_def(&view.body, &job_names, &wf_names)?)?
                    }
                    None => Value::Null,
                };
                let diffs = diff_values(&current, &value(wf)?);
                if diffs.is_empty() {
                    plan.unchanged += 1;
                } else {
                    wf_changes.push(Change::UpdateWorkflow {
                        id,
                        name: wf.name.clone(),
                        diffs,
                        spec: Box::new(wf.clone()),
                    });
                }
            }
        }
    }
    let wf_changes = dependency_order(wf_changes, change_name, |c| match c {
        Change::CreateWorkflow { spec, .. } | Change::UpdateWorkflow { spec, .. } => {
            spec.nested().map(str::to_owned).collect()
        }
        _ => Vec::new(),
    })?;
    plan.changes.extend(wf_changes);

    if prune {
        let doomed: Vec<&WorkflowView> = state
            .workflows
            .iter()
            .filter(|w| !file_wfs.contains(w.body.name.as_str()))
            .collect();
        // A workflow goes before those it nests: reverse of the nesting order.
        let mut ordered = dependency_order(
            doomed,
            |w| w.body.name.as_str(),
            |w| {
                w.body
                    .nodes
                    .iter()
                    .filter_map(|n| n.workflow_id.and_then(|id| wf_names.get(&id).cloned()))
                    .collect()
            },
        )?;
        ordered.reverse();
        for w in ordered {
            plan.changes.push(Change::DeleteWorkflow {
                id: w.id,
                name: w.body.name.clone(),
            });
        }
        for j in &state.jobs {
            if !file_jobs.contains(j.body.name.as_str()) {
                plan.changes.push(Change::DeleteJob {
                    id: j.id,
                    name: j.body.name.clone(),
                });
            }
        }
        let file_cals: HashSet<&str> = file.calendars.iter().map(|c| c.name.as_str()).collect();
        for c in &state.calendars {
            if !file_cals.contains(c.name.as_str()) {
                plan.changes.push(Change::DeleteCalendar {
                    name: c.name.clone(),
                });
            }
        }
    }
    Ok(plan)
}

/// The time expression parses in its zone (the server's own check, run before anything is
/// applied).
fn check_expression(
    kind: &str,
    name: &str,
    kind_of_expr: TimeExpressionType,
    expression: &str,
    zone: Option<&str>,
) -> Result<(), JobsFileError> {
    let zone = zone.filter(|z| !z.trim().is_empty());
    TimeExpression::parse(kind_of_expr, expression, zone)
        .map(drop)
        .map_err(|e| JobsFileError::invalid(format!("{kind} {name:?}: {e}")))
}

fn change_name(c: &Change) -> &str {
    match c {
        Change::CreateJob { name, .. }
        | Change::UpdateJob { name, .. }
        | Change::DeleteJob { name, .. }
        | Change::CreateWorkflow { name, .. }
        | Change::UpdateWorkflow { name, .. }
        | Change::DeleteWorkflow { name, .. }
        | Change::CreateCalendar { name, .. }
        | Change::UpdateCalendar { name, .. }
        | Change::DeleteCalendar { name } => name,
    }
}

/// A node's reference names an entry of the file, or (without `prune`) one server entry.
fn check_ref<I: Copy + fmt::Display>(
    wf: &WorkflowSpec,
    node: u64,
    kind: &str,
    name: Option<&str>,
    in_file: &HashSet<&str>,
    on_server: &HashMap<&str, Vec<I>>,
    prune: bool,
) -> Result<(), JobsFileError> {
    let Some(name) = name else { return Ok(()) };
    if in_file.contains(name) {
        return Ok(());
    }
    let found = lookup(kind, on_server, name)?;
    match (found, prune) {
        (Some(_), false) => Ok(()),
        (Some(_), true) => Err(JobsFileError::invalid(format!(
            "workflow {:?} node {node} names {kind} {name:?}, which the file does not define \
             and --prune would delete",
            wf.name
        ))),
        (None, _) => Err(JobsFileError::invalid(format!(
            "workflow {:?} node {node} names {kind} {name:?}, which neither the file nor the \
             server has",
            wf.name
        ))),
    }
}
