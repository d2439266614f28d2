//! The job form and the jobs page over the fake [`Api`]: the form carries every field of
//! the API, a refused form comes back with what was typed, and the jobs page hands its
//! filters to the API.

use std::sync::Arc;

use axum::http::StatusCode;

use super::{job, Client, Fake, SCRIPT};
use crate::alarm::{AlarmRules, FailureRule};
use crate::api::*;
use crate::model::{DispatchStrategy, ExecuteType, LogLevel, LogType};
use crate::policy::{BackoffShape, OverlapPolicy, RetryBackoff};
use crate::time_expression::{MisfirePolicy, TimeExpressionType};

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
