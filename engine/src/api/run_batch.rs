//! `POST /v1/apps/{app}/jobs/{id}/runs`: many API runs of one job in one request, written in
//! one durable batch.
//!
//! Each run has the fields of the single run route's body ([`RunJob`]: `params`,
//! `delay_ms`) and is checked the same way. The batch is all or nothing: a run that would be
//! refused on its own (a `delay_ms` too long, the overlap policy SKIP at `max_instances`)
//! refuses the whole batch and no instance is created. The answer lists the instance ids in
//! the order of the runs; every instance is durable when it is sent.

use serde::{Deserialize, Serialize};

use super::error::{ApiError, ErrorCode};
use super::types::RunJob;
use crate::ids::InstanceId;

/// Most runs in one [`RunJobBatch`]; a larger batch is refused with 413
/// `payload_too_large`.
pub const MAX_RUN_BATCH: usize = 1000;

/// `POST /v1/apps/{app}/jobs/{id}/runs` body.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunJobBatch {
    /// The runs, 1 to [`MAX_RUN_BATCH`]; each as the body of `POST .../run`.
    pub runs: Vec<RunJob>,
}

impl RunJobBatch {
    /// `n` runs with no params and no delay.
    pub fn of(n: usize) -> RunJobBatch {
        RunJobBatch {
            runs: vec![RunJob::default(); n],
        }
    }

    /// Refuses an empty batch (400) and one of more than [`MAX_RUN_BATCH`] runs (413).
    pub fn check(&self) -> Result<(), ApiError> {
        if self.runs.is_empty() {
            return Err(ApiError::invalid("runs", "at least one run"));
        }
        if self.runs.len() > MAX_RUN_BATCH {
            return Err(ApiError::new(
                ErrorCode::PayloadTooLarge,
                format!(
                    "runs: at most {MAX_RUN_BATCH} runs in one request, got {}; split the batch",
                    self.runs.len()
                ),
            ));
        }
        Ok(())
    }
}

/// `POST /v1/apps/{app}/jobs/{id}/runs` answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunBatchCreated {
    /// One instance per run, in the order of the request's runs (all durable when this
    /// answer is sent).
    pub instance_ids: Vec<InstanceId>,
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_is_bounded_on_both_sides() {
        assert_eq!(
            RunJobBatch::of(0).check().map_err(|e| e.code),
            Err(ErrorCode::InvalidArgument)
        );
        assert!(RunJobBatch::of(1).check().is_ok());
        assert!(RunJobBatch::of(MAX_RUN_BATCH).check().is_ok());
        assert_eq!(
            RunJobBatch::of(MAX_RUN_BATCH + 1)
                .check()
                .map_err(|e| e.code),
            Err(ErrorCode::PayloadTooLarge)
        );
    }

    #[test]
    fn a_run_has_the_single_routes_fields() {
        let b: RunJobBatch =
            serde_json::from_str(r#"{"runs":[{},{"params":"p","delay_ms":5}]}"#).unwrap();
        assert_eq!(b.runs.len(), 2);
        assert_eq!(b.runs[1].params, "p");
        assert_eq!(b.runs[1].delay_ms, 5);
        assert!(serde_json::from_str::<RunJobBatch>(r#"{"runs":[{"x":1}]}"#).is_err());
        assert!(serde_json::from_str::<RunJobBatch>(r#"{"runs":[],"more":1}"#).is_err());
    }
}
