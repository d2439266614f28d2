//! The on-disk format of segments: segment header, batches, records.
//!
//! A segment file `<id:08x>.log` is a header followed by batches. All integers little-endian.
//!
//! ```text
//! segment header (24 bytes)
//! +----------------+--------+----------+------------+---------------+
//! | magic FJSEGv01 | id u32 | kind u32 | zero u32   | crc32c u32    |   crc over bytes 0..20
//! +----------------+--------+----------+------------+---------------+
//!   kind: 1 = log (written by the commit path), 2 = compacted (written by compaction)
//!
//! batch
//! +-----------+-----------+---------------+--------------+-------------+
//! | magic u32 | count u32 | first_seq u64 | body_len u32 | hcrc u32    |  header, 24 bytes,
//! +-----------+-----------+---------------+--------------+-------------+  hcrc over bytes 0..20
//! | record 0 | record 1 | ... | record count-1 |                         body_len bytes
//! +-----------+------------------+
//! | tcrc u32  | end magic u32    |                                         trailer, 8 bytes
//! +-----------+------------------+
//!   tcrc = crc32c(header bytes 0..24 ++ every record's crc, in order)
//!
//! record (20-byte header + payload)
//! +---------+-------+----------+----------+----------+---------+-------+-----+-------+
//! | crc u32 | op u8 | tlen u8  | klen u16 | vlen u32 | seq u64 | table | key | value |
//! +---------+-------+----------+----------+----------+---------+-------+-----+-------+
//!   crc = crc32c of every byte after the crc field; op 1 = put, 2 = delete (vlen 0)
//! ```
//!
//! The count at the front and the checksum at the back make a torn batch detectable: a batch
//! is applied only if its header, every record and its trailer check out. In a log segment
//! record `i` of a batch has sequence number `first_seq + i`, and batches follow each other
//! without gaps. Compacted segments hold records copied verbatim from older segments, so their
//! batches carry `first_seq = 0` and their records keep their original sequence numbers.

use crate::batch::{validate_table, Op};
use crate::error::CorruptionKind;

/// Segment header magic.
pub(crate) const SEGMENT_MAGIC: [u8; 8] = *b"FJSEGv01";
/// Segment header length in bytes.
pub(crate) const SEGMENT_HEADER_LEN: usize = 24;
/// Batch header magic (`"FJB1"` little-endian).
pub(crate) const BATCH_MAGIC: u32 = u32::from_le_bytes(*b"FJB1");
/// Batch trailer magic (`"FJBE"` little-endian).
pub(crate) const TRAILER_MAGIC: u32 = u32::from_le_bytes(*b"FJBE");
/// Batch header length in bytes.
pub(crate) const BATCH_HEADER_LEN: usize = 24;
/// Batch trailer length in bytes.
pub(crate) const BATCH_TRAILER_LEN: usize = 8;
/// Record header length in bytes.
pub(crate) const RECORD_HEADER_LEN: usize = 20;
/// Largest batch body accepted when decoding (a batch, plus slack for compaction batches).
pub(crate) const MAX_BODY_LEN: usize = crate::batch::MAX_BATCH_BYTES;

const OP_PUT: u8 = 1;
const OP_DELETE: u8 = 2;

/// Which path wrote a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SegmentKind {
    /// Written by the commit path; only the newest log segment may end in a torn batch.
    Log,
    /// Written whole by compaction (to a temporary name, then renamed): never torn.
    Compacted,
}

impl SegmentKind {
    fn code(self) -> u32 {
        match self {
            SegmentKind::Log => 1,
            SegmentKind::Compacted => 2,
        }
    }
}

pub(crate) fn le_u16(b: &[u8], at: usize) -> Option<u16> {
    let s = b.get(at..at.checked_add(2)?)?;
    Some(u16::from_le_bytes(s.try_into().ok()?))
}

pub(crate) fn le_u32(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes(s.try_into().ok()?))
}

pub(crate) fn le_u64(b: &[u8], at: usize) -> Option<u64> {
    let s = b.get(at..at.checked_add(8)?)?;
    Some(u64::from_le_bytes(s.try_into().ok()?))
}

/// The 24-byte header of segment `id`.
pub(crate) fn encode_segment_header(id: u32, kind: SegmentKind) -> [u8; SEGMENT_HEADER_LEN] {
    let mut h = [0u8; SEGMENT_HEADER_LEN];
    let mut v = Vec::with_capacity(SEGMENT_HEADER_LEN);
    v.extend_from_slice(&SEGMENT_MAGIC);
    v.extend_from_slice(&id.to_le_bytes());
    v.extend_from_slice(&kind.code().to_le_bytes());
    v.extend_from_slice(&0u32.to_le_bytes());
    let crc = crc32c::crc32c(&v);
    v.extend_from_slice(&crc.to_le_bytes());
    h.copy_from_slice(&v);
    h
}

/// Decodes a segment header, checking it names segment `expected_id`.
pub(crate) fn decode_segment_header(
    bytes: &[u8],
    expected_id: u32,
) -> Result<SegmentKind, CorruptionKind> {
    let h = bytes
        .get(..SEGMENT_HEADER_LEN)
        .ok_or(CorruptionKind::BadSegmentHeader)?;
    let body = h.get(..20).ok_or(CorruptionKind::BadSegmentHeader)?;
    if h.get(..8) != Some(&SEGMENT_MAGIC[..])
        || le_u32(h, 20) != Some(crc32c::crc32c(body))
        || le_u32(h, 16) != Some(0)
    {
        return Err(CorruptionKind::BadSegmentHeader);
    }
    let id = le_u32(h, 8).ok_or(CorruptionKind::BadSegmentHeader)?;
    if id != expected_id {
        return Err(CorruptionKind::SegmentIdMismatch {
            expected: expected_id,
            found: id,
        });
    }
    match le_u32(h, 12) {
        Some(1) => Ok(SegmentKind::Log),
        Some(2) => Ok(SegmentKind::Compacted),
        _ => Err(CorruptionKind::BadSegmentHeader),
    }
}

/// Appends one record for `op` with sequence number `seq`; returns its crc.
fn encode_record(buf: &mut Vec<u8>, op: &Op, seq: u64) -> u32 {
    let start = buf.len();
    let (code, table, key, value): (u8, &str, &[u8], &[u8]) = match op {
        Op::Put { table, key, value } => (OP_PUT, table, key, value),
        Op::Delete { table, key } => (OP_DELETE, table, key, &[]),
    };
    // Lengths fit their fields: `Batch::validate` bounds table names to 64 bytes, keys to
    // 4096 bytes and values to 16 MiB before anything is encoded.
    buf.extend_from_slice(&[0; 4]);
    buf.push(code);
    buf.push(table.len() as u8);
    buf.extend_from_slice(&(key.len() as u16).to_le_bytes());
    buf.extend_from_slice(&(value.len() as u32).to_le_bytes());
    buf.extend_from_slice(&seq.to_le_bytes());
    buf.extend_from_slice(table.as_bytes());
    buf.extend_from_slice(key);
    buf.extend_from_slice(value);
    let crc = crc32c::crc32c(buf.get(start + 4..).unwrap_or_default());
    if let Some(slot) = buf.get_mut(start..start + 4) {
        slot.copy_from_slice(&crc.to_le_bytes());
    }
    crc
}

/// Appends a batch of already validated `ops` starting at sequence number `first_seq`.
/// Pushes each record's `(offset in buf, length)` onto `records`.
pub(crate) fn encode_batch(
    buf: &mut Vec<u8>,
    first_seq: u64,
    ops: &[Op],
    records: &mut Vec<(usize, usize)>,
) {
    let start = buf.len();
    buf.extend_from_slice(&[0; BATCH_HEADER_LEN]);
    let mut crcs = Vec::with_capacity(ops.len());
    for (i, op) in ops.iter().enumerate() {
        let at = buf.len();
        crcs.push(encode_record(buf, op, first_seq + i as u64));
        records.push((at, buf.len() - at));
    }
    finish_batch(buf, start, ops.len(), first_seq, &crcs);
}

/// Appends a batch holding `raw` records copied verbatim (compaction); `first_seq` is 0.
pub(crate) fn encode_raw_batch(
    buf: &mut Vec<u8>,
    raw: &[&[u8]],
    records: &mut Vec<(usize, usize)>,
) {
    let start = buf.len();
    buf.extend_from_slice(&[0; BATCH_HEADER_LEN]);
    let mut crcs = Vec::with_capacity(raw.len());
    for r in raw {
        let at = buf.len();
        crcs.push(le_u32(r, 0).unwrap_or(0));
        buf.extend_from_slice(r);
        records.push((at, r.len()));
    }
    finish_batch(buf, start, raw.len(), 0, &crcs);
}

fn finish_batch(buf: &mut Vec<u8>, start: usize, count: usize, first_seq: u64, crcs: &[u32]) {
    let body_len = buf.len() - start - BATCH_HEADER_LEN;
    let mut header = Vec::with_capacity(BATCH_HEADER_LEN);
    header.extend_from_slice(&BATCH_MAGIC.to_le_bytes());
    header.extend_from_slice(&(count as u32).to_le_bytes());
    header.extend_from_slice(&first_seq.to_le_bytes());
    header.extend_from_slice(&(body_len as u32).to_le_bytes());
    let hcrc = crc32c::crc32c(&header);
    header.extend_from_slice(&hcrc.to_le_bytes());
    let mut tcrc = crc32c::crc32c(&header);
    for c in crcs {
        tcrc = crc32c::crc32c_append(tcrc, &c.to_le_bytes());
    }
    if let Some(slot) = buf.get_mut(start..start + BATCH_HEADER_LEN) {
        slot.copy_from_slice(&header);
    }
    buf.extend_from_slice(&tcrc.to_le_bytes());
    buf.extend_from_slice(&TRAILER_MAGIC.to_le_bytes());
}

/// A record decoded from a buffer.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RecordRef<'a> {
    /// True for a put, false for a delete.
    pub is_put: bool,
    pub table: &'a str,
    pub key: &'a [u8],
    pub value: &'a [u8],
    pub seq: u64,
    /// Offset of the record in the buffer it was decoded from.
    pub offset: usize,
    /// Length of the whole record in bytes.
    pub len: usize,
    pub crc: u32,
}

/// Decodes the record at `at` in `bytes`, which must end exactly at `at + len` when `exact`
/// is `Some(len)`. `None` on any malformation or checksum failure.
pub(crate) fn decode_record(bytes: &[u8], at: usize) -> Result<RecordRef<'_>, RecordFault> {
    let head = bytes
        .get(
            at..at
                .checked_add(RECORD_HEADER_LEN)
                .ok_or(RecordFault::Malformed)?,
        )
        .ok_or(RecordFault::Malformed)?;
    let crc = le_u32(head, 0).ok_or(RecordFault::Malformed)?;
    let op = *head.get(4).ok_or(RecordFault::Malformed)?;
    let tlen = usize::from(*head.get(5).ok_or(RecordFault::Malformed)?);
    let klen = usize::from(le_u16(head, 6).ok_or(RecordFault::Malformed)?);
    let vlen = le_u32(head, 8).ok_or(RecordFault::Malformed)? as usize;
    let seq = le_u64(head, 12).ok_or(RecordFault::Malformed)?;
    let len = RECORD_HEADER_LEN
        .checked_add(tlen)
        .and_then(|n| n.checked_add(klen))
        .and_then(|n| n.checked_add(vlen))
        .ok_or(RecordFault::Malformed)?;
    let end = at.checked_add(len).ok_or(RecordFault::Malformed)?;
    let rec = bytes.get(at..end).ok_or(RecordFault::Malformed)?;
    let covered = rec.get(4..).ok_or(RecordFault::Malformed)?;
    if crc32c::crc32c(covered) != crc {
        return Err(RecordFault::Checksum);
    }
    if !(op == OP_PUT || op == OP_DELETE && vlen == 0) {
        return Err(RecordFault::Malformed);
    }
    let p = RECORD_HEADER_LEN;
    let table = rec.get(p..p + tlen).ok_or(RecordFault::Malformed)?;
    let key = rec
        .get(p + tlen..p + tlen + klen)
        .ok_or(RecordFault::Malformed)?;
    let value = rec.get(p + tlen + klen..).ok_or(RecordFault::Malformed)?;
    let table = std::str::from_utf8(table).map_err(|_| RecordFault::Malformed)?;
    if validate_table(table).is_err() || key.len() > crate::batch::MAX_KEY_LEN {
        return Err(RecordFault::Malformed);
    }
    Ok(RecordRef {
        is_put: op == OP_PUT,
        table,
        key,
        value,
        seq,
        offset: at,
        len,
        crc,
    })
}

/// Why a record failed to decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RecordFault {
    Malformed,
    Checksum,
}

/// Why a batch failed to decode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum BatchFault {
    /// The buffer ends before the batch does: a torn write if this is the log's tail.
    Torn,
    /// The batch is complete but wrong.
    Corrupt(CorruptionKind),
}

/// A batch decoded from a buffer.
#[derive(Debug)]
pub(crate) struct DecodedBatch<'a> {
    pub first_seq: u64,
    pub records: Vec<RecordRef<'a>>,
    /// Offset just past the batch's trailer.
    pub end: usize,
}

/// Decodes the batch at `pos` in `bytes`. With `check_seq`, records must carry
/// `first_seq + i` (log segments).
pub(crate) fn decode_batch(
    bytes: &[u8],
    pos: usize,
    check_seq: bool,
) -> Result<DecodedBatch<'_>, BatchFault> {
    use CorruptionKind as K;
    let header_end = pos.checked_add(BATCH_HEADER_LEN).ok_or(BatchFault::Torn)?;
    let header = bytes.get(pos..header_end).ok_or(BatchFault::Torn)?;
    let bad = |k| BatchFault::Corrupt(k);
    if le_u32(header, 0) != Some(BATCH_MAGIC) {
        return Err(bad(K::BadBatchMagic));
    }
    let hcrc = le_u32(header, 20).ok_or(bad(K::BadBatchHeaderChecksum))?;
    if crc32c::crc32c(header.get(..20).unwrap_or_default()) != hcrc {
        return Err(bad(K::BadBatchHeaderChecksum));
    }
    let count = le_u32(header, 4).ok_or(bad(K::BadBatchLength))?;
    let first_seq = le_u64(header, 8).ok_or(bad(K::BadBatchLength))?;
    let body_len = le_u32(header, 16).ok_or(bad(K::BadBatchLength))? as usize;
    if count == 0
        || body_len > MAX_BODY_LEN
        || (count as usize).saturating_mul(RECORD_HEADER_LEN) > body_len
    {
        return Err(bad(K::BadBatchLength));
    }
    let body_end = header_end.checked_add(body_len).ok_or(BatchFault::Torn)?;
    let end = body_end
        .checked_add(BATCH_TRAILER_LEN)
        .ok_or(BatchFault::Torn)?;
    if end > bytes.len() {
        return Err(BatchFault::Torn);
    }
    let body = bytes.get(..body_end).ok_or(BatchFault::Torn)?;
    let mut records = Vec::with_capacity(count as usize);
    let mut tcrc = crc32c::crc32c(header);
    let mut at = header_end;
    for index in 0..count {
        let rec = decode_record(body, at).map_err(|f| match f {
            RecordFault::Malformed => bad(K::BadRecord { index }),
            RecordFault::Checksum => bad(K::BadRecordChecksum { index }),
        })?;
        if check_seq {
            let expected = first_seq.wrapping_add(u64::from(index));
            if rec.seq != expected {
                return Err(bad(K::BadSequence {
                    expected,
                    found: rec.seq,
                }));
            }
        }
        tcrc = crc32c::crc32c_append(tcrc, &rec.crc.to_le_bytes());
        at += rec.len;
        records.push(rec);
    }
    if at != body_end {
        return Err(bad(K::BadBatchLength));
    }
    if le_u32(bytes, body_end) != Some(tcrc) || le_u32(bytes, body_end + 4) != Some(TRAILER_MAGIC) {
        return Err(bad(K::BadBatchTrailer));
    }
    Ok(DecodedBatch {
        first_seq,
        records,
        end,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ops() -> Vec<Op> {
        vec![
            Op::Put {
                table: "jobs".into(),
                key: b"k1".to_vec(),
                value: b"value one".to_vec(),
            },
            Op::Delete {
                table: "triggers".into(),
                key: b"k2".to_vec(),
            },
        ]
    }

    #[test]
    fn batch_round_trip() {
        let mut buf = vec![7u8; 3];
        let mut recs = Vec::new();
        encode_batch(&mut buf, 41, &ops(), &mut recs);
        let b = decode_batch(&buf, 3, true).unwrap();
        assert_eq!(b.end, buf.len());
        assert_eq!(b.first_seq, 41);
        assert_eq!(b.records.len(), 2);
        assert_eq!(b.records[0].table, "jobs");
        assert_eq!(b.records[0].value, b"value one");
        assert_eq!(b.records[1].seq, 42);
        assert!(!b.records[1].is_put);
        assert_eq!(recs[0], (b.records[0].offset, b.records[0].len));
    }

    #[test]
    fn every_prefix_is_torn_and_every_flip_is_corrupt() {
        let mut buf = Vec::new();
        encode_batch(&mut buf, 1, &ops(), &mut Vec::new());
        for cut in 0..buf.len() {
            assert_eq!(
                decode_batch(&buf[..cut], 0, true).unwrap_err(),
                BatchFault::Torn,
                "cut {cut}"
            );
        }
        for byte in 0..buf.len() {
            for bit in 0..8 {
                let mut b = buf.clone();
                b[byte] ^= 1 << bit;
                match decode_batch(&b, 0, true) {
                    Err(BatchFault::Corrupt(_)) => {}
                    // A flip that grows body_len is caught by the header crc, never torn.
                    other => panic!("flip {byte}.{bit}: {other:?}"),
                }
            }
        }
    }

    #[test]
    fn segment_header_round_trip() {
        let h = encode_segment_header(9, SegmentKind::Compacted);
        assert_eq!(decode_segment_header(&h, 9), Ok(SegmentKind::Compacted));
        assert!(matches!(
            decode_segment_header(&h, 8),
            Err(CorruptionKind::SegmentIdMismatch { .. })
        ));
        let mut bad = h;
        bad[13] ^= 1;
        assert_eq!(
            decode_segment_header(&bad, 9),
            Err(CorruptionKind::BadSegmentHeader)
        );
    }
}
