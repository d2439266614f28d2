//! The route table: every route of the router is added here, through [`Routes`], which
//! records each `(method, path)` it registers. The recorded table is what the OpenAPI
//! document is checked against (`openapi`'s tests), so a route cannot be added without the
//! check seeing it.

use axum::handler::Handler;
use axum::http::Method;
use axum::routing::{delete, get, post, put};
use axum::Router;

use super::{
    alarm as a, apps as ap, calendar as c, handlers as h, history as v, openapi, workflow as w,
    Shared,
};

/// A [`Router`] under construction and the `(method, path)` of every route added to it.
pub(crate) struct Routes {
    router: Router<Shared>,
    table: Vec<(Method, &'static str)>,
}

impl Routes {
    fn new() -> Routes {
        Routes {
            router: Router::new(),
            table: Vec::new(),
        }
    }

    fn get<H: Handler<T, Shared>, T: 'static>(mut self, path: &'static str, handler: H) -> Self {
        self.router = self.router.route(path, get(handler));
        self.table.push((Method::GET, path));
        self
    }

    fn post<H: Handler<T, Shared>, T: 'static>(mut self, path: &'static str, handler: H) -> Self {
        self.router = self.router.route(path, post(handler));
        self.table.push((Method::POST, path));
        self
    }

    fn put<H: Handler<T, Shared>, T: 'static>(mut self, path: &'static str, handler: H) -> Self {
        self.router = self.router.route(path, put(handler));
        self.table.push((Method::PUT, path));
        self
    }

    fn delete<H: Handler<T, Shared>, T: 'static>(mut self, path: &'static str, handler: H) -> Self {
        self.router = self.router.route(path, delete(handler));
        self.table.push((Method::DELETE, path));
        self
    }

    /// The router (without fallbacks, layers or state).
    pub(crate) fn into_router(self) -> Router<Shared> {
        self.router
    }

    /// `(method, path)` of every route, in the order they were added.
    #[cfg(test)]
    pub(crate) fn table(&self) -> &[(Method, &'static str)] {
        &self.table
    }
}

/// Every route of the HTTP API (see the table in [`crate::api`]).
pub(crate) fn routes() -> Routes {
    const JOB: &str = "/v1/apps/{app}/jobs/{id}";
    const WORKFLOW: &str = "/v1/apps/{app}/workflows/{id}";
    const CHANNEL: &str = "/v1/apps/{app}/alarm-channels/{name}";
    const CALENDAR: &str = "/v1/apps/{app}/calendars/{name}";
    Routes::new()
        .get("/healthz", h::healthz)
        .get("/metrics", h::metrics)
        .get("/v1/openapi.json", openapi::document)
        .post("/v1/validate", h::validate)
        .post("/v1/apps", h::create_app)
        .get("/v1/apps", ap::list_apps)
        .get("/v1/apps/{app}", ap::get_app)
        .delete("/v1/apps/{app}", ap::delete_app)
        .post("/v1/apps/{app}/rotate-secret", ap::rotate_secret)
        .post("/v1/apps/{app}/tokens", ap::create_token)
        .get("/v1/apps/{app}/tokens", ap::list_tokens)
        .delete("/v1/apps/{app}/tokens/{id}", ap::revoke_token)
        .post("/v1/apps/{app}/jobs", h::create_job)
        .get("/v1/apps/{app}/jobs", h::list_jobs)
        .get(JOB, h::get_job)
        .put(JOB, h::update_job)
        .delete(JOB, h::delete_job)
        .post("/v1/apps/{app}/jobs/{id}/enable", h::enable_job)
        .post("/v1/apps/{app}/jobs/{id}/disable", h::disable_job)
        .post("/v1/apps/{app}/jobs/{id}/run", h::run_job)
        .post("/v1/apps/{app}/jobs/{id}/runs", h::run_job_batch)
        .post("/v1/apps/{app}/jobs/{id}/copy", h::copy_job)
        .post("/v1/apps/{app}/jobs/{id}/backfill", h::backfill_job)
        .get("/v1/apps/{app}/jobs/{id}/versions", v::job_versions)
        .get(
            "/v1/apps/{app}/jobs/{id}/versions/{version}",
            v::job_version,
        )
        .post("/v1/apps/{app}/jobs/{id}/rollback", v::rollback_job)
        .get("/v1/apps/{app}/instances", h::list_instances)
        .get("/v1/apps/{app}/instances/{id}", h::get_instance)
        .delete("/v1/apps/{app}/instances/{id}", h::delete_instance)
        .post("/v1/apps/{app}/instances/{id}/stop", h::stop_instance)
        .post("/v1/apps/{app}/instances/{id}/cancel", h::cancel_instance)
        .post("/v1/apps/{app}/instances/{id}/retry", h::retry_instance)
        .get("/v1/apps/{app}/instances/{id}/log", h::instance_log)
        .get(
            "/v1/apps/{app}/instances/{id}/log.txt",
            h::instance_log_text,
        )
        .get("/v1/apps/{app}/workers", h::list_workers)
        .get("/v1/apps/{app}/stats", h::app_stats)
        .post("/v1/apps/{app}/workflows", w::create_workflow)
        .get("/v1/apps/{app}/workflows", w::list_workflows)
        .get(WORKFLOW, w::get_workflow)
        .put(WORKFLOW, w::update_workflow)
        .delete(WORKFLOW, w::delete_workflow)
        .post("/v1/apps/{app}/workflows/{id}/run", w::run_workflow)
        .post(
            "/v1/apps/{app}/workflows/{id}/backfill",
            w::backfill_workflow,
        )
        .post("/v1/apps/{app}/workflows/{id}/copy", w::copy_workflow)
        .get(
            "/v1/apps/{app}/workflows/{id}/versions",
            v::workflow_versions,
        )
        .get(
            "/v1/apps/{app}/workflows/{id}/versions/{version}",
            v::workflow_version,
        )
        .post(
            "/v1/apps/{app}/workflows/{id}/rollback",
            v::rollback_workflow,
        )
        .get(
            "/v1/apps/{app}/workflow-instances",
            w::list_workflow_instances,
        )
        .get(
            "/v1/apps/{app}/workflow-instances/{id}",
            w::get_workflow_instance,
        )
        .delete(
            "/v1/apps/{app}/workflow-instances/{id}",
            w::delete_workflow_instance,
        )
        .post(
            "/v1/apps/{app}/workflow-instances/{id}/stop",
            w::stop_workflow_instance,
        )
        .post(
            "/v1/apps/{app}/workflow-instances/{id}/retry",
            w::retry_workflow_instance,
        )
        .post(
            "/v1/apps/{app}/workflow-instances/{id}/nodes/{node}/mark-success",
            w::mark_workflow_node_success,
        )
        .get("/v1/apps/{app}/alarm-channels", a::list_channels)
        .put(CHANNEL, a::put_channel)
        .delete(CHANNEL, a::delete_channel)
        .post("/v1/apps/{app}/alarm-channels/{name}/test", a::test_channel)
        .get("/v1/apps/{app}/alarms", a::list_alarms)
        .get("/v1/apps/{app}/calendars", c::list_calendars)
        .get(CALENDAR, c::get_calendar)
        .put(CALENDAR, c::put_calendar)
        .delete(CALENDAR, c::delete_calendar)
        .get("/v1/apps/{app}/audit", v::list_audit)
}
