//! The core on its own, driven by hand: the behaviours the simulator found wrong once, and
//! the harness (a core over a memory store, a worker, a virtual clock) the other core tests
//! share.

use std::sync::Arc;

use ferrojob_store::MemoryStore;
use ferrojob_transport::message::{self as wire, ReportInstanceStatus};

use super::*;
use crate::dispatch::{RegistryConfig, TrackerCounts, WorkerMetrics, WorkerStatus};
use crate::policy::RetryBackoff;
use crate::server::{JobRecord, LoadedState, Repo};
use crate::time_expression::TimeExpressionType;

pub(super) const T0: EpochMs = 1_767_225_600_000;

pub(super) fn core() -> (Core, AppId) {
    let store: Arc<dyn ferrojob_store::Store> = Arc::new(MemoryStore::new());
    let repo = Arc::new(Repo::open(store).unwrap());
    let app = repo
        .create_app("a", "secret-secret-secret", T0)
        .unwrap()
        .wait()
        .unwrap();
    let registry = Arc::new(
        WorkerRegistry::new(RegistryConfig {
            heartbeat_interval_ms: 1000,
            ..RegistryConfig::default()
        })
        .unwrap(),
    );
    let config = CoreConfig {
        heartbeat_interval_ms: 1000,
        worker_receive_timeout_ms: 10_000,
        keep_finished_runs: 100,
        keep_finished_workflow_runs: 100,
        retention_ms: 0,
        misfire_threshold_ms: 5000,
        restart_grace_ms: 3000,
        min_period_ms: 1,
    };
    let mut core = Core::new(
        config,
        repo,
        registry,
        Arc::new(Metrics::default()),
        SelectState::seeded(1),
        T0,
    );
    let id = app.id;
    core.add_app(app);
    (core, id)
}

pub(super) fn heartbeat(core: &mut Core, addr: &str) {
    heartbeat_of(core, "a", addr);
}

/// A heartbeat of `app_name`'s worker `addr`: healthy, 4 cores, lightly loaded.
pub(super) fn heartbeat_of(core: &mut Core, app_name: &str, addr: &str) {
    let status = WorkerStatus {
        address: addr.into(),
        tags: Vec::new(),
        version: "1".into(),
        overloaded: false,
        trackers: TrackerCounts::default(),
    };
    let metrics = WorkerMetrics {
        cpu_cores: 4,
        cpu_load: 0.1,
        memory_used_bytes: 1 << 30,
        memory_max_bytes: 8 << 30,
        disk_used_bytes: 1 << 30,
        disk_total_bytes: 100 << 30,
        reported_score: 0,
    };
    core.on_heartbeat(app_name, &status, metrics);
}

/// One step at wall clock `wall` and monotonic clock `mono` (ms).
pub(super) fn at(core: &mut Core, wall: EpochMs, mono: EpochMs) {
    core.begin(wall * 1000, mono * 1000);
}

pub(super) fn report(
    id: InstanceId,
    from: &str,
    status: wire::InstanceStatus,
    seq: u64,
) -> ReportInstanceStatus {
    ReportInstanceStatus {
        app_id: 0,
        job_id: 0,
        instance_id: id.0,
        workflow_instance_id: None,
        status,
        result: None,
        total_tasks: 0,
        succeeded_tasks: 0,
        failed_tasks: 0,
        start_time_ms: T0,
        end_time_ms: None,
        report_time_ms: T0,
        report_seq: seq,
        source_address: from.into(),
        appended_workflow_context: Vec::new(),
        alert: false,
    }
}

fn stops(effects: &[Effect]) -> Vec<(String, u64)> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Send {
                worker,
                msg: Outgoing::Stop(s),
                ..
            } => Some((worker.clone(), s.instance_id)),
            _ => None,
        })
        .collect()
}

#[test]
fn a_wall_clock_stepped_forward_does_not_kill_live_workers() {
    let (mut core, app) = core();
    at(&mut core, T0, T0);
    core.worker_connected(app, "w1:1", 1);
    heartbeat(&mut core, "w1:1");
    // The wall clock jumps 10 s (an NTP step) while 500 ms pass.
    at(&mut core, T0 + 10_000, T0 + 500);
    core.on_tick(T0 + 10_000);
    assert_eq!(
        core.registry.workers("a").len(),
        1,
        "the worker was declared dead"
    );
    // Missed heartbeats on the monotonic clock still count.
    at(&mut core, T0 + 13_000, T0 + 3_500);
    core.on_tick(T0 + 13_000);
    assert!(core.registry.workers("a").is_empty());
}

#[test]
fn a_wall_clock_stepped_forward_does_not_cut_the_restart_grace_short() {
    let (mut core, app) = core();
    let mut rec = InstanceRecord::new(JobId(1), app, "", T0);
    rec.id = InstanceId(7);
    rec.dispatch("w1:1", T0).unwrap();
    let loaded = LoadedState {
        apps: vec![core.apps.values().next().cloned().unwrap()],
        jobs: Vec::new(),
        delayed: Vec::new(),
        active: vec![rec],
    };
    at(&mut core, T0, T0);
    core.recover(loaded, T0);
    // The wall clock jumps past the grace while only 1 s passes: the instance still waits for
    // its worker.
    at(&mut core, T0 + 10_000, T0 + 1_000);
    core.on_timers(T0 + 10_000);
    assert!(core.reconcile.contains_key(&(app, "w1:1".to_owned())));
    assert_eq!(
        core.active.get(&InstanceId(7)).map(|s| s.rec.status),
        Some(InstanceStatus::WaitingWorkerReceive)
    );
    // Once 3 s passed on the monotonic clock, the grace is over.
    at(&mut core, T0 + 12_500, T0 + 3_500);
    core.on_timers(T0 + 12_500);
    assert!(core.reconcile.is_empty());
}

#[test]
fn a_worker_running_an_attempt_it_no_longer_holds_is_told_to_stop() {
    let (mut core, app) = core();
    at(&mut core, T0, T0);
    let mut rec = InstanceRecord::new(JobId(1), app, "", T0);
    rec.id = InstanceId(9);
    rec.dispatch("w2:1", T0).unwrap();
    core.admit(rec);
    // w1 still runs an earlier attempt (it was thought dead, the instance went to w2).
    core.on_report(
        app,
        "w1:1",
        &report(InstanceId(9), "w1:1", wire::InstanceStatus::Running, 5),
        T0,
    );
    // And an instance the server no longer holds at all.
    core.on_report(
        app,
        "w1:1",
        &report(InstanceId(10), "w1:1", wire::InstanceStatus::Running, 5),
        T0,
    );
    // A final report from it changes nothing and stops nothing.
    core.on_report(
        app,
        "w1:1",
        &report(InstanceId(9), "w1:1", wire::InstanceStatus::Succeed, 6),
        T0,
    );
    assert_eq!(
        stops(&core.take_effects()),
        vec![("w1:1".to_owned(), 9), ("w1:1".to_owned(), 10)]
    );
    assert_eq!(
        core.active.get(&InstanceId(9)).map(|s| s.rec.status),
        Some(InstanceStatus::WaitingWorkerReceive)
    );
}

#[test]
fn a_wall_clock_stepped_forward_does_not_fire_the_receive_check_early() {
    let (mut core, app) = core();
    at(&mut core, T0, T0);
    let mut rec = InstanceRecord::new(JobId(1), app, "", T0);
    rec.id = InstanceId(11);
    rec.dispatch("w1:1", T0).unwrap();
    core.admit(rec);
    if let Some(st) = core.active.get_mut(&InstanceId(11)) {
        st.handed_live = T0;
    }
    let status = |core: &Core| core.active.get(&InstanceId(11)).map(|s| s.rec.status);
    // The wall clock jumps past the receive timeout while 1 s passes: still waiting.
    at(&mut core, T0 + 11_000, T0 + 1_000);
    core.on_receive_check(InstanceId(11), T0, T0 + 11_000);
    assert_eq!(status(&core), Some(InstanceStatus::WaitingWorkerReceive));
    assert!(stops(&core.take_effects()).is_empty());
    // 10 s on the monotonic clock: requeued, and the worker told to stop.
    at(&mut core, T0 + 20_000, T0 + 10_000);
    core.on_receive_check(InstanceId(11), T0, T0 + 20_000);
    assert_eq!(status(&core), Some(InstanceStatus::WaitingDispatch));
    assert_eq!(stops(&core.take_effects()), vec![("w1:1".to_owned(), 11)]);
}

// The harness the retry, overlap, calendar and stats tests share: on a virtual clock, every
// write is acknowledged at once (a memory store) and the step's follow-ups run before the
// next input.

/// A ScheduleJob sent: (worker, instance, report_seq_base).
pub(super) type Sent = (String, u64, u64);

/// Carries out the step's effects at `now` until none is left: each write is acknowledged
/// and resumed. Returns the ScheduleJobs and StopInstances sent, in order.
pub(super) fn settle(core: &mut Core, now: EpochMs) -> (Vec<Sent>, Vec<(String, u64)>) {
    let (mut sent, mut stopped) = (Vec::new(), Vec::new());
    loop {
        let effects = core.take_effects();
        if effects.is_empty() {
            return (sent, stopped);
        }
        for e in effects {
            match e {
                Effect::Await(Awaited::Write(c, then)) => {
                    let ok = c.wait().is_ok();
                    core.resume(then, ok, now);
                }
                Effect::Await(Awaited::Created(c, then)) => {
                    core.created(c.wait(), then, now);
                }
                Effect::Await(Awaited::Detached(c)) => {
                    let _ = c.wait();
                }
                Effect::Send {
                    worker,
                    msg: Outgoing::Schedule { msg, .. },
                    ..
                } => sent.push((worker, msg.instance_id, msg.report_seq_base)),
                Effect::Send {
                    worker,
                    msg: Outgoing::Stop(s),
                    ..
                } => stopped.push((worker, s.instance_id)),
                _ => {}
            }
        }
    }
}

/// Steps the virtual clock to `now` (wall and monotonic alike) and runs the due timers; the
/// worker keeps beating.
pub(super) fn tick(core: &mut Core, now: EpochMs) -> (Vec<Sent>, Vec<(String, u64)>) {
    at(core, now, now);
    heartbeat(core, "w1:1");
    core.on_timers(now);
    settle(core, now)
}

/// A core with one connected worker `w1:1` and job `job` (created and scheduled).
pub(super) fn with_job(job: impl FnOnce(&mut JobRecord)) -> (Core, AppId, JobId) {
    let (mut core, app) = core();
    at(&mut core, T0, T0);
    core.worker_connected(app, "w1:1", 1);
    heartbeat(&mut core, "w1:1");
    let mut rec = JobRecord::new(app, "j", TimeExpressionType::Api, "", "noop");
    job(&mut rec);
    let def = JobDef::new(rec.clone()).unwrap();
    let next = def.initial_next(T0);
    let saved = core.repo.create_job(rec, next, T0).unwrap().wait().unwrap();
    let id = core.job_created(saved, "a", next).unwrap();
    (core, app, id)
}

/// An API run of `job` at `now`: its instance (None: refused).
pub(super) fn run(core: &mut Core, app: AppId, job: JobId, now: EpochMs) -> Option<InstanceId> {
    at(core, now, now);
    let (c, then) = core.prepare_run(app, job, String::new(), 0, now).ok()?;
    let id = core.created(c.wait(), then, now);
    settle(core, now);
    id
}

/// The worker reports `status` for the attempt whose ScheduleJob was `sent`.
pub(super) fn worker_says(
    core: &mut Core,
    app: AppId,
    sent: &Sent,
    status: wire::InstanceStatus,
    now: EpochMs,
) {
    at(core, now, now);
    // RUNNING is the attempt's first report, a final one its second.
    let seq = if status == wire::InstanceStatus::Running {
        1
    } else {
        2
    };
    let r = report(InstanceId(sent.1), &sent.0, status, sent.2 + seq);
    core.on_report(app, &sent.0, &r, now);
}

pub(super) fn status_of(core: &Core, id: InstanceId) -> Option<InstanceStatus> {
    match core.active.get(&id) {
        Some(st) => Some(st.rec.status),
        None => core.repo.get_instance(id).ok().map(|r| r.status),
    }
}

/// The ScheduleJob of a run that was dispatched when it was created.
pub(super) fn core_sent_first(core: &mut Core, id: InstanceId) -> Sent {
    let st = core.active.get(&id).unwrap();
    assert_eq!(st.rec.status, InstanceStatus::WaitingWorkerReceive);
    (st.rec.worker.clone().unwrap(), id.0, st.rec.report_seq)
}

#[test]
fn a_worker_back_on_a_new_connection_while_the_old_looks_open_is_asked_what_it_holds() {
    let (mut core, app, job) = with_job(|_| {});
    let id = run(&mut core, app, job, T0).unwrap();
    // The ScheduleJob went into connection 1, which the worker had already lost (half-open):
    // the worker comes back on connection 2 before the server notices connection 1 closed.
    at(&mut core, T0 + 100, T0 + 100);
    assert_eq!(core.worker_connected(app, "w1:1", 2), Some(1));
    let queried: Vec<InstanceId> = core
        .take_effects()
        .into_iter()
        .filter_map(|e| match e {
            Effect::Query { worker, ids, .. } if worker == "w1:1" => Some(ids),
            _ => None,
        })
        .flatten()
        .collect();
    assert_eq!(queried, vec![id]);
}

/// Holds calendar `name` of `app` excluding `excluded`, read in `zone`.
pub(super) fn put_calendar(core: &mut Core, app: AppId, name: &str, zone: &str, excluded: &[&str]) {
    core.calendar_put(&crate::server::calendar_repo::CalendarRecord {
        app_id: app,
        name: name.into(),
        time_zone: zone.into(),
        excluded: excluded.iter().map(|e| (*e).to_owned()).collect(),
        description: String::new(),
        updated_at: T0,
    });
}

/// The worker of the attempt `sent` reports `status` with report number `n` of the attempt,
/// saying the attempt started at `started` on its clock.
fn worker_reports_start(
    core: &mut Core,
    app: AppId,
    sent: &Sent,
    (status, n): (wire::InstanceStatus, u64),
    started: EpochMs,
    now: EpochMs,
) {
    at(core, now, now);
    let mut r = report(InstanceId(sent.1), &sent.0, status, sent.2 + n);
    r.start_time_ms = started;
    core.on_report(app, &sent.0, &r, now);
    settle(core, now);
}

#[test]
fn an_attempts_start_time_is_its_first_reported_start_kept_within_dispatch_and_receipt() {
    let (mut core, app, job) = with_job(|j| {
        j.instance_retries = 2;
        j.retry_backoff = RetryBackoff::fixed(100);
    });
    const RUNNING: wire::InstanceStatus = wire::InstanceStatus::Running;
    const FAILED: wire::InstanceStatus = wire::InstanceStatus::Failed;
    const SUCCEED: wire::InstanceStatus = wire::InstanceStatus::Succeed;
    let id = run(&mut core, app, job, T0).unwrap();
    let started = |core: &Core| core.active.get(&id).and_then(|st| st.rec.started_time);
    let sent = core_sent_first(&mut core, id);
    assert_eq!(
        started(&core),
        None,
        "not started before the worker says so"
    );
    // Attempt 1: the first RUNNING report's start is kept; a keepalive's is not.
    worker_reports_start(&mut core, app, &sent, (RUNNING, 1), T0 + 20, T0 + 50);
    assert_eq!(started(&core), Some(T0 + 20));
    worker_reports_start(&mut core, app, &sent, (RUNNING, 2), T0 + 45, T0 + 60);
    assert_eq!(started(&core), Some(T0 + 20));
    worker_reports_start(&mut core, app, &sent, (FAILED, 3), T0 + 20, T0 + 100);
    // The requeue's write keeps the failed attempt's start with its dispatch time.
    assert_eq!(
        core.repo.get_instance(id).unwrap().started_time,
        Some(T0 + 20)
    );
    // Attempt 2, dispatched at T0 + 200: the start is the new attempt's again, and a worker
    // clock behind the server's cannot put it before the dispatch.
    let (sent, _) = tick(&mut core, T0 + 200);
    let sent = sent.into_iter().next().unwrap();
    assert_eq!(started(&core), None, "a new attempt has not started yet");
    worker_reports_start(&mut core, app, &sent, (RUNNING, 1), T0 - 5_000, T0 + 230);
    assert_eq!(started(&core), Some(T0 + 200));
    worker_reports_start(&mut core, app, &sent, (FAILED, 2), T0 - 5_000, T0 + 300);
    // Attempt 3, at T0 + 400: a worker clock ahead cannot put it after the report arrived.
    // Its first report is already final (the run was quicker than its RUNNING report).
    let (sent, _) = tick(&mut core, T0 + 400);
    let sent = sent.into_iter().next().unwrap();
    worker_reports_start(&mut core, app, &sent, (SUCCEED, 1), T0 + 9_000, T0 + 450);
    let stored = core.repo.get_instance(id).unwrap();
    assert_eq!(stored.status, InstanceStatus::Succeed);
    assert_eq!(stored.actual_trigger_time, Some(T0 + 400));
    assert_eq!(stored.started_time, Some(T0 + 450));
    assert_eq!(stored.finished_time, Some(T0 + 450));
}
