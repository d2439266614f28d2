//! The console's HTML, written with maud: every interpolated value is escaped, so a job
//! named `<script>` renders as text. One function per page or fragment; handlers in
//! [`super::routes`] fetch the data and call these.
//!
//! Times are rendered as `<time datetime="…Z" title="… UTC">` in UTC; `console.js` rewrites
//! the text in the browser's zone (the UTC instant stays on hover).

use maud::{html, Markup, DOCTYPE};

use super::form::wire;
use super::session::Session;
use crate::api::{ms_to_rfc3339, InstanceView, JobBody, JobView, LogLineView, WorkerInfo};
use crate::model::InstanceStatus;
use crate::time_expression::{EpochMs, TimeExpressionType};

/// Which tab of the navigation is the current page's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Tab {
    Overview,
    Jobs,
    Instances,
    Workflows,
    Workers,
}

const EXECUTE_TYPES: [&str; 4] = ["STANDALONE", "BROADCAST", "MAP", "MAP_REDUCE"];
const DISPATCH_STRATEGIES: [&str; 4] = ["HEALTH_FIRST", "RANDOM", "ROUND_ROBIN", "SPECIFY"];
const MISFIRE_POLICIES: [&str; 3] = ["FIRE_ONCE", "FIRE_ALL", "SKIP"];
const OVERLAP_POLICIES: [&str; 4] = ["FAIL", "SKIP", "QUEUE", "REPLACE"];
const BACKOFF_SHAPES: [&str; 2] = ["EXPONENTIAL", "FIXED"];
const LOG_TYPES: [&str; 4] = ["ONLINE", "LOCAL", "STDOUT", "NULL"];
const LOG_LEVELS: [&str; 4] = ["DEBUG", "INFO", "WARN", "ERROR"];

/// The hidden CSRF field every form of a session carries.
pub(crate) fn csrf(session: &Session) -> Markup {
    html! { input type="hidden" name="_csrf" value=(session.csrf); }
}

fn head(title: &str) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            // Inline indicator styles would need 'unsafe-inline' under the page's CSP.
            meta name="htmx-config" content=r#"{"includeIndicatorStyles":false}"#;
            title { (title) " · ferrojob" }
            // No icon: an empty one keeps the browser from asking for /favicon.ico.
            link rel="icon" href="data:,";
            link rel="stylesheet" href="/assets/console.css";
            script src="/assets/htmx.min.js" defer {}
            script src="/assets/console.js" defer {}
        }
    }
}

/// A signed-in page: navigation, the app's name, sign-out, then `body`.
pub(crate) fn layout(session: &Session, tab: Tab, title: &str, body: Markup) -> Markup {
    let link = |t: Tab, href: &str, text: &str| {
        html! { a href=(href) aria-current=[(t == tab).then_some("page")] { (text) } }
    };
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body {
                header.top {
                    strong.brand { "ferrojob" }
                    nav {
                        (link(Tab::Overview, "/", "Overview"))
                        (link(Tab::Jobs, "/jobs", "Jobs"))
                        (link(Tab::Instances, "/instances", "Instances"))
                        (link(Tab::Workflows, "/workflows", "Workflows"))
                        (link(Tab::Workers, "/workers", "Workers"))
                    }
                    span.who {
                        "app " strong { (session.app.name) }
                        @if session.admin { " (admin)" } @else { " (" (session.role.as_str()) " token)" }
                    }
                    @if session.admin {
                        form.inline method="post" action="/switch-app" {
                            (csrf(session))
                            input name="app" required placeholder="app name or id" aria-label="Switch to app";
                            button type="submit" { "Switch" }
                        }
                    }
                    form method="post" action="/logout" {
                        (csrf(session))
                        button type="submit" { "Sign out" }
                    }
                }
                main { h1 { (title) } (body) }
            }
        }
    }
}

/// The sign-in page; `error` is shown above the form.
pub(crate) fn login(csrf_token: &str, app: &str, error: Option<&str>) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head("Sign in"))
            body {
                main.narrow {
                    h1 { "ferrojob console" }
                    @if let Some(e) = error { p.error role="alert" { (e) } }
                    form method="post" action="/login" {
                        input type="hidden" name="_csrf" value=(csrf_token);
                        label { "App (name or id)" input name="app" required value=(app) autofocus; }
                        label { "Token (the admin token or the app's secret)"
                            input name="token" type="password" required autocomplete="current-password"; }
                        button type="submit" { "Sign in" }
                    }
                }
            }
        }
    }
}

/// A page that only says what went wrong.
pub(crate) fn error_page(title: &str, message: &str) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body { main.narrow { h1 { (title) } p.error role="alert" { (message) } p { a href="/" { "Back to the console" } } } }
        }
    }
}

/// An instant as a `<time>` element (UTC text; local in the browser).
pub(crate) fn time(ms: Option<EpochMs>) -> Markup {
    match ms {
        None => html! { span.muted { "–" } },
        Some(ms) => {
            let utc = ms_to_rfc3339(ms);
            html! { time datetime=(utc) title={ (utc) " UTC" } { (utc) } }
        }
    }
}

/// An instant shown as its hour and minute (`HH:MM`, in the browser's zone once the script
/// ran; UTC before), the whole UTC instant on hover.
pub(crate) fn time_hm(ms: EpochMs) -> Markup {
    let utc = ms_to_rfc3339(ms);
    let hm = utc.get(11..16).unwrap_or(&utc);
    html! { time datetime=(utc) title={ (utc) " UTC" } data-format="hm" { (hm) " UTC" } }
}

/// A status badge; the colour comes from its class, the same on every page.
pub(crate) fn status(s: InstanceStatus) -> Markup {
    let name = wire(&s);
    html! { span class={ "badge st-" (name) } { (name) } }
}

fn select(name: &str, options: &[&str], chosen: &str, blank: Option<&str>) -> Markup {
    html! {
        select name=(name) id=(name) {
            @if let Some(b) = blank { option value="" { (b) } }
            @for o in options { option value=(o) selected[*o == chosen] { (o) } }
        }
    }
}

fn time_types() -> Vec<&'static str> {
    TimeExpressionType::ALL.iter().map(|t| t.as_str()).collect()
}

/// The jobs table with its filters.
pub(crate) fn jobs(
    session: &Session,
    filter: &super::jobs::JobFilter,
    jobs: &[JobView],
    truncated: bool,
) -> Markup {
    let body = html! {
        form.filters method="get" action="/jobs" role="search" {
            label { "Name" input name="q" value=(filter.q) placeholder="search"; }
            label { "Tag" input name="tag" value=(filter.tag) placeholder="exact tag"; }
            label { "Time type" (select("type", &time_types(), &filter.kind, Some("any"))) }
            label { "Execute type" (select("execute", &EXECUTE_TYPES, &filter.execute, Some("any"))) }
            label { "Enabled" (select("enabled", &["yes", "no"], &filter.enabled, Some("any"))) }
            button type="submit" { "Filter" }
            a.button href="/jobs/new" { "New job" }
        }
        @if jobs.is_empty() { p.muted { "No jobs match." } } @else {
            table {
                thead { tr { th { "Id" } th { "Name" } th { "Time" } th { "Execute" } th { "Processor" } th { "Enabled" } th { "Next fire" } th { "Actions" } } }
                tbody {
                    @for j in jobs {
                        tr {
                            td { (j.id.0) }
                            td {
                                a href={ "/jobs/" (j.id.0) } { (j.body.name) }
                                @for t in &j.body.tags { " " span.tag { (t) } }
                            }
                            td {
                                (j.body.time_expression_type.as_str()) " " code { (j.body.time_expression) }
                                @if !j.body.calendars.is_empty() {
                                    " " span.muted title="calendars: scheduled triggers on their excluded dates are skipped" { "except " (j.body.calendars.join(", ")) }
                                }
                            }
                            td { (wire(&j.body.execute_type)) }
                            td { (j.body.processor) }
                            td { @if j.body.enabled { "yes" } @else { span.muted { "no" } } }
                            td { (time(j.next_trigger_time)) }
                            td.actions {
                                form method="post" action={ "/jobs/" (j.id.0) "/run" } { (csrf(session)) button type="submit" { "Run now" } }
                                form method="post" action={ "/jobs/" (j.id.0) (if j.body.enabled { "/disable" } else { "/enable" }) } {
                                    (csrf(session))
                                    button type="submit" { (if j.body.enabled { "Disable" } else { "Enable" }) }
                                }
                                a href={ "/instances?job_id=" (j.id.0) } { "Instances" }
                            }
                        }
                    }
                }
            }
            @if truncated { p.muted { "Only the first " (jobs.len()) " matches are shown; narrow the search." } }
        }
    };
    layout(session, Tab::Jobs, "Jobs", body)
}

/// The create (`id` = None) or edit form of a job, with the live preview of its next fires.
pub(crate) fn job_form(
    session: &Session,
    id: Option<u64>,
    body: &JobBody,
    error: Option<&str>,
) -> Markup {
    let action = match id {
        Some(id) => format!("/jobs/{id}"),
        None => "/jobs".to_owned(),
    };
    let (a, b) = (&body.alarm, &body.retry_backoff);
    let opt = |v: Option<_>| v.map(|v: u64| v.to_string()).unwrap_or_default();
    // A field the preview reads: its error slot under it, described by it and the preview.
    let previewed = |name: &str, label: &str, value: &str, placeholder: &str| {
        html! { label { (label)
        input name=(name) value=(value) placeholder=[(!placeholder.is_empty()).then_some(placeholder)]
            aria-describedby={ "error-" (name) " preview" };
        (field_error(name, None, false)) } }
    };
    let num = |name: &str, label: &str, value: String| {
        html! { label { (label) input name=(name) inputmode="decimal" value=(value); } }
    };
    let form = html! {
        @if let Some(e) = error { p.error role="alert" { (e) } }
        form.job method="post" action=(action) {
            (csrf(session))
            fieldset {
                legend { "Job" }
                label { "Name" input name="name" required maxlength="128" value=(body.name); }
                label { "Processor" input name="processor" required value=(body.processor) placeholder="shell, http, noop, sleep"; }
                label { "Params" textarea name="params" rows="3" { (body.params) } }
                label { "Description" textarea name="description" rows="3" maxlength="4096" { (body.description) } }
                label { "Tags (comma-separated)" input name="tags" value=(body.tags.join(", ")); }
                label { "Enabled" input type="checkbox" name="enabled" checked[body.enabled]; }
            }
            fieldset {
                legend { "When" }
                label { "Time expression type" (select("time_expression_type", &time_types(), body.time_expression_type.as_str(), None))
                    (field_error("time_expression_type", None, false)) }
                (previewed("time_expression", "Time expression", &body.time_expression, "0 */5 * * * ?  or  60000"))
                (previewed("time_zone", "Time zone", body.time_zone.as_deref().unwrap_or(""), "UTC"))
                (previewed("calendars", "Calendars (names, comma-separated; their excluded dates are skipped)", &body.calendars.join(", "), ""))
                label { "Misfire" (select("misfire", &MISFIRE_POLICIES, body.misfire.as_str(), None)) }
                (previewed("lifecycle_start", "Lifecycle start (RFC 3339)", body.lifecycle.start.as_deref().unwrap_or(""), ""))
                (previewed("lifecycle_end", "Lifecycle end (RFC 3339)", body.lifecycle.end.as_deref().unwrap_or(""), ""))
                // Its own element asks for the preview (the form's values go along): a request
                // from the form itself would first run the browser's validation of every field.
                div #preview.preview aria-live="polite" hx-post="/jobs/preview"
                    hx-trigger="load, input delay:300ms from:closest fieldset" {}
            }
            fieldset {
                legend { "How" }
                label { "Execute type" (select("execute_type", &EXECUTE_TYPES, &wire(&body.execute_type), None)) }
                label { "Dispatch strategy" (select("dispatch_strategy", &DISPATCH_STRATEGIES, &wire(&body.dispatch_strategy), None)) }
                label { "Designated workers (tags or addresses, comma-separated)" input name="designated_workers" value=(body.designated_workers.join(", ")); }
                (num("max_instances", "Max instances (0 = unlimited)", body.max_instances.to_string()))
                (num("concurrency", "Concurrency per worker", body.concurrency.to_string()))
                (num("timeout_ms", "Timeout, ms (0 = none)", body.timeout_ms.to_string()))
                label { "Overlap policy (at max instances)" (select("overlap_policy", &OVERLAP_POLICIES, body.overlap_policy.as_str(), None)) }
                (num("task_retries", "Task retries", body.task_retries.to_string()))
                (num("max_worker_count", "Max workers (0 = unlimited)", body.max_worker_count.to_string()))
                (num("min_cpu_cores", "Min free CPU cores", body.min_cpu_cores.to_string()))
                (num("min_memory_gb", "Min free memory, GB", body.min_memory_gb.to_string()))
                (num("min_disk_gb", "Min free disk, GB", body.min_disk_gb.to_string()))
                label { "Log type" (select("log_type", &LOG_TYPES, &wire(&body.log_type), None)) }
                label { "Log level" (select("log_level", &LOG_LEVELS, &wire(&body.log_level), None)) }
            }
            fieldset {
                legend { "Retries" }
                (num("instance_retries", "Instance retries", body.instance_retries.to_string()))
                label { "Backoff" (select("backoff_shape", &BACKOFF_SHAPES, &wire(&b.shape), None)) }
                (num("backoff_initial_delay_ms", "First retry after, ms", b.initial_delay_ms.to_string()))
                (num("backoff_factor", "Growth factor (exponential)", b.factor.to_string()))
                (num("backoff_max_delay_ms", "Longest delay, ms", b.max_delay_ms.to_string()))
                (num("backoff_jitter", "Jitter, 0 to 1", b.jitter.to_string()))
            }
            fieldset {
                legend { "Alarms (blank: none)" }
                (num("alarm_failures_threshold", "After this many failures", opt(a.failures.map(|f| u64::from(f.threshold)))))
                (num("alarm_failures_window_ms", "… within, ms (0 = ever)", opt(a.failures.map(|f| f.window_ms))))
                (num("alarm_failures_silence_ms", "… then silent for, ms", opt(a.failures.map(|f| f.silence_ms))))
                (num("alarm_late_start_ms", "Late start after, ms", opt(a.late_start_ms)))
                (num("alarm_overrun_ms", "Overrun after, ms", opt(a.overrun_ms)))
                (num("alarm_dead_man_ms", "No success for, ms", opt(a.dead_man_ms)))
                label { "Notice on recovery" input type="checkbox" name="alarm_recovered" checked[a.recovered]; }
                label { "Channels (comma-separated)" input name="alarm_channels" value=(a.channels.join(", ")); }
            }
            button type="submit" { @if id.is_some() { "Save" } @else { "Create" } }
        }
    };
    let extra = match id {
        None => html! {},
        Some(id) => html! {
            section {
                h2 { "Run now" }
                form.inline method="post" action={ "/jobs/" (id) "/run" } {
                    (csrf(session))
                    label { "Params" input name="params"; }
                    label { "Delay, ms" input name="delay_ms" inputmode="numeric" value="0"; }
                    button type="submit" { "Run now" }
                }
                p { a href={ "/instances?job_id=" (id) } { "This job's instances" } " · "
                    a.danger href={ "/jobs/" (id) "/delete" } { "Delete…" } }
            }
        },
    };
    let title = match id {
        Some(id) => format!("Job {id}"),
        None => "New job".to_owned(),
    };
    layout(session, Tab::Jobs, &title, html! { (form) (extra) })
}

/// What the job form's preview shows: the next fire times (RFC 3339 in the job's zone), the
/// triggers its calendars skip on the way, and the lifecycle's end when it cuts the list short.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Fires {
    /// The expression fires by itself (false: API and WORKFLOW jobs fire only when run).
    pub(crate) scheduled: bool,
    pub(crate) next: Vec<String>,
    pub(crate) skipped: Vec<String>,
    pub(crate) lifecycle_end: Option<EpochMs>,
}

/// The job form's fields the preview reads; each has a slot under it for the preview's error
/// (`#error-{name}`), which every preview answer fills or empties out of band.
pub(crate) const PREVIEW_FIELDS: [&str; 6] = [
    "time_expression_type",
    "time_expression",
    "time_zone",
    "calendars",
    "lifecycle_start",
    "lifecycle_end",
];

/// The error slot under a previewed field, holding `message`.
fn field_error(name: &str, message: Option<&str>, oob: bool) -> Markup {
    html! {
        small.field-error id={ "error-" (name) } data-for=(name) role=[message.map(|_| "alert")]
            hx-swap-oob=[oob.then_some("true")] { (message.unwrap_or("")) }
    }
}

/// The preview fragment: the next fire times, or what is wrong and with which field (its
/// message also goes under that field, and the other fields' slots are emptied).
pub(crate) fn preview(result: Result<Fires, super::jobs::FieldError>) -> Markup {
    let bad = result.as_ref().err();
    let body = match &result {
        Err((field, e)) => html! { p.error { (field_label(field)) ": " (e) } },
        Ok(f) if !f.scheduled => {
            html! { p.muted { "Fires only when run (API or workflow)." } }
        }
        Ok(f) => html! {
            @if f.next.is_empty() { p { "No fire time ahead." } } @else { p { "Next " (f.next.len()) " fire times:" } }
            ol.preview-times { @for t in &f.next { li { code { (t) } } } }
            @if let Some(end) = f.lifecycle_end { p.muted { "No fire after the lifecycle's end, " (time(Some(end))) "." } }
            @if !f.skipped.is_empty() {
                p.muted { "Skipped by the calendars on the way: " @for (n, t) in f.skipped.iter().take(5).enumerate() {
                    @if n > 0 { ", " } code { (t) } }
                    @if f.skipped.len() > 5 { " and " (f.skipped.len() - 5) " more" } "." }
            }
        },
    };
    html! {
        (body)
        @for name in PREVIEW_FIELDS {
            (field_error(name, bad.filter(|(f, _)| *f == name).map(|(_, e)| e.as_str()), true))
        }
    }
}

/// A previewed field's name as its label says it.
fn field_label(name: &str) -> &'static str {
    match name {
        "time_expression_type" => "Time expression type",
        "time_zone" => "Time zone",
        "calendars" => "Calendars",
        "lifecycle_start" => "Lifecycle start",
        "lifecycle_end" => "Lifecycle end",
        _ => "Time expression",
    }
}

/// Asks before deleting a job.
pub(crate) fn confirm_delete(session: &Session, job: &JobView) -> Markup {
    let body = html! {
        p { "Delete job " strong { (job.body.name) } " (id " (job.id.0) ")? Its instances stay listed." }
        form.inline method="post" action={ "/jobs/" (job.id.0) "/delete" } {
            (csrf(session))
            button.danger type="submit" { "Delete" }
            a href={ "/jobs/" (job.id.0) } { "Cancel" }
        }
    };
    layout(session, Tab::Jobs, "Delete job", body)
}

/// The instances table, one page, newest first.
pub(crate) fn instances(
    session: &Session,
    filter: &super::instance_filter::InstanceFilter,
    items: &[InstanceView],
    next: Option<String>,
) -> Markup {
    let statuses: Vec<String> = InstanceStatus::ALL.iter().map(wire).collect();
    let statuses: Vec<&str> = statuses.iter().map(String::as_str).collect();
    let body = html! {
        form.filters method="get" action="/instances" {
            label { "Job id" input name="job_id" inputmode="numeric" value=(filter.job_id); }
            label { "Status" (select("status", &statuses, &filter.status, Some("any"))) }
            label { "Time" (select("time", &["trigger", "finished"], filter.time.as_str(), None)) }
            label { "From (UTC)" input name="from" placeholder="2026-12-01T00:00" value=(filter.from); }
            label { "To (UTC, excluded)" input name="to" placeholder="epoch ms or RFC 3339" value=(filter.to); }
            button type="submit" { "Filter" }
        }
        @if items.is_empty() { p.muted { "No instances." } } @else {
            table {
                thead { tr { th { "Id" } th { "Job" } th { "Status" } th { "Trigger" } th { "Finished" } th { "Worker" } th { "Attempts" } } }
                tbody {
                    @for i in items {
                        tr {
                            td { a href={ "/instances/" (i.id.0) } { (i.id.0) } }
                            td { a href={ "/jobs/" (i.job_id.0) } { (i.job_id.0) } }
                            td { (status(i.status)) }
                            td { (time(Some(i.trigger_time))) }
                            td { (time(i.finished_time)) }
                            td { (i.worker.as_deref().unwrap_or("–")) }
                            td { (i.running_times) }
                        }
                    }
                }
            }
        }
        @if let Some(href) = next { p { a href=(href) { "Older →" } } }
    };
    layout(session, Tab::Instances, "Instances", body)
}

/// How long after an instance finished its page keeps polling while it shows no log line:
/// log lines travel beside the final report and may land just after it.
pub(crate) const LOG_SETTLE_MS: i64 = 3000;

/// The live part of an instance's page: polled every 2 s by htmx until the status is final
/// (and, with no log line yet, [`LOG_SETTLE_MS`] past the finish at `now`).
pub(crate) fn instance_live(
    session: &Session,
    i: &InstanceView,
    log: &[LogLineView],
    log_note: Option<String>,
    now: EpochMs,
) -> Markup {
    let lateness = i.actual_trigger_time.map(|t| t - i.trigger_time);
    let settling = log.is_empty() && i.finished_time.is_some_and(|f| now - f < LOG_SETTLE_MS);
    let live = !i.status.is_final() || settling;
    html! {
        div #live hx-get=[live.then(|| format!("/instances/{}/live", i.id.0))]
            hx-trigger=[live.then_some("every 2s")] hx-swap="outerHTML" {
            dl.facts {
                dt { "Status" } dd { (status(i.status)) }
                dt { "Job" } dd { a href={ "/jobs/" (i.job_id.0) } { (i.job_id.0) } }
                dt { "Triggered for" } dd { (time(Some(i.trigger_time))) }
                dt { "Dispatched" } dd { (time(i.actual_trigger_time)) }
                dt { "Started" } dd { (time(i.started_time)) }
                dt { "Finished" } dd { (time(i.finished_time)) }
                dt { "Lateness" } dd { @match lateness { Some(ms) => { (ms) " ms" }, None => "–" } }
                dt { "Worker" } dd { (i.worker.as_deref().unwrap_or("–")) }
                dt { "Attempts" } dd { (i.running_times) }
                @if let Some(at) = i.next_retry_at { dt { "Next attempt" } dd { (time(Some(at))) } }
                @if let Some(t) = &i.tasks {
                    dt { "Tasks" } dd { (t.succeeded) " succeeded, " (t.failed) " failed, " (t.total) " in all" }
                }
                dt { "Params" } dd { code { (i.params) } }
                dt { "Result" } dd { pre.result { (i.result.as_deref().unwrap_or("")) } }
            }
            div.actions {
                @for (action, label, shown) in [
                    ("stop", "Stop", matches!(i.status, InstanceStatus::WaitingWorkerReceive | InstanceStatus::Running)),
                    ("cancel", "Cancel", i.status == InstanceStatus::WaitingDispatch),
                    ("retry", "Retry", i.status.is_final()),
                ] {
                    @if shown {
                        form method="post" action={ "/instances/" (i.id.0) "/" (action) } { (csrf(session)) button type="submit" { (label) } }
                    }
                }
            }
            h2 { "Log" }
            @if let Some(n) = log_note { p.muted { (n) } }
            @if log.is_empty() { p.muted { "No log lines yet." } }
            pre.log hidden[log.is_empty()] {
                @for l in log {
                    span class={ "lv-" (wire(&l.level)) } {
                        (time(Some(l.time_ms))) " " (wire(&l.level)) " [attempt " (l.attempt) "] " (l.content)
                        @for (n, f) in l.fields.iter().enumerate() {
                            (if n == 0 { " {" } else { ", " }) (f.key) "=" (f.value)
                        }
                        @if !l.fields.is_empty() { "}" }
                        "\n"
                    }
                }
            }
        }
    }
}

/// One instance's page.
pub(crate) fn instance(session: &Session, live: Markup, id: u64) -> Markup {
    layout(session, Tab::Instances, &format!("Instance {id}"), live)
}

/// The workers tables, refreshed every 5 s: the live ones, then the lost ones.
/// `running`: RUNNING instances per worker address, counted over at most `capped` of them
/// when there were more.
pub(crate) fn workers_live(
    workers: &[WorkerInfo],
    running: &std::collections::HashMap<String, u32>,
    capped: Option<u32>,
    lost: &[super::sightings::Lost],
) -> Markup {
    let gb = |used: f64, total: f64| format!("{used:.1} / {total:.1} GB");
    html! {
        div #live hx-get="/workers/live" hx-trigger="every 5s" hx-swap="outerHTML" {
            p.muted { "Workers that sent a heartbeat recently; the server drops a worker after three missed heartbeats." }
            @if workers.is_empty() { p.muted { "No worker is connected." } } @else {
                table.workers {
                    thead { tr { th { "Address" } th { "State" } th { "Running" } th { "Health" } th { "CPU" } th { "Memory" } th { "Disk" } th { "Tags" } th { "Version" } th { "Last heartbeat" } } }
                    tbody {
                        @for w in workers {
                            tr {
                                td { (w.address) }
                                td { @if w.overloaded { span.badge.st-WAITING_DISPATCH { "overloaded" } } @else { span.badge.st-SUCCEED { "online" } } }
                                td.running { (running.get(&w.address).copied().unwrap_or(0)) }
                                td { (format!("{:.1}", w.health_score)) }
                                td { (format!("{:.0} cores", w.cpu_cores)) @if let Some(l) = w.cpu_load { ", load " (format!("{l:.2}")) } }
                                td { (gb(w.memory_used_gb, w.memory_total_gb)) }
                                td { (gb(w.disk_used_gb, w.disk_total_gb)) }
                                td { (w.tags.join(", ")) }
                                td { (w.version) }
                                td { (time(Some(w.last_heartbeat))) }
                            }
                        }
                    }
                }
            }
            @if let Some(n) = capped {
                p.muted { "Running counts are over the newest " (n) " running instances of the app." }
            }
            h2 { "Lost" }
            p.muted {
                "Workers this console listed online that stopped sending heartbeats, kept for 24 hours "
                "(in memory: a restart forgets them). “Noticed” is the first listing without the worker, "
                "so it can be later than its death; the last heartbeat is exact."
            }
            @if lost.is_empty() { p.muted { "No worker was lost." } } @else {
                table.lost {
                    thead { tr { th { "Address" } th { "State" } th { "Tags" } th { "Version" } th { "Last heartbeat" } th { "Noticed" } } }
                    tbody {
                        @for l in lost {
                            tr {
                                td { (l.info.address) }
                                td { span.badge.st-FAILED { "lost" } }
                                td { (l.info.tags.join(", ")) }
                                td { (l.info.version) }
                                td { (time(Some(l.info.last_heartbeat))) }
                                td { (time(Some(l.noticed))) }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The workers page.
pub(crate) fn workers(session: &Session, live: Markup) -> Markup {
    layout(session, Tab::Workers, "Workers", live)
}

/// The overview's numbers (see `routes::overview` for how they are computed).
#[derive(Debug, Default)]
pub(crate) struct Overview {
    /// From when the server's counts hold, when that is less than a day ago (they live in its
    /// memory and start empty at its start).
    pub(crate) counted_since: Option<EpochMs>,
    /// Instances finished per second over the last 5 minutes.
    pub(crate) per_second: f64,
    /// Succeeded and failed in the last hour.
    pub(crate) hour: (u64, u64),
    /// Succeeded and failed in the last day.
    pub(crate) day: (u64, u64),
    pub(crate) lateness_p50: Option<i64>,
    pub(crate) lateness_p99: Option<i64>,
    pub(crate) workers: usize,
    pub(crate) next: Vec<(u64, String, EpochMs)>,
}

/// The overview's body, refreshed every 5 s.
pub(crate) fn overview_live(o: &Overview) -> Markup {
    let ms = |v: Option<i64>| match v {
        Some(v) => format!("{v} ms"),
        None => "–".to_owned(),
    };
    html! {
        div #live hx-get="/overview/live" hx-trigger="every 5s" hx-swap="outerHTML" {
            div.cards {
                div.card { span.k { "Instances finished / s (last 5 min)" } span.v { (format!("{:.2}", o.per_second)) } }
                div.card { span.k { "Last hour" } span.v { span.ok { (o.hour.0) " ok" } " · " span.bad { (o.hour.1) " failed" } } }
                div.card { span.k { "Last day" } span.v { span.ok { (o.day.0) " ok" } " · " span.bad { (o.day.1) " failed" } } }
                div.card { span.k { "Fire lateness p50 / p99 (last hour)" } span.v { (ms(o.lateness_p50)) " / " (ms(o.lateness_p99)) } }
                div.card { span.k { "Workers online" } span.v { a href="/workers" { (o.workers) } } }
            }
            @match o.counted_since {
                Some(since) => p.muted #counted-since { "Counted by the server since " (time_hm(since))
                    " (it counts in memory from its start): earlier instances of the last hour or day are not counted." },
                None => p.muted #counted-since { "Counted by the server over the whole day." },
            }
            h2 { "Next triggers" }
            @if o.next.is_empty() { p.muted { "No job is scheduled." } } @else {
                table {
                    thead { tr { th { "When" } th { "Job" } } }
                    tbody { @for (id, name, at) in &o.next { tr { td { (time(Some(*at))) } td { a href={ "/jobs/" (id) } { (name) } } } } }
                }
            }
        }
    }
}

/// The overview page.
pub(crate) fn overview(session: &Session, o: &Overview) -> Markup {
    layout(session, Tab::Overview, "Overview", overview_live(o))
}

/// The embedded stylesheet, script and htmx.
pub(crate) const CONSOLE_CSS: &str = include_str!("assets/console.css");
pub(crate) const CONSOLE_JS: &str = include_str!("assets/console.js");
pub(crate) const HTMX_JS: &str = include_str!("assets/htmx.min.js");
