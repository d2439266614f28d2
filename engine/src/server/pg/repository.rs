//! [`Repository`] for [`PgRepo`]: every method forwards to the inherent method of the same
//! name.

use crate::ids::{AppId, InstanceId, JobId, WorkflowId, WorkflowInstanceId};
use crate::model::InstanceStatus;
use crate::server::alarm_repo::{AlarmRecord, ChannelRecord};
use crate::server::calendar_repo::CalendarRecord;
use crate::server::error::RepoError;
use crate::server::history::{AuditRecord, JobVersion, WorkflowVersion};
use crate::server::idempotency_repo::IdempotencyRecord;
use crate::server::instance::InstanceRecord;
use crate::server::records::{AppRecord, JobRecord, LogLine, TriggerRecord};
use crate::server::repo::{
    Commit, InstanceFilter, JobFilter, LoadedState, LogAppend, LogEntry, Page, WorkflowFilter,
};
use crate::server::repository::Repository;
use crate::server::token_repo::{PreviousSecretRecord, TokenRecord};
use crate::server::workflow_repo::{
    LoadedWorkflow, NodeLinkRecord, WfInstanceRecord, WfWrite, WorkflowRecord,
};
use crate::time_expression::EpochMs;
use crate::workflow::WorkflowDef;

use super::PgRepo;

impl Repository for PgRepo {
    fn create_app(
        &self,
        name: &str,
        secret: &str,
        now: EpochMs,
    ) -> Result<Commit<AppRecord>, RepoError> {
        PgRepo::create_app(self, name, secret, now)
    }
    fn get_app(&self, id: AppId) -> Result<AppRecord, RepoError> {
        PgRepo::get_app(self, id)
    }
    fn get_app_by_name(&self, name: &str) -> Result<AppRecord, RepoError> {
        PgRepo::get_app_by_name(self, name)
    }
    fn list_apps(&self) -> Result<Vec<AppRecord>, RepoError> {
        PgRepo::list_apps(self)
    }
    fn rotate_secret(
        &self,
        app: AppId,
        secret: &str,
        until: EpochMs,
    ) -> Result<Commit<AppRecord>, RepoError> {
        PgRepo::rotate_secret(self, app, secret, until)
    }
    fn previous_secret(&self, app: AppId) -> Result<Option<PreviousSecretRecord>, RepoError> {
        PgRepo::previous_secret(self, app)
    }
    fn delete_app(&self, app: AppId) -> Result<Commit<()>, RepoError> {
        PgRepo::delete_app(self, app)
    }
    fn create_token(&self, token: TokenRecord) -> Result<Commit<TokenRecord>, RepoError> {
        PgRepo::create_token(self, token)
    }
    fn token(&self, id: u64) -> Result<Option<TokenRecord>, RepoError> {
        PgRepo::token(self, id)
    }
    fn list_tokens(&self, app: AppId) -> Result<Vec<TokenRecord>, RepoError> {
        PgRepo::list_tokens(self, app)
    }
    fn revoke_token(&self, app: AppId, id: u64) -> Result<Commit<()>, RepoError> {
        PgRepo::revoke_token(self, app, id)
    }
    fn create_job(
        &self,
        job: JobRecord,
        next_trigger: Option<EpochMs>,
        now: EpochMs,
    ) -> Result<Commit<JobRecord>, RepoError> {
        PgRepo::create_job(self, job, next_trigger, now)
    }
    fn get_job(&self, id: JobId) -> Result<JobRecord, RepoError> {
        PgRepo::get_job(self, id)
    }
    fn update_job(
        &self,
        job: JobRecord,
        next_trigger: Option<EpochMs>,
        now: EpochMs,
    ) -> Result<Commit<JobRecord>, RepoError> {
        PgRepo::update_job(self, job, next_trigger, now)
    }
    fn delete_job(&self, id: JobId) -> Result<Commit<JobRecord>, RepoError> {
        PgRepo::delete_job(self, id)
    }
    fn list_jobs(
        &self,
        app: AppId,
        filter: &JobFilter,
        cursor: Option<u64>,
        limit: usize,
    ) -> Result<Page<JobRecord>, RepoError> {
        PgRepo::list_jobs(self, app, filter, cursor, limit)
    }
    fn trigger(&self, id: JobId) -> Option<TriggerRecord> {
        self.triggers.get(&id).map(|t| *t)
    }
    fn set_next_trigger(
        &self,
        id: JobId,
        next_trigger: Option<EpochMs>,
    ) -> Result<Commit<TriggerRecord>, RepoError> {
        PgRepo::set_next_trigger_when(self, id, next_trigger, &mut || true)?
            .ok_or_else(|| RepoError::not_found("job", id.0))
    }
    fn set_next_trigger_when(
        &self,
        id: JobId,
        next_trigger: Option<EpochMs>,
        still_current: &mut dyn FnMut() -> bool,
    ) -> Result<Option<Commit<TriggerRecord>>, RepoError> {
        PgRepo::set_next_trigger_when(self, id, next_trigger, still_current)
    }
    fn fire(
        &self,
        instance: InstanceRecord,
        next_trigger: Option<EpochMs>,
    ) -> Result<Commit<InstanceRecord>, RepoError> {
        let job = instance.job_id;
        PgRepo::fire_when(self, instance, next_trigger, &mut || true)?
            .ok_or_else(|| RepoError::not_found("job", job.0))
    }
    fn fire_when(
        &self,
        instance: InstanceRecord,
        next_trigger: Option<EpochMs>,
        still_current: &mut dyn FnMut() -> bool,
    ) -> Result<Option<Commit<InstanceRecord>>, RepoError> {
        PgRepo::fire_when(self, instance, next_trigger, still_current)
    }
    fn create_instance(
        &self,
        instance: InstanceRecord,
        delayed_until: Option<EpochMs>,
    ) -> Result<Commit<InstanceRecord>, RepoError> {
        PgRepo::create_instance(self, instance, delayed_until)
    }
    fn create_instances(
        &self,
        runs: Vec<(InstanceRecord, Option<EpochMs>)>,
    ) -> Result<Commit<Vec<InstanceRecord>>, RepoError> {
        PgRepo::create_instances(self, runs)
    }
    fn get_instance(&self, id: InstanceId) -> Result<InstanceRecord, RepoError> {
        PgRepo::get_instance(self, id)
    }
    fn update_instance(&self, instance: &InstanceRecord) -> Result<Commit<()>, RepoError> {
        PgRepo::update_instance(self, instance)
    }
    fn put_instance(&self, instance: &InstanceRecord) -> Result<Commit<()>, RepoError> {
        PgRepo::put_instance_from(self, instance, None)
    }
    fn put_instance_from(
        &self,
        instance: &InstanceRecord,
        prev: Option<InstanceStatus>,
    ) -> Result<Commit<()>, RepoError> {
        PgRepo::put_instance_from(self, instance, prev)
    }
    fn list_instances(
        &self,
        app: AppId,
        filter: InstanceFilter,
        cursor: Option<u64>,
        limit: usize,
    ) -> Result<Page<InstanceRecord>, RepoError> {
        PgRepo::list_instances(self, app, filter, cursor, limit)
    }
    fn delete_instance(&self, id: InstanceId, force: bool) -> Result<Commit<()>, RepoError> {
        PgRepo::delete_instance(self, id, force)
    }
    fn finished_beyond(
        &self,
        job: JobId,
        keep: usize,
        limit: usize,
    ) -> Result<Vec<InstanceId>, RepoError> {
        PgRepo::finished_beyond_where(self, job, keep, limit, false)
    }
    fn finished_fires_beyond(
        &self,
        job: JobId,
        keep: usize,
        limit: usize,
    ) -> Result<Vec<InstanceId>, RepoError> {
        PgRepo::finished_beyond_where(self, job, keep, limit, true)
    }
    fn finished_before(
        &self,
        cutoff: EpochMs,
        from: InstanceId,
        max_examine: usize,
        limit: usize,
    ) -> Result<(Vec<InstanceId>, Option<InstanceId>), RepoError> {
        PgRepo::finished_before(self, cutoff, from, max_examine, limit)
    }
    fn append_log_lines(
        &self,
        id: InstanceId,
        lines: Vec<LogLine>,
    ) -> Result<Commit<LogAppend>, RepoError> {
        PgRepo::get_instance(self, id)?;
        PgRepo::append_live(self, id, lines)
    }
    fn append_log_lines_of_live(
        &self,
        id: InstanceId,
        lines: Vec<LogLine>,
    ) -> Result<Commit<LogAppend>, RepoError> {
        PgRepo::append_live(self, id, lines)
    }
    fn read_logs(
        &self,
        id: InstanceId,
        cursor: Option<u64>,
        limit: usize,
    ) -> Result<Page<LogEntry>, RepoError> {
        PgRepo::read_logs(self, id, cursor, limit)
    }
    fn read_logs_before(
        &self,
        id: InstanceId,
        before: u64,
        limit: usize,
    ) -> Result<Vec<LogEntry>, RepoError> {
        PgRepo::read_logs_before(self, id, before, limit)
    }
    fn create_workflow(
        &self,
        app: AppId,
        def: &WorkflowDef,
        next_trigger: Option<EpochMs>,
        now: EpochMs,
    ) -> Result<Commit<WorkflowRecord>, RepoError> {
        PgRepo::create_workflow(self, app, def, next_trigger, now)
    }
    fn get_workflow(&self, id: WorkflowId) -> Result<WorkflowRecord, RepoError> {
        PgRepo::get_workflow(self, id)
    }
    fn workflow_def(&self, id: WorkflowId, version: u64) -> Result<WorkflowDef, RepoError> {
        PgRepo::workflow_def(self, id, version)
    }
    fn update_workflow(
        &self,
        id: WorkflowId,
        def: &WorkflowDef,
        next_trigger: Option<EpochMs>,
        now: EpochMs,
    ) -> Result<Commit<WorkflowRecord>, RepoError> {
        PgRepo::update_workflow(self, id, def, next_trigger, now)
    }
    fn delete_workflow(&self, id: WorkflowId) -> Result<Commit<WorkflowRecord>, RepoError> {
        PgRepo::delete_workflow(self, id)
    }
    fn list_workflows(
        &self,
        app: AppId,
        filter: &WorkflowFilter,
        cursor: Option<u64>,
        limit: usize,
    ) -> Result<Page<WorkflowRecord>, RepoError> {
        PgRepo::list_workflows(self, app, filter, cursor, limit)
    }
    fn wf_trigger(&self, id: WorkflowId) -> Option<TriggerRecord> {
        self.wf_triggers.get(&id).map(|t| *t)
    }
    fn wf_set_next_trigger_when(
        &self,
        id: WorkflowId,
        next_trigger: Option<EpochMs>,
        still_current: &mut dyn FnMut() -> bool,
    ) -> Result<Option<Commit<TriggerRecord>>, RepoError> {
        PgRepo::wf_set_next_trigger_when(self, id, next_trigger, still_current)
    }
    fn wf_fire_row_when(
        &self,
        id: WorkflowId,
        next_trigger: Option<EpochMs>,
        still_current: &mut dyn FnMut() -> bool,
    ) -> Option<TriggerRecord> {
        PgRepo::wf_fire_row_when(self, id, next_trigger, still_current)
    }
    fn new_wf_instance_id(&self) -> Result<WorkflowInstanceId, RepoError> {
        Ok(WorkflowInstanceId(self.alloc(&self.wf_instance_ids, 1)?))
    }
    fn new_instance_id(&self) -> Result<InstanceId, RepoError> {
        Ok(InstanceId(self.alloc(&self.instance_ids, 1)?))
    }
    fn write_wf(&self, w: &WfWrite) -> Result<Commit<()>, RepoError> {
        PgRepo::write_wf(self, w)
    }
    fn get_wf_instance(&self, id: WorkflowInstanceId) -> Result<WfInstanceRecord, RepoError> {
        PgRepo::get_wf_instance(self, id)
    }
    fn node_link(&self, id: InstanceId) -> Result<Option<NodeLinkRecord>, RepoError> {
        PgRepo::node_link(self, id)
    }
    fn workflow_instances_of(
        &self,
        ids: &[InstanceId],
    ) -> Result<Vec<Option<WorkflowInstanceId>>, RepoError> {
        PgRepo::workflow_instances_of(self, ids)
    }
    fn list_wf_instances(
        &self,
        app: AppId,
        workflow: Option<WorkflowId>,
        cursor: Option<u64>,
        limit: usize,
    ) -> Result<Page<WfInstanceRecord>, RepoError> {
        PgRepo::list_wf_instances(self, app, workflow, cursor, limit)
    }
    fn delete_wf_instance(
        &self,
        id: WorkflowInstanceId,
        force: bool,
    ) -> Result<Commit<()>, RepoError> {
        PgRepo::delete_wf_instance(self, id, force)
    }
    fn wf_finished_beyond(
        &self,
        workflow: WorkflowId,
        keep: usize,
        limit: usize,
    ) -> Result<Vec<WorkflowInstanceId>, RepoError> {
        PgRepo::wf_finished_beyond(self, workflow, keep, limit)
    }
    fn wf_finished_before(
        &self,
        cutoff: EpochMs,
        from: WorkflowInstanceId,
        max_examine: usize,
        limit: usize,
    ) -> Result<(Vec<WorkflowInstanceId>, Option<WorkflowInstanceId>), RepoError> {
        PgRepo::wf_finished_before(self, cutoff, from, max_examine, limit)
    }
    fn load_workflows(&self) -> Result<(Vec<LoadedWorkflow>, Vec<WfInstanceRecord>), RepoError> {
        PgRepo::load_workflows(self)
    }
    fn put_instance_with_alarms(
        &self,
        instance: &InstanceRecord,
        prev: Option<InstanceStatus>,
        mut alarms: Vec<AlarmRecord>,
    ) -> Result<Commit<Vec<AlarmRecord>>, RepoError> {
        let mut ops = Vec::new();
        Self::instance_put_ops(&mut ops, instance, prev)?;
        self.alarms_ops(&mut ops, &mut alarms)?;
        Ok(self.submit(ops, alarms))
    }
    fn insert_alarms(
        &self,
        mut alarms: Vec<AlarmRecord>,
    ) -> Result<Commit<Vec<AlarmRecord>>, RepoError> {
        let mut ops = Vec::new();
        self.alarms_ops(&mut ops, &mut alarms)?;
        Ok(self.submit(ops, alarms))
    }
    fn update_alarm(&self, alarm: &AlarmRecord) -> Result<Commit<()>, RepoError> {
        Ok(self.submit(vec![Self::alarm_op(alarm)?], ()))
    }
    fn pending_alarms(
        &self,
        after: Option<(AppId, u64)>,
        limit: usize,
    ) -> Result<Vec<AlarmRecord>, RepoError> {
        PgRepo::pending_alarms(self, after, limit)
    }
    fn list_alarms(
        &self,
        app: AppId,
        cursor: Option<u64>,
        limit: usize,
    ) -> Result<Page<AlarmRecord>, RepoError> {
        PgRepo::list_alarms(self, app, cursor, limit)
    }
    fn prune_alarms(
        &self,
        app: AppId,
        keep: usize,
        limit: usize,
    ) -> Result<Commit<usize>, RepoError> {
        PgRepo::prune_alarms(self, app, keep, limit)
    }
    fn put_channel(&self, channel: &ChannelRecord) -> Result<Commit<()>, RepoError> {
        PgRepo::put_channel(self, channel)
    }
    fn get_channel(&self, app: AppId, name: &str) -> Result<ChannelRecord, RepoError> {
        PgRepo::get_channel(self, app, name)
    }
    fn delete_channel(&self, app: AppId, name: &str) -> Result<Commit<()>, RepoError> {
        PgRepo::delete_channel(self, app, name)
    }
    fn list_channels(&self, app: AppId) -> Result<Vec<ChannelRecord>, RepoError> {
        PgRepo::list_channels(self, app)
    }
    fn put_idempotency(&self, record: &IdempotencyRecord) -> Result<Commit<()>, RepoError> {
        PgRepo::put_idempotency(self, record)
    }
    fn delete_idempotency(&self, path: &str, key: &str) -> Result<Commit<()>, RepoError> {
        PgRepo::delete_idempotency(self, path, key)
    }
    fn prune_idempotency(&self, before: EpochMs) -> Result<Commit<usize>, RepoError> {
        PgRepo::prune_idempotency(self, before)
    }
    fn list_idempotency(&self) -> Result<Vec<IdempotencyRecord>, RepoError> {
        PgRepo::list_idempotency(self)
    }
    fn put_calendar(&self, calendar: &CalendarRecord) -> Result<Commit<()>, RepoError> {
        PgRepo::put_calendar(self, calendar)
    }
    fn get_calendar(&self, app: AppId, name: &str) -> Result<CalendarRecord, RepoError> {
        PgRepo::get_calendar(self, app, name)
    }
    fn delete_calendar(&self, app: AppId, name: &str) -> Result<Commit<()>, RepoError> {
        PgRepo::delete_calendar(self, app, name)
    }
    fn list_calendars(&self, app: AppId) -> Result<Vec<CalendarRecord>, RepoError> {
        PgRepo::list_calendars(self, app)
    }
    fn load(&self) -> Result<LoadedState, RepoError> {
        PgRepo::load(self)
    }
    fn flush(&self) -> Result<(), RepoError> {
        PgRepo::flush(self)
    }
    fn list_job_versions(
        &self,
        id: JobId,
        cursor: Option<u64>,
        limit: usize,
    ) -> Result<Page<JobVersion>, RepoError> {
        PgRepo::list_job_versions(self, id, cursor, limit)
    }
    fn get_job_version(&self, id: JobId, version: u64) -> Result<JobRecord, RepoError> {
        PgRepo::get_job_version(self, id, version)
    }
    fn list_workflow_versions(
        &self,
        id: WorkflowId,
        cursor: Option<u64>,
        limit: usize,
    ) -> Result<Page<WorkflowVersion>, RepoError> {
        PgRepo::list_workflow_versions(self, id, cursor, limit)
    }
    fn append_audit(&self, record: AuditRecord) -> Result<Commit<AuditRecord>, RepoError> {
        PgRepo::append_audit(self, record)
    }
    fn list_audit(
        &self,
        app: AppId,
        target: Option<&str>,
        cursor: Option<u64>,
        limit: usize,
    ) -> Result<Page<AuditRecord>, RepoError> {
        PgRepo::list_audit(self, app, target, cursor, limit)
    }
}
