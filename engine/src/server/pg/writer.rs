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
//! retried without them. After any other failed transaction the writer refuses every further write (each commit fails):
//! the repository's in-memory counters and trigger rows may then be ahead of the database,
//! and reopening it rereads them, as the log store does after an I/O failure.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, OnceLock};

use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Statement};

use crate::cluster::{Epoch, PartitionId, ServerId};
use crate::server::commit::Acknowledger;
use crate::server::RepoError;

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
    let refused = |w: &Write| {
        w.fences
            .iter()
            .any(|(p, e)| p.get() == partition && e.0 == epoch)
    };
    let mut kept = Vec::with_capacity(batch.len());
    for w in batch.drain(..) {
        if refused(&w) {
            if let Some(ack) = w.ack {
                let _ = ack.send(Err(RepoError::Fenced { partition, epoch }));
            }
        } else {
            kept.push(w);
        }
    }
    *batch = kept;
}

/// The writer task: batches queued writes into transactions until the queue closes. `server`
/// is set once the repository's writes are fenced (a server of a cluster).
pub(super) async fn run(
    mut client: Client,
    queue: flume::Receiver<Write>,
    max_batch: usize,
    server: Arc<OnceLock<ServerId>>,
) {
    let prepared = match Prepared::new(&client).await {
        Ok(p) => Some(p),
        Err(e) => {
            tracing::error!(error = %super::error_text(&e), "postgres writer cannot prepare its statements");
            None
        }
    };
    let mut failed: Option<String> = match prepared {
        Some(_) => None,
        None => Some("the writer could not prepare its statements".to_owned()),
    };
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
        let result = match (&failed, &prepared) {
            (None, Some(p)) => match commit(&mut client, p, server.get(), &batch).await {
                // A lost partition fails only its own writes; the others go again.
                Err(RepoError::Fenced { partition, epoch }) => {
                    tracing::info!(
                        partition,
                        epoch,
                        "writes of a partition no longer held refused"
                    );
                    fail_fenced(&mut batch, partition, epoch);
                    // The next round commits the rest first, in order.
                    retry.append(&mut batch);
                    continue;
                }
                // A write the constraints refuse (a second fire of one trigger time) fails
                // alone: the batch is retried one write per transaction.
                Err(RepoError::Conflict { .. }) if batch.len() > 1 => {
                    for w in batch.drain(..) {
                        let r = match &failed {
                            // Nothing after a failed write commits: order is kept.
                            Some(reason) => Err(RepoError::Database(format!(
                                "writes are refused after an earlier failure: {reason}"
                            ))),
                            None => {
                                commit(&mut client, p, server.get(), std::slice::from_ref(&w)).await
                            }
                        };
                        if let Err(e @ RepoError::Database(_)) = &r {
                            if failed.is_none() {
                                tracing::error!(error = %e, "a postgres write failed; refusing further writes");
                                failed = Some(e.to_string());
                            }
                        }
                        if let Some(ack) = w.ack {
                            let _ = ack.send(r);
                        }
                    }
                    continue;
                }
                r => r,
            },
            (Some(reason), _) => Err(RepoError::Database(format!(
                "writes are refused after an earlier failure: {reason}"
            ))),
            (None, None) => Err(RepoError::Database(
                "the writer has no statements".to_owned(),
            )),
        };
        if let Err(e @ RepoError::Database(_)) = &result {
            if failed.is_none() {
                tracing::error!(error = %e, "a postgres write batch failed; refusing further writes");
                failed = Some(e.to_string());
            }
        }
        for w in batch.drain(..) {
            if let Some(ack) = w.ack {
                let r = match &result {
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
