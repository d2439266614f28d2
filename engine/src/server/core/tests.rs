//! The core on its own, driven by hand: the behaviours the simulator found wrong once.

use std::sync::Arc;

use ferrojob_store::MemoryStore;
use ferrojob_transport::message::{self as wire, ReportInstanceStatus};

use super::*;
use crate::dispatch::{RegistryConfig, TrackerCounts, WorkerMetrics, WorkerStatus};
use crate::server::{LoadedState, Repo};

const T0: EpochMs = 1_767_225_600_000;

fn core() -> (Core, AppId) {
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

fn heartbeat(core: &mut Core, addr: &str) {
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
    core.on_heartbeat("a", &status, metrics);
}

/// One step at wall clock `wall` and monotonic clock `mono` (ms).
fn at(core: &mut Core, wall: EpochMs, mono: EpochMs) {
    core.begin(wall * 1000, mono * 1000);
}

fn report(
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
