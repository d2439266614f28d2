//! The group-commit writer: one thread owns the active segment, drains every queued batch into
//! one write and (for `Durability::Sync`) one fdatasync, then acknowledges them all.
//!
//! ```text
//!  callers ──submit──► channel ──► writer thread
//!                                   1. take the first request, then every queued one
//!                                      (up to max_group_bytes); under Sync, while the group
//!                                      is smaller than the last one, wait up to half the
//!                                      last fdatasync time (<= 500 us) for stragglers
//!                                   2. rotate the segment if the group would overflow it
//!                                   3. encode all batches into one buffer: one write
//!                                   4. fdatasync (Sync; Interval when due)
//!                                   5. point the index at the new records (readers see them)
//!                                   6. acknowledge every caller of the group
//! ```
//!
//! A failed write or fdatasync poisons the store: the failure goes to every caller of the
//! group and every later commit is refused, because after a failed fsync the kernel may have
//! dropped the dirty pages and a retry that "succeeds" would lie.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};
use tracing::{debug, error};

use crate::backend::BackendFile;
use crate::batch::Op;
use crate::error::StoreError;
use crate::log::format::{encode_batch, SegmentKind, SEGMENT_HEADER_LEN};
use crate::log::index::{FileInfo, Loc};
use crate::log::segment::{create_segment_file, segment_name, sync_dir};
use crate::log::{Durability, Shared};
use crate::store::{CommitInfo, Completer};

/// What callers send the writer.
pub(crate) enum Request {
    Commit {
        ops: Vec<Op>,
        done: Completer,
    },
    /// Fdatasync everything written so far.
    Flush {
        done: Completer,
    },
    /// Flush, then stop.
    Shutdown {
        done: Completer,
    },
    /// Flush, then encode the hint of exactly the durable state (nothing unsynced exists then,
    /// and nothing else appends to the log while the writer is busy with this).
    Snapshot {
        reply: crossbeam_channel::Sender<Result<Vec<u8>, StoreError>>,
    },
}

pub(crate) struct Writer {
    pub shared: Arc<Shared>,
    pub rx: Receiver<Request>,
    pub active: Arc<dyn BackendFile>,
    pub active_id: u32,
    pub active_len: u64,
    pub buf: Vec<u8>,
    /// Bytes written since the last fdatasync.
    pub unsynced: bool,
    pub last_sync: Instant,
    /// Commits in the previous group.
    pub last_group: usize,
    /// How long the previous fdatasync took.
    pub last_sync_time: Duration,
}

/// Longest the writer waits for more commits to join a group (see `run`).
const MAX_GATHER: Duration = Duration::from_micros(500);

impl Writer {
    pub(crate) fn run(mut self) {
        let interval = match self.shared.options.durability {
            Durability::Interval(ms) => Some(Duration::from_millis(ms.max(1))),
            _ => None,
        };
        loop {
            let first = match interval {
                Some(every) if self.unsynced => {
                    match self.rx.recv_deadline(self.last_sync + every) {
                        Ok(r) => r,
                        Err(RecvTimeoutError::Timeout) => {
                            let _ = self.sync();
                            continue;
                        }
                        Err(RecvTimeoutError::Disconnected) => break,
                    }
                }
                _ => match self.rx.recv() {
                    Ok(r) => r,
                    Err(_) => break,
                },
            };
            let mut commits: Vec<(Vec<Op>, Completer)> = Vec::new();
            let mut flushes: Vec<Completer> = Vec::new();
            let mut shutdown: Option<Completer> = None;
            let mut snapshots = Vec::new();
            let mut bytes = 0usize;
            let mut next = Some(first);
            let gather_until = match self.shared.options.durability {
                Durability::Sync if self.last_group > 1 => {
                    Some(Instant::now() + (self.last_sync_time / 2).min(MAX_GATHER))
                }
                _ => None,
            };
            while let Some(req) = next.take() {
                match req {
                    Request::Commit { ops, done } => {
                        bytes += ops.iter().map(Op::encoded_len).sum::<usize>();
                        commits.push((ops, done));
                    }
                    Request::Flush { done } => flushes.push(done),
                    Request::Shutdown { done } => shutdown = Some(done),
                    Request::Snapshot { reply } => snapshots.push(reply),
                }
                if shutdown.is_none() && bytes < self.shared.options.max_group_bytes {
                    next = self.rx.try_recv().ok();
                    if next.is_none() && gather_until.is_some() && commits.len() < self.last_group {
                        // Stragglers of the last group are still re-submitting: wait for them
                        // a little (at most half an fdatasync) rather than pay another one.
                        next = gather_until.and_then(|d| self.rx.recv_deadline(d).ok());
                    }
                }
            }
            if !commits.is_empty() {
                self.last_group = commits.len();
            }
            if !commits.is_empty() {
                self.commit_group(commits);
            }
            if !snapshots.is_empty() {
                let result = self
                    .sync()
                    .map(|()| crate::log::hint::encode(&self.shared.index.read()));
                for reply in snapshots {
                    let _ = reply.send(
                        result
                            .as_ref()
                            .map(Vec::clone)
                            .map_err(StoreError::duplicate),
                    );
                }
            }
            if !flushes.is_empty() || shutdown.is_some() {
                let result = self.sync();
                for done in flushes {
                    done.complete(
                        result
                            .as_ref()
                            .map(|_| self.info())
                            .map_err(StoreError::duplicate),
                    );
                }
                if let Some(done) = shutdown {
                    done.complete(result.map(|_| self.info()));
                    return;
                }
            }
        }
        // Every sender is gone: make what was acknowledged durable before exiting.
        let _ = self.sync();
    }

    fn info(&self) -> CommitInfo {
        CommitInfo {
            last_seq: self.shared.index.read().last_seq,
        }
    }

    /// Fdatasyncs the active segment if anything is unsynced; poisons on failure.
    fn sync(&mut self) -> Result<(), StoreError> {
        if let Some(cause) = self.shared.poisoned() {
            return Err(self.shared.poison_error(cause));
        }
        if !self.unsynced {
            return Ok(());
        }
        let started = Instant::now();
        match self.active.sync_data() {
            Ok(()) => {
                self.unsynced = false;
                self.last_sync = Instant::now();
                self.last_sync_time = self.last_sync - started;
                Ok(())
            }
            Err(e) => {
                let err = StoreError::io("fdatasync", self.path(), e);
                self.shared.poison(&err);
                Err(err)
            }
        }
    }

    fn path(&self) -> std::path::PathBuf {
        self.shared.dir.join(segment_name(self.active_id))
    }

    /// Seals the active segment and starts a new one.
    fn rotate(&mut self) -> Result<(), StoreError> {
        self.active
            .sync_data()
            .map_err(|e| StoreError::io("fdatasync", self.path(), e))?;
        self.unsynced = false;
        let id = self.shared.next_file_id.fetch_add(1, Ordering::Relaxed);
        let (handle, path) = create_segment_file(
            self.shared.backend.as_ref(),
            &self.shared.dir,
            &segment_name(id),
            id,
            SegmentKind::Log,
        )?;
        sync_dir(self.shared.backend.as_ref(), &self.shared.dir)?;
        {
            let mut index = self.shared.index.write();
            index
                .files
                .insert(id, FileInfo::new_log(handle.clone(), path));
            index.active = id;
        }
        debug!(segment = id, "rotated to a new segment");
        self.active = handle;
        self.active_id = id;
        self.active_len = SEGMENT_HEADER_LEN as u64;
        self.shared.maybe_trigger_compaction();
        Ok(())
    }

    fn fail_all(&self, commits: Vec<(Vec<Op>, Completer)>, err: &StoreError) {
        for (_, done) in commits {
            done.complete(Err(err.duplicate()));
        }
    }

    fn commit_group(&mut self, commits: Vec<(Vec<Op>, Completer)>) {
        if let Some(cause) = self.shared.poisoned() {
            let err = self.shared.poison_error(cause);
            return self.fail_all(commits, &err);
        }
        let group_len: u64 = commits
            .iter()
            .map(|(ops, _)| {
                (ops.iter().map(Op::encoded_len).sum::<usize>() + crate::batch::BATCH_OVERHEAD)
                    as u64
            })
            .sum();
        if self.active_len > SEGMENT_HEADER_LEN as u64
            && self.active_len + group_len > self.shared.options.segment_bytes
        {
            if let Err(e) = self.rotate() {
                error!(error = %e, "segment rotation failed; refusing further writes");
                self.shared.poison(&e);
                return self.fail_all(commits, &e);
            }
        }
        self.buf.clear();
        let mut seq = self.shared.index.read().last_seq;
        let mut records = Vec::new();
        let mut firsts = Vec::with_capacity(commits.len());
        for (ops, _) in &commits {
            firsts.push(seq + 1);
            encode_batch(&mut self.buf, seq + 1, ops, &mut records);
            seq += ops.len() as u64;
        }
        if let Err(e) = self.active.write_all_at(&self.buf, self.active_len) {
            let err = StoreError::io("write", self.path(), e);
            error!(error = %err, "log write failed; refusing further writes");
            self.shared.poison(&err);
            return self.fail_all(commits, &err);
        }
        self.unsynced = true;
        let must_sync = match self.shared.options.durability {
            Durability::Sync => true,
            Durability::Interval(ms) => self.last_sync.elapsed() >= Duration::from_millis(ms),
            Durability::Buffered => false,
        };
        if must_sync {
            if let Err(err) = self.sync() {
                error!(error = %err, "fdatasync failed; refusing further writes");
                return self.fail_all(commits, &err);
            }
        }
        let base = self.active_len;
        self.active_len += self.buf.len() as u64;
        let mut acks = Vec::with_capacity(commits.len());
        {
            let mut index = self.shared.index.write();
            let mut rec = records.iter();
            for ((ops, done), first) in commits.into_iter().zip(firsts) {
                for (i, op) in ops.iter().enumerate() {
                    let Some((offset, len)) = rec.next() else {
                        break;
                    };
                    let loc = Loc {
                        seq: first + i as u64,
                        file: self.active_id,
                        // Segments stay below 4 GiB: at most segment_bytes (<= 1 GiB) plus
                        // one group (<= max_group_bytes + one 64 MiB batch).
                        offset: (base + *offset as u64) as u32,
                        len: *len as u32,
                    };
                    match op {
                        Op::Put { table, key, .. } => index.put(table, key, loc),
                        Op::Delete { table, key } => {
                            index.delete(table, key);
                            if let Some(f) = index.files.get_mut(&self.active_id) {
                                f.max_seq = f.max_seq.max(loc.seq);
                            }
                        }
                    }
                }
                let last_seq = first + ops.len() as u64 - 1;
                acks.push((done, last_seq));
            }
            index.last_seq = seq;
            if let Some(f) = index.files.get_mut(&self.active_id) {
                f.len = self.active_len;
            }
        }
        for (done, last_seq) in acks {
            done.complete(Ok(CommitInfo { last_seq }));
        }
        self.shared.maybe_trigger_compaction();
    }
}
