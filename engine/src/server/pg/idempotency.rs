//! `Idempotency-Key` answers.

use crate::server::codec::{decode, encode};
use crate::server::error::RepoError;
use crate::server::idempotency_repo::{IdempotencyRecord, MAX_IDEMPOTENCY_ROWS};
use crate::server::repo::Commit;
use crate::time_expression::EpochMs;

use super::tables::{Op, Table, Val};
use super::{get, i64s, text, PgRepo};

impl PgRepo {
    pub(super) fn put_idempotency(
        &self,
        record: &IdempotencyRecord,
    ) -> Result<Commit<()>, RepoError> {
        record.validate()?;
        let ops = vec![Op::Put(
            Table::IdempotencyKeys,
            vec![
                text(&record.path),
                text(&record.key),
                i64s(Some(record.at)),
                i64s(record.answer.as_ref().map(|a| i64::from(a.status))),
                Val::Bytes(encode("idempotency_keys", record)?),
            ],
        )];
        let _cold = self.lock();
        Ok(self.submit(ops, ()))
    }

    pub(super) fn delete_idempotency(
        &self,
        path: &str,
        key: &str,
    ) -> Result<Commit<()>, RepoError> {
        let ops = vec![Op::Delete(
            Table::IdempotencyKeys,
            vec![text(path), text(key)],
        )];
        Ok(self.submit(ops, ()))
    }

    pub(super) fn prune_idempotency(&self, before: EpochMs) -> Result<Commit<usize>, RepoError> {
        // Under the lock `put_idempotency` submits with, after every queued write committed:
        // the rows read are the rows the deletes act on.
        let _cold = self.lock();
        self.settle()?;
        let rows = self.query(
            "SELECT path, key FROM idempotency_keys WHERE at < $1",
            vec![Box::new(before)],
        )?;
        let mut ops = Vec::with_capacity(rows.len());
        for row in &rows {
            let path: String = get(row, 0)?;
            let key: String = get(row, 1)?;
            ops.push(Op::Delete(
                Table::IdempotencyKeys,
                vec![text(&path), text(&key)],
            ));
        }
        let n = ops.len();
        Ok(self.submit(ops, n))
    }

    pub(super) fn list_idempotency(&self) -> Result<Vec<IdempotencyRecord>, RepoError> {
        let rows = self.query(
            "SELECT path, key, record FROM idempotency_keys ORDER BY path, key LIMIT $1",
            vec![Box::new(
                i64::try_from(MAX_IDEMPOTENCY_ROWS).unwrap_or(i64::MAX),
            )],
        )?;
        rows.iter()
            .map(|row| {
                let mut k = get::<String>(row, 0)?.into_bytes();
                k.push(0);
                k.extend_from_slice(get::<String>(row, 1)?.as_bytes());
                decode("idempotency_keys", &k, &get::<Vec<u8>>(row, 2)?)
            })
            .collect()
    }
}
