//! Ids from blocks reserved in the database, so that servers sharing it never hand out the
//! same one.
//!
//! Each kind of id has a row in `counters` whose `next` is its high-water mark: every id
//! below it may have been handed out. A server takes a block of ids with one statement,
//! `INSERT … ON CONFLICT DO UPDATE SET next = counters.next + block RETURNING next`, which
//! PostgreSQL runs atomically whoever else asks at the same time, and hands the block out from
//! memory. The statement commits before any id of the block is used, so an id is never written
//! before its reservation, and a restart (or another server) continues above every block taken.
//! Blocks of different servers interleave: ids are unique and, within one server, increasing,
//! but not gap-free; a block's unused rest is skipped at a restart.

use std::sync::{Mutex, PoisonError};

use crate::server::RepoError;

use super::{big, get, unsigned, PgRepo};

/// Ids of one kind (instances, log lines, apps, …), handed out from reserved blocks.
#[derive(Debug)]
pub(super) struct SharedIds {
    what: &'static str,
    /// The kind's row in `counters`.
    name: String,
    /// Ids reserved at a time (a call for more reserves exactly what it needs).
    block: u64,
    /// The reserved ids not handed out yet: `next..end`.
    range: Mutex<(u64, u64)>,
}

impl SharedIds {
    pub(super) fn new(what: &'static str, key: &[u8], block: u64) -> SharedIds {
        SharedIds {
            what,
            name: String::from_utf8_lossy(key).into_owned(),
            block: block.max(1),
            range: Mutex::new((0, 0)),
        }
    }

    /// `n` (at least 1) consecutive fresh ids; the first one.
    pub(super) fn alloc(&self, repo: &PgRepo, n: u64) -> Result<u64, RepoError> {
        let n = n.max(1);
        let mut range = self.range.lock().unwrap_or_else(PoisonError::into_inner);
        let (next, end) = *range;
        if end.saturating_sub(next) >= n {
            range.0 = next + n;
            return Ok(next);
        }
        let block = self.block.max(n);
        let first = self.reserve(repo, block)?;
        let end = first
            .checked_add(block)
            .ok_or_else(|| RepoError::invalid("id", format!("{} ids are exhausted", self.what)))?;
        *range = (first + n, end);
        Ok(first)
    }

    /// Reserves `block` ids in the database; the first one. Ids start at 1.
    fn reserve(&self, repo: &PgRepo, block: u64) -> Result<u64, RepoError> {
        let size = big(block)?;
        let rows = repo.query(
            "INSERT INTO counters AS c (name, next) VALUES ($1, 1 + $2::bigint) \
             ON CONFLICT (name) DO UPDATE SET next = c.next + $2::bigint RETURNING next",
            vec![Box::new(self.name.clone()), Box::new(size)],
        )?;
        let row = rows
            .first()
            .ok_or_else(|| RepoError::Database("reserving ids returned no row".into()))?;
        let end = unsigned("counters", get(row, 0)?)?;
        end.checked_sub(block)
            .filter(|first| *first >= 1)
            .ok_or_else(|| {
                RepoError::corrupt(
                    "counters",
                    self.name.as_bytes(),
                    "high-water mark below its block",
                )
            })
    }
}
