//! Workflows in the server core (issue 6). PLACEHOLDER written by the lead as the contract's
//! compile shim: every method answers Unavailable until the workflow wiring replaces this
//! file. Not to be shipped as is.

use crate::api::{
    ApiError, AppRef, Created, PageQuery, RunWorkflow, WorkflowDef, WorkflowInstanceAction,
    WorkflowInstanceList, WorkflowInstanceQuery, WorkflowInstanceView, WorkflowList,
    WorkflowRunCreated, WorkflowView,
};

use super::api::NodeApi;

fn pending() -> ApiError {
    ApiError::unavailable("workflows are not wired yet")
}

impl NodeApi {
    pub(crate) async fn wf_create(
        &self,
        _app: AppRef,
        _body: WorkflowDef,
    ) -> Result<Created, ApiError> {
        Err(pending())
    }
    pub(crate) async fn wf_list(
        &self,
        _app: AppRef,
        _q: PageQuery,
    ) -> Result<WorkflowList, ApiError> {
        Err(pending())
    }
    pub(crate) async fn wf_get(&self, _app: AppRef, _id: u64) -> Result<WorkflowView, ApiError> {
        Err(pending())
    }
    pub(crate) async fn wf_update(
        &self,
        _app: AppRef,
        _id: u64,
        _b: WorkflowDef,
    ) -> Result<WorkflowView, ApiError> {
        Err(pending())
    }
    pub(crate) async fn wf_delete(&self, _app: AppRef, _id: u64) -> Result<(), ApiError> {
        Err(pending())
    }
    pub(crate) async fn wf_run(
        &self,
        _app: AppRef,
        _id: u64,
        _r: RunWorkflow,
    ) -> Result<WorkflowRunCreated, ApiError> {
        Err(pending())
    }
    pub(crate) async fn wf_instance(
        &self,
        _app: AppRef,
        _id: u64,
    ) -> Result<WorkflowInstanceView, ApiError> {
        Err(pending())
    }
    pub(crate) async fn wf_instances(
        &self,
        _app: AppRef,
        _q: WorkflowInstanceQuery,
    ) -> Result<WorkflowInstanceList, ApiError> {
        Err(pending())
    }
    pub(crate) async fn wf_action(
        &self,
        _app: AppRef,
        _id: u64,
        _a: WorkflowInstanceAction,
    ) -> Result<WorkflowInstanceView, ApiError> {
        Err(pending())
    }
    pub(crate) async fn wf_mark_success(
        &self,
        _app: AppRef,
        _id: u64,
        _node: u64,
    ) -> Result<WorkflowInstanceView, ApiError> {
        Err(pending())
    }
}
