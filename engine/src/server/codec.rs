//! Value encoding: a format version byte, then the record's rkyv archive.
//!
//! ```text
//!   value = +---------+--------------------------------------+
//!           | version | rkyv archive of the record (LE, 32-bit|
//!           |  (u8)   | relative pointers), root at the end  |
//!           +---------+--------------------------------------+
//! ```
//!
//! Every record is at version 1 except [`JobRecord`](super::JobRecord) (`job_codec.rs`),
//! [`LogLine`](super::LogLine) (`log_codec.rs`),
//! [`InstanceRecord`](super::InstanceRecord) (`instance_codec.rs`) and
//! [`WfInstanceRecord`](super::workflow_repo::WfInstanceRecord) (`wf_codec.rs`), which have
//! later versions and read their older ones, migrating them on read. A value with an unknown version is
//! [`RepoError::Corrupt`].
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
    encode_version(table, RECORD_VERSION, value)
}

/// Encodes `value` as `[version] ++ archive`.
pub(crate) fn encode_version<T>(
    table: &'static str,
    version: u8,
    value: &T,
) -> Result<Vec<u8>, RepoError>
where
    T: for<'a> Serialize<HighSerializer<AlignedVec, ArenaHandle<'a>, rancor::Error>>,
{
    let archive = rkyv::to_bytes::<rancor::Error>(value).map_err(|e| {
        RepoError::invalid("record", format!("cannot archive a {table} record: {e}"))
    })?;
    let mut out = Vec::with_capacity(archive.len() + 1);
    out.push(version);
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
    let version = version_of(table, key, bytes)?;
    if version != RECORD_VERSION {
        return Err(RepoError::corrupt(
            table,
            key,
            format!("unknown record format version {version} (this build reads {RECORD_VERSION})"),
        ));
    }
    decode_archive(table, key, bytes)
}

/// The version byte of a stored value.
pub(crate) fn version_of(table: &'static str, key: &[u8], bytes: &[u8]) -> Result<u8, RepoError> {
    bytes
        .first()
        .copied()
        .ok_or_else(|| RepoError::corrupt(table, key, "empty value"))
}

/// Decodes the archive behind the version byte as a `T`, whatever the version says (the
/// caller picked `T` from it).
pub(crate) fn decode_archive<T>(
    table: &'static str,
    key: &[u8],
    bytes: &[u8],
) -> Result<T, RepoError>
where
    T: Archive,
    T::Archived: for<'a> CheckBytes<HighValidator<'a, rancor::Error>>
        + Deserialize<T, rancor::Strategy<rkyv::de::Pool, rancor::Error>>,
{
    let Some((_, archive)) = bytes.split_first() else {
        return Err(RepoError::corrupt(table, key, "empty value"));
    };
    let mut aligned = AlignedVec::<16>::with_capacity(archive.len());
    aligned.extend_from_slice(archive);
    rkyv::from_bytes::<T, rancor::Error>(&aligned)
        .map_err(|e| RepoError::corrupt(table, key, format!("archive fails validation: {e}")))
}
