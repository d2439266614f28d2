//! The hint file: a snapshot of the index so that opening does not replay every value.
//!
//! Written on close, by `LogStore::checkpoint`, and on the store's own once
//! `LogOptions::checkpoint_min_bytes` of log followed the last one (the writer snapshots the
//! index after a synced group, the compactor thread writes the file): to `hint.tmp`,
//! fdatasynced, renamed to `hint`, directory fsynced. It records, per segment, how many bytes
//! it covers; opening loads the snapshot and replays only the bytes after those offsets. A
//! snapshot that a compaction round overtook before it was written is dropped (it would name
//! files that are gone). The hint is derived data: if it
//! is missing, fails its checksum, or disagrees with the segments (a covered file missing or
//! shorter than covered), it is ignored and the log is replayed in full. Compaction deletes it
//! before it renames its output into place.
//!
//! ```text
//! +----------------+--------------+-----------+--------------------------------------------+
//! | magic FJHINTv1 | last_seq u64 | nfiles u32| nfiles x (id u32, kind u8, covered u64,    |
//! |                |              |           |           max_seq u64)                     |
//! +----------------+--------------+-----------+--------------------------------------------+
//! | ntables u32 | ntables x (tlen u8, name, nkeys u64,                                     |
//! |             |   nkeys x (klen u16, key, seq u64, file u32, offset u32, len u32))       |
//! +-------------+----------------------------------------------------------------------------+
//! | crc32c u32 over everything before                                                        |
//! +------------------------------------------------------------------------------------------+
//! keys strictly ascending within a table; every (offset, len) inside its file's covered bytes
//! ```

use std::collections::{BTreeMap, HashMap};

use crate::batch::{validate_table, MAX_KEY_LEN};
use crate::log::format::{
    le_u16, le_u32, le_u64, SegmentKind, RECORD_HEADER_LEN, SEGMENT_HEADER_LEN,
};
use crate::log::index::{Index, Loc};

const HINT_MAGIC: [u8; 8] = *b"FJHINTv1";
const FILE_ENTRY_LEN: usize = 21;
const KEY_ENTRY_MIN: usize = 22;

/// One segment as the hint saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HintFile {
    pub id: u32,
    pub kind: SegmentKind,
    /// Bytes of the segment the snapshot covers (a batch boundary).
    pub covered: u64,
    pub max_seq: u64,
}

/// One table's index.
pub(crate) type TableIndex = BTreeMap<Box<[u8]>, Loc>;

/// A decoded hint file.
#[derive(Debug)]
pub(crate) struct Hint {
    pub last_seq: u64,
    pub files: Vec<HintFile>,
    pub tables: Vec<(Box<str>, TableIndex)>,
}

/// Serializes the index (whose files all hold `len` durable bytes).
pub(crate) fn encode(index: &Index) -> Vec<u8> {
    let keys = index.key_count();
    let mut out = Vec::with_capacity(64 + index.files.len() * FILE_ENTRY_LEN + keys * 40);
    out.extend_from_slice(&HINT_MAGIC);
    out.extend_from_slice(&index.last_seq.to_le_bytes());
    out.extend_from_slice(&(index.files.len() as u32).to_le_bytes());
    for (id, f) in &index.files {
        out.extend_from_slice(&id.to_le_bytes());
        out.push(match f.kind {
            SegmentKind::Log => 1,
            SegmentKind::Compacted => 2,
        });
        out.extend_from_slice(&f.len.to_le_bytes());
        out.extend_from_slice(&f.max_seq.to_le_bytes());
    }
    let mut names: Vec<&Box<str>> = index.tables.keys().collect();
    names.sort();
    out.extend_from_slice(&(names.len() as u32).to_le_bytes());
    for name in names {
        let Some(t) = index.tables.get(name) else {
            continue;
        };
        out.push(name.len() as u8);
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(&(t.len() as u64).to_le_bytes());
        for (k, loc) in t {
            out.extend_from_slice(&(k.len() as u16).to_le_bytes());
            out.extend_from_slice(k);
            out.extend_from_slice(&loc.seq.to_le_bytes());
            out.extend_from_slice(&loc.file.to_le_bytes());
            out.extend_from_slice(&loc.offset.to_le_bytes());
            out.extend_from_slice(&loc.len.to_le_bytes());
        }
    }
    let crc = crc32c::crc32c(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

struct Cursor<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], &'static str> {
        let end = self.at.checked_add(n).ok_or("length overflow")?;
        let s = self.b.get(self.at..end).ok_or("truncated")?;
        self.at = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, &'static str> {
        self.take(1)?.first().copied().ok_or("truncated")
    }
    fn u16(&mut self) -> Result<u16, &'static str> {
        le_u16(self.take(2)?, 0).ok_or("truncated")
    }
    fn u32(&mut self) -> Result<u32, &'static str> {
        le_u32(self.take(4)?, 0).ok_or("truncated")
    }
    fn u64(&mut self) -> Result<u64, &'static str> {
        le_u64(self.take(8)?, 0).ok_or("truncated")
    }
    fn remaining(&self) -> usize {
        self.b.len().saturating_sub(self.at)
    }
}

/// Decodes and checks a hint file; the error says why it is ignored.
pub(crate) fn decode(bytes: &[u8]) -> Result<Hint, &'static str> {
    let body_len = bytes
        .len()
        .checked_sub(4)
        .ok_or("shorter than its checksum")?;
    let body = bytes.get(..body_len).ok_or("truncated")?;
    if le_u32(bytes, body_len) != Some(crc32c::crc32c(body)) {
        return Err("checksum mismatch");
    }
    let mut c = Cursor { b: body, at: 0 };
    if c.take(8)? != HINT_MAGIC {
        return Err("bad magic");
    }
    let last_seq = c.u64()?;
    let nfiles = c.u32()? as usize;
    if nfiles > c.remaining() / FILE_ENTRY_LEN {
        return Err("file count exceeds the file");
    }
    let mut files = Vec::with_capacity(nfiles);
    let mut covered: HashMap<u32, u64> = HashMap::with_capacity(nfiles);
    for _ in 0..nfiles {
        let id = c.u32()?;
        let kind = match c.u8()? {
            1 => SegmentKind::Log,
            2 => SegmentKind::Compacted,
            _ => return Err("bad segment kind"),
        };
        let cov = c.u64()?;
        let max_seq = c.u64()?;
        if cov < SEGMENT_HEADER_LEN as u64 || cov > u64::from(u32::MAX) {
            return Err("covered length out of range");
        }
        if covered.insert(id, cov).is_some() {
            return Err("segment listed twice");
        }
        files.push(HintFile {
            id,
            kind,
            covered: cov,
            max_seq,
        });
    }
    let ntables = c.u32()? as usize;
    if ntables > c.remaining() {
        return Err("table count exceeds the file");
    }
    let mut tables = Vec::with_capacity(ntables);
    let mut prev_name: Option<&str> = None;
    for _ in 0..ntables {
        let tlen = usize::from(c.u8()?);
        let name = std::str::from_utf8(c.take(tlen)?).map_err(|_| "table name not UTF-8")?;
        validate_table(name).map_err(|_| "invalid table name")?;
        if prev_name.is_some_and(|p| p >= name) {
            return Err("tables out of order");
        }
        prev_name = Some(name);
        let nkeys = c.u64()?;
        if nkeys > (c.remaining() / KEY_ENTRY_MIN) as u64 {
            return Err("key count exceeds the file");
        }
        let mut entries: Vec<(Box<[u8]>, Loc)> = Vec::with_capacity(nkeys as usize);
        for _ in 0..nkeys {
            let klen = usize::from(c.u16()?);
            if klen > MAX_KEY_LEN {
                return Err("key too long");
            }
            let key = c.take(klen)?;
            let loc = Loc {
                seq: c.u64()?,
                file: c.u32()?,
                offset: c.u32()?,
                len: c.u32()?,
            };
            let cov = covered
                .get(&loc.file)
                .ok_or("entry in a segment not listed")?;
            let end = u64::from(loc.offset) + u64::from(loc.len);
            if u64::from(loc.offset) < SEGMENT_HEADER_LEN as u64
                || (loc.len as usize) < RECORD_HEADER_LEN
                || end > *cov
            {
                return Err("entry outside its segment's covered bytes");
            }
            if let Some((prev, _)) = entries.last() {
                if prev.as_ref() >= key {
                    return Err("keys out of order");
                }
            }
            entries.push((Box::from(key), loc));
        }
        if entries.is_empty() {
            return Err("empty table");
        }
        tables.push((Box::from(name), entries.into_iter().collect()));
    }
    if c.remaining() != 0 {
        return Err("trailing bytes");
    }
    Ok(Hint {
        last_seq,
        files,
        tables,
    })
}
