//! `Idempotency-Key`s kept in the repository for the HTTP layer: a key is durable before the
//! request it guards acts, and its answer before the answer is sent.

use crate::api::{ApiError, IdempotencyEntry};
use crate::server::idempotency_repo::{IdempotencyRecord, KeptAnswer};
use crate::time_expression::EpochMs;

use super::api::NodeApi;

impl NodeApi {
    pub(super) async fn idempotency_load(&self) -> Result<Vec<IdempotencyEntry>, ApiError> {
        let repo = self.0.repo.clone();
        let rows = tokio::task::spawn_blocking(move || repo.list_idempotency())
            .await
            .map_err(|e| ApiError::internal(format!("reading idempotency keys: {e}")))??;
        Ok(rows
            .into_iter()
            .map(|r| IdempotencyEntry {
                path: r.path,
                key: r.key,
                at: r.at,
                answer: r.answer.map(|a| (a.status, a.body)),
            })
            .collect())
    }

    pub(super) async fn idempotency_keep(&self, entry: IdempotencyEntry) -> Result<(), ApiError> {
        let record = IdempotencyRecord {
            path: entry.path,
            key: entry.key,
            at: entry.at,
            answer: entry
                .answer
                .map(|(status, body)| KeptAnswer { status, body }),
        };
        let commit = self.0.repo.put_idempotency(&record)?;
        self.0.await_commit(commit).await?;
        Ok(())
    }

    pub(super) async fn idempotency_forget(&self, path: &str, key: &str) -> Result<(), ApiError> {
        let commit = self.0.repo.delete_idempotency(path, key)?;
        self.0.await_commit(commit).await?;
        Ok(())
    }

    pub(super) async fn idempotency_prune(&self, before: EpochMs) -> Result<usize, ApiError> {
        let repo = self.0.repo.clone();
        let commit = tokio::task::spawn_blocking(move || repo.prune_idempotency(before))
            .await
            .map_err(|e| ApiError::internal(format!("pruning idempotency keys: {e}")))??;
        Ok(self.0.await_commit(commit).await?)
    }
}
