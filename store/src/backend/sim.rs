//! [`SimBackend`]: an in-memory file system that knows what a power loss would keep.
//!
//! Each file has two contents: `data` (what reads see) and `durable` (what survives a crash,
//! updated by `sync_data`). The directory has two listings likewise, updated by `sync_dir`.
//! [`SimBackend::crash`] returns a new backend holding only the durable state: the exact
//! post-crash image under the pessimistic model "nothing unsynced reaches the disk".
//! [`SimBackend::crash_torn`] lets part of each file's unsynced appends survive, as a torn
//! write does; [`SimBackend::process_crash`] keeps everything written, as the page cache does.
//! [`SimBackend::fail`] injects I/O errors into chosen operations.
//!
//! As on a real file system, a file's contents are freed once no directory listing (current or
//! durable) names it and no handle has it open: a long simulation that writes, compacts and
//! removes segments holds only the files that still exist, not every file it ever wrote.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;

use super::{Backend, BackendFile, DirLock, OpenMode};

/// An operation [`SimBackend::fail`] can make fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// `BackendFile::write_all_at`.
    Write,
    /// `BackendFile::sync_data`.
    SyncData,
    /// `Backend::sync_dir`.
    SyncDir,
    /// `Backend::open_file` with `CreateNew`.
    Create,
    /// `Backend::rename`.
    Rename,
    /// `Backend::remove_file`.
    Remove,
}

/// What part of a file's unsynced appended bytes a [`SimBackend::crash_torn`] keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tear {
    /// The first `n` unsynced bytes reached the disk, in order, and nothing after them
    /// (clamped to the unsynced length). `Prefix(0)` is [`SimBackend::crash`]'s image.
    Prefix(u64),
    /// The file's new length reached the disk but only its first `n` unsynced bytes did: the
    /// rest reads as zeros (a file system that extended the file and lost the data).
    ZeroFilled(u64),
}

/// One file: its current and its durable contents. Both are shared copy-on-write, so a crash
/// image costs no copy of a file until it is written again (sealed segments never are), and a
/// file with nothing unsynced holds one buffer for both.
#[derive(Debug, Default, Clone)]
struct SimFile {
    data: Arc<Vec<u8>>,
    durable: Arc<Vec<u8>>,
    /// Length of the prefix of `data` known to equal `durable`'s (nothing was written there
    /// since the last sync): a sync copies only what lies after it, so it costs what was
    /// written since the previous one, not the size of the file.
    synced_prefix: usize,
    /// End of what was written since the last sync: beyond it `data` equals `durable` (or is
    /// zeros the file grew by), so a sync of a preallocated file does not copy its tail.
    dirty_end: usize,
    /// Shortest length the file had since the last sync (`usize::MAX`: not shrunk).
    min_len: usize,
    /// Handles of this backend open on the file (a crash image starts with none).
    handles: usize,
}

impl SimFile {
    /// A file whose contents are all durable.
    fn synced(bytes: Vec<u8>) -> SimFile {
        SimFile::shared(&Arc::new(bytes))
    }

    /// A file whose contents are all durable, sharing `bytes` until either is written.
    fn shared(bytes: &Arc<Vec<u8>>) -> SimFile {
        SimFile {
            durable: Arc::clone(bytes),
            synced_prefix: bytes.len(),
            dirty_end: 0,
            min_len: usize::MAX,
            handles: 0,
            data: Arc::clone(bytes),
        }
    }

    /// `sync_data`: the durable contents become the current ones.
    fn sync(&mut self) {
        let len = self.data.len();
        let from = self.synced_prefix.min(len);
        let to = self.dirty_end.clamp(from, len);
        let keep = self.min_len.min(self.durable.len());
        // Nothing changed since the last sync (or the crash image): nothing to copy.
        let unchanged = from >= to && keep == self.durable.len() && len == keep;
        if !unchanged && !Arc::ptr_eq(&self.data, &self.durable) {
            let durable = Arc::make_mut(&mut self.durable);
            // What the file lost by shrinking is gone; what it grew by without writes is zeros.
            durable.truncate(keep);
            // The written range: over the durable bytes it overwrites, past them it appends
            // (each byte is written once: an appended segment or spare can be tens of MiB).
            let over = to.min(durable.len());
            if let (Some(dst), Some(src)) = (durable.get_mut(from..over), self.data.get(from..over))
            {
                dst.copy_from_slice(src);
            }
            if to > durable.len() {
                if from > durable.len() {
                    durable.resize(from, 0);
                }
                let at = durable.len();
                durable.extend_from_slice(self.data.get(at..to).unwrap_or_default());
            }
            durable.resize(len, 0);
        }
        self.synced_prefix = len;
        self.dirty_end = 0;
        self.min_len = usize::MAX;
    }

    /// Records that the contents from `offset` on may differ from the durable ones.
    fn touched(&mut self, offset: usize) {
        self.synced_prefix = self.synced_prefix.min(offset);
    }
}

#[derive(Debug, Default)]
struct State {
    files: BTreeMap<u64, SimFile>,
    dir: BTreeMap<PathBuf, u64>,
    durable_dir: BTreeMap<PathBuf, u64>,
    next_inode: u64,
    /// Pending faults: the operation, and how many more of them succeed before one fails.
    faults: Vec<(Fault, u32)>,
}

impl State {
    /// Frees `inode`'s contents if nothing can reach it any more: no listing names it and no
    /// handle has it open (what a real file system does with an unlinked, closed file).
    fn reclaim(&mut self, inode: u64) {
        let named = |dir: &BTreeMap<PathBuf, u64>| dir.values().any(|i| *i == inode);
        let open = self.files.get(&inode).is_some_and(|f| f.handles > 0);
        if !open && !named(&self.dir) && !named(&self.durable_dir) {
            self.files.remove(&inode);
        }
    }

    fn check(&mut self, op: Fault) -> io::Result<()> {
        let mut fire = false;
        self.faults.retain_mut(|(f, after)| {
            if *f != op || fire {
                return true;
            }
            if *after == 0 {
                fire = true;
                false
            } else {
                *after -= 1;
                true
            }
        });
        if fire {
            Err(io::Error::other(format!("injected {op:?} failure")))
        } else {
            Ok(())
        }
    }
}

/// An in-memory, crash-simulating file system (see the module docs).
#[derive(Debug, Clone, Default)]
pub struct SimBackend {
    state: Arc<Mutex<State>>,
}

#[derive(Debug)]
struct SimHandle {
    state: Arc<Mutex<State>>,
    inode: u64,
    read_only: bool,
}

impl SimBackend {
    /// An empty file system.
    pub fn new() -> Self {
        SimBackend::default()
    }

    /// Makes the next-but-`after` call of `op` fail (`after = 0`: the very next one).
    pub fn fail(&self, op: Fault, after: u32) {
        self.state.lock().faults.push((op, after));
    }

    /// The image a power loss would leave now: only synced data and synced directory entries.
    pub fn crash(&self) -> SimBackend {
        let state = self.state.lock();
        let mut files = BTreeMap::new();
        for inode in state.durable_dir.values() {
            if let Some(f) = state.files.get(inode) {
                files.insert(*inode, SimFile::shared(&f.durable));
            }
        }
        SimBackend {
            state: Arc::new(Mutex::new(State {
                files,
                dir: state.durable_dir.clone(),
                durable_dir: state.durable_dir.clone(),
                next_inode: state.next_inode,
                faults: Vec::new(),
            })),
        }
    }

    /// The image a power loss would leave if part of the unsynced writes reached the disk.
    /// For every durable file with unsynced appends, or unsynced writes over durable zeros (a
    /// preallocated file), `tear(path, unsynced_len)` says how much of the unsynced bytes
    /// (from the first one written since the last sync to the end of the current contents)
    /// survives, in order; the rest keeps its durable contents (zeros). It is called in path
    /// order, only for such files, so a seeded closure gives a reproducible image. A file
    /// otherwise rewritten or shortened since its last sync keeps its synced contents.
    /// Directory entries are the synced ones, as in [`crash`](SimBackend::crash).
    pub fn crash_torn(&self, mut tear: impl FnMut(&Path, u64) -> Tear) -> SimBackend {
        let torn = self.crash();
        let state = self.state.lock();
        let mut image = torn.state.lock();
        for (path, inode) in &state.durable_dir {
            let (Some(f), Some(out)) = (state.files.get(inode), image.files.get_mut(inode)) else {
                continue;
            };
            // Only appends and writes over durable zeros (a preallocated file) since the last
            // sync can be torn; anything else keeps its synced contents.
            let from = f.synced_prefix.min(f.data.len());
            let over_zeros = f
                .durable
                .get(from..)
                .is_some_and(|rest| rest.iter().all(|b| *b == 0));
            if f.data.len() < f.durable.len() || !over_zeros {
                continue;
            }
            let Some(unsynced) = f.data.get(from..).filter(|u| !u.is_empty()) else {
                continue;
            };
            let (kept, zeroed) = match tear(path, unsynced.len() as u64) {
                Tear::Prefix(n) => (n, 0),
                Tear::ZeroFilled(n) => (n, unsynced.len() as u64),
            };
            let kept = usize::try_from(kept)
                .unwrap_or(usize::MAX)
                .min(unsynced.len());
            let zeroed = usize::try_from(zeroed)
                .unwrap_or(usize::MAX)
                .min(unsynced.len());
            // The durable contents, the kept prefix of the new bytes written over them from
            // `from` on, and (for `ZeroFilled`) zeros up to the new length.
            let mut data = f.durable.to_vec();
            data.resize(f.durable.len().max(from + kept.max(zeroed)), 0);
            if let Some(dst) = data.get_mut(from..from + kept) {
                dst.copy_from_slice(unsynced.get(..kept).unwrap_or_default());
            }
            *out = SimFile::synced(data);
        }
        drop(image);
        torn
    }

    /// The image a process crash leaves: everything written, synced or not, stays (the kernel
    /// keeps its page cache). The new backend shares nothing with this one.
    pub fn process_crash(&self) -> SimBackend {
        let state = self.state.lock();
        // Files only open handles still reach die with the process.
        let files = state
            .files
            .iter()
            .filter(|(i, _)| state.dir.values().any(|d| d == *i))
            .map(|(i, f)| (*i, SimFile::shared(&f.data)))
            .collect();
        SimBackend {
            state: Arc::new(Mutex::new(State {
                files,
                dir: state.dir.clone(),
                durable_dir: state.dir.clone(),
                next_inode: state.next_inode,
                faults: Vec::new(),
            })),
        }
    }

    /// Paths of every file, sorted.
    pub fn paths(&self) -> Vec<PathBuf> {
        self.state.lock().dir.keys().cloned().collect()
    }

    /// The current contents of `path`, if it exists.
    pub fn read(&self, path: &Path) -> Option<Vec<u8>> {
        let state = self.state.lock();
        let inode = state.dir.get(path)?;
        state.files.get(inode).map(|f| f.data.to_vec())
    }

    /// Replaces (or creates) `path` with `bytes`, durably.
    pub fn write(&self, path: &Path, bytes: &[u8]) {
        let mut state = self.state.lock();
        let inode = match state.dir.get(path) {
            Some(i) => *i,
            None => {
                state.next_inode += 1;
                let i = state.next_inode;
                state.dir.insert(path.to_path_buf(), i);
                i
            }
        };
        state.durable_dir.insert(path.to_path_buf(), inode);
        let handles = state.files.get(&inode).map_or(0, |f| f.handles);
        let mut file = SimFile::synced(bytes.to_vec());
        file.handles = handles;
        state.files.insert(inode, file);
    }

    /// Removes `path` durably (no-op when absent).
    pub fn delete(&self, path: &Path) {
        let mut state = self.state.lock();
        let named = [state.dir.remove(path), state.durable_dir.remove(path)];
        for inode in named.into_iter().flatten() {
            state.reclaim(inode);
        }
    }
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("{} does not exist", path.display()),
    )
}

impl Backend for SimBackend {
    fn create_dir_all(&self, _dir: &Path) -> io::Result<()> {
        Ok(())
    }

    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>> {
        let state = self.state.lock();
        Ok(state
            .dir
            .keys()
            .filter(|p| p.parent() == Some(dir))
            .filter_map(|p| p.file_name()?.to_str().map(str::to_owned))
            .collect())
    }

    fn open_file(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn BackendFile>> {
        let mut state = self.state.lock();
        let inode = match (mode, state.dir.get(path).copied()) {
            (OpenMode::Existing | OpenMode::ReadOnly, Some(i)) => i,
            (OpenMode::Existing | OpenMode::ReadOnly, None) => return Err(not_found(path)),
            (OpenMode::CreateNew, Some(_)) => {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!("{} exists", path.display()),
                ))
            }
            (OpenMode::CreateNew, None) => {
                state.check(Fault::Create)?;
                state.next_inode += 1;
                let i = state.next_inode;
                state.files.insert(i, SimFile::default());
                state.dir.insert(path.to_path_buf(), i);
                i
            }
        };
        if let Some(f) = state.files.get_mut(&inode) {
            f.handles += 1;
        }
        Ok(Arc::new(SimHandle {
            state: self.state.clone(),
            inode,
            read_only: mode == OpenMode::ReadOnly,
        }))
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut state = self.state.lock();
        state.check(Fault::Remove)?;
        let inode = state.dir.remove(path).ok_or_else(|| not_found(path))?;
        state.reclaim(inode);
        Ok(())
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut state = self.state.lock();
        state.check(Fault::Rename)?;
        let inode = state.dir.remove(from).ok_or_else(|| not_found(from))?;
        if let Some(replaced) = state.dir.insert(to.to_path_buf(), inode) {
            state.reclaim(replaced);
        }
        Ok(())
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut state = self.state.lock();
        state.check(Fault::SyncDir)?;
        let in_dir = |p: &PathBuf| p.parent() == Some(dir);
        let mut dropped = Vec::new();
        state.durable_dir.retain(|p, i| {
            let keep = !in_dir(p);
            if !keep {
                dropped.push(*i);
            }
            keep
        });
        let entries: Vec<(PathBuf, u64)> = state
            .dir
            .iter()
            .filter(|(p, _)| in_dir(p))
            .map(|(p, i)| (p.clone(), *i))
            .collect();
        state.durable_dir.extend(entries);
        for inode in dropped {
            state.reclaim(inode);
        }
        Ok(())
    }

    fn lock_dir(&self, _dir: &Path) -> io::Result<DirLock> {
        Ok(DirLock::new(None))
    }
}

impl SimHandle {
    fn refuse_if_read_only(&self) -> io::Result<()> {
        if self.read_only {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                "file opened read-only",
            ));
        }
        Ok(())
    }

    fn with<T>(&self, f: impl FnOnce(&mut SimFile) -> io::Result<T>) -> io::Result<T> {
        let mut state = self.state.lock();
        match state.files.get_mut(&self.inode) {
            Some(file) => f(file),
            None => Err(io::Error::new(io::ErrorKind::NotFound, "file vanished")),
        }
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        let mut state = self.state.lock();
        if let Some(f) = state.files.get_mut(&self.inode) {
            f.handles = f.handles.saturating_sub(1);
        }
        state.reclaim(self.inode);
    }
}

impl BackendFile for SimHandle {
    fn len(&self) -> io::Result<u64> {
        self.with(|f| Ok(f.data.len() as u64))
    }

    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.with(|f| {
            let start = usize::try_from(offset).map_err(io::Error::other)?;
            let src = start
                .checked_add(buf.len())
                .and_then(|end| f.data.get(start..end))
                .ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))?;
            buf.copy_from_slice(src);
            Ok(())
        })
    }

    fn write_all_at(&self, data: &[u8], offset: u64) -> io::Result<()> {
        self.refuse_if_read_only()?;
        self.state.lock().check(Fault::Write)?;
        self.with(|f| {
            let start = usize::try_from(offset).map_err(io::Error::other)?;
            let end = start
                .checked_add(data.len())
                .ok_or_else(|| io::Error::other("offset overflow"))?;
            f.touched(start);
            f.dirty_end = f.dirty_end.max(end);
            // Copies the contents once if a crash image or the durable contents share them.
            let contents = Arc::make_mut(&mut f.data);
            if contents.len() <= start {
                // An append: the bytes are written once (no zero-fill first).
                contents.resize(start, 0);
                contents.extend_from_slice(data);
            } else {
                if contents.len() < end {
                    contents.resize(end, 0);
                }
                if let Some(dst) = contents.get_mut(start..end) {
                    dst.copy_from_slice(data);
                }
            }
            Ok(())
        })
    }

    fn sync_data(&self) -> io::Result<()> {
        self.state.lock().check(Fault::SyncData)?;
        self.with(|f| {
            f.sync();
            Ok(())
        })
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.refuse_if_read_only()?;
        self.with(|f| {
            let len = usize::try_from(len).map_err(io::Error::other)?;
            f.touched(len.min(f.data.len()));
            f.min_len = f.min_len.min(len);
            Arc::make_mut(&mut f.data).resize(len, 0);
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(b: &SimBackend, name: &str) -> Arc<dyn BackendFile> {
        let path = Path::new("/d").join(name);
        let f = b.open_file(&path, OpenMode::CreateNew).unwrap();
        b.sync_dir(Path::new("/d")).unwrap();
        f
    }

    fn durable(b: &SimBackend, name: &str) -> Vec<u8> {
        b.crash().read(&Path::new("/d").join(name)).unwrap()
    }

    #[test]
    fn sync_makes_exactly_the_current_contents_durable() {
        let b = SimBackend::new();
        let f = file(&b, "a");
        f.write_all_at(b"0123456789", 0).unwrap();
        assert_eq!(durable(&b, "a"), b"");
        f.sync_data().unwrap();
        assert_eq!(durable(&b, "a"), b"0123456789");
        // An overwrite in the middle, an append, a truncation and a regrowth.
        f.write_all_at(b"xx", 4).unwrap();
        f.write_all_at(b"ab", 10).unwrap();
        assert_eq!(durable(&b, "a"), b"0123456789");
        f.sync_data().unwrap();
        assert_eq!(durable(&b, "a"), b"0123xx6789ab");
        f.set_len(3).unwrap();
        f.sync_data().unwrap();
        assert_eq!(durable(&b, "a"), b"012");
        f.set_len(5).unwrap();
        f.write_all_at(b"z", 6).unwrap();
        f.sync_data().unwrap();
        assert_eq!(durable(&b, "a"), b"012\0\0\0z");
        assert_eq!(b.read(Path::new("/d/a")).unwrap(), b"012\0\0\0z");
    }

    #[test]
    fn after_any_writes_and_resizes_a_sync_makes_the_current_contents_durable() {
        // Overwrites, appends after a gap, shrinks and regrowths in a seeded order, with crash
        // images taken in between (they share contents with the file): after each sync the
        // durable contents are the current ones, byte for byte.
        let b = SimBackend::new();
        let f = file(&b, "a");
        let mut model: Vec<u8> = Vec::new();
        let mut x = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        };
        let mut images = Vec::new();
        for round in 0..400u64 {
            match next(5) {
                0 | 1 => {
                    let at = next(model.len() as u64 + 64) as usize;
                    let len = 1 + next(48) as usize;
                    let bytes: Vec<u8> = (0..len).map(|_| 1 + next(255) as u8).collect();
                    f.write_all_at(&bytes, at as u64).unwrap();
                    if model.len() < at + len {
                        model.resize(at + len, 0);
                    }
                    model[at..at + len].copy_from_slice(&bytes);
                }
                2 => {
                    let len = next(model.len() as u64 + 32) as usize;
                    f.set_len(len as u64).unwrap();
                    model.resize(len, 0);
                }
                3 => images.push(b.crash()),
                _ => {
                    f.sync_data().unwrap();
                    assert_eq!(durable(&b, "a"), model, "round {round}");
                }
            }
            assert_eq!(b.read(Path::new("/d/a")).unwrap(), model, "round {round}");
        }
    }

    #[test]
    fn a_removed_file_is_freed_once_no_listing_names_it_and_no_handle_has_it_open() {
        let b = SimBackend::new();
        let f = file(&b, "a");
        f.write_all_at(b"data", 0).unwrap();
        f.sync_data().unwrap();
        let files = |b: &SimBackend| b.state.lock().files.len();
        b.remove_file(Path::new("/d/a")).unwrap();
        // Still open, and still named by the durable listing: readable, kept.
        let mut buf = [0u8; 4];
        f.read_exact_at(&mut buf, 0).unwrap();
        assert_eq!(&buf, b"data");
        b.sync_dir(Path::new("/d")).unwrap();
        assert_eq!(files(&b), 1);
        drop(f);
        assert_eq!(files(&b), 0);
        // A file named only by the durable listing stays until the directory is synced.
        let g = file(&b, "g");
        drop(g);
        b.remove_file(Path::new("/d/g")).unwrap();
        assert_eq!(files(&b), 1);
        assert!(b.crash().read(Path::new("/d/g")).is_some());
        b.sync_dir(Path::new("/d")).unwrap();
        assert_eq!(files(&b), 0);
    }

    #[test]
    fn a_torn_crash_keeps_a_prefix_of_appends_only() {
        let b = SimBackend::new();
        let appended = file(&b, "appended");
        appended.write_all_at(b"durable", 0).unwrap();
        appended.sync_data().unwrap();
        appended.write_all_at(b"+unsynced", 7).unwrap();
        let rewritten = file(&b, "rewritten");
        rewritten.write_all_at(b"durable", 0).unwrap();
        rewritten.sync_data().unwrap();
        rewritten.write_all_at(b"D", 0).unwrap();
        rewritten.write_all_at(b"+more", 7).unwrap();
        let mut asked = Vec::new();
        let img = b.crash_torn(|path, unsynced| {
            asked.push((path.to_path_buf(), unsynced));
            Tear::Prefix(3)
        });
        assert_eq!(asked, [(PathBuf::from("/d/appended"), 9)]);
        assert_eq!(img.read(Path::new("/d/appended")).unwrap(), b"durable+un");
        assert_eq!(img.read(Path::new("/d/rewritten")).unwrap(), b"durable");
        let img = b.crash_torn(|_, _| Tear::ZeroFilled(2));
        assert_eq!(
            img.read(Path::new("/d/appended")).unwrap(),
            b"durable+u\0\0\0\0\0\0\0"
        );
        // The torn image is durable as it stands.
        assert_eq!(
            img.crash().read(Path::new("/d/appended")),
            img.read(Path::new("/d/appended"))
        );
    }
}
