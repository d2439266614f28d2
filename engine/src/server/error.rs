//! [`RepoError`]: everything the server's repository and its records can fail with.

use ferrojob_store::StoreError;

use crate::model::InstanceStatus;

/// Everything a [`Repo`](super::Repo) operation or a record's validation or transition can
/// fail with. Each variant names what it concerns (table, key, field, id) so that an operator
/// or an API client can act on it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RepoError {
    /// No such app, job or instance.
    #[error("{what} {id} does not exist")]
    NotFound {
        /// `"app"`, `"job"` or `"instance"`.
        what: &'static str,
        /// The id (or the name, for an app looked up by name) that was asked for.
        id: String,
    },
    /// A unique name is already taken (app names are unique).
    #[error("{what} named {name:?} already exists")]
    Conflict {
        /// `"app"`.
        what: &'static str,
        /// The name asked for.
        name: String,
    },
    /// A field of a record is out of range; `field` is the API's field name.
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// The field, as named in the OpenAPI body (`concurrency`, `time_expression`, ...).
        field: &'static str,
        /// Why it was refused, with the accepted range.
        reason: String,
    },
    /// A stored value (or key) is not a valid record of its table: the store returned bytes
    /// this version cannot read. Nothing was changed.
    #[error("corrupt record in table {table:?} at key {key}: {reason}")]
    Corrupt {
        /// The table.
        table: &'static str,
        /// The key, in hex.
        key: String,
        /// What is wrong (unknown format version, failed validation, bad key length).
        reason: String,
    },
    /// The store failed (I/O, poisoned after an I/O failure, closed, limits).
    #[error("store error: {0}")]
    Store(#[from] StoreError),
    /// The database failed (connection lost, statement refused, schema newer than this
    /// version): the write was not made, or the read not answered.
    #[error("database error: {0}")]
    Database(String),
    /// A write of a cluster's partition this server does not hold at the epoch the write
    /// was made under (it was lost, released or taken by another server; `epoch` 0: not held
    /// when the write was submitted). Nothing of it was committed; the partition's owner has
    /// the state.
    #[error(
        "partition {partition} is not held by this server at epoch {epoch}: the write was refused"
    )]
    Fenced {
        /// The partition written.
        partition: u16,
        /// The epoch the write was made under (0: none).
        epoch: u64,
    },
    /// A workflow instance (or another record that runs) has not finished, and the action
    /// needs it finished (a deletion).
    #[error("{what} {id} has not finished: stop it first")]
    Unfinished {
        /// `"workflow instance"`.
        what: &'static str,
        /// Its id.
        id: u64,
    },
    /// An instance cannot go from its current status by this action.
    #[error("instance {instance} cannot {action} while {from:?}")]
    IllegalTransition {
        /// The instance.
        instance: u64,
        /// Its current status.
        from: InstanceStatus,
        /// What was attempted (`"cancel"`, `"stop"`, `"report RUNNING"`, ...).
        action: &'static str,
    },
}

impl RepoError {
    pub(crate) fn invalid(field: &'static str, reason: impl Into<String>) -> RepoError {
        RepoError::Invalid {
            field,
            reason: reason.into(),
        }
    }

    pub(crate) fn corrupt(table: &'static str, key: &[u8], reason: impl Into<String>) -> Self {
        RepoError::Corrupt {
            table,
            key: hex(key),
            reason: reason.into(),
        }
    }

    pub(crate) fn not_found(what: &'static str, id: impl ToString) -> RepoError {
        RepoError::NotFound {
            what,
            id: id.to_string(),
        }
    }
}

/// Lower-case hex of at most the first 64 bytes of `key` (keys are short; names are capped).
pub(crate) fn hex(key: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(key.len().min(64) * 2);
    for b in key.iter().take(64) {
        let _ = write!(s, "{b:02x}");
    }
    if key.len() > 64 {
        s.push_str("...");
    }
    s
}
