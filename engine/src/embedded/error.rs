//! Errors of the embedded scheduler's API.

use crate::ids::JobId;

/// Why a call to the embedded [`Scheduler`](super::Scheduler) failed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum SchedulerError {
    /// No job with this id is registered (it was never registered, or was removed).
    #[error("{0} is not registered with this scheduler")]
    UnknownJob(JobId),
    /// The scheduler has been shut down and takes no more calls.
    #[error("the scheduler has shut down")]
    ShutDown,
    /// The job's specification cannot be scheduled.
    #[error("invalid job '{name}': {reason}")]
    InvalidJob {
        /// The job's name.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
}
