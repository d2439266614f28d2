//! `Idempotency-Key` answers kept durable, in the log store.
//!
//! | table         | key                            | value                 | purpose |
//! |---------------|--------------------------------|-----------------------|---------|
//! | `idempotency` | path (UTF-8) ++ 0 ++ key       | [`IdempotencyRecord`] | a key's state on a route path: taken (being answered) or its answer |
//!
//! The HTTP layer writes a key as taken before the request acts and its answer once it has;
//! after a restart a key still taken means the request was cut off without an answer, so
//! whether it acted is unknown. The layer bounds the table: it prunes by age
//! ([`LogRepo::prune_idempotency`]: a key is kept a day, or less when more keys than it
//! remembers arrive in a day) and [`LogRepo::list_idempotency`] reads at most
//! [`MAX_IDEMPOTENCY_ROWS`] rows.

use ferrojob_store::{Batch, KeyRange, Scan};
use rkyv::{Archive, Deserialize, Serialize};

use crate::time_expression::EpochMs;

use super::codec::{decode, encode};
use super::error::RepoError;
use super::repo::{Commit, LogRepo};

/// Idempotency keys: path ++ 0 ++ key.
pub const IDEMPOTENCY: &str = "idempotency";

/// Longest path of a kept key, bytes.
pub const MAX_IDEMPOTENCY_PATH_LEN: usize = 1024;
/// Longest key, bytes.
pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;
/// Longest kept answer body, bytes.
pub const MAX_IDEMPOTENCY_BODY_LEN: usize = 64 << 10;
/// Most rows [`LogRepo::list_idempotency`] returns.
pub const MAX_IDEMPOTENCY_ROWS: usize = 20_000;

/// A request's answer, as kept.
#[derive(Clone, Debug, PartialEq, Eq, Archive, Serialize, Deserialize)]
pub struct KeptAnswer {
    /// HTTP status.
    pub status: u16,
    /// The JSON body.
    pub body: Vec<u8>,
}

/// One `Idempotency-Key` on one route path.
#[derive(Clone, Debug, PartialEq, Eq, Archive, Serialize, Deserialize)]
pub struct IdempotencyRecord {
    /// The request's path (it names the app and the job or workflow).
    pub path: String,
    /// The key: 1 to [`MAX_IDEMPOTENCY_KEY_LEN`] visible ASCII characters.
    pub key: String,
    /// When the key was taken, or answered (server clock, ms).
    pub at: EpochMs,
    /// The answer; `None` while the request is being answered.
    pub answer: Option<KeptAnswer>,
}

impl IdempotencyRecord {
    /// Checks the bounds and the characters (the path must hold no NUL: it ends the key).
    pub fn validate(&self) -> Result<(), RepoError> {
        if self.path.is_empty()
            || self.path.len() > MAX_IDEMPOTENCY_PATH_LEN
            || self.path.contains('\0')
        {
            return Err(RepoError::invalid(
                "path",
                format!("1 to {MAX_IDEMPOTENCY_PATH_LEN} bytes without NUL"),
            ));
        }
        validate_key(&self.key)?;
        if self
            .answer
            .as_ref()
            .is_some_and(|a| a.body.len() > MAX_IDEMPOTENCY_BODY_LEN)
        {
            return Err(RepoError::invalid(
                "answer",
                format!("at most {MAX_IDEMPOTENCY_BODY_LEN} bytes"),
            ));
        }
        Ok(())
    }
}

/// Checks a key: 1 to [`MAX_IDEMPOTENCY_KEY_LEN`] visible ASCII characters.
pub fn validate_key(key: &str) -> Result<(), RepoError> {
    if key.is_empty()
        || key.len() > MAX_IDEMPOTENCY_KEY_LEN
        || !key.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err(RepoError::invalid(
            "key",
            format!("1 to {MAX_IDEMPOTENCY_KEY_LEN} visible ASCII characters"),
        ));
    }
    Ok(())
}

fn row_key(path: &str, key: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(path.len() + 1 + key.len());
    k.extend_from_slice(path.as_bytes());
    k.push(0);
    k.extend_from_slice(key.as_bytes());
    k
}

impl LogRepo {
    /// Writes `record` (replacing the key's earlier state).
    pub fn put_idempotency(&self, record: &IdempotencyRecord) -> Result<Commit<()>, RepoError> {
        record.validate()?;
        let batch = Batch::new().put(
            IDEMPOTENCY,
            row_key(&record.path, &record.key),
            encode(IDEMPOTENCY, record)?,
        );
        // Under the lock `prune_idempotency` holds from its scan to its submission, so that
        // a key taken again is never deleted by a prune that read its older state.
        let _cold = self.lock();
        Ok(self.submit(batch, ()))
    }

    /// Forgets `key` on `path` (nothing happens when it is not kept).
    pub fn delete_idempotency(&self, path: &str, key: &str) -> Result<Commit<()>, RepoError> {
        let batch = Batch::new().delete(IDEMPOTENCY, row_key(path, key));
        Ok(self.submit(batch, ()))
    }

    /// Deletes every key taken or answered before `before` (clock ms); the commit's value is
    /// how many. A key written concurrently with a later time is kept.
    pub fn prune_idempotency(&self, before: EpochMs) -> Result<Commit<usize>, RepoError> {
        let _cold = self.lock();
        let mut batch = Batch::new();
        let mut n = 0usize;
        for kv in Scan::new(&*self.store, IDEMPOTENCY, KeyRange::all()) {
            let (k, v) = kv?;
            let record: IdempotencyRecord = decode(IDEMPOTENCY, &k, &v)?;
            if record.at < before {
                batch = batch.delete(IDEMPOTENCY, k);
                n += 1;
            }
        }
        Ok(self.submit(batch, n))
    }

    /// The kept keys, at most [`MAX_IDEMPOTENCY_ROWS`] of them (in key order).
    pub fn list_idempotency(&self) -> Result<Vec<IdempotencyRecord>, RepoError> {
        let mut out = Vec::new();
        for kv in Scan::new(&*self.store, IDEMPOTENCY, KeyRange::all()) {
            if out.len() >= MAX_IDEMPOTENCY_ROWS {
                break;
            }
            let (k, v) = kv?;
            out.push(decode(IDEMPOTENCY, &k, &v)?);
        }
        Ok(out)
    }
}
