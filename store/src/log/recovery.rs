//! Opening a log: rebuild the index from the hint and the segments, truncate a torn tail,
//! report (or, with `RecoveryMode::Salvage`, move aside) corruption.
//!
//! Recovery plans first and changes files last: a replay with the hint that goes wrong in any
//! way is discarded and redone from the segments alone, so a bad hint can never cause a
//! truncation. Running it again on its own output changes nothing (idempotent): a truncated
//! tail is gone, a moved-aside file is no longer a segment.
//!
//! Only the newest log segment may end in an incomplete batch (every rotation fdatasyncs the
//! old segment before creating the next); an incomplete batch anywhere else, or a complete
//! batch that fails a check anywhere, is corruption. Zero bytes at the end of the newest log
//! segment count as never written (a file system that extended the file but lost the data):
//! if the batch is incomplete once they are cut off, it is a torn tail, not corruption. A
//! complete batch never ends in a zero byte (its trailer ends in a magic), so no valid batch
//! is ever taken for zeros.
//!
//! Zeros from a batch boundary to the end of any log segment are preallocated room (see
//! `spare`), not damage: they end that segment's replay. In the newest segment they stay as
//! the writer's room (with `preallocate` off they are cut off, as before).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tracing::{info, warn};

use crate::backend::{Backend, BackendFile, OpenMode};
use crate::error::{CorruptionKind, StoreError};
use crate::log::format::{
    decode_batch, decode_segment_header, BatchFault, SegmentKind, SEGMENT_HEADER_LEN,
};
use crate::log::hint::{self, Hint};
use crate::log::index::{FileInfo, Index, Loc, Tombstones};
use crate::log::segment::{
    create_segment_file, leading_id, parse_compact_tmp_name, parse_segment_name, read_range,
    segment_name, sync_dir, HINT_NAME, HINT_TMP_NAME,
};
use crate::log::spare::SPARE_NAME;
use crate::log::{LogOptions, RecoveryMode};

/// What opening a [`LogStore`](crate::LogStore) found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RecoveryReport {
    /// True when the hint file was used (only the bytes after it were replayed).
    pub used_hint: bool,
    /// Segments found.
    pub segments: usize,
    /// Batches replayed from segments.
    pub batches_replayed: u64,
    /// Torn tails cut off: the segment and the length it was truncated to.
    pub truncated: Vec<(PathBuf, u64)>,
    /// Files or tails moved aside by a salvage.
    pub moved_aside: Vec<PathBuf>,
    /// Live keys after recovery.
    pub keys: usize,
    /// Bytes of log replayed (after the hint's coverage, or all of it without a hint): what
    /// the next open replays too unless a hint is written in between.
    pub replayed_bytes: u64,
    /// Size of the hint file used (0 without one).
    pub hint_bytes: u64,
}

/// The recovered state, ready for the writer.
pub(crate) struct Recovered {
    pub index: Index,
    pub active: Arc<dyn BackendFile>,
    pub active_id: u32,
    pub active_len: u64,
    /// The active segment's file length: beyond `active_len` it holds zeros.
    pub active_capacity: u64,
    pub next_file_id: u32,
    pub report: RecoveryReport,
}

struct Segment {
    id: u32,
    path: PathBuf,
    handle: Arc<dyn BackendFile>,
    len: u64,
    kind: Option<SegmentKind>,
}

enum Action {
    Truncate { seg: usize, len: u64 },
    Remove { seg: usize },
    MoveAsideTail { seg: usize, offset: u64 },
    MoveAside { seg: usize },
}

struct Plan {
    index: Index,
    actions: Vec<Action>,
    batches: u64,
    used_hint: bool,
    replayed_bytes: u64,
}

/// Why a replay with the hint was abandoned.
enum ReplayError {
    HintMismatch(&'static str),
    Store(StoreError),
}

impl From<StoreError> for ReplayError {
    fn from(e: StoreError) -> Self {
        ReplayError::Store(e)
    }
}

pub(crate) fn recover(
    backend: &Arc<dyn Backend>,
    dir: &Path,
    options: &LogOptions,
) -> Result<Recovered, StoreError> {
    let names = backend
        .list_dir(dir)
        .map_err(|e| StoreError::io("list directory", dir, e))?;
    let mut max_id = 0u32;
    let mut ids = Vec::new();
    let mut removed_tmp = false;
    let mut has_hint = false;
    for name in &names {
        if let Some(id) = leading_id(name) {
            max_id = max_id.max(id);
        }
        if let Some(id) = parse_segment_name(name) {
            ids.push(id);
        } else if parse_compact_tmp_name(name).is_some()
            || name == HINT_TMP_NAME
            || name == SPARE_NAME
        {
            // An interrupted compaction or hint write, or a preallocated segment never used:
            // never part of the state.
            let path = dir.join(name);
            backend
                .remove_file(&path)
                .map_err(|e| StoreError::io("remove temporary file", &path, e))?;
            removed_tmp = true;
        } else if name == HINT_NAME {
            has_hint = true;
        }
    }
    if removed_tmp {
        sync_dir(backend.as_ref(), dir)?;
    }
    let mut segments = open_segments(backend, dir, ids, OpenMode::Existing)?;

    let mut hint_bytes = 0u64;
    let hint = if has_hint && options.use_hint {
        let path = dir.join(HINT_NAME);
        let bytes = backend
            .open_file(&path, OpenMode::Existing)
            .and_then(|f| {
                let len = f.len()?;
                let mut buf = vec![0u8; usize::try_from(len).map_err(std::io::Error::other)?];
                f.read_exact_at(&mut buf, 0)?;
                Ok(buf)
            })
            .map_err(|e| StoreError::io("read hint", &path, e))?;
        match hint::decode(&bytes) {
            Ok(h) => {
                hint_bytes = bytes.len() as u64;
                Some(h)
            }
            Err(reason) => {
                warn!(path = %path.display(), reason, "ignoring hint file; replaying the whole log");
                None
            }
        }
    } else {
        None
    };

    let mut plan = None;
    if let Some(h) = hint {
        match replay(&mut segments, Some(h), options) {
            Ok(p) => plan = Some(p),
            Err(ReplayError::HintMismatch(reason)) => {
                warn!(dir = %dir.display(), reason, "hint does not match the segments; replaying the whole log");
            }
            Err(ReplayError::Store(e)) => {
                warn!(dir = %dir.display(), error = %e, "replay after the hint failed; replaying the whole log");
            }
        }
    }
    let plan = match plan {
        Some(p) => p,
        None => match replay(&mut segments, None, options) {
            Ok(p) => p,
            Err(ReplayError::Store(e)) => return Err(e),
            Err(ReplayError::HintMismatch(reason)) => {
                // Unreachable without a hint; reported rather than assumed.
                return Err(StoreError::io("replay", dir, std::io::Error::other(reason)));
            }
        },
    };
    if !plan.used_hint {
        hint_bytes = 0;
    }
    let mut recovered = apply(backend, dir, segments, plan, max_id, options)?;
    recovered.report.hint_bytes = hint_bytes;
    Ok(recovered)
}

/// The log segments `ids` of `dir`, opened, in ascending id order.
fn open_segments(
    backend: &Arc<dyn Backend>,
    dir: &Path,
    mut ids: Vec<u32>,
    mode: OpenMode,
) -> Result<Vec<Segment>, StoreError> {
    ids.sort_unstable();
    let mut segments = Vec::with_capacity(ids.len());
    for id in ids {
        let path = dir.join(segment_name(id));
        let handle = backend
            .open_file(&path, mode)
            .map_err(|e| StoreError::io("open segment", &path, e))?;
        let len = handle
            .len()
            .map_err(|e| StoreError::io("stat segment", &path, e))?;
        segments.push(Segment {
            id,
            path,
            handle,
            len,
            kind: None,
        });
    }
    Ok(segments)
}

/// What [`LogStore::check`](crate::LogStore::check) found. The check changes nothing: it
/// replays every segment (the hint is ignored, so every byte is verified) and reports what a
/// salvage would keep and move aside.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CheckReport {
    /// Log and compacted segments found.
    pub segments: usize,
    /// Intact batches replayed.
    pub batches: u64,
    /// Live keys in the intact part, in all tables.
    pub keys: usize,
    /// Each table of the intact part and its live keys, by name.
    pub tables: Vec<(String, usize)>,
    /// Damaged byte ranges: what a salvage moves aside (a segment's corrupt rest, or a whole
    /// segment after it or with a bad header). Empty when the store is intact.
    pub damaged: Vec<(PathBuf, std::ops::Range<u64>)>,
    /// Torn tails: the end of the newest segment holding a batch whose write never
    /// completed. Any open cuts them off; they are not damage (such a batch was never
    /// acknowledged under `Durability::Sync`).
    pub torn: Vec<(PathBuf, std::ops::Range<u64>)>,
}

impl CheckReport {
    /// True when nothing would be moved aside.
    pub fn is_intact(&self) -> bool {
        self.damaged.is_empty()
    }
}

/// Replays every segment of `dir` without changing anything (segments opened read-only; no
/// lock, no truncation, no temporary files removed): see [`CheckReport`].
pub(crate) fn check(backend: &Arc<dyn Backend>, dir: &Path) -> Result<CheckReport, StoreError> {
    let names = backend
        .list_dir(dir)
        .map_err(|e| StoreError::io("list directory", dir, e))?;
    let ids = names.iter().filter_map(|n| parse_segment_name(n)).collect();
    // Read-only: the file system itself guarantees the check changes nothing.
    let mut segments = open_segments(backend, dir, ids, OpenMode::ReadOnly)?;
    let options = LogOptions {
        recovery: RecoveryMode::Salvage,
        ..LogOptions::default()
    };
    let plan = match replay(&mut segments, None, &options) {
        Ok(p) => p,
        Err(ReplayError::Store(e)) => return Err(e),
        Err(ReplayError::HintMismatch(reason)) => {
            return Err(StoreError::io("check", dir, std::io::Error::other(reason)));
        }
    };
    let mut report = CheckReport {
        segments: segments.len(),
        batches: plan.batches,
        keys: plan.index.key_count(),
        ..CheckReport::default()
    };
    let mut tables: Vec<(String, usize)> = plan
        .index
        .tables
        .iter()
        .map(|(name, keys)| (name.to_string(), keys.len()))
        .collect();
    tables.sort();
    report.tables = tables;
    for action in &plan.actions {
        let (seg, start, damaged) = match *action {
            Action::Truncate { seg, len } => (seg, len, false),
            Action::Remove { .. } => continue,
            Action::MoveAside { seg } => (seg, 0, true),
            Action::MoveAsideTail { seg, offset } => (seg, offset, true),
        };
        let Some(s) = segments.get(seg) else { continue };
        let range = (s.path.clone(), start..s.len);
        if damaged {
            report.damaged.push(range);
        } else {
            report.torn.push(range);
        }
    }
    Ok(report)
}

/// Replays the segments into an index, planning (not doing) truncations and salvage moves.
fn replay(
    segments: &mut [Segment],
    hint: Option<Hint>,
    options: &LogOptions,
) -> Result<Plan, ReplayError> {
    let mut index = Index::default();
    let mut actions = Vec::new();
    let mut covered: HashMap<u32, (u64, SegmentKind, u64)> = HashMap::new();
    let used_hint = hint.is_some();
    if let Some(h) = hint {
        for f in &h.files {
            covered.insert(f.id, (f.covered, f.kind, f.max_seq));
        }
        for f in &h.files {
            let Some(seg) = segments.iter().find(|s| s.id == f.id) else {
                return Err(ReplayError::HintMismatch("a covered segment is missing"));
            };
            if seg.len < f.covered {
                return Err(ReplayError::HintMismatch(
                    "a covered segment is shorter than covered",
                ));
            }
        }
        index.last_seq = h.last_seq;
        index.tables = h.tables.into_iter().collect();
    }

    // Segment headers first: the newest log segment is the only one allowed a torn tail.
    let last_id = segments.last().map(|s| s.id);
    for (i, seg) in segments.iter_mut().enumerate() {
        let head_len = seg.len.min(SEGMENT_HEADER_LEN as u64);
        let head = read_range(seg.handle.as_ref(), &seg.path, 0, head_len)?;
        match decode_segment_header(&head, seg.id) {
            Ok(kind) => {
                if let Some((_, hk, _)) = covered.get(&seg.id) {
                    if *hk != kind {
                        return Err(ReplayError::HintMismatch(
                            "segment kind differs from the hint",
                        ));
                    }
                }
                seg.kind = Some(kind);
            }
            Err(kind) => {
                let torn_create = Some(seg.id) == last_id
                    && (seg.len < SEGMENT_HEADER_LEN as u64 || head.iter().all(|b| *b == 0));
                if torn_create && !covered.contains_key(&seg.id) {
                    // Created but its header never became durable: it holds nothing.
                    actions.push(Action::Remove { seg: i });
                } else if options.recovery == RecoveryMode::Salvage {
                    warn!(path = %seg.path.display(), %kind, "salvage: moving aside a segment with a bad header");
                    actions.push(Action::MoveAside { seg: i });
                } else {
                    return Err(ReplayError::Store(StoreError::Corrupt {
                        path: seg.path.clone(),
                        offset: 0,
                        kind,
                    }));
                }
            }
        }
    }
    let tail_log = segments
        .iter()
        .filter(|s| s.kind == Some(SegmentKind::Log))
        .map(|s| s.id)
        .max();

    let mut tombstones = Tombstones::new();
    let mut batches = 0u64;
    let mut replayed_bytes = 0u64;
    let mut salvaged_log: Option<u32> = None;
    for (i, seg) in segments.iter().enumerate() {
        let Some(kind) = seg.kind else { continue };
        if kind == SegmentKind::Log && salvaged_log.is_some() {
            actions.push(Action::MoveAside { seg: i });
            continue;
        }
        if seg.len > u64::from(u32::MAX) {
            return Err(ReplayError::Store(StoreError::Corrupt {
                path: seg.path.clone(),
                offset: u64::from(u32::MAX),
                kind: CorruptionKind::BadBatchLength,
            }));
        }
        let (start, hint_max_seq) = match covered.get(&seg.id) {
            Some((cov, _, max_seq)) => (*cov, *max_seq),
            None => (SEGMENT_HEADER_LEN as u64, 0),
        };
        index.files.insert(
            seg.id,
            FileInfo {
                handle: seg.handle.clone(),
                path: seg.path.clone(),
                kind,
                len: seg.len,
                live: 0,
                max_seq: hint_max_seq,
            },
        );
        let bytes = read_range(seg.handle.as_ref(), &seg.path, start, seg.len - start)?;
        let is_tail = kind == SegmentKind::Log && Some(seg.id) == tail_log;
        let mut pos = 0usize;
        let mut prev_last: Option<u64> = None;
        while pos < bytes.len() {
            // Log batches follow each other's sequence numbers; a compacted segment's batches
            // carry the copied records' own, in no order.
            let fault = match decode_batch(&bytes, pos, kind == SegmentKind::Log) {
                Ok(batch) => if let Some(prev) = prev_last.filter(|_| kind == SegmentKind::Log) {
                    if batch.first_seq != prev.wrapping_add(1) {
                        Some(BatchFault::Corrupt(CorruptionKind::BadSequence {
                            expected: prev.wrapping_add(1),
                            found: batch.first_seq,
                        }))
                    } else {
                        None
                    }
                } else {
                    None
                }
                .map_or(Ok(batch), Err),
                Err(f) => Err(f),
            };
            let batch = match fault {
                Ok(b) => b,
                Err(_) if kind == SegmentKind::Log && zero_rest(&bytes, pos) => {
                    // Zero-filled room after the last batch: the end of the segment.
                    let offset = start + pos as u64;
                    if is_tail && !options.preallocate {
                        actions.push(Action::Truncate {
                            seg: i,
                            len: offset,
                        });
                    }
                    if let Some(f) = index.files.get_mut(&seg.id) {
                        f.len = offset;
                    }
                    break;
                }
                Err(fault) => {
                    let offset = start + pos as u64;
                    let kind_err = match fault {
                        BatchFault::Torn if is_tail => None,
                        BatchFault::Corrupt(_) if is_tail && torn_before_zeros(&bytes, pos) => None,
                        BatchFault::Torn => Some(CorruptionKind::TornSealedSegment),
                        BatchFault::Corrupt(k) => Some(k),
                    };
                    match kind_err {
                        None => {
                            warn!(path = %seg.path.display(), offset, "truncating a torn tail");
                            actions.push(Action::Truncate {
                                seg: i,
                                len: offset,
                            });
                        }
                        Some(k) if options.recovery == RecoveryMode::Salvage => {
                            warn!(path = %seg.path.display(), offset, kind = %k, "salvage: moving aside the rest of a corrupt segment");
                            actions.push(Action::MoveAsideTail { seg: i, offset });
                            if kind == SegmentKind::Log {
                                salvaged_log = Some(seg.id);
                            }
                        }
                        Some(k) => {
                            return Err(ReplayError::Store(StoreError::Corrupt {
                                path: seg.path.clone(),
                                offset,
                                kind: k,
                            }))
                        }
                    }
                    if let Some(f) = index.files.get_mut(&seg.id) {
                        f.len = offset;
                    }
                    break;
                }
            };
            batches += 1;
            if let Some(last) = batch.records.last() {
                prev_last = Some(last.seq);
            }
            for rec in &batch.records {
                let offset = start + rec.offset as u64;
                let loc = Loc {
                    seq: rec.seq,
                    file: seg.id,
                    // The segment is below 4 GiB (checked above), so these fit.
                    offset: offset as u32,
                    len: rec.len as u32,
                };
                index.last_seq = index.last_seq.max(rec.seq);
                if let Some(f) = index.files.get_mut(&seg.id) {
                    f.max_seq = f.max_seq.max(rec.seq);
                }
                if rec.is_put {
                    index.recover_put(rec.table, rec.key, loc, &tombstones);
                } else {
                    index.recover_delete(rec.table, rec.key, rec.seq, &mut tombstones);
                }
            }
            pos = batch.end;
        }
        replayed_bytes += index
            .files
            .get(&seg.id)
            .map_or(0, |f| f.len.saturating_sub(start));
    }
    if used_hint {
        // Live bytes of hint entries were not counted by `put`: count them now.
        let mut live: HashMap<u32, u64> = HashMap::new();
        for t in index.tables.values() {
            for loc in t.values() {
                *live.entry(loc.file).or_default() += u64::from(loc.len);
            }
        }
        for (id, f) in index.files.iter_mut() {
            f.live = live.get(id).copied().unwrap_or(0);
        }
        // Every hint entry must point into a segment that is still there.
        for t in index.tables.values() {
            for loc in t.values() {
                if !index.files.contains_key(&loc.file) {
                    return Err(ReplayError::HintMismatch(
                        "an entry points to a vanished segment",
                    ));
                }
            }
        }
    }
    Ok(Plan {
        index,
        actions,
        batches,
        used_hint,
        replayed_bytes,
    })
}

/// True when everything from `pos` on is zero: a preallocated segment's unused room (a batch
/// header starts with its magic, never with a zero byte). A sealed segment can end so too:
/// rotation leaves the rest of its room as it is.
fn zero_rest(bytes: &[u8], pos: usize) -> bool {
    bytes
        .get(pos..)
        .is_some_and(|rest| rest.iter().all(|b| *b == 0))
}

/// True when the batch at `pos` is incomplete once the zero bytes at the end of `bytes` are
/// cut off: what failed its checks is a batch whose end never reached the disk.
fn torn_before_zeros(bytes: &[u8], pos: usize) -> bool {
    let zeros = bytes.iter().rev().take_while(|b| **b == 0).count();
    let written = bytes.len() - zeros;
    zeros > 0
        && bytes
            .get(..written)
            .is_some_and(|w| matches!(decode_batch(w, pos, true), Err(BatchFault::Torn)))
}

/// `path` with the extension `ext`, or `ext.1`, `ext.2`, ... when that name is taken: the
/// same segment can be salvaged at the same offset again (the newest segment is reused after
/// a salvage cut it), and a salvage never replaces what an earlier one kept.
fn unused_name(
    backend: &Arc<dyn Backend>,
    dir: &Path,
    path: &Path,
    ext: &str,
) -> Result<PathBuf, StoreError> {
    let names = backend
        .list_dir(dir)
        .map_err(|e| StoreError::io("list directory", dir, e))?;
    let taken = |p: &Path| {
        p.file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| names.iter().any(|x| x == n))
    };
    let mut to = path.with_extension(ext);
    let mut n = 0u32;
    while taken(&to) {
        n += 1;
        to = path.with_extension(format!("{ext}.{n}"));
    }
    Ok(to)
}

/// Carries out the plan's file changes and opens the segment the writer appends to.
fn apply(
    backend: &Arc<dyn Backend>,
    dir: &Path,
    segments: Vec<Segment>,
    plan: Plan,
    max_id: u32,
    options: &LogOptions,
) -> Result<Recovered, StoreError> {
    let Plan {
        mut index,
        actions,
        batches,
        used_hint,
        replayed_bytes,
    } = plan;
    let mut report = RecoveryReport {
        used_hint,
        segments: segments.len(),
        batches_replayed: batches,
        replayed_bytes,
        ..RecoveryReport::default()
    };
    let mut dir_changed = false;
    for action in actions {
        match action {
            Action::Truncate { seg, len } => {
                let Some(s) = segments.get(seg) else { continue };
                s.handle
                    .set_len(len)
                    .and_then(|()| s.handle.sync_data())
                    .map_err(|e| StoreError::io("truncate torn tail", &s.path, e))?;
                report.truncated.push((s.path.clone(), len));
            }
            Action::Remove { seg } => {
                let Some(s) = segments.get(seg) else { continue };
                backend
                    .remove_file(&s.path)
                    .map_err(|e| StoreError::io("remove empty segment", &s.path, e))?;
                index.files.remove(&s.id);
                dir_changed = true;
            }
            Action::MoveAside { seg } => {
                let Some(s) = segments.get(seg) else { continue };
                let to = s.path.with_extension("log.corrupt");
                backend
                    .rename(&s.path, &to)
                    .map_err(|e| StoreError::io("move aside corrupt segment", &s.path, e))?;
                index.files.remove(&s.id);
                report.moved_aside.push(to);
                dir_changed = true;
            }
            Action::MoveAsideTail { seg, offset } => {
                let Some(s) = segments.get(seg) else { continue };
                let tail = read_range(s.handle.as_ref(), &s.path, offset, s.len - offset)?;
                let to = unused_name(backend, dir, &s.path, &format!("log.corrupt-{offset:x}"))?;
                let aside = backend
                    .open_file(&to, OpenMode::CreateNew)
                    .map_err(|e| StoreError::io("create salvage file", &to, e))?;
                aside
                    .write_all_at(&tail, 0)
                    .and_then(|()| aside.sync_data())
                    .map_err(|e| StoreError::io("write salvage file", &to, e))?;
                s.handle
                    .set_len(offset)
                    .and_then(|()| s.handle.sync_data())
                    .map_err(|e| StoreError::io("truncate corrupt segment", &s.path, e))?;
                report.moved_aside.push(to);
                dir_changed = true;
            }
        }
    }
    if !report.moved_aside.is_empty() {
        // The hint may cover what was moved aside.
        let hint = dir.join(HINT_NAME);
        if backend
            .list_dir(dir)
            .is_ok_and(|n| n.iter().any(|n| n == HINT_NAME))
        {
            backend
                .remove_file(&hint)
                .map_err(|e| StoreError::io("remove hint", &hint, e))?;
        }
    }
    if dir_changed {
        sync_dir(backend.as_ref(), dir)?;
    }

    let mut next_file_id = max_id.checked_add(1).ok_or_else(|| StoreError::Corrupt {
        path: dir.to_path_buf(),
        offset: 0,
        kind: CorruptionKind::BadSegmentHeader,
    })?;
    let reuse = index
        .files
        .iter()
        .next_back()
        .filter(|(_, f)| f.kind == SegmentKind::Log && f.len < options.segment_bytes)
        .map(|(id, f)| (*id, f.handle.clone(), f.len));
    let (active_id, active, active_len, active_capacity) = match reuse {
        Some((id, handle, len)) => {
            let path = dir.join(segment_name(id));
            let capacity = handle
                .len()
                .map_err(|e| StoreError::io("stat segment", &path, e))?;
            (id, handle, len, capacity)
        }
        None => {
            let id = next_file_id;
            next_file_id += 1;
            let (handle, path) = create_segment_file(
                backend.as_ref(),
                dir,
                &segment_name(id),
                id,
                SegmentKind::Log,
            )?;
            sync_dir(backend.as_ref(), dir)?;
            index
                .files
                .insert(id, FileInfo::new_log(handle.clone(), path));
            (
                id,
                handle,
                SEGMENT_HEADER_LEN as u64,
                SEGMENT_HEADER_LEN as u64,
            )
        }
    };
    index.active = active_id;
    report.keys = index.key_count();
    info!(
        dir = %dir.display(),
        segments = report.segments,
        batches = report.batches_replayed,
        keys = report.keys,
        used_hint,
        "store recovered"
    );
    Ok(Recovered {
        index,
        active,
        active_id,
        active_len,
        active_capacity,
        next_file_id,
        report,
    })
}
