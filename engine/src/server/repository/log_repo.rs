//! [`Repository`] for [`LogRepo`]: every method forwards to the inherent method of the same
//! name.

use crate::ids::{AppId, InstanceId, JobId, WorkflowId, WorkflowInstanceId};
use crate::model::InstanceStatus;
use crate::time_expression::EpochMs;
use crate::workflow::WorkflowDef;

use super::Repository;
use crate::server::alarm_repo::{AlarmRecord, ChannelRecord};
use crate::server::calendar_repo::CalendarRecord;
use crate::server::error::RepoError;
use crate::server::history::{AuditRecord, JobVersion, WorkflowVersion};
use crate::server::idempotency_repo::IdempotencyRecord;
use crate::server::instance::InstanceRecord;
use crate::server::records::{AppRecord, JobRecord, LogLine, TriggerRecord};
use crate::server::repo::{
    Commit, InstanceFilter, JobFilter, LoadedState, LogAppend, LogEntry, LogRepo, Page,
    WorkflowFilter,
};
use crate::server::token_repo::{PreviousSecretRecord, TokenRecord};
use crate::server::workflow_repo::{
    LoadedWorkflow, NodeLinkRecord, WfInstanceRecord, WfWrite, WorkflowRecord,
};

/// Forwards every trait method to [`LogRepo`]'s inherent method of the same name.
impl Repository for LogRepo {
    fn create_app(
        &self,
        name: &str,
        secret: &str,
        now: EpochMs,
    ) -> Result<Commit<AppRecord>, RepoError> {
        LogRepo::create_app(self, name, secret, now)
    }
    fn get_app(&self, id: AppId) -> Result<AppRecord, RepoError> {
        LogRepo::get_app(self, id)
    }
    fn get_app_by_name(&self, name: &str) -> Result<AppRecord, RepoError> {
        LogRepo::get_app_by_name(self, name)
    }
    fn list_apps(&self) -> Result<Vec<AppRecord>, RepoError> {
        LogRepo::list_apps(self)
    }
    fn rotate_secret(
        &self,
        app: AppId,
        secret: &str,
        until: EpochMs,
    ) -> Result<Commit<AppRecord>, RepoError> {
        LogRepo::rotate_secret(self, app, secret, until)
    }
    fn previous_secret(&self, app: AppId) -> Result<Option<PreviousSecretRecord>, RepoError> {
        LogRepo::previous_secret(self, app)
    }
    fn delete_app(&self, app: AppId) -> Result<Commit<()>, RepoError> {
        LogRepo::delete_app(self, app)
    }
    fn create_token(&self, token: TokenRecord) -> Result<Commit<TokenRecord>, RepoError> {
        LogRepo::create_token(self, token)
    }
    fn token(&self, id: u64) -> Result<Option<TokenRecord>, RepoError> {
        LogRepo::token(self, id)
    }
    fn list_tokens(&self, app: AppId) -> Result<Vec<TokenRecord>, RepoError> {
        LogRepo::list_tokens(self, app)
    }
    fn revoke_token(&self, app: AppId, id: u64) -> Result<Commit<()>, RepoError> {
        LogRepo::revoke_token(self, app, id)
    }
    fn create_job(
        &self,
        job: JobRecord,
        next_trigger: Option<EpochMs>,
        now: EpochMs,
    ) -> Result<Commit<JobRecord>, RepoError> {
        LogRepo::create_job(self, job, next_trigger, now)
    }
    fn get_job(&self, id: JobId) -> Result<JobRecord, RepoError> {
        LogRepo::get_job(self, id)
    }
    fn update_job(
        &self,
        job: JobRecord,
        next_trigger: Option<EpochMs>,
        now: EpochMs,
    ) -> Result<Commit<JobRecord>, RepoError> {
        LogRepo::update_job(self, job, next_trigger, now)
    }
    fn delete_job(&self, id: JobId) -> Result<Commit<JobRecord>, RepoError> {
        LogRepo::delete_job(self, id)
    }
    fn list_jobs(
        &self,
        app: AppId,
        filter: &JobFilter,
        cursor: Option<u64>,
        limit: usize,
    ) -> Result<Page<JobRecord>, RepoError> {
        LogRepo::list_jobs(self, app, filter, cursor, limit)
    }
    fn trigger(&self, id: JobId) -> Option<TriggerRecord> {
        LogRepo::trigger(self, id)
    }
    fn set_next_trigger(
        &self,
        id: JobId,
        next_trigger: Option<EpochMs>,
    ) -> Result<Commit<TriggerRecord>, RepoError> {
        LogRepo::set_next_trigger(self, id, next_trigger)
    }
    fn set_next_trigger_when(
        &self,
        id: JobId,
        next_trigger: Option<EpochMs>,
        still_current: &mut dyn FnMut() -> bool,
    ) -> Result<Option<Commit<TriggerRecord>>, RepoError> {
        LogRepo::set_next_trigger_if(self, id, next_trigger, still_current)
    }
    fn fire(
        &self,
        instance: InstanceRecord,
        next_trigger: Option<EpochMs>,
    ) -> Result<Commit<InstanceRecord>, RepoError> {
        LogRepo::fire(self, instance, next_trigger)
    }
    fn fire_when(
        &self,
        instance: InstanceRecord,
        next_trigger: Option<EpochMs>,
        still_current: &mut dyn FnMut() -> bool,
    ) -> Result<Option<Commit<InstanceRecord>>, RepoError> {
        LogRepo::fire_if(self, instance, next_trigger, still_current)
    }
    fn create_instance(
        &self,
        instance: InstanceRecord,
        delayed_until: Option<EpochMs>,
    ) -> Result<Commit<InstanceRecord>, RepoError> {
        LogRepo::create_instance(self, instance, delayed_until)
    }
    fn create_instances(
        &self,
        runs: Vec<(InstanceRecord, Option<EpochMs>)>,
    ) -> Result<Commit<Vec<InstanceRecord>>, RepoError> {
        LogRepo::create_instances(self, runs)
    }
    fn get_instance(&self, id: InstanceId) -> Result<InstanceRecord, RepoError> {
        LogRepo::get_instance(self, id)
    }
    fn update_instance(&self, instance: &InstanceRecord) -> Result<Commit<()>, RepoError> {
        LogRepo::update_instance(self, instance)
    }
    fn put_instance(&self, instance: &InstanceRecord) -> Result<Commit<()>, RepoError> {
        LogRepo::put_instance(self, instance)
    }
    fn put_instance_from(
        &self,
        instance: &InstanceRecord,
        prev: Option<InstanceStatus>,
    ) -> Result<Commit<()>, RepoError> {
        LogRepo::put_instance_from(self, instance, prev)
    }
    fn list_instances(
        &self,
        app: AppId,
        filter: InstanceFilter,
        cursor: Option<u64>,
        limit: usize,
    ) -> Result<Page<InstanceRecord>, RepoError> {
        LogRepo::list_instances(self, app, filter, cursor, limit)
    }
    fn delete_instance(&self, id: InstanceId, force: bool) -> Result<Commit<()>, RepoError> {
        LogRepo::delete_instance(self, id, force)
    }
    fn finished_beyond(
        &self,
        job: JobId,
        keep: usize,
        limit: usize,
    ) -> Result<Vec<InstanceId>, RepoError> {
        LogRepo::finished_beyond(self, job, keep, limit)
    }
    fn finished_fires_beyond(
        &self,
        job: JobId,
        keep: usize,
        limit: usize,
    ) -> Result<Vec<InstanceId>, RepoError> {
        LogRepo::finished_fires_beyond(self, job, keep, limit)
    }
    fn finished_before(
        &self,
        cutoff: EpochMs,
        from: InstanceId,
        max_examine: usize,
        limit: usize,
    ) -> Result<(Vec<InstanceId>, Option<InstanceId>), RepoError> {
        LogRepo::finished_before(self, cutoff, from, max_examine, limit)
    }
    fn append_log_lines(
        &self,
        id: InstanceId,
        lines: Vec<LogLine>,
    ) -> Result<Commit<LogAppend>, RepoError> {
        LogRepo::append_logs(self, id, lines)
    }
    fn append_log_lines_of_live(
        &self,
        id: InstanceId,
        lines: Vec<LogLine>,
    ) -> Result<Commit<LogAppend>, RepoError> {
        LogRepo::append_logs_of_live(self, id, lines)
    }
    fn read_logs(
        &self,
        id: InstanceId,
        cursor: Option<u64>,
        limit: usize,
    ) -> Result<Page<LogEntry>, RepoError> {
        LogRepo::read_logs(self, id, cursor, limit)
    }
    fn read_logs_before(
        &self,
        id: InstanceId,
        before: u64,
        limit: usize,
    ) -> Result<Vec<LogEntry>, RepoError> {
        LogRepo::read_logs_before(self, id, before, limit)
    }
    fn create_workflow(
        &self,
        app: AppId,
        def: &WorkflowDef,
        next_trigger: Option<EpochMs>,
        now: EpochMs,
    ) -> Result<Commit<WorkflowRecord>, RepoError> {
        LogRepo::create_workflow(self, app, def, next_trigger, now)
    }
    fn get_workflow(&self, id: WorkflowId) -> Result<WorkflowRecord, RepoError> {
        LogRepo::get_workflow(self, id)
    }
    fn workflow_def(&self, id: WorkflowId, version: u64) -> Result<WorkflowDef, RepoError> {
        LogRepo::workflow_def(self, id, version)
    }
    fn update_workflow(
        &self,
        id: WorkflowId,
        def: &WorkflowDef,
        next_trigger: Option<EpochMs>,
        now: EpochMs,
    ) -> Result<Commit<WorkflowRecord>, RepoError> {
        LogRepo::update_workflow(self, id, def, next_trigger, now)
    }
    fn delete_workflow(&self, id: WorkflowId) -> Result<Commit<WorkflowRecord>, RepoError> {
        LogRepo::delete_workflow(self, id)
    }
    fn list_workflows(
        &self,
        app: AppId,
        filter: &WorkflowFilter,
        cursor: Option<u64>,
        limit: usize,
    ) -> Result<Page<WorkflowRecord>, RepoError> {
        LogRepo::list_workflows(self, app, filter, cursor, limit)
    }
    fn wf_trigger(&self, id: WorkflowId) -> Option<TriggerRecord> {
        LogRepo::wf_trigger(self, id)
    }
    fn wf_set_next_trigger_when(
        &self,
        id: WorkflowId,
        next_trigger: Option<EpochMs>,
        still_current: &mut dyn FnMut() -> bool,
    ) -> Result<Option<Commit<TriggerRecord>>, RepoError> {
        LogRepo::wf_set_next_trigger_if(self, id, next_trigger, still_current)
    }
    fn wf_fire_row_when(
        &self,
        id: WorkflowId,
        next_trigger: Option<EpochMs>,
        still_current: &mut dyn FnMut() -> bool,
    ) -> Option<TriggerRecord> {
        LogRepo::wf_fire_row(self, id, next_trigger, still_current)
    }
    fn new_wf_instance_id(&self) -> Result<WorkflowInstanceId, RepoError> {
        LogRepo::new_wf_instance_id(self)
    }
    fn new_instance_id(&self) -> Result<InstanceId, RepoError> {
        LogRepo::new_instance_id(self)
    }
    fn write_wf(&self, w: &WfWrite) -> Result<Commit<()>, RepoError> {
        LogRepo::write_wf(self, w)
    }
    fn get_wf_instance(&self, id: WorkflowInstanceId) -> Result<WfInstanceRecord, RepoError> {
        LogRepo::get_wf_instance(self, id)
    }
    fn node_link(&self, id: InstanceId) -> Result<Option<NodeLinkRecord>, RepoError> {
        LogRepo::node_link(self, id)
    }
    fn list_wf_instances(
        &self,
        app: AppId,
        workflow: Option<WorkflowId>,
        cursor: Option<u64>,
        limit: usize,
    ) -> Result<Page<WfInstanceRecord>, RepoError> {
        LogRepo::list_wf_instances(self, app, workflow, cursor, limit)
    }
    fn delete_wf_instance(
        &self,
        id: WorkflowInstanceId,
        force: bool,
    ) -> Result<Commit<()>, RepoError> {
        LogRepo::delete_wf_instance(self, id, force)
    }
    fn wf_finished_beyond(
        &self,
        workflow: WorkflowId,
        keep: usize,
        limit: usize,
    ) -> Result<Vec<WorkflowInstanceId>, RepoError> {
        LogRepo::wf_finished_beyond(self, workflow, keep, limit)
    }
    fn wf_finished_before(
        &self,
        cutoff: EpochMs,
        from: WorkflowInstanceId,
        max_examine: usize,
        limit: usize,
    ) -> Result<(Vec<WorkflowInstanceId>, Option<WorkflowInstanceId>), RepoError> {
        LogRepo::wf_finished_before(self, cutoff, from, max_examine, limit)
    }
    fn load_workflows(&self) -> Result<(Vec<LoadedWorkflow>, Vec<WfInstanceRecord>), RepoError> {
        LogRepo::load_workflows(self)
    }
    fn put_instance_with_alarms(
        &self,
        instance: &InstanceRecord,
        prev: Option<InstanceStatus>,
        alarms: Vec<AlarmRecord>,
    ) -> Result<Commit<Vec<AlarmRecord>>, RepoError> {
        LogRepo::put_instance_with_alarms(self, instance, prev, alarms)
    }
    fn insert_alarms(
        &self,
        alarms: Vec<AlarmRecord>,
    ) -> Result<Commit<Vec<AlarmRecord>>, RepoError> {
        LogRepo::insert_alarms(self, alarms)
    }
    fn update_alarm(&self, alarm: &AlarmRecord) -> Result<Commit<()>, RepoError> {
        LogRepo::update_alarm(self, alarm)
    }
    fn pending_alarms(
        &self,
        after: Option<(AppId, u64)>,
        limit: usize,
    ) -> Result<Vec<AlarmRecord>, RepoError> {
        LogRepo::pending_alarms(self, after, limit)
    }
    fn list_alarms(
        &self,
        app: AppId,
        cursor: Option<u64>,
        limit: usize,
    ) -> Result<Page<AlarmRecord>, RepoError> {
        LogRepo::list_alarms(self, app, cursor, limit)
    }
    fn prune_alarms(
        &self,
        app: AppId,
        keep: usize,
        limit: usize,
    ) -> Result<Commit<usize>, RepoError> {
        LogRepo::prune_alarms(self, app, keep, limit)
    }
    fn put_channel(&self, channel: &ChannelRecord) -> Result<Commit<()>, RepoError> {
        LogRepo::put_channel(self, channel)
    }
    fn get_channel(&self, app: AppId, name: &str) -> Result<ChannelRecord, RepoError> {
        LogRepo::get_channel(self, app, name)
    }
    fn delete_channel(&self, app: AppId, name: &str) -> Result<Commit<()>, RepoError> {
        LogRepo::delete_channel(self, app, name)
    }
    fn list_channels(&self, app: AppId) -> Result<Vec<ChannelRecord>, RepoError> {
        LogRepo::list_channels(self, app)
    }
    fn put_idempotency(&self, record: &IdempotencyRecord) -> Result<Commit<()>, RepoError> {
        LogRepo::put_idempotency(self, record)
    }
    fn delete_idempotency(&self, path: &str, key: &str) -> Result<Commit<()>, RepoError> {
        LogRepo::delete_idempotency(self, path, key)
    }
    fn prune_idempotency(&self, before: EpochMs) -> Result<Commit<usize>, RepoError> {
        LogRepo::prune_idempotency(self, before)
    }
    fn list_idempotency(&self) -> Result<Vec<IdempotencyRecord>, RepoError> {
        LogRepo::list_idempotency(self)
    }
    fn put_calendar(&self, calendar: &CalendarRecord) -> Result<Commit<()>, RepoError> {
        LogRepo::put_calendar(self, calendar)
    }
    fn get_calendar(&self, app: AppId, name: &str) -> Result<CalendarRecord, RepoError> {
        LogRepo::get_calendar(self, app, name)
    }
    fn delete_calendar(&self, app: AppId, name: &str) -> Result<Commit<()>, RepoError> {
        LogRepo::delete_calendar(self, app, name)
    }
    fn list_calendars(&self, app: AppId) -> Result<Vec<CalendarRecord>, RepoError> {
        LogRepo::list_calendars(self, app)
    }
    fn load(&self) -> Result<LoadedState, RepoError> {
        LogRepo::load(self)
    }
    fn flush(&self) -> Result<(), RepoError> {
        Ok(self.store().flush()?)
    }
    fn list_job_versions(
        &self,
        id: JobId,
        cursor: Option<u64>,
        limit: usize,
    ) -> Result<Page<JobVersion>, RepoError> {
        LogRepo::list_job_versions(self, id, cursor, limit)
    }
    fn get_job_version(&self, id: JobId, version: u64) -> Result<JobRecord, RepoError> {
        LogRepo::get_job_version(self, id, version)
    }
    fn list_workflow_versions(
        &self,
        id: WorkflowId,
        cursor: Option<u64>,
        limit: usize,
    ) -> Result<Page<WorkflowVersion>, RepoError> {
        LogRepo::list_workflow_versions(self, id, cursor, limit)
    }
    fn append_audit(&self, record: AuditRecord) -> Result<Commit<AuditRecord>, RepoError> {
        LogRepo::append_audit(self, record)
    }
    fn list_audit(
        &self,
        app: AppId,
        target: Option<&str>,
        cursor: Option<u64>,
        limit: usize,
    ) -> Result<Page<AuditRecord>, RepoError> {
        LogRepo::list_audit(self, app, target, cursor, limit)
    }
}
