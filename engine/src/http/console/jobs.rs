//! The jobs pages: the table with search and filters, create and edit, the live preview of
//! the next fire times, enable/disable, run now, delete with confirmation.
//!
//! The [`Api`](crate::api::Api) filters the jobs (name, tag, time expression type, execute
//! type, enabled) and lists the matches by id a page at a time; the table reads at most
//! [`MAX_JOB_PAGES`] pages and shows at most [`MAX_JOB_ROWS`] matches (and says so when it
//! stops early).

use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;

use super::form::{job_body, parse_wire, Fields};
use super::pages;
use super::routes::{api_error, html, ok, path_id, query, see_other};
use super::session::Session;
use super::Console;
use crate::api::{ApiError, ErrorCode, JobBody, JobQuery, JobView, RunJob};
use crate::calendar::{check_calendar_names, preview_all, Calendar};
use crate::clock::{Clock, SystemClock};
use crate::ids::JobId;
use crate::time_expression::{
    parse_time_zone, EpochMs, Lifecycle, TimeExpression, TimeExpressionType,
};

/// Jobs per page the table asks the API for.
const JOB_PAGE: u32 = 1000;
/// Pages of [`JOB_PAGE`] jobs the table reads at most.
const MAX_JOB_PAGES: usize = 10;
/// Rows the table shows at most.
const MAX_JOB_ROWS: usize = 500;
/// Fire times the job form previews.
const PREVIEW_COUNT: u32 = 5;

/// The jobs page's filters, as typed.
#[derive(Debug, Default)]
pub(crate) struct JobFilter {
    pub(crate) q: String,
    pub(crate) tag: String,
    pub(crate) kind: String,
    pub(crate) execute: String,
    pub(crate) enabled: String,
}

impl JobFilter {
    /// The filter as the API's query; the field named in the error is not a valid choice.
    fn query(&self) -> Result<JobQuery, &'static str> {
        let text = |v: &str| Some(v.trim().to_owned()).filter(|v| !v.is_empty());
        fn choice<T: serde::de::DeserializeOwned>(
            v: &str,
            field: &'static str,
        ) -> Result<Option<T>, &'static str> {
            match v {
                "" => Ok(None),
                v => parse_wire(v).map(Some).ok_or(field),
            }
        }
        Ok(JobQuery {
            name: text(&self.q),
            tag: text(&self.tag),
            time_expression_type: choice(&self.kind, "type")?,
            execute_type: choice(&self.execute, "execute")?,
            enabled: match self.enabled.as_str() {
                "" => None,
                "yes" => Some(true),
                "no" => Some(false),
                _ => return Err("enabled"),
            },
            ..JobQuery::default()
        })
    }
}

/// The app's jobs that match `filter` (the API's) and `keep`, in id order, at most
/// [`MAX_JOB_ROWS`]; `true` when the scan stopped before the last job.
pub(super) async fn scan(
    c: &Console,
    s: &Session,
    filter: &JobQuery,
    keep: impl Fn(&JobView) -> bool,
) -> Result<(Vec<JobView>, bool), ApiError> {
    let mut out = Vec::new();
    let mut cursor = None;
    for _ in 0..MAX_JOB_PAGES {
        let query = JobQuery {
            limit: Some(JOB_PAGE),
            cursor,
            ..filter.clone()
        };
        let page = c.api.list_jobs(s.app.clone(), query).await?;
        for j in page.items {
            if keep(&j) {
                if out.len() == MAX_JOB_ROWS {
                    return Ok((out, true));
                }
                out.push(j);
            }
        }
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => return Ok((out, false)),
        }
    }
    Ok((out, true))
}

/// `GET /jobs?q&tag&type&execute&enabled`.
pub(super) async fn list(State(c): State<Console>, req: Request) -> Response {
    let s = match c.session(req.headers()) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let q = query(req.uri());
    let text = |name: &str| q.get(name).unwrap_or("").to_owned();
    let filter = JobFilter {
        q: text("q"),
        tag: text("tag"),
        kind: text("type"),
        execute: text("execute"),
        enabled: text("enabled"),
    };
    let api_filter = match filter.query() {
        Ok(f) => f,
        Err(field) => return api_error(&ApiError::invalid(field, "not a valid choice")),
    };
    match scan(&c, &s, &api_filter, |_| true).await {
        Ok((jobs, truncated)) => ok(pages::jobs(&s, &filter, &jobs, truncated)),
        Err(e) => api_error(&e),
    }
}

/// `GET /jobs/new`.
pub(super) async fn new_form(State(c): State<Console>, headers: HeaderMap) -> Response {
    match c.session(&headers) {
        Ok(s) => {
            let body = JobBody::new("", TimeExpressionType::Cron, "0 * * * * ?", "");
            ok(pages::job_form(&s, None, &body, None))
        }
        Err(r) => r,
    }
}

/// What the form shows again after a refused submit: what was typed, with each field that
/// does not parse (the error names it) back at its default.
fn retyped(fields: &Fields) -> JobBody {
    let mut fields = fields.clone();
    if fields
        .get("time_expression_type")
        .and_then(parse_wire::<TimeExpressionType>)
        .is_none()
    {
        fields.set("time_expression_type", "CRON");
    }
    // One bad field at a time; the loop ends because each round removes a field.
    loop {
        match job_body(&fields) {
            Ok(body) => return body,
            Err(msg) => {
                let name = msg.split(':').next().unwrap_or("");
                if !fields.remove(name) {
                    return JobBody::new("", TimeExpressionType::Cron, "", "");
                }
            }
        }
    }
}

/// The form again with `message`, 400 (a bad field) or the error's own status.
fn refused(s: &Session, id: Option<u64>, fields: &Fields, e: &ApiError) -> Response {
    let status = StatusCode::from_u16(e.code.http_status()).unwrap_or(StatusCode::BAD_REQUEST);
    html(
        status,
        pages::job_form(s, id, &retyped(fields), Some(&e.message)),
    )
}

/// `POST /jobs` → 303 to the new job.
pub(super) async fn create(State(c): State<Console>, req: Request) -> Response {
    let (s, fields) = match c.form(req).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let body = match job_body(&fields) {
        Ok(b) => b,
        Err(msg) => {
            return refused(
                &s,
                None,
                &fields,
                &ApiError::new(ErrorCode::InvalidArgument, msg),
            )
        }
    };
    match c.api.create_job(s.app.clone(), body).await {
        Ok(created) => see_other(&format!("/jobs/{}", created.id.0)),
        Err(e) if e.code == ErrorCode::InvalidArgument => refused(&s, None, &fields, &e),
        Err(e) => api_error(&e),
    }
}

/// `POST /jobs/preview`: the next fire times of the form's expression (an htmx fragment;
/// always 200 so that htmx swaps the error in too).
pub(super) async fn preview(State(c): State<Console>, req: Request) -> Response {
    let (s, fields) = match c.form(req).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    ok(pages::preview(
        next_fires(&c, &s, &fields, SystemClock.now_ms()).await,
    ))
}

/// A preview's refusal: the form field at fault and why.
pub(crate) type FieldError = (&'static str, String);

/// The next fire times a job typed as `fields` would have after `now`, with the app's
/// calendars it names read through the [`Api`](crate::api::Api); see [`fires`].
pub(crate) async fn next_fires(
    c: &Console,
    s: &Session,
    fields: &Fields,
    now: EpochMs,
) -> Result<pages::Fires, FieldError> {
    // The fields of the expression first: their errors come before the calendars'.
    fires(fields, &[], now)?;
    let names = fields.list("calendars");
    check_calendar_names(&names).map_err(|e| ("calendars", e.to_string()))?;
    let mut calendars = Vec::with_capacity(names.len());
    for name in names {
        let view = match c.api.get_calendar(s.app.clone(), name.clone()).await {
            Ok(v) => v,
            Err(e) if e.code == ErrorCode::NotFound => {
                return Err(("calendars", format!("this app has no calendar {name:?}")))
            }
            Err(e) => return Err(("calendars", e.message)),
        };
        let calendar = Calendar::new(&view.time_zone, &view.excluded)
            .map_err(|e| ("calendars", format!("{name}: {e}")))?;
        calendars.push(calendar);
    }
    fires(fields, &calendars, now)
}

/// The next fire times after `now` of a job typed as `fields`: its expression in its zone,
/// within its lifecycle, without the triggers `calendars` exclude. The expression is read and
/// stepped as `POST /v1/validate` does (with no calendar and an open lifecycle, the times are
/// [`validate_expression`]'s); the error names the field at fault.
///
/// [`validate_expression`]: crate::api::validate_expression
pub(crate) fn fires(
    fields: &Fields,
    calendars: &[Calendar],
    now: EpochMs,
) -> Result<pages::Fires, FieldError> {
    let kind = fields
        .get("time_expression_type")
        .and_then(parse_wire::<TimeExpressionType>)
        .ok_or(("time_expression_type", "choose a type".to_owned()))?;
    let zone = fields.get("time_zone");
    let tz = parse_time_zone(zone).map_err(|e| ("time_zone", e.to_string()))?;
    let expression = fields.get("time_expression").unwrap_or("");
    let expr = TimeExpression::parse(kind, expression, zone)
        .map_err(|e| ("time_expression", e.to_string()))?;
    let instant = |field: &'static str| -> Result<Option<EpochMs>, FieldError> {
        fields
            .get(field)
            .map(|text| {
                chrono::DateTime::parse_from_rfc3339(text)
                    .map(|t| t.timestamp_millis())
                    .map_err(|e| (field, format!("{text:?} is not an RFC 3339 instant ({e})")))
            })
            .transpose()
    };
    let lifecycle = Lifecycle::new(instant("lifecycle_start")?, instant("lifecycle_end")?)
        .map_err(|e| ("lifecycle_end", e.to_string()))?;
    if matches!(kind, TimeExpressionType::Api | TimeExpressionType::Workflow) {
        return Ok(pages::Fires::default());
    }
    let p = preview_all(
        &expr,
        calendars,
        now,
        lifecycle.clamp(now),
        PREVIEW_COUNT as usize,
    );
    let text = |ms: EpochMs| match chrono::DateTime::from_timestamp_millis(ms) {
        Some(t) => t
            .with_timezone(&tz)
            .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
        None => ms.to_string(),
    };
    let in_window = |t: &EpochMs| lifecycle.end.is_none_or(|end| *t <= end);
    let cut = p.fires.iter().any(|t| !in_window(t));
    Ok(pages::Fires {
        scheduled: true,
        next: p
            .fires
            .iter()
            .copied()
            .filter(in_window)
            .map(text)
            .collect(),
        skipped: p
            .skipped
            .iter()
            .copied()
            .filter(in_window)
            .map(text)
            .collect(),
        lifecycle_end: lifecycle.end.filter(|_| cut),
    })
}

async fn job(c: &Console, s: &Session, id: &str) -> Result<JobView, Response> {
    let id = JobId(path_id(id)?);
    c.api
        .get_job(s.app.clone(), id)
        .await
        .map_err(|e| api_error(&e))
}

/// `GET /jobs/{id}`: the edit form.
pub(super) async fn edit_form(
    State(c): State<Console>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let s = match c.session(&headers) {
        Ok(s) => s,
        Err(r) => return r,
    };
    match job(&c, &s, &id).await {
        Ok(j) => ok(pages::job_form(&s, Some(j.id.0), &j.body, None)),
        Err(r) => r,
    }
}

/// `POST /jobs/{id}` → 303 back to the job.
pub(super) async fn update(
    State(c): State<Console>,
    Path(id): Path<String>,
    req: Request,
) -> Response {
    let (s, fields) = match c.form(req).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let id = match path_id(&id) {
        Ok(id) => id,
        Err(r) => return r,
    };
    // The form carries every field of the job: the update replaces the whole job, as a PUT.
    let body = match job_body(&fields) {
        Ok(b) => b,
        Err(msg) => {
            let e = ApiError::new(ErrorCode::InvalidArgument, msg);
            return refused(&s, Some(id), &fields, &e);
        }
    };
    match c.api.update_job(s.app.clone(), JobId(id), body).await {
        Ok(j) => see_other(&format!("/jobs/{}", j.id.0)),
        Err(e) if e.code == ErrorCode::InvalidArgument => refused(&s, Some(id), &fields, &e),
        Err(e) => api_error(&e),
    }
}

async fn set_enabled(c: Console, id: String, req: Request, enabled: bool) -> Response {
    let (s, _) = match c.form(req).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let id = match path_id(&id) {
        Ok(id) => JobId(id),
        Err(r) => return r,
    };
    match c.api.set_job_enabled(s.app.clone(), id, enabled).await {
        Ok(_) => see_other("/jobs"),
        Err(e) => api_error(&e),
    }
}

/// `POST /jobs/{id}/enable` → 303 to the table.
pub(super) async fn enable(
    State(c): State<Console>,
    Path(id): Path<String>,
    req: Request,
) -> Response {
    set_enabled(c, id, req, true).await
}

/// `POST /jobs/{id}/disable` → 303 to the table.
pub(super) async fn disable(
    State(c): State<Console>,
    Path(id): Path<String>,
    req: Request,
) -> Response {
    set_enabled(c, id, req, false).await
}

/// `POST /jobs/{id}/run` (`params`, `delay_ms`) → 303 to the new instance.
pub(super) async fn run(
    State(c): State<Console>,
    Path(id): Path<String>,
    req: Request,
) -> Response {
    let (s, fields) = match c.form(req).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let id = match path_id(&id) {
        Ok(id) => JobId(id),
        Err(r) => return r,
    };
    let delay_ms = match fields.number("delay_ms", 0u64) {
        Ok(d) => d,
        Err(msg) => return api_error(&ApiError::new(ErrorCode::InvalidArgument, msg)),
    };
    let req = RunJob {
        params: fields.raw("params").to_owned(),
        delay_ms,
    };
    match c.api.run_job(s.app.clone(), id, req).await {
        Ok(run) => see_other(&format!("/instances/{}", run.instance_id.0)),
        Err(e) => api_error(&e),
    }
}

/// `GET /jobs/{id}/delete`: asks first.
pub(super) async fn confirm_delete(
    State(c): State<Console>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let s = match c.session(&headers) {
        Ok(s) => s,
        Err(r) => return r,
    };
    match job(&c, &s, &id).await {
        Ok(j) => ok(pages::confirm_delete(&s, &j)),
        Err(r) => r,
    }
}

/// `POST /jobs/{id}/delete` → 303 to the table.
pub(super) async fn delete(
    State(c): State<Console>,
    Path(id): Path<String>,
    req: Request,
) -> Response {
    let (s, _) = match c.form(req).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let id = match path_id(&id) {
        Ok(id) => JobId(id),
        Err(r) => return r,
    };
    match c.api.delete_job(s.app.clone(), id).await {
        Ok(()) => see_other("/jobs"),
        Err(e) => api_error(&e),
    }
}
