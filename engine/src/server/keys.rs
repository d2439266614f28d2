//! The key layout: which table holds what, and how keys are built.
//!
//! Ids are `u64` written big-endian, so byte order is id order and a prefix scan lists one
//! parent's children. Index rows have empty values: the key says everything.
//!
//! | table       | key                                  | value              | purpose |
//! |-------------|--------------------------------------|--------------------|---------|
//! | `meta`      | counter name (`next_app_id`, ...)    | u64 BE             | id counters: app and job ids written in the batch that uses the id; instance ids and log sequence numbers reserved ahead in blocks of [`ID_BLOCK`] |
//! | `apps`      | app id (8)                           | [`AppRecord`]      | apps |
//! | `app_names` | app name (UTF-8, 1..=128 bytes)      | app id (8)         | unique names, lookup by name |
//! | `jobs`      | job id (8)                           | [`JobRecord`]      | jobs |
//! | `app_jobs`  | app id (8) ++ job id (8)             | empty              | an app's jobs, oldest first |
//! | `triggers`  | job id (8)                           | [`TriggerRecord`]  | next trigger time and run counter |
//! | `instances` | instance id (8)                      | [`InstanceRecord`] | instances |
//! | `app_insts` | app id (8) ++ !instance id (8)       | empty              | an app's instances, newest first |
//! | `job_insts` | job id (8) ++ !instance id (8)       | empty              | a job's instances, newest first |
//! | `active`    | instance id (8)                      | empty              | non-final instances, for restart |
//! | `delayed`   | instance id (8)                      | [`DelayedRun`]     | pending delayed API runs |
//! | `logs`      | instance id (8) ++ log seq (8)       | [`LogLine`]        | an instance's log, in append order |
//!
//! The tables of API tokens and rotated secrets (`api_tokens`, `app_tokens`,
//! `app_prev_secrets`) are in `token_repo.rs`, the workflow and alarm tables in their files,
//! job versions and the audit trail (`job_versions`, `audit`) in `history.rs`, the kept
//! `Idempotency-Key`s (`idempotency`) in `idempotency_repo.rs`.
//!
//! `!id` is `u64::MAX - id`: instance index rows sort newest first, so the first page of a
//! listing is the most recent runs.
//!
//! [`ID_BLOCK`]: super::ID_BLOCK
//! [`AppRecord`]: super::AppRecord
//! [`JobRecord`]: super::JobRecord
//! [`TriggerRecord`]: super::TriggerRecord
//! [`InstanceRecord`]: super::InstanceRecord
//! [`DelayedRun`]: super::DelayedRun
//! [`LogLine`]: super::LogLine

use super::error::RepoError;

/// Id counters.
pub const META: &str = "meta";
/// Apps by id.
pub const APPS: &str = "apps";
/// App ids by name.
pub const APP_NAMES: &str = "app_names";
/// Jobs by id.
pub const JOBS: &str = "jobs";
/// Index: app id ++ job id.
pub const APP_JOBS: &str = "app_jobs";
/// Next trigger and run counter by job id.
pub const TRIGGERS: &str = "triggers";
/// Instances by id.
pub const INSTANCES: &str = "instances";
/// Index: app id ++ !instance id.
pub const APP_INSTANCES: &str = "app_insts";
/// Index: job id ++ !instance id.
pub const JOB_INSTANCES: &str = "job_insts";
/// Index: non-final instance ids.
pub const ACTIVE: &str = "active";
/// Pending delayed API runs by instance id.
pub const DELAYED: &str = "delayed";
/// Log lines: instance id ++ log sequence number.
pub const LOGS: &str = "logs";

/// `meta` key of the next app id.
pub const NEXT_APP_ID: &[u8] = b"next_app_id";
/// `meta` key of the next job id.
pub const NEXT_JOB_ID: &[u8] = b"next_job_id";
/// `meta` key of the next instance id.
pub const NEXT_INSTANCE_ID: &[u8] = b"next_instance_id";
/// `meta` key of the next log sequence number.
pub const NEXT_LOG_SEQ: &[u8] = b"next_log_seq";

/// An 8-byte big-endian id key.
pub fn id(id: u64) -> [u8; 8] {
    id.to_be_bytes()
}

/// Two ids, big-endian: `parent ++ child`.
pub fn pair(parent: u64, child: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    let (a, b) = k.split_at_mut(8);
    a.copy_from_slice(&parent.to_be_bytes());
    b.copy_from_slice(&child.to_be_bytes());
    k
}

/// An instance index key: `parent ++ (u64::MAX - instance)`, so newer instances sort first.
pub fn newest_first(parent: u64, instance: u64) -> [u8; 16] {
    pair(parent, u64::MAX - instance)
}

/// Reads an 8-byte big-endian id key.
pub fn read_id(table: &'static str, key: &[u8]) -> Result<u64, RepoError> {
    let bytes: [u8; 8] = key
        .try_into()
        .map_err(|_| RepoError::corrupt(table, key, "key is not an 8-byte id"))?;
    Ok(u64::from_be_bytes(bytes))
}

/// Reads the second id of a 16-byte pair key.
pub fn read_child(table: &'static str, key: &[u8]) -> Result<u64, RepoError> {
    match key.get(8..) {
        Some(child) if key.len() == 16 => read_id(table, child),
        _ => Err(RepoError::corrupt(
            table,
            key,
            "key is not a 16-byte id pair",
        )),
    }
}

/// Reads the instance id of a [`newest_first`] key.
pub fn read_newest_first(table: &'static str, key: &[u8]) -> Result<u64, RepoError> {
    read_child(table, key).map(|inv| u64::MAX - inv)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_order_is_id_order() {
        assert!(id(1) < id(2));
        assert!(id(255) < id(256));
        assert!(pair(1, u64::MAX) < pair(2, 0));
        assert!(newest_first(7, 10) < newest_first(7, 9));
        assert_eq!(read_newest_first("t", &newest_first(7, 10)).unwrap(), 10);
        assert_eq!(read_child("t", &pair(3, 4)).unwrap(), 4);
        assert!(read_id("t", b"short").is_err());
        assert!(read_child("t", &[0; 15]).is_err());
    }
}
