//! Restart on the log store: jobs, instances, delayed runs and next triggers survive (also
//! when the server is dropped without a shutdown), scheduling resumes, missed triggers follow
//! the misfire policy, and dispatched instances are reconciled with their workers.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod server_runtime_support;

use ferrojob::api::{JobBody, RunJob};
use ferrojob::clock::VirtualClock;
use ferrojob::model::InstanceStatus as S;
use ferrojob::server::StoreChoice;
use ferrojob::time_expression::TimeExpressionType as T;
use ferrojob_transport::message::InstanceStatus as W;
use server_runtime_support::*;

fn log(dir: &tempfile::TempDir) -> StoreChoice {
    StoreChoice::Log {
        dir: dir.path().to_path_buf(),
    }
}

#[tokio::test]
async fn state_survives_a_restart_and_scheduling_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let clock = VirtualClock::new(T0);
    let (fr, api_job, delayed, first_run) = {
        let server = start(config(log(&dir), Some(&clock))).await;
        let api = server.api();
        let app = app(&api, "a").await;
        let w = FakeWorker::connect(server.transport_addr(), "a", "w1:1", &[], Mode::Succeed).await;
        w.register(&api, &app, 8, T0).await;
        let fr = api
            .create_job(app.clone(), job(T::FixedRate, "1000"))
            .await
            .unwrap()
            .id;
        let api_job = api
            .create_job(app.clone(), job(T::Api, ""))
            .await
            .unwrap()
            .id;
        clock.advance(1000);
        let first_run = succeeded(&api, &app, fr, 1).await.remove(0);
        let delayed = api
            .run_job(
                app.clone(),
                api_job,
                RunJob {
                    params: "later".into(),
                    delay_ms: 30_000,
                },
            )
            .await
            .unwrap()
            .instance_id;
        // Like kill -9 for the scheduler: no shutdown, acknowledged writes are durable.
        drop(server);
        w.handle.shutdown().await;
        (fr, api_job, delayed, first_run)
    };
    // Down for 500 ms: the FIXED_RATE trigger at T0+2000 is late by less than the threshold.
    clock.advance(500);
    let server = start(config(log(&dir), Some(&clock))).await;
    let api = server.api();
    let app = api.resolve_app("a").unwrap();
    let j = api.get_job(app.clone(), fr).await.unwrap();
    assert_eq!(j.runs, 1);
    assert_eq!(j.next_trigger_time, Some(T0 + 2000));
    let v = api.get_instance(app.clone(), first_run.id).await.unwrap();
    assert_eq!(v.status, S::Succeed);
    let d = api.get_instance(app.clone(), delayed).await.unwrap();
    assert_eq!(d.status, S::WaitingDispatch);
    assert_eq!(d.params, "later");
    let w = FakeWorker::connect(server.transport_addr(), "a", "w1:1", &[], Mode::Succeed).await;
    w.register(&api, &app, 8, T0 + 1500).await;
    clock.advance(500);
    let runs = succeeded(&api, &app, fr, 2).await;
    assert_eq!(runs[1].run, 2, "the run counter continues");
    assert_eq!(runs[1].trigger_time, T0 + 2000);
    clock.advance(29_000);
    status_is(&api, &app, delayed, S::Succeed).await;
    assert_eq!(instances(&api, &app, api_job).await.len(), 1);
    // A new app id and new instance ids are fresh.
    let b = server_runtime_support::app(&api, "b").await;
    assert!(b.id.0 > app.id.0);
    let id = run(&api, &app, api_job).await;
    assert!(id > delayed);
    status_is(&api, &app, id, S::Succeed).await;
    server.shutdown().await;
}

#[tokio::test]
async fn triggers_missed_while_down_follow_the_misfire_policy() {
    let dir = tempfile::tempdir().unwrap();
    let clock = VirtualClock::new(T0);
    let mut ids = Vec::new();
    {
        let server = start(config(log(&dir), Some(&clock))).await;
        let api = server.api();
        let app = app(&api, "a").await;
        for policy in ["FIRE_ONCE", "FIRE_ALL", "SKIP"] {
            let mut body: JobBody = job(T::Cron, "0 * * * * ?");
            body.misfire = serde_json::from_value(serde_json::json!(policy)).unwrap();
            ids.push(api.create_job(app.clone(), body).await.unwrap().id);
        }
        server.shutdown().await;
    }
    // Down for ten minutes and 30 s.
    clock.advance(630_000);
    let server = start(config(log(&dir), Some(&clock))).await;
    let api = server.api();
    let app = api.resolve_app("a").unwrap();
    let w = FakeWorker::connect(server.transport_addr(), "a", "w1:1", &[], Mode::Succeed).await;
    w.register(&api, &app, 8, T0 + 630_000).await;
    // The catch-up fires race the worker's registration: a fire that found no worker yet is
    // tried again one no-worker pause (500 ms) later, on the virtual clock.
    clock.advance(500);
    let once = succeeded(&api, &app, ids[0], 1).await;
    assert_eq!(once[0].trigger_time, T0 + 60_000);
    succeeded(&api, &app, ids[1], 10).await;
    for j in &ids {
        assert_eq!(
            api.get_job(app.clone(), *j)
                .await
                .unwrap()
                .next_trigger_time,
            Some(T0 + 660_000)
        );
    }
    assert!(instances(&api, &app, ids[2]).await.is_empty());
    clock.advance(30_000);
    succeeded(&api, &app, ids[2], 1).await;
    succeeded(&api, &app, ids[0], 2).await;
    server.shutdown().await;
}

#[tokio::test]
async fn running_instances_are_reconciled_with_their_workers_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let clock = VirtualClock::new(T0);
    let (done, lost, waiting, orphan) = {
        let server = start(config(log(&dir), Some(&clock))).await;
        let api = server.api();
        let app = app(&api, "a").await;
        let addr = server.transport_addr();
        let mut w = FakeWorker::connect(addr, "a", "w1:1", &[], Mode::Hold).await;
        let mut x = FakeWorker::connect(addr, "a", "x:1", &["x"], Mode::Hold).await;
        w.register(&api, &app, 64, T0).await;
        x.register(&api, &app, 1, T0).await;
        let j = api
            .create_job(app.clone(), job(T::Api, ""))
            .await
            .unwrap()
            .id;
        let mut body = job(T::Api, "");
        body.dispatch_strategy = ferrojob::model::DispatchStrategy::Specify;
        body.designated_workers = vec!["x".into()];
        let jx = api.create_job(app.clone(), body).await.unwrap().id;
        let done = run(&api, &app, j).await;
        let lost = run(&api, &app, j).await;
        let orphan = run(&api, &app, jx).await;
        for _ in 0..2 {
            w.next_schedule().await;
        }
        x.next_schedule().await;
        for id in [done, lost, orphan] {
            status_is(&api, &app, id, S::Running).await;
        }
        *w.mode.lock().unwrap() = Mode::Silent;
        let waiting = run(&api, &app, j).await;
        w.next_schedule().await;
        status_is(&api, &app, waiting, S::WaitingWorkerReceive).await;
        server.shutdown().await;
        (done, lost, waiting, orphan)
    };
    let server = start(config(log(&dir), Some(&clock))).await;
    let api = server.api();
    let app = api.resolve_app("a").unwrap();
    // RUNNING lives in memory only: the store has the dispatch (WAITING_WORKER_RECEIVE).
    assert_eq!(
        api.get_instance(app.clone(), done).await.unwrap().status,
        S::WaitingWorkerReceive
    );
    // w1 comes back: it finished `done` meanwhile and never heard of `lost` or `waiting`.
    let mut w = FakeWorker::connect_knowing(
        server.transport_addr(),
        "a",
        "w1:1",
        Mode::Succeed,
        done.0,
        W::Succeed,
        "finished while the server was down",
    )
    .await;
    let v = status_is(&api, &app, done, S::Succeed).await;
    assert_eq!(
        v.result.as_deref(),
        Some("finished while the server was down")
    );
    let v = status_is(&api, &app, lost, S::Failed).await;
    assert!(v.result.unwrap().contains("no longer knows"));
    let v = status_is(&api, &app, waiting, S::Failed).await;
    assert!(v.result.unwrap().contains("no longer knows"));
    w.register(&api, &app, 64, T0).await;
    assert!(w.no_schedule_pending());
    // x never comes back: after the grace period its instance goes to the retry policy.
    assert_eq!(
        api.get_instance(app.clone(), orphan).await.unwrap().status,
        S::WaitingWorkerReceive
    );
    clock.advance(10_000);
    let v = status_is(&api, &app, orphan, S::Failed).await;
    assert!(
        v.result.as_deref().unwrap().contains("did not come back"),
        "{v:?}"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn waiting_instances_are_dispatched_once_workers_reconnect() {
    let dir = tempfile::tempdir().unwrap();
    let clock = VirtualClock::new(T0);
    let (j, id) = {
        let server = start(config(log(&dir), Some(&clock))).await;
        let api = server.api();
        let app = app(&api, "a").await;
        let j = api
            .create_job(app.clone(), job(T::Api, ""))
            .await
            .unwrap()
            .id;
        // No worker yet: it waits (the no-worker retries need the virtual clock to move).
        let id = run(&api, &app, j).await;
        drop(server);
        (j, id)
    };
    let server = start(config(log(&dir), Some(&clock))).await;
    let api = server.api();
    let app = api.resolve_app("a").unwrap();
    assert_eq!(
        api.get_instance(app.clone(), id).await.unwrap().status,
        S::WaitingDispatch
    );
    // Within the grace period the attempts do not count, however many there are.
    for _ in 0..10 {
        clock.advance(500);
    }
    let w = FakeWorker::connect(server.transport_addr(), "a", "w1:1", &[], Mode::Succeed).await;
    w.register(&api, &app, 8, T0 + 5000).await;
    let v = until("dispatched after the worker came", || async {
        clock.advance(500);
        let v = api.get_instance(app.clone(), id).await.unwrap();
        (v.status == S::Succeed).then_some(v)
    })
    .await;
    assert_eq!(v.running_times, 1);
    assert_eq!(instances(&api, &app, j).await.len(), 1);
    server.shutdown().await;
}

/// An `Idempotency-Key`'s answer is durable: after a restart without shutdown, the same key on
/// the same run route answers the first run again and creates no second one.
#[tokio::test]
async fn an_idempotency_key_gives_its_first_run_after_a_restart() {
    use ferrojob::api::{InstanceQuery, RunCreated};
    use ferrojob::http::{HttpConfig, HttpServer};
    use std::sync::Arc;

    const ADMIN: &str = "the-admin-token";
    let dir = tempfile::tempdir().unwrap();
    let clock = VirtualClock::new(T0);
    let serve = |server: &ferrojob::server::ServerCore| {
        let mut c = HttpConfig::new(ADMIN);
        c.clock = Arc::new(clock.clone());
        HttpServer::bind(local(), server.api(), c)
    };
    let post = |url: String, key: &'static str| async move {
        let resp = ferrojob::https::HttpsRoots::public()
            .client()
            .unwrap()
            .post(url)
            .bearer_auth(ADMIN)
            .header("Idempotency-Key", key)
            .send()
            .await
            .unwrap();
        (resp.status().as_u16(), resp.bytes().await.unwrap().to_vec())
    };
    let run_created = |(status, body): (u16, Vec<u8>)| {
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        serde_json::from_slice::<RunCreated>(&body)
            .unwrap()
            .instance_id
    };
    let (job, first) = {
        let server = start(config(log(&dir), Some(&clock))).await;
        let api = server.api();
        let app = app(&api, "a").await;
        let job = api.create_job(app, job(T::Api, "")).await.unwrap().id;
        let http = serve(&server).await.unwrap();
        let url = format!(
            "http://{}/v1/apps/a/jobs/{}/run",
            http.local_addr(),
            job.get()
        );
        let first = run_created(post(url.clone(), "k-1").await);
        assert_eq!(run_created(post(url, "k-1").await), first);
        // Like kill -9: no shutdown, acknowledged writes are durable.
        drop(http);
        drop(server);
        (job, first)
    };
    clock.advance(60_000);
    let server = start(config(log(&dir), Some(&clock))).await;
    let http = serve(&server).await.unwrap();
    let url = format!(
        "http://{}/v1/apps/a/jobs/{}/run",
        http.local_addr(),
        job.get()
    );
    assert_eq!(run_created(post(url.clone(), "k-1").await), first);
    let other = run_created(post(url, "k-2").await);
    assert_ne!(other, first);
    let api = server.api();
    let app = api.resolve_app("a").unwrap();
    let runs = api
        .list_instances(app, InstanceQuery::default())
        .await
        .unwrap();
    assert_eq!(runs.items.len(), 2, "one run per key: {:?}", runs.items);
    http.shutdown().await;
    server.shutdown().await;
}

/// A scheduled run's trigger key is the job and its trigger time, the same after a crash of
/// the server: the run a worker lost while the server was down is retried under the same key
/// with the next attempt number.
#[tokio::test]
async fn a_run_keeps_its_trigger_key_across_a_server_crash_and_its_retry() {
    const HOUR: i64 = 3_600_000;
    let dir = tempfile::tempdir().unwrap();
    let clock = VirtualClock::new(T0);
    let (j, fired) = {
        let server = start(config(log(&dir), Some(&clock))).await;
        let api = server.api();
        let app = app(&api, "a").await;
        let mut w =
            FakeWorker::connect(server.transport_addr(), "a", "w1:1", &[], Mode::Hold).await;
        w.register(&api, &app, 8, T0).await;
        let mut body = job(T::FixedRate, &HOUR.to_string());
        body.instance_retries = 1;
        let j = api.create_job(app.clone(), body).await.unwrap().id;
        clock.advance(HOUR as u64);
        let fired = w.next_schedule().await;
        assert_eq!(fired.trigger_key, format!("job-{}-at-{}", j.0, T0 + HOUR));
        assert_eq!(fired.report_seq_base >> 32, 1);
        // Like kill -9: no shutdown.
        drop(server);
        w.handle.shutdown().await;
        (j, fired)
    };
    let server = start(config(log(&dir), Some(&clock))).await;
    let api = server.api();
    let app = api.resolve_app("a").unwrap();
    // The worker comes back without the run: the run may have been lost, so the retry
    // policy sends it again at once.
    let mut w = FakeWorker::connect(server.transport_addr(), "a", "w1:1", &[], Mode::Hold).await;
    w.register(&api, &app, 8, T0 + HOUR).await;
    let retried = w.next_schedule().await;
    assert_eq!(retried.instance_id, fired.instance_id);
    assert_eq!(retried.trigger_key, fired.trigger_key);
    assert_eq!(retried.trigger_time_ms, T0 + HOUR);
    assert_eq!(retried.report_seq_base >> 32, 2, "the next attempt");
    let v = api.get_job(app.clone(), j).await.unwrap();
    assert_eq!(v.runs, 1, "no second fire of the same trigger");
    server.shutdown().await;
}
