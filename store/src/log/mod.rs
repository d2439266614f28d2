//! [`LogStore`]: the durable store, Bitcask-like: append-only segments, an in-memory index of
//! where each key's newest record lives, group commit, background compaction.
//!
//! See [`format`](mod@format) for the bytes on disk, [`recovery`] for opening, [`writer`] for
//! group commit, [`stepped`] for the thread-free writer, [`spare`] for preallocated segments,
//! [`compaction`] for reclaiming space and [`hint`] for the index snapshot.
//!
//! # Durability
//!
//! | setting        | a commit returns after            | survives a process crash | survives power loss / kernel crash |
//! |----------------|-----------------------------------|--------------------------|------------------------------------|
//! | `Sync`         | write + fdatasync of its group    | every returned commit    | every returned commit              |
//! | `Interval(ms)` | write (fdatasync at most `ms` later) | every returned commit | all but the commits of the last `ms` milliseconds |
//! | `Buffered`     | write (fdatasync on rotation, `flush`, close) | every returned commit | all but the commits since the last fdatasync |
//!
//! In every mode a batch is atomic: after any crash it is entirely there or entirely absent,
//! and batches are never reordered (what survives is a prefix of the commit order). After
//! power loss a file system may also lose unsynced pages out of order (under `Sync` only those
//! of groups not yet acknowledged). Zeros at the end of the newest segment (the file's length
//! reached the disk, its data did not, or preallocated room) count as never written, so a batch
//! cut short by them is a torn tail; garbage before valid data is reported as corruption, and
//! `RecoveryMode::Salvage` keeps the valid prefix. With `preallocate` (the default) segments
//! are zero-filled before the writer uses them and commits overwrite zeros in place (see
//! [`spare`]): the same rules hold, the zeros simply end each segment.
//!
//! # Writer modes
//!
//! [`WriterMode::Thread`] (the default, and the production path) runs a group-commit writer
//! thread and a compactor thread. [`WriterMode::Stepped`] runs none: the same writer code runs
//! on the caller's thread, only when called, so one thread on virtual time (a deterministic
//! simulator) decides when each batch is written, when it becomes durable, and where a crash
//! falls. A batch then goes through three states:
//!
//! | state   | reached by                        | readers see it / handle resolved     | survives                 |
//! |---------|-----------------------------------|--------------------------------------|--------------------------|
//! | queued  | [`submit`](Store::submit)         | no                                   | nothing                  |
//! | written | [`LogStore::write_pending`]       | `Buffered`: yes; `Sync`: not yet     | a process crash          |
//! | durable | [`LogStore::sync_pending`]        | yes                                  | a power loss             |
//!
//! What the stepped mode guarantees:
//! - no thread is started and no clock is read (randomness, the hash maps' seeds, never
//!   reaches a file or a result, see below): handles resolve only inside
//!   the store's calls (`write_pending`, `sync_pending`, and `commit`, `flush`, `checkpoint`,
//!   `close`, which write and sync everything queued; `submit` itself writes, without syncing,
//!   once the queue holds `max_group_bytes`, as the writer thread would);
//! - compaction runs only when [`LogStore::compact`] is called (`background_compaction` is
//!   ignored), never while a write or sync is under way;
//! - determinism: on a [`SimBackend`](crate::backend::SimBackend), the same calls with the same
//!   batches give the same file bytes, the same [`CommitInfo`]s, the same handle outcomes and
//!   the same [`RecoveryReport`]s (hash maps are only looked up, never iterated into a file or a
//!   result; whatever is written is in key or id order);
//! - under `Sync`, a batch is acknowledged exactly when it is durable and readers see exactly
//!   the acknowledged batches; a rotation fdatasyncs the sealed segment, so `write_pending` can
//!   acknowledge earlier written batches when it rotates;
//! - after a crash the store recovers the state after some prefix of the submitted batches:
//!   with [`crash`](crate::backend::SimBackend::crash) exactly the durable ones, with
//!   [`process_crash`](crate::backend::SimBackend::process_crash) exactly the written ones,
//!   with [`crash_torn`](crate::backend::SimBackend::crash_torn) (a prefix of the unsynced
//!   bytes, or that prefix and zeros) at least the durable and at most the written ones; never
//!   part of a batch.
//!
//! What a simulator calls, and when:
//! 1. open: `LogStore::open_with(Arc::new(sim.clone()), dir, LogOptions { writer:
//!    WriterMode::Stepped, ..LogOptions::default() })`;
//! 2. the core asks for a batch to be made durable: `submit(batch)`, keep the
//!    [`CommitHandle`];
//! 3. the simulated write reaches the page cache: `write_pending()`;
//! 4. the simulated fdatasync completes (delay this step for a slow fsync):
//!    `sync_pending()`; the handles that are [`is_done`](CommitHandle::is_done) now carry the
//!    outcome, which the simulator feeds back to the core;
//! 5. compaction when the simulator chooses, e.g. when [`LogStore::needs_compaction`]:
//!    `compact()`;
//! 6. a crash at any point: take the image first (`sim.crash()`, `sim.crash_torn(seeded)` or
//!    `sim.process_crash()`), then [`LogStore::abandon`] (nothing more is written; waiting
//!    handles resolve with [`StoreError::Closed`]), then open a new store on the image.
//!
//! Never call [`CommitHandle::wait`] on a handle that is not done yet: with no writer thread
//! nothing else will resolve it. [`Store::commit`] is safe: it writes and syncs itself.

mod compaction;
pub(crate) mod format;
pub(crate) mod hint;
mod index;
mod recovery;
mod segment;
mod spare;
mod stepped;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, TrySendError};
use parking_lot::{Mutex, RwLock};
use tracing::{error, warn};

use crate::backend::{Backend, BackendFile, FsBackend};
use crate::batch::Batch;
use crate::error::{CorruptionKind, StoreError};
use crate::log::format::decode_record;
use crate::log::index::Index;
use crate::log::segment::{sync_dir, HINT_NAME, HINT_TMP_NAME};
use crate::log::spare::Spares;
use crate::log::stepped::Stepped;
use crate::log::writer::{GroupCommit, Request, Writer};
use crate::range::KeyRange;
use crate::store::{CommitHandle, CommitInfo, KeyValue, Store};

pub use compaction::CompactionReport;
pub use recovery::{CheckReport, RecoveryReport};

/// When a commit is acknowledged relative to fdatasync; see the module docs' table for exactly
/// what each setting survives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Acknowledge after the group's fdatasync: nothing acknowledged is ever lost.
    Sync,
    /// Acknowledge after the write; fdatasync at most this many milliseconds later
    /// (at least 1). A power loss loses at most that window.
    Interval(u64),
    /// Acknowledge after the write; fdatasync only on segment rotation, `flush` and close.
    Buffered,
}

/// What opening does with corruption in the middle of the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RecoveryMode {
    /// Refuse to open: [`StoreError::Corrupt`] names the file and offset.
    #[default]
    Strict,
    /// Keep everything before the first corrupt batch. The corrupt segment's rest is copied to
    /// `<segment>.log.corrupt-<offset>` (`.1`, `.2`, ... appended if a salvage already took
    /// that name) and cut off; later log segments are renamed to
    /// `<segment>.log.corrupt` (the state stays a prefix of the commit order). Nothing is
    /// deleted; the report lists what was moved aside.
    Salvage,
}

/// Who runs a [`LogStore`]'s writer and compaction.
///
/// A simulator drives a stepped store like this (one thread, the disk crashed on purpose):
///
/// ```
/// use std::sync::Arc;
/// use ferrojob_store::backend::SimBackend;
/// use ferrojob_store::{Batch, LogOptions, LogStore, Store, WriterMode};
///
/// let options = LogOptions { writer: WriterMode::Stepped, ..LogOptions::default() };
/// let disk = SimBackend::new();
/// let store = LogStore::open_with(Arc::new(disk.clone()), "/data", options.clone())?;
///
/// let a = store.submit(Batch::new().put("jobs", b"a".to_vec(), b"1".to_vec()));
/// store.write_pending()?; // in the page cache: survives a process crash
/// store.sync_pending()?; // durable: `a` is acknowledged
/// assert_eq!(a.wait()?.last_seq, 1);
///
/// let b = store.submit(Batch::new().put("jobs", b"b".to_vec(), b"2".to_vec()));
/// store.write_pending()?; // the fdatasync never comes: power loss
/// let image = disk.crash();
/// store.abandon();
/// assert!(b.wait().is_err());
///
/// let store = LogStore::open_with(Arc::new(image), "/data", options)?;
/// assert_eq!(store.get("jobs", b"a")?, Some(b"1".to_vec()));
/// assert_eq!(store.get("jobs", b"b")?, None);
/// # Ok::<(), ferrojob_store::StoreError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WriterMode {
    /// A writer thread commits batches in groups as they arrive, and (with
    /// `background_compaction`) a compactor thread compacts when garbage warrants it.
    /// The production mode.
    #[default]
    Thread,
    /// No thread at all: `submit` only queues; the caller writes the queue with
    /// [`LogStore::write_pending`], makes it durable with [`LogStore::sync_pending`], and
    /// compacts with [`LogStore::compact`]. No clock is read. With a
    /// [`SimBackend`](crate::backend::SimBackend) the same calls give the same bytes, the same
    /// [`CommitInfo`]s and the same recovery, for deterministic simulation. Needs `Sync` or
    /// `Buffered` durability (`Interval` needs the writer thread's clock).
    Stepped,
}

/// Options of a [`LogStore`]. `LogOptions::default()` is the production default.
#[derive(Debug, Clone, PartialEq)]
pub struct LogOptions {
    /// When commits are acknowledged (default `Sync`).
    pub durability: Durability,
    /// A segment is sealed once it reaches this size, in bytes
    /// (default 64 MiB; 4 KiB to 1 GiB).
    pub segment_bytes: u64,
    /// The writer coalesces queued batches up to this many bytes into one write
    /// (default 4 MiB; 4 KiB to 64 MiB).
    pub max_group_bytes: usize,
    /// What opening does with mid-log corruption (default `Strict`).
    pub recovery: RecoveryMode,
    /// Who runs the writer and compaction (default `Thread`).
    pub writer: WriterMode,
    /// Read the hint file on open (default true).
    pub use_hint: bool,
    /// Write the hint file on close (default true).
    pub write_hint_on_close: bool,
    /// Write the hint file again once this many bytes were appended since the last one, and
    /// at least twice the last hint's size (default 64 MiB; 0: only on close and on
    /// [`LogStore::checkpoint`]). Opening after a crash then replays at most about that much
    /// log after loading the hint, rather than every segment. With `WriterMode::Thread` the
    /// writer snapshots the index after a synced group (commits wait meanwhile, about 40 ns
    /// per key) and the compactor thread writes the file; with `WriterMode::Stepped` the
    /// caller checkpoints when [`LogStore::needs_checkpoint`] says so.
    pub checkpoint_min_bytes: u64,
    /// Compact in a background thread when garbage warrants it (default true; ignored by
    /// `WriterMode::Stepped`, which compacts only when asked).
    pub background_compaction: bool,
    /// Compact when sealed garbage reaches this fraction of sealed bytes
    /// (default 0.5; 0.05 to 0.95).
    pub compaction_min_garbage_ratio: f64,
    /// ... and at least this many bytes (default 64 MiB).
    pub compaction_min_garbage_bytes: u64,
    /// Zero-fill the next log segment ahead of the writer, so that commits overwrite zeros in
    /// place and fdatasync flushes no file-size change (default true; see the `spare` module
    /// docs). Off: segments grow with every append and a zero tail of the newest segment is
    /// cut off on open.
    pub preallocate: bool,
    /// After a failed background compaction round, the first retry waits this long
    /// (default 1 s, at least 1 ms); each further failure doubles the wait up to
    /// `compaction_retry_max` (default 5 min). A success resets it.
    pub compaction_retry_min: Duration,
    /// The longest wait between background compaction retries (default 5 min).
    pub compaction_retry_max: Duration,
}

impl Default for LogOptions {
    fn default() -> Self {
        LogOptions {
            durability: Durability::Sync,
            segment_bytes: 64 << 20,
            max_group_bytes: 4 << 20,
            recovery: RecoveryMode::Strict,
            writer: WriterMode::Thread,
            use_hint: true,
            write_hint_on_close: true,
            checkpoint_min_bytes: 64 << 20,
            background_compaction: true,
            compaction_min_garbage_ratio: 0.5,
            compaction_min_garbage_bytes: 64 << 20,
            preallocate: true,
            compaction_retry_min: Duration::from_secs(1),
            compaction_retry_max: Duration::from_secs(300),
        }
    }
}

impl LogOptions {
    fn validate(&self) -> Result<(), StoreError> {
        let bad = |field, reason: &str| {
            Err(StoreError::InvalidOptions {
                field,
                reason: reason.to_owned(),
            })
        };
        if !(4096..=1 << 30).contains(&self.segment_bytes) {
            return bad("segment_bytes", "must be between 4096 and 1073741824 bytes");
        }
        if !(4096..=64 << 20).contains(&self.max_group_bytes) {
            return bad("max_group_bytes", "must be between 4096 and 67108864 bytes");
        }
        if !(0.05..=0.95).contains(&self.compaction_min_garbage_ratio) {
            return bad(
                "compaction_min_garbage_ratio",
                "must be between 0.05 and 0.95",
            );
        }
        if self.compaction_retry_min < Duration::from_millis(1)
            || self.compaction_retry_max < self.compaction_retry_min
        {
            return bad(
                "compaction_retry_min",
                "must be at least 1 ms and at most compaction_retry_max",
            );
        }
        if let Durability::Interval(0) = self.durability {
            return bad("durability", "Interval needs at least 1 millisecond");
        }
        if let (WriterMode::Stepped, Durability::Interval(_)) = (self.writer, self.durability) {
            return bad(
                "durability",
                "WriterMode::Stepped takes Sync or Buffered: the caller decides when to \
                 sync_pending, there is no writer thread to keep an interval",
            );
        }
        Ok(())
    }
}

/// State shared by the store handle, the writer and the compactor.
pub(crate) struct Shared {
    pub dir: PathBuf,
    pub backend: Arc<dyn Backend>,
    pub options: LogOptions,
    pub index: RwLock<Index>,
    poison: Mutex<Option<String>>,
    poisoned: AtomicBool,
    pub next_file_id: AtomicU32,
    pub compaction: Mutex<()>,
    /// Wakes the compactor thread, or hands it a hint to write; `None` without one
    /// (`WriterMode::Stepped`).
    compact_tx: Option<Sender<CompactorJob>>,
    /// The last compaction round failed (cleared by a successful one).
    compaction_failing: AtomicBool,
    /// Failed compaction rounds since open.
    compaction_failures: AtomicU64,
    pub compactions: AtomicU64,
    /// Log bytes appended since the last hint was snapshotted (all of them before the first).
    since_hint: AtomicU64,
    /// Size of the last hint written, bytes.
    last_hint_len: AtomicU64,
    /// Hints written since open (on close not counted).
    pub checkpoints: AtomicU64,
    /// Bumped when a compaction round starts and when it ends: odd while one runs. A hint
    /// snapshotted at an even epoch is written only if the epoch has not moved since.
    pub compaction_epoch: AtomicU64,
    _lock: crate::backend::DirLock,
}

impl Shared {
    pub(crate) fn poisoned(&self) -> Option<String> {
        if self.poisoned.load(Ordering::Acquire) {
            self.poison.lock().clone()
        } else {
            None
        }
    }

    pub(crate) fn poison(&self, cause: &StoreError) {
        let mut p = self.poison.lock();
        if p.is_none() {
            *p = Some(cause.to_string());
        }
        // Release: pairs with the Acquire load in `poisoned`.
        self.poisoned.store(true, Ordering::Release);
    }

    pub(crate) fn poison_error(&self, cause: String) -> StoreError {
        StoreError::Poisoned {
            dir: self.dir.clone(),
            cause,
        }
    }

    fn needs_compaction(&self) -> bool {
        let (garbage, total) = self.index.read().sealed_garbage();
        garbage > 0
            && garbage >= self.options.compaction_min_garbage_bytes
            && garbage as f64 >= self.options.compaction_min_garbage_ratio * total as f64
    }

    pub(crate) fn maybe_trigger_compaction(&self) {
        let Some(tx) = &self.compact_tx else {
            return;
        };
        if self.options.background_compaction
            // While failing, the compactor retries on its own schedule.
            && !self.compaction_failing.load(Ordering::Relaxed)
            && self.needs_compaction()
        {
            match tx.try_send(CompactorJob::Wake) {
                Ok(()) | Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {}
            }
        }
    }

    /// Counts a compaction round's outcome: `Some(error)` when it failed.
    fn record_compaction(&self, failed: Option<&StoreError>) {
        if failed.is_some() {
            self.compaction_failures.fetch_add(1, Ordering::Relaxed);
        }
        self.compaction_failing
            .store(failed.is_some(), Ordering::Relaxed);
    }

    fn file(&self, id: u32) -> Option<(Arc<dyn BackendFile>, PathBuf)> {
        self.index
            .read()
            .files
            .get(&id)
            .map(|f| (f.handle.clone(), f.path.clone()))
    }

    /// Enough log was appended since the last hint that the next one is worth writing
    /// (see [`LogOptions::checkpoint_min_bytes`]).
    pub(crate) fn needs_checkpoint(&self) -> bool {
        let min = self.options.checkpoint_min_bytes;
        min > 0
            && self.since_hint.load(Ordering::Relaxed)
                >= min.max(self.last_hint_len.load(Ordering::Relaxed).saturating_mul(2))
    }

    /// Marks a compaction round as running until the guard drops.
    pub(crate) fn compaction_round(&self) -> CompactionEpoch<'_> {
        self.compaction_epoch.fetch_add(1, Ordering::AcqRel);
        CompactionEpoch(&self.compaction_epoch)
    }

    /// Counts `n` bytes appended to the log.
    pub(crate) fn appended(&self, n: u64) {
        self.since_hint.fetch_add(n, Ordering::Relaxed);
    }

    /// A hint is about to be snapshotted: the bytes appended so far are covered by it.
    pub(crate) fn snapshotting(&self) {
        self.since_hint.store(0, Ordering::Relaxed);
    }

    fn write_hint(&self, bytes: &[u8]) -> Result<(), StoreError> {
        let tmp = self.dir.join(HINT_TMP_NAME);
        let path = self.dir.join(HINT_NAME);
        let _ = self.backend.remove_file(&tmp);
        let file = self
            .backend
            .open_file(&tmp, crate::backend::OpenMode::CreateNew)
            .map_err(|e| StoreError::io("create hint", &tmp, e))?;
        file.write_all_at(bytes, 0)
            .and_then(|()| file.sync_data())
            .map_err(|e| StoreError::io("write hint", &tmp, e))?;
        self.backend
            .rename(&tmp, &path)
            .map_err(|e| StoreError::io("rename hint", &tmp, e))?;
        sync_dir(self.backend.as_ref(), &self.dir)?;
        self.last_hint_len
            .store(bytes.len() as u64, Ordering::Relaxed);
        Ok(())
    }
}

struct Threads {
    tx: Option<Sender<Request>>,
    writer: Option<JoinHandle<()>>,
    compactor: Option<JoinHandle<()>>,
    /// Prepares preallocated segments (`None` with `preallocate` off).
    preparer: Option<JoinHandle<()>>,
}

/// The writer and compactor threads of `WriterMode::Thread`.
struct Threaded {
    tx: RwLock<Option<Sender<Request>>>,
    threads: Mutex<Threads>,
    stopping: Arc<AtomicBool>,
}

/// Who runs the writer: the threads, or the caller through [`Stepped`] (`None` once closed).
enum Driver {
    Thread(Threaded),
    Stepped(Mutex<Option<Stepped>>),
}

/// The durable store. Cheap to share behind `Arc<dyn Store>`; closing happens on
/// [`close`](LogStore::close) or drop.
///
/// Durability: see [`Durability`]. Memory is bounded by the number of live keys: the index
/// takes about `key_len + 60` bytes per key (74 bytes per 16-byte key measured at 1M keys);
/// values stay on disk. On top of that: the writer's group buffer (up to `max_group_bytes` plus
/// one batch), one segment held whole while recovery or compaction reads it (`segment_bytes`),
/// and during a compaction round the table and key of every record it moves.
///
/// Threads: with [`WriterMode::Thread`], one writer (group commit) and one compactor per open
/// store; with [`WriterMode::Stepped`], none (see the module docs for the calls that drive it).
pub struct LogStore {
    shared: Arc<Shared>,
    driver: Driver,
    report: RecoveryReport,
}

impl std::fmt::Debug for LogStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogStore")
            .field("dir", &self.shared.dir)
            .field("durability", &self.shared.options.durability)
            .field("writer", &self.shared.options.writer)
            .finish_non_exhaustive()
    }
}

impl LogStore {
    /// Opens (or creates) the store in `dir` on the real file system.
    pub fn open(dir: impl AsRef<Path>, options: LogOptions) -> Result<LogStore, StoreError> {
        LogStore::open_with(Arc::new(FsBackend), dir, options)
    }

    /// Opens (or creates) the store in `dir` on `backend`.
    pub fn open_with(
        backend: Arc<dyn Backend>,
        dir: impl AsRef<Path>,
        options: LogOptions,
    ) -> Result<LogStore, StoreError> {
        options.validate()?;
        let dir = dir.as_ref().to_path_buf();
        backend
            .create_dir_all(&dir)
            .map_err(|e| StoreError::io("create directory", &dir, e))?;
        let lock = backend.lock_dir(&dir).map_err(|e| {
            if e.kind() == std::io::ErrorKind::WouldBlock {
                StoreError::Locked { dir: dir.clone() }
            } else {
                StoreError::io("lock directory", &dir, e)
            }
        })?;
        backend
            .restrict_permissions(&dir)
            .map_err(|e| StoreError::io("restrict permissions of", &dir, e))?;
        let recovered = recovery::recover(&backend, &dir, &options)?;
        let threaded = options.writer == WriterMode::Thread;
        // Two slots, usually a wake-up and a hint; while both are taken the writer skips its
        // checkpoint and tries again after the next group.
        let (compact_tx, compact_rx) = crossbeam_channel::bounded(2);
        let last_seq = recovered.index.last_seq;
        // The log not covered by the hint: the next open replays it again (and, without a
        // hint, every segment), so it counts towards the next checkpoint. Were it counted
        // from zero, a server crashing more often than it writes `checkpoint_min_bytes` would
        // never checkpoint, and each restart would replay more than the one before.
        let (since_hint, last_hint_len) = if recovered.report.used_hint {
            (recovered.report.replayed_bytes, recovered.report.hint_bytes)
        } else {
            (recovered.index.files.values().map(|f| f.len).sum(), 0)
        };
        let shared = Arc::new(Shared {
            dir,
            backend,
            options,
            index: RwLock::new(recovered.index),
            poison: Mutex::new(None),
            poisoned: AtomicBool::new(false),
            next_file_id: AtomicU32::new(recovered.next_file_id),
            compaction: Mutex::new(()),
            compact_tx: threaded.then_some(compact_tx),
            compaction_failing: AtomicBool::new(false),
            compaction_failures: AtomicU64::new(0),
            compactions: AtomicU64::new(0),
            since_hint: AtomicU64::new(since_hint),
            last_hint_len: AtomicU64::new(last_hint_len),
            checkpoints: AtomicU64::new(0),
            compaction_epoch: AtomicU64::new(0),
            _lock: lock,
        });
        let stopping = Arc::new(AtomicBool::new(false));
        let mut preparer = None;
        let spares = match (shared.options.preallocate, threaded) {
            (false, _) => None,
            (true, false) => Some(Spares::Inline {
                backend: shared.backend.clone(),
                dir: shared.dir.clone(),
                ready: None,
            }),
            (true, true) => {
                let (requests, requests_rx) = crossbeam_channel::bounded(1);
                let (done_tx, done) = crossbeam_channel::bounded(1);
                let backend = shared.backend.clone();
                let dir = shared.dir.clone();
                let stop = stopping.clone();
                preparer = Some(
                    std::thread::Builder::new()
                        .name("ferrojob-store-prealloc".into())
                        .spawn(move || {
                            spare::run_preparer(backend, dir, requests_rx, done_tx, stop)
                        })
                        .map_err(|e| {
                            StoreError::io("spawn preallocation thread", &shared.dir, e)
                        })?,
                );
                Some(Spares::Thread {
                    requests,
                    done,
                    ready: None,
                    pending: false,
                })
            }
        };
        let mut writer = Writer {
            shared: shared.clone(),
            active: recovered.active,
            active_id: recovered.active_id,
            active_len: recovered.active_len,
            buf: Vec::new(),
            unsynced: false,
            last_seq,
            active_capacity: recovered.active_capacity,
            spares,
            next_spare: spare::MIN_SPARE.min(shared.options.segment_bytes),
        };
        writer.maybe_request_spare();
        if !threaded {
            return Ok(LogStore {
                shared,
                driver: Driver::Stepped(Mutex::new(Some(Stepped::new(writer)))),
                report: recovered.report,
            });
        }
        let (tx, rx) = crossbeam_channel::unbounded();
        let writer = GroupCommit::new(writer);
        let writer = std::thread::Builder::new()
            .name("ferrojob-store-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| StoreError::io("spawn writer thread", &shared.dir, e))?;
        let compactor = {
            let shared = shared.clone();
            let stopping = stopping.clone();
            let dir = shared.dir.clone();
            std::thread::Builder::new()
                .name("ferrojob-store-compactor".into())
                .spawn(move || compactor(shared, compact_rx, stopping))
                .map_err(|e| StoreError::io("spawn compactor thread", dir, e))?
        };
        let store = LogStore {
            shared,
            driver: Driver::Thread(Threaded {
                tx: RwLock::new(Some(tx.clone())),
                threads: Mutex::new(Threads {
                    tx: Some(tx),
                    writer: Some(writer),
                    compactor: Some(compactor),
                    preparer,
                }),
                stopping,
            }),
            report: recovered.report,
        };
        store.shared.maybe_trigger_compaction();
        Ok(store)
    }

    /// What opening found and did.
    pub fn recovery_report(&self) -> &RecoveryReport {
        &self.report
    }

    /// The store directory.
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// Runs one compaction round now, on the calling thread (rounds never overlap; with
    /// `WriterMode::Stepped` no write or sync runs meanwhile either).
    ///
    /// The outcome counts in [`compaction_failures`](LogStore::compaction_failures) and
    /// [`compaction_failing`](LogStore::compaction_failing) as a background round's does.
    pub fn compact(&self) -> Result<CompactionReport, StoreError> {
        let result = match &self.driver {
            Driver::Thread(_) => compaction::compact(&self.shared),
            Driver::Stepped(stepped) => {
                let _writer = stepped.lock();
                compaction::compact(&self.shared)
            }
        };
        self.shared.record_compaction(result.as_ref().err());
        result
    }

    /// Failed compaction rounds since open (a counter).
    pub fn compaction_failures(&self) -> u64 {
        self.shared.compaction_failures.load(Ordering::Relaxed)
    }

    /// True while the last compaction round failed: the background compactor is waiting to
    /// retry (see [`LogOptions::compaction_retry_min`]). Garbage is not reclaimed meanwhile.
    pub fn compaction_failing(&self) -> bool {
        self.shared.compaction_failing.load(Ordering::Relaxed)
    }

    /// Checks the store in `dir` on the real file system without changing anything: see
    /// [`CheckReport`]. Safe next to a running store (no lock is taken), though a batch being
    /// written may then show as a torn tail.
    pub fn check(dir: impl AsRef<Path>) -> Result<CheckReport, StoreError> {
        LogStore::check_with(Arc::new(FsBackend), dir)
    }

    /// [`check`](LogStore::check) on `backend`.
    pub fn check_with(
        backend: Arc<dyn Backend>,
        dir: impl AsRef<Path>,
    ) -> Result<CheckReport, StoreError> {
        recovery::check(&backend, dir.as_ref())
    }

    /// True when sealed garbage has reached the compaction thresholds.
    pub fn needs_compaction(&self) -> bool {
        self.shared.needs_compaction()
    }

    /// True when enough log was appended since the last hint that a
    /// [`checkpoint`](LogStore::checkpoint) is worth its cost (see
    /// [`LogOptions::checkpoint_min_bytes`]). With `WriterMode::Thread` the store checkpoints
    /// on its own.
    pub fn needs_checkpoint(&self) -> bool {
        self.shared.needs_checkpoint()
    }

    /// Hints written since open, by [`checkpoint`](LogStore::checkpoint) or on the store's
    /// own (see [`LogOptions::checkpoint_min_bytes`]); the one written on close not counted.
    pub fn checkpoints(&self) -> u64 {
        self.shared.checkpoints.load(Ordering::Relaxed)
    }

    /// Completed compaction rounds since open.
    pub fn compactions(&self) -> u64 {
        self.shared.compactions.load(Ordering::Relaxed)
    }

    /// Bytes in all segments up to the end of their data (header included), the store's disk
    /// use bar the hint; with `preallocate`, the newest segment's zero-filled room and the
    /// spare add up to `2 × segment_bytes` more.
    pub fn disk_bytes(&self) -> u64 {
        self.shared.index.read().files.values().map(|f| f.len).sum()
    }

    /// Live keys in the index, over all tables: what the store's memory grows with.
    pub fn key_count(&self) -> usize {
        self.shared.index.read().key_count()
    }

    /// Number of segment files.
    pub fn segment_count(&self) -> usize {
        self.shared.index.read().files.len()
    }

    /// Writes the hint file now, so that the next open replays less. The writer makes
    /// everything durable and snapshots the index in one step (commits wait meanwhile, about
    /// 40 ns per key); compaction rounds wait for the whole checkpoint. With
    /// `WriterMode::Stepped` this writes and syncs the queue first, as [`flush`](Store::flush).
    pub fn checkpoint(&self) -> Result<(), StoreError> {
        match &self.driver {
            Driver::Thread(threaded) => {
                let _round = self.shared.compaction.lock();
                let (reply, rx) = crossbeam_channel::bounded(1);
                {
                    let tx = threaded.tx.read();
                    let Some(tx) = tx.as_ref() else {
                        return Err(self.closed());
                    };
                    tx.send(Request::Snapshot { reply })
                        .map_err(|_| self.closed())?;
                }
                let bytes = rx.recv().map_err(|_| self.closed())??;
                self.shared.write_hint(&bytes)?;
                self.shared.checkpoints.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Driver::Stepped(stepped) => {
                // The lock order of `compact`: the writer, then the compaction round.
                let mut stepped = stepped.lock();
                let _round = self.shared.compaction.lock();
                let Some(stepped) = stepped.as_mut() else {
                    return Err(self.closed());
                };
                stepped.flush()?;
                self.shared.snapshotting();
                let bytes = hint::encode(&self.shared.index.read());
                self.shared.write_hint(&bytes)?;
                self.shared.checkpoints.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
        }
    }

    /// Flushes, stops the writer and compactor, and writes the hint file. Later commits fail
    /// with [`StoreError::Closed`]; reads keep working. Idempotent.
    pub fn close(&self) -> Result<(), StoreError> {
        match &self.driver {
            Driver::Thread(threaded) => {
                // Held to the end: a concurrent close returns once this one is done.
                let mut threads = threaded.threads.lock();
                match self.stop_threads(threaded, &mut threads) {
                    Some(flushed) => flushed?,
                    None => return Ok(()),
                }
                self.write_hint_on_close()
            }
            Driver::Stepped(stepped) => {
                let mut stepped = stepped.lock();
                let Some(mut writer) = stepped.take() else {
                    return Ok(());
                };
                writer.flush()?;
                self.write_hint_on_close()
            }
        }
    }

    fn write_hint_on_close(&self) -> Result<(), StoreError> {
        if self.shared.options.write_hint_on_close && self.shared.poisoned().is_none() {
            // The writer and compactor have stopped: the index is exactly the durable state.
            self.shared.snapshotting();
            let bytes = hint::encode(&self.shared.index.read());
            self.shared.write_hint(&bytes)?;
        }
        Ok(())
    }

    /// Flushes and stops the writer and compactor threads; `None` if they were stopped
    /// already.
    fn stop_threads(
        &self,
        threaded: &Threaded,
        threads: &mut Threads,
    ) -> Option<Result<(), StoreError>> {
        let tx = threads.tx.take()?;
        *threaded.tx.write() = None;
        let (handle, done) = CommitHandle::pending();
        let flushed = match tx.send(Request::Shutdown { done }) {
            Ok(()) => handle.wait().map(|_| ()),
            Err(_) => Err(self.closed()),
        };
        drop(tx);
        if let Some(w) = threads.writer.take() {
            let _ = w.join();
        }
        threaded.stopping.store(true, Ordering::Release);
        if let Some(tx) = &self.shared.compact_tx {
            let _ = tx.try_send(CompactorJob::Wake);
        }
        if let Some(c) = threads.compactor.take() {
            let _ = c.join();
        }
        // The writer is gone, so the preparer's channel is closed: it stops after the spare
        // it is making (`stopping` cuts that short).
        if let Some(p) = threads.preparer.take() {
            let _ = p.join();
        }
        Some(flushed)
    }

    /// `WriterMode::Stepped`: writes every queued batch (one write per group of up to
    /// `max_group_bytes`, the groups the writer thread would form) without fdatasync, and
    /// returns how many batches it wrote. They now survive a process crash
    /// ([`SimBackend::process_crash`](crate::backend::SimBackend::process_crash)) but not a
    /// power loss. Under `Buffered` their handles resolve now and readers see them; under
    /// `Sync` both wait for [`sync_pending`](LogStore::sync_pending). A segment rotation on
    /// the way fdatasyncs the sealed segment, making what was written before it durable.
    ///
    /// On an I/O failure every batch concerned is failed and the store is poisoned.
    pub fn write_pending(&self) -> Result<usize, StoreError> {
        self.with_stepped("write_pending", Stepped::write_pending)
    }

    /// `WriterMode::Stepped`: fdatasyncs what [`write_pending`](LogStore::write_pending)
    /// wrote (queued batches stay queued) and returns how many batches it made durable.
    /// Under `Sync` their handles resolve now and readers see them.
    ///
    /// On an I/O failure the batches waiting for it are failed and the store is poisoned.
    pub fn sync_pending(&self) -> Result<usize, StoreError> {
        self.with_stepped("sync_pending", Stepped::sync_pending)
    }

    /// `WriterMode::Stepped`: batches submitted and not yet written (0 with the writer
    /// thread, or once closed).
    pub fn queued_batches(&self) -> usize {
        match &self.driver {
            Driver::Stepped(stepped) => stepped.lock().as_ref().map_or(0, Stepped::queued_batches),
            Driver::Thread(_) => 0,
        }
    }

    /// `WriterMode::Stepped`: batches written and not yet fdatasynced (0 with the writer
    /// thread, or once closed).
    pub fn unsynced_batches(&self) -> usize {
        match &self.driver {
            Driver::Stepped(stepped) => {
                stepped.lock().as_ref().map_or(0, Stepped::unsynced_batches)
            }
            Driver::Thread(_) => 0,
        }
    }

    /// Drops the store the way a crash would: with `WriterMode::Stepped` nothing more is
    /// written or synced and no hint is written; queued and unsynced batches resolve with
    /// [`StoreError::Closed`] (what is already written stays in the backend, as after a real
    /// crash). With `WriterMode::Thread` this is [`close`](LogStore::close) without the hint:
    /// a running writer thread cannot be stopped mid-group.
    pub fn abandon(self) {
        match &self.driver {
            Driver::Stepped(stepped) => drop(stepped.lock().take()),
            Driver::Thread(threaded) => {
                let mut threads = threaded.threads.lock();
                let _ = self.stop_threads(threaded, &mut threads);
            }
        }
    }

    fn with_stepped<T>(
        &self,
        op: &'static str,
        f: impl FnOnce(&mut Stepped) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        match &self.driver {
            Driver::Stepped(stepped) => match stepped.lock().as_mut() {
                Some(stepped) => f(stepped),
                None => Err(self.closed()),
            },
            Driver::Thread(_) => Err(StoreError::NotStepped {
                dir: self.shared.dir.clone(),
                op,
            }),
        }
    }

    fn closed(&self) -> StoreError {
        StoreError::Closed {
            dir: self.shared.dir.clone(),
        }
    }

    fn send(
        &self,
        threaded: &Threaded,
        make: impl FnOnce(crate::store::Completer) -> Request,
    ) -> CommitHandle {
        let (handle, done) = CommitHandle::pending();
        let tx = threaded.tx.read();
        match tx.as_ref() {
            Some(tx) => {
                // A send error drops the request, whose completer then resolves `Closed`.
                let _ = tx.send(make(done));
                handle
            }
            None => {
                drop(done);
                CommitHandle::ready(Err(self.closed()))
            }
        }
    }

    /// Reads the record at `loc` and checks it is a put of `table`/`key`.
    fn read_value(
        &self,
        table: &str,
        key: &[u8],
        loc: index::Loc,
        file: &(Arc<dyn BackendFile>, PathBuf),
    ) -> Result<Vec<u8>, StoreError> {
        let (handle, path) = file;
        let mut buf = vec![0u8; loc.len as usize];
        handle
            .read_exact_at(&mut buf, u64::from(loc.offset))
            .map_err(|e| StoreError::io("read", path, e))?;
        let bad = || StoreError::Corrupt {
            path: path.clone(),
            offset: u64::from(loc.offset),
            kind: CorruptionKind::BadReadBack,
        };
        let value_at = {
            let rec = decode_record(&buf, 0).map_err(|_| bad())?;
            if !rec.is_put || rec.table != table || rec.key != key || rec.len != buf.len() {
                return Err(bad());
            }
            buf.len() - rec.value.len()
        };
        buf.drain(..value_at);
        Ok(buf)
    }
}

/// Ends a compaction round's epoch (see [`Shared::compaction_epoch`]).
pub(crate) struct CompactionEpoch<'a>(&'a AtomicU64);

impl Drop for CompactionEpoch<'_> {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::AcqRel);
    }
}

/// What the compactor thread is asked to do.
pub(crate) enum CompactorJob {
    /// Compact if garbage warrants it.
    Wake,
    /// Write this index snapshot as the hint, unless a compaction round ran since it was
    /// taken (`epoch` is [`Shared::compaction_epoch`] then, even): the snapshot would name
    /// files that are gone.
    Hint { bytes: Vec<u8>, epoch: u64 },
}

/// The background compactor: a round when woken and garbage warrants it; after a failure,
/// retries on its own with [`RetryBackoff`] (commits do not wake it meanwhile), so a full or
/// failing disk is neither hammered nor given up on. It also writes the hints the writer
/// snapshots, off the commit path.
fn compactor(shared: Arc<Shared>, rx: Receiver<CompactorJob>, stopping: Arc<AtomicBool>) {
    let mut backoff = RetryBackoff::new(
        shared.options.compaction_retry_min,
        shared.options.compaction_retry_max,
    );
    let mut retry_in: Option<Duration> = None;
    loop {
        let job = match retry_in {
            None => rx.recv().ok(),
            // Only `close` and hints wake a failing compactor early.
            Some(wait) => match rx.recv_timeout(wait) {
                Ok(job) => Some(job),
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => Some(CompactorJob::Wake),
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => None,
            },
        };
        let Some(job) = job else { return };
        if stopping.load(Ordering::Acquire) {
            return;
        }
        if let CompactorJob::Hint { bytes, epoch } = job {
            write_snapshot(&shared, &bytes, epoch);
            continue;
        }
        if !shared.needs_compaction() {
            // Nothing to retry: back to waiting for commits.
            shared.record_compaction(None);
            backoff.reset();
            retry_in = None;
            continue;
        }
        let result = compaction::compact(&shared);
        shared.record_compaction(result.as_ref().err());
        match result {
            Ok(_) => {
                backoff.reset();
                retry_in = None;
            }
            Err(e) => {
                let wait = backoff.next_wait();
                error!(
                    dir = %shared.dir.display(),
                    error = %e,
                    retry_in_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                    "background compaction failed; retrying later"
                );
                retry_in = Some(wait);
            }
        }
    }
}

/// Writes a hint the writer snapshotted. A failure only costs the next open a longer replay.
fn write_snapshot(shared: &Shared, bytes: &[u8], epoch: u64) {
    let _round = shared.compaction.lock();
    if shared.compaction_epoch.load(Ordering::Acquire) != epoch || shared.poisoned().is_some() {
        return;
    }
    match shared.write_hint(bytes) {
        Ok(()) => {
            shared.checkpoints.fetch_add(1, Ordering::Relaxed);
        }
        Err(e) => warn!(
            dir = %shared.dir.display(),
            error = %e,
            "writing the hint failed; the next open replays more of the log"
        ),
    }
}

/// Exponential backoff between compaction retries: `min`, `2 min`, `4 min`, ... capped at
/// `max`.
#[derive(Debug, Clone)]
pub(crate) struct RetryBackoff {
    min: Duration,
    max: Duration,
    next: Duration,
}

impl RetryBackoff {
    pub(crate) fn new(min: Duration, max: Duration) -> Self {
        RetryBackoff {
            min,
            max,
            next: min,
        }
    }

    /// The wait before the next retry; doubles the one after (up to `max`).
    pub(crate) fn next_wait(&mut self) -> Duration {
        let wait = self.next;
        self.next = self.next.saturating_mul(2).min(self.max);
        wait
    }

    /// After a success: the next failure waits `min` again.
    pub(crate) fn reset(&mut self) {
        self.next = self.min;
    }
}

impl Drop for LogStore {
    fn drop(&mut self) {
        if let Err(e) = self.close() {
            warn!(dir = %self.shared.dir.display(), error = %e, "closing the store failed");
        }
    }
}

impl Store for LogStore {
    fn get(&self, table: &str, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let found = {
            let index = self.shared.index.read();
            index.get(table, key).and_then(|loc| {
                let f = index.files.get(&loc.file)?;
                Some((loc, (f.handle.clone(), f.path.clone())))
            })
        };
        match found {
            Some((loc, file)) => self.read_value(table, key, loc, &file).map(Some),
            None => Ok(None),
        }
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
        let hits: Vec<(Vec<u8>, index::Loc)> = {
            let index = self.shared.index.read();
            match index.tables.get(table) {
                Some(t) => t
                    .range::<[u8], _>(range.as_bounds())
                    .take(limit)
                    .map(|(k, loc)| (k.to_vec(), *loc))
                    .collect(),
                None => return Ok(Vec::new()),
            }
        };
        let mut files: std::collections::HashMap<u32, (Arc<dyn BackendFile>, PathBuf)> =
            std::collections::HashMap::new();
        let mut out = Vec::with_capacity(hits.len());
        for (key, loc) in hits {
            if let std::collections::hash_map::Entry::Vacant(e) = files.entry(loc.file) {
                match self.shared.file(loc.file) {
                    Some(f) => {
                        e.insert(f);
                    }
                    // Compacted away between the two lock scopes: read the key afresh.
                    None => {
                        if let Some(v) = self.get(table, &key)? {
                            out.push((key, v));
                        }
                        continue;
                    }
                }
            }
            let Some(file) = files.get(&loc.file) else {
                continue;
            };
            let value = self.read_value(table, &key, loc, file)?;
            out.push((key, value));
        }
        Ok(out)
    }

    fn submit(&self, batch: Batch) -> CommitHandle {
        if let Err(e) = batch.validate() {
            return CommitHandle::ready(Err(e));
        }
        if let Some(cause) = self.shared.poisoned() {
            return CommitHandle::ready(Err(self.shared.poison_error(cause)));
        }
        match &self.driver {
            Driver::Thread(threaded) => {
                if batch.is_empty() {
                    if threaded.tx.read().is_none() {
                        return CommitHandle::ready(Err(self.closed()));
                    }
                    let last_seq = self.shared.index.read().last_seq;
                    return CommitHandle::ready(Ok(CommitInfo { last_seq }));
                }
                let ops = batch.into_ops();
                self.send(threaded, |done| Request::Commit { ops, done })
            }
            Driver::Stepped(stepped) => {
                let mut stepped = stepped.lock();
                let Some(stepped) = stepped.as_mut() else {
                    return CommitHandle::ready(Err(self.closed()));
                };
                if batch.is_empty() {
                    let last_seq = self.shared.index.read().last_seq;
                    return CommitHandle::ready(Ok(CommitInfo { last_seq }));
                }
                let (handle, done) = CommitHandle::pending();
                stepped.submit(batch.into_ops(), done);
                handle
            }
        }
    }

    /// With `WriterMode::Stepped`: [`write_pending`](LogStore::write_pending) then
    /// [`sync_pending`](LogStore::sync_pending).
    fn flush(&self) -> Result<(), StoreError> {
        match &self.driver {
            Driver::Thread(threaded) => self
                .send(threaded, |done| Request::Flush { done })
                .wait()
                .map(|_| ()),
            Driver::Stepped(_) => self.with_stepped("flush", Stepped::flush),
        }
    }

    /// With `WriterMode::Stepped` this does the writer's work on the calling thread: it
    /// queues the batch, writes the queue and (under `Sync`) fdatasyncs, so it never waits
    /// for a call that nobody will make.
    fn commit(&self, batch: Batch) -> Result<CommitInfo, StoreError> {
        let handle = self.submit(batch);
        if let Driver::Stepped(_) = &self.driver {
            if !handle.is_done() {
                self.write_pending()?;
                if self.shared.options.durability == Durability::Sync {
                    self.sync_pending()?;
                }
            }
            debug_assert!(handle.is_done(), "a stepped commit resolves its own handle");
        }
        handle.wait()
    }

    fn count(&self, table: &str) -> usize {
        self.shared
            .index
            .read()
            .tables
            .get(table)
            .map_or(0, std::collections::BTreeMap::len)
    }

    fn tables(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .shared
            .index
            .read()
            .tables
            .keys()
            .map(|k| k.to_string())
            .collect();
        names.sort();
        names
    }
}

#[cfg(test)]
mod tests {
    use super::RetryBackoff;
    use std::time::Duration;

    #[test]
    fn retry_backoff_doubles_up_to_the_cap_and_resets() {
        let mut b = RetryBackoff::new(Duration::from_secs(1), Duration::from_secs(300));
        let waits: Vec<u64> = (0..11).map(|_| b.next_wait().as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300]);
        b.reset();
        assert_eq!(b.next_wait(), Duration::from_secs(1));
    }
}
