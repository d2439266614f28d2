//! [`FsBackend`]: the real file system (Unix positioned I/O, `fdatasync`, directory fsync).
//!
//! Everything it creates is private to the owner whatever the umask: directories 0700, files
//! (segments, hint, lock, salvage files) 0600. The store holds job parameters and results.

use std::fs::{self, File, OpenOptions, TryLockError};
use std::io;
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;

use super::{Backend, BackendFile, DirLock, OpenMode};

/// Mode of the directories the store creates.
pub const DIR_MODE: u32 = 0o700;
/// Mode of the files the store creates.
pub const FILE_MODE: u32 = 0o600;

/// Sets `path`'s permission bits to `mode` unless they are already exactly that.
fn set_mode(path: &Path, meta: &fs::Metadata, mode: u32) -> io::Result<()> {
    if meta.permissions().mode() & 0o7777 != mode {
        fs::set_permissions(path, fs::Permissions::from_mode(mode))?;
    }
    Ok(())
}

/// The operating system's file system.
#[derive(Debug, Default, Clone, Copy)]
pub struct FsBackend;

#[derive(Debug)]
struct FsFile(File);

impl Backend for FsBackend {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(DIR_MODE)
            .create(dir)
    }

    fn restrict_permissions(&self, dir: &Path) -> io::Result<()> {
        set_mode(dir, &fs::metadata(dir)?, DIR_MODE)?;
        for entry in fs::read_dir(dir)? {
            let entry = entry?;
            // `DirEntry::metadata` does not follow symlinks: only regular files are changed.
            let meta = entry.metadata()?;
            if meta.is_file() {
                set_mode(&entry.path(), &meta, FILE_MODE)?;
            }
        }
        Ok(())
    }

    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in fs::read_dir(dir)? {
            let entry = entry?;
            if entry.file_type()?.is_file() {
                if let Some(name) = entry.file_name().to_str() {
                    names.push(name.to_owned());
                }
            }
        }
        Ok(names)
    }

    fn open_file(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn BackendFile>> {
        let mut options = OpenOptions::new();
        options.read(true);
        match mode {
            OpenMode::CreateNew => {
                options.write(true).create_new(true).mode(FILE_MODE);
            }
            OpenMode::Existing => {
                options.write(true);
            }
            OpenMode::ReadOnly => {}
        }
        Ok(Arc::new(FsFile(options.open(path)?)))
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }

    fn lock_dir(&self, dir: &Path) -> io::Result<DirLock> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(FILE_MODE)
            .open(dir.join("LOCK"))?;
        match file.try_lock() {
            Ok(()) => Ok(DirLock::new(Some(Box::new(file)))),
            Err(TryLockError::WouldBlock) => Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                "lock file is held by another process",
            )),
            Err(TryLockError::Error(e)) => Err(e),
        }
    }
}

impl BackendFile for FsFile {
    fn len(&self) -> io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }

    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        FileExt::read_exact_at(&self.0, buf, offset)
    }

    fn write_all_at(&self, data: &[u8], offset: u64) -> io::Result<()> {
        FileExt::write_all_at(&self.0, data, offset)
    }

    fn sync_data(&self) -> io::Result<()> {
        self.0.sync_data()
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }
}
