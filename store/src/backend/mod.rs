//! The storage seam: every file-system call the [`LogStore`](crate::LogStore) makes goes
//! through [`Backend`] and [`BackendFile`].
//!
//! [`FsBackend`] is the real file system. [`SimBackend`] is an in-memory file system that
//! tracks what has been made durable (by `sync_data` and `sync_dir`) separately from what has
//! merely been written, so tests can inject I/O errors and build the exact image a power loss
//! would leave, deterministically.

mod fs;
mod sim;

use std::fmt;
use std::io;
use std::path::Path;
use std::sync::Arc;

pub use fs::{FsBackend, DIR_MODE, FILE_MODE};
pub use sim::{Fault, SimBackend, Tear};

/// How [`Backend::open_file`] opens a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// Create a new, empty file; fail if it exists.
    CreateNew,
    /// Open an existing file for reading and writing.
    Existing,
    /// Open an existing file for reading only: writes and truncation fail.
    ReadOnly,
}

/// A directory of files: the store's only view of the file system.
pub trait Backend: Send + Sync + fmt::Debug {
    /// Creates `dir` and its parents if missing.
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// The names of the regular files in `dir`.
    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>>;
    /// Opens a file for positioned reads and writes.
    fn open_file(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn BackendFile>>;
    /// Removes a file (open handles stay readable, as on Unix).
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Atomically renames a file, replacing `to` if it exists.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Makes the directory's entries (creates, renames, removes) durable: fsync on the directory.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// Makes `dir` and the regular files in it private to their owner (0700 and 0600 on the
    /// real file system), fixing what an older version or a permissive umask left. Files and
    /// directories the backend creates are private from the start. The default does nothing
    /// (a backend without permissions).
    fn restrict_permissions(&self, dir: &Path) -> io::Result<()> {
        let _ = dir;
        Ok(())
    }
    /// Takes an exclusive lock on `dir`, held until the returned guard is dropped.
    /// Fails with `io::ErrorKind::WouldBlock` when it is held elsewhere.
    fn lock_dir(&self, dir: &Path) -> io::Result<DirLock>;
}

/// One open file, read and written at explicit offsets (no shared cursor).
pub trait BackendFile: Send + Sync + fmt::Debug {
    /// Current length in bytes.
    fn len(&self) -> io::Result<u64>;
    /// True when the file holds no bytes.
    fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }
    /// Fills `buf` from `offset`; `UnexpectedEof` if the file is shorter.
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
    /// Writes all of `data` at `offset`, extending the file as needed.
    fn write_all_at(&self, data: &[u8], offset: u64) -> io::Result<()>;
    /// Makes the file's data and length durable (fdatasync).
    fn sync_data(&self) -> io::Result<()>;
    /// Truncates or extends the file to `len` bytes.
    fn set_len(&self, len: u64) -> io::Result<()>;
}

/// A held directory lock; dropping it releases the lock.
pub struct DirLock(#[allow(dead_code)] Option<Box<dyn Send + Sync>>);

impl DirLock {
    /// A guard holding `inner` (e.g. a locked file) until dropped.
    pub fn new(inner: Option<Box<dyn Send + Sync>>) -> Self {
        DirLock(inner)
    }
}

impl fmt::Debug for DirLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DirLock")
    }
}
