//! Retry backoff and overlap policies, on a virtual clock: every write is acknowledged at
//! once (a memory store) and the step's follow-ups run before the next input.

use std::sync::Arc;

use ferrojob_transport::message as wire;

use super::tests::*;
use super::*;
use crate::dispatch::RegistryConfig;
use crate::policy::{OverlapPolicy, RetryBackoff};
use crate::server::Repo;
use crate::time_expression::TimeExpressionType;

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
