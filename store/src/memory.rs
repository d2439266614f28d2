//! [`MemoryStore`]: the [`Store`] API with no durability, for tests and `--ephemeral` runs.

use std::collections::{BTreeMap, HashMap};

use parking_lot::RwLock;

use crate::batch::{Batch, Op};
use crate::error::StoreError;
use crate::range::KeyRange;
use crate::store::{CommitHandle, CommitInfo, KeyValue, Store};

/// An in-memory store: a `BTreeMap` per table behind one lock.
///
/// It enforces the same limits as [`LogStore`](crate::LogStore) and applies batches
/// atomically (readers never see part of one), so code tested against it behaves the same on
/// the log store. Nothing survives the process.
#[derive(Debug, Default)]
pub struct MemoryStore {
    state: RwLock<State>,
}

#[derive(Debug, Default)]
struct State {
    tables: HashMap<String, BTreeMap<Vec<u8>, Vec<u8>>>,
    last_seq: u64,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        MemoryStore::default()
    }
}

impl Store for MemoryStore {
    fn get(&self, table: &str, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let state = self.state.read();
        Ok(state.tables.get(table).and_then(|t| t.get(key)).cloned())
    }

    fn range(
        &self,
        table: &str,
        range: &KeyRange,
        limit: usize,
    ) -> Result<Vec<KeyValue>, StoreError> {
        if range.is_empty() || limit == 0 {
            return Ok(Vec::new());
        }
        let state = self.state.read();
        let Some(t) = state.tables.get(table) else {
            return Ok(Vec::new());
        };
        Ok(t.range::<[u8], _>(range.as_bounds())
            .take(limit)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    fn submit(&self, batch: Batch) -> CommitHandle {
        if let Err(e) = batch.validate() {
            return CommitHandle::ready(Err(e));
        }
        let mut state = self.state.write();
        state.last_seq += batch.len() as u64;
        let last_seq = state.last_seq;
        for op in batch.into_ops() {
            match op {
                Op::Put { table, key, value } => {
                    state
                        .tables
                        .entry(table.into_owned())
                        .or_default()
                        .insert(key, value);
                }
                Op::Delete { table, key } => {
                    if let Some(t) = state.tables.get_mut(table.as_ref()) {
                        t.remove(&key);
                        if t.is_empty() {
                            state.tables.remove(table.as_ref());
                        }
                    }
                }
            }
        }
        CommitHandle::ready(Ok(CommitInfo { last_seq }))
    }

    fn flush(&self) -> Result<(), StoreError> {
        Ok(())
    }

    fn count(&self, table: &str) -> usize {
        self.state.read().tables.get(table).map_or(0, BTreeMap::len)
    }

    fn tables(&self) -> Vec<String> {
        let mut names: Vec<String> = self.state.read().tables.keys().cloned().collect();
        names.sort();
        names
    }
}
