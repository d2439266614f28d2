//! [`FencedRepo`], each server's view of the one shared store: a write of a partition goes
//! through `server::pg::fence`'s check against the database's `leases` rows (see the parent
//! module), the rest is handed to the shared [`LogRepo`] as it is.

use std::sync::Arc;

use parking_lot::Mutex;

use crate::ids::{AppId, InstanceId, JobId, WorkflowId, WorkflowInstanceId};
use crate::model::InstanceStatus;
use crate::server::alarm_repo::{AlarmRecord, ChannelRecord};
use crate::server::calendar_repo::CalendarRecord;
use crate::server::history::{AuditRecord, JobVersion, WorkflowVersion};
use crate::server::idempotency_repo::IdempotencyRecord;
use crate::server::records::{AppRecord, JobRecord, LogLine, TriggerRecord};
use crate::server::repo::{
    Commit, InstanceFilter, JobFilter, LoadedState, LogAppend, LogEntry, LogRepo, Page,
    WorkflowFilter,
};
use crate::server::token_repo::{PreviousSecretRecord, TokenRecord};
use crate::server::workflow_repo::{
    LoadedWorkflow, NodeLinkRecord, WfInstanceRecord, WfWrite, WorkflowRecord,
};
use crate::server::{InstanceRecord, RepoError, Repository};
use crate::time_expression::EpochMs;
use crate::workflow::WorkflowDef;

use super::Db;

/// What a write changes: the rows of an app, of a job's app, of a workflow's app.
enum Scope {
    App(AppId),
    Job(JobId),
    Workflow,
}

/// Server `s`'s repository: the shared store behind the fence (see the module docs).
#[derive(Debug)]
pub(in crate::sim::cluster) struct FencedRepo {
    pub(in crate::sim::cluster) inner: Arc<LogRepo>,
    pub(in crate::sim::cluster) server: usize,
    pub(in crate::sim::cluster) db: Arc<Mutex<Db>>,
}

impl FencedRepo {
    /// Fails when the server is cut from the database.
    fn reachable(&self) -> Result<(), RepoError> {
        if self
            .db
            .lock()
            .cut
            .get(self.server)
            .copied()
            .unwrap_or(false)
        {
            return Err(RepoError::Database(
                "connection to the database lost".into(),
            ));
        }
        Ok(())
    }

    /// The fence of `server::pg::fence`: a write of a partition commits only while its
    /// server holds the lease at the epoch the write is made under. With fencing off the
    /// write is taken, and taking it is a violation.
    fn fence(&self, scope: Scope) -> Result<(), RepoError> {
        self.reachable()?;
        let mut db = self.db.lock();
        let app = match scope {
            Scope::App(a) => Some(a),
            Scope::Job(j) => db.jobs.get(&j).copied(),
            // The cluster's workload has no workflows: their rows are not fenced here.
            Scope::Workflow => None,
        };
        let Some(p) = app.and_then(|a| db.apps.get(&a).copied()) else {
            return Ok(());
        };
        let held = db
            .held
            .get(self.server)
            .and_then(|h| h.get(p.index()))
            .copied()
            .flatten();
        if held.is_some_and(|e| db.owns(self.server, p, e)) {
            return Ok(());
        }
        if db.fencing {
            db.fenced += 1;
            return Err(RepoError::Fenced {
                partition: p.get(),
                epoch: held.map_or(0, |e| e.0),
            });
        }
        let row = db.leases.get(p.index()).copied().unwrap_or_default();
        let what = format!(
            "a write of {p} by s{} under epoch {} was taken while the database shows {:?} at epoch {} (expires in {} ms)",
            self.server,
            held.map_or(0, |e| e.0),
            row.owner.map(|o| format!("s{o}")),
            row.epoch,
            row.expires - db.now
        );
        db.violation(what);
        Ok(())
    }

    fn fence_wf(&self, w: &WfWrite) -> Result<(), RepoError> {
        for (r, _) in &w.job_instances {
            self.fence(Scope::App(r.app_id))?;
        }
        for (r, _) in &w.instances {
            self.fence(Scope::App(r.app_id))?;
        }
        for (r, _, _) in &w.wf_instances {
            self.fence(Scope::App(r.app_id))?;
        }
        Ok(())
    }

    /// A scheduled fire the database took: a second fire of the same (job, trigger time) is
    /// a double fire.
    fn fired(&self, rec: Option<&InstanceRecord>) {
        let Some(rec) = rec else { return };
        let mut db = self.db.lock();
        let now = db.now;
        db.last_fire.insert(rec.job_id, now);
        let key = (rec.job_id, rec.trigger_time);
        if let Some((s, first)) = db.fires.insert(key, (self.server, rec.id)) {
            let what = format!(
                "double fire: {} at trigger time {} fired as {first} by s{s} and as {} by s{}",
                rec.job_id, rec.trigger_time, rec.id, self.server
            );
            db.violation(what);
        }
    }
}

impl Repository for FencedRepo {
    fn create_app(
        &self,
        name: &str,
        secret: &str,
        now: EpochMs,
    ) -> Result<Commit<AppRecord>, RepoError> {
        self.inner.create_app(name, secret, now)
    }
    fn get_app(&self, id: AppId) -> Result<AppRecord, RepoError> {
        self.inner.get_app(id)
    }
    fn get_app_by_name(&self, name: &str) -> Result<AppRecord, RepoError> {
        self.inner.get_app_by_name(name)
    }
    fn list_apps(&self) -> Result<Vec<AppRecord>, RepoError> {
        self.inner.list_apps()
    }
    fn rotate_secret(
        &self,
        app: AppId,
        secret: &str,
        until: EpochMs,
    ) -> Result<Commit<AppRecord>, RepoError> {
        self.inner.rotate_secret(app, secret, until)
    }
    fn previous_secret(&self, app: AppId) -> Result<Option<PreviousSecretRecord>, RepoError> {
        self.inner.previous_secret(app)
    }
    fn delete_app(&self, app: AppId) -> Result<Commit<()>, RepoError> {
        self.inner.delete_app(app)
    }
    fn create_token(&self, token: TokenRecord) -> Result<Commit<TokenRecord>, RepoError> {
        self.inner.create_token(token)
    }
    fn token(&self, id: u64) -> Result<Option<TokenRecord>, RepoError> {
        self.inner.token(id)
    }
    fn list_tokens(&self, app: AppId) -> Result<Vec<TokenRecord>, RepoError> {
        self.inner.list_tokens(app)
    }
    fn revoke_token(&self, app: AppId, id: u64) -> Result<Commit<()>, RepoError> {
        self.inner.revoke_token(app, id)
    }
    fn create_job(
        &self,
        job: JobRecord,
        next_trigger: Option<EpochMs>,
        now: EpochMs,
    ) -> Result<Commit<JobRecord>, RepoError> {
        self.inner.create_job(job, next_trigger, now)
    }
    fn get_job(&self, id: JobId) -> Result<JobRecord, RepoError> {
        self.inner.get_job(id)
    }
    fn update_job(
        &self,
        job: JobRecord,
        next_trigger: Option<EpochMs>,
        now: EpochMs,
    ) -> Result<Commit<JobRecord>, RepoError> {
        self.inner.update_job(job, next_trigger, now)
    }
    fn delete_job(&self, id: JobId) -> Result<Commit<JobRecord>, RepoError> {
        self.inner.delete_job(id)
    }
    fn list_jobs(
        &self,
        app: AppId,
        filter: &JobFilter,
        cursor: Option<u64>,
        limit: usize,
    ) -> Result<Page<JobRecord>, RepoError> {
        self.inner.list_jobs(app, filter, cursor, limit)
    }
    fn trigger(&self, id: JobId) -> Option<TriggerRecord> {
        self.inner.trigger(id)
    }
    fn set_next_trigger(
        &self,
        id: JobId,
        next_trigger: Option<EpochMs>,
    ) -> Result<Commit<TriggerRecord>, RepoError> {
        self.fence(Scope::Job(id))?;
        self.inner.set_next_trigger(id, next_trigger)
    }
    fn set_next_trigger_when(
        &self,
        id: JobId,
        next_trigger: Option<EpochMs>,
        still_current: &mut dyn FnMut() -> bool,
    ) -> Result<Option<Commit<TriggerRecord>>, RepoError> {
        self.fence(Scope::Job(id))?;
        self.inner
            .set_next_trigger_if(id, next_trigger, still_current)
    }
    fn fire(
        &self,
        instance: InstanceRecord,
        next_trigger: Option<EpochMs>,
    ) -> Result<Commit<InstanceRecord>, RepoError> {
        self.fence(Scope::App(instance.app_id))?;
        let c = self.inner.fire(instance, next_trigger)?;
        self.fired(c.value());
        Ok(c)
    }
    fn fire_when(
        &self,
        instance: InstanceRecord,
        next_trigger: Option<EpochMs>,
        still_current: &mut dyn FnMut() -> bool,
    ) -> Result<Option<Commit<InstanceRecord>>, RepoError> {
        self.fence(Scope::App(instance.app_id))?;
        let c = self.inner.fire_if(instance, next_trigger, still_current)?;
        self.fired(c.as_ref().and_then(|c| c.value()));
        Ok(c)
    }
    fn create_instance(
        &self,
        instance: InstanceRecord,
        delayed_until: Option<EpochMs>,
    ) -> Result<Commit<InstanceRecord>, RepoError> {
        self.fence(Scope::App(instance.app_id))?;
        self.inner.create_instance(instance, delayed_until)
    }
    fn create_instances(
        &self,
        runs: Vec<(InstanceRecord, Option<EpochMs>)>,
    ) -> Result<Commit<Vec<InstanceRecord>>, RepoError> {
        for (r, _) in &runs {
            self.fence(Scope::App(r.app_id))?;
        }
        self.inner.create_instances(runs)
    }
    fn get_instance(&self, id: InstanceId) -> Result<InstanceRecord, RepoError> {
        self.inner.get_instance(id)
    }
    fn update_instance(&self, instance: &InstanceRecord) -> Result<Commit<()>, RepoError> {
        self.fence(Scope::App(instance.app_id))?;
        self.inner.update_instance(instance)
    }
    fn put_instance(&self, instance: &InstanceRecord) -> Result<Commit<()>, RepoError> {
        self.fence(Scope::App(instance.app_id))?;
        self.inner.put_instance(instance)
    }
    fn put_instance_from(
        &self,
        instance: &InstanceRecord,
        prev: Option<InstanceStatus>,
    ) -> Result<Commit<()>, RepoError> {
        self.fence(Scope::App(instance.app_id))?;
        self.inner.put_instance_from(instance, prev)
    }
    fn list_instances(
        &self,
        app: AppId,
        filter: InstanceFilter,
        cursor: Option<u64>,
        limit: usize,
    ) -> Result<Page<InstanceRecord>, RepoError> {
        self.inner.list_instances(app, filter, cursor, limit)
    }
    fn delete_instance(&self, id: InstanceId, force: bool) -> Result<Commit<()>, RepoError> {
        self.inner.delete_instance(id, force)
    }
    fn finished_beyond(
        &self,
        job: JobId,
        keep: usize,
        limit: usize,
    ) -> Result<Vec<InstanceId>, RepoError> {
        self.inner.finished_beyond(job, keep, limit)
    }
    fn finished_fires_beyond(
        &self,
        job: JobId,
        keep: usize,
        limit: usize,
    ) -> Result<Vec<InstanceId>, RepoError> {
        self.inner.finished_fires_beyond(job, keep, limit)
    }
    fn finished_before(
        &self,
        cutoff: EpochMs,
        from: InstanceId,
        max_examine: usize,
        limit: usize,
    ) -> Result<(Vec<InstanceId>, Option<InstanceId>), RepoError> {
        self.inner.finished_before(cutoff, from, max_examine, limit)
    }
    fn delete_wf_instance(
        &self,
        id: WorkflowInstanceId,
        force: bool,
    ) -> Result<Commit<()>, RepoError> {
        self.inner.delete_wf_instance(id, force)
    }
    fn wf_finished_beyond(
        &self,
        workflow: WorkflowId,
        keep: usize,
        limit: usize,
    ) -> Result<Vec<WorkflowInstanceId>, RepoError> {
        self.inner.wf_finished_beyond(workflow, keep, limit)
    }
    fn wf_finished_before(
        &self,
        cutoff: EpochMs,
        from: WorkflowInstanceId,
        max_examine: usize,
        limit: usize,
    ) -> Result<(Vec<WorkflowInstanceId>, Option<WorkflowInstanceId>), RepoError> {
        self.inner
            .wf_finished_before(cutoff, from, max_examine, limit)
    }
    fn append_log_lines(
        &self,
        id: InstanceId,
        lines: Vec<LogLine>,
    ) -> Result<Commit<LogAppend>, RepoError> {
        self.inner.append_logs(id, lines)
    }
    fn append_log_lines_of_live(
        &self,
        id: InstanceId,
        lines: Vec<LogLine>,
    ) -> Result<Commit<LogAppend>, RepoError> {
        self.inner.append_logs_of_live(id, lines)
    }
    fn read_logs(
        &self,
        id: InstanceId,
        cursor: Option<u64>,
        limit: usize,
    ) -> Result<Page<LogEntry>, RepoError> {
        self.inner.read_logs(id, cursor, limit)
    }
    fn read_logs_before(
        &self,
        id: InstanceId,
        before: u64,
        limit: usize,
    ) -> Result<Vec<LogEntry>, RepoError> {
        self.inner.read_logs_before(id, before, limit)
    }
    fn create_workflow(
        &self,
        app: AppId,
        def: &WorkflowDef,
        next_trigger: Option<EpochMs>,
        now: EpochMs,
    ) -> Result<Commit<WorkflowRecord>, RepoError> {
        self.inner.create_workflow(app, def, next_trigger, now)
    }
    fn get_workflow(&self, id: WorkflowId) -> Result<WorkflowRecord, RepoError> {
        self.inner.get_workflow(id)
    }
    fn workflow_def(&self, id: WorkflowId, version: u64) -> Result<WorkflowDef, RepoError> {
        self.inner.workflow_def(id, version)
    }
    fn update_workflow(
        &self,
        id: WorkflowId,
        def: &WorkflowDef,
        next_trigger: Option<EpochMs>,
        now: EpochMs,
    ) -> Result<Commit<WorkflowRecord>, RepoError> {
        self.inner.update_workflow(id, def, next_trigger, now)
    }
    fn delete_workflow(&self, id: WorkflowId) -> Result<Commit<WorkflowRecord>, RepoError> {
        self.inner.delete_workflow(id)
    }
    fn list_workflows(
        &self,
        app: AppId,
        filter: &WorkflowFilter,
        cursor: Option<u64>,
        limit: usize,
    ) -> Result<Page<WorkflowRecord>, RepoError> {
        self.inner.list_workflows(app, filter, cursor, limit)
    }
    fn wf_trigger(&self, id: WorkflowId) -> Option<TriggerRecord> {
        self.inner.wf_trigger(id)
    }
    fn wf_set_next_trigger_when(
        &self,
        id: WorkflowId,
        next_trigger: Option<EpochMs>,
        still_current: &mut dyn FnMut() -> bool,
    ) -> Result<Option<Commit<TriggerRecord>>, RepoError> {
        self.fence(Scope::Workflow)?;
        self.inner
            .wf_set_next_trigger_if(id, next_trigger, still_current)
    }
    fn wf_fire_row_when(
        &self,
        id: WorkflowId,
        next_trigger: Option<EpochMs>,
        still_current: &mut dyn FnMut() -> bool,
    ) -> Option<TriggerRecord> {
        if self.fence(Scope::Workflow).is_err() {
            return None;
        }
        self.inner.wf_fire_row(id, next_trigger, still_current)
    }
    fn new_wf_instance_id(&self) -> Result<WorkflowInstanceId, RepoError> {
        self.inner.new_wf_instance_id()
    }
    fn new_instance_id(&self) -> Result<InstanceId, RepoError> {
        self.inner.new_instance_id()
    }
    fn write_wf(&self, w: &WfWrite) -> Result<Commit<()>, RepoError> {
        self.fence_wf(w)?;
        self.inner.write_wf(w)
    }
    fn get_wf_instance(&self, id: WorkflowInstanceId) -> Result<WfInstanceRecord, RepoError> {
        self.inner.get_wf_instance(id)
    }
    fn node_link(&self, id: InstanceId) -> Result<Option<NodeLinkRecord>, RepoError> {
        self.inner.node_link(id)
    }
    fn list_wf_instances(
        &self,
        app: AppId,
        workflow: Option<WorkflowId>,
        cursor: Option<u64>,
        limit: usize,
    ) -> Result<Page<WfInstanceRecord>, RepoError> {
        self.inner.list_wf_instances(app, workflow, cursor, limit)
    }
    fn load_workflows(&self) -> Result<(Vec<LoadedWorkflow>, Vec<WfInstanceRecord>), RepoError> {
        self.reachable()?;
        self.inner.load_workflows()
    }
    fn put_instance_with_alarms(
        &self,
        instance: &InstanceRecord,
        prev: Option<InstanceStatus>,
        alarms: Vec<AlarmRecord>,
    ) -> Result<Commit<Vec<AlarmRecord>>, RepoError> {
        self.fence(Scope::App(instance.app_id))?;
        self.inner.put_instance_with_alarms(instance, prev, alarms)
    }
    fn insert_alarms(
        &self,
        alarms: Vec<AlarmRecord>,
    ) -> Result<Commit<Vec<AlarmRecord>>, RepoError> {
        for a in &alarms {
            self.fence(Scope::App(a.app_id))?;
        }
        self.inner.insert_alarms(alarms)
    }
    fn update_alarm(&self, alarm: &AlarmRecord) -> Result<Commit<()>, RepoError> {
        self.fence(Scope::App(alarm.app_id))?;
        self.inner.update_alarm(alarm)
    }
    fn pending_alarms(
        &self,
        after: Option<(AppId, u64)>,
        limit: usize,
    ) -> Result<Vec<AlarmRecord>, RepoError> {
        self.inner.pending_alarms(after, limit)
    }
    fn list_alarms(
        &self,
        app: AppId,
        cursor: Option<u64>,
        limit: usize,
    ) -> Result<Page<AlarmRecord>, RepoError> {
        self.inner.list_alarms(app, cursor, limit)
    }
    fn prune_alarms(
        &self,
        app: AppId,
        keep: usize,
        limit: usize,
    ) -> Result<Commit<usize>, RepoError> {
        self.inner.prune_alarms(app, keep, limit)
    }
    fn put_channel(&self, channel: &ChannelRecord) -> Result<Commit<()>, RepoError> {
        self.inner.put_channel(channel)
    }
    fn get_channel(&self, app: AppId, name: &str) -> Result<ChannelRecord, RepoError> {
        self.inner.get_channel(app, name)
    }
    fn delete_channel(&self, app: AppId, name: &str) -> Result<Commit<()>, RepoError> {
        self.inner.delete_channel(app, name)
    }
    fn list_channels(&self, app: AppId) -> Result<Vec<ChannelRecord>, RepoError> {
        self.inner.list_channels(app)
    }
    fn put_idempotency(&self, record: &IdempotencyRecord) -> Result<Commit<()>, RepoError> {
        self.inner.put_idempotency(record)
    }
    fn delete_idempotency(&self, path: &str, key: &str) -> Result<Commit<()>, RepoError> {
        self.inner.delete_idempotency(path, key)
    }
    fn prune_idempotency(&self, before: EpochMs) -> Result<Commit<usize>, RepoError> {
        self.inner.prune_idempotency(before)
    }
    fn list_idempotency(&self) -> Result<Vec<IdempotencyRecord>, RepoError> {
        self.inner.list_idempotency()
    }
    fn put_calendar(&self, calendar: &CalendarRecord) -> Result<Commit<()>, RepoError> {
        self.inner.put_calendar(calendar)
    }
    fn get_calendar(&self, app: AppId, name: &str) -> Result<CalendarRecord, RepoError> {
        self.inner.get_calendar(app, name)
    }
    fn delete_calendar(&self, app: AppId, name: &str) -> Result<Commit<()>, RepoError> {
        self.inner.delete_calendar(app, name)
    }
    fn list_calendars(&self, app: AppId) -> Result<Vec<CalendarRecord>, RepoError> {
        self.inner.list_calendars(app)
    }
    fn load(&self) -> Result<LoadedState, RepoError> {
        self.reachable()?;
        self.inner.load()
    }
    fn flush(&self) -> Result<(), RepoError> {
        self.inner.flush()
    }
    fn list_job_versions(
        &self,
        id: JobId,
        cursor: Option<u64>,
        limit: usize,
    ) -> Result<Page<JobVersion>, RepoError> {
        self.inner.list_job_versions(id, cursor, limit)
    }
    fn get_job_version(&self, id: JobId, version: u64) -> Result<JobRecord, RepoError> {
        self.inner.get_job_version(id, version)
    }
    fn list_workflow_versions(
        &self,
        id: WorkflowId,
        cursor: Option<u64>,
        limit: usize,
    ) -> Result<Page<WorkflowVersion>, RepoError> {
        self.inner.list_workflow_versions(id, cursor, limit)
    }
    fn append_audit(&self, record: AuditRecord) -> Result<Commit<AuditRecord>, RepoError> {
        self.inner.append_audit(record)
    }
    fn list_audit(
        &self,
        app: AppId,
        target: Option<&str>,
        cursor: Option<u64>,
        limit: usize,
    ) -> Result<Page<AuditRecord>, RepoError> {
        self.inner.list_audit(app, target, cursor, limit)
    }
}
