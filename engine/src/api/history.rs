//! Definition versions, rollback and the audit trail: the bodies of
//! `GET .../jobs/{id}/versions[/{version}]`, `POST .../jobs/{id}/rollback` (and the same for
//! workflows) and `GET /v1/apps/{app}/audit`.
//!
//! Every create, update, enable, disable and rollback of a job or a workflow stores its
//! definition as the next version (1, 2, ...); a rollback makes an older version the current
//! definition again, as a new version. The HTTP layer records every change and command it
//! answers with success as an audit record ([`AuditEntry`]): who (the token), from where,
//! what and to what.

use serde::{Deserialize, Serialize};

use super::types::JobBody;
use crate::time_expression::EpochMs;
use crate::workflow::WorkflowDef;

/// One stored definition of a job (`GET .../jobs/{id}/versions`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobVersionView {
    /// 1 for the definition the job was created with, +1 per change.
    pub version: u64,
    /// When this version was made (epoch ms).
    pub updated_at: EpochMs,
    /// The definition.
    pub job: JobBody,
}

/// `GET .../jobs/{id}/versions` answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobVersionList {
    /// Versions, newest first.
    pub items: Vec<JobVersionView>,
    /// Pass as `cursor` for the next (older) page; null on the last page.
    pub next_cursor: Option<u64>,
}

/// One stored definition of a workflow (`GET .../workflows/{id}/versions`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WorkflowVersionView {
    /// 1 for the definition the workflow was created with, +1 per change.
    pub version: u64,
    /// The definition.
    pub definition: WorkflowDef,
}

/// `GET .../workflows/{id}/versions` answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WorkflowVersionList {
    /// Versions, newest first.
    pub items: Vec<WorkflowVersionView>,
    /// Pass as `cursor` for the next (older) page; null on the last page.
    pub next_cursor: Option<u64>,
}

/// `POST .../jobs/{id}/rollback` and `POST .../workflows/{id}/rollback` body.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rollback {
    /// The stored version to make current again (as a new version).
    pub version: u64,
}

/// What the HTTP layer records for a change or command it answered with success.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// `admin` (the admin token), `token` (an API token, see `token_id`) or `app-secret`
    /// (the app's worker secret in compatibility mode).
    pub actor: String,
    /// The API token's id when `actor` is `token`.
    pub token_id: Option<u64>,
    /// The request's role: `read`, `operate` or `admin`.
    pub role: String,
    /// The peer address (`ip:port`), empty when unknown.
    pub peer: String,
    /// What was done, e.g. `job.update`, `instance.stop`.
    pub action: String,
    /// What it was done to, e.g. `job/12`.
    pub target: String,
    /// A short description: the request line, and the id a creation answered.
    pub summary: String,
}

/// One audit record (`GET /v1/apps/{app}/audit`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditView {
    /// 1, 2, ... per app.
    pub seq: u64,
    /// When (epoch ms).
    pub time: EpochMs,
    /// Who, where, what: as recorded.
    #[serde(flatten)]
    pub entry: AuditEntry,
}

/// `GET /v1/apps/{app}/audit` answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditList {
    /// Records, newest first.
    pub items: Vec<AuditView>,
    /// Pass as `cursor` for the next (older) page; null on the last page.
    pub next_cursor: Option<u64>,
}

/// `GET /v1/apps/{app}/audit` query.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    /// Page size, 1 to 1000 (default 100).
    #[serde(default)]
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    #[serde(default)]
    pub cursor: Option<u64>,
    /// Only records of this target (`job/12`, `workflow/3`, `instance/40`, ...).
    #[serde(default)]
    pub target: Option<String>,
}

/// An `Idempotency-Key` of a create or run route as an [`Api`](super::Api) keeps it durable:
/// the HTTP layer writes it as taken before the request acts and with its answer after.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdempotencyEntry {
    /// The request's path (it names the app and the job or workflow).
    pub path: String,
    /// The key.
    pub key: String,
    /// When the key was taken or answered (server clock, epoch ms).
    pub at: EpochMs,
    /// The answer's HTTP status and JSON body; `None` while the request is being answered
    /// (after a restart: it was cut off, and whether it acted is unknown).
    pub answer: Option<(u16, Vec<u8>)>,
}
