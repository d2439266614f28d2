//! Cluster membership and partition leases on PostgreSQL: the database side of
//! [`crate::cluster`], driven by a server's [`member`](super::member) task.
//!
//! # Tables (schema versions 1, 7 and 8)
//!
//! ```text
//!   cluster_servers   server_id │ addresses │ http_url │ started_at │ heartbeat_at │ expires_at
//!   leases            partition │ owner │ epoch │ expires_at │ acquired_at │ renewed_at
//!   cluster_settings  id (= 1) │ forward_key
//! ```
//!
//! [`homes`] joins the two first: which live server holds each partition and where its HTTP
//! API answers (what a server forwards an app's requests by, see `crate::http`'s forwarding).
//!
//! # The database's clock decides
//!
//! Every expiry is written as `now() + duration` and compared with `now()`, the database's
//! clock: a server's clock never enters a lease row, so servers whose clocks disagree still
//! agree on who holds what. A server relates the database's verdicts to its own clock only
//! through durations, by the deadline rule of [`crate::cluster::ownership`].
//!
//! The lease functions take a [`Client`], not a transaction, on purpose: each is one
//! statement in its own transaction, so its `now()` is the moment it runs. (Inside a longer
//! transaction `now()` is the moment the transaction began.)
//!
//! # Grants and epochs
//!
//! [`try_acquire`] takes a partition that has no lease row, is released, or has expired,
//! and increments the epoch on every grant (the first grant is epoch 1). [`renew`] extends
//! only the owner's lease at its epoch, and only before it expired: a lease that expired
//! must be acquired again, with a new epoch, even if nobody else took it. [`release`] clears
//! the owner and the expiry, keeping the epoch.
//!
//! # The fence
//!
//! [`fence`] runs in every write transaction of a partition before its commit (first, so
//! that a refused transaction wastes no work). It reads the lease row
//! `FOR SHARE` and succeeds only while the row names this server at this epoch and has not
//! expired by `clock_timestamp()` (the time of the check, not the transaction's start). The
//! share lock is held to the end of the transaction, and every change of a lease row is an
//! `UPDATE`, which waits for it: a new owner's grant comes after the old owner's write
//! committed or rolled back, never between its check and its commit. So no write made under
//! an old epoch is committed after a newer epoch was granted; a refused check is
//! [`Fenced`], and the caller rolls back. A renew also waits for the owner's own open write
//! transactions (and so does a refused acquire, which locks the row it finds taken): the
//! lease row's lock is held only for the length of one write batch.

use std::time::Duration;

use thiserror::Error;
use tokio_postgres::{Client, Row, Transaction};

use crate::cluster::ownership::{Command, Input};
use crate::cluster::{Epoch, PartitionId, ServerId, MAX_SERVERS, PARTITION_COUNT};

use super::error_text;

/// Most addresses a server announces.
pub const MAX_ADDRESSES: usize = 8;

/// Most bytes in one announced address (and in an advertised HTTP URL).
pub const MAX_ADDRESS_LEN: usize = 256;

/// A write of a partition refused because this server no longer holds the partition's lease
/// at this epoch (another server took it, it was released, or it expired). Nothing of the
/// transaction may be committed.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
#[error("{partition} is fenced: {server} no longer holds it at {epoch}")]
pub struct Fenced {
    /// The partition written.
    pub partition: PartitionId,
    /// The server that wrote.
    pub server: ServerId,
    /// The epoch it wrote with.
    pub epoch: Epoch,
}

/// What a lease or membership call can fail with.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum LeaseError {
    /// The lease is not this server's at this epoch (see [`Fenced`]).
    #[error(transparent)]
    Fenced(#[from] Fenced),
    /// An argument is out of range.
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// The argument.
        field: &'static str,
        /// Why, with the accepted range.
        reason: String,
    },
    /// A row holds a value this version cannot read (a bad server id, a negative epoch).
    #[error("corrupt row in table {table}: {reason}")]
    Corrupt {
        /// The table.
        table: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The database failed or did not answer; nothing is known about the effect.
    #[error("database error: {0}")]
    Database(String),
}

fn db(e: tokio_postgres::Error) -> LeaseError {
    LeaseError::Database(error_text(&e))
}

/// A server as `cluster_servers` lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerRow {
    /// The server.
    pub id: ServerId,
    /// The addresses it announced.
    pub addresses: Vec<String>,
    /// The base URL of its HTTP API, when it advertised one.
    pub http_url: Option<String>,
    /// Milliseconds until its heartbeat expires by the database's clock (negative: expired).
    pub expires_in_ms: i64,
}

/// A partition's lease as the `leases` table holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseRow {
    /// The partition.
    pub partition: PartitionId,
    /// The holder, `None` when released (or never granted).
    pub owner: Option<ServerId>,
    /// The epoch of the last grant (0: never granted).
    pub epoch: Epoch,
    /// Milliseconds until the lease expires by the database's clock (negative: expired;
    /// `None`: released).
    pub expires_in_ms: Option<i64>,
}

impl LeaseRow {
    /// Whether the lease is held and unexpired.
    pub fn is_live(&self) -> bool {
        self.owner.is_some() && self.expires_in_ms.is_some_and(|ms| ms > 0)
    }
}

/// The answer of [`try_acquire`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Acquire {
    /// Granted at this epoch.
    Granted(Epoch),
    /// Refused: held by `owner` at `epoch` (as the statement's snapshot showed it; `None`
    /// when it was released meanwhile).
    Refused {
        /// The holder.
        owner: Option<ServerId>,
        /// Its epoch.
        epoch: Epoch,
    },
}

/// `d` in whole milliseconds, at least 1, as a `bigint`.
fn millis(field: &'static str, d: Duration) -> Result<i64, LeaseError> {
    let ms = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
    if (1..=i64::from(i32::MAX)).contains(&ms) {
        Ok(ms)
    } else {
        Err(LeaseError::Invalid {
            field,
            reason: format!("{d:?} is not between 1 ms and 2^31 - 1 ms"),
        })
    }
}

fn server_of(table: &'static str, text: &str) -> Result<ServerId, LeaseError> {
    ServerId::new(text).map_err(|e| LeaseError::Corrupt {
        table,
        reason: e.to_string(),
    })
}

fn epoch_of(table: &'static str, x: i64) -> Result<Epoch, LeaseError> {
    u64::try_from(x)
        .map(Epoch)
        .map_err(|_| LeaseError::Corrupt {
            table,
            reason: format!("negative epoch {x}"),
        })
}

fn epoch_param(epoch: Epoch) -> Result<i64, LeaseError> {
    i64::try_from(epoch.0).map_err(|_| LeaseError::Invalid {
        field: "epoch",
        reason: format!("{} is beyond 2^63 - 1", epoch.0),
    })
}

fn partition_param(p: PartitionId) -> i32 {
    i32::from(p.get())
}

fn col<'a, T: tokio_postgres::types::FromSql<'a>>(row: &'a Row, i: usize) -> Result<T, LeaseError> {
    row.try_get(i).map_err(db)
}

/// A connection of its own to the database at `url`, for membership and lease calls (its
/// driver runs on a task of the current runtime and ends with the client).
pub async fn connect(url: &str) -> Result<Client, LeaseError> {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .map_err(db)?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::warn!(error = %error_text(&e), "cluster: database connection ended");
        }
    });
    Ok(client)
}

/// Bounds how long a statement of `client`'s session waits for a row lock. A lease row is
/// locked (shared) by every fenced write transaction of its holder until that transaction
/// ends; should the holder stop inside one (paused, or cut off mid-transaction), a takeover's
/// acquire would wait on it, and every request queued behind it on the same connection —
/// the renewals of this server's other partitions — would miss its deadline. With the bound,
/// that acquire alone fails (and is tried again later), and the rest goes on.
pub async fn bound_lock_waits(client: &Client, limit: Duration) -> Result<(), LeaseError> {
    let ms = limit.as_millis().clamp(1, i32::MAX as u128);
    client
        .batch_execute(&format!("SET lock_timeout = {ms}"))
        .await
        .map_err(db)
}

/// Time limits of a session that writes under leases of a given duration (the fenced
/// writer's): what PostgreSQL itself enforces so that a holder stopped in the middle of a
/// transaction (paused, cut off, stuck) never keeps its row locks — the lease rows the fence
/// locks `FOR SHARE`, the rows it wrote — long enough to hold up another server's takeover.
///
/// PostgreSQL 15 semantics, per setting:
///
/// - `idle_in_transaction_session_timeout`: a session idle (waiting for its client's next
///   command) inside an open transaction for longer is **terminated**; its transaction rolls
///   back and its locks go. A paused process is idle from the server's side, whichever
///   statement it was about to send.
/// - `lock_timeout`: a statement waiting longer for a lock fails (the transaction aborts, the
///   session stays): a writer never waits out another server's stuck transaction.
/// - `statement_timeout`: a statement running longer fails. A writer's transaction holds its
///   lease rows' share locks, which its own renewals wait for, so a very long statement would
///   cost the leases anyway.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionLimits {
    /// `idle_in_transaction_session_timeout`.
    pub idle_in_transaction: Duration,
    /// `lock_timeout`.
    pub lock_wait: Duration,
    /// `statement_timeout`.
    pub statement: Duration,
}

impl SessionLimits {
    /// The limits for leases of `lease`: idle in a transaction a fifth of the lease, a lock
    /// wait a quarter, a statement half; each at least 1 ms. A lease is renewed every quarter
    /// of it, so a holder paused inside a transaction loses its locks well before its last
    /// renewed lease expires: the takeover that waits for the expiry finds the rows free.
    pub fn for_lease(lease: Duration) -> SessionLimits {
        let at_least = |d: Duration| d.max(Duration::from_millis(1));
        SessionLimits {
            idle_in_transaction: at_least(lease / 5),
            lock_wait: at_least(lease / 4),
            statement: at_least(lease / 2),
        }
    }
}

/// Sets `limits` on `client`'s session (see [`SessionLimits`]).
pub async fn limit_session(client: &Client, limits: SessionLimits) -> Result<(), LeaseError> {
    let ms = |d: Duration| d.as_millis().clamp(1, i32::MAX as u128);
    client
        .batch_execute(&format!(
            "SET idle_in_transaction_session_timeout = {}; SET lock_timeout = {}; \
             SET statement_timeout = {}",
            ms(limits.idle_in_transaction),
            ms(limits.lock_wait),
            ms(limits.statement)
        ))
        .await
        .map_err(db)
}

/// Whether `a` can be announced: 1 to [`MAX_ADDRESS_LEN`] bytes without NUL.
fn announceable(a: &str) -> bool {
    !a.is_empty() && a.len() <= MAX_ADDRESS_LEN && !a.contains('\0')
}

/// Registers `server` with its `addresses` and the base URL of its HTTP API (`None`: other
/// servers cannot forward to it), or renews its heartbeat: it is live until `ttl` from now
/// by the database's clock.
pub async fn heartbeat(
    client: &Client,
    server: &ServerId,
    addresses: &[String],
    http_url: Option<&str>,
    ttl: Duration,
) -> Result<(), LeaseError> {
    if http_url.is_some_and(|u| !announceable(u)) {
        return Err(LeaseError::Invalid {
            field: "http_url",
            reason: format!("1 to {MAX_ADDRESS_LEN} bytes without NUL"),
        });
    }
    if addresses.len() > MAX_ADDRESSES || addresses.iter().any(|a| !announceable(a)) {
        return Err(LeaseError::Invalid {
            field: "addresses",
            reason: format!(
                "at most {MAX_ADDRESSES}, each 1 to {MAX_ADDRESS_LEN} bytes without NUL"
            ),
        });
    }
    let ttl = millis("heartbeat ttl", ttl)?;
    client
        .execute(
            "INSERT INTO cluster_servers AS s \
                 (server_id, addresses, http_url, heartbeat_at, expires_at) \
             VALUES ($1, $2, $3, now(), now() + $4::bigint * interval '1 millisecond') \
             ON CONFLICT (server_id) DO UPDATE SET addresses = EXCLUDED.addresses, \
                 http_url = EXCLUDED.http_url, \
                 heartbeat_at = EXCLUDED.heartbeat_at, expires_at = EXCLUDED.expires_at",
            &[&server.as_str(), &addresses, &http_url, &ttl],
        )
        .await
        .map_err(db)?;
    Ok(())
}

/// Removes `server` from the membership (a clean shutdown, after releasing its leases).
pub async fn leave(client: &Client, server: &ServerId) -> Result<(), LeaseError> {
    client
        .execute(
            "DELETE FROM cluster_servers WHERE server_id = $1",
            &[&server.as_str()],
        )
        .await
        .map_err(db)?;
    Ok(())
}

/// Deletes servers whose heartbeat expired more than `after` ago (keeps the table to the
/// servers of the recent past); answers how many went.
pub async fn forget_expired(client: &Client, after: Duration) -> Result<u64, LeaseError> {
    let after = millis("forget after", after)?;
    client
        .execute(
            "DELETE FROM cluster_servers \
             WHERE expires_at < now() - $1::bigint * interval '1 millisecond'",
            &[&after],
        )
        .await
        .map_err(db)
}

/// Every server whose heartbeat is current by the database's clock, by id, at most
/// [`MAX_SERVERS`].
pub async fn live_servers(client: &Client) -> Result<Vec<ServerRow>, LeaseError> {
    servers(client, true).await
}

/// Every server `cluster_servers` lists, live or not (for `cluster status`), by id, at most
/// [`MAX_SERVERS`].
pub async fn all_servers(client: &Client) -> Result<Vec<ServerRow>, LeaseError> {
    servers(client, false).await
}

async fn servers(client: &Client, live_only: bool) -> Result<Vec<ServerRow>, LeaseError> {
    let limit = i64::try_from(MAX_SERVERS).unwrap_or(i64::MAX);
    let rows = client
        .query(
            "SELECT server_id, addresses, http_url, \
                 (extract(epoch FROM expires_at - now()) * 1000)::bigint \
             FROM cluster_servers WHERE NOT $1 OR expires_at > now() \
             ORDER BY server_id LIMIT $2",
            &[&live_only, &limit],
        )
        .await
        .map_err(db)?;
    rows.iter()
        .map(|row| {
            Ok(ServerRow {
                id: server_of("cluster_servers", &col::<String>(row, 0)?)?,
                addresses: col(row, 1)?,
                http_url: col(row, 2)?,
                expires_in_ms: col(row, 3)?,
            })
        })
        .collect()
}

/// Where a partition's apps are served: the live server that holds its unexpired lease, and
/// the base URL of that server's HTTP API (`None`: it advertised none).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionHome {
    /// The partition.
    pub partition: PartitionId,
    /// Its holder.
    pub owner: ServerId,
    /// The holder's HTTP API.
    pub http_url: Option<String>,
}

/// Every partition held by a live server under an unexpired lease, by the database's clock,
/// by partition (the others have no home now).
pub async fn homes(client: &Client) -> Result<Vec<PartitionHome>, LeaseError> {
    let rows = client
        .query(
            "SELECT l.partition, l.owner, s.http_url \
             FROM leases l JOIN cluster_servers s ON s.server_id = l.owner \
             WHERE l.expires_at > now() AND s.expires_at > now() \
                 AND l.partition >= 0 AND l.partition < $1 \
             ORDER BY l.partition",
            &[&i32::from(PARTITION_COUNT)],
        )
        .await
        .map_err(db)?;
    rows.iter()
        .map(|row| {
            Ok(PartitionHome {
                partition: partition_of_row(col(row, 0)?)?,
                owner: server_of("leases", &col::<String>(row, 1)?)?,
                http_url: col(row, 2)?,
            })
        })
        .collect()
}

/// The cluster's forwarding key: `candidate` when this is the first server to ask (it is
/// stored), the stored one otherwise. `candidate` must be fresh random text.
pub async fn forward_key(client: &Client, candidate: &str) -> Result<String, LeaseError> {
    client
        .execute(
            "INSERT INTO cluster_settings (id, forward_key) VALUES (1, $1) \
             ON CONFLICT (id) DO NOTHING",
            &[&candidate],
        )
        .await
        .map_err(db)?;
    let row = client
        .query_one("SELECT forward_key FROM cluster_settings WHERE id = 1", &[])
        .await
        .map_err(db)?;
    col(&row, 0)
}

fn partition_of_row(n: i32) -> Result<PartitionId, LeaseError> {
    u16::try_from(n)
        .ok()
        .and_then(PartitionId::new)
        .ok_or_else(|| LeaseError::Corrupt {
            table: "leases",
            reason: format!("partition {n} out of range"),
        })
}

/// Grants `server` the lease of `partition` for `lease` when it is free or expired by the
/// database's clock, at the next epoch; otherwise answers who holds it.
pub async fn try_acquire(
    client: &Client,
    partition: PartitionId,
    server: &ServerId,
    lease: Duration,
) -> Result<Acquire, LeaseError> {
    let ms = millis("lease", lease)?;
    // The data-modifying CTE and the fallback SELECT share a snapshot: when nothing was
    // granted, the holder shown is the one of the snapshot, which may already be outdated
    // (the answer is advisory; the grant is what counts).
    let row = client
        .query_one(
            "WITH granted AS ( \
                 INSERT INTO leases AS l \
                     (partition, owner, epoch, expires_at, acquired_at, renewed_at) \
                 VALUES ($1, $2, 1, now() + $3::bigint * interval '1 millisecond', now(), now()) \
                 ON CONFLICT (partition) DO UPDATE SET owner = EXCLUDED.owner, \
                     epoch = l.epoch + 1, expires_at = EXCLUDED.expires_at, \
                     acquired_at = EXCLUDED.acquired_at, renewed_at = EXCLUDED.renewed_at \
                 WHERE l.owner IS NULL OR l.expires_at IS NULL OR l.expires_at <= now() \
                 RETURNING epoch) \
             SELECT true, epoch, NULL::text FROM granted \
             UNION ALL \
             SELECT false, epoch, owner FROM leases \
                 WHERE partition = $1 AND NOT EXISTS (SELECT 1 FROM granted) \
             UNION ALL \
             SELECT false, 0, NULL WHERE NOT EXISTS (SELECT 1 FROM granted) \
                 AND NOT EXISTS (SELECT 1 FROM leases WHERE partition = $1) \
             LIMIT 1",
            &[&partition_param(partition), &server.as_str(), &ms],
        )
        .await
        .map_err(db)?;
    let epoch = epoch_of("leases", col(&row, 1)?)?;
    if col::<bool>(&row, 0)? {
        Ok(Acquire::Granted(epoch))
    } else {
        let owner = col::<Option<String>>(&row, 2)?
            .map(|s| server_of("leases", &s))
            .transpose()?;
        Ok(Acquire::Refused { owner, epoch })
    }
}

/// Extends the lease of `partition` by `lease` from now, when `server` holds it at `epoch`
/// and it has not expired. `false`: refused (the lease is gone).
pub async fn renew(
    client: &Client,
    partition: PartitionId,
    server: &ServerId,
    epoch: Epoch,
    lease: Duration,
) -> Result<bool, LeaseError> {
    let ms = millis("lease", lease)?;
    let n = client
        .execute(
            "UPDATE leases SET expires_at = now() + $4::bigint * interval '1 millisecond', \
                 renewed_at = now() \
             WHERE partition = $1 AND owner = $2 AND epoch = $3 AND expires_at > now()",
            &[
                &partition_param(partition),
                &server.as_str(),
                &epoch_param(epoch)?,
                &ms,
            ],
        )
        .await
        .map_err(db)?;
    Ok(n == 1)
}

/// Gives up the lease of `partition` when `server` holds it at `epoch` (expired or not):
/// the partition is free at once. `false`: it was not this server's at this epoch.
pub async fn release(
    client: &Client,
    partition: PartitionId,
    server: &ServerId,
    epoch: Epoch,
) -> Result<bool, LeaseError> {
    let n = client
        .execute(
            "UPDATE leases SET owner = NULL, expires_at = NULL \
             WHERE partition = $1 AND owner = $2 AND epoch = $3",
            &[
                &partition_param(partition),
                &server.as_str(),
                &epoch_param(epoch)?,
            ],
        )
        .await
        .map_err(db)?;
    Ok(n == 1)
}

/// Every lease row, by partition (partitions never granted have none).
pub async fn leases(client: &Client) -> Result<Vec<LeaseRow>, LeaseError> {
    let rows = client
        .query(
            "SELECT partition, owner, epoch, \
                 (extract(epoch FROM expires_at - now()) * 1000)::bigint \
             FROM leases WHERE partition >= 0 AND partition < $1 ORDER BY partition",
            &[&i32::from(PARTITION_COUNT)],
        )
        .await
        .map_err(db)?;
    rows.iter()
        .map(|row| {
            Ok(LeaseRow {
                partition: partition_of_row(col(row, 0)?)?,
                owner: col::<Option<String>>(row, 1)?
                    .map(|s| server_of("leases", &s))
                    .transpose()?,
                epoch: epoch_of("leases", col(row, 2)?)?,
                expires_in_ms: col(row, 3)?,
            })
        })
        .collect()
}

/// The fence: run in every write transaction of `partition` before its commit, best as its
/// first statement (see the module docs). `Err(Fenced)` when `server` does not hold an unexpired lease at `epoch`; the
/// caller must then roll back. A transaction writing several partitions fences them in
/// partition order, so that two such transactions cannot deadlock on the lease rows.
pub async fn fence(
    tx: &Transaction<'_>,
    partition: PartitionId,
    server: &ServerId,
    epoch: Epoch,
) -> Result<(), LeaseError> {
    let row = tx
        .query_opt(
            "SELECT 1 FROM leases WHERE partition = $1 AND owner = $2 AND epoch = $3 \
                 AND expires_at > clock_timestamp() FOR SHARE",
            &[
                &partition_param(partition),
                &server.as_str(),
                &epoch_param(epoch)?,
            ],
        )
        .await
        .map_err(db)?;
    match row {
        Some(_) => Ok(()),
        None => Err(Fenced {
            partition,
            server: server.clone(),
            epoch,
        }
        .into()),
    }
}

/// Carries out an ownership [`Command`] for `server` and answers the [`Input`] the machine
/// expects (none for a release). A database error answers [`Input::Failed`].
pub async fn carry_out(client: &Client, server: &ServerId, command: Command) -> Option<Input> {
    match command {
        Command::TryAcquire {
            request,
            partition,
            lease,
        } => Some(match try_acquire(client, partition, server, lease).await {
            Ok(Acquire::Granted(epoch)) => Input::Acquired {
                request,
                partition,
                epoch,
            },
            Ok(Acquire::Refused { owner, epoch }) => Input::AcquireRefused {
                request,
                partition,
                owner,
                epoch,
            },
            Err(e) => {
                tracing::warn!(%partition, error = %e, "lease acquire failed");
                Input::Failed { request, partition }
            }
        }),
        Command::Renew {
            request,
            partition,
            epoch,
            lease,
        } => Some(match renew(client, partition, server, epoch, lease).await {
            Ok(true) => Input::Renewed { request, partition },
            Ok(false) => Input::RenewRefused { request, partition },
            Err(e) => {
                tracing::warn!(%partition, error = %e, "lease renew failed");
                Input::Failed { request, partition }
            }
        }),
        Command::Release { partition, epoch } => {
            if let Err(e) = release(client, partition, server, epoch).await {
                tracing::warn!(%partition, error = %e, "lease release failed; it will expire");
            }
            None
        }
    }
}
