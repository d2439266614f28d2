//! [`Batch`]: an ordered list of puts and deletes across tables, committed atomically.

use std::borrow::Cow;

use crate::error::StoreError;

/// Longest table name, in bytes (names are `[A-Za-z0-9_.-]`, 1 to 64 bytes).
pub const MAX_TABLE_NAME_LEN: usize = 64;
/// Longest key, in bytes.
pub const MAX_KEY_LEN: usize = 4096;
/// Largest value, in bytes (16 MiB).
pub const MAX_VALUE_LEN: usize = 16 << 20;
/// Largest batch, in encoded bytes (64 MiB): a batch is one write and is held in memory whole.
pub const MAX_BATCH_BYTES: usize = 64 << 20;
/// Most operations in one batch.
pub const MAX_BATCH_OPS: usize = 1 << 20;

/// Bytes a record adds to its table name, key and value on disk (see `log::format`).
pub(crate) const RECORD_OVERHEAD: usize = 20;
/// Bytes a batch adds to its records on disk (header 24 + trailer 8).
pub(crate) const BATCH_OVERHEAD: usize = 32;

/// One operation of a [`Batch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Sets `key` in `table` to `value`, replacing any previous value.
    Put {
        /// Table name.
        table: Cow<'static, str>,
        /// Key bytes; tables are ordered by these bytes.
        key: Vec<u8>,
        /// Value bytes (the engine stores rkyv archives).
        value: Vec<u8>,
    },
    /// Removes `key` from `table` (a no-op when it is absent).
    Delete {
        /// Table name.
        table: Cow<'static, str>,
        /// Key bytes.
        key: Vec<u8>,
    },
}

impl Op {
    /// The table this operation writes.
    pub fn table(&self) -> &str {
        match self {
            Op::Put { table, .. } | Op::Delete { table, .. } => table,
        }
    }

    /// The key this operation writes.
    pub fn key(&self) -> &[u8] {
        match self {
            Op::Put { key, .. } | Op::Delete { key, .. } => key,
        }
    }

    /// The encoded size of this operation as a log record, in bytes.
    pub(crate) fn encoded_len(&self) -> usize {
        let value_len = match self {
            Op::Put { value, .. } => value.len(),
            Op::Delete { .. } => 0,
        };
        RECORD_OVERHEAD + self.table().len() + self.key().len() + value_len
    }
}

/// An atomic group of writes across tables: after a crash either all of them are visible or
/// none is, and readers never observe part of a batch.
///
/// Operations apply in order, so a later write to the same key wins.
///
/// ```
/// use ferrojob_store::Batch;
/// let batch = Batch::new()
///     .put("instances", b"i-42".to_vec(), b"archived instance".to_vec())
///     .delete("triggers", b"job-7".to_vec());
/// assert_eq!(batch.len(), 2);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Batch {
    ops: Vec<Op>,
    encoded_len: usize,
}

impl Batch {
    /// An empty batch (committing it is a no-op that succeeds).
    pub fn new() -> Self {
        Batch::default()
    }

    /// Adds a put (builder style).
    pub fn put(
        mut self,
        table: impl Into<Cow<'static, str>>,
        key: impl Into<Vec<u8>>,
        value: impl Into<Vec<u8>>,
    ) -> Self {
        self.push_put(table, key, value);
        self
    }

    /// Adds a delete (builder style).
    pub fn delete(mut self, table: impl Into<Cow<'static, str>>, key: impl Into<Vec<u8>>) -> Self {
        self.push_delete(table, key);
        self
    }

    /// Adds a put through a mutable reference.
    pub fn push_put(
        &mut self,
        table: impl Into<Cow<'static, str>>,
        key: impl Into<Vec<u8>>,
        value: impl Into<Vec<u8>>,
    ) {
        self.push(Op::Put {
            table: table.into(),
            key: key.into(),
            value: value.into(),
        });
    }

    /// Adds a delete through a mutable reference.
    pub fn push_delete(&mut self, table: impl Into<Cow<'static, str>>, key: impl Into<Vec<u8>>) {
        self.push(Op::Delete {
            table: table.into(),
            key: key.into(),
        });
    }

    /// Adds an operation.
    pub fn push(&mut self, op: Op) {
        self.encoded_len = self.encoded_len.saturating_add(op.encoded_len());
        self.ops.push(op);
    }

    /// The operations, in order.
    pub fn ops(&self) -> &[Op] {
        &self.ops
    }

    /// Number of operations.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// True when the batch has no operations.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Size of this batch in the log, in bytes (records plus batch framing).
    pub fn encoded_len(&self) -> usize {
        self.encoded_len.saturating_add(BATCH_OVERHEAD)
    }

    pub(crate) fn into_ops(self) -> Vec<Op> {
        self.ops
    }

    /// Checks every limit, so that both stores refuse exactly the same batches.
    pub fn validate(&self) -> Result<(), StoreError> {
        if self.ops.len() > MAX_BATCH_OPS || self.encoded_len() > MAX_BATCH_BYTES {
            return Err(StoreError::BatchTooLarge {
                ops: self.ops.len(),
                len: self.encoded_len(),
                max_ops: MAX_BATCH_OPS,
                max: MAX_BATCH_BYTES,
            });
        }
        for op in &self.ops {
            validate_table(op.table())?;
            if op.key().len() > MAX_KEY_LEN {
                return Err(StoreError::KeyTooLarge {
                    table: op.table().to_owned(),
                    len: op.key().len(),
                    max: MAX_KEY_LEN,
                });
            }
            if let Op::Put { value, .. } = op {
                if value.len() > MAX_VALUE_LEN {
                    return Err(StoreError::ValueTooLarge {
                        table: op.table().to_owned(),
                        len: value.len(),
                        max: MAX_VALUE_LEN,
                    });
                }
            }
        }
        Ok(())
    }
}

/// Checks a table name: 1 to [`MAX_TABLE_NAME_LEN`] bytes of `[A-Za-z0-9_.-]`.
pub fn validate_table(name: &str) -> Result<(), StoreError> {
    let reason = if name.is_empty() {
        Some("it is empty")
    } else if name.len() > MAX_TABLE_NAME_LEN {
        Some("it is longer than 64 bytes")
    } else if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
    {
        Some("only A-Z, a-z, 0-9, '_', '.' and '-' are allowed")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(StoreError::InvalidTable {
            name: name.to_owned(),
            reason,
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names() {
        assert!(validate_table("instances").is_ok());
        assert!(validate_table("a.b-c_9").is_ok());
        assert!(validate_table("").is_err());
        assert!(validate_table("has space").is_err());
        assert!(validate_table(&"x".repeat(65)).is_err());
        assert!(validate_table(&"x".repeat(64)).is_ok());
    }

    #[test]
    fn limits_are_checked() {
        let big_key = Batch::new().put("t", vec![0; MAX_KEY_LEN + 1], vec![]);
        assert!(matches!(
            big_key.validate(),
            Err(StoreError::KeyTooLarge { .. })
        ));
        let big_value = Batch::new().put("t", vec![], vec![0; MAX_VALUE_LEN + 1]);
        assert!(matches!(
            big_value.validate(),
            Err(StoreError::ValueTooLarge { .. })
        ));
        let ok = Batch::new().put("t", vec![1], vec![2]).delete("u", vec![3]);
        assert!(ok.validate().is_ok());
        assert_eq!(ok.encoded_len(), 32 + (20 + 1 + 1 + 1) + (20 + 1 + 1));
    }
}
