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
    CompactionReport, Durability, LogOptions, LogStore, RecoveryMode, RecoveryReport, WriterMode,
};
pub use memory::MemoryStore;
pub use range::{KeyRange, Scan};
pub use store::{CommitHandle, CommitInfo, KeyValue, Store};
