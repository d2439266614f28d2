//! ferrojob's task store: named tables of ordered byte keys to byte values, with atomic batches
//! across tables, in memory ([`MemoryStore`]) or in a crash-safe, group-committed log
//! ([`LogStore`]). Both implement [`Store`]; the engine holds an `Arc<dyn Store>`.
//!
//! The store knows nothing of the engine's types or of the transport: keys and values are
//! bytes (the engine writes rkyv archives).
//!
//! For deterministic simulation, a `LogStore` opened with [`WriterMode::Stepped`] on a
//! [`SimBackend`](backend::SimBackend) runs no thread and reads no clock: the caller decides
//! when batches are written and synced, and crashes the simulated disk between any two calls.
//!
//! ```
//! use ferrojob_store::{Batch, KeyRange, MemoryStore, Store};
//! let store = MemoryStore::new();
//! store.commit(Batch::new()
//!     .put("instances", b"i-1".to_vec(), b"running".to_vec())
//!     .put("triggers", b"job-1".to_vec(), b"1700000000000".to_vec()))?;
//! assert_eq!(store.get("instances", b"i-1")?, Some(b"running".to_vec()));
//! assert_eq!(store.range("instances", &KeyRange::all(), 10)?.len(), 1);
//! # Ok::<(), ferrojob_store::StoreError>(())
//! ```
//!
//! # Map
//!
//! - `store.rs`: the object-safe [`Store`] trait and [`CommitHandle`], a runtime-agnostic
//!   `Future` that also has a blocking `wait`.
//! - `batch.rs`: [`Batch`] and the limits both stores enforce alike (table names, key, value
//!   and batch sizes).
//! - `range.rs`: [`KeyRange`] and [`Scan`], a paging iterator.
//! - `memory.rs`: [`MemoryStore`], a `BTreeMap` per table.
//! - `log/`: [`LogStore`]; its module docs cover durability, the on-disk format, the directory
//!   layout, group commit, recovery, the hint file and compaction, one file each.
//! - [`backend`]: the storage seam ([`backend::FsBackend`], [`backend::SimBackend`]).
//! - `error.rs`: [`StoreError`] and [`CorruptionKind`].
//!
//! # Invariants
//!
//! - The store never interprets a value and never names the engine or the transport.
//! - Only [`backend`] calls the file system: every open, write, fdatasync, rename, unlink and
//!   directory fsync goes through [`backend::Backend`] / [`backend::BackendFile`].
//! - No reader sees part of a batch, and none sees a `Durability::Sync` batch before it is
//!   durable (the index is updated after the group's fdatasync).
//! - Nothing acknowledged under `Durability::Sync` is lost; after any crash what survives is
//!   a prefix of the commit order (batches are never reordered or torn).
//! - No write is accepted after a failed write or fdatasync: the store refuses writes until
//!   it is reopened.
//! - No file-fed path unwraps or indexes slices (denied below), and there is no `unsafe`.
//!
//! # Testing
//!
//! `tests/suite.rs` runs one suite against `MemoryStore`, `LogStore` on `SimBackend` and
//! `LogStore` on the real file system; `tests/log_model.rs` is a property test against a
//! `BTreeMap` with reopen, power loss, process crash, compaction and checkpoints at random
//! points; `tests/log_crash.rs` cuts the log at every byte, flips bits in every byte, loses
//! power after acknowledged commits and injects I/O failures; `tests/log_compaction.rs`
//! crashes compaction at each step and checks the hint fallbacks. The fuzz target `store_recover`
//! feeds arbitrary bytes as segments and hints.

#![forbid(unsafe_code)]
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
#![cfg_attr(
    test,
    allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)
)]

pub mod backend;
mod batch;
mod error;
mod log;
mod memory;
mod range;
mod store;

pub use batch::{
    validate_table, Batch, Op, MAX_BATCH_BYTES, MAX_BATCH_OPS, MAX_KEY_LEN, MAX_TABLE_NAME_LEN,
    MAX_VALUE_LEN,
};
pub use error::{CorruptionKind, StoreError};
pub use log::{
    CheckReport, CompactionReport, Durability, LogOptions, LogStore, RecoveryMode, RecoveryReport,
    WriterMode,
};
pub use memory::MemoryStore;
pub use range::{KeyRange, Scan};
pub use store::{CommitHandle, CommitInfo, KeyValue, Store};
