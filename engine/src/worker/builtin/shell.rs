//! `shell`: runs a job's command with `sh -c` ([`ShellProcessor`]).
//!
//! # What runs, and with what
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
//! | `FERROJOB_TRIGGER_KEY` | what the run is for, the same for every attempt ([`TaskContext::trigger_key`]) |
//! | `FERROJOB_TRIGGER_TIME` | the run's logical trigger time, epoch ms |
//! | `FERROJOB_ATTEMPT` | the dispatch number, growing per trigger key ([`TaskContext::dispatch_attempt`]) |
//! | `FERROJOB_WORKFLOW_INSTANCE_ID` | a workflow node's workflow instance |
//! | `FERROJOB_WORKFLOW_CONTEXT` | a workflow node's context (a JSON object) |

use std::collections::VecDeque;
use std::ffi::OsString;

use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Command;

use super::output::{BoundedLines, Line, OutputCut, OutputLimits};
use super::RESULT_PREFIX_BYTES;
use crate::worker::logs::truncate_at_char_boundary;
use crate::worker::processor::{BasicProcessor, ProcessResult, TaskContext};

/// Lines of standard output kept as the shell processor's result.
pub const SHELL_RESULT_LINES: usize = 20;

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
    own("FERROJOB_TRIGGER_KEY", ctx.trigger_key().to_string());
    own("FERROJOB_TRIGGER_TIME", ctx.trigger_time().to_string());
    own("FERROJOB_ATTEMPT", ctx.dispatch_attempt().to_string());
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
/// log, each stream bounded by [`OutputLimits`] (a line longer than the bound is cut and
/// marked, lines beyond the total are not logged but counted in one closing line; see
/// [`super::output`]);
/// exit status 0 succeeds with the last [`SHELL_RESULT_LINES`] lines of standard output
/// as the result, anything else fails with the exit code. The command runs in its own process
/// group; on stop or timeout the whole group is killed (SIGKILL), children included. A
/// workflow node appends to the context when its result (the output above) is a JSON object.
///
/// Registered by `WorkerBuilder::builtins` only when allowed
/// ([`DangerousBuiltin::Shell`](super::DangerousBuiltin::Shell)).
#[derive(Debug, Default, Clone, Copy)]
pub struct ShellProcessor {
    limits: OutputLimits,
}

impl ShellProcessor {
    /// A shell processor whose output streams are read with `limits` (the default:
    /// [`OutputLimits::default`]).
    pub fn with_limits(limits: OutputLimits) -> Self {
        ShellProcessor { limits }
    }
}

/// Reads `pipe` to its end through a [`BoundedLines`] with `limits`, giving each line to
/// `emit`; a read error ends the stream like its end does.
async fn read_lines(
    pipe: Option<impl AsyncRead + Unpin>,
    limits: OutputLimits,
    mut emit: impl FnMut(Line),
) -> OutputCut {
    let mut split = BoundedLines::new(limits);
    if let Some(mut pipe) = pipe {
        let mut buf = vec![0u8; READ_CHUNK];
        loop {
            match pipe.read(&mut buf).await {
                Ok(0) => break,
                Ok(n) => split.push(buf.get(..n).unwrap_or_default(), &mut emit),
                Err(e) => {
                    tracing::debug!(error = %e, "reading a shell child's output failed");
                    break;
                }
            }
        }
    }
    split.finish(&mut emit)
}

/// Bytes read from a child's pipe at a time.
const READ_CHUNK: usize = 8 * 1024;

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
        let limits = self.limits;
        let read_out = async move {
            let mut tail: VecDeque<String> = VecDeque::with_capacity(SHELL_RESULT_LINES);
            let cut = read_lines(stdout, limits, |line| {
                if tail.len() == SHELL_RESULT_LINES {
                    tail.pop_front();
                }
                match line {
                    Line::Logged(text) => {
                        tail.push_back(text.clone());
                        out_log.info(text);
                    }
                    Line::Unlogged(text) => tail.push_back(text),
                }
            })
            .await;
            if let Some(summary) = cut.summary() {
                out_log.warn(summary);
            }
            (tail, cut)
        };
        let read_err = async move {
            let cut = read_lines(stderr, limits, |line| {
                if let Line::Logged(text) = line {
                    logger.warn(text);
                }
            })
            .await;
            if let Some(summary) = cut.summary() {
                logger.warn(format!("stderr {summary}"));
            }
            cut
        };
        let ((tail, out_cut), err_cut, status) = tokio::join!(read_out, read_err, child.wait());
        for (stream, cut) in [("stdout", out_cut), ("stderr", err_cut)] {
            if !cut.is_empty() {
                tracing::info!(
                    instance = ctx.instance_id(),
                    stream,
                    long_lines = cut.long_lines,
                    lines_dropped = cut.lines_dropped,
                    bytes_dropped = cut.bytes_dropped,
                    "shell output cut to its bounds"
                );
            }
        }
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

#[cfg(test)]
mod tests {
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
            trigger_key: Arc::from("job-9-at-1000"),
            trigger_time: 1000,
            dispatch_attempt: 2,
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
            "FERROJOB_TRIGGER_KEY",
            "FERROJOB_TRIGGER_TIME",
            "FERROJOB_ATTEMPT",
        ]);
        assert_eq!(names, expected);
        let value = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        assert_eq!(value("FERROJOB_INSTANCE_PARAMS"), Some("p=1".into()));
        assert_eq!(value("FERROJOB_INSTANCE_ID"), Some("5".into()));
        assert_eq!(value("FERROJOB_TRIGGER_KEY"), Some("job-9-at-1000".into()));
        assert_eq!(value("FERROJOB_TRIGGER_TIME"), Some("1000".into()));
        assert_eq!(value("FERROJOB_ATTEMPT"), Some("2".into()));
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
        let r = ShellProcessor::default().process(ctx).await;
        assert!(r.success, "{}", r.message);
        let mut allowed: Vec<&str> = SHELL_INHERITED_ENV.to_vec();
        allowed.extend([
            "FERROJOB_INSTANCE_ID",
            "FERROJOB_JOB_ID",
            "FERROJOB_INSTANCE_PARAMS",
            "FERROJOB_TASK_ID",
            "FERROJOB_TRIGGER_KEY",
            "FERROJOB_TRIGGER_TIME",
            "FERROJOB_ATTEMPT",
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
        let r = ShellProcessor::default().process(printing).await;
        assert!(r.success, "{}", r.message);
        assert_eq!(r.message, "$(echo injected); echo injected");
        let (empty, _rx) = ctx("", "echo from the run");
        let r = ShellProcessor::default().process(empty).await;
        assert!(!r.success);
        assert!(r.message.contains("empty command"), "{}", r.message);
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn output_beyond_the_bounds_is_cut_and_marked() {
        // One 100 000-byte line, then a thousand short ones.
        let (ctx, mut rx) = ctx(
            "head -c 100000 /dev/zero | tr '\\0' x; echo; seq 1 1000",
            "",
        );
        let limits = OutputLimits {
            max_line_bytes: 100,
            max_output_bytes: 1000,
        };
        let r = ShellProcessor::with_limits(limits).process(ctx).await;
        assert!(r.success, "{}", r.message);
        // The result is still the output's last lines, past the logging bound.
        assert!(r.message.ends_with("999\n1000"), "{}", r.message);
        rx.close();
        let mut lines = Vec::new();
        while let Some(entry) = rx.recv().await {
            lines.push(entry.content);
        }
        let first = lines.first().cloned().unwrap_or_default();
        assert_eq!(
            first,
            format!("{} … [line cut: 99900 more bytes]", "x".repeat(100))
        );
        let last = lines.last().cloned().unwrap_or_default();
        assert!(last.starts_with("[output cut: "), "{last}");
        let logged: usize = lines.iter().skip(1).rev().skip(1).map(|l| l.len()).sum();
        assert!(100 + logged <= 1000, "{logged} bytes logged");
        assert!(lines.len() < 1000, "{} lines logged", lines.len());
    }
}
