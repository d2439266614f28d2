//! `ferrojob app|job|instance|worker ...` (`ferrojob workflow ...` is in `workflow_cmd`): the OpenAPI from the command line, through the Rust
//! client (`ferrojob::client::Client`). Output is a short human form, or the API's JSON with
//! `--json`.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use ferrojob::api::{
    CopyJob, CreateApp, InstanceQuery, InstanceView, JobBody, JobQuery, JobView, LifecycleJson,
    LogQuery, RunJob, TaskProgress,
};
use ferrojob::client::{Client, ClientOptions};
use ferrojob::https::HttpsRoots;
use ferrojob::ids::{InstanceId, JobId};
use ferrojob::model::InstanceStatus;
use ferrojob::time_expression::TimeExpressionType;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::fmt_ms;

/// Where the server is and who we are.
#[derive(Debug, Clone, clap::Args)]
pub struct Conn {
    /// Base URL of the server's OpenAPI (http:// or https://); a cluster's servers separated
    /// by commas (each request goes to the one that serves the app).
    #[arg(
        long,
        env = "FERROJOB_URL",
        default_value = "http://127.0.0.1:7700",
        global = true
    )]
    url: String,
    /// Bearer token: the admin token, or an API token of the app (`ferrojob token create`).
    #[arg(long, env = "FERROJOB_TOKEN", hide_env_values = true, global = true)]
    token: Option<String>,
    /// File holding the token (used when --token is not given).
    #[arg(
        long,
        env = "FERROJOB_TOKEN_FILE",
        default_value = "ferrojob-data/admin.token",
        global = true
    )]
    token_file: PathBuf,
    /// Print the API's JSON instead of the human form.
    #[arg(long, global = true)]
    json: bool,
    /// CA certificates (PEM) to trust for an https:// --url, instead of the public roots (a
    /// server with a certificate from a private CA).
    #[arg(long, env = "FERROJOB_TLS_CA", global = true)]
    tls_ca: Option<PathBuf>,
}

impl Conn {
    /// Whether `--json` was given.
    pub fn json(&self) -> bool {
        self.json
    }

    /// A client for `--url` with `--token` (or the token file).
    pub fn client(&self) -> Result<Client> {
        let token = match &self.token {
            Some(t) => t.clone(),
            None => std::fs::read_to_string(&self.token_file)
                .with_context(|| {
                    format!(
                        "no --token (or FERROJOB_TOKEN) and no token file at {}",
                        self.token_file.display()
                    )
                })?
                .trim()
                .to_owned(),
        };
        let roots = match &self.tls_ca {
            Some(ca) => HttpsRoots::from_ca_file(ca).context("--tls-ca")?,
            None => HttpsRoots::public(),
        };
        Ok(Client::with_roots(
            &self.url,
            token,
            ClientOptions::default(),
            &roots,
        )?)
    }
}

/// The app a command concerns.
#[derive(Debug, Clone, clap::Args)]
pub struct AppArg {
    /// App name or id.
    #[arg(long, env = "FERROJOB_APP")]
    pub(crate) app: String,
}

/// `ferrojob app ...`
#[derive(Debug, clap::Subcommand)]
pub enum AppCmd {
    /// Create an app (admin token).
    Create {
        /// Unique name.
        #[arg(long)]
        name: String,
        /// Secret workers prove in the handshake (16 bytes or more).
        #[arg(long, env = "FERROJOB_SECRET", hide_env_values = true)]
        secret: String,
    },
    /// List every app (admin token).
    List,
    /// Show one app.
    Get {
        /// App name or id.
        app: String,
    },
    /// Delete an app and its tokens (admin token); refused while it has jobs or workflows,
    /// unless --force, which deletes them first.
    Delete {
        /// App name or id.
        app: String,
        /// Delete its jobs and workflows too.
        #[arg(long)]
        force: bool,
    },
    /// Replace the app's worker secret; the previous one keeps working for the overlap, so
    /// workers can be restarted with the new one without downtime. Prints the new secret.
    RotateSecret {
        /// App name or id.
        app: String,
        /// The new secret (16 bytes or more); without it the server generates one.
        #[arg(long, env = "FERROJOB_NEW_SECRET", hide_env_values = true)]
        secret: Option<String>,
        /// Seconds the previous secret keeps working (default 3600; 0: none).
        #[arg(long)]
        overlap_secs: Option<u64>,
    },
}

/// Parses an enum by its API name, accepting any case and `-` for `_`.
pub(crate) fn api_enum<T: DeserializeOwned>(what: &str, text: &str) -> Result<T> {
    let name = text.trim().to_ascii_uppercase().replace('-', "_");
    serde_json::from_value(serde_json::Value::String(name))
        .with_context(|| format!("unknown {what} {text:?}"))
}

/// The fields of a job on the command line.
#[derive(Debug, Clone, clap::Args)]
pub struct JobFields {
    /// The whole body as JSON (a file path, or `-` for stdin); the flags below override it.
    #[arg(long)]
    body: Option<String>,
    /// Job name.
    #[arg(long)]
    name: Option<String>,
    /// API, CRON, FIXED_RATE, FIXED_DELAY, DAILY_TIME_INTERVAL or WORKFLOW.
    #[arg(long = "type")]
    kind: Option<String>,
    /// The time expression (cron text, period in ms, JSON).
    #[arg(long)]
    expr: Option<String>,
    /// IANA time zone.
    #[arg(long)]
    tz: Option<String>,
    /// Processor name (shell, http, noop, sleep on the bundled worker).
    #[arg(long)]
    processor: Option<String>,
    /// Job params.
    #[arg(long)]
    params: Option<String>,
    /// STANDALONE or BROADCAST.
    #[arg(long)]
    execute_type: Option<String>,
    /// Most instances at once (0 = unlimited).
    #[arg(long)]
    max_instances: Option<u32>,
    /// Tasks at once per worker.
    #[arg(long)]
    concurrency: Option<u32>,
    /// Run timeout, ms (0 = none).
    #[arg(long)]
    timeout_ms: Option<u64>,
    /// Server-side re-runs of a failed instance.
    #[arg(long)]
    instance_retries: Option<u32>,
    /// How re-runs back off: FIXED or EXPONENTIAL.
    #[arg(long)]
    retry_backoff: Option<String>,
    /// Delay before the first re-run, ms.
    #[arg(long)]
    retry_initial_delay_ms: Option<u64>,
    /// Growth of the delay per re-run (EXPONENTIAL).
    #[arg(long)]
    retry_factor: Option<f64>,
    /// Largest delay between re-runs, ms.
    #[arg(long)]
    retry_max_delay_ms: Option<u64>,
    /// Share of each delay taken off at random, 0 to 1.
    #[arg(long)]
    retry_jitter: Option<f64>,
    /// When max_instances are running: FAIL, SKIP, QUEUE or REPLACE.
    #[arg(long)]
    overlap_policy: Option<String>,
    /// Worker-side re-runs of a failed task.
    #[arg(long)]
    task_retries: Option<u32>,
    /// HEALTH_FIRST, RANDOM, ROUND_ROBIN or SPECIFY.
    #[arg(long)]
    dispatch_strategy: Option<String>,
    /// A tag or address (repeat for more).
    #[arg(long = "designated-worker")]
    designated_workers: Vec<String>,
    /// Minimum free CPU cores.
    #[arg(long)]
    min_cpu_cores: Option<f64>,
    /// Minimum free memory, GB.
    #[arg(long)]
    min_memory_gb: Option<f64>,
    /// Minimum free disk, GB.
    #[arg(long)]
    min_disk_gb: Option<f64>,
    /// Most workers per instance (0 = unlimited).
    #[arg(long)]
    max_worker_count: Option<u32>,
    /// FIRE_ONCE, FIRE_ALL or SKIP.
    #[arg(long)]
    misfire: Option<String>,
    /// Lifecycle start, RFC 3339.
    #[arg(long)]
    start: Option<String>,
    /// Lifecycle end, RFC 3339.
    #[arg(long)]
    end: Option<String>,
    /// Free text for people.
    #[arg(long)]
    description: Option<String>,
    /// Tags, comma-separated; replaces the job's tags (`--tags ""` removes them all).
    #[arg(long)]
    tags: Option<String>,
    /// Where workers send the log lines: ONLINE (the server, default), LOCAL (a rotating
    /// file on the worker), STDOUT (the worker's stdout) or NULL.
    #[arg(long)]
    log_type: Option<String>,
    /// Lines below this level are dropped at the worker: DEBUG, INFO (default), WARN, ERROR.
    #[arg(long)]
    log_level: Option<String>,
    /// A calendar of the app whose excluded dates the job does not fire on (repeat for more);
    /// replaces the job's calendars.
    #[arg(long = "calendar", value_name = "NAME")]
    calendars: Vec<String>,
    /// Remove every calendar from the job.
    #[arg(long, conflicts_with = "calendars")]
    no_calendars: bool,
    /// Create it disabled.
    #[arg(long)]
    disabled: bool,
}

/// Splits a comma-separated tag list, trimming each tag and dropping empty ones.
pub(crate) fn split_tags(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .collect()
}

/// An instant on the command line: RFC 3339 (`2026-12-06T10:00:00Z`) or epoch milliseconds.
pub(crate) fn instant(flag: &str, text: &str) -> Result<i64> {
    let text = text.trim();
    if let Ok(ms) = text.parse::<i64>() {
        return Ok(ms);
    }
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|t| t.timestamp_millis())
        .with_context(|| format!("{flag} {text:?}: not RFC 3339 nor epoch milliseconds"))
}

/// The filters of `job list`.
#[derive(Debug, Clone, clap::Args)]
pub struct JobFilterArgs {
    /// Only jobs whose name contains this (ignoring case).
    #[arg(long)]
    name: Option<String>,
    /// Only jobs carrying this tag.
    #[arg(long)]
    tag: Option<String>,
    /// Only jobs of this time expression type (CRON, API, ...).
    #[arg(long = "type")]
    kind: Option<String>,
    /// Only jobs of this execute type (STANDALONE, BROADCAST, MAP, MAP_REDUCE).
    #[arg(long)]
    execute_type: Option<String>,
    /// Only enabled jobs.
    #[arg(long, conflicts_with = "disabled")]
    enabled: bool,
    /// Only disabled jobs.
    #[arg(long)]
    disabled: bool,
}

impl JobFilterArgs {
    /// The query these filters make, for one page.
    pub(crate) fn query(&self, limit: Option<u32>, cursor: Option<u64>) -> Result<JobQuery> {
        Ok(JobQuery {
            limit,
            cursor,
            name: self.name.clone(),
            tag: self.tag.clone(),
            time_expression_type: match &self.kind {
                Some(k) => Some(k.parse().with_context(|| format!("--type {k}"))?),
                None => None,
            },
            execute_type: match &self.execute_type {
                Some(e) => Some(api_enum("execute type", e)?),
                None => None,
            },
            enabled: match (self.enabled, self.disabled) {
                (true, _) => Some(true),
                (_, true) => Some(false),
                _ => None,
            },
        })
    }
}

impl JobFields {
    /// The body: `--body` (if any) with every given flag applied over it.
    fn to_body(&self, base: Option<JobBody>) -> Result<JobBody> {
        let mut body = match &self.body {
            Some(src) => {
                let text = if src == "-" {
                    std::io::read_to_string(std::io::stdin())
                        .context("reading the body from stdin")?
                } else {
                    std::fs::read_to_string(src).with_context(|| format!("reading {src}"))?
                };
                serde_json::from_str(&text).context("--body is not a valid job body")?
            }
            None => match base {
                Some(b) => b,
                None => {
                    let (Some(name), Some(kind), Some(processor)) =
                        (&self.name, &self.kind, &self.processor)
                    else {
                        bail!("--name, --type and --processor are required (or --body)");
                    };
                    let kind: TimeExpressionType =
                        kind.parse().with_context(|| format!("--type {kind}"))?;
                    JobBody::new(name.clone(), kind, "", processor.clone())
                }
            },
        };
        if let Some(v) = &self.name {
            body.name = v.clone();
        }
        if let Some(v) = &self.kind {
            body.time_expression_type = v.parse().with_context(|| format!("--type {v}"))?;
        }
        if let Some(v) = &self.expr {
            body.time_expression = v.clone();
        }
        if let Some(v) = &self.tz {
            body.time_zone = Some(v.clone());
        }
        if let Some(v) = &self.processor {
            body.processor = v.clone();
        }
        if let Some(v) = &self.params {
            body.params = v.clone();
        }
        if let Some(v) = &self.execute_type {
            body.execute_type = api_enum("execute type", v)?;
        }
        if let Some(v) = self.max_instances {
            body.max_instances = v;
        }
        if let Some(v) = self.concurrency {
            body.concurrency = v;
        }
        if let Some(v) = self.timeout_ms {
            body.timeout_ms = v;
        }
        if let Some(v) = self.instance_retries {
            body.instance_retries = v;
        }
        if let Some(v) = &self.retry_backoff {
            body.retry_backoff.shape = api_enum("retry backoff", v)?;
        }
        if let Some(v) = self.retry_initial_delay_ms {
            body.retry_backoff.initial_delay_ms = v;
        }
        if let Some(v) = self.retry_factor {
            body.retry_backoff.factor = v;
        }
        if let Some(v) = self.retry_max_delay_ms {
            body.retry_backoff.max_delay_ms = v;
        }
        if let Some(v) = self.retry_jitter {
            body.retry_backoff.jitter = v;
        }
        if let Some(v) = &self.overlap_policy {
            body.overlap_policy = api_enum("overlap policy", v)?;
        }
        if let Some(v) = self.task_retries {
            body.task_retries = v;
        }
        if let Some(v) = &self.dispatch_strategy {
            body.dispatch_strategy = api_enum("dispatch strategy", v)?;
        }
        if !self.designated_workers.is_empty() {
            body.designated_workers = self.designated_workers.clone();
        }
        if let Some(v) = self.min_cpu_cores {
            body.min_cpu_cores = v;
        }
        if let Some(v) = self.min_memory_gb {
            body.min_memory_gb = v;
        }
        if let Some(v) = self.min_disk_gb {
            body.min_disk_gb = v;
        }
        if let Some(v) = self.max_worker_count {
            body.max_worker_count = v;
        }
        if let Some(v) = &self.misfire {
            body.misfire = api_enum("misfire policy", v)?;
        }
        if self.start.is_some() || self.end.is_some() {
            body.lifecycle = LifecycleJson {
                start: self.start.clone().or(body.lifecycle.start),
                end: self.end.clone().or(body.lifecycle.end),
            };
        }
        if let Some(v) = &self.description {
            body.description = v.clone();
        }
        if let Some(v) = &self.tags {
            body.tags = split_tags(v);
        }
        if let Some(v) = &self.log_type {
            body.log_type = api_enum("log type", v)?;
        }
        if let Some(v) = &self.log_level {
            body.log_level = api_enum("log level", v)?;
        }
        if !self.calendars.is_empty() {
            body.calendars = self.calendars.clone();
        }
        if self.no_calendars {
            body.calendars.clear();
        }
        if self.disabled {
            body.enabled = false;
        }
        Ok(body)
    }
}

/// `ferrojob job ...`
#[derive(Debug, clap::Subcommand)]
pub enum JobCmd {
    /// Create a job; prints its id.
    Create {
        #[command(flatten)]
        app: AppArg,
        #[command(flatten)]
        fields: JobFields,
    },
    /// Replace a job's definition (flags change the current one).
    Update {
        #[command(flatten)]
        app: AppArg,
        /// Job id.
        id: JobId,
        #[command(flatten)]
        fields: JobFields,
    },
    /// List the app's jobs (filtered by any of the flags).
    List {
        #[command(flatten)]
        app: AppArg,
        #[command(flatten)]
        filter: JobFilterArgs,
        /// Page size.
        #[arg(long)]
        limit: Option<u32>,
        /// Cursor from the previous page.
        #[arg(long)]
        cursor: Option<u64>,
    },
    /// Show one job.
    Get {
        #[command(flatten)]
        app: AppArg,
        /// Job id.
        id: JobId,
    },
    /// Run a job now (or after --delay-ms); prints the instance id (one per line with
    /// --count).
    Run {
        #[command(flatten)]
        app: AppArg,
        /// Job id.
        id: JobId,
        /// Instance params.
        #[arg(long, default_value = "")]
        params: String,
        /// Delay, ms.
        #[arg(long, default_value_t = 0)]
        delay_ms: u64,
        /// Runs to create, all or none, in one request and one durable write
        /// (`POST .../jobs/{id}/runs`), 1 to 1000.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=1000))]
        count: u16,
        /// Send the run with this `Idempotency-Key` (and again after a network error): the
        /// same key within 24 h gives the first run back, never a second one.
        #[arg(long)]
        idempotency_key: Option<String>,
    },
    /// Run a job once per trigger time of its schedule in a past range [from, to) (at most
    /// 1000); prints the trigger times and the instances created.
    Backfill {
        #[command(flatten)]
        app: AppArg,
        /// Job id.
        id: JobId,
        /// Start of the range, inclusive (RFC 3339 or epoch ms).
        #[arg(long)]
        from: String,
        /// End of the range, exclusive, not in the future (RFC 3339 or epoch ms).
        #[arg(long)]
        to: String,
        /// Only list the trigger times.
        #[arg(long)]
        dry_run: bool,
        /// Send the backfill with this `Idempotency-Key` (see `job run`).
        #[arg(long)]
        idempotency_key: Option<String>,
    },
    /// Copy a job under a new name (every other field as the source's); prints the copy's id.
    Copy {
        #[command(flatten)]
        app: AppArg,
        /// The job to copy.
        id: JobId,
        /// The copy's name.
        #[arg(long)]
        name: String,
        /// Create the copy disabled (default: enabled as the source).
        #[arg(long)]
        disabled: bool,
    },
    /// Enable a job.
    Enable {
        #[command(flatten)]
        app: AppArg,
        /// Job id.
        id: JobId,
    },
    /// Disable a job.
    Disable {
        #[command(flatten)]
        app: AppArg,
        /// Job id.
        id: JobId,
    },
    /// Delete a job.
    Delete {
        #[command(flatten)]
        app: AppArg,
        /// Job id.
        id: JobId,
    },
    /// The job's stored definitions, newest first (the newest 50 are kept).
    Versions {
        #[command(flatten)]
        app: AppArg,
        /// Job id.
        id: JobId,
        #[command(flatten)]
        args: crate::history_cmd::VersionsArgs,
    },
    /// Make a stored definition the job's current one again (as a new version).
    Rollback {
        #[command(flatten)]
        app: AppArg,
        /// Job id.
        id: JobId,
        /// The version to restore (see `ferrojob job versions`).
        #[arg(long)]
        version: u64,
    },
}

/// `ferrojob instance ...`
#[derive(Debug, clap::Subcommand)]
pub enum InstanceCmd {
    /// Show one instance.
    Get {
        #[command(flatten)]
        app: AppArg,
        /// Instance id.
        id: InstanceId,
    },
    /// List instances, newest first.
    List {
        #[command(flatten)]
        app: AppArg,
        /// Only this job's.
        #[arg(long)]
        job: Option<JobId>,
        /// Only in this status (e.g. RUNNING, SUCCEED, FAILED).
        #[arg(long)]
        status: Option<String>,
        /// Only triggered at or after this instant (RFC 3339 or epoch ms).
        #[arg(long, alias = "from")]
        trigger_from: Option<String>,
        /// Only triggered before this instant (RFC 3339 or epoch ms).
        #[arg(long, alias = "to")]
        trigger_to: Option<String>,
        /// Only finished at or after this instant (RFC 3339 or epoch ms).
        #[arg(long)]
        finished_from: Option<String>,
        /// Only finished before this instant (RFC 3339 or epoch ms).
        #[arg(long)]
        finished_to: Option<String>,
        /// Page size.
        #[arg(long)]
        limit: Option<u32>,
        /// Cursor from the previous page.
        #[arg(long)]
        cursor: Option<u64>,
    },
    /// Stop a dispatched or running instance.
    Stop {
        #[command(flatten)]
        app: AppArg,
        /// Instance id.
        id: InstanceId,
    },
    /// Cancel an instance not yet dispatched.
    Cancel {
        #[command(flatten)]
        app: AppArg,
        /// Instance id.
        id: InstanceId,
    },
    /// Run a finished instance again.
    Retry {
        #[command(flatten)]
        app: AppArg,
        /// Instance id.
        id: InstanceId,
    },
    /// Delete a finished instance with its log (refused while it runs: stop it first).
    Delete {
        #[command(flatten)]
        app: AppArg,
        /// Instance id.
        id: InstanceId,
    },
    /// Print an instance's log: time, level, the attempt that wrote each line, the text and
    /// its fields.
    Log {
        #[command(flatten)]
        app: AppArg,
        /// Instance id.
        id: InstanceId,
        /// Only the last N lines.
        #[arg(long, value_name = "N", conflicts_with = "follow")]
        tail: Option<u32>,
        /// Keep printing new lines until the instance is final.
        #[arg(long, short = 'f')]
        follow: bool,
    },
}

/// `ferrojob worker ...`
#[derive(Debug, clap::Subcommand)]
pub enum WorkerCmd {
    /// The app's live workers.
    List {
        #[command(flatten)]
        app: AppArg,
    },
    /// Print the LOCAL log a worker on this machine writes (its `--local-log-dir`, by default
    /// `logs` in its data directory), oldest line first. Needs no server.
    LocalLog {
        /// The worker's local log directory.
        #[arg(long)]
        dir: std::path::PathBuf,
        /// Only the lines of this instance.
        #[arg(long)]
        instance: Option<u64>,
    },
}

/// `client`, carrying `key` as its `Idempotency-Key` when one is given.
pub(crate) fn keyed(client: &Client, key: Option<&str>) -> Client {
    match key {
        Some(key) => client.with_idempotency_key(key),
        None => client.clone(),
    }
}

pub(crate) fn print_json<T: Serialize>(value: &T) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// Prints one page of a listing: the whole page as JSON with `--json`, else one `line` per
/// item and a hint with the next cursor when there is more.
pub(crate) fn print_page<P: Serialize, T>(
    json: bool,
    page: &P,
    items: &[T],
    next_cursor: Option<u64>,
    line: impl Fn(&T) -> String,
) -> Result<()> {
    if json {
        return print_json(page);
    }
    for item in items {
        println!("{}", line(item));
    }
    if let Some(c) = next_cursor {
        println!("(more: --cursor {c})");
    }
    Ok(())
}

pub(crate) fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")
}

fn job_line(j: &JobView) -> String {
    let tags = if j.body.tags.is_empty() {
        String::new()
    } else {
        format!(" tags={}", j.body.tags.join(","))
    };
    let mut skipped = if j.skipped_runs == 0 {
        String::new()
    } else {
        format!(" skipped={}", j.skipped_runs)
    };
    if !j.body.calendars.is_empty() {
        skipped.push_str(&format!(" calendars={}", j.body.calendars.join(",")));
    }
    if j.calendar_skipped_runs > 0 {
        skipped.push_str(&format!(" calendar_skipped={}", j.calendar_skipped_runs));
    }
    format!(
        "{:>6}  {:<24} {:<20} {:<16} {:<10} {:<8} runs={:<6} next={}{skipped}{tags}",
        j.id.get(),
        truncate(&j.body.name, 24),
        format!("{:?}", j.body.time_expression_type),
        truncate(&j.body.time_expression, 16),
        j.body.processor,
        if j.body.enabled {
            "enabled"
        } else {
            "disabled"
        },
        j.runs,
        j.next_trigger_time.map_or("-".to_owned(), fmt_ms),
    )
}

/// One instance on one line; MAP / MAP_REDUCE instances add their task progress
/// (`tasks=succeeded/total`, and the failed count if any), instances waiting for a retry
/// its time (`retry_at=`) and instances of a workflow node the workflow instance (`wf=ID`).
pub(crate) fn instance_line(i: &InstanceView) -> String {
    format!(
        "{:>8}  job={:<6} {:<22} tries={:<2} trigger={} worker={}{}{}{} result={}",
        i.id.get(),
        i.job_id.get(),
        status_name(i.status),
        i.running_times,
        fmt_ms(i.trigger_time),
        i.worker.as_deref().unwrap_or("-"),
        i.tasks.map_or(String::new(), |t| tasks_text(&t)),
        i.next_retry_at
            .map_or(String::new(), |t| format!(" retry_at={}", fmt_ms(t))),
        i.workflow_instance_id
            .map_or(String::new(), |w| format!(" wf={}", w.get())),
        truncate(i.result.as_deref().unwrap_or(""), 60),
    )
}

/// ` tasks=succeeded/total` (plus ` failed=N` when some failed).
pub(crate) fn tasks_text(t: &TaskProgress) -> String {
    if t.failed > 0 {
        format!(" tasks={}/{} failed={}", t.succeeded, t.total, t.failed)
    } else {
        format!(" tasks={}/{}", t.succeeded, t.total)
    }
}

/// The API name of a status (`SUCCEED`).
pub fn status_name(s: InstanceStatus) -> String {
    serde_json::to_value(s)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| format!("{s:?}"))
}

pub(crate) fn truncate(s: &str, n: usize) -> String {
    let line = s.lines().next().unwrap_or("");
    if line.chars().count() <= n && line.len() == s.len() {
        line.to_owned()
    } else {
        let mut out: String = line.chars().take(n.saturating_sub(1)).collect();
        out.push('…');
        out
    }
}

pub fn app(conn: &Conn, cmd: &AppCmd) -> Result<()> {
    let client = conn.client()?;
    runtime()?.block_on(async {
        match cmd {
            AppCmd::Create { name, secret } => {
                let created = client
                    .create_app(&CreateApp {
                        name: name.clone(),
                        secret: secret.clone(),
                    })
                    .await?;
                if conn.json {
                    print_json(&created)
                } else {
                    println!("app {} created with id {}", created.name, created.id.get());
                    Ok(())
                }
            }
            AppCmd::List => {
                let apps = client.list_apps().await?;
                if conn.json {
                    return print_json(&apps);
                }
                println!("{:>6}  {:<32}  CREATED", "ID", "NAME");
                for a in &apps.items {
                    println!("{:>6}  {:<32}  {}", a.id.get(), a.name, fmt_ms(a.created_at));
                }
                Ok(())
            }
            AppCmd::Get { app } => {
                let a = client.get_app(app).await?;
                if conn.json {
                    return print_json(&a);
                }
                println!("app {} (id {}), created {}", a.name, a.id.get(), fmt_ms(a.created_at));
                if let Some(until) = a.previous_secret_until {
                    println!("previous worker secret accepted until {}", fmt_ms(until));
                }
                Ok(())
            }
            AppCmd::Delete { app, force } => {
                client.delete_app(app, *force).await?;
                if !conn.json {
                    println!("app {app} deleted");
                }
                Ok(())
            }
            AppCmd::RotateSecret {
                app,
                secret,
                overlap_secs,
            } => {
                let req = ferrojob::api::RotateSecret {
                    secret: secret.clone(),
                    overlap_secs: *overlap_secs,
                };
                let rotated = client.rotate_secret(app, &req).await?;
                if conn.json {
                    return print_json(&rotated);
                }
                println!("{}", rotated.secret);
                eprintln!(
                    "the previous secret works until {}: restart the workers with the new one before then",
                    fmt_ms(rotated.previous_secret_until)
                );
                Ok(())
            }
        }
    })
}

pub fn job(conn: &Conn, cmd: &JobCmd) -> Result<()> {
    let client = conn.client()?;
    runtime()?.block_on(async {
        let json = conn.json;
        match cmd {
            JobCmd::Create { app, fields } => {
                let body = fields.to_body(None)?;
                let created = client.create_job(&app.app, &body).await?;
                if json {
                    print_json(&created)
                } else {
                    println!("{}", created.id.get());
                    Ok(())
                }
            }
            JobCmd::Update { app, id, fields } => {
                let current = client.get_job(&app.app, *id).await?;
                let body = fields.to_body(Some(current.body))?;
                let view = client.update_job(&app.app, *id, &body).await?;
                if json {
                    print_json(&view)
                } else {
                    println!("{}", job_line(&view));
                    Ok(())
                }
            }
            JobCmd::List {
                app,
                filter,
                limit,
                cursor,
            } => {
                let query = filter.query(*limit, *cursor)?;
                let page = client.list_jobs(&app.app, &query).await?;
                print_page(json, &page, &page.items, page.next_cursor, job_line)
            }
            JobCmd::Copy {
                app,
                id,
                name,
                disabled,
            } => {
                let copy = CopyJob {
                    name: name.clone(),
                    enabled: disabled.then_some(false),
                };
                let created = client.copy_job(&app.app, *id, &copy).await?;
                if json {
                    print_json(&created)
                } else {
                    println!("{}", created.id.get());
                    Ok(())
                }
            }
            JobCmd::Get { app, id } => print_json(&client.get_job(&app.app, *id).await?),
            JobCmd::Run {
                app,
                id,
                params,
                delay_ms,
                count,
                idempotency_key,
            } if *count > 1 => {
                let run = RunJob {
                    params: params.clone(),
                    delay_ms: *delay_ms,
                };
                let batch = ferrojob::api::RunJobBatch {
                    runs: vec![run; usize::from(*count)],
                };
                let created = keyed(&client, idempotency_key.as_deref())
                    .run_job_batch(&app.app, *id, &batch)
                    .await?;
                if json {
                    print_json(&created)
                } else {
                    for iid in &created.instance_ids {
                        println!("{}", iid.get());
                    }
                    Ok(())
                }
            }
            JobCmd::Run {
                app,
                id,
                params,
                delay_ms,
                idempotency_key,
                ..
            } => {
                let run = keyed(&client, idempotency_key.as_deref())
                    .run_job(
                        &app.app,
                        *id,
                        &RunJob {
                            params: params.clone(),
                            delay_ms: *delay_ms,
                        },
                    )
                    .await?;
                if json {
                    print_json(&run)
                } else {
                    println!("{}", run.instance_id.get());
                    Ok(())
                }
            }
            JobCmd::Backfill {
                app,
                id,
                from,
                to,
                dry_run,
                idempotency_key,
            } => {
                let req = ferrojob::api::Backfill {
                    from: instant("--from", from)?,
                    to: instant("--to", to)?,
                    dry_run: *dry_run,
                };
                let done = keyed(&client, idempotency_key.as_deref())
                    .backfill_job(&app.app, *id, &req)
                    .await?;
                if json {
                    return print_json(&done);
                }
                print_backfill(
                    done.dry_run,
                    done.runs.iter().map(|r| {
                        (
                            r.trigger_time,
                            r.instance_id.map(|i| i.get()),
                            r.excluded_by.as_deref(),
                        )
                    }),
                    "instance",
                    "overlap policy SKIP",
                );
                Ok(())
            }
            JobCmd::Enable { app, id } | JobCmd::Disable { app, id } => {
                let enable = matches!(cmd, JobCmd::Enable { .. });
                let view = if enable {
                    client.enable_job(&app.app, *id).await?
                } else {
                    client.disable_job(&app.app, *id).await?
                };
                if json {
                    print_json(&view)
                } else {
                    println!("{}", job_line(&view));
                    Ok(())
                }
            }
            JobCmd::Delete { app, id } => {
                client.delete_job(&app.app, *id).await?;
                if !json {
                    println!("{id} deleted");
                }
                Ok(())
            }
            JobCmd::Versions { app, id, args } => {
                crate::history_cmd::job_versions(&client, json, app, *id, args).await
            }
            JobCmd::Rollback { app, id, version } => {
                crate::history_cmd::job_rollback(&client, json, app, *id, *version).await
            }
        }
    })
}

pub fn instance(conn: &Conn, cmd: &InstanceCmd) -> Result<()> {
    let client = conn.client()?;
    runtime()?.block_on(async {
        let json = conn.json;
        match cmd {
            InstanceCmd::Get { app, id } => print_json(&client.get_instance(&app.app, *id).await?),
            InstanceCmd::List {
                app,
                job,
                status,
                trigger_from,
                trigger_to,
                finished_from,
                finished_to,
                limit,
                cursor,
            } => {
                let status = match status {
                    Some(s) => Some(api_enum::<InstanceStatus>("status", s)?),
                    None => None,
                };
                let at = |flag: &str, v: &Option<String>| {
                    v.as_deref().map(|t| instant(flag, t)).transpose()
                };
                let query = InstanceQuery {
                    job_id: *job,
                    status,
                    trigger_from: at("--trigger-from", trigger_from)?,
                    trigger_to: at("--trigger-to", trigger_to)?,
                    finished_from: at("--finished-from", finished_from)?,
                    finished_to: at("--finished-to", finished_to)?,
                    limit: *limit,
                    cursor: *cursor,
                };
                let page = client.list_instances(&app.app, &query).await?;
                print_page(json, &page, &page.items, page.next_cursor, instance_line)
            }
            InstanceCmd::Stop { app, id }
            | InstanceCmd::Cancel { app, id }
            | InstanceCmd::Retry { app, id } => {
                let view = match cmd {
                    InstanceCmd::Stop { .. } => client.stop_instance(&app.app, *id).await?,
                    InstanceCmd::Cancel { .. } => client.cancel_instance(&app.app, *id).await?,
                    _ => client.retry_instance(&app.app, *id).await?,
                };
                if json {
                    print_json(&view)
                } else {
                    println!("{}", instance_line(&view));
                    Ok(())
                }
            }
            InstanceCmd::Delete { app, id } => {
                client.delete_instance(&app.app, *id).await?;
                if !json {
                    println!("{id} deleted");
                }
                Ok(())
            }
            InstanceCmd::Log {
                app,
                id,
                tail,
                follow,
            } => {
                let print = |page: &ferrojob::api::LogView| -> Result<()> {
                    if json {
                        print_json(page)
                    } else {
                        for l in &page.lines {
                            println!("{}", l.to_text());
                        }
                        Ok(())
                    }
                };
                if let Some(n) = tail {
                    let query = LogQuery {
                        limit: Some((*n).clamp(1, 1000)),
                        cursor: None,
                        before: Some(u64::MAX),
                    };
                    let page = client.instance_log(&app.app, *id, query).await?;
                    return print(&page);
                }
                let mut cursor = None;
                let mut dropped: u64;
                let mut final_seen: Option<std::time::Instant> = None;
                loop {
                    let query = LogQuery {
                        limit: Some(1000),
                        cursor,
                        before: None,
                    };
                    let page = client.instance_log(&app.app, *id, query).await?;
                    print(&page)?;
                    dropped = page.dropped;
                    if let Some(last) = page.lines.last() {
                        cursor = Some(last.seq);
                    }
                    if page.next_cursor.is_some() && !page.lines.is_empty() {
                        continue;
                    }
                    if !*follow {
                        break;
                    }
                    // Caught up. Once the instance is final, keep reading for FINAL_GRACE:
                    // a worker sends its final report ahead of the last log batch (reports
                    // never wait behind logs), so the last lines may land just after it.
                    match final_seen {
                        Some(at) if at.elapsed() >= FINAL_GRACE => break,
                        Some(_) => {}
                        None => {
                            let status = client.get_instance(&app.app, *id).await?.status;
                            if status.is_final() {
                                final_seen = Some(std::time::Instant::now());
                            }
                        }
                    }
                    tokio::time::sleep(FOLLOW_POLL).await;
                }
                if dropped > 0 && !json {
                    println!("({dropped} lines dropped)");
                }
                Ok(())
            }
        }
    })
}

fn print_local_log(dir: &std::path::Path, instance: Option<u64>) -> Result<()> {
    let lines = ferrojob::worker::read_local_log(dir, instance)
        .with_context(|| format!("cannot read the local log in {}", dir.display()))?;
    for l in lines {
        println!("{l}");
    }
    Ok(())
}

/// How often `instance log --follow` asks for new lines once caught up.
const FOLLOW_POLL: std::time::Duration = std::time::Duration::from_millis(250);
/// How long `instance log --follow` still reads after the instance is final.
const FINAL_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

pub fn worker(conn: &Conn, cmd: &WorkerCmd) -> Result<()> {
    // Reads files on this machine: no server, no token.
    if let WorkerCmd::LocalLog { dir, instance } = cmd {
        return print_local_log(dir, *instance);
    }
    let client = conn.client()?;
    runtime()?.block_on(async {
        match cmd {
            WorkerCmd::LocalLog { dir, instance } => print_local_log(dir, *instance),
            WorkerCmd::List { app } => {
                let list = client.list_workers(&app.app).await?;
                if conn.json {
                    return print_json(&list);
                }
                for w in &list.workers {
                    println!(
                        "{:<22} score={:<6.1} cpu={} load={} mem={:.1}/{:.1}GB disk={:.0}/{:.0}GB tags={} {}",
                        w.address,
                        w.health_score,
                        w.cpu_cores,
                        w.cpu_load.map_or("-".to_owned(), |l| format!("{l:.2}")),
                        w.memory_used_gb,
                        w.memory_total_gb,
                        w.disk_used_gb,
                        w.disk_total_gb,
                        w.tags.join(","),
                        if w.overloaded { "OVERLOADED" } else { "" },
                    );
                }
                Ok(())
            }
        }
    })
}

/// Prints a backfill's answer, a line per trigger time (`runs`: the time, the id of the run
/// created, the calendar that excluded it): `{what}={id}` for a run created, the reason for
/// a time skipped (`skipped` when no calendar excluded it).
pub(crate) fn print_backfill<'a>(
    dry_run: bool,
    runs: impl Iterator<Item = (i64, Option<u64>, Option<&'a str>)>,
    what: &str,
    skipped: &str,
) {
    for (t, id, excluded_by) in runs {
        let when = chrono::DateTime::from_timestamp_millis(t)
            .map_or_else(|| t.to_string(), |d| d.to_rfc3339());
        match (dry_run, id, excluded_by) {
            (_, _, Some(cal)) => println!("{when} skipped (excluded by calendar {cal})"),
            (true, _, None) => println!("{when}"),
            (false, Some(id), None) => println!("{when} {what}={id}"),
            (false, None, None) => println!("{when} skipped ({skipped})"),
        }
    }
}
