//! Scheduling on a virtual clock: every time expression type fires from the wheel, FIXED_DELAY
//! counts from the reported completion, WORKFLOW never fires alone, misfire policies, the
//! receive timeout and dead workers.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod server_runtime_support;

use ferrojob::api::{Backfill, JobBody, JobQuery};
use ferrojob::clock::VirtualClock;
use ferrojob::ids::InstanceId;
use ferrojob::model::InstanceStatus as S;
use ferrojob::server::StoreChoice;
use ferrojob::time_expression::TimeExpressionType as T;
use ferrojob_transport::message::InstanceStatus as W;
use server_runtime_support::*;

async fn setup(
    clock: &VirtualClock,
) -> (
    ferrojob::server::ServerCore,
    std::sync::Arc<dyn ferrojob::api::Api>,
    ferrojob::api::AppRef,
    FakeWorker,
) {
    let server = start(config(StoreChoice::Memory, Some(clock))).await;
    let api = server.api();
    let app = app(&api, "a").await;
    let w = FakeWorker::connect(server.transport_addr(), "a", "w1:1", &[], Mode::Succeed).await;
    w.register(&api, &app, 8, clock.now_ms_pub()).await;
    (server, api, app, w)
}

trait NowMs {
    fn now_ms_pub(&self) -> i64;
}
impl NowMs for VirtualClock {
    fn now_ms_pub(&self) -> i64 {
        use ferrojob::clock::Clock;
        self.now_ms()
    }
}

async fn fires_on_schedule(kind: T, expr: &str, first: i64, step: i64) {
    let clock = VirtualClock::new(T0);
    let (server, api, app, _w) = setup(&clock).await;
    let j = api
        .create_job(app.clone(), job(kind, expr))
        .await
        .unwrap()
        .id;
    let v = api.get_job(app.clone(), j).await.unwrap();
    assert_eq!(v.next_trigger_time, Some(T0 + first), "{kind}");
    clock.advance(u64::try_from(first - 1).unwrap());
    tokio::task::yield_now().await;
    assert!(
        instances(&api, &app, j).await.is_empty(),
        "{kind}: fired early"
    );
    clock.advance(1);
    let runs = succeeded(&api, &app, j, 1).await;
    assert_eq!(runs[0].trigger_time, T0 + first);
    assert_eq!(runs[0].run, 1);
    clock.advance(u64::try_from(step).unwrap());
    let runs = succeeded(&api, &app, j, 2).await;
    assert_eq!(runs[1].trigger_time, T0 + first + step);
    assert_eq!(runs[1].run, 2, "{kind}: each fire is its own run");
    let v = api.get_job(app.clone(), j).await.unwrap();
    assert_eq!(v.runs, 2);
    assert_eq!(v.next_trigger_time, Some(T0 + first + 2 * step));
    let m = api.metrics_text();
    assert!(m.contains("ferrojob_fire_lateness_seconds_count 2"), "{m}");
    server.shutdown().await;
}

#[tokio::test]
async fn cron_fires() {
    fires_on_schedule(T::Cron, "0/10 * * * * ?", 10_000, 10_000).await;
}

#[tokio::test]
async fn fixed_rate_fires() {
    fires_on_schedule(T::FixedRate, "1500", 1500, 1500).await;
}

#[tokio::test]
async fn daily_time_interval_fires() {
    fires_on_schedule(
        T::DailyTimeInterval,
        r#"{"interval": 5, "unit": "SECONDS"}"#,
        5000,
        5000,
    )
    .await;
}

#[tokio::test]
async fn fixed_delay_counts_from_the_reported_completion() {
    let clock = VirtualClock::new(T0);
    let (server, api, app, mut w) = setup(&clock).await;
    *w.mode.lock().unwrap() = Mode::Hold;
    let j = api
        .create_job(app.clone(), job(T::FixedDelay, "2000"))
        .await
        .unwrap()
        .id;
    assert_eq!(
        api.get_job(app.clone(), j).await.unwrap().next_trigger_time,
        Some(T0 + 2000)
    );
    clock.advance(2000);
    let first = w.next_schedule().await;
    status_is(&api, &app, InstanceId(first.instance_id), S::Running).await;
    // While it runs, nothing else fires.
    clock.advance(10_000);
    tokio::task::yield_now().await;
    assert_eq!(instances(&api, &app, j).await.len(), 1);
    assert_eq!(
        api.get_job(app.clone(), j).await.unwrap().next_trigger_time,
        None
    );
    w.r().report(first.instance_id, W::Succeed, None).await;
    status_is(&api, &app, InstanceId(first.instance_id), S::Succeed).await;
    let next = until("re-armed from the completion", || async {
        api.get_job(app.clone(), j).await.unwrap().next_trigger_time
    })
    .await;
    assert_eq!(next, T0 + 12_000 + 2000);
    clock.advance(1999);
    tokio::task::yield_now().await;
    assert!(w.no_schedule_pending());
    clock.advance(1);
    let second = w.next_schedule().await;
    let v = api
        .get_instance(app.clone(), InstanceId(second.instance_id))
        .await
        .unwrap();
    assert_eq!(v.run, 2);
    assert_eq!(v.trigger_time, T0 + 14_000);
    server.shutdown().await;
}

#[tokio::test]
async fn api_and_workflow_jobs_never_fire_alone_and_disabled_jobs_stop() {
    let clock = VirtualClock::new(T0);
    let (server, api, app, _w) = setup(&clock).await;
    let api_job = api
        .create_job(app.clone(), job(T::Api, ""))
        .await
        .unwrap()
        .id;
    let wf = api
        .create_job(app.clone(), job(T::Workflow, ""))
        .await
        .unwrap()
        .id;
    let fr = api
        .create_job(app.clone(), job(T::FixedRate, "1000"))
        .await
        .unwrap()
        .id;
    for j in [api_job, wf] {
        assert_eq!(
            api.get_job(app.clone(), j).await.unwrap().next_trigger_time,
            None
        );
    }
    clock.advance(1000);
    succeeded(&api, &app, fr, 1).await;
    let v = api.set_job_enabled(app.clone(), fr, false).await.unwrap();
    assert!(!v.body.enabled);
    assert_eq!(v.next_trigger_time, None);
    clock.advance(10_000);
    tokio::task::yield_now().await;
    assert_eq!(instances(&api, &app, fr).await.len(), 1);
    assert!(instances(&api, &app, api_job).await.is_empty());
    assert!(instances(&api, &app, wf).await.is_empty());
    // Enabled again: continues from now.
    let v = api.set_job_enabled(app.clone(), fr, true).await.unwrap();
    assert_eq!(v.next_trigger_time, Some(T0 + 12_000));
    // An update reschedules with the new expression.
    let mut body = job(T::FixedRate, "5000");
    body.name = "renamed".into();
    let v = api.update_job(app.clone(), fr, body).await.unwrap();
    assert_eq!(v.body.name, "renamed");
    assert_eq!(v.next_trigger_time, Some(T0 + 16_000));
    clock.advance(5000);
    succeeded(&api, &app, fr, 2).await;
    let list = api
        .list_jobs(app.clone(), JobQuery::default())
        .await
        .unwrap();
    assert_eq!(list.items.len(), 3);
    server.shutdown().await;
}

#[tokio::test]
async fn late_triggers_follow_the_misfire_policy() {
    let clock = VirtualClock::new(T0);
    let (server, api, app, _w) = setup(&clock).await;
    let mut ids = Vec::new();
    for policy in ["FIRE_ONCE", "FIRE_ALL", "SKIP"] {
        let mut body: JobBody = job(T::Cron, "0 * * * * ?");
        body.misfire = serde_json::from_value(serde_json::json!(policy)).unwrap();
        ids.push(api.create_job(app.clone(), body).await.unwrap().id);
    }
    // Ten minutes at once: nine triggers are late by more than the threshold, one is on time.
    clock.advance(600_000);
    let once = succeeded(&api, &app, ids[0], 2).await;
    assert_eq!(once[0].trigger_time, T0 + 60_000);
    assert_eq!(once[1].trigger_time, T0 + 600_000);
    let all = succeeded(&api, &app, ids[1], 10).await;
    assert_eq!(all[9].trigger_time, T0 + 600_000);
    let skip = succeeded(&api, &app, ids[2], 1).await;
    assert_eq!(skip[0].trigger_time, T0 + 600_000);
    for j in &ids {
        assert_eq!(
            api.get_job(app.clone(), *j)
                .await
                .unwrap()
                .next_trigger_time,
            Some(T0 + 660_000)
        );
    }
    server.shutdown().await;
}

#[tokio::test]
async fn finished_runs_beyond_the_keep_count_are_pruned() {
    let clock = VirtualClock::new(T0);
    let mut cfg = config(StoreChoice::Memory, Some(&clock));
    cfg.keep_finished_runs = 4;
    let server = start(cfg).await;
    let api = server.api();
    let app = app(&api, "a").await;
    let w = FakeWorker::connect(server.transport_addr(), "a", "w1:1", &[], Mode::Succeed).await;
    w.register(&api, &app, 8, T0).await;
    let j = api
        .create_job(app.clone(), job(T::FixedRate, "1000"))
        .await
        .unwrap()
        .id;
    for i in 1..=10u64 {
        clock.advance(1000);
        until("run finished", || async {
            let v = instances(&api, &app, j).await;
            v.iter()
                .any(|x| x.run == i && x.status == S::Succeed)
                .then_some(())
        })
        .await;
    }
    let left = until("pruned to the newest runs", || async {
        let v = instances(&api, &app, j).await;
        (v.len() <= 5).then_some(v)
    })
    .await;
    assert!(left.iter().any(|x| x.run == 10));
    assert!(left.iter().all(|x| x.run >= 6), "{left:?}");
    // API runs count and are pruned too: four of them push every scheduled run out but the
    // newest one left from before.
    let mut api_runs = Vec::new();
    for _ in 0..4 {
        let id = run(&api, &app, j).await;
        status_is(&api, &app, id, S::Succeed).await;
        api_runs.push(id);
    }
    let left = until("scheduled runs pruned behind the API runs", || async {
        let v = instances(&api, &app, j).await;
        (v.iter().filter(|x| x.run > 0).count() <= 1).then_some(v)
    })
    .await;
    for id in api_runs {
        assert!(left.iter().any(|x| x.id == id), "{left:?}");
    }
    // Every deletion is counted, and only as pruning (no retention period is set): the 14
    // finished runs are those left plus those counted.
    until("pruning counted", || async {
        let left = instances(&api, &app, j).await.len() as u64;
        (left + metric(&api, "ferrojob_retention_pruned_total") == 14).then_some(())
    })
    .await;
    assert_eq!(metric(&api, "ferrojob_retention_deleted_total"), 0);
    server.shutdown().await;
}

#[tokio::test]
async fn finished_instances_older_than_the_retention_period_are_deleted() {
    let clock = VirtualClock::new(T0);
    let mut cfg = config(StoreChoice::Memory, Some(&clock));
    cfg.retention_ms = 60_000;
    let server = start(cfg).await;
    let api = server.api();
    let app = app(&api, "a").await;
    let w = FakeWorker::connect(server.transport_addr(), "a", "w1:1", &[], Mode::Succeed).await;
    w.register(&api, &app, 8, T0).await;
    let j = api
        .create_job(app.clone(), job(T::Api, ""))
        .await
        .unwrap()
        .id;
    let mut old = Vec::new();
    for _ in 0..3 {
        let id = run(&api, &app, j).await;
        status_is(&api, &app, id, S::Succeed).await;
        old.push(id);
    }
    // First sweep: finished exactly one retention period ago is not older than it.
    clock.advance(60_000);
    until("the first sweep", || async {
        (metric(&api, "ferrojob_retention_sweeps_total") >= 1).then_some(())
    })
    .await;
    // A run finished within the period survives the next sweep.
    let young = run(&api, &app, j).await;
    status_is(&api, &app, young, S::Succeed).await;
    clock.advance(60_000);
    let left = until("old runs deleted", || async {
        let v = instances(&api, &app, j).await;
        (v.len() == 1).then_some(v)
    })
    .await;
    assert_eq!(left[0].id, young);
    for id in old {
        assert!(api.get_instance(app.clone(), id).await.is_err());
    }
    assert_eq!(metric(&api, "ferrojob_retention_deleted_total"), 3);
    server.shutdown().await;
}

/// The value of counter `name` in the server's metrics text.
fn metric(api: &std::sync::Arc<dyn ferrojob::api::Api>, name: &str) -> u64 {
    api.metrics_text()
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn unconfirmed_dispatch_is_requeued_to_another_worker() {
    let clock = VirtualClock::new(T0);
    let server = start(config(StoreChoice::Memory, Some(&clock))).await;
    let api = server.api();
    let app = app(&api, "a").await;
    let addr = server.transport_addr();
    let mut silent = FakeWorker::connect(addr, "a", "w1:1", &[], Mode::Silent).await;
    let mut good = FakeWorker::connect(addr, "a", "w2:1", &[], Mode::Succeed).await;
    silent.register(&api, &app, 64, T0).await;
    good.register(&api, &app, 1, T0).await;
    let j = api
        .create_job(app.clone(), job(T::Api, ""))
        .await
        .unwrap()
        .id;
    let id = run(&api, &app, j).await;
    assert_eq!(silent.next_schedule().await.instance_id, id.0);
    status_is(&api, &app, id, S::WaitingWorkerReceive).await;
    clock.advance(10_000);
    // The silent worker is told to stop the attempt it never confirmed before the instance
    // runs elsewhere.
    assert_eq!(silent.next_stop().await, id.0);
    assert_eq!(good.next_schedule().await.instance_id, id.0);
    let v = status_is(&api, &app, id, S::Succeed).await;
    assert_eq!(v.worker.as_deref(), Some("w2:1"));
    assert_eq!(v.running_times, 2);
    server.shutdown().await;
}

/// With one worker, the requeued instance goes back to it: first the stop of the attempt it
/// never confirmed, then the new attempt, numbered in a range of its own.
#[tokio::test]
async fn unconfirmed_dispatch_to_the_only_worker_is_stopped_then_dispatched_again() {
    let clock = VirtualClock::new(T0);
    let server = start(config(StoreChoice::Memory, Some(&clock))).await;
    let api = server.api();
    let app = app(&api, "a").await;
    let mut w = FakeWorker::connect(server.transport_addr(), "a", "w1:1", &[], Mode::Silent).await;
    w.register(&api, &app, 64, T0).await;
    let j = api
        .create_job(app.clone(), job(T::Api, ""))
        .await
        .unwrap()
        .id;
    let id = run(&api, &app, j).await;
    let first = w.next_schedule().await;
    assert_eq!(first.report_seq_base, 1 << 32);
    clock.advance(10_000);
    assert_eq!(w.next_stop().await, id.0);
    let second = w.next_schedule().await;
    assert_eq!(
        (second.instance_id, second.report_seq_base),
        (id.0, 2 << 32)
    );
    w.r().report(id.0, W::Succeed, Some("ok")).await;
    let v = status_is(&api, &app, id, S::Succeed).await;
    assert_eq!(v.running_times, 2);
    server.shutdown().await;
}

#[tokio::test]
async fn dead_worker_instance_is_retried_on_the_other_worker() {
    let clock = VirtualClock::new(T0);
    let mut cfg = config(StoreChoice::Memory, Some(&clock));
    cfg.heartbeat_interval_ms = 1000;
    let server = start(cfg).await;
    let api = server.api();
    let app = app(&api, "a").await;
    let addr = server.transport_addr();
    let mut dying = FakeWorker::connect(addr, "a", "w1:1", &[], Mode::Hold).await;
    let mut other = FakeWorker::connect(addr, "a", "w2:1", &[], Mode::Succeed).await;
    dying.register(&api, &app, 64, T0).await;
    other.register(&api, &app, 1, T0).await;
    let mut body = job(T::Api, "");
    body.instance_retries = 1;
    let j = api.create_job(app.clone(), body).await.unwrap().id;
    let id = run(&api, &app, j).await;
    assert_eq!(dying.next_schedule().await.instance_id, id.0);
    status_is(&api, &app, id, S::Running).await;
    // w1 stops heartbeating; w2 keeps going.
    for step in 1..=3 {
        clock.advance(1000);
        other.register(&api, &app, 1, T0 + step * 1000).await;
    }
    assert_eq!(other.next_schedule().await.instance_id, id.0);
    let v = status_is(&api, &app, id, S::Succeed).await;
    assert_eq!(v.worker.as_deref(), Some("w2:1"));
    assert_eq!(v.running_times, 2);
    let ws = api.list_workers(app.clone()).await.unwrap();
    assert_eq!(ws.workers.len(), 1);
    assert_eq!(ws.workers[0].address, "w2:1");
    // Without retries left, a dead worker's instance is FAILED naming it.
    *other.mode.lock().unwrap() = Mode::Hold;
    let j2 = api
        .create_job(app.clone(), job(T::Api, ""))
        .await
        .unwrap()
        .id;
    let id2 = run(&api, &app, j2).await;
    assert_eq!(other.next_schedule().await.instance_id, id2.0);
    status_is(&api, &app, id2, S::Running).await;
    clock.advance(3000);
    let v = status_is(&api, &app, id2, S::Failed).await;
    assert!(v.result.unwrap().contains("worker w2:1 died"));
    assert!(dying.no_schedule_pending());
    server.shutdown().await;
}

#[tokio::test]
async fn silent_run_past_its_timeout_is_failed_by_the_server_and_stopped() {
    let clock = VirtualClock::new(T0);
    let (server, api, app, mut w) = setup(&clock).await;
    *w.mode.lock().unwrap() = Mode::Hold;
    let mut body = job(T::Api, "");
    body.timeout_ms = 1000;
    let j = api.create_job(app.clone(), body).await.unwrap().id;
    let id = run(&api, &app, j).await;
    w.next_schedule().await;
    status_is(&api, &app, id, S::Running).await;
    clock.advance(30_999);
    tokio::task::yield_now().await;
    assert_eq!(
        api.get_instance(app.clone(), id).await.unwrap().status,
        S::Running
    );
    clock.advance(1);
    let v = status_is(&api, &app, id, S::Failed).await;
    assert!(v.result.unwrap().contains("server safety net"));
    assert_eq!(w.next_stop().await, id.0);
    server.shutdown().await;
}

#[tokio::test]
async fn a_worker_whose_connection_stays_closed_is_dead() {
    let clock = VirtualClock::new(T0);
    let mut cfg = config(StoreChoice::Memory, Some(&clock));
    cfg.heartbeat_interval_ms = 1000;
    let server = start(cfg).await;
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
    w.handle.shutdown().await;
    until("worker unroutable", || async {
        api.list_workers(app.clone())
            .await
            .unwrap()
            .workers
            .is_empty()
            .then_some(())
    })
    .await;
    for _ in 0..3 {
        clock.advance(1000);
    }
    let v = status_is(&api, &app, id, S::Failed).await;
    assert!(v.result.unwrap().contains("connection lost"));
    server.shutdown().await;
}

#[tokio::test]
async fn specify_by_address_and_resource_minimums_filter_workers() {
    let clock = VirtualClock::new(T0);
    let server = start(config(StoreChoice::Memory, Some(&clock))).await;
    let api = server.api();
    let app = app(&api, "a").await;
    let addr = server.transport_addr();
    let small = FakeWorker::connect(addr, "a", "small:1", &[], Mode::Succeed).await;
    let big = FakeWorker::connect(addr, "a", "big:1", &[], Mode::Succeed).await;
    small.register(&api, &app, 1, T0).await;
    big.register(&api, &app, 32, T0).await;
    let mut body = job(T::Api, "");
    body.dispatch_strategy = ferrojob::model::DispatchStrategy::Specify;
    body.designated_workers = vec!["small:1".into()];
    let j = api.create_job(app.clone(), body).await.unwrap().id;
    let id = run(&api, &app, j).await;
    assert_eq!(
        status_is(&api, &app, id, S::Succeed)
            .await
            .worker
            .as_deref(),
        Some("small:1")
    );
    let mut body = job(T::Api, "");
    body.dispatch_strategy = ferrojob::model::DispatchStrategy::RoundRobin;
    body.min_memory_gb = 16.0;
    body.min_cpu_cores = 2.0;
    body.min_disk_gb = 5.0;
    let j = api.create_job(app.clone(), body).await.unwrap().id;
    for _ in 0..3 {
        let id = run(&api, &app, j).await;
        assert_eq!(
            status_is(&api, &app, id, S::Succeed)
                .await
                .worker
                .as_deref(),
            Some("big:1")
        );
    }
    let mut body = job(T::Api, "");
    body.min_disk_gb = 100.0;
    let j = api.create_job(app.clone(), body).await.unwrap().id;
    let id = run(&api, &app, j).await;
    // Each poll moves virtual time by one retry pause until the attempts are used up.
    let v = until("no eligible worker", || async {
        clock.advance(500);
        let v = api.get_instance(app.clone(), id).await.unwrap();
        (v.status == S::Failed).then_some(v)
    })
    .await;
    assert!(v.result.unwrap().contains("2 below min_disk_gb"));
    server.shutdown().await;
}

#[tokio::test]
async fn lifecycle_bounds_the_fires_and_max_worker_count_caps_broadcast() {
    let clock = VirtualClock::new(T0);
    let (server, api, app, _w) = setup(&clock).await;
    let mut body = job(T::FixedRate, "1000");
    body.lifecycle = ferrojob::api::LifecycleJson {
        start: Some("2030-01-01T00:00:01.500Z".into()),
        end: Some("2030-01-01T00:00:04.500Z".into()),
    };
    let j = api.create_job(app.clone(), body).await.unwrap().id;
    // A FIXED_RATE grid starts at the window's start (`schedule::Schedule::first_trigger`).
    let first = api.get_job(app.clone(), j).await.unwrap().next_trigger_time;
    assert_eq!(first, Some(T0 + 2500));
    for k in 1..=10usize {
        clock.advance(1000);
        if (3..=5).contains(&k) {
            succeeded(&api, &app, j, k - 2).await;
        }
    }
    let runs = succeeded(&api, &app, j, 3).await;
    let times: Vec<i64> = runs.iter().map(|r| r.trigger_time).collect();
    assert_eq!(times, vec![T0 + 2500, T0 + 3500, T0 + 4500]);
    assert_eq!(
        api.get_job(app.clone(), j).await.unwrap().next_trigger_time,
        None
    );

    let addr = server.transport_addr();
    let mut extra = Vec::new();
    for i in 2..5 {
        let w = FakeWorker::connect(addr, "a", &format!("w{i}:1"), &[], Mode::Succeed).await;
        w.register(&api, &app, 4, clock.now_ms_pub()).await;
        extra.push(w);
    }
    let mut body = job(T::Api, "");
    body.execute_type = ferrojob::model::ExecuteType::Broadcast;
    body.max_worker_count = 2;
    let b = api.create_job(app.clone(), body).await.unwrap().id;
    let id = run(&api, &app, b).await;
    let v = status_is(&api, &app, id, S::Succeed).await;
    let tracker = v.worker.unwrap();
    let mut w1 = _w;
    let w = match extra.iter_mut().find(|w| w.address == tracker) {
        Some(w) => w,
        None => &mut w1,
    };
    let sj = loop {
        let sj = w.next_schedule().await;
        if sj.instance_id == id.0 {
            break sj;
        }
    };
    assert_eq!(sj.all_worker_addresses.len(), 2);
    assert_eq!(sj.all_worker_addresses[0], tracker);
    server.shutdown().await;
}

#[tokio::test]
async fn schedules_faster_than_the_servers_minimum_period_are_refused() {
    let clock = VirtualClock::new(T0);
    let mut cfg = config(StoreChoice::Memory, Some(&clock));
    cfg.min_period_ms = 1000;
    let server = start(cfg).await;
    let api = server.api();
    let app = app(&api, "a").await;
    for kind in [T::FixedRate, T::FixedDelay] {
        let e = api
            .create_job(app.clone(), job(kind, "999"))
            .await
            .unwrap_err();
        assert_eq!(e.code, ferrojob::api::ErrorCode::InvalidArgument, "{e}");
        assert!(e.message.contains("min_period_ms"), "{e}");
    }
    let id = api
        .create_job(app.clone(), job(T::FixedRate, "1000"))
        .await
        .unwrap()
        .id;
    let e = api
        .update_job(app.clone(), id, job(T::FixedRate, "10"))
        .await
        .unwrap_err();
    assert_eq!(e.code, ferrojob::api::ErrorCode::InvalidArgument, "{e}");
    // Untouched by the refused update.
    let v = api.get_job(app.clone(), id).await.unwrap();
    assert_eq!(v.body.time_expression, "1000");
    server.shutdown().await;
}

#[tokio::test]
async fn an_app_at_its_job_quota_is_refused_without_touching_other_apps() {
    let clock = VirtualClock::new(T0);
    let mut cfg = config(StoreChoice::Memory, Some(&clock));
    cfg.max_jobs_per_app = 2;
    let server = start(cfg).await;
    let api = server.api();
    let a = app(&api, "a").await;
    let b = app(&api, "b").await;
    let first = api.create_job(a.clone(), job(T::Api, "")).await.unwrap().id;
    api.create_job(a.clone(), job(T::Api, "")).await.unwrap();
    let e = api
        .create_job(a.clone(), job(T::Api, ""))
        .await
        .unwrap_err();
    assert_eq!(e.code, ferrojob::api::ErrorCode::Conflict, "{e}");
    assert!(e.message.contains("max_jobs_per_app"), "{e}");
    // Another tenant is not affected.
    api.create_job(b.clone(), job(T::Api, "")).await.unwrap();
    // Deleting one makes room again.
    api.delete_job(a.clone(), first).await.unwrap();
    api.create_job(a.clone(), job(T::Api, "")).await.unwrap();
    server.shutdown().await;
}

#[tokio::test]
async fn every_run_carries_a_stable_trigger_key_and_its_attempt() {
    let clock = VirtualClock::new(T0);
    let (server, api, app, mut w) = setup(&clock).await;
    *w.mode.lock().unwrap() = Mode::Hold;
    let mut body = job(T::FixedRate, "1500");
    body.instance_retries = 1;
    let j = api.create_job(app.clone(), body).await.unwrap().id;
    // A scheduled fire: the job and its trigger time, attempt 1.
    clock.advance(1500);
    let fired = w.next_schedule().await;
    assert_eq!(fired.trigger_key, format!("job-{}-at-{}", j.0, T0 + 1500));
    assert_eq!(fired.trigger_time_ms, T0 + 1500);
    assert_eq!(fired.report_seq_base >> 32, 1);
    // Its retry after a failure: the same key, attempt 2.
    w.r()
        .report(fired.instance_id, W::Failed, Some("boom"))
        .await;
    let iid = InstanceId(fired.instance_id);
    let due = until("the retry to be armed", || async {
        api.get_instance(app.clone(), iid)
            .await
            .unwrap()
            .next_retry_at
    })
    .await;
    clock.advance(u64::try_from(due - (T0 + 1500)).unwrap());
    let retried = w.next_schedule().await;
    assert_eq!(retried.instance_id, fired.instance_id);
    assert_eq!(retried.trigger_key, fired.trigger_key);
    assert_eq!(retried.trigger_time_ms, T0 + 1500);
    assert_eq!(retried.report_seq_base >> 32, 2);
    // An API run: its instance, whatever its trigger time.
    api.set_job_enabled(app.clone(), j, false).await.unwrap();
    let id = run(&api, &app, j).await;
    let ran = w.next_schedule().await;
    assert_eq!(ran.instance_id, id.0);
    assert_eq!(ran.trigger_key, format!("instance-{}", id.0));
    assert_eq!(ran.report_seq_base >> 32, 1);
    server.shutdown().await;
}

#[tokio::test]
async fn backfill_runs_each_past_trigger_time_once_with_its_time() {
    const HOUR: i64 = 3_600_000;
    let clock = VirtualClock::new(T0 + 24 * HOUR);
    let (server, api, app, _w) = setup(&clock).await;
    let j = api
        .create_job(app.clone(), job(T::Cron, "0 0 * * * ?"))
        .await
        .unwrap()
        .id;
    let ask = |from: i64, to: i64, dry_run: bool| {
        let (api, app) = (api.clone(), app.clone());
        async move {
            api.backfill_job(app, j, Backfill { from, to, dry_run })
                .await
        }
    };
    let times = vec![T0, T0 + HOUR, T0 + 2 * HOUR];

    // A dry run lists the times and creates nothing.
    let dry = ask(T0, T0 + 3 * HOUR, true).await.unwrap();
    assert!(dry.dry_run);
    let listed: Vec<i64> = dry.runs.iter().map(|r| r.trigger_time).collect();
    assert_eq!(listed, times);
    assert!(dry.runs.iter().all(|r| r.instance_id.is_none()));
    assert!(instances(&api, &app, j).await.is_empty());

    // The real one: one run per time, each carrying it.
    let done = ask(T0, T0 + 3 * HOUR, false).await.unwrap();
    assert!(!done.dry_run);
    let ran = succeeded(&api, &app, j, 3).await;
    let got: Vec<(i64, Option<InstanceId>)> =
        ran.iter().map(|i| (i.trigger_time, Some(i.id))).collect();
    let answered: Vec<(i64, Option<InstanceId>)> = done
        .runs
        .iter()
        .map(|r| (r.trigger_time, r.instance_id))
        .collect();
    assert_eq!(got, answered);
    assert_eq!(
        ran.iter().map(|i| i.trigger_time).collect::<Vec<_>>(),
        times
    );
    assert!(
        ran.iter().all(|i| i.run == 0),
        "backfill runs are not fires"
    );

    // Refused: a range reaching into the future, one over the cap, an empty one, an API job.
    let refused = |r: Result<ferrojob::api::BackfillResult, ferrojob::api::ApiError>,
                   field: &str| {
        let e = r.unwrap_err();
        assert_eq!(e.code, ferrojob::api::ErrorCode::InvalidArgument, "{e:?}");
        assert!(e.message.contains(field), "{field}: {e:?}");
    };
    refused(ask(T0, T0 + 25 * HOUR, true).await, "to");
    let per_second = api
        .create_job(app.clone(), job(T::Cron, "* * * * * ?"))
        .await
        .unwrap()
        .id;
    let over = Backfill {
        from: T0,
        to: T0 + HOUR,
        dry_run: true,
    };
    refused(
        api.backfill_job(app.clone(), per_second, over).await,
        "1000",
    );
    refused(ask(T0 + HOUR, T0 + HOUR, true).await, "empty");
    let api_job = api
        .create_job(app.clone(), job(T::Api, ""))
        .await
        .unwrap()
        .id;
    let some = Backfill {
        from: T0,
        to: T0 + HOUR,
        dry_run: true,
    };
    refused(
        api.backfill_job(app.clone(), api_job, some).await,
        "no trigger times",
    );
    server.shutdown().await;
}
