//! Segment and hint file names, and creating a segment durably.
//!
//! ```text
//! <dir>/
//!   LOCK                      exclusive lock held while the store is open
//!   00000001.log              segments, named by id (8 lowercase hex digits)
//!   00000002.log
//!   00000003.compact          compaction output being written (deleted on open)
//!   segment.spare             zero-filled next segment (see `spare`; deleted on open)
//!   hint                      index snapshot written on close (see `hint`)
//!   00000002.log.corrupt      moved aside by a salvage, never read again
//! ```

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::backend::{Backend, BackendFile, OpenMode};
use crate::error::StoreError;
use crate::log::format::{encode_segment_header, SegmentKind};

/// Name of the index snapshot file.
pub(crate) const HINT_NAME: &str = "hint";
/// Name the hint is written under before being renamed into place.
pub(crate) const HINT_TMP_NAME: &str = "hint.tmp";

/// `00000001.log` for segment 1.
pub(crate) fn segment_name(id: u32) -> String {
    format!("{id:08x}.log")
}

/// The temporary name compaction writes segment `id` under.
pub(crate) fn compact_tmp_name(id: u32) -> String {
    format!("{id:08x}.compact")
}

fn parse_hex_id(s: &str) -> Option<u32> {
    if s.len() == 8
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        u32::from_str_radix(s, 16).ok()
    } else {
        None
    }
}

/// The id of a segment file name (`xxxxxxxx.log`), if it is one.
pub(crate) fn parse_segment_name(name: &str) -> Option<u32> {
    parse_hex_id(name.strip_suffix(".log")?)
}

/// The id of a compaction temporary file name (`xxxxxxxx.compact`), if it is one.
pub(crate) fn parse_compact_tmp_name(name: &str) -> Option<u32> {
    parse_hex_id(name.strip_suffix(".compact")?)
}

/// The id at the start of any store file name (segments, temporaries, moved-aside files), so
/// that new ids never reuse an old file's name.
pub(crate) fn leading_id(name: &str) -> Option<u32> {
    parse_hex_id(name.get(..8)?)
}

/// Creates `name` in `dir` holding a segment header for `id`, fdatasynced. The caller fsyncs
/// the directory (or renames the file first).
pub(crate) fn create_segment_file(
    backend: &dyn Backend,
    dir: &Path,
    name: &str,
    id: u32,
    kind: SegmentKind,
) -> Result<(Arc<dyn BackendFile>, PathBuf), StoreError> {
    let path = dir.join(name);
    let file = backend
        .open_file(&path, OpenMode::CreateNew)
        .map_err(|e| StoreError::io("create segment", &path, e))?;
    file.write_all_at(&encode_segment_header(id, kind), 0)
        .map_err(|e| StoreError::io("write segment header", &path, e))?;
    file.sync_data()
        .map_err(|e| StoreError::io("fdatasync", &path, e))?;
    Ok((file, path))
}

/// Fsyncs the store directory.
pub(crate) fn sync_dir(backend: &dyn Backend, dir: &Path) -> Result<(), StoreError> {
    backend
        .sync_dir(dir)
        .map_err(|e| StoreError::io("fsync directory", dir, e))
}

/// Reads `len` bytes of `file` from `offset`.
pub(crate) fn read_range(
    file: &dyn BackendFile,
    path: &Path,
    offset: u64,
    len: u64,
) -> Result<Vec<u8>, StoreError> {
    let n = usize::try_from(len).map_err(|_| {
        StoreError::io(
            "read",
            path,
            std::io::Error::other("file too large for this platform"),
        )
    })?;
    let mut buf = vec![0u8; n];
    file.read_exact_at(&mut buf, offset)
        .map_err(|e| StoreError::io("read", path, e))?;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        assert_eq!(segment_name(0x1a), "0000001a.log");
        assert_eq!(parse_segment_name("0000001a.log"), Some(0x1a));
        assert_eq!(parse_segment_name("0000001A.log"), None);
        assert_eq!(parse_segment_name("0000001a.log.corrupt"), None);
        assert_eq!(parse_segment_name("1a.log"), None);
        assert_eq!(parse_compact_tmp_name(&compact_tmp_name(7)), Some(7));
        assert_eq!(leading_id("0000001a.log.corrupt"), Some(0x1a));
        assert_eq!(leading_id("hint"), None);
    }
}
