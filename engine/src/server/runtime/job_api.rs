//! The job methods of [`NodeApi`]: create (within the app's job limit), list, get, update,
//! enable and disable, delete, run now; the API view of a job with its skip counters.

use std::sync::Arc;

use crate::api::{
    ApiError, AppRef, Created, JobBody, JobList, JobQuery, JobView, RunCreated, RunJob,
};
use crate::ids::JobId;
use crate::server::api_convert::{job_record, job_view};
use crate::server::core::commands::check_period;
use crate::server::core::JobDef;
use crate::server::JobRecord;

use super::api::{limit, NodeApi, PendingRun};

impl NodeApi {
    /// `app`'s job `id`: its definition.
    pub(super) fn job_of(&self, app: &AppRef, id: JobId) -> Result<Arc<JobDef>, ApiError> {
        Ok(self.0.core.lock().job_of(app.id, id)?.def())
    }

    pub(super) fn view(&self, def: &JobDef) -> JobView {
        let mut v = job_view(&def.record, self.0.repo.trigger(def.record.id));
        (v.skipped_runs, v.calendar_skipped_runs) = self.skipped(def.record.id);
        v
    }

    /// Runs of job `id` its SKIP overlap policy skipped, and scheduled triggers its calendars
    /// excluded, since the server started.
    pub(super) fn skipped(&self, id: JobId) -> (u64, u64) {
        self.0
            .core
            .lock()
            .jobs
            .get(&id)
            .map_or((0, 0), |j| (j.skipped, j.calendar_skipped))
    }

    /// A bad request unless `app` has a calendar of each of `names`.
    pub(super) fn check_calendars(&self, app: &AppRef, names: &[String]) -> Result<(), ApiError> {
        match self.0.core.lock().unknown_calendar(app.id, names) {
            Some(name) => Err(ApiError::invalid(
                "calendars",
                format!("app {} has no calendar named {name:?}", app.name),
            )),
            None => Ok(()),
        }
    }

    /// Replaces a job's definition (update, enable, disable) and reschedules it.
    pub(super) async fn replace(&self, id: JobId, record: JobRecord) -> Result<JobView, ApiError> {
        let rt = &self.0;
        let (commit, r) = rt.step(|core, now| core.replace_job(id, record, now))?;
        let saved = rt.await_commit(commit).await?;
        rt.step(|core, _| core.job_replaced(saved, r))?;
        let def = self.0.core.lock().live_job(id).map(|j| j.def());
        match def {
            Some(d) => Ok(self.view(&d)),
            None => Err(ApiError::not_found("job", id.0)),
        }
    }

    pub(super) async fn job_create(
        &self,
        app: AppRef,
        body: JobBody,
    ) -> Result<Created<JobId>, ApiError> {
        let sh = &self.0;
        let record = job_record(&body, app.id)?;
        self.check_calendars(&app, &record.calendars)?;
        let def = JobDef::new(record.clone())?;
        check_period(&def.expr, sh.config.min_period_ms)?;
        let max = sh.config.max_jobs_per_app;
        let jobs = {
            let core = sh.core.lock();
            // A server of a cluster creates jobs only of the apps it acts for.
            core.acting_for(app.id)?;
            core.jobs_of(app.id)
        };
        if jobs >= max {
            return Err(ApiError::conflict(format!(
                "app {} already has {jobs} jobs, the most this server allows per app (max_jobs_per_app {max})",
                app.name
            )));
        }
        let now = sh.now();
        let next = def.initial_next(now);
        let saved = sh
            .await_commit(sh.repo.create_job(record, next, now)?)
            .await?;
        let id = sh.step(|core, _| core.job_created(saved, &app.name, next))?;
        Ok(Created { id })
    }

    pub(super) async fn job_list(&self, app: AppRef, query: JobQuery) -> Result<JobList, ApiError> {
        let sh = &self.0;
        let filter = crate::server::JobFilter {
            name: query.name,
            tag: query.tag,
            time_expression_type: query.time_expression_type,
            execute_type: query.execute_type,
            enabled: query.enabled,
        };
        let page = sh
            .repo
            .list_jobs(app.id, &filter, query.cursor, limit(query.limit, 100))?;
        let items = page
            .items
            .iter()
            .map(|j| {
                let mut v = job_view(j, sh.repo.trigger(j.id));
                (v.skipped_runs, v.calendar_skipped_runs) = self.skipped(j.id);
                v
            })
            .collect();
        Ok(JobList {
            items,
            next_cursor: page.next_cursor,
        })
    }

    pub(super) async fn job_get(&self, app: AppRef, id: JobId) -> Result<JobView, ApiError> {
        let def = self.job_of(&app, id)?;
        Ok(self.view(&def))
    }

    pub(super) async fn job_update(
        &self,
        app: AppRef,
        id: JobId,
        body: JobBody,
    ) -> Result<JobView, ApiError> {
        self.job_of(&app, id)?;
        let record = job_record(&body, app.id)?;
        self.check_calendars(&app, &record.calendars)?;
        self.replace(id, record).await
    }

    pub(super) async fn job_delete(&self, app: AppRef, id: JobId) -> Result<(), ApiError> {
        let sh = &self.0;
        let commit = sh.step(|core, _| {
            core.job_of(app.id, id)?;
            core.delete_job_begin(id)?;
            Ok::<_, ApiError>(sh.repo.delete_job(id)?)
        })?;
        sh.await_commit(commit).await?;
        sh.step(|core, _| core.job_deleted(id));
        Ok(())
    }

    pub(super) async fn job_set_enabled(
        &self,
        app: AppRef,
        id: JobId,
        enabled: bool,
    ) -> Result<JobView, ApiError> {
        let def = self.job_of(&app, id)?;
        let mut record = def.record.clone();
        if record.enabled == enabled {
            return Ok(self.view(&def));
        }
        record.enabled = enabled;
        self.replace(id, record).await
    }

    pub(super) async fn job_run(
        &self,
        app: AppRef,
        id: JobId,
        req: RunJob,
    ) -> Result<RunCreated, ApiError> {
        let rt = Arc::clone(&self.0);
        let (commit, then) =
            rt.step(|core, now| core.prepare_run(app.id, id, req.params, req.delay_ms, now))?;
        let iid = PendingRun {
            rt,
            inner: Some((commit, then)),
        }
        .finish()
        .await?;
        Ok(RunCreated { instance_id: iid })
    }
}
