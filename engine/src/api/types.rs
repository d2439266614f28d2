//! The OpenAPI's JSON bodies, shared by the HTTP server (`crate::http`), the Rust client
//! (`crate::client`) and the server core that implements [`Api`](super::Api). They depend on
//! no server record: the server converts at its boundary (`crate::server::api_convert`).
//!
//! Request bodies reject unknown fields (`deny_unknown_fields`): a misspelt optional field is a
//! 400 naming it, not a silently applied default. Times in responses are epoch milliseconds
//! (`i64`, like PowerJob's OpenAPI); a job's `lifecycle` is written in RFC 3339.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

use crate::alarm::AlarmRules;
use crate::ids::{AppId, InstanceId, JobId, WorkflowInstanceId};
use crate::model::{DispatchStrategy, ExecuteType, InstanceStatus, LogLevel, LogType};
use crate::policy::{OverlapPolicy, RetryBackoff};
use crate::time_expression::{
    EpochMs, Lifecycle, MisfirePolicy, TimeExpression, TimeExpressionType,
};

use super::error::ApiError;

/// `POST /v1/apps` body (admin).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateApp {
    /// Unique app name (what workers name in `--app`); not all digits.
    pub name: String,
    /// The secret workers prove in the transport handshake (at least
    /// [`MIN_NEW_SECRET_LEN`](super::MIN_NEW_SECRET_LEN) bytes). It is no API token, except
    /// in the HTTP layer's compatibility mode.
    pub secret: String,
}

/// `POST /v1/apps` answer (201).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppCreated {
    /// The app's id.
    pub id: AppId,
    /// Its name.
    pub name: String,
}

/// An app as the HTTP layer needs it to authorize a request: `{app}` in a route is the app's
/// numeric id or its name.
#[derive(Clone, PartialEq, Eq)]
pub struct AppRef {
    /// The app's id.
    pub id: AppId,
    /// Its name.
    pub name: String,
    /// Its secret (compared in constant time by the HTTP layer; never logged).
    pub secret: String,
}

impl std::fmt::Debug for AppRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppRef")
            .field("id", &self.id)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// `{"start", "end"}`: the window in which a job may fire, RFC 3339 instants, both optional.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LifecycleJson {
    /// First instant a fire may happen at (inclusive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<String>,
    /// Last instant a fire may happen at (inclusive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<String>,
}

fn rfc3339_ms(field: &str, text: &str) -> Result<EpochMs, ApiError> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.timestamp_millis())
        .map_err(|e| ApiError::invalid(field, format!("{text:?} is not an RFC 3339 instant: {e}")))
}

/// RFC 3339 text of `ms` in UTC (millisecond precision when needed).
pub fn ms_to_rfc3339(ms: EpochMs) -> String {
    match DateTime::<Utc>::from_timestamp_millis(ms) {
        Some(t) => t.to_rfc3339_opts(SecondsFormat::AutoSi, true),
        None => ms.to_string(),
    }
}

impl LifecycleJson {
    /// The engine's lifecycle; `start` after `end` is refused.
    pub fn to_lifecycle(&self) -> Result<Lifecycle, ApiError> {
        let start = match &self.start {
            Some(s) => Some(rfc3339_ms("lifecycle.start", s)?),
            None => None,
        };
        let end = match &self.end {
            Some(s) => Some(rfc3339_ms("lifecycle.end", s)?),
            None => None,
        };
        if let (Some(s), Some(e)) = (start, end) {
            if s > e {
                return Err(ApiError::invalid("lifecycle", "start is after end"));
            }
        }
        Ok(Lifecycle { start, end })
    }

    /// The JSON form of `lifecycle`.
    pub fn from_lifecycle(lifecycle: &Lifecycle) -> LifecycleJson {
        LifecycleJson {
            start: lifecycle.start.map(ms_to_rfc3339),
            end: lifecycle.end.map(ms_to_rfc3339),
        }
    }
}

fn default_concurrency() -> u32 {
    5
}

fn default_true() -> bool {
    true
}

/// `POST /v1/apps/{app}/jobs` and `PUT /v1/apps/{app}/jobs/{id}` body. Only `name`,
/// `time_expression_type` and `processor` are required; every other field has the default
/// documented on it (a PUT replaces the whole job, so omitted fields go back to defaults).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobBody {
    /// 1 to 128 bytes (not unique).
    pub name: String,
    /// `API`, `CRON`, `FIXED_RATE`, `FIXED_DELAY`, `DAILY_TIME_INTERVAL` or `WORKFLOW`.
    pub time_expression_type: TimeExpressionType,
    /// Quartz cron text, a period in ms, or a daily-time-interval JSON object; empty (the
    /// default) for API and WORKFLOW.
    #[serde(default)]
    pub time_expression: String,
    /// IANA zone of CRON and DAILY_TIME_INTERVAL expressions; default UTC.
    #[serde(default)]
    pub time_zone: Option<String>,
    /// Default `STANDALONE`.
    #[serde(default)]
    pub execute_type: ExecuteType,
    /// Name of a processor the app's workers registered (`shell`, `http`, `noop`, `sleep`
    /// on the bundled worker).
    pub processor: String,
    /// Handed to every instance; default empty.
    #[serde(default)]
    pub params: String,
    /// Most instances running at once; 0 = unlimited (default).
    #[serde(default)]
    pub max_instances: u32,
    /// Tasks at once per worker, default 5.
    #[serde(default = "default_concurrency")]
    pub concurrency: u32,
    /// Run timeout, ms; 0 = none (default).
    #[serde(default)]
    pub timeout_ms: u64,
    /// Times the server re-runs a failed instance; default 0.
    #[serde(default)]
    pub instance_retries: u32,
    /// How long each re-run waits: `{"shape": "FIXED" | "EXPONENTIAL", "initial_delay_ms",
    /// "factor", "max_delay_ms", "jitter"}`, each field optional; default exponential from
    /// 1000 ms, factor 2, at most 30000 ms, jitter 0 (omitted when default).
    #[serde(default, skip_serializing_if = "is_default_backoff")]
    pub retry_backoff: RetryBackoff,
    /// What a run does when `max_instances` are running: `FAIL` (default), `SKIP`, `QUEUE`
    /// or `REPLACE` (omitted when default).
    #[serde(default, skip_serializing_if = "is_default_overlap")]
    pub overlap_policy: OverlapPolicy,
    /// Times a worker re-runs a failed task; default 0.
    #[serde(default)]
    pub task_retries: u32,
    /// Default `HEALTH_FIRST`.
    #[serde(default)]
    pub dispatch_strategy: DispatchStrategy,
    /// Tags or addresses: required for `SPECIFY`, a filter otherwise; default none.
    #[serde(default)]
    pub designated_workers: Vec<String>,
    /// Minimum free CPU cores of an eligible worker; default 0.
    #[serde(default)]
    pub min_cpu_cores: f64,
    /// Minimum free memory, GB; default 0.
    #[serde(default)]
    pub min_memory_gb: f64,
    /// Minimum free disk, GB; default 0.
    #[serde(default)]
    pub min_disk_gb: f64,
    /// Most workers an instance uses; 0 = unlimited (default).
    #[serde(default)]
    pub max_worker_count: u32,
    /// `FIRE_ONCE` (default), `FIRE_ALL` or `SKIP`.
    #[serde(default)]
    pub misfire: MisfirePolicy,
    /// Default unbounded.
    #[serde(default)]
    pub lifecycle: LifecycleJson,
    /// Default true.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Alarm rules and the app channels they go to; default none (omitted when empty).
    #[serde(default, skip_serializing_if = "is_default_alarm")]
    pub alarm: AlarmRules,
    /// Free text for people, at most 4096 bytes; default empty (omitted when empty).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// Labels the job listing filters on (`?tag=`): at most 32 distinct tags of 1 to 64
    /// bytes, no commas, control characters or spaces at either end; default none (omitted
    /// when empty).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// Where the workers send the instances' log lines: `ONLINE` (to the server, the
    /// default), `LOCAL` (a rotating file on the worker), `STDOUT` (the worker's stdout) or
    /// `NULL` (nowhere); omitted when `ONLINE`.
    #[serde(default, skip_serializing_if = "LogType::is_online")]
    pub log_type: LogType,
    /// Lines below this level are dropped at the worker: `DEBUG`, `INFO` (the default),
    /// `WARN` or `ERROR`; omitted when `INFO`.
    #[serde(default = "LogLevel::info", skip_serializing_if = "LogLevel::is_info")]
    pub log_level: LogLevel,
    /// Names of the app's calendars (`/v1/apps/{app}/calendars`): a scheduled trigger on a
    /// date one of them excludes is skipped (counted in `calendar_skipped_runs`); at most 8,
    /// each must exist; runs asked for through the API are not affected. Default none
    /// (omitted when empty).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub calendars: Vec<String>,
}

fn is_default_alarm(a: &AlarmRules) -> bool {
    *a == AlarmRules::default()
}

fn is_default_backoff(b: &RetryBackoff) -> bool {
    *b == RetryBackoff::default()
}

fn is_default_overlap(p: &OverlapPolicy) -> bool {
    *p == OverlapPolicy::default()
}

impl JobBody {
    /// A body with every default: the minimal job (the defaults are those documented on each
    /// field, the same as the server record's).
    pub fn new(
        name: impl Into<String>,
        time_expression_type: TimeExpressionType,
        time_expression: impl Into<String>,
        processor: impl Into<String>,
    ) -> JobBody {
        JobBody {
            name: name.into(),
            time_expression_type,
            time_expression: time_expression.into(),
            time_zone: None,
            execute_type: ExecuteType::default(),
            processor: processor.into(),
            params: String::new(),
            max_instances: 0,
            concurrency: default_concurrency(),
            timeout_ms: 0,
            instance_retries: 0,
            retry_backoff: RetryBackoff::default(),
            overlap_policy: OverlapPolicy::default(),
            task_retries: 0,
            dispatch_strategy: DispatchStrategy::default(),
            designated_workers: Vec::new(),
            min_cpu_cores: 0.0,
            min_memory_gb: 0.0,
            min_disk_gb: 0.0,
            max_worker_count: 0,
            misfire: MisfirePolicy::default(),
            lifecycle: LifecycleJson::default(),
            enabled: default_true(),
            alarm: AlarmRules::default(),
            description: String::new(),
            tags: Vec::new(),
            log_type: LogType::Online,
            log_level: LogLevel::Info,
            calendars: Vec::new(),
        }
    }
}

/// `201 {"id"}` answer of a create: `Created<JobId>` for a job, `Created<WorkflowId>` for a
/// workflow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Created<I> {
    /// The new record's id.
    pub id: I,
}

/// A job as `GET /v1/apps/{app}/jobs/{id}` returns it: its body plus server-owned fields.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobView {
    /// The job's id.
    pub id: JobId,
    /// Its app's id.
    pub app_id: AppId,
    /// Every field of the body, as stored.
    #[serde(flatten)]
    pub body: JobBody,
    /// When it fires next (epoch ms); null when not scheduled.
    pub next_trigger_time: Option<EpochMs>,
    /// How many times it has fired (its run counter).
    pub runs: u64,
    /// Runs its `SKIP` overlap policy skipped since the server started (kept in memory).
    #[serde(default)]
    pub skipped_runs: u64,
    /// Scheduled triggers skipped since the server started because one of its calendars
    /// excludes their date (kept in memory).
    #[serde(default)]
    pub calendar_skipped_runs: u64,
    /// Creation time (epoch ms).
    pub created_at: EpochMs,
    /// Last update (epoch ms).
    pub updated_at: EpochMs,
}

/// `GET /v1/apps/{app}/jobs` answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobList {
    /// Jobs in id order.
    pub items: Vec<JobView>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<u64>,
}

/// `GET /v1/apps/{app}/jobs` query: a page of the jobs that match every filter given.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobQuery {
    /// Page size, 1 to 1000 (default 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<u64>,
    /// Only jobs whose name contains this text, ignoring case.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Only jobs carrying this tag (exact match).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// Only jobs of this time expression type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_expression_type: Option<TimeExpressionType>,
    /// Only jobs of this execute type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execute_type: Option<ExecuteType>,
    /// Only enabled (`true`) or disabled (`false`) jobs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
}

impl JobQuery {
    /// The first page of every job, `limit` at a time.
    pub fn page(limit: Option<u32>, cursor: Option<u64>) -> JobQuery {
        JobQuery {
            limit,
            cursor,
            ..JobQuery::default()
        }
    }
}

/// `POST /v1/apps/{app}/jobs/{id}/copy` body: a new job with every field of the source but
/// these. Answers 201 with the new job's id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CopyJob {
    /// The copy's name (1 to 128 bytes).
    pub name: String,
    /// Whether the copy is enabled; default: as the source (a copy of an enabled CRON job
    /// fires on the same schedule).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
}

/// A page query with no filter (`GET /v1/apps/{app}/alarms`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PageQuery {
    /// Page size, 1 to 1000 (default 100).
    #[serde(default)]
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    #[serde(default)]
    pub cursor: Option<u64>,
}

/// `POST /v1/apps/{app}/jobs/{id}/run` body (may be empty or `{}`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunJob {
    /// Instance params; default empty.
    #[serde(default)]
    pub params: String,
    /// Run this many ms from now (persisted: survives a restart); default 0 = at once.
    #[serde(default)]
    pub delay_ms: u64,
}

/// `POST /v1/apps/{app}/jobs/{id}/run` answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunCreated {
    /// The instance created for the run (durable when this answer is sent).
    pub instance_id: InstanceId,
}

/// `GET /v1/apps/{app}/instances/{id}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceView {
    /// The instance.
    pub id: InstanceId,
    /// Its job.
    pub job_id: JobId,
    /// `WAITING_DISPATCH`, `WAITING_WORKER_RECEIVE`, `RUNNING`, `SUCCEED`, `FAILED`,
    /// `CANCELED` or `STOPPED`.
    pub status: InstanceStatus,
    /// The processor's result or the failure reason (size-capped).
    pub result: Option<String>,
    /// Instance params.
    pub params: String,
    /// When it was meant to fire (epoch ms).
    pub trigger_time: EpochMs,
    /// When it was last dispatched (epoch ms).
    pub actual_trigger_time: Option<EpochMs>,
    /// When its last attempt started running on its worker (epoch ms; the worker's clock,
    /// never before `actual_trigger_time` nor after the server received it); null until the
    /// worker reports it, and from each dispatch on until it does again.
    #[serde(default)]
    pub started_time: Option<EpochMs>,
    /// When it reached a final status (epoch ms).
    pub finished_time: Option<EpochMs>,
    /// The worker (address) it ran on last.
    pub worker: Option<String>,
    /// Attempts so far.
    pub running_times: u32,
    /// The job's fire number that created it (0 for API runs and retries).
    pub run: u64,
    /// The workflow instance this run is a node of (absent when it is not one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workflow_instance_id: Option<WorkflowInstanceId>,
    /// MAP / MAP_REDUCE task progress as the TaskTracker last reported it (absent for other
    /// execute types and once the instance's final status is stored: the counts live in the
    /// server's memory only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tasks: Option<super::workflow::TaskProgress>,
    /// When a WAITING_DISPATCH instance's next attempt is due after a failed one (epoch ms;
    /// the job's `retry_backoff`); absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_retry_at: Option<EpochMs>,
}

/// `GET /v1/apps/{app}/instances` query.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstanceQuery {
    /// Only this job's instances (newest first); without it, the app's (newest first).
    #[serde(default)]
    pub job_id: Option<JobId>,
    /// Only instances in this status.
    #[serde(default)]
    pub status: Option<InstanceStatus>,
    /// Only instances whose `trigger_time` is at or after this (epoch ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger_from: Option<EpochMs>,
    /// Only instances whose `trigger_time` is before this (epoch ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger_to: Option<EpochMs>,
    /// Only finished instances whose `finished_time` is at or after this (epoch ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_from: Option<EpochMs>,
    /// Only finished instances whose `finished_time` is before this (epoch ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_to: Option<EpochMs>,
    /// Page size, 1 to 1000 (default 100).
    #[serde(default)]
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    #[serde(default)]
    pub cursor: Option<u64>,
}

impl InstanceQuery {
    /// Refuses a time range whose start is after its end.
    pub fn check(&self) -> Result<(), ApiError> {
        for (field, from, to) in [
            ("trigger_from", self.trigger_from, self.trigger_to),
            ("finished_from", self.finished_from, self.finished_to),
        ] {
            if let (Some(f), Some(t)) = (from, to) {
                if f > t {
                    return Err(ApiError::invalid(
                        field,
                        format!("{f} is after the range's end {t}"),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// `GET /v1/apps/{app}/instances` answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceList {
    /// The page.
    pub items: Vec<InstanceView>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<u64>,
}

/// One worker of an app, as `GET /v1/apps/{app}/workers` returns it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WorkerInfo {
    /// `host:port` the worker announced.
    pub address: String,
    /// Its tags.
    pub tags: Vec<String>,
    /// Its software version.
    pub version: String,
    /// PowerJob's health score (higher is healthier).
    pub health_score: f64,
    /// CPU cores.
    pub cpu_cores: f64,
    /// Load average (1 min), if known.
    pub cpu_load: Option<f64>,
    /// Memory in use, GB.
    pub memory_used_gb: f64,
    /// Memory in all, GB.
    pub memory_total_gb: f64,
    /// Disk in use, GB.
    pub disk_used_gb: f64,
    /// Disk in all, GB.
    pub disk_total_gb: f64,
    /// The worker asked for no new instances.
    pub overloaded: bool,
    /// Last heartbeat received (server clock, epoch ms).
    pub last_heartbeat: EpochMs,
}

/// `GET /v1/apps/{app}/workers` answer: the live workers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WorkerList {
    /// Live workers, by address.
    pub workers: Vec<WorkerInfo>,
}

/// `GET /v1/apps/{app}/stats` answer: the app's instances that reached a final status and its
/// scheduled fires over trailing windows, counted by the server in one-minute buckets held in
/// memory. The counts start empty when the server starts: each window counts from `since` at
/// the earliest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppStats {
    /// When the counts were read (epoch ms); every window ends here.
    pub as_of: EpochMs,
    /// From when the counts hold (epoch ms): when this server started counting.
    pub since: EpochMs,
    /// The last 5 minutes (its 5 one-minute buckets, the current one included).
    pub last_5_minutes: StatsWindow,
    /// The last hour (60 one-minute buckets).
    pub last_hour: StatsWindow,
    /// The last day (1440 one-minute buckets).
    pub last_day: StatsWindow,
}

/// The counts of one window of [`AppStats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatsWindow {
    /// Where the window starts (epoch ms): the start of its oldest minute, or `since` when
    /// that is later.
    pub from: EpochMs,
    /// Instances that reached a final status (SUCCEED, FAILED, STOPPED or CANCELED).
    pub finished: u64,
    /// Of those, SUCCEED.
    pub succeeded: u64,
    /// Of those, FAILED (after their retries).
    pub failed: u64,
    /// Scheduled fires of the app's jobs that created an instance.
    pub fires: u64,
    /// Median fire lateness (from the trigger time to the fire, ms): the upper bound of the
    /// histogram bin it falls in (1-2-5 steps from 0 ms to 5000 s), at most the largest
    /// lateness seen; null without fires. The day window's lateness is kept by hour and
    /// reaches back to the start of the hour `from` falls in.
    pub lateness_p50_ms: Option<i64>,
    /// 99th percentile of the fire lateness, as `lateness_p50_ms`.
    pub lateness_p99_ms: Option<i64>,
}

/// `POST /v1/validate` body.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValidateRequest {
    /// The expression's type (`CRON`, `FIXED_RATE`, ...).
    #[serde(rename = "type")]
    pub kind: TimeExpressionType,
    /// The expression.
    pub expression: String,
    /// IANA zone; default UTC.
    #[serde(default)]
    pub time_zone: Option<String>,
    /// How many trigger times, 1 to 100 (default 5).
    #[serde(default)]
    pub count: Option<u32>,
    /// Dates and inclusive ranges to exclude, as a calendar's (`2026-12-25`,
    /// `2026-12-24..2026-12-26`), read in `time_zone`; default none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub excluded: Vec<String>,
}

/// `POST /v1/validate` answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValidateResponse {
    /// The next trigger times after now, RFC 3339 in the expression's zone (without the
    /// ones `excluded` skips).
    pub next: Vec<String>,
    /// The trigger times `excluded` skipped on the way, at most `count` (omitted when none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<String>,
}

/// Most trigger times `POST /v1/validate` computes.
pub const MAX_VALIDATE_COUNT: u32 = 100;

/// Answers `POST /v1/validate` for `now`: pure, no server state.
pub fn validate_expression(
    req: &ValidateRequest,
    now: EpochMs,
) -> Result<ValidateResponse, ApiError> {
    let count = req.count.unwrap_or(5);
    if count == 0 || count > MAX_VALIDATE_COUNT {
        return Err(ApiError::invalid(
            "count",
            format!("must be 1 to {MAX_VALIDATE_COUNT}, got {count}"),
        ));
    }
    let expr = TimeExpression::parse(req.kind, &req.expression, req.time_zone.as_deref())?;
    if matches!(
        req.kind,
        TimeExpressionType::Api | TimeExpressionType::Workflow
    ) {
        return Ok(ValidateResponse {
            next: Vec::new(),
            skipped: Vec::new(),
        });
    }
    let calendar = if req.excluded.is_empty() {
        None
    } else {
        let zone = req.time_zone.as_deref().unwrap_or_default();
        Some(
            crate::calendar::Calendar::new(zone, &req.excluded)
                .map_err(|e| ApiError::invalid("excluded", e))?,
        )
    };
    let tz = expr.time_zone();
    let text = |ms: EpochMs| match DateTime::<Utc>::from_timestamp_millis(ms) {
        Some(t) => t
            .with_timezone(&tz)
            .to_rfc3339_opts(SecondsFormat::AutoSi, true),
        None => ms.to_string(),
    };
    let p = crate::calendar::preview(&expr, calendar.as_ref(), now, now, count as usize);
    Ok(ValidateResponse {
        next: p.fires.into_iter().map(text).collect(),
        skipped: p
            .skipped
            .into_iter()
            .take(count as usize)
            .map(text)
            .collect(),
    })
}

/// `GET /healthz` answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    /// `"ok"`, or `"degraded"` when the store refuses writes.
    pub status: String,
    /// Server software version.
    pub version: String,
    /// Workers connected now, over all apps.
    pub workers: u64,
    /// Milliseconds since the server started.
    pub uptime_ms: u64,
}
