//! Built-in processors, registered by `WorkerBuilder::builtins`: `noop`, `sleep` and the
//! MAP_REDUCE `sum_mr` always; `shell` and `http` only when the operator opts in
//! ([`DangerousBuiltin`], `WorkerConfig::allow_processors`, `ferrojob-worker
//! --allow-processor NAME`). `http`, `noop`, `sleep` and `sum_mr` read
//! [`TaskContext::params`] (the instance params, else the job params).
//!
//! # `shell`: what runs, and with what
//!
//! The command is the **job's** params, never the run's: `POST .../jobs/{id}/run
//! {"params": ...}` cannot replace it. The run's params reach the command as the variable
//! `FERROJOB_INSTANCE_PARAMS`. A job opts in to commands chosen per run by giving its params
//! in JSON form, `{"command": "...", "instance_params_as_command": true}`: then a run with
//! non-empty params runs those params instead (whoever may run the job may then run any
//! command on the worker; only the job's definition can grant that). Job params that are not
//! a JSON object are the command as they are.
//!
//! The child gets a clean environment, not the worker's (which holds `FERROJOB_SECRET`): the
//! variables of [`SHELL_INHERITED_ENV`] that the worker has, and the run's own:
//!
//! | variable | value |
//! |---|---|
//! | `FERROJOB_INSTANCE_ID` | the instance id |
//! | `FERROJOB_JOB_ID` | the job id |
//! | `FERROJOB_INSTANCE_PARAMS` | the run's params (empty when none) |
//! | `FERROJOB_TASK_ID` | `0` (STANDALONE) or the worker's index (BROADCAST) |
//! | `FERROJOB_WORKFLOW_INSTANCE_ID` | a workflow node's workflow instance |
//! | `FERROJOB_WORKFLOW_CONTEXT` | a workflow node's context (a JSON object) |

use std::collections::VecDeque;
use std::ffi::OsString;
use std::time::Duration;

use serde::Deserialize;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

use super::logs::truncate_at_char_boundary;
use super::processor::{BasicProcessor, ProcessResult, TaskContext};

/// Lines of standard output kept as the shell processor's result.
pub const SHELL_RESULT_LINES: usize = 20;
/// Bytes of the shell result and of the HTTP response body kept as the result at most.
pub const RESULT_PREFIX_BYTES: usize = 4096;

/// A built-in processor that acts beyond the worker on a job's say-so: `shell` runs the
/// commands jobs name, `http` sends requests to the URLs they name. Whoever can create or run
/// such a job (and whoever holds the app secret, through the worker-to-worker listener) can
/// use the worker's machine and network position, so `WorkerBuilder::builtins` registers them
/// only when `WorkerConfig::allow_processors` names them; a `ScheduleJob` for a disabled one
/// fails with [`ProcessorUnavailable::NotAllowed`](super::ProcessorUnavailable).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum DangerousBuiltin {
    /// `shell` ([`ShellProcessor`]).
    Shell,
    /// `http` ([`HttpProcessor`]).
    Http,
}

impl DangerousBuiltin {
    /// Every one of them.
    pub const ALL: [DangerousBuiltin; 2] = [DangerousBuiltin::Shell, DangerousBuiltin::Http];

    /// The processor name jobs use.
    pub fn name(self) -> &'static str {
        match self {
            DangerousBuiltin::Shell => "shell",
            DangerousBuiltin::Http => "http",
        }
    }

    /// The one named `name`, if any.
    pub fn from_name(name: &str) -> Option<DangerousBuiltin> {
        DangerousBuiltin::ALL.into_iter().find(|d| d.name() == name)
    }
}

impl std::fmt::Display for DangerousBuiltin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A name given to `--allow-processor` that is not a [`DangerousBuiltin`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a processor that needs allowing (choose from: shell, http; noop, sleep and sum_mr are always registered)")]
pub struct UnknownDangerousBuiltin(pub String);

impl std::str::FromStr for DangerousBuiltin {
    type Err = UnknownDangerousBuiltin;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        DangerousBuiltin::from_name(s.trim()).ok_or_else(|| UnknownDangerousBuiltin(s.to_string()))
    }
}

/// `shell`'s job params in JSON form (see the module doc).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ShellParams {
    command: String,
    #[serde(default)]
    instance_params_as_command: bool,
}

/// Why `shell` has no command to run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ShellCommandError {
    /// Nothing to run.
    #[error("shell: empty command (the job's params are the command)")]
    Empty,
    /// The job params are a JSON object but not `{"command", "instance_params_as_command"}`.
    #[error("shell: job params in JSON form must be {{\"command\": \"...\", \"instance_params_as_command\": false}}: {0}")]
    Json(String),
}

/// The command `shell` runs for a job with `job_params` and a run with `instance_params`
/// (the rule is in the module doc): the job's command, or the run's params when the job opted
/// in and they are not empty.
pub fn shell_command(job_params: &str, instance_params: &str) -> Result<String, ShellCommandError> {
    let structured = job_params.trim_start().starts_with('{')
        && serde_json::from_str::<serde_json::Value>(job_params).is_ok_and(|v| v.is_object());
    let (command, run_params_allowed) = if structured {
        let p: ShellParams =
            serde_json::from_str(job_params).map_err(|e| ShellCommandError::Json(e.to_string()))?;
        (p.command, p.instance_params_as_command)
    } else {
        (job_params.to_string(), false)
    };
    let command = if run_params_allowed && !instance_params.trim().is_empty() {
        instance_params.to_string()
    } else {
        command
    };
    if command.trim().is_empty() {
        return Err(ShellCommandError::Empty);
    }
    Ok(command)
}

/// Variables a `shell` child takes from the worker's environment, when the worker has them.
/// Nothing else of the worker's environment reaches it: not `FERROJOB_SECRET`, nor any
/// credential the worker was started with.
pub const SHELL_INHERITED_ENV: [&str; 9] = [
    "PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR",
];

/// `PATH` of a `shell` child when the worker has none.
pub const SHELL_DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// The whole environment of a `shell` child for the run `ctx`: [`SHELL_INHERITED_ENV`] read
/// through `worker_env` (the worker's own, `std::env::var_os`, outside tests), then the run's
/// variables (the module doc's table).
pub fn shell_env(
    ctx: &TaskContext,
    worker_env: impl Fn(&str) -> Option<OsString>,
) -> Vec<(String, OsString)> {
    let mut env: Vec<(String, OsString)> = SHELL_INHERITED_ENV
        .iter()
        .filter_map(|name| worker_env(name).map(|v| ((*name).to_string(), v)))
        .collect();
    if !env.iter().any(|(k, _)| k == "PATH") {
        env.push(("PATH".into(), SHELL_DEFAULT_PATH.into()));
    }
    let mut own = |k: &str, v: String| env.push((k.to_string(), OsString::from(v)));
    own("FERROJOB_INSTANCE_ID", ctx.instance_id().to_string());
    own("FERROJOB_JOB_ID", ctx.job_id().to_string());
    own(
        "FERROJOB_INSTANCE_PARAMS",
        ctx.instance_params().to_string(),
    );
    own("FERROJOB_TASK_ID", ctx.task_id().to_string());
    if let Some(wf) = ctx.workflow_instance_id() {
        own("FERROJOB_WORKFLOW_INSTANCE_ID", wf.to_string());
        own(
            "FERROJOB_WORKFLOW_CONTEXT",
            ctx.workflow_context().to_string(),
        );
    }
    env
}

/// `shell`: runs the job's command (see the module doc for where it comes from and what
/// environment it gets) with `sh -c`. Standard output and error lines go to the instance
/// log; exit status 0 succeeds with the last [`SHELL_RESULT_LINES`] lines of standard output
/// as the result, anything else fails with the exit code. The command runs in its own process
/// group; on stop or timeout the whole group is killed (SIGKILL), children included. A
/// workflow node appends to the context when its result (the output above) is a JSON object.
///
/// Registered by `WorkerBuilder::builtins` only when allowed ([`DangerousBuiltin::Shell`]).
#[derive(Debug, Default, Clone, Copy)]
pub struct ShellProcessor;

impl BasicProcessor for ShellProcessor {
    async fn process(&self, ctx: TaskContext) -> ProcessResult {
        let script = match shell_command(ctx.job_params(), ctx.instance_params()) {
            Ok(s) => s,
            Err(e) => return ProcessResult::fail(e.to_string()),
        };
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(&script)
            .env_clear()
            .envs(shell_env(&ctx, |name| std::env::var_os(name)))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        #[cfg(unix)]
        command.process_group(0);
        let mut child = match command.spawn() {
            Ok(c) => c,
            Err(e) => return ProcessResult::fail(format!("shell: cannot start sh: {e}")),
        };
        let group = GroupKiller {
            pgid: child.id(),
            armed: true,
        };
        let logger = ctx.logger().clone();
        let stdout = child.stdout.take();
        let stderr = child.stderr.take();
        let out_log = logger.clone();
        let read_out = async move {
            let mut tail: VecDeque<String> = VecDeque::with_capacity(SHELL_RESULT_LINES);
            if let Some(out) = stdout {
                let mut lines = BufReader::new(out).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    if tail.len() == SHELL_RESULT_LINES {
                        tail.pop_front();
                    }
                    tail.push_back(line.clone());
                    out_log.info(line);
                }
            }
            tail
        };
        let read_err = async move {
            if let Some(err) = stderr {
                let mut lines = BufReader::new(err).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    logger.warn(line);
                }
            }
        };
        let (tail, (), status) = tokio::join!(read_out, read_err, child.wait());
        let mut group = group;
        group.armed = false;
        let mut result = Vec::from(tail).join("\n");
        truncate_at_char_boundary(&mut result, RESULT_PREFIX_BYTES);
        match status {
            Ok(s) if s.success() => ProcessResult::ok(result),
            Ok(s) => match s.code() {
                Some(code) => ProcessResult::fail(format!("exit code {code}: {result}")),
                None => ProcessResult::fail(format!("killed by a signal ({s}): {result}")),
            },
            Err(e) => ProcessResult::fail(format!("shell: waiting for sh failed: {e}")),
        }
    }
}

/// Kills the shell's process group when the task is dropped before the shell exited
/// (`kill_on_drop` alone would kill `sh` but not the commands it started).
struct GroupKiller {
    pgid: Option<u32>,
    armed: bool,
}

impl Drop for GroupKiller {
    fn drop(&mut self) {
        let (true, Some(pgid)) = (self.armed, self.pgid) else {
            return;
        };
        // No libc binding in this crate: `kill(1)` does it. tokio reaps the helper in the
        // background once it is dropped.
        let spawned = Command::new("kill")
            .arg("-KILL")
            .arg("--")
            .arg(format!("-{pgid}"))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn();
        if let Err(e) = spawned {
            tracing::warn!(pgid, error = %e, "cannot kill the shell's process group");
        }
    }
}

/// `http`'s params in JSON form.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HttpParams {
    url: String,
    #[serde(default)]
    method: Option<String>,
    #[serde(default)]
    body: Option<String>,
    #[serde(default)]
    headers: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    timeout_ms: Option<u64>,
}

/// `http`: one HTTP request. Registered by `WorkerBuilder::builtins` only when allowed
/// ([`DangerousBuiltin::Http`]). Params are a URL (GET) or JSON
/// `{"url", "method", "body", "headers", "timeout_ms"}`. Only `http://` (this build has no
/// TLS). A 2xx status succeeds, anything else fails; the result is the status and the start of
/// the body. Without `timeout_ms` the request is bounded by the instance's timeout.
#[derive(Debug, Clone)]
pub struct HttpProcessor {
    /// The shared client, or why it could not be built (reported by every run).
    client: Result<reqwest::Client, String>,
}

impl Default for HttpProcessor {
    fn default() -> Self {
        // `Client::new` panics when the client cannot be built; `build` says why instead.
        HttpProcessor {
            client: reqwest::Client::builder()
                .build()
                .map_err(|e| e.to_string()),
        }
    }
}

impl BasicProcessor for HttpProcessor {
    async fn process(&self, ctx: TaskContext) -> ProcessResult {
        let raw = ctx.params().trim();
        let params = if raw.starts_with('{') {
            match serde_json::from_str::<HttpParams>(raw) {
                Ok(p) => p,
                Err(e) => return ProcessResult::fail(format!("http: bad params: {e}")),
            }
        } else {
            HttpParams {
                url: raw.to_string(),
                method: None,
                body: None,
                headers: Default::default(),
                timeout_ms: None,
            }
        };
        if params.url.starts_with("https://") {
            return ProcessResult::fail(
                "http: https:// is not supported (this worker is built without TLS); use http://",
            );
        }
        if !params.url.starts_with("http://") {
            return ProcessResult::fail(format!("http: {:?} is not an http:// URL", params.url));
        }
        let method_name = params
            .method
            .as_deref()
            .unwrap_or("GET")
            .to_ascii_uppercase();
        let method = match reqwest::Method::from_bytes(method_name.as_bytes()) {
            Ok(m) => m,
            Err(_) => return ProcessResult::fail(format!("http: bad method {method_name:?}")),
        };
        let client = match &self.client {
            Ok(c) => c,
            Err(e) => return ProcessResult::fail(format!("http: no HTTP client: {e}")),
        };
        let mut request = client.request(method, &params.url);
        for (k, v) in &params.headers {
            request = request.header(k, v);
        }
        if let Some(body) = params.body {
            request = request.body(body);
        }
        if let Some(t) = params
            .timeout_ms
            .map(Duration::from_millis)
            .or(ctx.timeout())
        {
            request = request.timeout(t);
        }
        ctx.logger()
            .info(format!("http: {method_name} {}", params.url));
        let response = match request.send().await {
            Ok(r) => r,
            Err(e) => return ProcessResult::fail(format!("http: request failed: {e}")),
        };
        let status = response.status();
        let body = match response.bytes().await {
            Ok(b) => b,
            Err(e) => {
                return ProcessResult::fail(format!("http: {status}: reading body failed: {e}"))
            }
        };
        let mut text = String::from_utf8_lossy(&body).into_owned();
        truncate_at_char_boundary(&mut text, RESULT_PREFIX_BYTES);
        let message = format!("{status}: {text}");
        ctx.logger().info(format!("http: {status}"));
        if status.is_success() {
            ProcessResult::ok(message)
        } else {
            ProcessResult::fail(message)
        }
    }
}

/// `noop`: succeeds at once with an empty result (benchmarks).
#[derive(Debug, Default, Clone, Copy)]
pub struct NoopProcessor;

impl BasicProcessor for NoopProcessor {
    async fn process(&self, _ctx: TaskContext) -> ProcessResult {
        ProcessResult::ok("")
    }
}

/// `sleep`: params = milliseconds, or JSON `{"ms": N}`; sleeps (cancellably), then succeeds.
#[derive(Debug, Default, Clone, Copy)]
pub struct SleepProcessor;

#[derive(Debug, Deserialize)]
struct SleepParams {
    ms: u64,
}

impl BasicProcessor for SleepProcessor {
    async fn process(&self, ctx: TaskContext) -> ProcessResult {
        let raw = ctx.params().trim();
        let ms = if raw.starts_with('{') {
            serde_json::from_str::<SleepParams>(raw)
                .map(|p| p.ms)
                .map_err(|e| e.to_string())
        } else {
            raw.parse::<u64>().map_err(|e| e.to_string())
        };
        let ms = match ms {
            Ok(ms) => ms,
            Err(e) => {
                return ProcessResult::fail(format!(
                    "sleep: params must be milliseconds or {{\"ms\": N}}: {e}"
                ))
            }
        };
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(ms)) => ProcessResult::ok(format!("slept {ms} ms")),
            () = ctx.cancelled() => ProcessResult::fail("sleep: cancelled"),
        }
    }
}

/// Default `batch` of [`SumMrProcessor`].
pub const SUM_MR_DEFAULT_BATCH: u64 = 10_000;
/// Most subtasks [`SumMrProcessor`] accepts (`tasks`).
pub const SUM_MR_MAX_TASKS: u64 = 100_000_000;
/// Name of the subtasks [`SumMrProcessor`] maps.
pub const SUM_MR_TASK_NAME: &str = "SUM_ITEM";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SumMrParams {
    tasks: u64,
    #[serde(default)]
    batch: Option<u64>,
}

/// Why `sum_mr`'s params are unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SumMrParamsError {
    /// Not a JSON object with `tasks` (and optionally `batch`).
    #[error("sum_mr: params must be JSON like {{\"tasks\": 1000, \"batch\": 100}}: {0}")]
    Json(String),
    /// `tasks` out of range.
    #[error("sum_mr: \"tasks\" must be between 0 and {SUM_MR_MAX_TASKS}, got {0}")]
    Tasks(u64),
    /// `batch` is 0 or too large.
    #[error("sum_mr: \"batch\" must be between 1 and 1000000, got {0}")]
    Batch(u64),
}

/// `sum_mr`'s `(tasks, batch)` from its params text.
pub fn sum_mr_params(params: &str) -> Result<(u64, u64), SumMrParamsError> {
    let p: SumMrParams =
        serde_json::from_str(params).map_err(|e| SumMrParamsError::Json(e.to_string()))?;
    if p.tasks > SUM_MR_MAX_TASKS {
        return Err(SumMrParamsError::Tasks(p.tasks));
    }
    let batch = p.batch.unwrap_or(SUM_MR_DEFAULT_BATCH);
    if !(1..=1_000_000).contains(&batch) {
        return Err(SumMrParamsError::Batch(batch));
    }
    Ok((p.tasks, batch))
}

/// `sum_mr` (MAP_REDUCE): params `{"tasks": N, "batch": B}` (the instance params, else the
/// job params; `batch` defaults to [`SUM_MR_DEFAULT_BATCH`]). The root task maps N subtasks
/// in batches of B (content: the index as 8 little-endian bytes); each subtask returns its
/// index; reduce returns the sum, N·(N−1)/2, as the instance's result. A benchmark and a
/// self-test of the MapReduce machinery.
#[derive(Debug, Default, Clone, Copy)]
pub struct SumMrProcessor;

impl super::processor::MapProcessor for SumMrProcessor {
    async fn process(&self, ctx: super::processor::MapContext) -> ProcessResult {
        if ctx.is_root() {
            let (tasks, batch) = match sum_mr_params(ctx.params()) {
                Ok(p) => p,
                Err(e) => return ProcessResult::fail(e.to_string()),
            };
            let mut next = 0u64;
            while next < tasks {
                let end = next.saturating_add(batch).min(tasks);
                let contents = (next..end).map(|i| i.to_le_bytes().to_vec()).collect();
                if let Err(e) = ctx.map(SUM_MR_TASK_NAME, contents).await {
                    return ProcessResult::fail(format!("sum_mr: map failed at {next}: {e}"));
                }
                next = end;
            }
            return ProcessResult::ok(format!("mapped {tasks}"));
        }
        match <[u8; 8]>::try_from(ctx.task_content()) {
            Ok(b) => ProcessResult::ok(u64::from_le_bytes(b).to_string()),
            Err(_) => ProcessResult::fail(format!(
                "sum_mr: task content of {} bytes is not an index",
                ctx.task_content().len()
            )),
        }
    }
}

impl super::processor::MapReduceProcessor for SumMrProcessor {
    async fn reduce(
        &self,
        _ctx: TaskContext,
        mut results: super::processor::ReduceResults,
    ) -> ProcessResult {
        let mut sum: u128 = 0;
        let mut failed = 0u64;
        while let Some(r) = results.next().await {
            if r.name != SUM_MR_TASK_NAME {
                // The root: its failure (bad params, a refused map) is the instance's.
                if !r.success {
                    return ProcessResult::fail(r.result);
                }
                continue;
            }
            if !r.success {
                failed += 1;
                continue;
            }
            match r.result.parse::<u64>() {
                Ok(v) => sum += u128::from(v),
                Err(_) => failed += 1,
            }
        }
        if failed > 0 {
            return ProcessResult::fail(format!(
                "sum_mr: {failed} tasks failed; partial sum {sum}"
            ));
        }
        ProcessResult::ok(sum.to_string())
    }
}

#[cfg(test)]
mod sum_mr_tests {
    use super::*;

    fn check(params: &str, expected: Result<(u64, u64), &str>) {
        match (sum_mr_params(params), expected) {
            (Ok(got), Ok(want)) => assert_eq!(got, want, "{params}"),
            (Err(e), Err(needle)) => assert!(e.to_string().contains(needle), "{params}: {e}"),
            (got, want) => panic!("{params}: got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn sum_mr_params_table() {
        check(r#"{"tasks": 10, "batch": 3}"#, Ok((10, 3)));
        check(r#"{"tasks": 10}"#, Ok((10, SUM_MR_DEFAULT_BATCH)));
        check(r#"{"tasks": 0, "batch": 1}"#, Ok((0, 1)));
        check(r#"{"tasks": 10, "batch": 0}"#, Err("\"batch\" must be"));
        check(
            r#"{"tasks": 10, "batch": 1000001}"#,
            Err("\"batch\" must be"),
        );
        check(r#"{"tasks": 100000001}"#, Err("\"tasks\" must be"));
        check(r#"{"tasks": -1}"#, Err("params must be JSON"));
        check(r#"{"batch": 5}"#, Err("params must be JSON"));
        check(r#"{"tasks": 5, "extra": 1}"#, Err("params must be JSON"));
        check("", Err("params must be JSON"));
    }
}

#[cfg(test)]
mod shell_tests {
    use std::sync::Arc;

    use tokio::sync::mpsc;
    use tokio_util::sync::CancellationToken;

    use super::*;
    use crate::worker::logs::InstanceLogger;

    /// A context for instance 5 of job 9 with these params; its log lines go to the receiver.
    fn ctx(
        job_params: &str,
        instance_params: &str,
    ) -> (
        TaskContext,
        mpsc::Receiver<ferrojob_transport::message::LogEntry>,
    ) {
        let (tx, rx) = mpsc::channel(1024);
        let ctx = TaskContext {
            instance_id: 5,
            job_id: 9,
            job_params: Arc::from(job_params),
            instance_params: Arc::from(instance_params),
            workflow_instance_id: None,
            workflow_context: Arc::from(""),
            task_id: Arc::from("0"),
            attempt: 1,
            worker_address: Arc::from("127.0.0.1:7000"),
            timeout: None,
            logger: InstanceLogger::new(5, tx, Arc::default()),
            cancel: CancellationToken::new(),
        };
        (ctx, rx)
    }

    fn check(job: &str, run: &str, expected: Result<&str, &str>) {
        match (shell_command(job, run), expected) {
            (Ok(got), Ok(want)) => assert_eq!(got, want, "{job:?} / {run:?}"),
            (Err(e), Err(needle)) => {
                assert!(e.to_string().contains(needle), "{job:?} / {run:?}: {e}")
            }
            (got, want) => panic!("{job:?} / {run:?}: got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn the_command_is_the_jobs_unless_the_job_opts_in() {
        // A run's params never replace a plain command.
        check("echo job", "", Ok("echo job"));
        check("echo job", "rm -rf /tmp/x", Ok("echo job"));
        check("{ echo a; echo b; }", "x", Ok("{ echo a; echo b; }"));
        check(r#"{"command": "echo job"}"#, "curl evil", Ok("echo job"));
        check(
            r#"{"command": "echo job", "instance_params_as_command": false}"#,
            "curl evil",
            Ok("echo job"),
        );
        // The job's own opt-in: non-empty run params are the command.
        let opted = r#"{"command": "echo default", "instance_params_as_command": true}"#;
        check(opted, "echo from the run", Ok("echo from the run"));
        check(opted, "  ", Ok("echo default"));
        check(
            r#"{"command": "", "instance_params_as_command": true}"#,
            "echo only runs",
            Ok("echo only runs"),
        );
        // Nothing to run, or a JSON form that says something else.
        check("", "echo from the run", Err("empty command"));
        check("  ", "", Err("empty command"));
        check(r#"{"command": "x", "allow": true}"#, "", Err("JSON form"));
        check(r#"{"cmd": "x"}"#, "", Err("JSON form"));
    }

    #[test]
    fn the_child_environment_holds_no_worker_secret() {
        let (ctx, _rx) = ctx("env", "p=1");
        // A worker whose environment has everything, credentials included.
        let env = shell_env(&ctx, |name| Some(OsString::from(format!("worker-{name}"))));
        let names: Vec<&str> = env.iter().map(|(k, _)| k.as_str()).collect();
        let mut expected: Vec<&str> = SHELL_INHERITED_ENV.to_vec();
        expected.extend([
            "FERROJOB_INSTANCE_ID",
            "FERROJOB_JOB_ID",
            "FERROJOB_INSTANCE_PARAMS",
            "FERROJOB_TASK_ID",
        ]);
        assert_eq!(names, expected);
        let value = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        assert_eq!(value("FERROJOB_INSTANCE_PARAMS"), Some("p=1".into()));
        assert_eq!(value("FERROJOB_INSTANCE_ID"), Some("5".into()));
        assert_eq!(value("PATH"), Some("worker-PATH".into()));
        // A worker without PATH still finds `sh` and the usual tools.
        let bare = shell_env(&ctx, |_| None);
        assert_eq!(
            bare.iter()
                .find(|(k, _)| k == "PATH")
                .map(|(_, v)| v.clone()),
            Some(SHELL_DEFAULT_PATH.into())
        );
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn a_shell_child_sees_only_the_documented_variables() {
        // This test process has many variables (CARGO_*, RUST_*, ...): none may reach `env`.
        let (ctx, _rx) = ctx("env", "the-run-params");
        let r = ShellProcessor.process(ctx).await;
        assert!(r.success, "{}", r.message);
        let mut allowed: Vec<&str> = SHELL_INHERITED_ENV.to_vec();
        allowed.extend([
            "FERROJOB_INSTANCE_ID",
            "FERROJOB_JOB_ID",
            "FERROJOB_INSTANCE_PARAMS",
            "FERROJOB_TASK_ID",
            // Set by `sh` itself.
            "PWD",
            "SHLVL",
            "_",
            "OLDPWD",
        ]);
        let lines: Vec<&str> = r.message.lines().collect();
        assert!(
            lines.contains(&"FERROJOB_INSTANCE_PARAMS=the-run-params"),
            "{lines:?}"
        );
        for line in lines {
            let name = line.split('=').next().unwrap_or(line);
            assert!(allowed.contains(&name), "{name} reached the child: {line}");
        }
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn a_runs_params_reach_the_command_as_a_variable_not_as_code() {
        let (printing, _rx) = ctx(
            r#"printf '%s\n' "$FERROJOB_INSTANCE_PARAMS""#,
            "$(echo injected); echo injected",
        );
        let r = ShellProcessor.process(printing).await;
        assert!(r.success, "{}", r.message);
        assert_eq!(r.message, "$(echo injected); echo injected");
        let (empty, _rx) = ctx("", "echo from the run");
        let r = ShellProcessor.process(empty).await;
        assert!(!r.success);
        assert!(r.message.contains("empty command"), "{}", r.message);
    }

    #[test]
    fn dangerous_builtins_parse_by_name() {
        assert_eq!("shell".parse(), Ok(DangerousBuiltin::Shell));
        assert_eq!(" http ".parse(), Ok(DangerousBuiltin::Http));
        let err = "noop".parse::<DangerousBuiltin>().unwrap_err();
        assert!(err.to_string().contains("always registered"), "{err}");
        for d in DangerousBuiltin::ALL {
            assert_eq!(DangerousBuiltin::from_name(d.name()), Some(d));
        }
    }
}
