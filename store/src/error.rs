//! The crate's one error type, [`StoreError`], and the kinds of log corruption it names.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// Everything a store operation can fail with.
///
/// Every variant carries enough context (path, offset, table, sizes) for an operator to act on it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// An I/O call failed.
    #[error("I/O error during {op} on {path}: {source}")]
    Io {
        /// What the store was doing (`"write"`, `"fdatasync"`, `"open"`, ...).
        op: &'static str,
        /// The file or directory concerned.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// The log holds bytes that are neither a complete batch nor a torn tail.
    #[error(
        "corrupt store file {path} at byte offset {offset}: {kind}; reopen with \
         RecoveryMode::Salvage to keep everything before it (the rest is moved aside, not deleted)"
    )]
    Corrupt {
        /// The segment (or hint) file.
        path: PathBuf,
        /// Byte offset of the first bad batch or record in that file.
        offset: u64,
        /// What exactly is wrong.
        kind: CorruptionKind,
    },
    /// An earlier write or fdatasync failed, so the store no longer knows what is durable and
    /// refuses every further write. Reads still work; reopening the store recovers from the log.
    #[error(
        "store {dir} refuses writes after an earlier I/O failure ({cause}); reopen it to recover"
    )]
    Poisoned {
        /// The store directory.
        dir: PathBuf,
        /// The failure that poisoned it.
        cause: String,
    },
    /// The store was closed; nothing more can be committed through this handle.
    #[error("store {dir} is closed")]
    Closed {
        /// The store directory (empty for a memory store).
        dir: PathBuf,
    },
    /// Another process (or another open `LogStore`) holds the directory's lock file.
    #[error("store directory {dir} is already open elsewhere (lock file {dir}/LOCK is held)")]
    Locked {
        /// The store directory.
        dir: PathBuf,
    },
    /// A table name is empty, too long or uses characters outside `[A-Za-z0-9_.-]`.
    #[error("invalid table name {name:?}: {reason}")]
    InvalidTable {
        /// The name as given.
        name: String,
        /// Why it was refused.
        reason: &'static str,
    },
    /// A key exceeds [`MAX_KEY_LEN`](crate::MAX_KEY_LEN).
    #[error("key of {len} bytes in table {table:?} exceeds the limit of {max} bytes")]
    KeyTooLarge {
        /// The table written to.
        table: String,
        /// The key's length in bytes.
        len: usize,
        /// The limit in bytes.
        max: usize,
    },
    /// A value exceeds [`MAX_VALUE_LEN`](crate::MAX_VALUE_LEN).
    #[error("value of {len} bytes in table {table:?} exceeds the limit of {max} bytes")]
    ValueTooLarge {
        /// The table written to.
        table: String,
        /// The value's length in bytes.
        len: usize,
        /// The limit in bytes.
        max: usize,
    },
    /// A batch's encoded size exceeds [`MAX_BATCH_BYTES`](crate::MAX_BATCH_BYTES) or it has
    /// more than [`MAX_BATCH_OPS`](crate::MAX_BATCH_OPS) operations: split it.
    #[error("batch of {ops} operations and {len} encoded bytes exceeds the limit of {max_ops} operations or {max} bytes; split it")]
    BatchTooLarge {
        /// Number of operations.
        ops: usize,
        /// Encoded size in bytes.
        len: usize,
        /// Operation limit.
        max_ops: usize,
        /// Byte limit.
        max: usize,
    },
    /// A [`LogOptions`](crate::LogOptions) field is out of range.
    #[error("invalid store option {field}: {reason}")]
    InvalidOptions {
        /// The option's field name.
        field: &'static str,
        /// Why it was refused, with the accepted range.
        reason: String,
    },
    /// A call that drives the writer by hand on a store whose writer runs in its own thread.
    #[error(
        "store {dir}: {op} drives the writer by hand and needs LogOptions::writer = \
         WriterMode::Stepped; this store's writer thread writes and syncs by itself"
    )]
    NotStepped {
        /// The store directory.
        dir: PathBuf,
        /// The call made.
        op: &'static str,
    },
}

impl StoreError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        StoreError::Io {
            op,
            path: path.into(),
            source,
        }
    }

    /// A copy of this error, for handing one group-commit failure to every waiter of the group.
    /// I/O errors are rebuilt from their kind and message (`io::Error` is not `Clone`).
    pub(crate) fn duplicate(&self) -> StoreError {
        match self {
            StoreError::Io { op, path, source } => StoreError::Io {
                op,
                path: path.clone(),
                source: io::Error::new(source.kind(), source.to_string()),
            },
            StoreError::Corrupt { path, offset, kind } => StoreError::Corrupt {
                path: path.clone(),
                offset: *offset,
                kind: kind.clone(),
            },
            StoreError::Poisoned { dir, cause } => StoreError::Poisoned {
                dir: dir.clone(),
                cause: cause.clone(),
            },
            StoreError::Closed { dir } => StoreError::Closed { dir: dir.clone() },
            StoreError::Locked { dir } => StoreError::Locked { dir: dir.clone() },
            StoreError::InvalidTable { name, reason } => StoreError::InvalidTable {
                name: name.clone(),
                reason,
            },
            StoreError::KeyTooLarge { table, len, max } => StoreError::KeyTooLarge {
                table: table.clone(),
                len: *len,
                max: *max,
            },
            StoreError::ValueTooLarge { table, len, max } => StoreError::ValueTooLarge {
                table: table.clone(),
                len: *len,
                max: *max,
            },
            StoreError::BatchTooLarge {
                ops,
                len,
                max_ops,
                max,
            } => StoreError::BatchTooLarge {
                ops: *ops,
                len: *len,
                max_ops: *max_ops,
                max: *max,
            },
            StoreError::InvalidOptions { field, reason } => StoreError::InvalidOptions {
                field,
                reason: reason.clone(),
            },
            StoreError::NotStepped { dir, op } => StoreError::NotStepped {
                dir: dir.clone(),
                op,
            },
        }
    }

    /// True for [`StoreError::Corrupt`].
    pub fn is_corruption(&self) -> bool {
        matches!(self, StoreError::Corrupt { .. })
    }
}

/// What is wrong with a corrupt stretch of a store file.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CorruptionKind {
    /// The segment header's magic, checksum or kind is wrong.
    BadSegmentHeader,
    /// The segment header names another segment id than the file name does.
    SegmentIdMismatch {
        /// Id from the file name.
        expected: u32,
        /// Id in the header.
        found: u32,
    },
    /// A batch does not start with the batch magic number.
    BadBatchMagic,
    /// A batch header's checksum does not match.
    BadBatchHeaderChecksum,
    /// A batch header's length or count is out of range.
    BadBatchLength,
    /// A record inside a batch does not fit its batch or has an unknown operation.
    BadRecord {
        /// Index of the record in its batch.
        index: u32,
    },
    /// A record's CRC32C does not match its bytes.
    BadRecordChecksum {
        /// Index of the record in its batch.
        index: u32,
    },
    /// A record's sequence number is not the one its batch header implies.
    BadSequence {
        /// The sequence number expected.
        expected: u64,
        /// The sequence number found.
        found: u64,
    },
    /// The batch trailer (magic + checksum over header and record checksums) does not match.
    BadBatchTrailer,
    /// A segment that was sealed (not the last one written) ends in an incomplete batch.
    TornSealedSegment,
    /// A record read back for a `get` or scan does not match its checksum or its key.
    BadReadBack,
}

impl fmt::Display for CorruptionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CorruptionKind::BadSegmentHeader => f.write_str("bad segment header"),
            CorruptionKind::SegmentIdMismatch { expected, found } => write!(
                f,
                "segment header says id {found:08x} but the file name says {expected:08x}"
            ),
            CorruptionKind::BadBatchMagic => {
                f.write_str("batch does not start with the batch magic")
            }
            CorruptionKind::BadBatchHeaderChecksum => f.write_str("batch header checksum mismatch"),
            CorruptionKind::BadBatchLength => {
                f.write_str("batch length or record count out of range")
            }
            CorruptionKind::BadRecord { index } => {
                write!(f, "record {index} of the batch is malformed")
            }
            CorruptionKind::BadRecordChecksum { index } => {
                write!(f, "record {index} of the batch fails its CRC32C")
            }
            CorruptionKind::BadSequence { expected, found } => {
                write!(f, "sequence number {found} where {expected} was expected")
            }
            CorruptionKind::BadBatchTrailer => f.write_str("batch trailer mismatch"),
            CorruptionKind::TornSealedSegment => {
                f.write_str("sealed segment ends in an incomplete batch")
            }
            CorruptionKind::BadReadBack => {
                f.write_str("record read back does not match its checksum or key")
            }
        }
    }
}
