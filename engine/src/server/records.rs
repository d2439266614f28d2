//! The durable records of the server: apps, jobs, next triggers, delayed runs, log lines.
//! (Instances and their lifecycle are in `instance.rs`.)
//!
//! Every record is an rkyv archive behind a format version byte (see `codec.rs`). Records hold
//! the domain types themselves (model ids and enums, time-expression types), which all derive
//! rkyv's traits.

use rkyv::{Archive, Deserialize, Serialize};

use crate::alarm::AlarmRules;
use crate::ids::{AppId, JobId};
use crate::model::{DispatchStrategy, ExecuteType, LogLevel, LogType};
use crate::policy::{OverlapPolicy, RetryBackoff};
use crate::time_expression::{
    EpochMs, Lifecycle, MisfirePolicy, TimeExpression, TimeExpressionType,
};

use super::error::RepoError;

/// Longest app or job name, in bytes.
pub const MAX_NAME_LEN: usize = 128;
/// Longest app secret, in bytes (at least [`MIN_SECRET_LEN`]).
pub const MAX_SECRET_LEN: usize = 256;
/// Shortest app secret, in bytes.
pub const MIN_SECRET_LEN: usize = 8;
/// Longest processor name, in bytes.
pub const MAX_PROCESSOR_LEN: usize = 1024;
/// Longest time expression, in bytes.
pub const MAX_EXPRESSION_LEN: usize = 4096;
/// Largest job or instance params, in bytes (64 KiB): refused beyond, never truncated.
pub const MAX_PARAMS_LEN: usize = 64 << 10;
/// Most designated workers of one job.
pub const MAX_DESIGNATED_WORKERS: usize = 1024;
/// Longest designated worker (tag or address), in bytes.
pub const MAX_WORKER_LEN: usize = 256;
/// Largest `concurrency` (tasks at once per worker).
pub const MAX_CONCURRENCY: u32 = 10_000;

/// An app: a group of workers sharing a secret.
///
/// Invariant: the secret never leaves the server; it is kept to verify the transport's HMAC
/// proofs. `Debug` prints it redacted.
#[derive(Clone, PartialEq, Eq, Archive, Serialize, Deserialize)]
pub struct AppRecord {
    /// Assigned by [`Repo::create_app`](super::Repository::create_app).
    pub id: AppId,
    /// Unique, 1 to [`MAX_NAME_LEN`] bytes, no control characters.
    pub name: String,
    /// The shared secret workers prove in the handshake ([`MIN_SECRET_LEN`] to
    /// [`MAX_SECRET_LEN`] bytes).
    pub secret: String,
    /// Creation time, ms since the epoch.
    pub created_at: EpochMs,
}

impl std::fmt::Debug for AppRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppRecord")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("secret", &"<redacted>")
            .field("created_at", &self.created_at)
            .finish()
    }
}

impl AppRecord {
    /// Checks name and secret (its length, and no NUL character, which PostgreSQL's text
    /// cannot hold).
    pub fn validate(&self) -> Result<(), RepoError> {
        check_name("name", &self.name)?;
        let len = self.secret.len();
        if !(MIN_SECRET_LEN..=MAX_SECRET_LEN).contains(&len) {
            return Err(RepoError::invalid(
                "secret",
                format!("must be {MIN_SECRET_LEN} to {MAX_SECRET_LEN} bytes, got {len}"),
            ));
        }
        if self.secret.contains('\0') {
            return Err(RepoError::invalid(
                "secret",
                "must not contain a NUL character",
            ));
        }
        Ok(())
    }
}

/// A job: what to run, when and where. Field names and meanings are those of the OpenAPI body
/// of `POST /v1/apps/{app}/jobs`; [`JobRecord::new`] holds every documented default.
#[derive(Clone, Debug, PartialEq, Archive, Serialize, Deserialize)]
pub struct JobRecord {
    /// Assigned by [`Repo::create_job`](super::Repository::create_job).
    pub id: JobId,
    /// The app the job belongs to.
    pub app_id: AppId,
    /// 1 to [`MAX_NAME_LEN`] bytes (not unique).
    pub name: String,
    /// The kind of `time_expression`.
    pub time_expression_type: TimeExpressionType,
    /// Must parse with [`TimeExpression::parse`] (empty for API and WORKFLOW).
    pub time_expression: String,
    /// IANA zone for CRON and DAILY_TIME_INTERVAL; `None` = UTC (default).
    pub time_zone: Option<String>,
    /// Default STANDALONE.
    pub execute_type: ExecuteType,
    /// The processor name workers registered (1 to [`MAX_PROCESSOR_LEN`] bytes).
    pub processor: String,
    /// Job params handed to every instance (default empty; at most [`MAX_PARAMS_LEN`] bytes).
    pub params: String,
    /// Most instances of this job running at once; 0 = unlimited (default).
    pub max_instances: u32,
    /// Tasks at once per worker, 1 to [`MAX_CONCURRENCY`] (default 5).
    pub concurrency: u32,
    /// Run timeout in ms; 0 = none (default).
    pub timeout_ms: u64,
    /// Times the server re-runs a failed instance (default 0).
    pub instance_retries: u32,
    /// How long each of those re-runs waits (default exponential from 1 s, doubling, at
    /// most 30 s, no jitter).
    pub retry_backoff: RetryBackoff,
    /// What a run does when `max_instances` are running (default FAIL).
    pub overlap_policy: OverlapPolicy,
    /// Times a worker re-runs a failed task (default 0).
    pub task_retries: u32,
    /// Default HEALTH_FIRST.
    pub dispatch_strategy: DispatchStrategy,
    /// Tags or addresses; required (non-empty) for SPECIFY, a filter otherwise.
    pub designated_workers: Vec<String>,
    /// Minimum free CPU cores of an eligible worker (default 0).
    pub min_cpu_cores: f64,
    /// Minimum free memory of an eligible worker, GB (default 0).
    pub min_memory_gb: f64,
    /// Minimum free disk of an eligible worker, GB (default 0).
    pub min_disk_gb: f64,
    /// Most workers an instance runs on; 0 = unlimited (default).
    pub max_worker_count: u32,
    /// What happens to missed fires (default FIRE_ONCE).
    pub misfire: MisfirePolicy,
    /// Window in which the job may fire (default unbounded).
    pub lifecycle: Lifecycle,
    /// Disabled jobs keep their record but do not fire (default true).
    pub enabled: bool,
    /// Alarm rules (default none: the job raises no alarm).
    pub alarm: AlarmRules,
    /// Free text for people (default empty; see [`crate::model::check_labels`]).
    pub description: String,
    /// Labels a listing filters on (default none; see [`crate::model::check_labels`]).
    pub tags: Vec<String>,
    /// Where the workers send its log lines and from which level (default ONLINE, INFO).
    pub log: LogSettings,
    /// Names of the app's calendars whose excluded dates the job does not fire on (default
    /// none; see [`crate::calendar`]).
    pub calendars: Vec<String>,
    /// Creation time, ms since the epoch (set by the repo).
    pub created_at: EpochMs,
    /// Last update, ms since the epoch (set by the repo).
    pub updated_at: EpochMs,
}

impl JobRecord {
    /// A job with every documented default: enabled, STANDALONE, HEALTH_FIRST, UTC, no params,
    /// `max_instances` 0 (unlimited), overlap policy FAIL, `concurrency` 5, no timeout, no
    /// retries (backing off 1 s, 2 s … 30 s were they raised), no resource
    /// minimums, `max_worker_count` 0 (unlimited), FIRE_ONCE, unbounded lifecycle, no alarm
    /// rules, no description, no tags, ONLINE logs from INFO. The id and
    /// times are assigned by [`Repo::create_job`](super::Repository::create_job).
    pub fn new(
        app_id: AppId,
        name: impl Into<String>,
        time_expression_type: TimeExpressionType,
        time_expression: impl Into<String>,
        processor: impl Into<String>,
    ) -> JobRecord {
        JobRecord {
            id: JobId(0),
            app_id,
            name: name.into(),
            time_expression_type,
            time_expression: time_expression.into(),
            time_zone: None,
            execute_type: ExecuteType::Standalone,
            processor: processor.into(),
            params: String::new(),
            max_instances: 0,
            concurrency: 5,
            timeout_ms: 0,
            instance_retries: 0,
            retry_backoff: RetryBackoff::default(),
            overlap_policy: OverlapPolicy::Fail,
            task_retries: 0,
            dispatch_strategy: DispatchStrategy::HealthFirst,
            designated_workers: Vec::new(),
            min_cpu_cores: 0.0,
            min_memory_gb: 0.0,
            min_disk_gb: 0.0,
            max_worker_count: 0,
            misfire: MisfirePolicy::FireOnce,
            lifecycle: Lifecycle::default(),
            enabled: true,
            alarm: AlarmRules::default(),
            description: String::new(),
            tags: Vec::new(),
            calendars: Vec::new(),
            log: LogSettings::default(),
            created_at: 0,
            updated_at: 0,
        }
    }

    /// The parsed time expression (validates it).
    pub fn time_expression(&self) -> Result<TimeExpression, RepoError> {
        TimeExpression::parse(
            self.time_expression_type,
            &self.time_expression,
            self.time_zone.as_deref(),
        )
        .map_err(|e| {
            let field = if matches!(
                e,
                crate::time_expression::TimeExpressionError::UnknownTimeZone { .. }
            ) {
                "time_zone"
            } else {
                "time_expression"
            };
            RepoError::invalid(field, e.to_string())
        })
    }

    /// Checks every field; the error names the first bad one by its API name.
    pub fn validate(&self) -> Result<(), RepoError> {
        check_name("name", &self.name)?;
        check_len("time_expression", &self.time_expression, MAX_EXPRESSION_LEN)?;
        self.time_expression()?;
        if self.processor.trim().is_empty() {
            return Err(RepoError::invalid("processor", "must not be empty"));
        }
        check_len("processor", &self.processor, MAX_PROCESSOR_LEN)?;
        check_len("params", &self.params, MAX_PARAMS_LEN)?;
        if !(1..=MAX_CONCURRENCY).contains(&self.concurrency) {
            return Err(RepoError::invalid(
                "concurrency",
                format!("must be 1 to {MAX_CONCURRENCY}, got {}", self.concurrency),
            ));
        }
        if self.timeout_ms > i64::MAX as u64 {
            return Err(RepoError::invalid(
                "timeout_ms",
                "must fit in i64 milliseconds",
            ));
        }
        if self.designated_workers.len() > MAX_DESIGNATED_WORKERS {
            return Err(RepoError::invalid(
                "designated_workers",
                format!("at most {MAX_DESIGNATED_WORKERS} entries"),
            ));
        }
        for w in &self.designated_workers {
            if w.trim().is_empty() {
                return Err(RepoError::invalid(
                    "designated_workers",
                    "entries must not be empty",
                ));
            }
            check_len("designated_workers", w, MAX_WORKER_LEN)?;
        }
        if self.dispatch_strategy == DispatchStrategy::Specify && self.designated_workers.is_empty()
        {
            return Err(RepoError::invalid(
                "designated_workers",
                "SPECIFY dispatch needs at least one designated worker (tag or address)",
            ));
        }
        for (field, v) in [
            ("min_cpu_cores", self.min_cpu_cores),
            ("min_memory_gb", self.min_memory_gb),
            ("min_disk_gb", self.min_disk_gb),
        ] {
            if !v.is_finite() || v < 0.0 {
                return Err(RepoError::invalid(
                    field,
                    format!("must be a finite number >= 0, got {v}"),
                ));
            }
        }
        self.lifecycle
            .validate()
            .map_err(|e| RepoError::invalid("lifecycle", e.to_string()))?;
        self.alarm
            .validate()
            .map_err(|(field, msg)| RepoError::invalid(field, msg))?;
        self.retry_backoff.validate().map_err(|(field, msg)| {
            RepoError::invalid("retry_backoff", format!("{field}: {msg}"))
        })?;
        crate::model::check_labels(&self.description, &self.tags)
            .map_err(|(field, msg)| RepoError::invalid(field, msg))?;
        crate::calendar::check_calendar_names(&self.calendars)
            .map_err(|e| RepoError::invalid("calendars", e.to_string()))?;
        Ok(())
    }
}

/// A job's log settings, which its workers honour.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Archive, Serialize, Deserialize)]
pub struct LogSettings {
    /// Where the lines go (default ONLINE).
    pub log_type: LogType,
    /// Lines below this level are dropped at the worker (default INFO).
    pub level: LogLevel,
}

impl Default for LogSettings {
    fn default() -> Self {
        LogSettings {
            log_type: LogType::Online,
            level: LogLevel::Info,
        }
    }
}

/// A job's schedule state: its next trigger and how many times it has fired.
///
/// Written by [`Repo::fire`](super::Repository::fire) in the same batch as the instance it creates.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Archive, Serialize, Deserialize)]
pub struct TriggerRecord {
    /// When the job fires next, ms since the epoch; `None` = not scheduled (API, WORKFLOW,
    /// disabled, past its lifecycle, or FIXED_DELAY waiting for a completion).
    pub next_trigger: Option<EpochMs>,
    /// Fires so far (the run counter of FIXED_RATE / FIXED_DELAY jobs; counted for all).
    pub runs: u64,
}

/// A pending delayed API run: its instance exists (WAITING_DISPATCH) and is due at `due`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Archive, Serialize, Deserialize)]
pub struct DelayedRun {
    /// The instance created for the run.
    pub instance_id: crate::ids::InstanceId,
    /// Its job.
    pub job_id: JobId,
    /// When it is due, ms since the epoch.
    pub due: EpochMs,
}

/// Longest stored log line, in bytes; longer content is cut at a char boundary and marked.
pub const MAX_LOG_LINE_LEN: usize = 8 << 10;

/// One line of an instance's log, as a worker shipped it (stored form and versions in
/// `log_codec.rs`).
#[derive(Clone, Debug, PartialEq, Eq, Archive, Serialize, Deserialize)]
pub struct LogLine {
    /// When the worker logged it, ms since the epoch.
    pub time: EpochMs,
    /// Severity.
    pub level: LogLevel,
    /// The text, at most [`MAX_LOG_LINE_LEN`] bytes once stored.
    pub content: String,
    /// The dispatch attempt that wrote it (1 for the first); 0 = unknown (lines stored before
    /// attempts were recorded, or from a worker that could not tell).
    pub attempt: u32,
    /// Structured fields the processor attached, in its order (the worker bounds them).
    /// A NUL character in them or in the content is stored as U+FFFD.
    pub fields: Vec<LogLineField>,
}

impl LogLine {
    /// Replaces each NUL character of the content and the fields with U+FFFD, as every
    /// repository stores them (PostgreSQL's text cannot hold NUL).
    pub(crate) fn replace_nul(&mut self) {
        fn clean(s: &mut String) {
            if s.contains('\0') {
                *s = s.replace('\0', "\u{FFFD}");
            }
        }
        clean(&mut self.content);
        for f in &mut self.fields {
            clean(&mut f.key);
            clean(&mut f.value);
        }
    }
}

/// One structured field of a [`LogLine`].
#[derive(Clone, Debug, PartialEq, Eq, Archive, Serialize, Deserialize)]
pub struct LogLineField {
    /// The name.
    pub key: String,
    /// The value, as text.
    pub value: String,
}

/// Cuts `s` to at most `max` bytes at a char boundary, appending a marker that says how many
/// bytes were cut. The result is at most `max + 32` bytes.
pub fn truncate_marked(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    let cut = s.len() - end;
    let mut out = String::with_capacity(end + 32);
    out.push_str(s.get(..end).unwrap_or_default());
    out.push_str(&format!("...[{cut} bytes truncated]"));
    out
}

fn check_len(field: &'static str, s: &str, max: usize) -> Result<(), RepoError> {
    if s.len() > max {
        return Err(RepoError::invalid(
            field,
            format!("at most {max} bytes, got {}", s.len()),
        ));
    }
    Ok(())
}

fn check_name(field: &'static str, s: &str) -> Result<(), RepoError> {
    if s.trim().is_empty() {
        return Err(RepoError::invalid(field, "must not be empty"));
    }
    check_len(field, s, MAX_NAME_LEN)?;
    if s.chars().any(char::is_control) {
        return Err(RepoError::invalid(
            field,
            "must not contain control characters",
        ));
    }
    Ok(())
}
