//! The in-memory index: for each table, an ordered map from key to where its newest value lives.
//!
//! Memory per live key (64-bit target): the key bytes on the heap (rounded up by the allocator,
//! about `key_len + 8`), a 16-byte `Box<[u8]>` and a 24-byte [`Loc`] in a B-tree slot, plus
//! the B-tree's node overhead (nodes hold up to 11 slots). In all about `key_len + 60` bytes
//! per key: the `store_recover` bench measures 74 bytes of RSS per 16-byte key at 1M keys.
//! Values stay on disk; nothing else grows with the number of keys.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

use crate::backend::BackendFile;
use crate::log::format::{SegmentKind, SEGMENT_HEADER_LEN};

/// Where a record lives: its segment, offset and length, and its sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Loc {
    /// Sequence number of the record (newer wins during recovery).
    pub seq: u64,
    /// Segment id.
    pub file: u32,
    /// Offset of the record in the segment (segments stay below 4 GiB).
    pub offset: u32,
    /// Length of the whole record in bytes.
    pub len: u32,
}

/// An open segment and its accounting.
#[derive(Debug)]
pub(crate) struct FileInfo {
    pub handle: Arc<dyn BackendFile>,
    pub path: PathBuf,
    pub kind: SegmentKind,
    /// Bytes in the file, header included.
    pub len: u64,
    /// Bytes of records the index points into.
    pub live: u64,
    /// Highest sequence number of any record in the file (0 if none).
    pub max_seq: u64,
}

impl FileInfo {
    /// A log segment just created: its header and nothing else.
    pub fn new_log(handle: Arc<dyn BackendFile>, path: PathBuf) -> Self {
        FileInfo {
            handle,
            path,
            kind: SegmentKind::Log,
            len: SEGMENT_HEADER_LEN as u64,
            live: 0,
            max_seq: 0,
        }
    }
}

/// The index and the segment table; guarded by one `RwLock` in the store.
#[derive(Debug, Default)]
pub(crate) struct Index {
    pub tables: HashMap<Box<str>, BTreeMap<Box<[u8]>, Loc>>,
    pub files: BTreeMap<u32, FileInfo>,
    /// The segment the writer appends to.
    pub active: u32,
    /// Highest sequence number committed.
    pub last_seq: u64,
}

impl Index {
    pub(crate) fn get(&self, table: &str, key: &[u8]) -> Option<Loc> {
        self.tables.get(table)?.get(key).copied()
    }

    fn sub_live(&mut self, loc: Loc) {
        if let Some(f) = self.files.get_mut(&loc.file) {
            f.live = f.live.saturating_sub(u64::from(loc.len));
        }
    }

    fn add_live(&mut self, loc: Loc) {
        if let Some(f) = self.files.get_mut(&loc.file) {
            f.live += u64::from(loc.len);
            f.max_seq = f.max_seq.max(loc.seq);
        }
    }

    /// Points `key` at `loc` (the writer's path: `loc` is always the newest).
    pub(crate) fn put(&mut self, table: &str, key: &[u8], loc: Loc) {
        self.put_newer(table, key, loc, false);
    }

    /// Points `key` at `loc` in one search of its table, unless `only_newer` and the index
    /// holds a record at or after `loc`'s sequence number.
    fn put_newer(&mut self, table: &str, key: &[u8], loc: Loc, only_newer: bool) {
        let old = match self.tables.get_mut(table) {
            Some(t) => match t.get_mut(key) {
                Some(slot) if only_newer && slot.seq >= loc.seq => return,
                Some(slot) => Some(std::mem::replace(slot, loc)),
                None => {
                    t.insert(Box::from(key), loc);
                    None
                }
            },
            None => {
                let mut t = BTreeMap::new();
                t.insert(Box::from(key), loc);
                self.tables.insert(Box::from(table), t);
                None
            }
        };
        if let Some(old) = old {
            self.sub_live(old);
        }
        self.add_live(loc);
    }

    /// Removes `key` (the writer's path).
    pub(crate) fn delete(&mut self, table: &str, key: &[u8]) {
        let Some(t) = self.tables.get_mut(table) else {
            return;
        };
        let old = t.remove(key);
        if t.is_empty() {
            self.tables.remove(table);
        }
        if let Some(old) = old {
            self.sub_live(old);
        }
    }

    /// Recovery's put: applies only if newer than what the index and `tombstones` hold, since
    /// compacted segments hold old records and files are replayed in id order.
    pub(crate) fn recover_put(
        &mut self,
        table: &str,
        key: &[u8],
        loc: Loc,
        tombstones: &Tombstones,
    ) {
        if let Some(dead) = tombstones.get(table).and_then(|t| t.get(key)) {
            if *dead >= loc.seq {
                return;
            }
        }
        self.put_newer(table, key, loc, true);
    }

    /// Recovery's delete: removes the key if the index holds an older value, and remembers the
    /// tombstone so that an older put replayed later stays deleted.
    pub(crate) fn recover_delete(
        &mut self,
        table: &str,
        key: &[u8],
        seq: u64,
        tombstones: &mut Tombstones,
    ) {
        if let Some(t) = self.tables.get_mut(table) {
            // One search when the key goes (the usual case); a newer value is put back.
            let old = match t.remove_entry(key) {
                Some((k, cur)) if cur.seq >= seq => {
                    t.insert(k, cur);
                    None
                }
                Some((_, cur)) => Some(cur),
                None => None,
            };
            if t.is_empty() {
                self.tables.remove(table);
            }
            if let Some(old) = old {
                self.sub_live(old);
            }
        }
        if !tombstones.contains_key(table) {
            tombstones.insert(Box::from(table), HashMap::new());
        }
        let Some(t) = tombstones.get_mut(table) else {
            return;
        };
        match t.get_mut(key) {
            Some(s) => *s = (*s).max(seq),
            None => {
                t.insert(Box::from(key), seq);
            }
        }
    }

    /// `(garbage, total)` bytes of record data in sealed segments (all but the active one).
    pub(crate) fn sealed_garbage(&self) -> (u64, u64) {
        let mut total = 0u64;
        let mut live = 0u64;
        for (id, f) in &self.files {
            if *id != self.active {
                total += f.len.saturating_sub(SEGMENT_HEADER_LEN as u64);
                live += f.live;
            }
        }
        (total.saturating_sub(live), total)
    }

    /// Number of live keys over all tables.
    pub(crate) fn key_count(&self) -> usize {
        self.tables.values().map(BTreeMap::len).sum()
    }
}

/// Deletes seen during recovery: table -> key -> sequence number. Dropped after recovery.
pub(crate) type Tombstones = HashMap<Box<str>, HashMap<Box<[u8]>, u64>>;
