//! Preallocated segments: the next log segment is zero-filled and fdatasynced before the
//! writer needs it, so that commits overwrite zeros in place and their fdatasync flushes data
//! only.
//!
//! Appending to a file changes its size, and on ext4 (and most journaling file systems) an
//! fdatasync after a size change also commits the file-system journal: a second device write
//! and flush on every durable commit. Writing into blocks that already hold zeros changes no
//! metadata the data depends on, so the fdatasync is one data write. (`fallocate` alone is not
//! enough: ext4 marks fallocated extents unwritten, and the first write into one converts it,
//! which is again a journal commit. The zeros must really be written.) SQLite's WAL gets the
//! same effect by reusing its file in place.
//!
//! ```text
//!  writer                                   preparer (a thread, or inline when stepped)
//!  ──────                                   ────────
//!  the active segment is half full:
//!  ask for a spare (256 KiB first) ───────► create segment.spare, write zeros, fdatasync
//!  appends go to the active segment         ◄── Ready(spare)
//!  a group passes the zero-filled room
//!  and a spare is ready: rotate into it:
//!    fdatasync the old segment
//!    header into the spare, fdatasync
//!    rename segment.spare → <id>.log, fsync dir
//!  half full again: ask for the next spare
//!  (four times the size, up to
//!  segment_bytes) ────────────────────────► ...
//! ```
//!
//! A spare is asked for once the active segment is half full (half of [`MIN_SPARE`] for the
//! segment a new store starts with, which grows), so a store that writes little never makes
//! one and its files hold exactly its data. Sizes grow fourfold from [`MIN_SPARE`] up to
//! `segment_bytes`: a busy store reaches full-size (64 MiB) segments after four rotations. Without a ready spare the writer does what it does with preallocation
//! off: it appends (growing the file) until the segment reaches `segment_bytes`, then creates
//! the next segment itself. A spare that cannot be made (a full disk) is only logged: commits
//! never wait for one and never fail because of one. Nor does a spare the writer cannot rotate
//! into (its header write or its rename fails, or the file was removed behind the store's
//! back): the writer logs it and creates the next segment itself.
//!
//! On disk a preallocated segment is a segment whose last batch is followed by zeros, and
//! recovery reads zeros where a batch header would start as the end of that segment (a batch
//! header starts with a magic, never with zeros). A spare that was never renamed holds nothing
//! and is removed on open.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender, TryRecvError};
use tracing::warn;

use crate::backend::{Backend, BackendFile, OpenMode};
use crate::error::StoreError;

/// Name of the spare segment being prepared or waiting for a rotation.
pub(crate) const SPARE_NAME: &str = "segment.spare";

/// Size of the first spare after opening, in bytes.
pub(crate) const MIN_SPARE: u64 = 256 << 10;

/// Zeros are written in pieces of this size.
const ZERO_CHUNK: usize = 1 << 20;

/// A zero-filled, fdatasynced file named [`SPARE_NAME`], ready to become a log segment.
#[derive(Debug)]
pub(crate) struct Spare {
    pub handle: Arc<dyn BackendFile>,
    pub path: PathBuf,
    /// Length of the file: every byte of it is a durable zero.
    pub capacity: u64,
}

/// Makes a spare of `capacity` bytes in `dir`, replacing a stale one. `stop` is checked
/// between pieces of zeros so that closing the store does not wait for a large spare.
pub(crate) fn prepare(
    backend: &dyn Backend,
    dir: &Path,
    capacity: u64,
    stop: &AtomicBool,
) -> Result<Option<Spare>, StoreError> {
    let path = dir.join(SPARE_NAME);
    remove_stale(backend, dir)?;
    let handle = backend
        .open_file(&path, OpenMode::CreateNew)
        .map_err(|e| StoreError::io("create spare segment", &path, e))?;
    let zeros = vec![0u8; ZERO_CHUNK.min(usize::try_from(capacity).unwrap_or(ZERO_CHUNK))];
    let mut at = 0u64;
    while at < capacity {
        // Acquire: pairs with the Release store of whoever stops the store.
        if stop.load(Ordering::Acquire) {
            let _ = backend.remove_file(&path);
            return Ok(None);
        }
        let n = (capacity - at).min(zeros.len() as u64);
        let piece = zeros.get(..n as usize).unwrap_or_default();
        handle
            .write_all_at(piece, at)
            .map_err(|e| StoreError::io("zero-fill spare segment", &path, e))?;
        at += n;
    }
    handle
        .sync_data()
        .map_err(|e| StoreError::io("fdatasync", &path, e))?;
    Ok(Some(Spare {
        handle,
        path,
        capacity,
    }))
}

/// Removes a spare left by an earlier run (its contents are not trusted).
pub(crate) fn remove_stale(backend: &dyn Backend, dir: &Path) -> Result<(), StoreError> {
    let path = dir.join(SPARE_NAME);
    let names = backend
        .list_dir(dir)
        .map_err(|e| StoreError::io("list directory", dir, e))?;
    if names.iter().any(|n| n == SPARE_NAME) {
        backend
            .remove_file(&path)
            .map_err(|e| StoreError::io("remove spare segment", &path, e))?;
    }
    Ok(())
}

/// The size of the spare after one of `capacity` bytes.
pub(crate) fn next_capacity(capacity: u64, segment_bytes: u64) -> u64 {
    capacity.saturating_mul(4).max(MIN_SPARE).min(segment_bytes)
}

/// Where the writer's spares come from.
pub(crate) enum Spares {
    /// Prepared on the writer's own thread when asked (`WriterMode::Stepped`: deterministic,
    /// no thread).
    Inline {
        backend: Arc<dyn Backend>,
        dir: PathBuf,
        ready: Option<Spare>,
    },
    /// Prepared by the preparer thread ([`run_preparer`]).
    Thread {
        requests: Sender<u64>,
        done: Receiver<Option<Spare>>,
        ready: Option<Spare>,
        pending: bool,
    },
}

impl Spares {
    /// Asks for a spare of `capacity` bytes (ignored while one is ready or being made).
    pub(crate) fn request(&mut self, capacity: u64) {
        match self {
            Spares::Inline {
                backend,
                dir,
                ready,
            } => {
                if ready.is_none() {
                    let never = AtomicBool::new(false);
                    match prepare(backend.as_ref(), dir, capacity, &never) {
                        Ok(spare) => *ready = spare,
                        Err(e) => {
                            warn!(error = %e, "could not preallocate the next segment; appending instead");
                        }
                    }
                }
            }
            Spares::Thread {
                requests,
                ready,
                pending,
                ..
            } => {
                if ready.is_none() && !*pending && requests.try_send(capacity).is_ok() {
                    *pending = true;
                }
            }
        }
    }

    /// True when a spare is ready to rotate into.
    pub(crate) fn is_ready(&mut self) -> bool {
        match self {
            Spares::Inline { ready, .. } => ready.is_some(),
            Spares::Thread {
                done,
                ready,
                pending,
                ..
            } => {
                if *pending {
                    match done.try_recv() {
                        Ok(spare) => {
                            *ready = spare;
                            *pending = false;
                        }
                        Err(TryRecvError::Disconnected) => *pending = false,
                        Err(TryRecvError::Empty) => {}
                    }
                }
                ready.is_some()
            }
        }
    }

    /// The ready spare, if any.
    pub(crate) fn take(&mut self) -> Option<Spare> {
        if !self.is_ready() {
            return None;
        }
        match self {
            Spares::Inline { ready, .. } | Spares::Thread { ready, .. } => ready.take(),
        }
    }
}

/// The preparer thread: makes one spare per request, until the writer drops its end of the
/// channels or `stop` is set. A failure is logged and answered with no spare.
pub(crate) fn run_preparer(
    backend: Arc<dyn Backend>,
    dir: PathBuf,
    requests: Receiver<u64>,
    done: Sender<Option<Spare>>,
    stop: Arc<AtomicBool>,
) {
    while let Ok(capacity) = requests.recv() {
        let spare = match prepare(backend.as_ref(), &dir, capacity, &stop) {
            Ok(spare) => spare,
            Err(e) => {
                warn!(error = %e, "could not preallocate the next segment; appending instead");
                None
            }
        };
        if done.send(spare).is_err() {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spare_sizes_grow_fourfold_up_to_the_segment_size() {
        let seg = 64 << 20;
        let mut c = MIN_SPARE;
        let mut sizes = vec![c];
        while c < seg {
            c = next_capacity(c, seg);
            sizes.push(c);
        }
        assert_eq!(sizes, [256 << 10, 1 << 20, 4 << 20, 16 << 20, 64 << 20]);
        assert_eq!(next_capacity(seg, seg), seg);
        assert_eq!(next_capacity(MIN_SPARE, 4096), 4096);
        assert_eq!(next_capacity(0, 4096), 4096);
    }
}
