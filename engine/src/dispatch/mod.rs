//! The server's worker registry and dispatch decision: which workers each
//! app has, whether they are alive and healthy, and which of them runs an instance.
//!
//! This module does no I/O and reads no clock: the server feeds it heartbeats (`heartbeat(app,
//! status, metrics, now)`), asks it to drop dead workers (`expire(now)`) and to choose workers
//! (`select(app, spec, cursor, state, now)`). It knows nothing of the transport: the server
//! copies the transport's `WorkerHeartbeat` into [`WorkerStatus`] and [`WorkerMetrics`].
//!
//! ```text
//!   transport WorkerHeartbeat ──server──▶ WorkerRegistry::heartbeat ──▶ per-worker slot
//!   server tick (every interval) ───────▶ WorkerRegistry::expire    ──▶ [(app, address)] dead
//!   wheel fires an instance ────────────▶ WorkerRegistry::select    ──▶ Selection
//!                                                                        { task_tracker, workers }
//! ```
//!
//! - [`health`] holds [`WorkerMetrics`] and the health score (PowerJob's formula).
//! - [`registry`] holds [`WorkerRegistry`], liveness and membership; why the hot path needs no
//!   global lock.
//! - `workers` holds one app's workers in the orders selection reads them in (by address, by
//!   score, the set dead at a time), each kept up to date in O(log n).
//! - [`select`] holds [`DispatchSpec`], filters and strategies.
//! - [`error`] holds [`DispatchError`].

#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
#![cfg_attr(
    test,
    allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)
)]

pub mod error;
pub mod health;
pub mod registry;
pub mod select;
mod workers;

pub use error::{DispatchError, Exclusions};
pub use health::{HealthScore, WorkerMetrics, GIB};
pub use registry::{
    HeartbeatOutcome, RegistryConfig, TrackerCounts, WorkerRegistry, WorkerStatus, WorkerView,
};
pub use select::{DispatchSpec, RoundRobinCursor, SelectState, Selection};
