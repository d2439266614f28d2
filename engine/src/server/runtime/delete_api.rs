//! The API's deletions of finished job instances and workflow instances: the core checks
//! and marks the record (`core/delete.rs`), the repository deletes it on a blocking thread
//! (a long log takes several batches), and the mark is lifted once the deletion is
//! acknowledged or failed. The write and the mark's end happen in a task of their own, so
//! they complete even if the caller goes away.

use std::sync::Arc;

use crate::api::{ApiError, AppRef};
use crate::ids::{InstanceId, WorkflowInstanceId};

use super::api::NodeApi;
use super::driver::Runtime;

impl NodeApi {
    /// `DELETE .../instances/{id}`.
    pub(crate) async fn instance_delete(
        &self,
        app: AppRef,
        id: InstanceId,
    ) -> Result<(), ApiError> {
        let rt = Arc::clone(&self.0);
        rt.step(|core, _| core.delete_instance_begin(app.id, id))?;
        let task = tokio::spawn(async move {
            let repo = Arc::clone(&rt.repo);
            let r = submit_and_wait(&rt, move || repo.delete_instance(id, false)).await;
            rt.step(|core, _| core.delete_instance_end(id));
            if r.is_ok() {
                rt.log_counts.remove(&id);
            }
            r
        });
        match task.await {
            Ok(r) => r,
            Err(e) => Err(ApiError::internal(e.to_string())),
        }
    }

    /// `DELETE .../workflow-instances/{id}`.
    pub(crate) async fn wf_instance_delete(
        &self,
        app: AppRef,
        id: WorkflowInstanceId,
    ) -> Result<(), ApiError> {
        let rt = Arc::clone(&self.0);
        let nodes = rt.step(|core, _| core.delete_wf_instance_begin(app.id, id))?;
        let task = tokio::spawn(async move {
            let repo = Arc::clone(&rt.repo);
            let r = submit_and_wait(&rt, move || repo.delete_wf_instance(id, false)).await;
            rt.step(|core, _| core.delete_wf_instance_end(id, &nodes));
            if r.is_ok() {
                for n in &nodes {
                    rt.log_counts.remove(n);
                }
            }
            r
        });
        match task.await {
            Ok(r) => r,
            Err(e) => Err(ApiError::internal(e.to_string())),
        }
    }
}

/// Submits a deletion on a blocking thread and awaits its commit.
async fn submit_and_wait(
    rt: &Arc<Runtime>,
    submit: impl FnOnce() -> Result<crate::server::Commit<()>, crate::server::RepoError>
        + Send
        + 'static,
) -> Result<(), ApiError> {
    let commit = tokio::task::spawn_blocking(submit)
        .await
        .map_err(|e| ApiError::internal(e.to_string()))??;
    Ok(rt.await_commit(commit).await?)
}
