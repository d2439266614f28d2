//! Value encoding: a format version byte, then the record's rkyv archive.
//!
//! ```text
//!   value = +---------+--------------------------------------+
//!           | version | rkyv archive of the record (LE, 32-bit|
//!           |  (u8)   | relative pointers), root at the end  |
//!           +---------+--------------------------------------+
//! ```
//!
//! Version 1 is the only one so far. A later version adds a decoder for the old one and
//! migrates on read; a value with an unknown version is [`RepoError::Corrupt`].
//!
//! Reads copy the archive into an [`AlignedVec`] (the version byte leaves it misaligned in
//! the store's buffer) and validate it with bytecheck before deserializing: a value the store
//! hands back is never trusted.

use rkyv::api::high::{HighSerializer, HighValidator};
use rkyv::bytecheck::CheckBytes;
use rkyv::rancor;
use rkyv::ser::allocator::ArenaHandle;
use rkyv::util::AlignedVec;
use rkyv::{Archive, Deserialize, Serialize};

use super::error::RepoError;

/// The format version written in front of every record.
pub const RECORD_VERSION: u8 = 1;

/// Encodes `value` as `[RECORD_VERSION] ++ archive`.
pub(crate) fn encode<T>(table: &'static str, value: &T) -> Result<Vec<u8>, RepoError>
where
    T: for<'a> Serialize<HighSerializer<AlignedVec, ArenaHandle<'a>, rancor::Error>>,
{
    let archive = rkyv::to_bytes::<rancor::Error>(value).map_err(|e| {
        RepoError::invalid("record", format!("cannot archive a {table} record: {e}"))
    })?;
    let mut out = Vec::with_capacity(archive.len() + 1);
    out.push(RECORD_VERSION);
    out.extend_from_slice(&archive);
    Ok(out)
}

/// Decodes a value written by [`encode`]; any other bytes give [`RepoError::Corrupt`] naming
/// `table` and `key`, never a panic.
pub(crate) fn decode<T>(table: &'static str, key: &[u8], bytes: &[u8]) -> Result<T, RepoError>
where
    T: Archive,
    T::Archived: for<'a> CheckBytes<HighValidator<'a, rancor::Error>>
        + Deserialize<T, rancor::Strategy<rkyv::de::Pool, rancor::Error>>,
{
    let Some((&version, archive)) = bytes.split_first() else {
        return Err(RepoError::corrupt(table, key, "empty value"));
    };
    if version != RECORD_VERSION {
        return Err(RepoError::corrupt(
            table,
            key,
            format!("unknown record format version {version} (this build reads {RECORD_VERSION})"),
        ));
    }
    let mut aligned = AlignedVec::<16>::with_capacity(archive.len());
    aligned.extend_from_slice(archive);
    rkyv::from_bytes::<T, rancor::Error>(&aligned)
        .map_err(|e| RepoError::corrupt(table, key, format!("archive fails validation: {e}")))
}
