//! The core on its own, driven by hand: the behaviours the simulator found wrong once.

use std::sync::Arc;

use ferrojob_store::MemoryStore;
use ferrojob_transport::message::{self as wire, ReportInstanceStatus};

use super::*;
use crate::dispatch::{RegistryConfig, TrackerCounts, WorkerMetrics, WorkerStatus};
use crate::server::{LoadedState, Repo};

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

// Retry backoff and overlap policies, on a virtual clock: every write is acknowledged at
// once (a memory store) and the step's follow-ups run before the next input.

use crate::policy::{OverlapPolicy, RetryBackoff};
use crate::server::JobRecord;
use crate::time_expression::TimeExpressionType;

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
fn run(core: &mut Core, app: AppId, job: JobId, now: EpochMs) -> Option<InstanceId> {
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

fn status_of(core: &Core, id: InstanceId) -> Option<InstanceStatus> {
    match core.active.get(&id) {
        Some(st) => Some(st.rec.status),
        None => core.repo.get_instance(id).ok().map(|r| r.status),
    }
}

/// Runs a job with 3 retries and `backoff`; its every attempt fails. Returns the delay
/// before each retry, as the core armed it and as the API shows it (`next_retry_at`).
fn retry_delays(backoff: RetryBackoff) -> (InstanceId, Vec<i64>) {
    let (mut core, app, job) = with_job(|j| {
        j.instance_retries = 3;
        j.retry_backoff = backoff;
    });
    let id = run(&mut core, app, job, T0).unwrap();
    let mut sent = core_sent_first(&mut core, id);
    let mut now = T0;
    let mut delays = Vec::new();
    for _ in 0..3 {
        now += 10;
        worker_says(&mut core, app, &sent, wire::InstanceStatus::Failed, now);
        settle(&mut core, now);
        let st = core.active.get(&id).unwrap();
        assert_eq!(st.rec.status, InstanceStatus::WaitingDispatch);
        let due = st
            .held_view()
            .next_retry_at
            .expect("the next retry time is shown");
        delays.push(due - now);
        // Not a millisecond early.
        let (early, _) = tick(&mut core, due - 1);
        assert!(early.is_empty(), "dispatched before its backoff");
        let (on_time, _) = tick(&mut core, due);
        assert_eq!(on_time.len(), 1, "dispatched when its backoff ends");
        assert_eq!(
            core.active.get(&id).unwrap().held_view().next_retry_at,
            None
        );
        sent = on_time.into_iter().next().unwrap();
        now = due;
    }
    // Retries exhausted: FAILED.
    worker_says(&mut core, app, &sent, wire::InstanceStatus::Failed, now + 1);
    settle(&mut core, now + 1);
    assert_eq!(status_of(&core, id), Some(InstanceStatus::Failed));
    (id, delays)
}

/// The ScheduleJob of a run that was dispatched when it was created.
fn core_sent_first(core: &mut Core, id: InstanceId) -> Sent {
    let st = core.active.get(&id).unwrap();
    assert_eq!(st.rec.status, InstanceStatus::WaitingWorkerReceive);
    (st.rec.worker.clone().unwrap(), id.0, st.rec.report_seq)
}

#[test]
fn each_retry_shape_waits_its_delays_on_the_virtual_clock() {
    let check =
        |b: RetryBackoff, expected: &[i64]| assert_eq!(retry_delays(b).1, expected, "{b:?}");
    // The default is the server's historical backoff.
    check(RetryBackoff::default(), &[1_000, 2_000, 4_000]);
    check(RetryBackoff::fixed(700), &[700, 700, 700]);
    check(
        RetryBackoff {
            factor: 3.0,
            ..RetryBackoff::exponential(100, 500)
        },
        &[100, 300, 500],
    );
    // Jitter: the same instance and attempts give the same delays, each within its bounds.
    let jittered = RetryBackoff {
        jitter: 0.5,
        ..RetryBackoff::fixed(1_000)
    };
    let (id, a) = retry_delays(jittered);
    assert_eq!(a, retry_delays(jittered).1, "jitter is deterministic");
    assert!(a.iter().all(|d| (500..=1_000).contains(d)), "{a:?}");
    let expected: Vec<i64> = (1..=3).map(|n| jittered.delay_ms(n, id.0) as i64).collect();
    assert_eq!(a, expected, "derived from the instance id and the attempt");
}

/// A job with `max_instances` 1 under `policy`, its first run dispatched to w1.
fn busy(policy: OverlapPolicy) -> (Core, AppId, JobId, InstanceId, Sent) {
    let (mut core, app, job) = with_job(|j| {
        j.max_instances = 1;
        j.overlap_policy = policy;
    });
    let first = run(&mut core, app, job, T0).unwrap();
    let sent = core_sent_first(&mut core, first);
    worker_says(&mut core, app, &sent, wire::InstanceStatus::Running, T0);
    (core, app, job, first, sent)
}

#[test]
fn overlap_fail_fails_the_extra_run() {
    let (mut core, app, job, first, _) = busy(OverlapPolicy::Fail);
    let second = run(&mut core, app, job, T0 + 1).unwrap();
    assert_eq!(status_of(&core, second), Some(InstanceStatus::Failed));
    let rec = core.repo.get_instance(second).unwrap();
    assert!(rec.result.unwrap().contains("max_instances"));
    assert_eq!(status_of(&core, first), Some(InstanceStatus::Running));
}

#[test]
fn overlap_skip_creates_nothing_and_counts() {
    let (mut core, app, job, first, sent) = busy(OverlapPolicy::Skip);
    // An API run is refused and counted.
    assert_eq!(run(&mut core, app, job, T0 + 1), None);
    assert!(core
        .prepare_run(app, job, String::new(), 0, T0 + 1)
        .is_err());
    assert_eq!(core.jobs[&job].skipped, 2);
    assert_eq!(
        core.metrics
            .runs_skipped
            .load(std::sync::atomic::Ordering::Relaxed),
        2
    );
    assert_eq!(core.active.len(), 1, "no instance was created");
    // A run that already has an instance (a retry, a workflow node) is CANCELED, counted.
    let rec = InstanceRecord::new(job, app, "", T0);
    let rec = core
        .repo
        .create_instance(rec, None)
        .unwrap()
        .wait()
        .unwrap();
    let held = rec.id;
    core.admit(rec);
    at(&mut core, T0 + 2, T0 + 2);
    core.dispatch(held, T0 + 2);
    settle(&mut core, T0 + 2);
    assert_eq!(status_of(&core, held), Some(InstanceStatus::Canceled));
    assert!(core
        .repo
        .get_instance(held)
        .unwrap()
        .result
        .unwrap()
        .contains("SKIP"));
    assert_eq!(core.jobs[&job].skipped, 3);
    // Once the slot is free, runs start again.
    worker_says(&mut core, app, &sent, wire::InstanceStatus::Succeed, T0 + 3);
    settle(&mut core, T0 + 3);
    assert_eq!(status_of(&core, first), Some(InstanceStatus::Succeed));
    assert!(run(&mut core, app, job, T0 + 4).is_some());
}

#[test]
fn overlap_skip_skips_scheduled_fires_and_keeps_the_schedule() {
    // A FIXED_RATE job every second whose runs last longer than that.
    let (mut core, app, job) = with_job(|j| {
        j.time_expression_type = TimeExpressionType::FixedRate;
        j.time_expression = "1000".into();
        j.max_instances = 1;
        j.overlap_policy = OverlapPolicy::Skip;
    });
    let (first, _) = tick(&mut core, T0 + 1_000);
    assert_eq!(first.len(), 1);
    let first = &first[0];
    worker_says(
        &mut core,
        app,
        first,
        wire::InstanceStatus::Running,
        T0 + 1_000,
    );
    for s in 2..=4 {
        let (sent, _) = tick(&mut core, T0 + s * 1_000);
        assert!(sent.is_empty(), "fire {s} was not skipped");
    }
    assert_eq!(core.jobs[&job].skipped, 3);
    assert_eq!(core.active.len(), 1, "skipped fires create no instance");
    assert_eq!(
        core.repo.trigger(job).and_then(|t| t.next_trigger),
        Some(T0 + 5_000),
        "the trigger moved on past the skipped fires"
    );
    worker_says(
        &mut core,
        app,
        first,
        wire::InstanceStatus::Succeed,
        T0 + 4_500,
    );
    settle(&mut core, T0 + 4_500);
    let (sent, _) = tick(&mut core, T0 + 5_000);
    assert_eq!(sent.len(), 1, "the next fire runs once the slot is free");
}

#[test]
fn overlap_queue_runs_the_waiting_runs_in_order_as_slots_free() {
    let (mut core, app, job, first, sent) = busy(OverlapPolicy::Queue);
    let queued: Vec<InstanceId> = (1..=3)
        .map(|i| run(&mut core, app, job, T0 + i).unwrap())
        .collect();
    for q in &queued {
        assert_eq!(status_of(&core, *q), Some(InstanceStatus::WaitingDispatch));
    }
    assert_eq!(
        core.jobs[&job].queue.iter().copied().collect::<Vec<_>>(),
        queued
    );
    // Each end frees the slot for the oldest waiting run, and only for it.
    let mut running = sent;
    let mut now = T0 + 10;
    let mut order = Vec::new();
    for _ in 0..3 {
        worker_says(&mut core, app, &running, wire::InstanceStatus::Succeed, now);
        let (s, _) = settle(&mut core, now);
        assert!(s.is_empty());
        let (s, _) = tick(&mut core, now);
        assert_eq!(s.len(), 1, "one slot, one run");
        running = s.into_iter().next().unwrap();
        order.push(InstanceId(running.1));
        worker_says(&mut core, app, &running, wire::InstanceStatus::Running, now);
        now += 10;
    }
    assert_eq!(order, queued, "first in, first out");
    assert!(core.jobs[&job].queue.is_empty());
    assert_eq!(status_of(&core, first), Some(InstanceStatus::Succeed));
}

#[test]
fn overlap_queue_is_bounded_and_survives_a_restart() {
    let (mut core, app, job, _first, _sent) = busy(OverlapPolicy::Queue);
    let queued: Vec<InstanceId> = (0..MAX_QUEUED_RUNS as i64)
        .map(|i| run(&mut core, app, job, T0 + 1 + i).unwrap())
        .collect();
    assert_eq!(core.jobs[&job].queue.len(), MAX_QUEUED_RUNS);
    // One more than the bound: FAILED, saying why.
    let over = run(&mut core, app, job, T0 + 1_000).unwrap();
    assert_eq!(status_of(&core, over), Some(InstanceStatus::Failed));
    assert!(core
        .repo
        .get_instance(over)
        .unwrap()
        .result
        .unwrap()
        .contains("queued"));
    // A restart: the queued runs are WAITING_DISPATCH on disk and queue again in order,
    // behind the run that was dispatched (its worker is asked about it).
    let loaded = core.repo.load().unwrap();
    let store_repo = Arc::clone(&core.repo);
    let (mut again, _) = core_on(store_repo);
    at(&mut again, T0 + 2_000, T0 + 2_000);
    again.recover(loaded, T0 + 2_000);
    assert_eq!(
        again.jobs[&job].queue.iter().copied().collect::<Vec<_>>(),
        queued
    );
}

/// A fresh core over an existing repository (a restart).
fn core_on(repo: Arc<Repo>) -> (Core, ()) {
    let registry = Arc::new(WorkerRegistry::new(RegistryConfig::default()).unwrap());
    let (template, _) = core();
    let core = Core::new(
        template.config.clone(),
        repo,
        registry,
        Arc::new(Metrics::default()),
        SelectState::seeded(1),
        T0,
    );
    (core, ())
}

#[test]
fn overlap_replace_stops_the_running_instance_then_starts_the_new_one() {
    let (mut core, app, job, first, _) = busy(OverlapPolicy::Replace);
    at(&mut core, T0 + 5, T0 + 5);
    let (c, then) = core
        .prepare_run(app, job, String::new(), 0, T0 + 5)
        .unwrap();
    let second = core.created(c.wait(), then, T0 + 5).unwrap();
    let (sent, stopped) = settle(&mut core, T0 + 5);
    assert_eq!(
        stopped,
        vec![("w1:1".to_owned(), first.0)],
        "the old run is stopped"
    );
    assert_eq!(sent.iter().map(|s| s.1).collect::<Vec<_>>(), vec![second.0]);
    assert_eq!(status_of(&core, first), Some(InstanceStatus::Stopped));
    let rec = core.repo.get_instance(first).unwrap();
    assert!(rec.result.unwrap().contains("REPLACE"));
    assert_eq!(
        status_of(&core, second),
        Some(InstanceStatus::WaitingWorkerReceive)
    );
    assert_eq!(core.jobs[&job].running.count(), 1);
}

#[test]
fn overlap_queue_follows_a_raised_limit_and_a_deleted_job() {
    let (mut core, app, job, _first, _sent) = busy(OverlapPolicy::Queue);
    let queued: Vec<InstanceId> = (1..=3)
        .map(|i| run(&mut core, app, job, T0 + i).unwrap())
        .collect();
    // Two more slots: the two oldest queued runs start, the third still waits.
    let mut rec = core.jobs[&job].def.record.clone();
    rec.max_instances = 3;
    at(&mut core, T0 + 10, T0 + 10);
    let (c, r) = core.replace_job(job, rec, T0 + 10).unwrap();
    core.job_replaced(c.wait().unwrap(), r).unwrap();
    // Each start wakes the next one at the following step.
    let mut sent = tick(&mut core, T0 + 10).0;
    sent.extend(tick(&mut core, T0 + 10).0);
    sent.extend(tick(&mut core, T0 + 10).0);
    assert_eq!(
        sent.iter().map(|s| InstanceId(s.1)).collect::<Vec<_>>(),
        queued[..2].to_vec()
    );
    assert_eq!(
        core.jobs[&job].queue.iter().copied().collect::<Vec<_>>(),
        vec![queued[2]]
    );
    // The job is deleted: its queued run does not wait forever.
    core.delete_job_begin(job).unwrap();
    core.repo.delete_job(job).unwrap().wait().unwrap();
    core.job_deleted(job);
    tick(&mut core, T0 + 20);
    assert_eq!(status_of(&core, queued[2]), Some(InstanceStatus::Failed));
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

#[test]
fn a_trigger_on_an_excluded_date_creates_no_instance_and_the_next_one_fires() {
    const HOUR: EpochMs = 3_600_000;
    // Daily at 23:30 UTC; the calendar excludes 2026-01-02 in Shanghai (UTC+8), which
    // starts at 16:00 UTC on the 1st: the trigger of 2026-01-01T23:30Z is excluded.
    let (mut core, app, job) = with_job(|j| {
        j.time_expression_type = TimeExpressionType::Cron;
        j.time_expression = "0 30 23 * * ?".into();
        j.calendars = vec!["cn".into()];
    });
    put_calendar(&mut core, app, "cn", "Asia/Shanghai", &["2026-01-02"]);
    let first = T0 + 23 * HOUR + HOUR / 2;
    assert_eq!(
        core.repo.trigger(job).and_then(|t| t.next_trigger),
        Some(first)
    );
    let (sent, _) = tick(&mut core, first);
    assert!(sent.is_empty(), "the excluded trigger ran");
    assert!(
        core.active.is_empty(),
        "an excluded trigger creates no instance"
    );
    assert_eq!(core.jobs[&job].calendar_skipped, 1);
    assert_eq!(core.jobs[&job].skipped, 0, "not the overlap policy's count");
    assert_eq!(
        core.metrics
            .runs_calendar_skipped
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    assert_eq!(
        core.repo.trigger(job).and_then(|t| t.next_trigger),
        Some(first + 24 * HOUR),
        "the next trigger is planned as usual"
    );
    // The next day is not excluded: it fires.
    let (sent, _) = tick(&mut core, first + 24 * HOUR);
    assert_eq!(sent.len(), 1);
    assert_eq!(core.jobs[&job].calendar_skipped, 1);
    // A run asked for through the API is not affected by calendars, on an excluded date too.
    put_calendar(&mut core, app, "cn", "UTC", &["2026-01-01..2026-01-31"]);
    assert!(run(&mut core, app, job, first + 24 * HOUR + 1).is_some());
}

#[test]
fn a_calendar_that_excludes_every_date_skips_each_trigger_without_searching() {
    let (mut core, app, job) = with_job(|j| {
        j.time_expression_type = TimeExpressionType::FixedRate;
        j.time_expression = "1000".into();
        j.misfire = crate::time_expression::MisfirePolicy::FireAll;
        j.calendars = vec!["never".into()];
    });
    put_calendar(&mut core, app, "never", "UTC", &["1970-01-01..2299-12-31"]);
    for s in 1..=3 {
        let (sent, _) = tick(&mut core, T0 + s * 1_000);
        assert!(sent.is_empty());
    }
    // A late step (FIRE_ALL catches up on the missed triggers): each one is excluded too.
    let (sent, _) = tick(&mut core, T0 + 6_000);
    assert!(sent.is_empty());
    assert_eq!(core.jobs[&job].calendar_skipped, 6);
    assert!(core.active.is_empty());
    assert_eq!(
        core.repo.trigger(job).and_then(|t| t.next_trigger),
        Some(T0 + 7_000)
    );
    // The calendar deleted, the job fires again.
    core.calendar_deleted(app, "never");
    let (sent, _) = tick(&mut core, T0 + 7_000);
    assert_eq!(sent.len(), 1);
}

#[test]
fn calendar_users_and_unknown_names() {
    let (mut core, app, job) = with_job(|j| j.calendars = vec!["fr".into()]);
    put_calendar(&mut core, app, "fr", "Europe/Paris", &["2026-07-14"]);
    let users = core.calendar_users(app, "fr");
    assert_eq!(users.jobs, vec![job]);
    assert!(core.calendar_users(app, "other").is_empty());
    let names = vec!["fr".to_owned(), "de".to_owned()];
    assert_eq!(core.unknown_calendar(app, &names), Some("de"));
    assert_eq!(core.unknown_calendar(app, &names[..1]), None);
    assert_eq!(core.unknown_calendar(AppId(999), &names[..1]), Some("fr"));
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

/// An API run of `job` created and ended with `status` at `now`.
fn run_ending(core: &mut Core, app: AppId, job: JobId, status: wire::InstanceStatus, now: i64) {
    at_step(core, now);
    let id = run(core, app, job, now).unwrap();
    let sent = core_sent_first(core, id);
    worker_says(core, app, &sent, status, now);
    settle(core, now);
    assert!(status_of(core, id).is_some_and(|s| s.is_final()));
}

/// A step at `now` in which the worker beats.
fn at_step(core: &mut Core, now: i64) {
    at(core, now, now);
    heartbeat(core, "w1:1");
}

#[test]
fn per_app_counts_fall_in_minute_buckets_and_age_out_of_their_windows() {
    const MIN: i64 = 60_000;
    const SUCCEED: wire::InstanceStatus = wire::InstanceStatus::Succeed;
    const FAILED: wire::InstanceStatus = wire::InstanceStatus::Failed;
    let (mut core, app, job) = with_job(|_| {});
    // T0 is a whole hour: minute 0 of the ring ends at T0 + 59_999.
    run_ending(&mut core, app, job, SUCCEED, T0 + MIN - 1);
    run_ending(&mut core, app, job, FAILED, T0 + MIN);
    run_ending(&mut core, app, job, SUCCEED, T0 + 60 * MIN - 1);
    let r = core.stats.read(app, T0 + 60 * MIN);
    assert_eq!(r.since, T0, "the core started counting at T0");
    // Minutes 56 to 60: the run of minute 59.
    let w = r.last_5_minutes;
    assert_eq!(
        (w.from, w.finished, w.succeeded, w.failed),
        (T0 + 56 * MIN, 1, 1, 0)
    );
    // Minutes 1 to 60: minute 0's run is out.
    let w = r.last_hour;
    assert_eq!(
        (w.from, w.finished, w.succeeded, w.failed),
        (T0 + MIN, 2, 1, 1)
    );
    // The day reaches back before T0: it counts from T0, every run.
    let w = r.last_day;
    assert_eq!((w.from, w.finished, w.succeeded, w.failed), (T0, 3, 2, 1));
    assert_eq!(r.last_day.lateness_p50_ms, None, "no scheduled fire");
    // A day later, minute 1440 reuses minute 0's bucket: the old count is gone, not added.
    run_ending(&mut core, app, job, SUCCEED, T0 + 1440 * MIN);
    let r = core.stats.read(app, T0 + 1441 * MIN + 30_000);
    let w = r.last_day;
    assert_eq!(
        (w.from, w.finished, w.succeeded, w.failed),
        (T0 + 2 * MIN, 2, 2, 0)
    );
    assert_eq!(r.last_hour.finished, 1);
    // Another app counts apart, and a deleted app's counts go with it.
    assert_eq!(core.stats.read(AppId(app.0 + 1), T0).last_day.finished, 0);
    core.remove_app(app);
    assert_eq!(core.stats.read(app, T0 + 1441 * MIN).last_day.finished, 0);
}

#[test]
fn per_app_fire_lateness_is_a_histogram_by_minute_and_by_hour() {
    let (mut core, app, _) = with_job(|j| {
        j.time_expression_type = TimeExpressionType::FixedRate;
        j.time_expression = "60000".into();
    });
    // The first trigger is due at T0 + 60 s: fired 700 ms late, the next one 30 ms late.
    tick(&mut core, T0 + 60_700);
    tick(&mut core, T0 + 120_030);
    let r = core.stats.read(app, T0 + 120_030);
    for w in [r.last_5_minutes, r.last_hour, r.last_day] {
        assert_eq!(w.fires, 2);
        // 30 ms lies in the (20, 50] bin; 700 ms in (500, 1000], capped by the largest.
        assert_eq!(
            (w.lateness_p50_ms, w.lateness_p99_ms),
            (Some(50), Some(700))
        );
        assert_eq!(w.finished, 0, "still running");
    }
    // Two hours on, the fires are out of the hour but still in the day (kept by hour).
    let r = core.stats.read(app, T0 + 2 * 3_600_000 + 120_030);
    assert_eq!(r.last_hour.lateness_p99_ms, None);
    assert_eq!(r.last_day.lateness_p99_ms, Some(700));
    assert_eq!(r.last_day.fires, 2);
}
