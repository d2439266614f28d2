//! `sum_mr`, the built-in MAP_REDUCE processor ([`SumMrProcessor`]): a benchmark and a
//! self-test of the MapReduce machinery.

use serde::Deserialize;

use crate::worker::processor::{ProcessResult, TaskContext};

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

impl crate::worker::processor::MapProcessor for SumMrProcessor {
    async fn process(&self, ctx: crate::worker::processor::MapContext) -> ProcessResult {
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

impl crate::worker::processor::MapReduceProcessor for SumMrProcessor {
    async fn reduce(
        &self,
        _ctx: TaskContext,
        mut results: crate::worker::processor::ReduceResults,
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
mod tests {
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
