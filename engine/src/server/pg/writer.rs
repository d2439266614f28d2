//! The write path: a bounded queue of writes and one task that commits them in batches.
//!
//! A write is a list of row operations ([`Op`]) and the [`Acknowledger`] of its
//! [`Commit`](crate::server::Commit). The writer task takes every write queued (up to
//! [`MAX_BATCH_WRITES`]) and commits them as **one transaction** with one multi-row statement
//! per table and kind (`INSERT … SELECT … FROM unnest($1::bigint[], …) ON CONFLICT … DO
//! UPDATE`, `DELETE … WHERE (key) IN (SELECT … FROM unnest(…))`), then resolves each
//! acknowledger: never one round trip per row. Writes commit in queue order (the queue is
//! FIFO and a batch is one transaction), which is the order the repository submits them.
//!
//! Within a transaction only the last operation on a key matters, so operations are folded
//! per table and key in queue order before the statements are built (a key put twice is
//! written once, with its last value; a key put then deleted is deleted). Removing an
//! instance's whole log drops the log rows queued before it in the batch.
//!
//! A batch refused by a unique constraint (a second scheduled fire of one job at one trigger
//! time) is retried one write per transaction, so that only the refused write fails, with
//! [`RepoError::Conflict`]. In a cluster, a write carries the partitions it changes and the
//! epoch each was held at (`fence.rs`); the transaction checks each lease first, and a
//! partition that was lost fails only its own writes ([`RepoError::Fenced`]): the batch is
//! retried without them.
//!
//! # A failed transaction
//!
//! Any other failure fails every write of the transaction (nothing failed was acknowledged,
//! so nothing acknowledged is lost). The repository's in-memory state — trigger rows, job
//! version numbers, and the server core's state above it — may then be ahead of the
//! database. What follows depends on the mode:
//!
//! - **A server of a cluster** (the writes are fenced) recovers without a restart. Every
//!   epoch it has held is made stale ([`Fencing::lose_state`]): a write made under one is
//!   refused, however late it reaches the writer, and nothing is held. The writer opens a
//!   new session (with a bounded backoff, [`RECONNECT_FIRST`] doubling up to
//!   [`RECONNECT_MAX`]) and counts the failure in its [`WriterStatus`], which the membership
//!   watches: it stops acting for every partition it holds, releases the leases and
//!   acquires them again, and the cluster glue loads each granted partition afresh from the
//!   database, as for any takeover. No write made from the stale state can commit: it
//!   carries an old epoch.
//! - **The only server** refuses every further write (each commit fails) until it is
//!   restarted, which rereads everything, as the log store does after an I/O failure. It
//!   holds no lease and nobody waits for its locks, so its session has no time limits; and
//!   reloading the whole state under a running core is what a restart does, more simply.
//!
//! # The session's time limits
//!
//! A fenced writer's session has the time limits of [`SessionLimits::for_lease`]
//! (`idle_in_transaction_session_timeout`, `lock_timeout`, `statement_timeout`), set when it
//! first writes fenced: should the process stop inside a transaction (paused, stuck),
//! PostgreSQL ends the session and releases its row locks — the lease rows its fence locked
//! among them — well before another server could take the leases over, so a takeover never
//! waits for the paused holder. When the process resumes, its transaction has failed, and it
//! recovers as above.
//!
//! [`SessionLimits::for_lease`]: super::lease::SessionLimits::for_lease

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::sync::watch;

use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Statement};

use crate::cluster::{Epoch, PartitionId, ServerId};
use crate::server::commit::Acknowledger;
use crate::server::RepoError;

use super::fence::Fencing;
use super::member::WriterStatus;
use super::tables::{Op, Table, Ty, Val};

/// Most writes folded into one transaction, by default.
pub(super) const MAX_BATCH_WRITES: usize = 4096;
/// Writes queued and not yet taken by the writer; a submitter waits when it is full.
pub(super) const QUEUE_CAPACITY: usize = 65_536;

/// A key value (the primary key's columns), hashable for folding.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum KeyVal {
    I(Option<i64>),
    T(Option<String>),
}

/// A queued write.
#[derive(Debug)]
pub(super) struct Write {
    pub(super) ops: Vec<Op>,
    /// `None` for an id reservation (no one waits for it; later writes commit after it).
    pub(super) ack: Option<Acknowledger>,
    /// In a cluster: the partitions the write changes, each with the epoch it was held at
    /// when the write was submitted, in partition order.
    pub(super) fences: Vec<(PartitionId, Epoch)>,
}

fn key_of(vals: &[Val], key: usize) -> Vec<KeyVal> {
    vals.iter()
        .take(key)
        .map(|v| match v {
            Val::I64(x) => KeyVal::I(*x),
            Val::Text(x) => KeyVal::T(x.clone()),
            Val::Bool(b) => KeyVal::I(Some(i64::from(*b))),
            Val::Bytes(_) => KeyVal::I(None),
        })
        .collect()
}

/// The net effect of a batch: per table and key, the last row (or `None`: deleted), and the
/// instances whose whole log goes.
#[derive(Debug, Default)]
struct Folded {
    rows: HashMap<Table, HashMap<Vec<KeyVal>, Option<Vec<Val>>>>,
    logs_of: BTreeSet<i64>,
}

impl Folded {
    fn push(&mut self, op: &Op) {
        match op {
            Op::Put(t, vals) => {
                let key = key_of(vals, t.columns().1);
                self.rows
                    .entry(*t)
                    .or_default()
                    .insert(key, Some(vals.clone()));
            }
            Op::Delete(t, vals) => {
                let key = key_of(vals, t.columns().1);
                self.rows.entry(*t).or_default().insert(key, None);
            }
            Op::DeleteLogsOf(id) => {
                if let Some(logs) = self.rows.get_mut(&Table::Logs) {
                    logs.retain(|k, _| k.first() != Some(&KeyVal::I(Some(*id))));
                }
                self.logs_of.insert(*id);
            }
        }
    }
}

/// Column arrays of some rows: one boxed parameter per column.
fn arrays(
    cols: &[(&'static str, Ty)],
    rows: &[&[Val]],
) -> Result<Vec<Box<dyn ToSql + Sync + Send>>, RepoError> {
    let mut out: Vec<Box<dyn ToSql + Sync + Send>> = Vec::with_capacity(cols.len());
    for (i, (name, ty)) in cols.iter().enumerate() {
        let mismatch = || RepoError::Database(format!("internal: column {name} has a bad value"));
        match ty {
            Ty::I64 => {
                let mut v: Vec<Option<i64>> = Vec::with_capacity(rows.len());
                for r in rows {
                    match r.get(i) {
                        Some(Val::I64(x)) => v.push(*x),
                        _ => return Err(mismatch()),
                    }
                }
                out.push(Box::new(v));
            }
            Ty::Text | Ty::Json => {
                let mut v: Vec<Option<String>> = Vec::with_capacity(rows.len());
                for r in rows {
                    match r.get(i) {
                        Some(Val::Text(x)) => v.push(x.clone()),
                        _ => return Err(mismatch()),
                    }
                }
                out.push(Box::new(v));
            }
            Ty::Bool => {
                let mut v: Vec<bool> = Vec::with_capacity(rows.len());
                for r in rows {
                    match r.get(i) {
                        Some(Val::Bool(x)) => v.push(*x),
                        _ => return Err(mismatch()),
                    }
                }
                out.push(Box::new(v));
            }
            Ty::Bytes => {
                let mut v: Vec<Vec<u8>> = Vec::with_capacity(rows.len());
                for r in rows {
                    match r.get(i) {
                        Some(Val::Bytes(x)) => v.push(x.clone()),
                        _ => return Err(mismatch()),
                    }
                }
                out.push(Box::new(v));
            }
        }
    }
    Ok(out)
}

/// The prepared statements of every table.
struct Prepared {
    upsert: HashMap<Table, Statement>,
    delete: HashMap<Table, Statement>,
    delete_logs: Statement,
}

impl Prepared {
    async fn new(client: &Client) -> Result<Prepared, tokio_postgres::Error> {
        let mut upsert = HashMap::new();
        let mut delete = HashMap::new();
        for t in Table::ALL {
            upsert.insert(t, client.prepare(&t.upsert_sql()).await?);
            delete.insert(t, client.prepare(&t.delete_sql()).await?);
        }
        let delete_logs = client
            .prepare("DELETE FROM logs WHERE instance_id = ANY($1::bigint[])")
            .await?;
        Ok(Prepared {
            upsert,
            delete,
            delete_logs,
        })
    }
}

fn db(e: tokio_postgres::Error) -> RepoError {
    let text = super::error_text(&e);
    if e.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION) {
        RepoError::Conflict {
            what: "row",
            name: text,
        }
    } else {
        RepoError::Database(text)
    }
}

/// Commits `writes` as one transaction, fenced by `server`'s leases of the partitions they
/// change.
async fn commit(
    client: &mut Client,
    prepared: &Prepared,
    server: Option<&ServerId>,
    writes: &[Write],
) -> Result<(), RepoError> {
    let mut folded = Folded::default();
    let mut fences = BTreeSet::new();
    for w in writes {
        for op in &w.ops {
            folded.push(op);
        }
        fences.extend(w.fences.iter().copied());
    }
    if folded.rows.is_empty() && folded.logs_of.is_empty() {
        return Ok(());
    }
    let tx = client.transaction().await.map_err(db)?;
    // First, in partition order (two servers' transactions cannot deadlock on the leases).
    for (partition, epoch) in fences {
        let Some(server) = server else {
            return Err(RepoError::Database(
                "internal: a fenced write reached a writer without a server id".to_owned(),
            ));
        };
        match super::lease::fence(&tx, partition, server, epoch).await {
            Ok(()) => {}
            Err(super::lease::LeaseError::Fenced(_)) => {
                return Err(RepoError::Fenced {
                    partition: partition.get(),
                    epoch: epoch.0,
                })
            }
            Err(e) => return Err(RepoError::Database(e.to_string())),
        }
    }
    if !folded.logs_of.is_empty() {
        let ids: Vec<i64> = folded.logs_of.iter().copied().collect();
        tx.execute(&prepared.delete_logs, &[&ids])
            .await
            .map_err(db)?;
    }
    let mut tables: Vec<_> = folded.rows.into_iter().collect();
    tables.sort_by_key(|(t, _)| *t);
    for (table, rows) in &tables {
        let (cols, key) = table.columns();
        let mut puts: Vec<&[Val]> = Vec::new();
        let mut deletes: Vec<Vec<Val>> = Vec::new();
        for (k, row) in rows {
            match row {
                Some(vals) => puts.push(vals),
                None => deletes.push(
                    k.iter()
                        .map(|kv| match kv {
                            KeyVal::I(x) => Val::I64(*x),
                            KeyVal::T(x) => Val::Text(x.clone()),
                        })
                        .collect(),
                ),
            }
        }
        if !deletes.is_empty() {
            let refs: Vec<&[Val]> = deletes.iter().map(Vec::as_slice).collect();
            let key_cols = cols.get(..key).unwrap_or(cols);
            let params = arrays(key_cols, &refs)?;
            let p: Vec<&(dyn ToSql + Sync)> =
                params.iter().map(|b| &**b as &(dyn ToSql + Sync)).collect();
            if let Some(stmt) = prepared.delete.get(table) {
                tx.execute(stmt, &p).await.map_err(db)?;
            }
        }
        if !puts.is_empty() {
            let params = arrays(cols, &puts)?;
            let p: Vec<&(dyn ToSql + Sync)> =
                params.iter().map(|b| &**b as &(dyn ToSql + Sync)).collect();
            if let Some(stmt) = prepared.upsert.get(table) {
                tx.execute(stmt, &p).await.map_err(db)?;
            }
        }
    }
    tx.commit().await.map_err(db)
}

/// Takes the writes of `batch` that carry the refused fence out of it and fails them.
fn fail_fenced(batch: &mut Vec<Write>, partition: u16, epoch: u64) {
    fail_where(batch, |w| {
        w.fences
            .iter()
            .find(|(p, e)| p.get() == partition && e.0 == epoch)
            .map(|_| RepoError::Fenced { partition, epoch })
    });
}

/// Takes the writes of `batch` made under an epoch a lost session made stale out of it and
/// fails them as fenced (see `fence.rs`).
fn fail_stale(batch: &mut Vec<Write>, fencing: &Fencing) {
    fail_where(batch, |w| {
        w.fences
            .iter()
            .find(|(p, e)| fencing.is_stale(*p, *e))
            .map(|(p, e)| RepoError::Fenced {
                partition: p.get(),
                epoch: e.0,
            })
    });
}

/// Takes the writes `refused` answers an error for out of `batch`, failing each with it.
fn fail_where(batch: &mut Vec<Write>, mut refused: impl FnMut(&Write) -> Option<RepoError>) {
    let mut kept = Vec::with_capacity(batch.len());
    for w in batch.drain(..) {
        match refused(&w) {
            Some(e) => {
                if let Some(ack) = w.ack {
                    let _ = ack.send(Err(e));
                }
            }
            None => kept.push(w),
        }
    }
    *batch = kept;
}

/// Resolves every write of `batch` with `result`.
fn resolve(batch: &mut Vec<Write>, result: &Result<(), RepoError>) {
    for w in batch.drain(..) {
        if let Some(ack) = w.ack {
            let r = match result {
                Ok(()) => Ok(()),
                Err(RepoError::Conflict { what, name }) => Err(RepoError::Conflict {
                    what,
                    name: name.clone(),
                }),
                Err(e) => Err(RepoError::Database(e.to_string())),
            };
            // The submitter may have stopped waiting; nothing to do then.
            let _ = ack.send(r);
        }
    }
}

/// The name the writer's sessions carry in `pg_stat_activity`.
pub const APPLICATION_NAME: &str = "ferrojob-writer";

/// First wait before opening a session again after a failed attempt; doubled after each
/// further failure, up to [`RECONNECT_MAX`].
const RECONNECT_FIRST: Duration = Duration::from_millis(100);
/// Longest wait between two attempts to open a session.
const RECONNECT_MAX: Duration = Duration::from_secs(5);

/// What the writer shares with the repository.
pub(super) struct Shared {
    /// Where a new session is opened.
    pub(super) url: String,
    /// Set once the writes are fenced (a server of a cluster).
    pub(super) fencing: Arc<OnceLock<Arc<Fencing>>>,
    /// Failures and new sessions, for the membership and `/metrics`.
    pub(super) status: watch::Sender<WriterStatus>,
}

/// The writer's session: its connection, its prepared statements, and whether the time
/// limits of a fenced writer are set on it.
struct Session {
    client: Client,
    prepared: Prepared,
    limited: bool,
}

impl Session {
    async fn new(client: Client) -> Result<Session, String> {
        client
            .batch_execute(&format!("SET application_name = '{APPLICATION_NAME}'"))
            .await
            .map_err(|e| super::error_text(&e))?;
        let prepared = Prepared::new(&client)
            .await
            .map_err(|e| super::error_text(&e))?;
        Ok(Session {
            client,
            prepared,
            limited: false,
        })
    }

    /// Sets the limits of `fencing`'s session on this one, once.
    async fn limit(&mut self, fencing: &Fencing) -> Result<(), String> {
        if !self.limited {
            super::lease::limit_session(&self.client, fencing.session())
                .await
                .map_err(|e| e.to_string())?;
            self.limited = true;
        }
        Ok(())
    }
}

/// Opens a new session, trying until one opens: after `failed` attempts in a row that did
/// not open one, waits first (a bounded backoff).
async fn reopen(url: &str, failed: &mut u32) -> Session {
    loop {
        if *failed > 0 {
            let wait = RECONNECT_FIRST
                .saturating_mul(1 << (*failed - 1).min(16))
                .min(RECONNECT_MAX);
            tokio::time::sleep(wait).await;
        }
        let opened = match super::open::connect(url.to_owned()).await {
            Ok(client) => Session::new(client).await,
            Err(e) => Err(e.to_string()),
        };
        match opened {
            Ok(s) => return s,
            Err(error) => {
                *failed = failed.saturating_add(1);
                tracing::warn!(%error, attempts = *failed, "the postgres writer cannot open a session yet");
            }
        }
    }
}

/// The writer task: batches queued writes into transactions until the queue closes (see the
/// module docs for what a failed transaction does).
pub(super) async fn run(
    client: Client,
    queue: flume::Receiver<Write>,
    max_batch: usize,
    shared: Shared,
) {
    let mut session = match Session::new(client).await {
        Ok(s) => Some(s),
        Err(error) => {
            tracing::error!(%error, "the postgres writer cannot prepare its session");
            None
        }
    };
    // The only server: why every write is refused, after a failure.
    let mut refusing: Option<String> = None;
    // Attempts in a row to open a session that failed, for the backoff.
    let mut reopen_failures = 0u32;
    let mut batch: Vec<Write> = Vec::new();
    // Writes of a batch a lost partition's fence refused, to commit again without it.
    let mut retry: Vec<Write> = Vec::new();
    loop {
        if retry.is_empty() {
            match queue.recv_async().await {
                Ok(first) => batch.push(first),
                Err(_) => break,
            }
        } else {
            batch.append(&mut retry);
        }
        while batch.len() < max_batch {
            match queue.try_recv() {
                Ok(w) => batch.push(w),
                Err(_) => break,
            }
        }
        let fencing = shared.fencing.get().cloned();
        let Some(fencing) = fencing else {
            // The only server: refuses every write after a failure.
            let reason = match (&refusing, &session) {
                (Some(reason), _) => Some(reason.clone()),
                (None, None) => Some("the writer could not prepare its session".to_owned()),
                (None, Some(_)) => None,
            };
            if let Some(reason) = reason {
                let e = RepoError::Database(format!(
                    "writes are refused after an earlier failure: {reason}"
                ));
                resolve(&mut batch, &Err(e));
                continue;
            }
            let Some(s) = &mut session else { continue };
            let failed = commit_batch(s, None, &mut batch, &mut retry).await;
            if let Some(e) = failed {
                tracing::error!(error = %e, "a postgres write failed; refusing further writes");
                refusing = Some(e);
            }
            continue;
        };
        // A server of a cluster: a write made under an epoch a lost session made stale never
        // commits, however late it comes.
        fail_stale(&mut batch, &fencing);
        if batch.is_empty() {
            continue;
        }
        let s = match &mut session {
            Some(s) => s,
            None => {
                let s = reopen(&shared.url, &mut reopen_failures).await;
                shared.status.send_modify(|st| st.reconnects += 1);
                tracing::info!("the postgres writer opened a new session");
                session.insert(s)
            }
        };
        if let Err(error) = s.limit(&fencing).await {
            // Nothing was written: the batch goes again on a new session.
            tracing::warn!(%error, "the postgres writer cannot set its session's limits");
            session = None;
            reopen_failures = reopen_failures.saturating_add(1);
            retry.append(&mut batch);
            continue;
        }
        match commit_batch(s, Some(&fencing), &mut batch, &mut retry).await {
            None => reopen_failures = 0,
            Some(error) => {
                // What this server cached may be ahead of the database: every epoch held so
                // far is stale (`commit_batch` did that), and the membership loads each
                // partition again under a new one. The session goes too (the database may
                // have ended it).
                tracing::error!(%error, "a postgres write transaction failed; every held partition is given up and loaded again");
                shared.status.send_modify(|st| st.failures += 1);
                session = None;
            }
        }
    }
}

/// Commits `batch` on `s`, resolving its writes (those a lost partition's fence refused are
/// failed, and the rest moved to `retry`). Answers the failure, if a transaction failed
/// otherwise than by a fence or a unique constraint: then every write of the batch failed,
/// and `fencing`'s held epochs were made stale first.
async fn commit_batch(
    s: &mut Session,
    fencing: Option<&Fencing>,
    batch: &mut Vec<Write>,
    retry: &mut Vec<Write>,
) -> Option<String> {
    let server = fencing.map(Fencing::server);
    match commit(&mut s.client, &s.prepared, server, batch).await {
        // A lost partition fails only its own writes; the others go again.
        Err(RepoError::Fenced { partition, epoch }) => {
            tracing::info!(
                partition,
                epoch,
                "writes of a partition no longer held refused"
            );
            fail_fenced(batch, partition, epoch);
            // The next round commits the rest first, in order.
            retry.append(batch);
            None
        }
        // A write the constraints refuse (a second fire of one trigger time) fails alone:
        // the batch is retried one write per transaction.
        Err(RepoError::Conflict { .. }) if batch.len() > 1 => {
            let mut failed: Option<String> = None;
            for w in batch.drain(..) {
                let r = match &failed {
                    // Nothing after a failed write commits: order is kept.
                    Some(reason) => Err(RepoError::Database(format!(
                        "writes are refused after an earlier failure: {reason}"
                    ))),
                    None => {
                        commit(&mut s.client, &s.prepared, server, std::slice::from_ref(&w)).await
                    }
                };
                if let (Err(e @ RepoError::Database(_)), None) = (&r, &failed) {
                    failed = Some(e.to_string());
                    lose_state(fencing);
                }
                if let Some(ack) = w.ack {
                    let _ = ack.send(r);
                }
            }
            failed
        }
        r => {
            let failed = match &r {
                Err(e @ RepoError::Database(_)) => Some(e.to_string()),
                _ => None,
            };
            if failed.is_some() {
                lose_state(fencing);
            }
            resolve(batch, &r);
            failed
        }
    }
}

/// A server of a cluster: every epoch held so far is stale, before any submitter hears of
/// the failure (a write it makes next is refused).
fn lose_state(fencing: Option<&Fencing>) {
    if let Some(f) = fencing {
        f.lose_state();
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folding_keeps_the_last_operation_per_key() {
        let mut f = Folded::default();
        let row = |n: i64| vec![Val::I64(Some(1)), Val::I64(Some(n)), Val::I64(Some(0))];
        f.push(&Op::Put(Table::Triggers, row(5)));
        f.push(&Op::Put(Table::Triggers, row(6)));
        f.push(&Op::Put(
            Table::Logs,
            vec![
                Val::I64(Some(9)),
                Val::I64(Some(1)),
                Val::I64(Some(0)),
                Val::Text(Some("INFO".into())),
                Val::Text(Some("x".into())),
                Val::I64(Some(1)),
                Val::Text(Some("[]".into())),
            ],
        ));
        f.push(&Op::DeleteLogsOf(9));
        let t = &f.rows[&Table::Triggers];
        assert_eq!(t.len(), 1);
        assert_eq!(
            t.values().next().unwrap().as_ref().unwrap()[1],
            Val::I64(Some(6))
        );
        assert!(f.rows[&Table::Logs].is_empty());
        f.push(&Op::Delete(Table::Triggers, vec![Val::I64(Some(1))]));
        assert_eq!(f.rows[&Table::Triggers].values().next().unwrap(), &None);
    }
}
