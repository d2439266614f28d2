//! The web console: server-rendered HTML pages at `/` on the HTTP port, beside the OpenAPI
//! at `/v1`, built on the same [`Api`] trait (so it works over any server that implements
//! it).
//!
//! ```text
//!   browser ── GET /jobs ──▶ session cookie ─▶ SessionTable ─▶ Session { app, csrf }
//!                                                   │ none: 303 /login
//!                              Api::list_jobs(session.app) ─▶ pages::jobs (maud) ─▶ HTML
//!   browser ── POST /jobs ─▶ session ─▶ body (urlencoded, within the body limit and read
//!                              timeout) ─▶ `_csrf` == session.csrf ─▶ Api::create_job ─▶ 303
//! ```
//!
//! - **Assets**: htmx (vendored, `assets/htmx.min.js`), `console.css` and `console.js` are
//!   compiled into the binary with `include_str!` and served under `/assets/`; pages load
//!   nothing from elsewhere, and their `Content-Security-Policy` forbids it.
//! - **Sign-in** (`/login`): an app (name or id) and a token: the admin token, or an API
//!   token of that app (or its worker secret in the compatibility mode), the same check the
//!   OpenAPI makes for `/v1/apps/{app}/...`. A wrong, revoked or expired token, another
//!   app's token and an unknown app get the same answer. The sign-in form is protected by a
//!   double-submit token (cookie [`session::LOGIN_COOKIE`] = hidden field).
//! - **Roles**: a session keeps its token's role; every form POST checks it before anything
//!   else (`read`: previews and sign-out only; `operate`: runs, stops, retries, enable and
//!   disable; `admin`: creating, editing and deleting) and refuses the others with 403 and a
//!   page that names both roles. Pages show the session's role beside the app.
//! - **Sessions** ([`session`]): bounded, in memory, one app per session; every page and
//!   action of a session passes that session's [`AppRef`](crate::api::AppRef) to the
//!   [`Api`], which answers NotFound for another app's ids: a session never sees another
//!   app's data. A session signed in with the admin token may switch to another app
//!   (`POST /switch-app`); an app-token session cannot, it signs out and in again.
//! - **CSRF**: every form carries the session's `_csrf`; every POST compares it (constant
//!   time) before doing anything, and refuses with 403 when it is missing or wrong. The
//!   session cookie is also `SameSite=Strict`.
//! - **Live parts** (the instance page while it runs, the overview, the job form's "next 5
//!   fire times") are htmx fragments fetched by polling or on input; the fragment routes
//!   answer the same markup the full page embeds, so a refresh causes no layout shift.
//! - **Fire-time preview** ([`jobs::fires`]): the expression read and stepped as
//!   `POST /v1/validate` does, in the form's zone, within its lifecycle window, without the
//!   triggers the app's calendars it names exclude; an error fills the slot under the field at
//!   fault (htmx out-of-band swaps; `console.js` sets `aria-invalid` from the slots).
//!
//! - **Workflows** ([`workflows`]): a definition's DAG is drawn as SVG on the server
//!   ([`dag`]: a layered layout computed in Rust, no script); the editor takes the API's
//!   JSON and previews the DAG (or the validation error) as it is typed; a workflow
//!   instance's nodes are coloured by status on the same drawing, polled while it runs.
//! - **Dead workers**: the [`Api`] lists live workers only; the console remembers the
//!   workers it listed and shows those missing from a later listing as lost, with their last
//!   heartbeat ([`sightings`]).
//!
//! What the [`Api`] does not offer, the console does not show: there is no app listing
//! (sign in names the app), and an instance's start time is not kept apart from its
//! dispatch time.

// Helpers answer `Result<_, Response>` whose `Err` is the finished error page or redirect,
// returned by the handler at once and never stored: its size does not matter.
#![allow(clippy::result_large_err)]

mod dag;
mod form;
mod instance_filter;
mod jobs;
mod pages;
mod routes;
mod session;
mod sightings;
#[cfg(test)]
mod tests;
mod workflow_pages;
mod workflows;

use std::sync::Arc;

use axum::routing::{get, post};
use axum::Router;
use parking_lot::Mutex;

use super::auth::Credentials;
use crate::api::Api;
use crate::clock::Clock;
use session::{SessionLimits, SessionTable};

/// What every console handler shares.
#[derive(Clone)]
pub(crate) struct Console {
    api: Arc<dyn Api>,
    credentials: Credentials,
    /// The time token expiry reads.
    clock: Arc<dyn Clock>,
    sessions: Arc<Mutex<SessionTable>>,
    secure_cookies: bool,
    /// Workers seen online, to show the ones that went away ([`sightings`]).
    sightings: Arc<Mutex<sightings::Sightings>>,
}

/// The console's routes, with their own state; merged into the HTTP router beside `/v1`.
pub(crate) fn router<S: Clone + Send + Sync + 'static>(
    api: Arc<dyn Api>,
    credentials: Credentials,
    clock: Arc<dyn Clock>,
    secure_cookies: bool,
) -> Router<S> {
    let console = Console {
        api,
        credentials,
        clock,
        sessions: Arc::new(Mutex::new(SessionTable::new(SessionLimits::default()))),
        secure_cookies,
        sightings: Arc::new(Mutex::new(sightings::Sightings::default())),
    };
    use jobs as j;
    use routes as r;
    use workflows as w;
    Router::new()
        .route("/", get(r::overview))
        .route("/overview/live", get(r::overview_live))
        .route("/assets/{name}", get(r::asset))
        .route("/login", get(r::login_page).post(r::login))
        .route("/logout", post(r::logout))
        .route("/switch-app", post(r::switch_app))
        .route("/jobs", get(j::list).post(j::create))
        .route("/jobs/new", get(j::new_form))
        .route("/jobs/preview", post(j::preview))
        .route("/jobs/{id}", get(j::edit_form).post(j::update))
        .route("/jobs/{id}/enable", post(j::enable))
        .route("/jobs/{id}/disable", post(j::disable))
        .route("/jobs/{id}/run", post(j::run))
        .route("/jobs/{id}/delete", get(j::confirm_delete).post(j::delete))
        .route("/instances", get(r::instances))
        .route("/instances/{id}", get(r::instance))
        .route("/instances/{id}/live", get(r::instance_live))
        .route("/instances/{id}/{action}", post(r::instance_action))
        .route("/workers", get(r::workers))
        .route("/workers/live", get(r::workers_live))
        .route("/workflows", get(w::list).post(w::create))
        .route("/workflows/new", get(w::new_form))
        .route("/workflows/preview", post(w::preview))
        .route("/workflows/{id}", get(w::detail).post(w::update))
        .route("/workflows/{id}/edit", get(w::edit_form))
        .route("/workflows/{id}/run", post(w::run))
        .route(
            "/workflows/{id}/delete",
            get(w::confirm_delete).post(w::delete),
        )
        .route("/workflow-instances", get(w::runs))
        .route("/workflow-instances/{id}", get(w::run_page))
        .route("/workflow-instances/{id}/live", get(w::run_live))
        .route("/workflow-instances/{id}/{action}", post(w::run_action))
        .route(
            "/workflow-instances/{id}/nodes/{node}/mark-success",
            post(w::mark_success),
        )
        .with_state(console)
}
