//! Console handlers shared by every page (responses, sign-in, the session and CSRF checks)
//! and the pages other than jobs: overview, instances, workers, assets.

use std::collections::{HashMap, VecDeque};
use std::time::Instant;

use axum::extract::{Path, Request, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, LOCATION, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use maud::Markup;

use super::form::Fields;
use super::instance_filter::InstanceFilter;
use super::pages::{self, Overview};
use super::session::{cookie, random_token, set_cookie, Session, LOGIN_COOKIE, SESSION_COOKIE};
use super::Console;
use crate::api::TokenRole;
use crate::api::{
    ApiError, ErrorCode, InstanceAction, InstanceQuery, InstanceView, JobQuery, LogLineView,
    LogQuery,
};
use crate::clock::{Clock, SystemClock};
use crate::http::auth::{ct_eq, Denied};
use crate::http::failure::LoginFailed;
use crate::ids::InstanceId;
use crate::model::InstanceStatus;

/// Instances per page of the instances table.
const INSTANCES_PAGE: u32 = 50;
/// Log lines an instance page shows (the newest).
const LOG_TAIL_LINES: usize = 200;
/// Log pages (of 1000 lines) read to find the tail; a longer log shows an earlier window.
const MAX_LOG_PAGES: usize = 10;
/// A day, ms: the overview's longest window.
const DAY_MS: i64 = 86_400_000;
/// Newest RUNNING instances the workers page counts per worker.
const RUNNING_SCAN: u32 = 1000;

const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// An HTML answer with the console's security headers.
pub(super) fn html(status: StatusCode, markup: Markup) -> Response {
    let mut response = (status, markup.into_string()).into_response();
    let h = response.headers_mut();
    h.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert("content-security-policy", HeaderValue::from_static(CSP));
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    h.insert("referrer-policy", HeaderValue::from_static("same-origin"));
    response
}

pub(super) fn ok(markup: Markup) -> Response {
    html(StatusCode::OK, markup)
}

/// 303 to `location` (after a POST, or to the sign-in page).
pub(super) fn see_other(location: &str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(location) {
        response.headers_mut().insert(LOCATION, v);
    }
    response
}

/// An [`ApiError`] as an error page with its status.
pub(super) fn api_error(e: &ApiError) -> Response {
    let status =
        StatusCode::from_u16(e.code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let title = match e.code {
        ErrorCode::NotFound => "Not found",
        ErrorCode::InvalidArgument => "Invalid request",
        ErrorCode::Conflict => "Not possible now",
        _ => "Error",
    };
    html(status, pages::error_page(title, &e.message))
}

pub(super) fn not_found() -> Response {
    html(
        StatusCode::NOT_FOUND,
        pages::error_page("Not found", "There is no such page."),
    )
}

/// A numeric path id, or the 404 page.
pub(super) fn path_id(text: &str) -> Result<u64, Response> {
    text.parse().map_err(|_| not_found())
}

impl Console {
    /// The request's live session, or a 303 to the sign-in page. An htmx request (a live
    /// refresh) gets 401 with `HX-Redirect` instead: a 303 would be followed inside the
    /// fragment and put the sign-in page in its place.
    pub(super) fn session(&self, headers: &HeaderMap) -> Result<Session, Response> {
        cookie(headers, SESSION_COOKIE)
            .and_then(|id| self.sessions.lock().get(id, Instant::now()))
            .ok_or_else(|| {
                if headers.contains_key("hx-request") {
                    let mut response = StatusCode::UNAUTHORIZED.into_response();
                    response
                        .headers_mut()
                        .insert("hx-redirect", HeaderValue::from_static("/login"));
                    response
                } else {
                    see_other("/login")
                }
            })
    }

    /// The session of a POST and its form fields, once the form's `_csrf` matched the
    /// session's (403 otherwise). The body is read only for a signed-in request.
    pub(super) async fn form(&self, req: Request) -> Result<(Session, Fields), Response> {
        let session = self.session(req.headers())?;
        let path = req.uri().path().to_owned();
        let fields = read_fields(req).await?;
        let sent = fields.get("_csrf").unwrap_or("");
        if sent.is_empty() || !ct_eq(sent.as_bytes(), session.csrf.as_bytes()) {
            return Err(html(
                StatusCode::FORBIDDEN,
                pages::error_page(
                    "Refused",
                    "This form is out of date (missing or wrong CSRF token); reload the page and try again.",
                ),
            ));
        }
        let need = needed_role(path.as_str());
        if session.role < need {
            let message = format!(
                "Signed in with a `{}` token, which cannot do this: it needs `{need}`. Sign in with a token of that role.",
                session.role
            );
            return Err(html(
                StatusCode::FORBIDDEN,
                pages::error_page("Refused", &message),
            ));
        }
        Ok((session, fields))
    }
}

/// The role a console form POST to `path` needs (see the module docs).
pub(super) fn needed_role(path: &str) -> TokenRole {
    let last = path.rsplit('/').next().unwrap_or("");
    let operate = [
        "run",
        "enable",
        "disable",
        "mark-success",
        "stop",
        "retry",
        "cancel",
    ];
    if matches!(
        path,
        "/logout" | "/switch-app" | "/jobs/preview" | "/workflows/preview"
    ) {
        TokenRole::Read
    } else if operate.contains(&last) {
        TokenRole::Operate
    } else {
        TokenRole::Admin
    }
}

/// A urlencoded request body within the router's limits.
async fn read_fields(req: Request) -> Result<Fields, Response> {
    let bytes = crate::http::extract::read_body(req)
        .await
        .map_err(|f| api_error(&f.error))?;
    Fields::parse(&bytes).ok_or_else(|| {
        api_error(&ApiError::new(
            ErrorCode::InvalidArgument,
            "too many fields",
        ))
    })
}

/// The query string's fields.
pub(super) fn query(req_uri: &axum::http::Uri) -> Fields {
    Fields::parse(req_uri.query().unwrap_or("").as_bytes()).unwrap_or_default()
}

/// `GET /assets/{name}`: the embedded files.
pub(super) async fn asset(Path(name): Path<String>) -> Response {
    let (body, kind) = match name.as_str() {
        "htmx.min.js" => (pages::HTMX_JS, "text/javascript; charset=utf-8"),
        "console.js" => (pages::CONSOLE_JS, "text/javascript; charset=utf-8"),
        "console.css" => (pages::CONSOLE_CSS, "text/css; charset=utf-8"),
        _ => return not_found(),
    };
    (
        [
            (CONTENT_TYPE, kind),
            (CACHE_CONTROL, "public, max-age=300"),
            (axum::http::header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response()
}

/// `GET /login`: the form, with a fresh double-submit token in a cookie.
pub(super) async fn login_page(State(c): State<Console>, headers: HeaderMap) -> Response {
    if c.session(&headers).is_ok() {
        return see_other("/");
    }
    let token = random_token();
    let mut response = ok(pages::login(&token, "", None));
    if let Ok(v) = HeaderValue::from_str(&set_cookie(LOGIN_COOKIE, &token, c.secure_cookies)) {
        response.headers_mut().append(SET_COOKIE, v);
    }
    response
}

/// `POST /login`: app + token → a session cookie and 303 to the overview; 401 otherwise.
pub(super) async fn login(State(c): State<Console>, req: Request) -> Response {
    let login_token = cookie(req.headers(), LOGIN_COOKIE).unwrap_or("").to_owned();
    let fields = match read_fields(req).await {
        Ok(f) => f,
        Err(response) => return response,
    };
    let sent = fields.get("_csrf").unwrap_or("");
    if login_token.is_empty() || !ct_eq(sent.as_bytes(), login_token.as_bytes()) {
        return html(
            StatusCode::FORBIDDEN,
            pages::error_page(
                "Refused",
                "The sign-in form is out of date; open /login again.",
            ),
        );
    }
    let app = fields.get("app").unwrap_or("");
    let token = fields.get("token").unwrap_or("");
    let grant = match c
        .credentials
        .authenticate(&*c.api, app, token, c.clock.now_ms())
    {
        Ok(grant) => grant,
        Err(Denied::Api(e)) if e.code == ErrorCode::NotFound => {
            // Only the admin token learns that an app does not exist.
            let page = pages::login(&login_token, app, Some("There is no such app."));
            return html(StatusCode::NOT_FOUND, page);
        }
        Err(Denied::Api(e)) => return api_error(&e),
        Err(Denied::Invalid) => {
            let page = pages::login(
                &login_token,
                app,
                Some("The app or the token is not valid."),
            );
            let mut response = html(StatusCode::UNAUTHORIZED, page);
            response.extensions_mut().insert(LoginFailed);
            return response;
        }
    };
    tracing::info!(app = %grant.app.name, admin = grant.admin, role = %grant.role, "console sign-in");
    let id = c
        .sessions
        .lock()
        .create(grant.app, grant.admin, grant.role, Instant::now());
    let mut response = see_other("/");
    for value in [
        set_cookie(SESSION_COOKIE, &id, c.secure_cookies),
        set_cookie(LOGIN_COOKIE, "", c.secure_cookies),
    ] {
        if let Ok(v) = HeaderValue::from_str(&value) {
            response.headers_mut().append(SET_COOKIE, v);
        }
    }
    response
}

/// `POST /logout`: ends the session and clears its cookie.
pub(super) async fn logout(State(c): State<Console>, req: Request) -> Response {
    let id = cookie(req.headers(), SESSION_COOKIE)
        .unwrap_or("")
        .to_owned();
    if let Err(refused) = c.form(req).await {
        return refused;
    }
    c.sessions.lock().remove(&id);
    let mut response = see_other("/login");
    if let Ok(v) = HeaderValue::from_str(&set_cookie(SESSION_COOKIE, "", c.secure_cookies)) {
        response.headers_mut().append(SET_COOKIE, v);
    }
    response
}

/// `POST /switch-app` (`app`: a name or id): an admin session now shows that app.
pub(super) async fn switch_app(State(c): State<Console>, req: Request) -> Response {
    let id = cookie(req.headers(), SESSION_COOKIE)
        .unwrap_or("")
        .to_owned();
    let (session, fields) = match c.form(req).await {
        Ok(f) => f,
        Err(refused) => return refused,
    };
    if !session.admin {
        let message = "Only a session signed in with the admin token can switch apps; sign out and sign in to the other app.";
        return html(StatusCode::FORBIDDEN, pages::error_page("Refused", message));
    }
    let app = match c.api.resolve_app(fields.get("app").unwrap_or("")) {
        Ok(app) => app,
        Err(e) => return api_error(&e),
    };
    if c.sessions.lock().switch_app(&id, app, Instant::now()) {
        see_other("/")
    } else {
        see_other("/login")
    }
}

/// The overview's numbers: the server's per-app counts (`GET /v1/apps/{app}/stats`), the
/// workers online and the next triggers.
async fn overview_data(c: &Console, s: &Session) -> Result<Overview, ApiError> {
    let now = SystemClock.now_ms();
    let stats = c.api.app_stats(s.app.clone()).await?;
    let workers = c.api.list_workers(s.app.clone()).await?.workers;
    // The overview's listing counts as a sighting too: a worker lost while only the
    // overview was open is noticed.
    c.sightings.lock().observe(s.app.id.0, &workers, now);
    let recent = &stats.last_5_minutes;
    // Instances that finished per second over the time the 5-minute window covers.
    let covered_ms = (stats.as_of - recent.from).max(1);
    let per_second = recent.finished as f64 * 1000.0 / covered_ms as f64;
    let mut o = Overview {
        workers: workers.len(),
        per_second,
        hour: (stats.last_hour.succeeded, stats.last_hour.failed),
        day: (stats.last_day.succeeded, stats.last_day.failed),
        lateness_p50: stats.last_hour.lateness_p50_ms,
        lateness_p99: stats.last_hour.lateness_p99_ms,
        // The server counts in memory from its start: say from when while that is less than
        // a day ago.
        counted_since: (stats.since > stats.as_of - DAY_MS).then_some(stats.since),
        ..Overview::default()
    };
    let enabled = JobQuery {
        enabled: Some(true),
        ..JobQuery::default()
    };
    let (jobs, _) = super::jobs::scan(c, s, &enabled, |j| j.next_trigger_time.is_some()).await?;
    let mut next: Vec<(u64, String, i64)> = jobs
        .into_iter()
        .filter_map(|j| Some((j.id.0, j.body.name, j.next_trigger_time?)))
        .collect();
    next.sort_by_key(|(_, _, at)| *at);
    next.truncate(5);
    o.next = next;
    Ok(o)
}

/// `GET /`: the overview.
pub(super) async fn overview(State(c): State<Console>, headers: HeaderMap) -> Response {
    let s = match c.session(&headers) {
        Ok(s) => s,
        Err(r) => return r,
    };
    match overview_data(&c, &s).await {
        Ok(o) => ok(pages::overview(&s, &o)),
        Err(e) => api_error(&e),
    }
}

/// `GET /overview/live`: the overview's refreshed body.
pub(super) async fn overview_live(State(c): State<Console>, headers: HeaderMap) -> Response {
    let s = match c.session(&headers) {
        Ok(s) => s,
        Err(r) => return r,
    };
    match overview_data(&c, &s).await {
        Ok(o) => ok(pages::overview_live(&o)),
        Err(e) => api_error(&e),
    }
}

/// `GET /instances?job_id&status&time&from&to&cursor`: one page, newest first.
pub(super) async fn instances(State(c): State<Console>, req: Request) -> Response {
    let s = match c.session(req.headers()) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let q = query(req.uri());
    let bad = |what: &str| api_error(&ApiError::invalid(what, "not a valid value"));
    let filter = match InstanceFilter::parse(&q) {
        Ok(f) => f,
        Err(field) => return bad(field),
    };
    let cursor = match q.get("cursor").map(str::parse::<u64>) {
        None => None,
        Some(Ok(c)) => Some(c),
        Some(Err(_)) => return bad("cursor"),
    };
    match c
        .api
        .list_instances(s.app.clone(), filter.query(INSTANCES_PAGE, cursor))
        .await
    {
        Ok(page) => {
            let next = page.next_cursor.map(|cursor| filter.older_href(cursor));
            ok(pages::instances(&s, &filter, &page.items, next))
        }
        Err(e) => api_error(&e),
    }
}

/// The last [`LOG_TAIL_LINES`] lines of an instance's log, and a note when the log was
/// longer than the pages read, or lost lines.
async fn log_tail(
    c: &Console,
    s: &Session,
    id: InstanceId,
) -> Result<(Vec<LogLineView>, Option<String>), ApiError> {
    let mut tail: VecDeque<LogLineView> = VecDeque::with_capacity(LOG_TAIL_LINES);
    let mut cursor = None;
    let mut dropped = 0;
    let mut complete = false;
    for _ in 0..MAX_LOG_PAGES {
        let page = c
            .api
            .instance_log(
                s.app.clone(),
                id,
                LogQuery {
                    limit: Some(1000),
                    cursor,
                    before: None,
                },
            )
            .await?;
        dropped = page.dropped;
        for line in page.lines {
            if tail.len() == LOG_TAIL_LINES {
                tail.pop_front();
            }
            tail.push_back(line);
        }
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => {
                complete = true;
                break;
            }
        }
    }
    let mut notes = Vec::new();
    if !complete {
        notes.push(format!(
            "The log is longer than {} lines; these are lines up to that point.",
            MAX_LOG_PAGES * 1000
        ));
    }
    if dropped > 0 {
        notes.push(format!("{dropped} lines were dropped."));
    }
    let note = (!notes.is_empty()).then(|| notes.join(" "));
    Ok((tail.into(), note))
}

async fn instance_markup(
    c: &Console,
    s: &Session,
    id: &str,
) -> Result<(InstanceView, Markup), Response> {
    let id = InstanceId(path_id(id)?);
    let view = c
        .api
        .get_instance(s.app.clone(), id)
        .await
        .map_err(|e| api_error(&e))?;
    let (log, note) = log_tail(c, s, id).await.map_err(|e| api_error(&e))?;
    let live = pages::instance_live(s, &view, &log, note, SystemClock.now_ms());
    Ok((view, live))
}

/// `GET /instances/{id}`.
pub(super) async fn instance(
    State(c): State<Console>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let s = match c.session(&headers) {
        Ok(s) => s,
        Err(r) => return r,
    };
    match instance_markup(&c, &s, &id).await {
        Ok((view, live)) => ok(pages::instance(&s, live, view.id.0)),
        Err(r) => r,
    }
}

/// `GET /instances/{id}/live`: the part of the page that changes while it runs.
pub(super) async fn instance_live(
    State(c): State<Console>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let s = match c.session(&headers) {
        Ok(s) => s,
        Err(r) => return r,
    };
    match instance_markup(&c, &s, &id).await {
        Ok((_, live)) => ok(live),
        Err(r) => r,
    }
}

/// `POST /instances/{id}/{stop|cancel|retry}` → 303 back to the instance.
pub(super) async fn instance_action(
    State(c): State<Console>,
    Path((id, action)): Path<(String, String)>,
    req: Request,
) -> Response {
    let action = match action.as_str() {
        "stop" => InstanceAction::Stop,
        "cancel" => InstanceAction::Cancel,
        "retry" => InstanceAction::Retry,
        _ => return not_found(),
    };
    let (s, _) = match c.form(req).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let id = match path_id(&id) {
        Ok(id) => InstanceId(id),
        Err(r) => return r,
    };
    match c.api.instance_action(s.app.clone(), id, action).await {
        Ok(view) => see_other(&format!("/instances/{}", view.id.0)),
        Err(e) => api_error(&e),
    }
}

/// The app's live workers, and the lost ones ([`super::sightings`]).
async fn workers_markup(c: &Console, s: &Session) -> Result<Markup, ApiError> {
    let list = c.api.list_workers(s.app.clone()).await?;
    let lost = c
        .sightings
        .lock()
        .observe(s.app.id.0, &list.workers, SystemClock.now_ms());
    // Running instances per worker, over the newest RUNNING instances of the app.
    let query = InstanceQuery {
        status: Some(InstanceStatus::Running),
        limit: Some(RUNNING_SCAN),
        ..InstanceQuery::default()
    };
    let running = c.api.list_instances(s.app.clone(), query).await?;
    let mut per_worker: HashMap<String, u32> = HashMap::new();
    for i in running.items {
        if let Some(w) = i.worker {
            *per_worker.entry(w).or_default() += 1;
        }
    }
    let capped = running.next_cursor.map(|_| RUNNING_SCAN);
    Ok(pages::workers_live(
        &list.workers,
        &per_worker,
        capped,
        &lost,
    ))
}

/// `GET /workers`.
pub(super) async fn workers(State(c): State<Console>, headers: HeaderMap) -> Response {
    let s = match c.session(&headers) {
        Ok(s) => s,
        Err(r) => return r,
    };
    match workers_markup(&c, &s).await {
        Ok(live) => ok(pages::workers(&s, live)),
        Err(e) => api_error(&e),
    }
}

/// `GET /workers/live`: the workers tables, refreshed.
pub(super) async fn workers_live(State(c): State<Console>, headers: HeaderMap) -> Response {
    let s = match c.session(&headers) {
        Ok(s) => s,
        Err(r) => return r,
    };
    match workers_markup(&c, &s).await {
        Ok(live) => ok(live),
        Err(e) => api_error(&e),
    }
}
