//! Built-in processors, registered by `WorkerBuilder::builtins`: `shell`, `http`, `noop`,
//! `sleep`, and the MAP_REDUCE `sum_mr`. Each reads [`TaskContext::params`] (the instance params, else the job params).

use std::collections::VecDeque;
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

/// `shell`: runs the params with `sh -c`. Standard output and error lines go to the instance
/// log; exit status 0 succeeds with the last [`SHELL_RESULT_LINES`] lines of standard output
/// as the result, anything else fails with the exit code. The command runs in its own process
/// group; on stop or timeout the whole group is killed (SIGKILL), children included.
///
/// Environment: `FERROJOB_INSTANCE_ID`, `FERROJOB_JOB_ID`, and for a workflow node
/// `FERROJOB_WORKFLOW_INSTANCE_ID` and `FERROJOB_WORKFLOW_CONTEXT` (the context as a JSON
/// object). A node appends to the context when its result (the output above) is a JSON object.
#[derive(Debug, Default, Clone, Copy)]
pub struct ShellProcessor;

impl BasicProcessor for ShellProcessor {
    async fn process(&self, ctx: TaskContext) -> ProcessResult {
        let script = ctx.params().to_string();
        if script.trim().is_empty() {
            return ProcessResult::fail("shell: empty command (set the job or instance params)");
        }
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(&script)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .env("FERROJOB_INSTANCE_ID", ctx.instance_id().to_string())
            .env("FERROJOB_JOB_ID", ctx.job_id().to_string())
            .kill_on_drop(true);
        if let Some(wf) = ctx.workflow_instance_id() {
            command
                .env("FERROJOB_WORKFLOW_INSTANCE_ID", wf.to_string())
                .env("FERROJOB_WORKFLOW_CONTEXT", ctx.workflow_context());
        }
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

/// `http`: one HTTP request. Params are a URL (GET) or JSON
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
