//! Ownership of apps across a cluster of servers that share one PostgreSQL database: which
//! server schedules which app, and the fencing that keeps a former owner from acting or
//! writing after it lost that right. The server's cluster mode (`server::runtime::cluster`,
//! `server::pg::member`) runs these machines against the database's lease rows, and the
//! simulator (`sim::cluster`) against a simulated database.
//!
//! # Shape
//!
//! ```text
//!   app name ──partition_of──► PartitionId (one of PARTITION_COUNT, fixed)
//!                                   │
//!   live servers ──preferred_owner──┘ rendezvous hashing: who should own it
//!
//!   membership view, lease answers ──► Ownership (sans-IO) ──► lease commands, acting events
//!                                          │ may_act(partition, now)
//!   server::pg::lease: the commands as SQL on the `leases` and `cluster_servers` tables,
//!   and the fence checked inside every write transaction of a partition
//! ```
//!
//! - **Partitions** ([`partition`]): an app belongs to one of [`PARTITION_COUNT`] partitions
//!   by a fixed hash of its name; a partition's preferred owner among the live servers is
//!   the one with the highest rendezvous weight. A server leaving moves only its own
//!   partitions; a server joining takes about `1/n` of them, from everyone.
//! - **Leases** (`leases` table, one row per partition): an owner, an epoch and an expiry.
//!   Expiry is decided by the database's clock alone (`now()` in SQL): the database is the
//!   one clock every server sees, so no two servers can disagree about whether a lease has
//!   expired, whatever their own clocks say. Every change of owner increments the epoch.
//! - **Acting** ([`ownership`]): a server acts for a partition (fires, dispatches, writes)
//!   only before its *local deadline*: the instant, on its own monotonic clock, at which it
//!   *sent* the acquire or renew that the database granted, plus the lease duration, minus a
//!   safety margin. The database set the expiry at or after that send, so the deadline falls
//!   before the expiry as long as the server's clock does not run slower than the database's
//!   by more than the margin over one lease; a process paused for longer than a lease wakes
//!   up past its deadline and stops. See [`ownership`] for the rule and its limits.
//! - **Fencing** (`server::pg::lease`): the deadline bounds the window in which a server
//!   believes it owns a partition, but a check followed by an action can always be
//!   interrupted between the two. So every state write of a partition runs, in its own
//!   transaction, a check that the lease row still names this server and epoch and has not
//!   expired, holding a share lock on that row until commit; a new owner's acquire waits for
//!   that commit, so no write of an old epoch can land after a newer epoch was granted.
//!   Messages to workers carry the epoch for the same reason.
//! - **Drain**: a partition whose preferred owner is another live server is released only
//!   after this server confirmed it stopped acting for it; the new owner acquires it once it
//!   is free. Nobody takes a partition by force: a lease that is not released is taken only
//!   after the database says it expired.
//!
//! # Time
//!
//! [`MonoUs`] is the server's monotonic clock ([`Clock::monotonic_us`]): the ownership
//! machine reads no clock and is handed `now`. The database's clock is never compared with
//! it; only durations (the lease, the margin) cross between the two.
//!
//! [`Clock::monotonic_us`]: crate::clock::Clock::monotonic_us

#![forbid(unsafe_code)]
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
#![cfg_attr(
    test,
    allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)
)]

use std::fmt;
use std::time::Duration;

use thiserror::Error;

#[cfg(test)]
mod model;
pub mod ownership;
pub mod partition;

pub use ownership::{Command, Event, Input, Ownership, OwnershipConfig, RequestId, StopReason};
pub use partition::{partition_of, preferred_owner, PartitionId, PARTITION_COUNT};

/// Most bytes in a server id.
pub const MAX_SERVER_ID_LEN: usize = 64;

/// Most servers in a membership view; a longer view is cut to its first ids in sort order.
pub const MAX_SERVERS: usize = 1024;

/// A server of the cluster, as named in the `cluster_servers` and `leases` tables: 1 to
/// [`MAX_SERVER_ID_LEN`] bytes of ASCII letters, digits, `.`, `_`, `-` and `:`, so that it can
/// be printed, logged and put in a URL as it is.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServerId(String);

/// A text that cannot be a [`ServerId`].
#[derive(Clone, Debug, Error, PartialEq, Eq)]
#[error(
    "invalid server id {text:?}: use 1 to {MAX_SERVER_ID_LEN} ASCII letters, digits, '.', '_', '-' or ':'"
)]
pub struct InvalidServerId {
    /// The text that was refused.
    pub text: String,
}

impl ServerId {
    /// `text` as a server id, when it is one.
    pub fn new(text: &str) -> Result<ServerId, InvalidServerId> {
        let ok = !text.is_empty()
            && text.len() <= MAX_SERVER_ID_LEN
            && text
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b':'));
        if ok {
            Ok(ServerId(text.to_owned()))
        } else {
            Err(InvalidServerId {
                text: text.chars().take(MAX_SERVER_ID_LEN + 8).collect(),
            })
        }
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ServerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for ServerId {
    type Err = InvalidServerId;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ServerId::new(s)
    }
}

/// A partition's fencing epoch: incremented by the database on every grant of a lease, so a
/// later owner always holds a greater epoch. 0 is a partition never granted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Epoch(pub u64);

impl fmt::Display for Epoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "epoch {}", self.0)
    }
}

/// An instant on the server's monotonic clock, microseconds
/// ([`Clock::monotonic_us`](crate::clock::Clock::monotonic_us)). Only differences between two
/// instants mean anything.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MonoUs(pub i64);

impl MonoUs {
    /// Earlier than every instant a clock reads.
    pub const MIN: MonoUs = MonoUs(i64::MIN);

    /// `self` plus `d` (saturating).
    #[must_use]
    pub fn plus(self, d: Duration) -> MonoUs {
        MonoUs(self.0.saturating_add(duration_us(d)))
    }

    /// `self` minus `d` (saturating).
    #[must_use]
    pub fn minus(self, d: Duration) -> MonoUs {
        MonoUs(self.0.saturating_sub(duration_us(d)))
    }
}

/// `d` in whole microseconds, saturating at `i64::MAX`.
pub(crate) fn duration_us(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_ids() {
        for ok in ["a", "server-1", "10.0.0.7:7700", "s_1.eu"] {
            assert_eq!(ServerId::new(ok).unwrap().as_str(), ok);
        }
        let long = "x".repeat(MAX_SERVER_ID_LEN + 1);
        for bad in ["", "a b", "é", "a/b", long.as_str()] {
            assert!(ServerId::new(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn instants_saturate() {
        assert_eq!(MonoUs(5).plus(Duration::from_micros(3)), MonoUs(8));
        assert_eq!(MonoUs::MIN.minus(Duration::from_secs(1)), MonoUs::MIN);
        assert_eq!(MonoUs(i64::MAX).plus(Duration::MAX), MonoUs(i64::MAX));
    }
}
