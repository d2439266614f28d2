//! The OpenAPI's workflow bodies: definitions, runs and workflow instances.
//!
//! | route | method | body → answer |
//! |---|---|---|
//! | `POST /v1/apps/{app}/workflows` | [`Api::create_workflow`] | [`WorkflowDef`] → 201 [`Created`] |
//! | `GET /v1/apps/{app}/workflows` | [`Api::list_workflows`] | [`WorkflowQuery`] → [`WorkflowList`] |
//! | `GET /v1/apps/{app}/workflows/{id}` | [`Api::get_workflow`] | → [`WorkflowView`] |
//! | `PUT /v1/apps/{app}/workflows/{id}` | [`Api::update_workflow`] | [`WorkflowDef`] → [`WorkflowView`] |
//! | `DELETE /v1/apps/{app}/workflows/{id}` | [`Api::delete_workflow`] | → 204 |
//! | `POST /v1/apps/{app}/workflows/{id}/run` | [`Api::run_workflow`] | [`RunWorkflow`] → [`WorkflowRunCreated`] |
//! | `POST /v1/apps/{app}/workflows/{id}/copy` | [`Api::copy_workflow`] | [`CopyWorkflow`] → 201 [`Created`] |
//! | `GET /v1/apps/{app}/workflow-instances` | [`Api::list_workflow_instances`] | [`WorkflowInstanceQuery`] → [`WorkflowInstanceList`] |
//! | `GET /v1/apps/{app}/workflow-instances/{id}` | [`Api::get_workflow_instance`] | → [`WorkflowInstanceView`] |
//! | `POST /v1/apps/{app}/workflow-instances/{id}/stop`, `/retry` | [`Api::workflow_instance_action`] | → [`WorkflowInstanceView`] |
//! | `POST /v1/apps/{app}/workflow-instances/{id}/nodes/{node}/mark-success` | [`Api::mark_workflow_node_success`] | → [`WorkflowInstanceView`] |
//!
//! The definition body is [`crate::workflow::WorkflowDef`] itself (fields `name`,
//! `time_expression_type`, `time_expression`, `time_zone`, `max_instances`, `failure_policy`,
//! `nodes`, `edges`, `description`, `tags`); `WorkflowDef::validate` is the one place it is
//! checked.
//!
//! [`Api::create_workflow`]: super::Api::create_workflow
//! [`Api::list_workflows`]: super::Api::list_workflows
//! [`Api::get_workflow`]: super::Api::get_workflow
//! [`Api::update_workflow`]: super::Api::update_workflow
//! [`Api::delete_workflow`]: super::Api::delete_workflow
//! [`Api::run_workflow`]: super::Api::run_workflow
//! [`Api::copy_workflow`]: super::Api::copy_workflow
//! [`Api::list_workflow_instances`]: super::Api::list_workflow_instances
//! [`Api::get_workflow_instance`]: super::Api::get_workflow_instance
//! [`Api::workflow_instance_action`]: super::Api::workflow_instance_action
//! [`Api::mark_workflow_node_success`]: super::Api::mark_workflow_node_success
//! [`Created`]: super::Created

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json};

use crate::ids::{AppId, NodeId, WorkflowId, WorkflowInstanceId};
use crate::time_expression::{EpochMs, TimeExpressionType};
pub use crate::workflow::{
    EdgeDef, FailurePolicy, InstanceStatus as WorkflowInstanceStatus, NodeDef, NodeKind,
    NodeStatus, WorkflowDef,
};

/// `GET /v1/apps/{app}/workflows/{id}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WorkflowView {
    /// The workflow.
    pub id: WorkflowId,
    /// Its app.
    pub app_id: AppId,
    /// The definition as stored (defaults filled in).
    #[serde(flatten)]
    pub body: WorkflowDef,
    /// The next scheduled run (CRON, FIXED_RATE, DAILY_TIME_INTERVAL), epoch ms; null for API
    /// workflows or when the expression has no further trigger.
    pub next_trigger_time: Option<EpochMs>,
    /// Scheduled triggers skipped since the server started because one of the workflow's
    /// calendars excludes their date.
    #[serde(default)]
    pub calendar_skipped_runs: u64,
    /// When it was created (epoch ms).
    pub created_at: EpochMs,
    /// When it was last updated (epoch ms).
    pub updated_at: EpochMs,
}

/// `GET /v1/apps/{app}/workflows` answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WorkflowList {
    /// The page, in id order.
    pub items: Vec<WorkflowView>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<u64>,
}

/// `GET /v1/apps/{app}/workflows` query: a page of the workflows that match every filter
/// given.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkflowQuery {
    /// Page size, 1 to 1000 (default 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<u64>,
    /// Only workflows whose name contains this text, ignoring case.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Only workflows carrying this tag (exact match).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// Only workflows of this time expression type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_expression_type: Option<TimeExpressionType>,
}

impl WorkflowQuery {
    /// A page of every workflow, `limit` at a time.
    pub fn page(limit: Option<u32>, cursor: Option<u64>) -> WorkflowQuery {
        WorkflowQuery {
            limit,
            cursor,
            ..WorkflowQuery::default()
        }
    }
}

/// `POST /v1/apps/{app}/workflows/{id}/copy` body: a new workflow with the source's
/// definition (the same nodes, jobs and edges) under another name. Answers 201 with the new
/// workflow's id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CopyWorkflow {
    /// The copy's name (1 to 128 bytes).
    pub name: String,
}

/// `POST /v1/apps/{app}/workflows/{id}/run` body (may be empty or `{}`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunWorkflow {
    /// Seeds the workflow context: a JSON object, or a string holding one (PowerJob passes
    /// its `initParams` as a string); default `{}`. Anything else is a 400.
    #[serde(default)]
    pub init_params: Option<Json>,
    /// Start this many ms from now (persisted: survives a restart); default 0 = at once.
    #[serde(default)]
    pub delay_ms: u64,
}

/// `POST /v1/apps/{app}/workflows/{id}/run` answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkflowRunCreated {
    /// The workflow instance created for the run (durable when this answer is sent).
    pub workflow_instance_id: WorkflowInstanceId,
}

/// One node of a workflow instance.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkflowNodeView {
    /// The node's id in the definition.
    pub id: NodeId,
    /// `WAITING`, `RUNNING`, `SUCCEED`, `FAILED`, `STOPPED`, `DISABLED` or `SKIPPED`.
    pub status: NodeStatus,
    /// The job instance of the node's latest attempt (JOB nodes), or the nested workflow
    /// instance (NESTED_WORKFLOW nodes); null before it is dispatched and for decisions. A
    /// bare number because it names either kind of instance.
    pub instance_id: Option<u64>,
    /// The node's result (a decision's is `"true"`/`"false"`), or its failure reason.
    pub result: Option<String>,
}

/// `GET /v1/apps/{app}/workflow-instances/{id}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WorkflowInstanceView {
    /// The workflow instance.
    pub id: WorkflowInstanceId,
    /// Its workflow.
    pub workflow_id: WorkflowId,
    /// `WAITING`, `RUNNING`, `SUCCEED`, `FAILED` or `STOPPED`.
    pub status: WorkflowInstanceStatus,
    /// The context: the init params plus what the nodes appended.
    pub context: Map<String, Json>,
    /// Every node, in definition order.
    pub nodes: Vec<WorkflowNodeView>,
    /// The workflow instance this one runs as a NESTED_WORKFLOW node of, if any.
    pub parent_instance_id: Option<WorkflowInstanceId>,
    /// Its logical trigger time (epoch ms): the trigger a scheduled fire stands for, the
    /// request time of an API run, the past instant of a backfill run, the parent's for a
    /// nested run. Its nodes' job instances carry it as their `trigger_time`.
    #[serde(default)]
    pub trigger_time: EpochMs,
    /// When it was created (epoch ms).
    pub created_at: EpochMs,
    /// When it (last) started (epoch ms).
    pub started_at: Option<EpochMs>,
    /// When it (last) finished (epoch ms).
    pub finished_at: Option<EpochMs>,
}

/// `GET /v1/apps/{app}/workflow-instances` query.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkflowInstanceQuery {
    /// Only this workflow's instances; without it, the app's. Newest first either way.
    #[serde(default)]
    pub workflow_id: Option<WorkflowId>,
    /// Page size, 1 to 1000 (default 100).
    #[serde(default)]
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    #[serde(default)]
    pub cursor: Option<u64>,
}

/// `GET /v1/apps/{app}/workflow-instances` answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WorkflowInstanceList {
    /// The page, newest first.
    pub items: Vec<WorkflowInstanceView>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<u64>,
}

/// What a workflow instance action route asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WorkflowInstanceAction {
    /// `POST .../workflow-instances/{id}/stop`: stop every running node and the instance;
    /// STOPPED.
    Stop,
    /// `POST .../workflow-instances/{id}/retry`: re-run a FAILED or STOPPED instance; only
    /// its unsuccessful nodes run again.
    Retry,
}

/// Task progress of a MAP / MAP_REDUCE instance, as its TaskTracker last reported it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskProgress {
    /// Tasks created so far (the root task included).
    pub total: u64,
    /// Tasks that succeeded.
    pub succeeded: u64,
    /// Tasks that failed for good (retries exhausted).
    pub failed: u64,
}
