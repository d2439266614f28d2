//! The jobs, instances, overview and workers pages over the fake [`Api`]: each renders for
//! an empty and for a busy app, user-provided text renders as text, the job form carries
//! every field of the API, and the jobs page hands its filters to the API.

use std::sync::Arc;

use axum::http::StatusCode;

use super::{Client, Fake};
use crate::alarm::{AlarmRules, FailureRule};
use crate::api::*;
use crate::clock::{Clock, SystemClock};
use crate::ids::{AppId, InstanceId, JobId};
use crate::model::{DispatchStrategy, ExecuteType, InstanceStatus, LogLevel, LogType};
use crate::policy::{BackoffShape, OverlapPolicy, RetryBackoff};
use crate::time_expression::{MisfirePolicy, TimeExpressionType};

const SCRIPT: &str = "<script>alert(1)</script>";

/// A job body with every field away from its default.
fn every_field() -> JobBody {
    JobBody {
        name: "nightly <b>".into(),
        time_expression_type: TimeExpressionType::Cron,
        time_expression: "0 0 2 * * ?".into(),
        time_zone: Some("Europe/Paris".into()),
        execute_type: ExecuteType::MapReduce,
        processor: "shell".into(),
        params: "a & b\n\"quoted\"".into(),
        max_instances: 2,
        concurrency: 7,
        timeout_ms: 60_000,
        instance_retries: 3,
        retry_backoff: RetryBackoff {
            shape: BackoffShape::Fixed,
            initial_delay_ms: 2_500,
            factor: 1.5,
            max_delay_ms: 9_000,
            jitter: 0.25,
        },
        overlap_policy: OverlapPolicy::Queue,
        task_retries: 4,
        dispatch_strategy: DispatchStrategy::Specify,
        designated_workers: vec!["blue".into(), "10.0.0.7:27777".into()],
        min_cpu_cores: 0.5,
        min_memory_gb: 1.25,
        min_disk_gb: 3.0,
        max_worker_count: 5,
        misfire: MisfirePolicy::Skip,
        lifecycle: LifecycleJson {
            start: Some("2026-01-01T00:00:00Z".into()),
            end: Some("2027-01-01T00:00:00Z".into()),
        },
        enabled: false,
        alarm: AlarmRules {
            failures: Some(FailureRule {
                threshold: 3,
                window_ms: 600_000,
                silence_ms: 60_000,
            }),
            late_start_ms: Some(30_000),
            overrun_ms: Some(3_600_000),
            dead_man_ms: Some(86_400_000),
            recovered: true,
            channels: vec!["ops".into(), "team <a>".into()],
        },
        description: "Loads the <day>'s \"orders\" & refunds.".into(),
        tags: vec!["etl".into(), "team:data".into()],
        log_type: LogType::Stdout,
        log_level: LogLevel::Warn,
        calendars: vec!["holidays".into(), "freeze".into()],
    }
}

fn job(id: u64, body: JobBody) -> JobView {
    JobView {
        id: JobId(id),
        app_id: AppId(1),
        body,
        next_trigger_time: Some(1_800_000_000_000 + id as i64),
        runs: 0,
        skipped_runs: 0,
        calendar_skipped_runs: 0,
        created_at: 0,
        updated_at: 0,
    }
}

fn instance(id: u64, status: InstanceStatus, trigger_time: i64) -> InstanceView {
    let finished = status.is_final().then_some(trigger_time + 2_000);
    InstanceView {
        id: InstanceId(id),
        job_id: JobId(1),
        status,
        result: Some(format!("result of {id} {SCRIPT}")),
        params: SCRIPT.into(),
        trigger_time,
        actual_trigger_time: Some(trigger_time + 40),
        started_time: Some(trigger_time + 55),
        finished_time: finished,
        worker: Some("10.0.0.7:27777".into()),
        running_times: 1,
        run: id,
        workflow_instance_id: None,
        tasks: None,
        next_retry_at: None,
    }
}

fn worker(n: u32) -> WorkerInfo {
    WorkerInfo {
        address: format!("10.0.0.{n}:27777"),
        tags: vec![format!("<rack-{n}>")],
        version: "1.0".into(),
        health_score: 0.9,
        cpu_cores: 8.0,
        cpu_load: Some(1.5),
        memory_used_gb: 3.0,
        memory_total_gb: 16.0,
        disk_used_gb: 40.0,
        disk_total_gb: 100.0,
        overloaded: n == 1,
        last_heartbeat: 1_765_000_000_000,
    }
}

/// `html`'s entities back to text (maud writes these four).
fn unescape(html: &str) -> String {
    html.replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// `name="value"` attributes of one tag's text (maud quotes every value and escapes `>`).
fn attr(tag: &str, name: &str) -> Option<String> {
    let marker = format!(" {name}=\"");
    let start = tag.find(&marker)? + marker.len();
    let len = tag[start..].find('"')?;
    Some(unescape(&tag[start..start + len]))
}

fn has_flag(tag: &str, name: &str) -> bool {
    tag.split([' ', '>'])
        .any(|word| word == name || word.starts_with(&format!("{name}=")))
}

/// The fields a browser would submit from the first `<form class="job"` of `page`: inputs
/// (ticked checkboxes as `on`), text areas and each select's chosen option.
fn job_form_fields(page: &str) -> Vec<(String, String)> {
    let start = page.find("<form class=\"job\"").expect("a job form");
    let form = &page[start..start + page[start..].find("</form>").unwrap()];
    let mut out = Vec::new();
    let mut rest = form;
    while let Some(open) = rest.find('<') {
        rest = &rest[open..];
        let tag = &rest[..=rest.find('>').unwrap()];
        let name = attr(tag, "name");
        if tag.starts_with("<input") {
            let name = name.unwrap();
            if attr(tag, "type").as_deref() == Some("checkbox") {
                if has_flag(tag, "checked") {
                    out.push((name, "on".to_owned()));
                }
            } else {
                out.push((name, attr(tag, "value").unwrap_or_default()));
            }
        } else if tag.starts_with("<textarea") {
            let body = &rest[tag.len()..];
            let text = &body[..body.find("</textarea>").unwrap()];
            out.push((name.unwrap(), unescape(text)));
        } else if tag.starts_with("<select") {
            let body = &rest[..rest.find("</select>").unwrap()];
            let chosen = body
                .split("<option")
                .skip(1)
                .find(|o| has_flag(&o[..o.find('>').unwrap()], "selected"))
                .and_then(|o| attr(o, "value"))
                .unwrap_or_default();
            out.push((name.unwrap(), chosen));
        }
        rest = &rest[tag.len()..];
    }
    out
}

#[tokio::test]
async fn the_job_form_carries_every_field_of_the_api() {
    let fake = Arc::new(Fake::default());
    fake.0.lock().jobs = vec![job(7, every_field())];
    let c = Client::sign_in(fake.clone()).await;
    let (status, page) = c.get("/jobs/7").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let fields = job_form_fields(&page);
    assert!(fields.iter().all(|(k, _)| k != "_csrf" || !k.is_empty()));
    let fields: Vec<_> = fields.into_iter().filter(|(k, _)| k != "_csrf").collect();
    // Saved untouched, the form gives back the job it was opened on.
    let (status, location, page) = c.post("/jobs/7", &fields).await;
    assert_eq!(
        (status, location.as_str()),
        (StatusCode::SEE_OTHER, "/jobs/7"),
        "{page}"
    );
    let sent = fake.0.lock().updates.pop().unwrap();
    assert_eq!(sent, every_field());

    // The new-job form has the same fields, with the API's defaults.
    let (_, page) = c.get("/jobs/new").await;
    let new_fields = job_form_fields(&page);
    let names = |f: &[(String, String)]| {
        let mut n: Vec<String> = f.iter().map(|(k, _)| k.clone()).collect();
        n.retain(|k| !["_csrf", "enabled", "alarm_recovered"].contains(&k.as_str()));
        n.sort();
        n
    };
    assert_eq!(names(&new_fields), names(&fields));
    let mut with_name = new_fields.clone();
    for (k, v) in &mut with_name {
        match k.as_str() {
            "name" => *v = "fresh".into(),
            "processor" => *v = "noop".into(),
            _ => {}
        }
    }
    let parsed = super::super::form::job_body(
        &super::super::form::Fields::parse(
            form_urlencoded::Serializer::new(String::new())
                .extend_pairs(&with_name)
                .finish()
                .as_bytes(),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(
        parsed,
        JobBody::new("fresh", TimeExpressionType::Cron, "0 * * * * ?", "noop")
    );
}

#[tokio::test]
async fn a_refused_job_form_comes_back_with_what_was_typed() {
    let fake = Arc::new(Fake::default());
    let c = Client::sign_in(fake.clone()).await;
    let typed: Vec<(String, String)> = [
        ("name", "keep-me"),
        ("time_expression_type", "FIXED_RATE"),
        ("time_expression", "60000"),
        ("processor", "noop"),
        ("tags", "etl, nightly"),
        ("description", "typed <here>"),
        ("concurrency", "many"),
        ("backoff_jitter", "lots"),
        ("overlap_policy", "QUEUE"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let (status, _, page) = c.post("/jobs", &typed).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{page}");
    assert!(page.contains("concurrency: &quot;many&quot;"), "{page}");
    let back = job_form_fields(&page);
    let value = |name: &str| {
        back.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or("")
    };
    assert_eq!(value("name"), "keep-me");
    assert_eq!(value("time_expression_type"), "FIXED_RATE");
    assert_eq!(value("tags"), "etl, nightly");
    assert_eq!(value("description"), "typed <here>");
    assert_eq!(value("overlap_policy"), "QUEUE");
    // The fields that did not parse are back at their defaults.
    assert_eq!((value("concurrency"), value("backoff_jitter")), ("5", "0"));
}

#[tokio::test]
async fn the_jobs_page_hands_its_filters_to_the_api() {
    let fake = Arc::new(Fake::default());
    let mut tagged = every_field();
    tagged.name = SCRIPT.into();
    fake.0.lock().jobs = vec![job(1, tagged)];
    let c = Client::sign_in(fake.clone()).await;
    let (status, page) = c
        .get("/jobs?q=night&tag=team%3Adata&type=CRON&execute=MAP_REDUCE&enabled=no")
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let sent = fake.0.lock().job_queries.pop().unwrap();
    assert_eq!(
        sent,
        JobQuery {
            limit: Some(1000),
            cursor: None,
            name: Some("night".into()),
            tag: Some("team:data".into()),
            time_expression_type: Some(TimeExpressionType::Cron),
            execute_type: Some(ExecuteType::MapReduce),
            enabled: Some(false),
        }
    );
    // The form shows the filters back; the row shows the job's tags, as text.
    assert!(page.contains(r#"name="tag" value="team:data""#), "{page}");
    assert!(
        page.contains(r#"<span class="tag">team:data</span>"#),
        "{page}"
    );
    assert!(
        !page.contains(SCRIPT) && page.contains("&lt;script&gt;"),
        "{page}"
    );
    for bad in [
        "/jobs?type=HOURLY",
        "/jobs?execute=ALL",
        "/jobs?enabled=maybe",
    ] {
        let (status, page) = c.get(bad).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {page}");
    }
}

/// Every page of the console (its GET routes but the sign-in page and the assets), with the
/// ids the busy app has.
const PAGES: [&str; 19] = [
    "/",
    "/overview/live",
    "/jobs",
    "/jobs/new",
    "/jobs/1",
    "/jobs/1/delete",
    "/instances",
    "/instances/1",
    "/instances/1/live",
    "/workers",
    "/workers/live",
    "/workflows",
    "/workflows/new",
    "/workflows/1",
    "/workflows/1/edit",
    "/workflows/1/delete",
    "/workflow-instances",
    "/workflow-instances/1",
    "/workflow-instances/1/live",
];

/// The GET routes of the console's router, read from its source, path parameters as `1`.
fn get_routes() -> Vec<String> {
    let source = include_str!("../mod.rs");
    source
        .split(".route(")
        .skip(1)
        .filter(|chunk| chunk.contains("get("))
        .filter_map(|chunk| chunk.split('"').nth(1))
        .map(|path| {
            path.split('/')
                .map(|seg| if seg.starts_with('{') { "1" } else { seg })
                .collect::<Vec<_>>()
                .join("/")
        })
        .collect()
}

#[test]
fn the_page_list_covers_every_get_route() {
    let routes = get_routes();
    assert!(routes.len() > 15, "{routes:?}");
    for route in routes {
        if route == "/login" || route.starts_with("/assets/") {
            continue;
        }
        assert!(PAGES.contains(&route.as_str()), "{route} is not in PAGES");
    }
}

#[tokio::test]
async fn every_page_renders_for_an_empty_and_a_busy_app() {
    let fake = Arc::new(Fake::default());
    let c = Client::sign_in(fake.clone()).await;
    for path in PAGES {
        let (status, page) = c.get(path).await;
        let want = if path.split('/').any(|seg| seg == "1") {
            StatusCode::NOT_FOUND
        } else {
            StatusCode::OK
        };
        assert_eq!(status, want, "{path}: {page}");
        assert!(!page.contains(SCRIPT), "{path}: {page}");
    }
    let (_, page) = c.get("/").await;
    assert!(page.contains("No job is scheduled."), "{page}");
    let (_, page) = c.get("/instances").await;
    assert!(page.contains("No instances."), "{page}");

    // Busy: 1200 jobs, 1000 instances of the last day, 40 workers.
    let now = SystemClock.now_ms();
    {
        let mut st = fake.0.lock();
        st.jobs = (1..=1200)
            .map(|i| {
                let mut body =
                    JobBody::new(format!("job-{i}"), TimeExpressionType::Api, "", "noop");
                if i == 1 {
                    body.name = SCRIPT.into();
                    body.tags = vec!["<t>".into()];
                }
                job(i, body)
            })
            .collect();
        st.instances = (1..=1000u64)
            .map(|i| {
                let (status, ago) = match i % 4 {
                    0 => (InstanceStatus::Succeed, 10 * 60_000),
                    1 => (InstanceStatus::Running, 5_000),
                    2 => (InstanceStatus::Failed, 5 * 3_600_000),
                    _ => (InstanceStatus::WaitingDispatch, 20_000),
                };
                instance(i, status, now - ago)
            })
            .collect();
        if let Some(first) = st.instances.first_mut() {
            first.tasks = Some(TaskProgress {
                total: 10,
                succeeded: 6,
                failed: 1,
            });
            first.running_times = 2;
        }
        st.log = vec![LogLineView {
            seq: 1,
            time_ms: now - 1_000,
            level: LogLevel::Warn,
            content: format!("line {SCRIPT}"),
            attempt: 2,
            fields: vec![],
        }];
        st.workers = (1..=40).map(worker).collect();
        let window = |from, finished, succeeded, failed| StatsWindow {
            from,
            finished,
            succeeded,
            failed,
            fires: finished,
            lateness_p50_ms: Some(40),
            lateness_p99_ms: Some(40),
        };
        st.stats = Some(AppStats {
            as_of: now,
            since: now - 2 * 86_400_000,
            last_5_minutes: window(now - 300_000, 2_500, 2_500, 0),
            last_hour: window(now - 3_600_000, 250, 250, 0),
            last_day: window(now - 86_400_000, 500, 250, 250),
        });
        let def = serde_json::json!({
            "nodes": [
                { "id": 1, "job_id": 1, "params": SCRIPT },
                { "id": 2, "type": "DECISION", "expression": "x == \"<script>\"" },
                { "id": 3, "job_id": 2 },
                { "id": 4, "job_id": 3 },
            ],
            "edges": [
                { "from": 1, "to": 2 },
                { "from": 2, "to": 3, "property": "true" },
                { "from": 2, "to": 4, "property": "false" },
            ],
        });
        st.workflows = (1..=30)
            .map(|i| super::workflow(i, &format!("{SCRIPT} {i}"), def.clone()))
            .collect();
        st.runs = (1..=30)
            .map(|i| {
                use crate::api::{NodeStatus, WorkflowInstanceStatus};
                super::run(
                    i,
                    1,
                    WorkflowInstanceStatus::Running,
                    &[
                        (1, NodeStatus::Succeed, Some(1), Some(SCRIPT)),
                        (2, NodeStatus::Succeed, None, Some("true")),
                        (3, NodeStatus::Running, Some(2), None),
                        (4, NodeStatus::Skipped, None, None),
                    ],
                )
            })
            .collect();
    }
    for path in PAGES {
        let (status, page) = c.get(path).await;
        assert_eq!(status, StatusCode::OK, "{path}: {page}");
        assert!(
            !page.contains(SCRIPT),
            "{path} must show user text as text: {page}"
        );
    }
    let (_, page) = c.get("/instances/1/live").await;
    for fact in ["Dispatched", "Started", "Finished"] {
        assert!(page.contains(&format!("<dt>{fact}</dt>")), "{fact}: {page}");
    }
    let started = crate::api::ms_to_rfc3339(now - 5_000 + 55);
    assert!(
        page.contains(&format!(r#"<time datetime="{started}""#)),
        "{page}"
    );
    let (_, page) = c.get("/").await;
    // The server's counts: 250 succeeded in the last hour, 250 more and 250 failed in the
    // day, 2500 finished in the last 5 minutes (2500 / 300 s).
    let counts = |ok: u32, failed: u32| {
        format!("{ok} ok</span> · <span class=\"bad\">{failed} failed</span>")
    };
    assert!(page.contains(&counts(250, 0)), "last hour: {page}");
    assert!(page.contains(&counts(250, 250)), "last day: {page}");
    assert!(
        page.contains("<span class=\"v\">8.33</span>"),
        "per second: {page}"
    );
    assert!(page.contains("40 ms / 40 ms"), "lateness p50 / p99: {page}");
    assert!(page.contains("<a href=\"/workers\">40</a>"), "{page}");
    assert!(
        page.contains("&lt;script&gt;"),
        "next triggers name the job: {page}"
    );
    assert!(page.contains("hx-trigger=\"every 5s\""), "{page}");
    let (_, page) = c.get("/jobs").await;
    assert!(
        page.contains("Only the first 500 matches are shown"),
        "{page}"
    );
    assert!(
        page.contains("<span class=\"tag\">&lt;t&gt;</span>"),
        "{page}"
    );
    let (_, page) = c.get("/instances").await;
    assert_eq!(page.matches("<tr>").count(), 1 + 50, "{page}");
    assert!(page.contains("Older"), "{page}");
    let (_, page) = c.get("/instances/1").await;
    for needle in [
        "6 succeeded, 1 failed, 10 in all",
        "<dt>Attempts</dt><dd>2</dd>",
        "<dt>Lateness</dt><dd>40 ms</dd>",
        "line &lt;script&gt;",
        // A log line's time is shown in the browser's zone like every other.
        "</time> WARN [attempt 2] line",
        "hx-trigger=\"every 2s\"",
    ] {
        assert!(page.contains(needle), "{needle}: {page}");
    }
    let (_, page) = c.get("/workers").await;
    assert_eq!(page.matches("<td class=\"running\">").count(), 40, "{page}");
    assert!(
        page.contains("&lt;rack-7&gt;") && page.contains(">overloaded<"),
        "{page}"
    );
}

fn form(pairs: &[(&str, &str)]) -> super::super::form::Fields {
    let text = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish();
    super::super::form::Fields::parse(text.as_bytes()).unwrap()
}

#[test]
fn the_preview_gives_the_times_of_v1_validate_within_the_lifecycle_and_calendars() {
    use super::super::jobs::fires;
    use crate::calendar::Calendar;
    // 2026-07-13T13:00:00Z
    let now = 1_783_947_600_000;
    for (kind, expr, zone) in [
        ("CRON", "0 0 12 * * ?", "Asia/Tokyo"),
        ("FIXED_RATE", "90000", ""),
        (
            "DAILY_TIME_INTERVAL",
            r#"{"interval": 2, "unit": "HOURS", "startTimeOfDay": "09:00", "endTimeOfDay": "17:00"}"#,
            "Europe/Paris",
        ),
    ] {
        let f = form(&[
            ("time_expression_type", kind),
            ("time_expression", expr),
            ("time_zone", zone),
        ]);
        let want = validate_expression(
            &ValidateRequest {
                kind: super::super::form::parse_wire(kind).unwrap(),
                expression: expr.into(),
                time_zone: Some(zone.into()).filter(|z: &String| !z.is_empty()),
                count: Some(5),
                excluded: vec![],
            },
            now,
        )
        .unwrap();
        let got = fires(&f, &[], now).unwrap();
        assert_eq!(got.next, want.next, "{kind} {expr}");
        assert!(got.scheduled && got.skipped.is_empty() && got.lifecycle_end.is_none());
    }
    // Noon in Paris: two calendars skip the 14th (Paris) and the 15th (New York); the
    // lifecycle ends on the 18th.
    let f = form(&[
        ("time_expression_type", "CRON"),
        ("time_expression", "0 0 12 * * ?"),
        ("time_zone", "Europe/Paris"),
        ("lifecycle_end", "2026-07-18T12:00:00+02:00"),
    ]);
    let calendars = [
        Calendar::new("Europe/Paris", &["2026-07-14"]).unwrap(),
        Calendar::new("America/New_York", &["2026-07-15"]).unwrap(),
    ];
    let got = fires(&f, &calendars, now).unwrap();
    assert_eq!(
        got.next,
        [
            "2026-07-16T12:00:00+02:00",
            "2026-07-17T12:00:00+02:00",
            "2026-07-18T12:00:00+02:00"
        ]
    );
    assert_eq!(
        got.skipped,
        ["2026-07-14T12:00:00+02:00", "2026-07-15T12:00:00+02:00"]
    );
    assert_eq!(got.lifecycle_end, Some(1_784_368_800_000));
    // A start in the future moves the first fire there.
    let f = form(&[
        ("time_expression_type", "CRON"),
        ("time_expression", "0 0 12 * * ?"),
        ("lifecycle_start", "2027-01-01T00:00:00Z"),
    ]);
    assert_eq!(fires(&f, &[], now).unwrap().next[0], "2027-01-01T12:00:00Z");
    // API jobs do not fire by themselves.
    let f = form(&[("time_expression_type", "API")]);
    assert!(!fires(&f, &[], now).unwrap().scheduled);
}

#[test]
fn a_preview_error_names_its_field() {
    use super::super::jobs::fires;
    let now = 1_783_947_600_000;
    for (pairs, field) in [
        (
            vec![("time_expression_type", "HOURLY")],
            "time_expression_type",
        ),
        (
            vec![
                ("time_expression_type", "CRON"),
                ("time_expression", "0 * * * * ?x"),
            ],
            "time_expression",
        ),
        (
            vec![
                ("time_expression_type", "CRON"),
                ("time_expression", "0 * * * * ?"),
                ("time_zone", "Mars/Olympus"),
            ],
            "time_zone",
        ),
        (
            vec![
                ("time_expression_type", "CRON"),
                ("time_expression", "0 * * * * ?"),
                ("lifecycle_start", "soon"),
            ],
            "lifecycle_start",
        ),
        (
            vec![
                ("time_expression_type", "CRON"),
                ("time_expression", "0 * * * * ?"),
                ("lifecycle_start", "2027-01-01T00:00:00Z"),
                ("lifecycle_end", "2026-01-01T00:00:00Z"),
            ],
            "lifecycle_end",
        ),
    ] {
        let err = fires(&form(&pairs), &[], now).unwrap_err();
        assert_eq!(err.0, field, "{pairs:?}: {}", err.1);
    }
}

#[tokio::test]
async fn the_preview_reads_the_apps_calendars_and_puts_errors_under_their_field() {
    let fake = Arc::new(Fake::default());
    fake.0.lock().calendars = vec![CalendarView {
        name: "always".into(),
        time_zone: "UTC".into(),
        excluded: vec!["1970-01-01..2299-12-31".into()],
        description: String::new(),
        updated_at: 0,
    }];
    let c = Client::sign_in(fake.clone()).await;
    let post = |pairs: &[(&str, &str)]| {
        let fields: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let c = &c;
        async move { c.post("/jobs/preview", &fields).await }
    };
    // Every trigger falls on an excluded date: none fires, the first skipped are listed.
    let (status, _, page) = post(&[
        ("time_expression_type", "FIXED_RATE"),
        ("time_expression", "60000"),
        ("calendars", "always"),
    ])
    .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(page.contains("No fire time ahead."), "{page}");
    assert!(
        page.contains("Skipped by the calendars on the way"),
        "{page}"
    );
    assert!(page.contains("and 9995 more"), "{page}");
    // Every error slot comes back out of band, empty but the one at fault.
    let slot = |field: &str, text: &str| {
        format!(
            r#"<small class="field-error" id="error-{field}" data-for="{field}"{} hx-swap-oob="true">{text}</small>"#,
            if text.is_empty() {
                ""
            } else {
                r#" role="alert""#
            }
        )
    };
    for field in super::super::pages::PREVIEW_FIELDS {
        assert!(page.contains(&slot(field, "")), "{field}: {page}");
    }
    let (_, _, page) = post(&[
        ("time_expression_type", "CRON"),
        ("time_expression", "0 * * * * ?"),
        ("calendars", "always, <nope>"),
    ])
    .await;
    assert!(
        page.contains(&slot("calendars", "calendar name &quot;&lt;nope&gt;&quot;: 1 to 64 bytes of letters, digits, '_', '-', '.'")),
        "{page}"
    );
    let (_, _, page) = post(&[
        ("time_expression_type", "CRON"),
        ("time_expression", "0 * * * * ?"),
        ("calendars", "always, missing"),
    ])
    .await;
    assert!(
        page.contains(&slot(
            "calendars",
            "this app has no calendar &quot;missing&quot;"
        )),
        "{page}"
    );
    assert!(page.contains(&slot("time_expression", "")), "{page}");
    let (_, _, page) = post(&[
        ("time_expression_type", "CRON"),
        ("time_expression", "0 * * * * ?"),
        ("time_zone", "Mars/Olympus"),
    ])
    .await;
    assert!(
        page.contains(r#"id="error-time_zone" data-for="time_zone" role="alert""#),
        "{page}"
    );
    // The form has each slot under its field, which it describes.
    let (_, page) = c.get("/jobs/new").await;
    for field in [
        "time_expression",
        "time_zone",
        "calendars",
        "lifecycle_start",
        "lifecycle_end",
    ] {
        assert!(
            page.contains(&format!(r#"aria-describedby="error-{field} preview""#)),
            "{field}: {page}"
        );
        assert!(
            page.contains(&format!(r#"id="error-{field}""#)),
            "{field}: {page}"
        );
    }
}

#[tokio::test]
async fn the_overview_shows_the_servers_counts_and_since_when_they_hold() {
    let fake = Arc::new(Fake::default());
    let now = SystemClock.now_ms();
    let window = |from, finished, succeeded, failed, p50, p99| StatsWindow {
        from,
        finished,
        succeeded,
        failed,
        fires: finished,
        lateness_p50_ms: p50,
        lateness_p99_ms: p99,
    };
    // A busy app: far more than any listing page, counted by the server over the whole day.
    fake.0.lock().stats = Some(AppStats {
        as_of: now,
        since: now - 3 * 86_400_000,
        last_5_minutes: window(now - 300_000, 60_000, 59_990, 10, Some(5), Some(50)),
        last_hour: window(
            now - 3_600_000,
            700_000,
            698_000,
            2_000,
            Some(10),
            Some(200),
        ),
        last_day: window(now - 86_400_000, 9_000_000, 8_999_000, 1_000, None, None),
    });
    let c = Client::sign_in(fake.clone()).await;
    let (_, page) = c.get("/").await;
    for shown in [
        "200.00",
        "698000 ok",
        "2000 failed",
        "8999000 ok",
        "1000 failed",
        "10 ms / 200 ms",
        "Counted by the server over the whole day.",
    ] {
        assert!(page.contains(shown), "{shown}: {page}");
    }
    assert!(
        fake.0.lock().instance_queries.is_empty(),
        "the overview lists no instances"
    );
    // After a server restart an hour ago: the counts hold from then.
    let since = now - 3_600_000;
    fake.0.lock().stats = Some(AppStats {
        as_of: now,
        since,
        last_5_minutes: window(now - 300_000, 0, 0, 0, None, None),
        last_hour: window(since, 3, 2, 1, None, None),
        last_day: window(since, 3, 2, 1, None, None),
    });
    let (_, page) = c.get("/overview/live").await;
    let utc = crate::api::ms_to_rfc3339(since);
    assert!(
        page.contains("Counted by the server since ")
            && page.contains(&format!(r#"<time datetime="{utc}""#))
            && page.contains(&format!("{} UTC</time>", &utc[11..16])),
        "{page}"
    );
}
