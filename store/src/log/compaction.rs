//! Compaction: rewrite the live records of every sealed segment into new segments, then delete
//! the old ones, so that disk use stays bounded under updates and deletes.
//!
//! ```text
//!  sealed: [1.log][2.log][4.log(compacted)]   active: [5.log]
//!     │ copy records the index still points to (tombstones are dropped: every older
//!     ▼ record they could hide is in the same input set)
//!  6.compact ──fdatasync──► rename 6.log ──► fsync dir
//!     │ under the index lock: repoint keys that still point at their old copy
//!     ▼ delete inputs in ascending max_seq order, fsyncing the directory after each
//! ```
//!
//! Writers are never blocked for the copy: they keep appending to the active segment, and only
//! the final repointing takes the index write lock (for a time proportional to the records
//! moved, with no I/O). A record overwritten during the copy is simply not repointed; its copy
//! is garbage for the next round. Deleting inputs oldest-first (by highest sequence number)
//! means a crash part-way never leaves a put without the tombstone that hides it.
//!
//! Disk bound: a round starts when sealed garbage reaches `compaction_min_garbage_ratio` (r) of
//! sealed bytes (and at least `compaction_min_garbage_bytes`), so sealed segments stay below
//! `live / (1 - r)`; during a round the output (at most `live`) exists next to its inputs. With
//! the default r = 0.5, disk use stays below `3 x live + 2 x segment_bytes + max_group_bytes`
//! (with `preallocate`, plus up to `2 x segment_bytes` of zero-filled room and spare).
//! Memory: a round keeps the table and key of every record it moves.
//!
//! Failure: a round that fails (a full disk, an I/O error) is counted
//! ([`LogStore::compaction_failures`](crate::LogStore::compaction_failures)), and the
//! background compactor retries it on its own after `compaction_retry_min` (1 s), doubling
//! up to `compaction_retry_max` (5 min), until one succeeds; meanwhile
//! [`LogStore::compaction_failing`](crate::LogStore::compaction_failing) is true and the disk
//! bound above does not hold.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use tracing::info;

use crate::backend::BackendFile;
use crate::error::{CorruptionKind, StoreError};
use crate::log::format::{
    decode_batch, decode_segment_header, encode_raw_batch, BatchFault, SegmentKind,
    SEGMENT_HEADER_LEN,
};
use crate::log::index::{FileInfo, Loc};
use crate::log::segment::{
    compact_tmp_name, create_segment_file, read_range, segment_name, sync_dir, HINT_NAME,
};
use crate::log::Shared;

/// What one compaction round did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CompactionReport {
    /// Segments rewritten and deleted.
    pub inputs: usize,
    /// Segments written.
    pub outputs: usize,
    /// Bytes of the input segments.
    pub bytes_before: u64,
    /// Bytes of the output segments.
    pub bytes_after: u64,
    /// Live records copied.
    pub records_moved: u64,
}

struct Moved {
    table: Box<str>,
    key: Box<[u8]>,
    old: Loc,
    file: u32,
    offset: u32,
}

/// A record waiting in `Output::pending`: its byte range there, its table and key, and where
/// the index pointed when it was copied.
type PendingRecord = (std::ops::Range<usize>, Box<str>, Box<[u8]>, Loc);

struct OutFile {
    id: u32,
    handle: Arc<dyn BackendFile>,
    tmp: PathBuf,
    len: u64,
    max_seq: u64,
}

struct Output<'a> {
    shared: &'a Shared,
    files: Vec<OutFile>,
    pending: Vec<u8>,
    pending_recs: Vec<PendingRecord>,
    moved: Vec<Moved>,
    buf: Vec<u8>,
}

/// Records per output batch are flushed once they reach this many bytes.
const OUTPUT_BATCH_BYTES: usize = 1 << 20;

impl Output<'_> {
    fn push(&mut self, raw: &[u8], table: &str, key: &[u8], old: Loc) -> Result<(), StoreError> {
        let start = self.pending.len();
        self.pending.extend_from_slice(raw);
        self.pending_recs.push((
            start..self.pending.len(),
            Box::from(table),
            Box::from(key),
            old,
        ));
        if self.pending.len() >= OUTPUT_BATCH_BYTES {
            self.flush_batch()?;
        }
        Ok(())
    }

    fn flush_batch(&mut self) -> Result<(), StoreError> {
        if self.pending_recs.is_empty() {
            return Ok(());
        }
        let need_new = match self.files.last() {
            None => true,
            Some(f) => f.len >= self.shared.options.segment_bytes,
        };
        if need_new {
            let id = self.shared.next_file_id.fetch_add(1, Ordering::Relaxed);
            let (handle, tmp) = create_segment_file(
                self.shared.backend.as_ref(),
                &self.shared.dir,
                &compact_tmp_name(id),
                id,
                SegmentKind::Compacted,
            )?;
            self.files.push(OutFile {
                id,
                handle,
                tmp,
                len: SEGMENT_HEADER_LEN as u64,
                max_seq: 0,
            });
        }
        let Some(out) = self.files.last_mut() else {
            return Ok(());
        };
        let raws: Vec<&[u8]> = self
            .pending_recs
            .iter()
            .filter_map(|(r, ..)| self.pending.get(r.clone()))
            .collect();
        self.buf.clear();
        let mut offsets = Vec::with_capacity(raws.len());
        encode_raw_batch(&mut self.buf, &raws, &mut offsets);
        out.handle
            .write_all_at(&self.buf, out.len)
            .map_err(|e| StoreError::io("write compacted segment", &out.tmp, e))?;
        for ((_, table, key, old), (off, _)) in self.pending_recs.drain(..).zip(offsets) {
            out.max_seq = out.max_seq.max(old.seq);
            self.moved.push(Moved {
                table,
                key,
                old,
                file: out.id,
                offset: (out.len + off as u64) as u32,
            });
        }
        out.len += self.buf.len() as u64;
        self.pending.clear();
        Ok(())
    }

    fn discard(&self) {
        for f in &self.files {
            let _ = self.shared.backend.remove_file(&f.tmp);
        }
    }
}

struct Input {
    id: u32,
    path: PathBuf,
    handle: Arc<dyn BackendFile>,
    len: u64,
    max_seq: u64,
}

/// Runs one compaction round over every sealed segment.
pub(crate) fn compact(shared: &Shared) -> Result<CompactionReport, StoreError> {
    let _round = shared.compaction.lock();
    // Odd while the round runs, whichever way it ends: an index snapshot taken meanwhile, or
    // before and written after, is never written as the hint.
    let _epoch = shared.compaction_round();
    if let Some(cause) = shared.poisoned() {
        return Err(shared.poison_error(cause));
    }
    let inputs: Vec<Input> = {
        let index = shared.index.read();
        index
            .files
            .iter()
            .filter(|(id, _)| **id != index.active)
            .map(|(id, f)| Input {
                id: *id,
                path: f.path.clone(),
                handle: f.handle.clone(),
                len: f.len,
                max_seq: f.max_seq,
            })
            .collect()
    };
    if inputs.is_empty() {
        return Ok(CompactionReport::default());
    }
    // The hint covers the inputs; it must not outlive them.
    let hint = shared.dir.join(HINT_NAME);
    if shared
        .backend
        .list_dir(&shared.dir)
        .map_err(|e| StoreError::io("list directory", &shared.dir, e))?
        .iter()
        .any(|n| n == HINT_NAME)
    {
        shared
            .backend
            .remove_file(&hint)
            .map_err(|e| StoreError::io("remove hint", &hint, e))?;
        sync_dir(shared.backend.as_ref(), &shared.dir)?;
    }
    let mut out = Output {
        shared,
        files: Vec::new(),
        pending: Vec::new(),
        pending_recs: Vec::new(),
        moved: Vec::new(),
        buf: Vec::new(),
    };
    let copied = copy_live(shared, &inputs, &mut out).and_then(|()| out.flush_batch());
    if let Err(e) = copied {
        out.discard();
        return Err(e);
    }
    // Outputs become durable segments before anything points at them.
    for f in &out.files {
        let path = shared.dir.join(segment_name(f.id));
        let done = f
            .handle
            .sync_data()
            .map_err(|e| StoreError::io("fdatasync", &f.tmp, e))
            .and_then(|()| {
                shared
                    .backend
                    .rename(&f.tmp, &path)
                    .map_err(|e| StoreError::io("rename compacted segment", &f.tmp, e))
            });
        if let Err(e) = done {
            out.discard();
            return Err(e);
        }
    }
    sync_dir(shared.backend.as_ref(), &shared.dir)?;

    let mut report = CompactionReport {
        inputs: inputs.len(),
        outputs: out.files.len(),
        bytes_before: inputs.iter().map(|i| i.len).sum(),
        bytes_after: out.files.iter().map(|f| f.len).sum(),
        records_moved: 0,
    };
    {
        let mut index = shared.index.write();
        for f in &out.files {
            index.files.insert(
                f.id,
                FileInfo {
                    handle: f.handle.clone(),
                    path: shared.dir.join(segment_name(f.id)),
                    kind: SegmentKind::Compacted,
                    len: f.len,
                    live: 0,
                    max_seq: f.max_seq,
                },
            );
        }
        for m in &out.moved {
            if index.get(&m.table, &m.key) == Some(m.old) {
                let loc = Loc {
                    file: m.file,
                    offset: m.offset,
                    ..m.old
                };
                index.put(&m.table, &m.key, loc);
                report.records_moved += 1;
            }
        }
        for i in &inputs {
            index.files.remove(&i.id);
        }
    }
    let mut order: Vec<&Input> = inputs.iter().collect();
    order.sort_by_key(|i| (i.max_seq, i.id));
    for i in order {
        shared
            .backend
            .remove_file(&i.path)
            .map_err(|e| StoreError::io("remove compacted segment", &i.path, e))?;
        sync_dir(shared.backend.as_ref(), &shared.dir)?;
    }
    shared.compactions.fetch_add(1, Ordering::Relaxed);
    info!(
        dir = %shared.dir.display(),
        inputs = report.inputs,
        outputs = report.outputs,
        bytes_before = report.bytes_before,
        bytes_after = report.bytes_after,
        "compaction round done"
    );
    Ok(report)
}

fn copy_live(shared: &Shared, inputs: &[Input], out: &mut Output<'_>) -> Result<(), StoreError> {
    for input in inputs {
        let bytes = read_range(input.handle.as_ref(), &input.path, 0, input.len)?;
        decode_segment_header(&bytes, input.id).map_err(|kind| StoreError::Corrupt {
            path: input.path.clone(),
            offset: 0,
            kind,
        })?;
        let mut pos = SEGMENT_HEADER_LEN;
        while pos < bytes.len() {
            let batch = decode_batch(&bytes, pos, false).map_err(|f| StoreError::Corrupt {
                path: input.path.clone(),
                offset: pos as u64,
                kind: match f {
                    BatchFault::Torn => CorruptionKind::TornSealedSegment,
                    BatchFault::Corrupt(k) => k,
                },
            })?;
            let live: Vec<(usize, Loc)> = {
                let index = shared.index.read();
                batch
                    .records
                    .iter()
                    .enumerate()
                    .filter(|(_, r)| r.is_put)
                    .filter_map(|(i, r)| {
                        let loc = index.get(r.table, r.key)?;
                        (loc.file == input.id && loc.offset as usize == r.offset)
                            .then_some((i, loc))
                    })
                    .collect()
            };
            for (i, loc) in live {
                let Some(r) = batch.records.get(i) else {
                    continue;
                };
                let Some(raw) = bytes.get(r.offset..r.offset + r.len) else {
                    continue;
                };
                out.push(raw, r.table, r.key, loc)?;
            }
            pos = batch.end;
        }
    }
    Ok(())
}
