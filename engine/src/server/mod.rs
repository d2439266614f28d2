//! The ferrojob server: its durable state (the records and the repository in this module's
//! files), the conversions between records and the API's types ([`api_convert`]), and its
//! runtime ([`runtime`], [`ServerCore`]).
//!
//! The repository files are a library with no network, no clock and no tasks of their own:
//! the runtime passes `now` in and awaits the returned [`Commit`]. [`runtime`] is the part with
//! sockets, tokio tasks and a [`Clock`](crate::clock::Clock).
//!
//! ```text
//!   server core ──(records, now)──► Repo ──(Batch of rkyv values)──► Arc<dyn Store>
//!                ◄──(Commit<T>)────        ◄──(CommitHandle)──────    MemoryStore | LogStore
//! ```
//!
//! - [`records`]: [`AppRecord`], [`JobRecord`] (with its defaults and validation),
//!   [`TriggerRecord`], [`DelayedRun`], [`LogLine`].
//! - [`instance`]: [`InstanceRecord`] and its lifecycle transitions.
//! - [`keys`]: tables and key layout (the table is in its module docs).
//! - [`Repository`]: the trait every implementation of the repository keeps, and [`Repo`],
//!   the handle the rest of the server holds (`repository/`, with the forwarding of
//!   [`LogRepo`] in `repository/log_repo.rs`).
//! - [`repo`]: [`LogRepo`], the log store's implementation: atomic writes, apps, jobs, logs,
//!   restart [`LogRepo::load`]; `instance_repo.rs` its instances (fire, listings, deletion).
//! - `pg` (feature `postgres`): `PgRepo`, the implementation on PostgreSQL.
//! - [`workflow_repo`]: workflows, workflow instances and node links (types, tables,
//!   workflows); `wf_instance_repo.rs` the workflow instances' reads and writes.
//! - [`token_repo`]: API tokens, the previous worker secret of a rotation, app deletion.
//! - [`alarm_repo`]: the alarm outbox with its delivery history, and the apps' channels.
//! - [`calendar_repo`]: the apps' calendars.
//! - [`api_convert`]: records into API views, job bodies into records, repository errors
//!   into API errors.
//! - `codec`: the versioned, validated value encoding.
//! - [`runtime`]: the server runtime.
//!
//! Invariants of the repository: no read trusts stored bytes (every value is validated, a bad
//! one is [`RepoError::Corrupt`] naming the table and key, never a panic); no write is split
//! across batches (a record, its index rows and the id counter it used commit together); no
//! id is handed out twice, across restarts too; no index row outlives its record
//! ([`LogRepo::delete_job`] and [`LogRepo::delete_instance`] remove them together); the repo reads
//! no clock (every time is an argument).
//!
//! Limits (refused unless said otherwise): names [`MAX_NAME_LEN`](records::MAX_NAME_LEN)
//! bytes, secrets [`MIN_SECRET_LEN`](records::MIN_SECRET_LEN) to
//! [`MAX_SECRET_LEN`](records::MAX_SECRET_LEN) bytes, params [`MAX_PARAMS_LEN`]; results
//! beyond [`MAX_RESULT_LEN`] and log lines beyond [`MAX_LOG_LINE_LEN`] are cut and marked; an
//! append keeps at most [`MAX_LOG_APPEND`] lines (the rest are counted as dropped); a page
//! holds at most [`MAX_PAGE`] rows and a filtered listing examines at most [`MAX_LIST_SCAN`]
//! index rows.

#![forbid(unsafe_code)]
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
#![cfg_attr(
    test,
    allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)
)]

pub mod alarm_repo;
pub mod api_convert;
pub mod calendar_repo;
mod codec;
mod commit;
pub(crate) mod core;
mod error;
mod filters;
pub mod history;
pub mod idempotency_repo;
pub mod instance;
mod instance_codec;
mod instance_repo;
mod job_codec;
pub mod keys;
mod log_codec;
mod log_lines;
#[cfg(feature = "postgres")]
pub mod pg;
pub mod records;
pub mod repo;
mod repository;
pub mod runtime;
pub mod token_repo;
mod wf_codec;
mod wf_instance_repo;
pub mod workflow_repo;

pub use codec::RECORD_VERSION;
pub use error::RepoError;
pub use instance::{attempt_base, InstanceRecord, ReportOutcome, MAX_RESULT_LEN};
pub use job_codec::JOB_RECORD_VERSION;
#[cfg(feature = "postgres")]
pub use pg::{PgOptions, PgRepo};
pub use records::{
    AppRecord, DelayedRun, JobRecord, LogLine, LogLineField, LogSettings, TriggerRecord,
    MAX_LOG_LINE_LEN, MAX_PARAMS_LEN,
};
pub use repo::{
    Commit, InstanceFilter, JobFilter, LoadedJob, LoadedState, LogAppend, LogEntry, LogRepo, Page,
    TimeRange, WorkflowFilter, ID_BLOCK, MAX_DELETE_BATCH, MAX_LIST_SCAN, MAX_LOG_APPEND, MAX_PAGE,
};
pub use repository::{Repo, Repository};
pub use runtime::{ServerConfig, ServerCore, ServerError, StoreChoice};

/// Decodes a stored value of `table` as its record type, for tests and tools that inspect a
/// store: `Ok(())` when it is a valid record, [`RepoError::Corrupt`] otherwise.
pub fn check_value(table: &'static str, key: &[u8], value: &[u8]) -> Result<(), RepoError> {
    match table {
        keys::APPS => codec::decode::<AppRecord>(table, key, value).map(drop),
        keys::JOBS => job_codec::decode_job(key, value).map(drop),
        keys::TRIGGERS => codec::decode::<TriggerRecord>(table, key, value).map(drop),
        keys::INSTANCES => instance_codec::decode_instance(table, key, value).map(drop),
        keys::DELAYED => codec::decode::<DelayedRun>(table, key, value).map(drop),
        keys::LOGS => log_codec::decode_log_line(key, value).map(drop),
        workflow_repo::WORKFLOWS => {
            codec::decode::<workflow_repo::WorkflowRecord>(table, key, value).map(drop)
        }
        workflow_repo::WF_VERSIONS => {
            codec::decode::<workflow_repo::WorkflowDefRecord>(table, key, value).map(drop)
        }
        workflow_repo::WF_TRIGGERS => codec::decode::<TriggerRecord>(table, key, value).map(drop),
        workflow_repo::WF_INSTANCES => wf_codec::decode_wf_instance(table, key, value).map(drop),
        alarm_repo::ALARMS => codec::decode::<alarm_repo::AlarmRecord>(table, key, value).map(drop),
        alarm_repo::ALARM_CHANNELS => {
            codec::decode::<alarm_repo::ChannelRecord>(table, key, value).map(drop)
        }
        calendar_repo::CALENDARS => {
            codec::decode::<calendar_repo::CalendarRecord>(table, key, value).map(drop)
        }
        token_repo::API_TOKENS => {
            codec::decode::<token_repo::TokenRecord>(table, key, value).map(drop)
        }
        token_repo::APP_PREV_SECRETS => {
            codec::decode::<token_repo::PreviousSecretRecord>(table, key, value).map(drop)
        }
        history::JOB_VERSIONS => job_codec::decode_job(key, value).map(drop),
        history::AUDIT => codec::decode::<history::AuditRecord>(table, key, value).map(drop),
        workflow_repo::NODE_LINKS => {
            codec::decode::<workflow_repo::NodeLinkRecord>(table, key, value).map(drop)
        }
        _ => Err(RepoError::invalid(
            "table",
            format!("{table:?} holds no records"),
        )),
    }
}

#[cfg(test)]
mod tests;
