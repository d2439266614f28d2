//! Built-in processors, registered by `WorkerBuilder::builtins`: `noop`, `sleep` and the
//! MAP_REDUCE `sum_mr` always; `shell` ([`ShellProcessor`], see [`shell`]) and `http` only
//! when the operator opts in ([`DangerousBuiltin`], `WorkerConfig::allow_processors`,
//! `ferrojob-worker --allow-processor NAME`). `http`, `noop`, `sleep` and `sum_mr` read
//! [`TaskContext::params`] (the instance params, else the job params); `shell` runs the job's
//! params only.

pub use crate::https::destination;
mod http;
pub mod output;
pub mod shell;
mod sum_mr;

use std::time::Duration;

use serde::Deserialize;

use super::processor::{BasicProcessor, ProcessResult, TaskContext};

pub use self::http::HttpProcessor;
pub use destination::{AllowedDestination, DestinationPolicy};
pub use output::{OutputLimits, DEFAULT_MAX_LINE_BYTES, DEFAULT_MAX_OUTPUT_BYTES};
pub use shell::{
    shell_command, shell_env, ShellCommandError, ShellProcessor, SHELL_DEFAULT_PATH,
    SHELL_INHERITED_ENV, SHELL_RESULT_LINES,
};
pub use sum_mr::{
    sum_mr_params, SumMrParamsError, SumMrProcessor, SUM_MR_DEFAULT_BATCH, SUM_MR_MAX_TASKS,
    SUM_MR_TASK_NAME,
};

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

#[cfg(test)]
mod tests {
    use super::*;

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
