//! The domain model shared by every part of the engine: the instance lifecycle and how a job
//! runs. (Identifiers are in [`crate::ids`].)
//!
//! The words follow PowerJob's: a *job* says what to run and when; each run of a job is a
//! *job instance*, identified by an [`InstanceId`](crate::ids::InstanceId) and moving through
//! [`InstanceStatus`].

use serde::{Deserialize, Serialize};

/// Where a job instance is in its life. The numeric codes are PowerJob's, so that tools that
/// know PowerJob read ours the same way.
///
/// ```text
/// WAITING_DISPATCH ──► WAITING_WORKER_RECEIVE ──► RUNNING ──► SUCCEED | FAILED
///        │                                           │
///        └──► CANCELED                               └──► STOPPED
/// ```
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[rkyv(derive(Debug, PartialEq, Eq))]
#[non_exhaustive]
pub enum InstanceStatus {
    /// Created, not yet handed to a worker.
    WaitingDispatch,
    /// Sent to a worker that has not confirmed it yet.
    WaitingWorkerReceive,
    /// A processor is working on it.
    Running,
    /// Finished without success (after every retry).
    Failed,
    /// Finished successfully.
    Succeed,
    /// Canceled before it was dispatched.
    Canceled,
    /// Stopped while it ran.
    Stopped,
}

impl InstanceStatus {
    /// Every status, in PowerJob code order.
    pub const ALL: [InstanceStatus; 7] = [
        InstanceStatus::WaitingDispatch,
        InstanceStatus::WaitingWorkerReceive,
        InstanceStatus::Running,
        InstanceStatus::Failed,
        InstanceStatus::Succeed,
        InstanceStatus::Canceled,
        InstanceStatus::Stopped,
    ];

    /// PowerJob's numeric code of this status.
    pub fn code(self) -> u8 {
        match self {
            InstanceStatus::WaitingDispatch => 1,
            InstanceStatus::WaitingWorkerReceive => 2,
            InstanceStatus::Running => 3,
            InstanceStatus::Failed => 4,
            InstanceStatus::Succeed => 5,
            InstanceStatus::Canceled => 9,
            InstanceStatus::Stopped => 10,
        }
    }

    /// Whether no further transition can happen.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            InstanceStatus::Failed
                | InstanceStatus::Succeed
                | InstanceStatus::Canceled
                | InstanceStatus::Stopped
        )
    }
}

/// How one instance of a job is split into tasks.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[rkyv(derive(Debug, PartialEq, Eq))]
#[non_exhaustive]
pub enum ExecuteType {
    /// One task on one worker (the default).
    #[default]
    Standalone,
    /// One task on every eligible worker.
    Broadcast,
    /// The root task maps subtasks, spread over workers.
    Map,
    /// MAP plus a final reduce over every task's result.
    MapReduce,
}

/// How the server picks the worker(s) for an instance.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[rkyv(derive(Debug, PartialEq, Eq))]
#[non_exhaustive]
pub enum DispatchStrategy {
    /// The eligible worker with the best health score (the default).
    #[default]
    HealthFirst,
    /// A uniformly random eligible worker.
    Random,
    /// Eligible workers in turn, per job.
    RoundRobin,
    /// Only the job's designated workers (by tag or address).
    Specify,
}

/// Severity of a line of an instance's log (stored by the server, listed by the API).
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[rkyv(derive(Debug, PartialEq, Eq))]
pub enum LogLevel {
    /// Debug.
    Debug,
    /// Info.
    Info,
    /// Warning.
    Warn,
    /// Error.
    Error,
}

impl LogLevel {
    /// INFO, the level of a job that sets none.
    pub fn info() -> LogLevel {
        LogLevel::Info
    }

    /// Whether this is INFO (the default, omitted from job bodies).
    pub fn is_info(&self) -> bool {
        *self == LogLevel::Info
    }
}

/// Where a job's log lines go: PowerJob's log types, honoured by the worker.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[rkyv(derive(Debug, PartialEq, Eq))]
pub enum LogType {
    /// Shipped to the server and listed by the log API (the default).
    #[default]
    Online,
    /// Written to a rotating file on the worker (`ferrojob worker local-log` reads it).
    Local,
    /// Printed on the worker's stdout, one line per log line, for container log collectors.
    Stdout,
    /// Dropped at the worker.
    Null,
}

/// Most structured fields one log line keeps; more are dropped.
pub const MAX_LOG_FIELDS: usize = 16;
/// Longest log field key, in bytes (longer keys are cut on a character boundary).
pub const MAX_LOG_FIELD_KEY_BYTES: usize = 64;
/// Longest log field value, in bytes (longer values are cut on a character boundary).
pub const MAX_LOG_FIELD_VALUE_BYTES: usize = 1024;

impl LogType {
    /// Whether this is ONLINE (the default, omitted from job bodies).
    pub fn is_online(&self) -> bool {
        *self == LogType::Online
    }
}

/// Longest `description` of a job or workflow, in bytes.
pub const MAX_DESCRIPTION_LEN: usize = 4096;
/// Most `tags` of one job or workflow.
pub const MAX_TAGS: usize = 32;
/// Longest tag, in bytes.
pub const MAX_TAG_LEN: usize = 64;

/// Checks the organising labels of a job or workflow: a `description` of at most
/// [`MAX_DESCRIPTION_LEN`] bytes, and at most [`MAX_TAGS`] distinct `tags`, each 1 to
/// [`MAX_TAG_LEN`] bytes with no control character, no comma (the CLI splits on commas) and no
/// space at either end (tags are compared exactly, so `" x"` would never match `x`). The error
/// is `(field, reason)`.
pub fn check_labels(description: &str, tags: &[String]) -> Result<(), (&'static str, String)> {
    if description.len() > MAX_DESCRIPTION_LEN {
        return Err((
            "description",
            format!(
                "at most {MAX_DESCRIPTION_LEN} bytes, got {}",
                description.len()
            ),
        ));
    }
    if tags.len() > MAX_TAGS {
        return Err((
            "tags",
            format!("at most {MAX_TAGS} tags, got {}", tags.len()),
        ));
    }
    for (i, tag) in tags.iter().enumerate() {
        if tag.is_empty() || tag.len() > MAX_TAG_LEN {
            return Err((
                "tags",
                format!("each tag is 1 to {MAX_TAG_LEN} bytes, got {}", tag.len()),
            ));
        }
        if tag.chars().any(|c| c.is_control() || c == ',') {
            return Err(("tags", format!("{tag:?}: no control characters or commas")));
        }
        if tag.trim() != tag {
            return Err(("tags", format!("{tag:?}: no spaces at either end")));
        }
        if tags.iter().take(i).any(|t| t == tag) {
            return Err(("tags", format!("{tag:?} appears twice")));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_codes_are_powerjobs() {
        let all = [
            (InstanceStatus::WaitingDispatch, 1, false),
            (InstanceStatus::WaitingWorkerReceive, 2, false),
            (InstanceStatus::Running, 3, false),
            (InstanceStatus::Failed, 4, true),
            (InstanceStatus::Succeed, 5, true),
            (InstanceStatus::Canceled, 9, true),
            (InstanceStatus::Stopped, 10, true),
        ];
        for (status, code, fin) in all {
            assert_eq!(status.code(), code, "{status:?}");
            assert_eq!(status.is_final(), fin, "{status:?}");
        }
        assert_eq!(
            serde_json::to_string(&InstanceStatus::WaitingWorkerReceive).unwrap(),
            "\"WAITING_WORKER_RECEIVE\""
        );
        assert_eq!(
            serde_json::to_string(&ExecuteType::MapReduce).unwrap(),
            "\"MAP_REDUCE\""
        );
        assert_eq!(
            serde_json::to_string(&DispatchStrategy::HealthFirst).unwrap(),
            "\"HEALTH_FIRST\""
        );
    }

    #[test]
    fn labels() {
        let tags = |t: &[&str]| t.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(check_labels("", &[]).is_ok());
        assert!(check_labels("nightly ETL", &tags(&["etl", "team:data", "été"])).is_ok());
        let long = "x".repeat(MAX_DESCRIPTION_LEN + 1);
        assert_eq!(check_labels(&long, &[]).unwrap_err().0, "description");
        let cases: &[&[&str]] = &[
            &[""],
            &["a,b"],
            &["a\nb"],
            &[" a"],
            &["a "],
            &["a", "b", "a"],
        ];
        for t in cases {
            assert_eq!(check_labels("", &tags(t)).unwrap_err().0, "tags", "{t:?}");
        }
        let too_long = "t".repeat(MAX_TAG_LEN + 1);
        assert!(check_labels("", &[too_long]).is_err());
        let many: Vec<String> = (0..=MAX_TAGS).map(|i| format!("t{i}")).collect();
        assert!(check_labels("", &many).is_err());
        assert!(check_labels("", &many[..MAX_TAGS]).is_ok());
    }
}
