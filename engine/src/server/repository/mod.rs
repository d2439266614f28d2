//! [`Repository`]: what the server keeps durable, as one object-safe trait with two
//! implementations — [`LogRepo`] over the embedded log store (the default) and, with the
//! `postgres` feature, `PgRepo` over PostgreSQL — and [`Repo`], the cheap handle the server,
//! the HTTP API, the console, retention and the simulator hold.
//!
//! Both implementations keep one contract, checked by one conformance suite
//! (`engine/tests/server_repo.rs`):
//! - a write validates, assigns ids and returns a [`Commit`] at once; its value is final once
//!   the commit resolves, which is when the write is durable;
//! - writes submitted by one caller commit in submission order, and many writes share one
//!   commit (a group commit of the log store, a transaction per batch in PostgreSQL);
//! - a read sees every write acknowledged before it started; a check that reads before it
//!   writes (a token id taken, an app that still has jobs or workflows) sees every write
//!   submitted before it;
//! - an id is never handed out twice, across restarts too.
//!
//! The handle adds the generic conveniences a trait object cannot carry (closures, iterators)
//! and forwards everything else through `Deref`.

use std::fmt::Debug;
use std::ops::Deref;
use std::sync::Arc;

use ferrojob_store::Store;

use crate::ids::{AppId, InstanceId, JobId, WorkflowId, WorkflowInstanceId};
use crate::model::InstanceStatus;
use crate::time_expression::EpochMs;
use crate::workflow::WorkflowDef;

use super::alarm_repo::{AlarmRecord, ChannelRecord};
use super::calendar_repo::CalendarRecord;
use super::error::RepoError;
use super::history::{AuditRecord, JobVersion, WorkflowVersion};
use super::idempotency_repo::IdempotencyRecord;
use super::instance::InstanceRecord;
use super::records::{AppRecord, JobRecord, LogLine, TriggerRecord};
use super::repo::{
    Commit, InstanceFilter, JobFilter, LoadedState, LogAppend, LogEntry, LogRepo, Page,
    WorkflowFilter,
};
use super::token_repo::{PreviousSecretRecord, TokenRecord};
use super::workflow_repo::{
    LoadedWorkflow, NodeLinkRecord, WfInstanceRecord, WfWrite, WorkflowRecord,
};

/// The server's durable state (see the module docs). Every method is documented on
/// [`LogRepo`]'s method of the same name; an implementation must keep the same contract.
///
/// `still_current` callbacks are called at most once, while the implementation holds the
/// row they guard (the job's or workflow's trigger row), so that a decision taken from an
/// older definition never overwrites a newer one.
pub trait Repository: Send + Sync + Debug {
    // ----- apps -----
    /// See [`LogRepo::create_app`].
    fn create_app(
        &self,
        name: &str,
        secret: &str,
        now: EpochMs,
    ) -> Result<Commit<AppRecord>, RepoError>;
    /// See [`LogRepo::get_app`].
    fn get_app(&self, id: AppId) -> Result<AppRecord, RepoError>;
    /// See [`LogRepo::get_app_by_name`].
    fn get_app_by_name(&self, name: &str) -> Result<AppRecord, RepoError>;
    /// See [`LogRepo::list_apps`].
    fn list_apps(&self) -> Result<Vec<AppRecord>, RepoError>;
    /// See [`LogRepo::rotate_secret`].
    fn rotate_secret(
        &self,
        app: AppId,
        secret: &str,
        until: EpochMs,
    ) -> Result<Commit<AppRecord>, RepoError>;
    /// See [`LogRepo::previous_secret`].
    fn previous_secret(&self, app: AppId) -> Result<Option<PreviousSecretRecord>, RepoError>;
    /// See [`LogRepo::delete_app`].
    fn delete_app(&self, app: AppId) -> Result<Commit<()>, RepoError>;

    // ----- API tokens -----
    /// See [`LogRepo::create_token`].
    fn create_token(&self, token: TokenRecord) -> Result<Commit<TokenRecord>, RepoError>;
    /// See [`LogRepo::token`].
    fn token(&self, id: u64) -> Result<Option<TokenRecord>, RepoError>;
    /// See [`LogRepo::list_tokens`].
    fn list_tokens(&self, app: AppId) -> Result<Vec<TokenRecord>, RepoError>;
    /// See [`LogRepo::revoke_token`].
    fn revoke_token(&self, app: AppId, id: u64) -> Result<Commit<()>, RepoError>;

    // ----- jobs and their trigger rows -----
    /// See [`LogRepo::create_job`].
    fn create_job(
        &self,
        job: JobRecord,
        next_trigger: Option<EpochMs>,
        now: EpochMs,
    ) -> Result<Commit<JobRecord>, RepoError>;
    /// See [`LogRepo::get_job`].
    fn get_job(&self, id: JobId) -> Result<JobRecord, RepoError>;
    /// See [`LogRepo::update_job`].
    fn update_job(
        &self,
        job: JobRecord,
        next_trigger: Option<EpochMs>,
        now: EpochMs,
    ) -> Result<Commit<JobRecord>, RepoError>;
    /// See [`LogRepo::delete_job`].
    fn delete_job(&self, id: JobId) -> Result<Commit<JobRecord>, RepoError>;
    /// See [`LogRepo::list_jobs`].
    fn list_jobs(
        &self,
        app: AppId,
        filter: &JobFilter,
        cursor: Option<u64>,
        limit: usize,
    ) -> Result<Page<JobRecord>, RepoError>;
    /// See [`LogRepo::trigger`].
    fn trigger(&self, id: JobId) -> Option<TriggerRecord>;
    /// See [`LogRepo::set_next_trigger`].
    fn set_next_trigger(
        &self,
        id: JobId,
        next_trigger: Option<EpochMs>,
    ) -> Result<Commit<TriggerRecord>, RepoError>;
    /// See [`LogRepo::set_next_trigger_if`].
    fn set_next_trigger_when(
        &self,
        id: JobId,
        next_trigger: Option<EpochMs>,
        still_current: &mut dyn FnMut() -> bool,
    ) -> Result<Option<Commit<TriggerRecord>>, RepoError>;

    // ----- instances -----
    /// See [`LogRepo::fire`].
    fn fire(
        &self,
        instance: InstanceRecord,
        next_trigger: Option<EpochMs>,
    ) -> Result<Commit<InstanceRecord>, RepoError>;
    /// See [`LogRepo::fire_if`].
    fn fire_when(
        &self,
        instance: InstanceRecord,
        next_trigger: Option<EpochMs>,
        still_current: &mut dyn FnMut() -> bool,
    ) -> Result<Option<Commit<InstanceRecord>>, RepoError>;
    /// See [`LogRepo::create_instance`].
    fn create_instance(
        &self,
        instance: InstanceRecord,
        delayed_until: Option<EpochMs>,
    ) -> Result<Commit<InstanceRecord>, RepoError>;
    /// See [`LogRepo::create_instances`].
    fn create_instances(
        &self,
        runs: Vec<(InstanceRecord, Option<EpochMs>)>,
    ) -> Result<Commit<Vec<InstanceRecord>>, RepoError>;
    /// See [`LogRepo::get_instance`].
    fn get_instance(&self, id: InstanceId) -> Result<InstanceRecord, RepoError>;
    /// See [`LogRepo::update_instance`].
    fn update_instance(&self, instance: &InstanceRecord) -> Result<Commit<()>, RepoError>;
    /// See [`LogRepo::put_instance`].
    fn put_instance(&self, instance: &InstanceRecord) -> Result<Commit<()>, RepoError>;
    /// See [`LogRepo::put_instance_from`].
    fn put_instance_from(
        &self,
        instance: &InstanceRecord,
        prev: Option<InstanceStatus>,
    ) -> Result<Commit<()>, RepoError>;
    /// See [`LogRepo::list_instances`].
    fn list_instances(
        &self,
        app: AppId,
        filter: InstanceFilter,
        cursor: Option<u64>,
        limit: usize,
    ) -> Result<Page<InstanceRecord>, RepoError>;
    /// See [`LogRepo::delete_instance`].
    fn delete_instance(&self, id: InstanceId, force: bool) -> Result<Commit<()>, RepoError>;
    /// See [`LogRepo::finished_beyond`].
    fn finished_beyond(
        &self,
        job: JobId,
        keep: usize,
        limit: usize,
    ) -> Result<Vec<InstanceId>, RepoError>;
    /// See [`LogRepo::finished_fires_beyond`].
    fn finished_fires_beyond(
        &self,
        job: JobId,
        keep: usize,
        limit: usize,
    ) -> Result<Vec<InstanceId>, RepoError>;
    /// See [`LogRepo::finished_before`].
    fn finished_before(
        &self,
        cutoff: EpochMs,
        from: InstanceId,
        max_examine: usize,
        limit: usize,
    ) -> Result<(Vec<InstanceId>, Option<InstanceId>), RepoError>;

    // ----- logs -----
    /// See [`LogRepo::append_logs`].
    fn append_log_lines(
        &self,
        id: InstanceId,
        lines: Vec<LogLine>,
    ) -> Result<Commit<LogAppend>, RepoError>;
    /// See [`LogRepo::append_logs_of_live`].
    fn append_log_lines_of_live(
        &self,
        id: InstanceId,
        lines: Vec<LogLine>,
    ) -> Result<Commit<LogAppend>, RepoError>;
    /// See [`LogRepo::read_logs`].
    fn read_logs(
        &self,
        id: InstanceId,
        cursor: Option<u64>,
        limit: usize,
    ) -> Result<Page<LogEntry>, RepoError>;
    /// See [`LogRepo::read_logs_before`].
    fn read_logs_before(
        &self,
        id: InstanceId,
        before: u64,
        limit: usize,
    ) -> Result<Vec<LogEntry>, RepoError>;

    // ----- workflows -----
    /// See [`LogRepo::create_workflow`].
    fn create_workflow(
        &self,
        app: AppId,
        def: &WorkflowDef,
        next_trigger: Option<EpochMs>,
        now: EpochMs,
    ) -> Result<Commit<WorkflowRecord>, RepoError>;
    /// See [`LogRepo::get_workflow`].
    fn get_workflow(&self, id: WorkflowId) -> Result<WorkflowRecord, RepoError>;
    /// See [`LogRepo::workflow_def`].
    fn workflow_def(&self, id: WorkflowId, version: u64) -> Result<WorkflowDef, RepoError>;
    /// See [`LogRepo::update_workflow`].
    fn update_workflow(
        &self,
        id: WorkflowId,
        def: &WorkflowDef,
        next_trigger: Option<EpochMs>,
        now: EpochMs,
    ) -> Result<Commit<WorkflowRecord>, RepoError>;
    /// See [`LogRepo::delete_workflow`].
    fn delete_workflow(&self, id: WorkflowId) -> Result<Commit<WorkflowRecord>, RepoError>;
    /// See [`LogRepo::list_workflows`].
    fn list_workflows(
        &self,
        app: AppId,
        filter: &WorkflowFilter,
        cursor: Option<u64>,
        limit: usize,
    ) -> Result<Page<WorkflowRecord>, RepoError>;
    /// See [`LogRepo::wf_trigger`].
    fn wf_trigger(&self, id: WorkflowId) -> Option<TriggerRecord>;
    /// See [`LogRepo::wf_set_next_trigger_if`].
    fn wf_set_next_trigger_when(
        &self,
        id: WorkflowId,
        next_trigger: Option<EpochMs>,
        still_current: &mut dyn FnMut() -> bool,
    ) -> Result<Option<Commit<TriggerRecord>>, RepoError>;
    /// See [`LogRepo::wf_fire_row`].
    fn wf_fire_row_when(
        &self,
        id: WorkflowId,
        next_trigger: Option<EpochMs>,
        still_current: &mut dyn FnMut() -> bool,
    ) -> Option<TriggerRecord>;
    /// See [`LogRepo::new_wf_instance_id`].
    fn new_wf_instance_id(&self) -> Result<WorkflowInstanceId, RepoError>;
    /// See [`LogRepo::new_instance_id`].
    fn new_instance_id(&self) -> Result<InstanceId, RepoError>;
    /// See [`LogRepo::write_wf`].
    fn write_wf(&self, w: &WfWrite) -> Result<Commit<()>, RepoError>;
    /// See [`LogRepo::get_wf_instance`].
    fn get_wf_instance(&self, id: WorkflowInstanceId) -> Result<WfInstanceRecord, RepoError>;
    /// See [`LogRepo::node_link`].
    fn node_link(&self, id: InstanceId) -> Result<Option<NodeLinkRecord>, RepoError>;
    /// The workflow instance each of `ids` ran a node of (`None`: not a node's run), in the
    /// order of `ids`: one lookup for a whole page of a listing. By default one
    /// [`node_link`](Repository::node_link) per id; a repository whose reads are round trips
    /// answers with one query.
    fn workflow_instances_of(
        &self,
        ids: &[InstanceId],
    ) -> Result<Vec<Option<WorkflowInstanceId>>, RepoError> {
        ids.iter()
            .map(|&id| Ok(self.node_link(id)?.map(|l| l.wf_instance)))
            .collect()
    }
    /// See [`LogRepo::list_wf_instances`].
    fn list_wf_instances(
        &self,
        app: AppId,
        workflow: Option<WorkflowId>,
        cursor: Option<u64>,
        limit: usize,
    ) -> Result<Page<WfInstanceRecord>, RepoError>;
    /// See [`LogRepo::delete_wf_instance`].
    fn delete_wf_instance(
        &self,
        id: WorkflowInstanceId,
        force: bool,
    ) -> Result<Commit<()>, RepoError>;
    /// See [`LogRepo::wf_finished_beyond`].
    fn wf_finished_beyond(
        &self,
        workflow: WorkflowId,
        keep: usize,
        limit: usize,
    ) -> Result<Vec<WorkflowInstanceId>, RepoError>;
    /// See [`LogRepo::wf_finished_before`].
    fn wf_finished_before(
        &self,
        cutoff: EpochMs,
        from: WorkflowInstanceId,
        max_examine: usize,
        limit: usize,
    ) -> Result<(Vec<WorkflowInstanceId>, Option<WorkflowInstanceId>), RepoError>;
    /// See [`LogRepo::load_workflows`].
    fn load_workflows(&self) -> Result<(Vec<LoadedWorkflow>, Vec<WfInstanceRecord>), RepoError>;

    // ----- alarms and channels -----
    /// See [`LogRepo::put_instance_with_alarms`].
    fn put_instance_with_alarms(
        &self,
        instance: &InstanceRecord,
        prev: Option<InstanceStatus>,
        alarms: Vec<AlarmRecord>,
    ) -> Result<Commit<Vec<AlarmRecord>>, RepoError>;
    /// See [`LogRepo::insert_alarms`].
    fn insert_alarms(
        &self,
        alarms: Vec<AlarmRecord>,
    ) -> Result<Commit<Vec<AlarmRecord>>, RepoError>;
    /// See [`LogRepo::update_alarm`].
    fn update_alarm(&self, alarm: &AlarmRecord) -> Result<Commit<()>, RepoError>;
    /// See [`LogRepo::pending_alarms`].
    fn pending_alarms(
        &self,
        after: Option<(AppId, u64)>,
        limit: usize,
    ) -> Result<Vec<AlarmRecord>, RepoError>;
    /// See [`LogRepo::list_alarms`].
    fn list_alarms(
        &self,
        app: AppId,
        cursor: Option<u64>,
        limit: usize,
    ) -> Result<Page<AlarmRecord>, RepoError>;
    /// See [`LogRepo::prune_alarms`].
    fn prune_alarms(
        &self,
        app: AppId,
        keep: usize,
        limit: usize,
    ) -> Result<Commit<usize>, RepoError>;
    /// See [`LogRepo::put_channel`].
    fn put_channel(&self, channel: &ChannelRecord) -> Result<Commit<()>, RepoError>;
    /// See [`LogRepo::get_channel`].
    fn get_channel(&self, app: AppId, name: &str) -> Result<ChannelRecord, RepoError>;
    /// See [`LogRepo::delete_channel`].
    fn delete_channel(&self, app: AppId, name: &str) -> Result<Commit<()>, RepoError>;
    /// See [`LogRepo::list_channels`].
    fn list_channels(&self, app: AppId) -> Result<Vec<ChannelRecord>, RepoError>;

    // ----- calendars -----
    /// See [`LogRepo::put_calendar`].
    fn put_calendar(&self, calendar: &CalendarRecord) -> Result<Commit<()>, RepoError>;
    /// See [`LogRepo::get_calendar`].
    fn get_calendar(&self, app: AppId, name: &str) -> Result<CalendarRecord, RepoError>;
    /// See [`LogRepo::delete_calendar`].
    fn delete_calendar(&self, app: AppId, name: &str) -> Result<Commit<()>, RepoError>;
    /// See [`LogRepo::list_calendars`].
    fn list_calendars(&self, app: AppId) -> Result<Vec<CalendarRecord>, RepoError>;

    // ----- versions and audit -----
    /// See [`LogRepo::list_job_versions`].
    fn list_job_versions(
        &self,
        id: JobId,
        cursor: Option<u64>,
        limit: usize,
    ) -> Result<Page<JobVersion>, RepoError>;
    /// See [`LogRepo::get_job_version`].
    fn get_job_version(&self, id: JobId, version: u64) -> Result<JobRecord, RepoError>;
    /// See [`LogRepo::list_workflow_versions`].
    fn list_workflow_versions(
        &self,
        id: WorkflowId,
        cursor: Option<u64>,
        limit: usize,
    ) -> Result<Page<WorkflowVersion>, RepoError>;
    /// See [`LogRepo::append_audit`].
    fn append_audit(&self, record: AuditRecord) -> Result<Commit<AuditRecord>, RepoError>;
    /// See [`LogRepo::list_audit`].
    fn list_audit(
        &self,
        app: AppId,
        target: Option<&str>,
        cursor: Option<u64>,
        limit: usize,
    ) -> Result<Page<AuditRecord>, RepoError>;

    // ----- restart and shutdown -----
    // ----- idempotency keys -----
    /// See [`LogRepo::put_idempotency`].
    fn put_idempotency(&self, record: &IdempotencyRecord) -> Result<Commit<()>, RepoError>;
    /// See [`LogRepo::delete_idempotency`].
    fn delete_idempotency(&self, path: &str, key: &str) -> Result<Commit<()>, RepoError>;
    /// See [`LogRepo::prune_idempotency`].
    fn prune_idempotency(&self, before: EpochMs) -> Result<Commit<usize>, RepoError>;
    /// See [`LogRepo::list_idempotency`].
    fn list_idempotency(&self) -> Result<Vec<IdempotencyRecord>, RepoError>;

    /// See [`LogRepo::load`].
    fn load(&self) -> Result<LoadedState, RepoError>;
    /// Makes every submitted write durable before returning (shutdown).
    fn flush(&self) -> Result<(), RepoError>;
}

/// The handle to the server's repository: cheap to clone, shared by every part of the server.
/// Every [`Repository`] method is reachable through `Deref`; the generic forms (closures,
/// iterators) are inherent methods.
#[derive(Clone, Debug)]
pub struct Repo {
    inner: Arc<dyn Repository>,
}

impl Deref for Repo {
    type Target = dyn Repository;

    fn deref(&self) -> &Self::Target {
        &*self.inner
    }
}

/// Turns a `FnOnce` into the `FnMut` the trait takes; a second call answers `false`.
fn once(f: impl FnOnce() -> bool) -> impl FnMut() -> bool {
    let mut f = Some(f);
    move || f.take().is_some_and(|f| f())
}

impl Repo {
    /// The repository over the embedded `store` (a [`LogRepo`]).
    pub fn open(store: Arc<dyn Store>) -> Result<Repo, RepoError> {
        Ok(Repo::new(Arc::new(LogRepo::open(store)?)))
    }

    /// A handle to any implementation.
    pub fn new(inner: Arc<dyn Repository>) -> Repo {
        Repo { inner }
    }

    /// The implementation underneath.
    pub fn inner(&self) -> &Arc<dyn Repository> {
        &self.inner
    }

    /// See [`LogRepo::set_next_trigger_if`].
    pub fn set_next_trigger_if(
        &self,
        id: JobId,
        next_trigger: Option<EpochMs>,
        still_current: impl FnOnce() -> bool,
    ) -> Result<Option<Commit<TriggerRecord>>, RepoError> {
        self.inner
            .set_next_trigger_when(id, next_trigger, &mut once(still_current))
    }

    /// See [`LogRepo::fire_if`].
    pub fn fire_if(
        &self,
        instance: InstanceRecord,
        next_trigger: Option<EpochMs>,
        still_current: impl FnOnce() -> bool,
    ) -> Result<Option<Commit<InstanceRecord>>, RepoError> {
        self.inner
            .fire_when(instance, next_trigger, &mut once(still_current))
    }

    /// See [`LogRepo::wf_set_next_trigger_if`].
    pub fn wf_set_next_trigger_if(
        &self,
        id: WorkflowId,
        next_trigger: Option<EpochMs>,
        still_current: impl FnOnce() -> bool,
    ) -> Result<Option<Commit<TriggerRecord>>, RepoError> {
        self.inner
            .wf_set_next_trigger_when(id, next_trigger, &mut once(still_current))
    }

    /// See [`LogRepo::wf_fire_row`].
    pub fn wf_fire_row(
        &self,
        id: WorkflowId,
        next_trigger: Option<EpochMs>,
        still_current: impl FnOnce() -> bool,
    ) -> Option<TriggerRecord> {
        self.inner
            .wf_fire_row_when(id, next_trigger, &mut once(still_current))
    }

    /// See [`LogRepo::append_logs`].
    pub fn append_logs(
        &self,
        id: InstanceId,
        lines: impl IntoIterator<Item = LogLine>,
    ) -> Result<Commit<LogAppend>, RepoError> {
        self.inner.append_log_lines(id, lines.into_iter().collect())
    }

    /// See [`LogRepo::append_logs_of_live`].
    pub fn append_logs_of_live(
        &self,
        id: InstanceId,
        lines: impl IntoIterator<Item = LogLine>,
    ) -> Result<Commit<LogAppend>, RepoError> {
        self.inner
            .append_log_lines_of_live(id, lines.into_iter().collect())
    }
}

mod log_repo;
