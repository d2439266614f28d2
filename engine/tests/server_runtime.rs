//! The server core over the real transport with fake workers: API runs, dispatch strategies,
//! broadcast, reports (duplicate/stale/foreign), retries, stop/cancel/retry, logs, refusals.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod server_runtime_support;

use ferrojob::api::{ErrorCode, InstanceAction, InstanceQuery, LogQuery, RunJob};
use ferrojob::clock::VirtualClock;
use ferrojob::ids::{InstanceId, JobId};
use ferrojob::model::{DispatchStrategy, ExecuteType, InstanceStatus as S};
use ferrojob::server::StoreChoice;
use ferrojob::time_expression::TimeExpressionType as T;
use ferrojob_transport::message::{InstanceStatus as W, LogBatch, LogEntry, LogLevel};
use server_runtime_support::*;
use tokio::io::AsyncWriteExt;

#[tokio::test]
async fn api_run_is_dispatched_and_succeeds() {
    let server = start(config(StoreChoice::Memory, None)).await;
    let api = server.api();
    let app = app(&api, "a").await;
    let w = FakeWorker::connect(server.transport_addr(), "a", "w1:1", &[], Mode::Succeed).await;
    w.register(&api, &app, 8, 0).await;
    let mut body = job(T::Api, "");
    body.params = "job-params".into();
    body.timeout_ms = 5000;
    let job = api.create_job(app.clone(), body).await.unwrap().id;
    let id = api
        .run_job(
            app.clone(),
            job,
            RunJob {
                params: "p".into(),
                delay_ms: 0,
            },
        )
        .await
        .unwrap()
        .instance_id;
    let v = status_is(&api, &app, id, S::Succeed).await;
    assert_eq!(v.result.as_deref(), Some("ok"));
    assert_eq!(v.worker.as_deref(), Some("w1:1"));
    assert_eq!(v.running_times, 1);
    assert_eq!(v.params, "p");
    let mut w = w;
    let sj = w.next_schedule().await;
    assert_eq!(sj.instance_id, id.0);
    assert_eq!(sj.job_params, "job-params");
    assert_eq!(sj.instance_params, "p");
    assert_eq!(sj.instance_timeout_ms, 5000);
    // Attempt 1 numbers its reports from 1 << 32 (the attempt in the high 32 bits).
    assert_eq!(sj.report_seq_base, 1 << 32);
    assert_eq!(sj.all_worker_addresses, vec!["w1:1".to_string()]);
    assert_eq!(sj.processor_info, "noop");
    let list = api
        .list_instances(
            app.clone(),
            InstanceQuery {
                job_id: Some(job),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(list.items.len(), 1);
    let m = api.metrics_text();
    assert!(
        m.contains("ferrojob_instances{status=\"SUCCEED\"} 1"),
        "{m}"
    );
    assert!(
        m.contains("ferrojob_dispatch_latency_seconds_count 1"),
        "{m}"
    );
    assert!(m.contains("ferrojob_connected_workers 1"), "{m}");
    assert_eq!(api.health().status, "ok");
    server.shutdown().await;
}

#[tokio::test]
async fn unknown_ids_and_conflicts_are_refused_and_map_jobs_accepted() {
    let server = start(config(StoreChoice::Memory, None)).await;
    let api = server.api();
    let a = app(&api, "a").await;
    let b = app(&api, "b").await;
    assert_eq!(
        api.resolve_app("nope").unwrap_err().code,
        ErrorCode::NotFound
    );
    assert_eq!(
        api.resolve_app("999").unwrap_err().code,
        ErrorCode::NotFound
    );
    assert_eq!(api.resolve_app(&a.id.0.to_string()).unwrap().name, "a");
    let dup = api
        .create_app(ferrojob::api::CreateApp {
            name: "a".into(),
            secret: SECRET.into(),
        })
        .await
        .unwrap_err();
    assert_eq!(dup.code, ErrorCode::Conflict);
    let jid = api.create_job(a.clone(), job(T::Api, "")).await.unwrap().id;
    for code in [
        api.get_job(a.clone(), JobId(999)).await.unwrap_err().code,
        api.get_job(b.clone(), jid).await.unwrap_err().code,
        api.get_instance(a.clone(), InstanceId(999))
            .await
            .unwrap_err()
            .code,
        api.run_job(a.clone(), JobId(999), RunJob::default())
            .await
            .unwrap_err()
            .code,
        api.delete_job(a.clone(), JobId(999))
            .await
            .unwrap_err()
            .code,
        api.instance_action(a.clone(), InstanceId(999), InstanceAction::Stop)
            .await
            .unwrap_err()
            .code,
        api.instance_log(a.clone(), InstanceId(999), LogQuery::default())
            .await
            .unwrap_err()
            .code,
    ] {
        assert_eq!(code, ErrorCode::NotFound);
    }
    // The server accepts MAP and MAP_REDUCE jobs.
    for et in [ExecuteType::Map, ExecuteType::MapReduce] {
        let mut body = job(T::Api, "");
        body.execute_type = et;
        api.create_job(a.clone(), body).await.unwrap();
    }
    let e = api
        .create_job(a.clone(), job(T::Cron, "not a cron"))
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidArgument);
    // Instances of another app are not visible.
    let id = run(&api, &a, jid).await;
    assert_eq!(
        api.get_instance(b.clone(), id).await.unwrap_err().code,
        ErrorCode::NotFound
    );
    // Cancel is for waiting instances; a finished one cannot be stopped.
    let v = api
        .instance_action(a.clone(), id, InstanceAction::Cancel)
        .await
        .unwrap();
    assert_eq!(v.status, S::Canceled);
    let e = api
        .instance_action(a.clone(), id, InstanceAction::Stop)
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::Conflict);
    api.delete_job(a.clone(), jid).await.unwrap();
    assert_eq!(
        api.get_job(a.clone(), jid).await.unwrap_err().code,
        ErrorCode::NotFound
    );
    server.shutdown().await;
}

#[tokio::test]
async fn specify_by_tag_reaches_the_tagged_worker_and_broadcast_lists_all() {
    let server = start(config(StoreChoice::Memory, None)).await;
    let api = server.api();
    let app = app(&api, "a").await;
    let addr = server.transport_addr();
    let mut w1 = FakeWorker::connect(addr, "a", "w1:1", &["gpu"], Mode::Succeed).await;
    let mut w2 = FakeWorker::connect(addr, "a", "w2:1", &[], Mode::Succeed).await;
    let mut w3 = FakeWorker::connect(addr, "a", "w3:1", &[], Mode::Succeed).await;
    // w2 is the healthiest: HEALTH_FIRST picks it unless told otherwise.
    w1.register(&api, &app, 1, 0).await;
    w2.register(&api, &app, 64, 0).await;
    w3.register(&api, &app, 2, 0).await;

    let hf = api
        .create_job(app.clone(), job(T::Api, ""))
        .await
        .unwrap()
        .id;
    let id = run(&api, &app, hf).await;
    assert_eq!(
        status_is(&api, &app, id, S::Succeed)
            .await
            .worker
            .as_deref(),
        Some("w2:1")
    );
    assert_eq!(w2.next_schedule().await.instance_id, id.0);

    let mut body = job(T::Api, "");
    body.dispatch_strategy = DispatchStrategy::Specify;
    body.designated_workers = vec!["gpu".into()];
    let sp = api.create_job(app.clone(), body).await.unwrap().id;
    for _ in 0..3 {
        let id = run(&api, &app, sp).await;
        let v = status_is(&api, &app, id, S::Succeed).await;
        assert_eq!(v.worker.as_deref(), Some("w1:1"));
        assert_eq!(w1.next_schedule().await.instance_id, id.0);
    }

    let mut body = job(T::Api, "");
    body.execute_type = ExecuteType::Broadcast;
    let bc = api.create_job(app.clone(), body).await.unwrap().id;
    let id = run(&api, &app, bc).await;
    status_is(&api, &app, id, S::Succeed).await;
    let sj = w2.next_schedule().await;
    assert_eq!(sj.instance_id, id.0);
    assert_eq!(
        sj.all_worker_addresses[0], "w2:1",
        "the TaskTracker comes first"
    );
    let mut all = sj.all_worker_addresses.clone();
    all.sort();
    assert_eq!(all, vec!["w1:1", "w2:1", "w3:1"]);
    assert!(
        w3.no_schedule_pending(),
        "only the TaskTracker gets ScheduleJob"
    );

    // No eligible worker (min memory too high): retried a few times, then FAILED with reasons.
    let clock_free = job(T::Api, "");
    let mut body = clock_free;
    body.min_memory_gb = 1000.0;
    let big = api.create_job(app.clone(), body).await.unwrap().id;
    let id = run(&api, &app, big).await;
    let v = status_is(&api, &app, id, S::Failed).await;
    let r = v.result.unwrap();
    assert!(
        r.contains("no eligible worker") && r.contains("below min_memory_gb"),
        "{r}"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn round_robin_and_random_spread_over_workers() {
    let server = start(config(StoreChoice::Memory, None)).await;
    let api = server.api();
    let app = app(&api, "a").await;
    let addr = server.transport_addr();
    let w1 = FakeWorker::connect(addr, "a", "w1:1", &[], Mode::Succeed).await;
    let w2 = FakeWorker::connect(addr, "a", "w2:1", &[], Mode::Succeed).await;
    w1.register(&api, &app, 1, 0).await;
    w2.register(&api, &app, 64, 0).await;
    for strategy in [DispatchStrategy::RoundRobin, DispatchStrategy::Random] {
        let mut body = job(T::Api, "");
        body.dispatch_strategy = strategy;
        let j = api.create_job(app.clone(), body).await.unwrap().id;
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..(if strategy == DispatchStrategy::RoundRobin {
            2
        } else {
            64
        }) {
            let id = run(&api, &app, j).await;
            let v = status_is(&api, &app, id, S::Succeed).await;
            seen.insert(v.worker.unwrap());
        }
        assert_eq!(seen.len(), 2, "{strategy:?} used {seen:?}");
    }
    server.shutdown().await;
}

#[tokio::test]
async fn duplicate_stale_and_foreign_reports_do_not_transition_twice() {
    let server = start(config(StoreChoice::Memory, None)).await;
    let api = server.api();
    let app = app(&api, "a").await;
    let addr = server.transport_addr();
    let mut w1 = FakeWorker::connect(addr, "a", "w1:1", &[], Mode::Hold).await;
    let w2 = FakeWorker::connect(addr, "a", "w2:1", &[], Mode::Hold).await;
    w1.register(&api, &app, 64, 0).await;
    let j = api
        .create_job(app.clone(), job(T::Api, ""))
        .await
        .unwrap()
        .id;
    let id = run(&api, &app, j).await;
    let sj = w1.next_schedule().await;
    status_is(&api, &app, id, S::Running).await;
    let r1 = w1.r();
    let b = sj.report_seq_base;
    // Foreign: w2 claims the instance (from its own connection, and spoofing w1's address).
    w2.r()
        .report_raw(&sj, b + 5, "w2:1", W::Succeed, Some("w2"))
        .await;
    w2.r()
        .report_raw(&sj, b + 6, "w1:1", W::Succeed, Some("spoof"))
        .await;
    // Stale and duplicate of the RUNNING report (seq b + 1).
    r1.report_raw(&sj, b, "w1:1", W::Failed, Some("stale"))
        .await;
    r1.report_raw(&sj, b + 1, "w1:1", W::Failed, Some("dup"))
        .await;
    // The real final report, then the same again.
    r1.report_raw(&sj, b + 2, "w1:1", W::Succeed, Some("real"))
        .await;
    r1.report_raw(&sj, b + 2, "w1:1", W::Failed, Some("again"))
        .await;
    r1.report_raw(&sj, b + 3, "w1:1", W::Failed, Some("late"))
        .await;
    let v = status_is(&api, &app, id, S::Succeed).await;
    assert_eq!(v.result.as_deref(), Some("real"));
    until("reports counted", || async {
        let m = api.metrics_text();
        m.contains("ferrojob_reports_dropped_total 6").then_some(())
    })
    .await;
    let v = api.get_instance(app.clone(), id).await.unwrap();
    assert_eq!(v.status, S::Succeed);
    assert_eq!(v.result.as_deref(), Some("real"));
    until("durable SUCCEED counted once", || async {
        let m = api.metrics_text();
        m.contains("ferrojob_instances{status=\"SUCCEED\"} 1")
            .then_some(())
    })
    .await;
    server.shutdown().await;
}

#[tokio::test]
async fn failed_instance_is_retried_with_backoff_then_failed() {
    let clock = VirtualClock::new(T0);
    let server = start(config(StoreChoice::Memory, Some(&clock))).await;
    let api = server.api();
    let app = app(&api, "a").await;
    let mut w = FakeWorker::connect(server.transport_addr(), "a", "w1:1", &[], Mode::Fail).await;
    w.register(&api, &app, 8, T0).await;
    let mut body = job(T::Api, "");
    body.instance_retries = 2;
    let j = api.create_job(app.clone(), body).await.unwrap().id;
    let id = run(&api, &app, j).await;
    let first = w.next_schedule().await;
    assert_eq!(first.report_seq_base, 1 << 32);
    let v = status_is(&api, &app, id, S::WaitingDispatch).await;
    assert!(v.result.unwrap().contains("boom"));
    // Backoff 1 s: nothing before it.
    clock.advance(999);
    tokio::task::yield_now().await;
    assert!(w.no_schedule_pending());
    clock.advance(1);
    let second = w.next_schedule().await;
    assert_eq!(second.instance_id, id.0);
    assert_eq!(
        second.report_seq_base,
        2 << 32,
        "each attempt numbers its reports in a range of its own"
    );
    // A late report of attempt 1 (same worker, a sequence above attempt 1's last) must not
    // be taken for attempt 2's.
    w.r()
        .report_raw(
            &first,
            (1 << 32) + 3,
            "w1:1",
            W::Succeed,
            Some("late attempt 1"),
        )
        .await;
    status_is(&api, &app, id, S::WaitingDispatch).await;
    clock.advance(2000);
    let third = w.next_schedule().await;
    assert_eq!(third.report_seq_base, 3 << 32);
    let v = status_is(&api, &app, id, S::Failed).await;
    assert_eq!(v.running_times, 3);
    assert_eq!(v.result.as_deref(), Some("boom"));
    // The API retry runs it again (same id).
    *w.mode.lock().unwrap() = Mode::Succeed;
    let r = api
        .instance_action(app.clone(), id, InstanceAction::Retry)
        .await
        .unwrap();
    assert_eq!(r.id, id);
    let v = status_is(&api, &app, id, S::Succeed).await;
    assert_eq!(v.running_times, 4);
    server.shutdown().await;
}

#[tokio::test]
async fn stop_sends_stop_instance_and_cancel_removes_a_delayed_run() {
    let clock = VirtualClock::new(T0);
    let server = start(config(StoreChoice::Memory, Some(&clock))).await;
    let api = server.api();
    let app = app(&api, "a").await;
    let mut w = FakeWorker::connect(server.transport_addr(), "a", "w1:1", &[], Mode::Hold).await;
    w.register(&api, &app, 8, T0).await;
    let j = api
        .create_job(app.clone(), job(T::Api, ""))
        .await
        .unwrap()
        .id;
    let id = run(&api, &app, j).await;
    w.next_schedule().await;
    status_is(&api, &app, id, S::Running).await;
    let v = api
        .instance_action(app.clone(), id, InstanceAction::Stop)
        .await
        .unwrap();
    assert_eq!(v.status, S::Stopped);
    assert_eq!(w.next_stop().await, id.0);
    // The worker's STOPPED confirmation changes nothing.
    w.r().report(id.0, W::Stopped, None).await;
    assert_eq!(
        status_is(&api, &app, id, S::Stopped).await.status,
        S::Stopped
    );

    let delayed = api
        .run_job(
            app.clone(),
            j,
            RunJob {
                params: String::new(),
                delay_ms: 60_000,
            },
        )
        .await
        .unwrap()
        .instance_id;
    let v = api.get_instance(app.clone(), delayed).await.unwrap();
    assert_eq!(v.status, S::WaitingDispatch);
    assert_eq!(v.trigger_time, T0 + 60_000);
    let v = api
        .instance_action(app.clone(), delayed, InstanceAction::Cancel)
        .await
        .unwrap();
    assert_eq!(v.status, S::Canceled);
    clock.advance(120_000);
    tokio::task::yield_now().await;
    assert_eq!(
        api.get_instance(app.clone(), delayed).await.unwrap().status,
        S::Canceled
    );
    assert!(w.no_schedule_pending());
    server.shutdown().await;
}

#[tokio::test]
async fn max_instances_fails_the_extra_instance() {
    let server = start(config(StoreChoice::Memory, None)).await;
    let api = server.api();
    let app = app(&api, "a").await;
    let mut w = FakeWorker::connect(server.transport_addr(), "a", "w1:1", &[], Mode::Hold).await;
    w.register(&api, &app, 8, 0).await;
    let mut body = job(T::Api, "");
    body.max_instances = 1;
    let j = api.create_job(app.clone(), body).await.unwrap().id;
    let a = run(&api, &app, j).await;
    w.next_schedule().await;
    status_is(&api, &app, a, S::Running).await;
    let b = run(&api, &app, j).await;
    let v = status_is(&api, &app, b, S::Failed).await;
    assert!(v.result.unwrap().contains("too many instances"));
    w.r().report(a.0, W::Succeed, None).await;
    status_is(&api, &app, a, S::Succeed).await;
    let c = run(&api, &app, j).await;
    assert_eq!(w.next_schedule().await.instance_id, c.0);
    server.shutdown().await;
}

#[tokio::test]
async fn logs_are_stored_per_instance_with_a_cap() {
    let mut cfg = config(StoreChoice::Memory, None);
    cfg.max_log_lines_per_instance = 5;
    let server = start(cfg).await;
    let api = server.api();
    let app = app(&api, "a").await;
    let mut w = FakeWorker::connect(server.transport_addr(), "a", "w1:1", &[], Mode::Hold).await;
    w.register(&api, &app, 8, 0).await;
    let j = api
        .create_job(app.clone(), job(T::Api, ""))
        .await
        .unwrap()
        .id;
    let id = run(&api, &app, j).await;
    w.next_schedule().await;
    let entries = (0..8)
        .map(|i| LogEntry {
            instance_id: id.0,
            time_ms: i,
            level: LogLevel::Info,
            content: format!("line {i}"),
            attempt: 1,
            fields: Vec::new(),
        })
        .collect();
    w.handle
        .send(LogBatch {
            worker_address: "w1:1".into(),
            entries,
        })
        .await
        .unwrap();
    let log = until("log lines", || async {
        let l = api
            .instance_log(app.clone(), id, LogQuery::default())
            .await
            .unwrap();
        (l.lines.len() == 5).then_some(l)
    })
    .await;
    assert_eq!(log.dropped, 3);
    assert_eq!(log.lines[0].content, "line 0");
    assert_eq!(log.lines[4].content, "line 4");
    server.shutdown().await;
}

#[tokio::test]
async fn bad_secret_is_refused_and_garbage_leaves_the_server_serving() {
    let server = start(config(StoreChoice::Memory, None)).await;
    let api = server.api();
    let app = app(&api, "a").await;
    let addr = server.transport_addr();
    assert!(
        FakeWorker::try_connect(addr, "a", "wrong-secret", "bad:1", &[], Mode::Succeed)
            .await
            .is_err()
    );
    assert!(
        FakeWorker::try_connect(addr, "nope", SECRET, "bad:2", &[], Mode::Succeed)
            .await
            .is_err()
    );
    for garbage in [
        &b"GET / HTTP/1.1\r\n\r\n"[..],
        &[0xff; 4096][..],
        &[0u8; 64][..],
    ] {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let _ = s.write_all(garbage).await;
        let _ = s.shutdown().await;
    }
    // Apps created now are valid at once; the server still serves.
    let app2 = server_runtime_support::app(&api, "late").await;
    let w = FakeWorker::connect(addr, "late", "w1:1", &[], Mode::Succeed).await;
    w.register(&api, &app2, 8, 0).await;
    let j = api
        .create_job(app2.clone(), job(T::Api, ""))
        .await
        .unwrap()
        .id;
    let id = run(&api, &app2, j).await;
    status_is(&api, &app2, id, S::Succeed).await;
    let _ = app;
    until("protocol errors counted", || async {
        let m = api.metrics_text();
        let line = m
            .lines()
            .find(|l| l.starts_with("ferrojob_protocol_errors_total "))?
            .to_owned();
        let n: u64 = line.rsplit(' ').next()?.parse().ok()?;
        (n >= 2).then_some(())
    })
    .await;
    // The worker port's limits are exported too, each as a counter.
    let m = api.metrics_text();
    for limit in [
        "handshake_timeouts",
        "preauth_pool_full",
        "preauth_frames_too_large",
        "handshakes_rate_limited",
        "connections_over_limit",
        "control_queue_overflows",
    ] {
        let name = format!("ferrojob_transport_{limit}_total ");
        assert!(m.lines().any(|l| l.starts_with(&name)), "{name} missing");
    }
    server.shutdown().await;
}

#[tokio::test]
async fn listing_by_a_running_status_comes_from_memory() {
    let server = start(config(StoreChoice::Memory, None)).await;
    let api = server.api();
    let app = app(&api, "a").await;
    let mut w = FakeWorker::connect(server.transport_addr(), "a", "w1:1", &[], Mode::Hold).await;
    w.register(&api, &app, 8, 0).await;
    let j = api
        .create_job(app.clone(), job(T::Api, ""))
        .await
        .unwrap()
        .id;
    let mut ids = Vec::new();
    for _ in 0..3 {
        let id = run(&api, &app, j).await;
        w.next_schedule().await;
        status_is(&api, &app, id, S::Running).await;
        ids.push(id);
    }
    let q = |status, cursor| InstanceQuery {
        job_id: Some(j),
        status: Some(status),
        limit: Some(2),
        cursor,
        ..InstanceQuery::default()
    };
    let p1 = api
        .list_instances(app.clone(), q(S::Running, None))
        .await
        .unwrap();
    assert_eq!(
        p1.items.iter().map(|v| v.id).collect::<Vec<_>>(),
        vec![ids[2], ids[1]]
    );
    let p2 = api
        .list_instances(app.clone(), q(S::Running, p1.next_cursor))
        .await
        .unwrap();
    assert_eq!(
        p2.items.iter().map(|v| v.id).collect::<Vec<_>>(),
        vec![ids[0]]
    );
    assert_eq!(p2.next_cursor, None);
    w.r().report(ids[0].0, W::Succeed, None).await;
    status_is(&api, &app, ids[0], S::Succeed).await;
    until("listed as SUCCEED", || async {
        let l = api
            .list_instances(app.clone(), q(S::Succeed, None))
            .await
            .unwrap();
        (l.items.len() == 1 && l.items[0].id == ids[0]).then_some(())
    })
    .await;
    server.shutdown().await;
}

/// `ferrojob_store_commit_seconds_count`: store writes the core has awaited so far.
fn commits(api: &std::sync::Arc<dyn ferrojob::api::Api>) -> u64 {
    let m = api.metrics_text();
    m.lines()
        .find_map(|l| l.strip_prefix("ferrojob_store_commit_seconds_count "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no commit count in {m}"))
}

#[tokio::test]
async fn a_run_dispatchable_at_once_is_written_once_before_its_schedule_job() {
    let server = start(config(StoreChoice::Memory, None)).await;
    let api = server.api();
    let app = app(&api, "a").await;
    let mut w = FakeWorker::connect(server.transport_addr(), "a", "w1:1", &[], Mode::Hold).await;
    w.register(&api, &app, 8, 0).await;
    let job = api
        .create_job(app.clone(), job(T::Api, ""))
        .await
        .unwrap()
        .id;
    let before = commits(&api);
    let id = run(&api, &app, job).await;
    // Answered once durable: the instance was written already WAITING_WORKER_RECEIVE.
    let sj = w.next_schedule().await;
    assert_eq!(sj.instance_id, id.0);
    assert_eq!(sj.report_seq_base, 1 << 32);
    let v = status_is(&api, &app, id, S::Running).await;
    assert_eq!(v.worker.as_deref(), Some("w1:1"));
    assert_eq!(v.running_times, 1);
    assert_eq!(
        commits(&api) - before,
        1,
        "create + dispatch are one write (RUNNING is not written)"
    );
    w.r().report(id.0, W::Succeed, Some("done")).await;
    status_is(&api, &app, id, S::Succeed).await;
    assert_eq!(commits(&api) - before, 2);
    let m = api.metrics_text();
    assert!(
        m.contains("ferrojob_instances{status=\"RUNNING\"} 0"),
        "{m}"
    );
    assert!(
        m.contains("ferrojob_instances{status=\"WAITING_WORKER_RECEIVE\"} 0"),
        "{m}"
    );
    assert!(
        m.contains("ferrojob_dispatch_latency_seconds_count 1"),
        "{m}"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn a_run_whose_caller_goes_away_is_still_started() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(config(
        StoreChoice::Log {
            dir: dir.path().to_path_buf(),
        },
        None,
    ))
    .await;
    let api = server.api();
    let app = app(&api, "a").await;
    let mut w = FakeWorker::connect(server.transport_addr(), "a", "w1:1", &[], Mode::Succeed).await;
    w.register(&api, &app, 8, 0).await;
    let mut body = job(T::Api, "");
    body.max_instances = 1;
    let job = api.create_job(app.clone(), body).await.unwrap().id;
    // Dropped at its first wait (the log store's fsync): an HTTP client that disconnects.
    let _ = tokio::time::timeout(
        std::time::Duration::ZERO,
        api.run_job(app.clone(), job, RunJob::default()),
    )
    .await;
    let sj = w.next_schedule().await;
    let v = status_is(&api, &app, InstanceId(sj.instance_id), S::Succeed).await;
    assert_eq!(v.running_times, 1);
    // Its max_instances slot was released: the next run is dispatched, not refused.
    let id = run(&api, &app, job).await;
    status_is(&api, &app, id, S::Succeed).await;
    server.shutdown().await;
}

#[tokio::test]
async fn a_worker_back_after_a_dropped_connection_is_asked_about_its_instances() {
    // A final report handed to a connection that then drops is lost; when the worker comes
    // back (within the liveness window, no server restart) the server asks it.
    let server = start(config(StoreChoice::Memory, None)).await;
    let api = server.api();
    let app = app(&api, "a").await;
    let addr = server.transport_addr();
    let mut w = FakeWorker::connect(addr, "a", "w1:1", &[], Mode::Hold).await;
    w.register(&api, &app, 64, 0).await;
    let j = api
        .create_job(app.clone(), job(T::Api, ""))
        .await
        .unwrap()
        .id;
    let id = run(&api, &app, j).await;
    w.next_schedule().await;
    status_is(&api, &app, id, S::Running).await;
    // The connection drops with the instance's SUCCEED never sent.
    w.handle.shutdown().await;
    drop(w);
    let back = FakeWorker::connect_knowing(
        addr,
        "a",
        "w1:1",
        Mode::Hold,
        id.0,
        W::Succeed,
        "finished while disconnected",
    )
    .await;
    back.register(&api, &app, 64, 0).await;
    let v = status_is(&api, &app, id, S::Succeed).await;
    assert_eq!(v.result.as_deref(), Some("finished while disconnected"));
    assert_eq!(v.running_times, 1, "answered, not retried");
    server.shutdown().await;
}

/// A worker chooses its own address, so a worker of app B may announce the address of one
/// of app A's workers: it must neither replace A's connection (and receive A's work) nor
/// report for, or write log lines into, A's instances.
#[tokio::test]
async fn a_worker_of_another_app_announcing_the_same_address_cannot_touch_this_apps_work() {
    let clock = VirtualClock::new(T0);
    let server = start(config(StoreChoice::Memory, Some(&clock))).await;
    let api = server.api();
    let a = app(&api, "a").await;
    let b = app(&api, "b").await;
    let addr = server.transport_addr();
    let mut wa = FakeWorker::connect(addr, "a", "w1:1", &[], Mode::Hold).await;
    wa.register(&api, &a, 8, T0).await;
    let wb = FakeWorker::connect(addr, "b", "w1:1", &[], Mode::Succeed).await;
    wb.register(&api, &b, 8, T0).await;
    let j = api.create_job(a.clone(), job(T::Api, "")).await.unwrap().id;
    let id = run(&api, &a, j).await;
    // A's own connection gets the work.
    let s = wa.next_schedule().await;
    assert_eq!(s.instance_id, id.0);
    status_is(&api, &a, id, S::Running).await;
    // B's worker writes log lines into A's instance and reports it done, naming the address.
    wb.handle
        .send(LogBatch {
            worker_address: "w1:1".into(),
            entries: vec![LogEntry {
                instance_id: id.0,
                time_ms: T0,
                level: LogLevel::Info,
                content: "forged".into(),
                attempt: 1,
                fields: Vec::new(),
            }],
        })
        .await
        .unwrap();
    let dropped_before = dropped_reports(&api);
    wb.r()
        .report_raw(
            &s,
            s.report_seq_base + 1000,
            "w1:1",
            W::Succeed,
            Some("forged"),
        )
        .await;
    until("the forged report dropped", || async {
        (dropped_reports(&api) > dropped_before).then_some(())
    })
    .await;
    let v = status_is(&api, &a, id, S::Running).await;
    assert_eq!(v.result, None);
    let log = api
        .instance_log(a.clone(), id, LogQuery::default())
        .await
        .unwrap();
    assert!(log.lines.is_empty(), "{:?}", log.lines);
    // A's worker finishes it.
    wa.r().report(id.0, W::Succeed, Some("real")).await;
    let v = status_is(&api, &a, id, S::Succeed).await;
    assert_eq!(v.result.as_deref(), Some("real"));
    server.shutdown().await;
}

fn dropped_reports(api: &std::sync::Arc<dyn ferrojob::api::Api>) -> u64 {
    api.metrics_text()
        .lines()
        .find_map(|l| l.strip_prefix("ferrojob_reports_dropped_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}
