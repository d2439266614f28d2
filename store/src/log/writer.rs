//! The writer: the one owner of the active segment. It encodes batches into groups, appends
//! each group with one write, fdatasyncs, points the index at the new records and
//! acknowledges the callers. Two drivers share it:
//!
//! - the group-commit thread ([`GroupCommit::run`], the production path), fed by a channel;
//! - the stepped driver ([`Stepped`](crate::log::stepped::Stepped)), called by the store's
//!   caller on its own thread (no thread, no clock; see the `log` module docs).
//!
//! ```text
//!  callers ──submit──► channel ──► writer thread
//!                                   1. take the first request, then every queued one
//!                                      (up to max_group_bytes); under Sync, while the group
//!                                      is smaller than the last one, wait up to half the
//!                                      last fdatasync time (<= 500 us) for stragglers
//!                                   2. rotate the segment if the group would overflow it
//!                                      (into a preallocated spare when one is ready,
//!                                      see `spare`)
//!                                   3. encode all batches into one buffer: one write
//!                                   4. fdatasync (Sync; Interval when due)
//!                                   5. point the index at the new records (readers see them)
//!                                   6. acknowledge every caller of the group
//! ```
//!
//! Steps 2-3 are [`Writer::write_group`], step 4 [`Writer::sync`], steps 5-6
//! [`Writer::publish`]; the stepped driver runs the same three at the caller's command.
//!
//! A failed write or fdatasync poisons the store: the failure goes to every caller of the
//! group and every later commit is refused, because after a failed fsync the kernel may have
//! dropped the dirty pages and a retry that "succeeds" would lie.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};
use tracing::{debug, error, warn};

use crate::backend::BackendFile;
use crate::batch::Op;
use crate::error::StoreError;
use crate::log::format::{encode_batch, encode_segment_header, SegmentKind, SEGMENT_HEADER_LEN};
use crate::log::index::{FileInfo, Loc};
use crate::log::segment::{create_segment_file, segment_name, sync_dir};
use crate::log::spare::{next_capacity, Spare, Spares, MIN_SPARE};
use crate::log::{Durability, Shared};
use crate::store::{CommitInfo, Completer};

/// What callers send the writer thread.
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

/// A batch waiting to be written: its operations and the completer of its handle.
pub(crate) type Pending = (Vec<Op>, Completer);

/// The active segment and everything needed to append to it. Owned by exactly one driver.
pub(crate) struct Writer {
    pub shared: Arc<Shared>,
    pub active: Arc<dyn BackendFile>,
    pub active_id: u32,
    pub active_len: u64,
    pub buf: Vec<u8>,
    /// Bytes written since the last fdatasync.
    pub unsynced: bool,
    /// Sequence number of the last record written (the index's `last_seq` lags behind it
    /// while a written group waits for its fdatasync).
    pub last_seq: u64,
    /// End of the active segment's zero-filled room: a group that ends at or before it is
    /// written in place, without changing the file's size.
    pub active_capacity: u64,
    /// Preallocated segments to rotate into; `None` with `preallocate` off.
    pub spares: Option<Spares>,
    /// Size of the spare asked for next.
    pub next_spare: u64,
}

/// A group appended to a segment whose records the index does not point to yet: the
/// outcome of [`Writer::write_group`], consumed by [`Writer::publish`] or [`Written::fail`].
#[must_use = "a written group must be published or failed, or its callers wait forever"]
pub(crate) struct Written {
    /// The segment the group went to.
    file: u32,
    /// Offset of the group in that segment.
    base: u64,
    /// The segment's length after the group.
    end: u64,
    /// Sequence number of the group's last record.
    last_seq: u64,
    /// Offset (in the group) and length of every record, in order.
    records: Vec<(usize, usize)>,
    /// Every batch of the group with the sequence number of its first record.
    commits: Vec<(Vec<Op>, Completer, u64)>,
}

impl Written {
    /// Number of batches in the group.
    pub(crate) fn batches(&self) -> usize {
        self.commits.len()
    }

    /// Resolves every caller of the group with `err`.
    pub(crate) fn fail(self, err: &StoreError) {
        for (_, done, _) in self.commits {
            done.complete(Err(err.duplicate()));
        }
    }
}

/// Fails every batch of `commits` with `err`.
pub(crate) fn fail_all(commits: Vec<Pending>, err: &StoreError) {
    for (_, done) in commits {
        done.complete(Err(err.duplicate()));
    }
}

impl Writer {
    /// Fdatasyncs the active segment if anything is unsynced; poisons on failure.
    pub(crate) fn sync(&mut self) -> Result<(), StoreError> {
        if let Some(cause) = self.shared.poisoned() {
            return Err(self.shared.poison_error(cause));
        }
        if !self.unsynced {
            return Ok(());
        }
        match self.active.sync_data() {
            Ok(()) => {
                self.unsynced = false;
                Ok(())
            }
            Err(e) => {
                let err = StoreError::io("fdatasync", self.path(), e);
                self.shared.poison(&err);
                Err(err)
            }
        }
    }

    pub(crate) fn info(&self) -> CommitInfo {
        CommitInfo {
            last_seq: self.shared.index.read().last_seq,
        }
    }

    fn path(&self) -> std::path::PathBuf {
        self.shared.dir.join(segment_name(self.active_id))
    }

    /// Asks for the next spare segment (when preallocating) once the active segment is half
    /// full: half of its zero-filled room, or of the first spare's size for a segment that
    /// grows. A store that writes little never makes a spare at all.
    pub(crate) fn maybe_request_spare(&mut self) {
        let room = self
            .active_capacity
            .max(MIN_SPARE)
            .min(self.shared.options.segment_bytes);
        if self.active_len < room / 2 {
            return;
        }
        let capacity = self.next_spare;
        if let Some(spares) = &mut self.spares {
            spares.request(capacity);
        }
    }

    /// True when the next group should start a new segment: it would take the active one past
    /// `segment_bytes`, or past its zero-filled room while a preallocated one is ready. A
    /// segment holding no batch yet takes any group.
    fn must_rotate(&mut self, group_len: u64) -> bool {
        let end = self.active_len + group_len;
        self.active_len > SEGMENT_HEADER_LEN as u64
            && (end > self.shared.options.segment_bytes
                || (end > self.active_capacity
                    && self.spares.as_mut().is_some_and(Spares::is_ready)))
    }

    /// Seals the active segment (fdatasync: everything written to it is durable afterwards)
    /// and starts a new one: the ready spare if there is one, else a new empty file.
    fn rotate(&mut self) -> Result<(), StoreError> {
        self.active
            .sync_data()
            .map_err(|e| StoreError::io("fdatasync", self.path(), e))?;
        self.unsynced = false;
        let id = self.shared.next_file_id.fetch_add(1, Ordering::Relaxed);
        let spare = self.spares.as_mut().and_then(Spares::take);
        let adopted = spare.and_then(|spare| {
            let path = self.shared.dir.join(segment_name(id));
            match self.adopt_spare(&spare, id, &path) {
                Ok(()) => {
                    self.next_spare =
                        next_capacity(spare.capacity, self.shared.options.segment_bytes);
                    Some((spare.handle, path, spare.capacity))
                }
                // The rename is atomic: segment `id` does not exist, and what is left of the
                // spare is removed by the next preparation or open. A spare is only an
                // optimisation, so the writer goes on as without one.
                Err(e) => {
                    warn!(error = %e, "could not rotate into the preallocated segment; creating the next segment instead");
                    None
                }
            }
        });
        let (handle, path, capacity) = match adopted {
            Some(adopted) => adopted,
            None => {
                let (handle, path) = create_segment_file(
                    self.shared.backend.as_ref(),
                    &self.shared.dir,
                    &segment_name(id),
                    id,
                    SegmentKind::Log,
                )?;
                (handle, path, SEGMENT_HEADER_LEN as u64)
            }
        };
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
        self.active_capacity = capacity;
        self.shared.maybe_trigger_compaction();
        Ok(())
    }

    /// Turns `spare` into log segment `id` at `path`: its header is written over the zeros and
    /// made durable before the rename, so the segment is never seen without it. The caller
    /// fsyncs the directory.
    fn adopt_spare(
        &self,
        spare: &Spare,
        id: u32,
        path: &std::path::Path,
    ) -> Result<(), StoreError> {
        spare
            .handle
            .write_all_at(&encode_segment_header(id, SegmentKind::Log), 0)
            .and_then(|()| spare.handle.sync_data())
            .map_err(|e| StoreError::io("write segment header", &spare.path, e))?;
        self.shared
            .backend
            .rename(&spare.path, path)
            .map_err(|e| StoreError::io("rename spare segment", &spare.path, e))
    }

    /// Appends `commits` as one group: rotates first if the group would overflow the active
    /// segment, then encodes every batch into one buffer and writes it with one call. Does
    /// not fdatasync. On failure every caller of the group has been failed (with copies of the
    /// returned error) and the store is poisoned.
    ///
    /// `on_rotate` runs right after a rotation, with its outcome, before the group is
    /// written. A successful rotation fdatasynced every group written so far, so a driver
    /// holding unpublished groups publishes them then: the index must know all of a segment
    /// once it is sealed (compaction reads sealed segments through the index).
    pub(crate) fn write_group(
        &mut self,
        commits: Vec<Pending>,
        on_rotate: impl FnOnce(&Writer, Result<(), &StoreError>),
    ) -> Result<Written, StoreError> {
        if let Some(cause) = self.shared.poisoned() {
            let err = self.shared.poison_error(cause);
            fail_all(commits, &err);
            return Err(err);
        }
        let group_len: u64 = commits
            .iter()
            .map(|(ops, _)| {
                (ops.iter().map(Op::encoded_len).sum::<usize>() + crate::batch::BATCH_OVERHEAD)
                    as u64
            })
            .sum();
        if self.must_rotate(group_len) {
            let rotated = self.rotate();
            on_rotate(self, rotated.as_ref().map(|_| ()));
            if let Err(e) = rotated {
                error!(error = %e, "segment rotation failed; refusing further writes");
                self.shared.poison(&e);
                fail_all(commits, &e);
                return Err(e);
            }
        }
        self.buf.clear();
        let mut seq = self.last_seq;
        let mut records = Vec::new();
        let mut batches = Vec::with_capacity(commits.len());
        for (ops, done) in commits {
            let first = seq + 1;
            encode_batch(&mut self.buf, first, &ops, &mut records);
            seq += ops.len() as u64;
            batches.push((ops, done, first));
        }
        if let Err(e) = self.active.write_all_at(&self.buf, self.active_len) {
            let err = StoreError::io("write", self.path(), e);
            error!(error = %err, "log write failed; refusing further writes");
            self.shared.poison(&err);
            for (_, done, _) in batches {
                done.complete(Err(err.duplicate()));
            }
            return Err(err);
        }
        self.unsynced = true;
        self.shared.appended(self.buf.len() as u64);
        self.last_seq = seq;
        let base = self.active_len;
        self.active_len += self.buf.len() as u64;
        self.maybe_request_spare();
        Ok(Written {
            file: self.active_id,
            base,
            end: self.active_len,
            last_seq: seq,
            records,
            commits: batches,
        })
    }

    /// Points the index at the records of `written` (readers see them from now on) and
    /// acknowledges its callers. Groups are published in the order they were written.
    pub(crate) fn publish(&self, written: Written) {
        let Written {
            file,
            base,
            end,
            last_seq,
            records,
            commits,
        } = written;
        let mut acks = Vec::with_capacity(commits.len());
        {
            let mut index = self.shared.index.write();
            debug_assert!(index.last_seq < last_seq, "groups are published in order");
            let mut rec = records.iter();
            for (ops, done, first) in commits {
                for (i, op) in ops.iter().enumerate() {
                    let Some((offset, len)) = rec.next() else {
                        break;
                    };
                    let loc = Loc {
                        seq: first + i as u64,
                        file,
                        // Segments stay below 4 GiB: at most segment_bytes (<= 1 GiB) plus
                        // one group (<= max_group_bytes + one 64 MiB batch).
                        offset: (base + *offset as u64) as u32,
                        len: *len as u32,
                    };
                    match op {
                        Op::Put { table, key, .. } => index.put(table, key, loc),
                        Op::Delete { table, key } => {
                            index.delete(table, key);
                            if let Some(f) = index.files.get_mut(&file) {
                                f.max_seq = f.max_seq.max(loc.seq);
                            }
                        }
                    }
                }
                let last_seq = first + ops.len() as u64 - 1;
                acks.push((done, last_seq));
            }
            index.last_seq = last_seq;
            if let Some(f) = index.files.get_mut(&file) {
                f.len = end;
            }
        }
        for (done, last_seq) in acks {
            done.complete(Ok(CommitInfo { last_seq }));
        }
        self.shared.maybe_trigger_compaction();
    }
}

/// The group-commit thread: a [`Writer`] fed by a channel, with the timing that decides
/// `Interval` fdatasyncs and how long a group waits for stragglers.
pub(crate) struct GroupCommit {
    pub writer: Writer,
    pub last_sync: Instant,
    /// Commits in the previous group.
    pub last_group: usize,
    /// How long the previous fdatasync took.
    pub last_sync_time: Duration,
}

/// Longest the writer waits for more commits to join a group (see `run`).
const MAX_GATHER: Duration = Duration::from_micros(500);

impl GroupCommit {
    pub(crate) fn new(writer: Writer) -> GroupCommit {
        GroupCommit {
            writer,
            last_sync: Instant::now(),
            last_group: 0,
            last_sync_time: Duration::ZERO,
        }
    }

    pub(crate) fn run(mut self, rx: Receiver<Request>) {
        let interval = match self.writer.shared.options.durability {
            Durability::Interval(ms) => Some(Duration::from_millis(ms.max(1))),
            _ => None,
        };
        loop {
            let first = match interval {
                Some(every) if self.writer.unsynced => {
                    match rx.recv_deadline(self.last_sync + every) {
                        Ok(r) => r,
                        Err(RecvTimeoutError::Timeout) => {
                            let _ = self.sync();
                            continue;
                        }
                        Err(RecvTimeoutError::Disconnected) => break,
                    }
                }
                _ => match rx.recv() {
                    Ok(r) => r,
                    Err(_) => break,
                },
            };
            let mut commits: Vec<Pending> = Vec::new();
            let mut flushes: Vec<Completer> = Vec::new();
            let mut shutdown: Option<Completer> = None;
            let mut snapshots = Vec::new();
            let mut bytes = 0usize;
            let mut next = Some(first);
            let gather_until = match self.writer.shared.options.durability {
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
                if shutdown.is_none() && bytes < self.writer.shared.options.max_group_bytes {
                    next = rx.try_recv().ok();
                    if next.is_none() && gather_until.is_some() && commits.len() < self.last_group {
                        // Stragglers of the last group are still re-submitting: wait for them
                        // a little (at most half an fdatasync) rather than pay another one.
                        next = gather_until.and_then(|d| rx.recv_deadline(d).ok());
                    }
                }
            }
            if !commits.is_empty() {
                self.last_group = commits.len();
            }
            if !commits.is_empty() {
                self.commit_group(commits);
                self.maybe_checkpoint();
            }
            if !snapshots.is_empty() {
                let result = self.sync().map(|()| {
                    self.writer.shared.snapshotting();
                    crate::log::hint::encode(&self.writer.shared.index.read())
                });
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
                            .map(|_| self.writer.info())
                            .map_err(StoreError::duplicate),
                    );
                }
                if let Some(done) = shutdown {
                    done.complete(result.map(|_| self.writer.info()));
                    return;
                }
            }
        }
        // Every sender is gone: make what was acknowledged durable before exiting.
        let _ = self.sync();
    }

    /// When enough log was appended since the last hint, snapshots the index of the durable
    /// state and hands it to the compactor thread to write, off the commit path. Skipped while
    /// the compactor's queue is full (it is compacting): the next group tries again.
    fn maybe_checkpoint(&mut self) {
        let shared = &self.writer.shared;
        if !shared.needs_checkpoint() || shared.poisoned().is_some() {
            return;
        }
        let Some(tx) = shared.compact_tx.clone() else {
            return;
        };
        if tx.is_full() || self.sync().is_err() {
            return;
        }
        let shared = &self.writer.shared;
        let epoch = shared
            .compaction_epoch
            .load(std::sync::atomic::Ordering::Acquire);
        if epoch % 2 == 1 {
            // A compaction round is rewriting the index: the next group tries again.
            return;
        }
        shared.snapshotting();
        let bytes = crate::log::hint::encode(&shared.index.read());
        let _ = tx.try_send(crate::log::CompactorJob::Hint { bytes, epoch });
    }

    /// [`Writer::sync`], timed.
    fn sync(&mut self) -> Result<(), StoreError> {
        if !self.writer.unsynced {
            return self.writer.sync();
        }
        let started = Instant::now();
        self.writer.sync()?;
        self.last_sync = Instant::now();
        self.last_sync_time = self.last_sync - started;
        Ok(())
    }

    /// Writes one group, fdatasyncs it as the durability setting asks, publishes it.
    fn commit_group(&mut self, commits: Vec<Pending>) {
        // Nothing is left unpublished across a rotation: every group is published (or
        // failed) before the next one is written.
        let Ok(written) = self.writer.write_group(commits, |_, _| {}) else {
            return;
        };
        let must_sync = match self.writer.shared.options.durability {
            Durability::Sync => true,
            Durability::Interval(ms) => self.last_sync.elapsed() >= Duration::from_millis(ms),
            Durability::Buffered => false,
        };
        if must_sync {
            if let Err(err) = self.sync() {
                error!(error = %err, "fdatasync failed; refusing further writes");
                return written.fail(&err);
            }
        }
        self.writer.publish(written);
    }
}
