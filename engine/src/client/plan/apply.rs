//! What a plan does with a server, through the [`Client`]: [`fetch_state`] reads an app's
//! jobs and workflows, [`apply`] makes a plan's changes in order, and [`export`] writes the
//! app as a file that plans to no change.

use super::*;

/// Every job and workflow of `app`, page by page (at most [`MAX_ENTRIES`] of each).
pub async fn fetch_state(client: &Client, app: &str) -> Result<AppState, JobsFileError> {
    let failed = |what: &str| {
        let what = what.to_owned();
        move |source| JobsFileError::Client {
            what,
            done: 0,
            source,
        }
    };
    let mut state = AppState::default();
    let mut cursor = None;
    loop {
        let page = client
            .list_jobs(app, &JobQuery::page(Some(1000), cursor))
            .await
            .map_err(failed("listing the jobs"))?;
        state.jobs.extend(page.items);
        if state.jobs.len() > MAX_ENTRIES {
            return Err(JobsFileError::invalid(format!(
                "app {app:?} has more than {MAX_ENTRIES} jobs"
            )));
        }
        match page.next_cursor {
            Some(c) if cursor != Some(c) => cursor = Some(c),
            _ => break,
        }
    }
    let mut cursor = None;
    loop {
        let page = client
            .list_workflows(app, &WorkflowQuery::page(Some(1000), cursor))
            .await
            .map_err(failed("listing the workflows"))?;
        state.workflows.extend(page.items);
        if state.workflows.len() > MAX_ENTRIES {
            return Err(JobsFileError::invalid(format!(
                "app {app:?} has more than {MAX_ENTRIES} workflows"
            )));
        }
        match page.next_cursor {
            Some(c) if cursor != Some(c) => cursor = Some(c),
            _ => break,
        }
    }
    state.calendars = client
        .list_calendars(app)
        .await
        .map_err(failed("listing the calendars"))?
        .items;
    Ok(state)
}

/// Makes the changes of `plan` (computed from `state`) on `app`, in order; answers how many
/// were made. It stops at the first failure, saying how many were made before it.
pub async fn apply(
    client: &Client,
    app: &str,
    plan: &Plan,
    state: &AppState,
) -> Result<usize, JobsFileError> {
    // Names with one server entry resolve to it; names the plan creates are added as it goes.
    let mut job_ids: HashMap<String, JobId> = HashMap::new();
    for (name, ids) in by_name(state.jobs.iter().map(|j| (j.body.name.as_str(), j.id))) {
        if let [id] = ids.as_slice() {
            job_ids.insert(name.to_owned(), *id);
        }
    }
    let mut wf_ids: HashMap<String, WorkflowId> = HashMap::new();
    for (name, ids) in by_name(state.workflows.iter().map(|w| (w.body.name.as_str(), w.id))) {
        if let [id] = ids.as_slice() {
            wf_ids.insert(name.to_owned(), *id);
        }
    }
    let mut done = 0;
    for change in &plan.changes {
        let fail =
            |what: String| move |source: ClientError| JobsFileError::Client { what, done, source };
        match change {
            Change::CreateJob { name, body } => {
                let created = client
                    .create_job(app, body)
                    .await
                    .map_err(fail(format!("creating job {name:?}")))?;
                job_ids.insert(name.clone(), created.id);
            }
            Change::UpdateJob { id, name, body, .. } => {
                client
                    .update_job(app, *id, body)
                    .await
                    .map_err(fail(format!("updating job {name:?} ({id})")))?;
            }
            Change::DeleteJob { id, name } => {
                client
                    .delete_job(app, *id)
                    .await
                    .map_err(fail(format!("deleting job {name:?} ({id})")))?;
            }
            Change::CreateWorkflow { name, spec } => {
                let def = spec.to_def(|n| job_ids.get(n).copied(), |n| wf_ids.get(n).copied())?;
                let created = client
                    .create_workflow(app, &def)
                    .await
                    .map_err(fail(format!("creating workflow {name:?}")))?;
                wf_ids.insert(name.clone(), created.id);
            }
            Change::UpdateWorkflow { id, name, spec, .. } => {
                let def = spec.to_def(|n| job_ids.get(n).copied(), |n| wf_ids.get(n).copied())?;
                client
                    .update_workflow(app, *id, &def)
                    .await
                    .map_err(fail(format!("updating workflow {name:?} ({id})")))?;
            }
            Change::DeleteWorkflow { id, name } => {
                client
                    .delete_workflow(app, *id)
                    .await
                    .map_err(fail(format!("deleting workflow {name:?} ({id})")))?;
            }
            Change::CreateCalendar { name, spec } | Change::UpdateCalendar { name, spec, .. } => {
                client
                    .put_calendar(app, name, &spec.body())
                    .await
                    .map_err(fail(format!("putting calendar {name:?}")))?;
            }
            Change::DeleteCalendar { name } => {
                client
                    .delete_calendar(app, name)
                    .await
                    .map_err(fail(format!("deleting calendar {name:?}")))?;
            }
        }
        done += 1;
    }
    Ok(done)
}

/// The file that describes `state` for `app`: every job and workflow, in id order, and
/// every calendar. Two jobs
/// (or workflows) with one name cannot be written as keys and are an error.
pub fn export(app: &str, state: &AppState) -> Result<JobsFile, JobsFileError> {
    unique_on_server(
        "job",
        state.jobs.iter().map(|j| (j.body.name.as_str(), j.id)),
    )?;
    unique_on_server(
        "workflow",
        state.workflows.iter().map(|w| (w.body.name.as_str(), w.id)),
    )?;
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
    let mut workflows = Vec::with_capacity(state.workflows.len());
    for w in &state.workflows {
        workflows.push(WorkflowSpec::from_def(&w.body, &job_names, &wf_names)?);
    }
    Ok(JobsFile {
        app: Some(app.to_owned()),
        jobs: state.jobs.iter().map(|j| j.body.clone()).collect(),
        workflows,
        calendars: state
            .calendars
            .iter()
            .map(CalendarSpec::from_view)
            .collect(),
    })
}

fn unique_on_server<'a, I: Copy + fmt::Display>(
    kind: &str,
    items: impl Iterator<Item = (&'a str, I)>,
) -> Result<(), JobsFileError> {
    let map = by_name(items);
    let mut names: Vec<&&str> = map.keys().collect();
    names.sort();
    for name in names {
        lookup(kind, &map, name)?;
    }
    Ok(())
}
