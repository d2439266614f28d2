//! Every page of the console renders for an empty and for a busy app (and the list of pages
//! covers every GET route of the router); the overview and workers pages show what the
//! fake [`Api`](crate::api::Api) holds.

use std::sync::Arc;

use axum::http::StatusCode;

use super::{job, Client, Fake, SCRIPT};
use crate::api::*;
use crate::clock::{Clock, SystemClock};
use crate::ids::{InstanceId, JobId};
use crate::model::{InstanceStatus, LogLevel};
use crate::time_expression::TimeExpressionType;

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
