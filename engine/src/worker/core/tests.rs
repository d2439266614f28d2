//! The core on virtual time: the harness the core's tests share, and table tests of each
//! rule of an instance's run (the connection's are in `connection_tests.rs`, a property test
//! against a model in `model.rs`).

use std::time::Duration;

use ferrojob_transport::message::{
    AlarmConfig, ExecuteType, InstanceStatus, LogConfig, LogLevel, LogType, Message, ProcessorType,
    ReportInstanceStatus, ScheduleJob, SystemMetrics, TimeExpressionType,
};
use ferrojob_transport::BackoffConfig;

use super::*;

pub(super) const OWN: &str = "10.0.0.1:7000";

pub(super) fn metrics() -> SystemMetrics {
    SystemMetrics {
        cpu_cores: 2,
        cpu_load: 0.5,
        memory_used_bytes: 1,
        memory_max_bytes: 2,
        disk_used_bytes: 1,
        disk_total_bytes: 2,
        score: 10,
    }
}

pub(super) fn config() -> CoreConfig {
    CoreConfig {
        address: OWN.into(),
        app: "billing".into(),
        tag: Some("blue".into()),
        heartbeat_interval_ms: 1000,
        keepalive_interval_ms: 10_000,
        default_instance_timeout_ms: 0,
        server_lost_after: Duration::from_secs(30),
        max_running_instances: 0,
        finished_cache: 3,
        backoff: BackoffConfig::default(),
        seed: 42,
        metrics: metrics(),
    }
}

pub(crate) fn job(instance_id: u64, job_id: u64) -> ScheduleJob {
    ScheduleJob {
        app_id: 1,
        job_id,
        instance_id,
        workflow_instance_id: None,
        execute_type: ExecuteType::Standalone,
        processor_type: ProcessorType::BuiltIn,
        processor_info: "p".into(),
        job_params: String::new(),
        instance_params: String::new(),
        instance_timeout_ms: 0,
        concurrency: 1,
        task_retry_num: 0,
        time_expression_type: TimeExpressionType::Cron,
        time_expression: "0 * * * * ?".into(),
        max_instance_num: 0,
        all_worker_addresses: Vec::new(),
        max_worker_count: 0,
        log_config: LogConfig {
            log_type: LogType::Online,
            level: LogLevel::Info,
        },
        alarm_config: AlarmConfig {
            threshold: 0,
            statistic_window_s: 0,
            silence_window_s: 0,
        },
        dispatch_time_ms: 0,
        report_seq_base: 0,
        workflow_context: String::new(),
        trigger_key: format!("instance-{instance_id}"),
        trigger_time_ms: 0,
        epoch: 0,
    }
}

pub(super) fn ok(m: &str) -> ProcessResult {
    ProcessResult::ok(m)
}

pub(super) fn fail(m: &str) -> ProcessResult {
    ProcessResult::fail(m)
}

/// A core on virtual time, connected at 0, collecting what it asks for.
pub(super) struct Harness {
    pub(super) core: WorkerCore,
    pub(super) now: EpochMs,
    pub(super) effects: Vec<Effect>,
}

impl Harness {
    pub(super) fn new(config: CoreConfig) -> Self {
        let mut h = Harness {
            core: WorkerCore::new(config, 0),
            now: 0,
            effects: Vec::new(),
        };
        h.input(Input::Connected);
        h.transmits();
        h
    }

    pub(super) fn input(&mut self, input: Input) {
        self.core.handle(self.now, input);
        while let Some(e) = self.core.poll_effect() {
            self.effects.push(e);
        }
    }

    pub(super) fn schedule(&mut self, job: ScheduleJob, processor: ProcessorKind) {
        self.input(Input::ScheduleJob {
            job: Box::new(job),
            processor,
        });
    }

    /// Moves virtual time to `now + ms`, feeding every timer on the way at its due time.
    pub(super) fn advance(&mut self, ms: i64) {
        let end = self.now + ms;
        while let Some(t) = self.core.poll_timeout().filter(|t| *t <= end) {
            self.now = self.now.max(t);
            self.input(Input::Timer);
        }
        self.now = end;
    }

    pub(super) fn transmits(&mut self) -> Vec<Transmit> {
        std::iter::from_fn(|| self.core.poll_transmit()).collect()
    }

    pub(super) fn reports(&mut self) -> Vec<ReportInstanceStatus> {
        self.transmits()
            .into_iter()
            .filter_map(|t| match t {
                Transmit::Send(Message::ReportInstanceStatus(r)) => Some(r),
                _ => None,
            })
            .collect()
    }

    /// The runs started since the last call.
    pub(super) fn runs(&mut self) -> Vec<Run> {
        let mut runs = Vec::new();
        self.effects.retain_mut(|e| match e {
            Effect::StartRun(r) => {
                runs.push(Run {
                    id: r.id,
                    job: Arc::clone(&r.job),
                    kind: r.kind.clone(),
                });
                false
            }
            _ => true,
        });
        runs
    }

    pub(super) fn take_effects(&mut self) -> Vec<Effect> {
        std::mem::take(&mut self.effects)
    }

    pub(super) fn finish(&mut self, run: RunId, result: ProcessResult) {
        self.input(Input::RunFinished { run, result });
    }
}

pub(super) fn status_seq(r: &ReportInstanceStatus) -> (InstanceStatus, u64) {
    (r.status.clone(), r.report_seq)
}

#[test]
fn standalone_reports_running_then_succeed_numbered_from_the_base() {
    let mut h = Harness::new(config());
    let mut j = job(7, 1);
    j.report_seq_base = 3;
    h.schedule(j, ProcessorKind::Basic);
    let r = h.reports();
    assert_eq!(
        r.iter().map(status_seq).collect::<Vec<_>>(),
        [(InstanceStatus::Running, 4)]
    );
    let runs = h.runs();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].kind, RunKind::Standalone { attempt: 1 });
    h.advance(50);
    h.finish(runs[0].id, ok("done"));
    let r = h.reports();
    assert_eq!(
        r.iter().map(status_seq).collect::<Vec<_>>(),
        [(InstanceStatus::Succeed, 5)]
    );
    assert_eq!(r[0].result.as_deref(), Some("done"));
    assert_eq!(r[0].end_time_ms, Some(50));
    assert_eq!((r[0].total_tasks, r[0].succeeded_tasks), (1, 1));
    assert_eq!(h.core.running(), 0);
    assert!(matches!(
        h.take_effects().as_slice(),
        [Effect::InstanceDone { instance_id: 7 }]
    ));
    let q = h.core.instance_status(7).unwrap();
    assert_eq!(
        (q.status, q.result.as_deref()),
        (InstanceStatus::Succeed, Some("done"))
    );
}

#[test]
fn failed_attempts_are_retried_task_retry_num_times_holding_the_slot() {
    let mut h = Harness::new(config());
    let mut j = job(1, 1);
    j.task_retry_num = 2;
    h.schedule(j, ProcessorKind::Basic);
    // Another instance of the job waits for the one slot all along.
    h.schedule(job(2, 1), ProcessorKind::Basic);
    let mut attempts = Vec::new();
    for result in [fail("a"), fail("b"), ok("c")] {
        let runs = h.runs();
        assert_eq!(runs.len(), 1, "one run at a time: {runs:?}");
        attempts.push(runs[0].kind.clone());
        h.finish(runs[0].id, result);
        if attempts.len() < 3 {
            assert_eq!(h.core.slots.used(1), 1);
        }
    }
    assert_eq!(
        attempts,
        (1..=3)
            .map(|attempt| RunKind::Standalone { attempt })
            .collect::<Vec<_>>()
    );
    // The slot passed on to the waiting instance.
    let runs = h.runs();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].job.instance_id, 2);
    let logs: Vec<String> = h
        .take_effects()
        .into_iter()
        .filter_map(|e| match e {
            Effect::Log { line, .. } => Some(line),
            _ => None,
        })
        .collect();
    assert_eq!(
        logs,
        [
            "attempt 1 failed: a; retrying (2 of 2 retries left)",
            "attempt 2 failed: b; retrying (1 of 2 retries left)"
        ]
    );
    let finals: Vec<_> = h
        .reports()
        .into_iter()
        .filter(|r| r.status.is_final())
        .collect();
    assert_eq!(finals.len(), 1);
    assert_eq!(finals[0].result.as_deref(), Some("c"));
}

#[test]
fn exhausted_retries_fail_with_the_last_message() {
    let mut h = Harness::new(config());
    let mut j = job(1, 1);
    j.task_retry_num = 1;
    h.schedule(j, ProcessorKind::Basic);
    for m in ["first", "second"] {
        let run = h.runs().pop().unwrap();
        h.finish(run.id, fail(m));
    }
    let last = h.reports().pop().unwrap();
    assert_eq!(last.status, InstanceStatus::Failed);
    assert_eq!(last.result.as_deref(), Some("second"));
    assert_eq!((last.total_tasks, last.failed_tasks), (1, 1));
}

#[test]
fn timeout_cancels_fails_and_keeps_the_slot_until_the_run_unwinds() {
    let mut h = Harness::new(config());
    let mut j = job(1, 1);
    j.instance_timeout_ms = 100;
    h.schedule(j, ProcessorKind::Basic);
    h.schedule(job(2, 1), ProcessorKind::Basic);
    let first = h.runs().pop().unwrap();
    h.reports();
    h.advance(99);
    assert!(h.reports().is_empty());
    h.advance(1);
    let r = h.reports();
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].status, InstanceStatus::Failed);
    assert_eq!(r[0].result.as_deref(), Some("timed out after 100 ms"));
    let effects = h.take_effects();
    assert!(matches!(
        effects.first(),
        Some(Effect::CancelInstance { instance_id: 1 })
    ));
    // Still unwinding: instance 2 must not start yet.
    assert!(h.runs().is_empty());
    h.finish(first.id, fail("cancelled"));
    assert!(
        h.reports().is_empty(),
        "a cancelled run's result is ignored"
    );
    assert_eq!(h.runs().pop().unwrap().job.instance_id, 2);
}

#[test]
fn a_job_without_a_timeout_gets_the_default_and_its_own_wins() {
    let mut h = Harness::new(CoreConfig {
        default_instance_timeout_ms: 500,
        ..config()
    });
    h.schedule(job(1, 1), ProcessorKind::Basic);
    let mut own = job(2, 2);
    own.instance_timeout_ms = 2000;
    h.schedule(own, ProcessorKind::Basic);
    let runs = h.runs();
    assert_eq!(runs.len(), 2);
    // The run sees the default as its job's timeout.
    let first = runs.iter().find(|r| r.job.instance_id == 1).unwrap();
    assert_eq!(first.job.instance_timeout_ms, 500);
    h.reports();
    h.advance(499);
    assert!(h.reports().is_empty());
    h.advance(1);
    let r = h.reports();
    assert_eq!(r.len(), 1);
    assert_eq!(
        (r[0].instance_id, r[0].status.clone()),
        (1, InstanceStatus::Failed)
    );
    assert_eq!(r[0].result.as_deref(), Some("timed out after 500 ms"));
    // The job that set its own is not cut by the default.
    h.advance(1499);
    assert!(h
        .reports()
        .iter()
        .all(|r| r.status == InstanceStatus::Running));
    h.advance(1);
    let r = h.reports();
    assert_eq!(
        (r[0].instance_id, r[0].status.clone()),
        (2, InstanceStatus::Failed)
    );
}

#[test]
fn stop_reports_one_stopped_and_ignores_unknown_and_duplicates() {
    let mut h = Harness::new(config());
    let mut j = job(5, 1);
    j.report_seq_base = 3;
    h.schedule(j.clone(), ProcessorKind::Basic);
    h.schedule(j, ProcessorKind::Basic); // re-sent: ignored
    let run = h.runs().pop().unwrap();
    assert!(h.runs().is_empty());
    h.input(Input::StopInstance {
        instance_id: 5,
        epoch: 0,
    });
    h.input(Input::StopInstance {
        instance_id: 5,
        epoch: 0,
    });
    h.input(Input::StopInstance {
        instance_id: 99,
        epoch: 0,
    });
    let r = h.reports();
    assert_eq!(
        r.iter().map(status_seq).collect::<Vec<_>>(),
        [(InstanceStatus::Running, 4), (InstanceStatus::Stopped, 5)]
    );
    assert_eq!(r[1].result.as_deref(), Some("stopped by request"));
    h.finish(run.id, ok("too late"));
    assert!(h.reports().is_empty());
    assert_eq!(h.core.running(), 0);
}

/// The server re-dispatched an attempt it never saw confirmed to the same worker: the old
/// attempt ends STOPPED in its own numbering, the new one runs (once the old run has given its
/// slot back) and reports in the new attempt's range.
#[test]
fn a_later_attempt_supersedes_the_one_running_here() {
    let mut h = Harness::new(config());
    let mut first = job(5, 1);
    first.report_seq_base = 1 << 32;
    h.schedule(first, ProcessorKind::Basic);
    let old_run = h.runs().pop().unwrap();
    let mut second = job(5, 1);
    second.report_seq_base = 2 << 32;
    h.schedule(second, ProcessorKind::Basic);
    let r = h.reports();
    assert_eq!(
        r.iter().map(status_seq).collect::<Vec<_>>(),
        [
            (InstanceStatus::Running, (1 << 32) + 1),
            (InstanceStatus::Stopped, (1 << 32) + 2),
            (InstanceStatus::Running, (2 << 32) + 1),
        ]
    );
    // Concurrency 1: the new run waits for the old one to unwind.
    assert!(h.runs().is_empty());
    h.finish(old_run.id, ok("too late"));
    let new_run = h.runs().pop().unwrap();
    h.finish(new_run.id, ok("done"));
    assert_eq!(
        h.reports().iter().map(status_seq).collect::<Vec<_>>(),
        [(InstanceStatus::Succeed, (2 << 32) + 2)]
    );
    assert_eq!(h.core.running(), 0);
}

#[test]
fn concurrency_bounds_one_jobs_runs_across_instances() {
    let mut h = Harness::new(config());
    for id in 1..=3 {
        let mut j = job(id, 9);
        j.concurrency = 2;
        h.schedule(j, ProcessorKind::Basic);
    }
    let runs = h.runs();
    assert_eq!(runs.len(), 2);
    // Every instance is RUNNING at once, waiting or not.
    assert_eq!(h.reports().len(), 3);
    h.finish(runs[0].id, ok(""));
    let next = h.runs();
    assert_eq!(next.len(), 1);
    assert_eq!(next[0].job.instance_id, 3);
    // A stopped waiter leaves the queue.
    let mut j = job(4, 9);
    j.concurrency = 2;
    h.schedule(j, ProcessorKind::Basic);
    h.input(Input::StopInstance {
        instance_id: 4,
        epoch: 0,
    });
    h.finish(runs[1].id, ok(""));
    h.finish(next[0].id, ok(""));
    assert!(h.runs().is_empty());
    assert_eq!(h.core.slots.used(9), 0);
}

#[test]
fn keepalives_repeat_running_with_the_next_seq_and_never_pile_up() {
    let mut h = Harness::new(config());
    h.schedule(job(1, 1), ProcessorKind::Basic);
    assert_eq!(h.reports().len(), 1);
    h.advance(10_000);
    let r = h.reports();
    assert_eq!(
        r.iter().map(status_seq).collect::<Vec<_>>(),
        [(InstanceStatus::Running, 2)]
    );
    // Not transmitted (server slow or away): the next keepalives are skipped, not queued.
    h.advance(10_000);
    h.advance(10_000);
    h.advance(10_000);
    let r = h.reports();
    assert_eq!(
        r.iter().map(status_seq).collect::<Vec<_>>(),
        [(InstanceStatus::Running, 3)]
    );
}

#[test]
fn map_instances_report_progress_at_least_every_second() {
    let mut h = Harness::new(config());
    let mut j = job(1, 1);
    j.execute_type = ExecuteType::MapReduce;
    h.schedule(j, ProcessorKind::Map { has_reduce: true });
    let run = h.runs().pop().unwrap();
    assert_eq!(run.kind, RunKind::Map { has_reduce: true });
    h.reports();
    h.input(Input::Progress {
        instance_id: 1,
        total: 10,
        succeeded: 4,
        failed: 1,
    });
    h.advance(1000);
    let r = h.reports().pop().unwrap();
    assert_eq!(
        (r.total_tasks, r.succeeded_tasks, r.failed_tasks),
        (10, 4, 1)
    );
    assert_eq!(h.core.instance_status(1).unwrap().running_tasks, 5);
}

#[test]
fn unusable_processors_fail_after_running() {
    for (execute_type, processor_type, kind, message) in [
        (
            ExecuteType::Standalone,
            ProcessorType::BuiltIn,
            ProcessorKind::Missing("unknown processor \"p\"".into()),
            "unknown processor \"p\"",
        ),
        (
            ExecuteType::Standalone,
            ProcessorType::External,
            ProcessorKind::Basic,
            "external processors are not supported by this worker",
        ),
        (
            ExecuteType::Map,
            ProcessorType::BuiltIn,
            ProcessorKind::Basic,
            "processor \"p\" is not a MAP/MAP_REDUCE processor (register it with map or map_reduce)",
        ),
    ] {
        let mut h = Harness::new(config());
        let mut j = job(1, 1);
        j.execute_type = execute_type;
        j.processor_type = processor_type;
        h.schedule(j, kind);
        assert!(h.runs().is_empty());
        let r = h.reports();
        assert_eq!(r.len(), 2);
        assert_eq!(r[1].status, InstanceStatus::Failed);
        assert_eq!(r[1].result.as_deref(), Some(message));
    }
}

#[test]
fn the_finished_cache_keeps_the_latest_instances() {
    let mut h = Harness::new(config());
    for id in 1..=5 {
        h.schedule(job(id, id), ProcessorKind::Basic);
        let run = h.runs().pop().unwrap();
        h.finish(run.id, ok(&id.to_string()));
    }
    assert!(h.core.instance_status(1).is_none() && h.core.instance_status(2).is_none());
    assert_eq!(
        h.core.instance_status(5).unwrap().result.as_deref(),
        Some("5")
    );
    // Results are cut in the cache, not in the report.
    h.schedule(job(6, 6), ProcessorKind::Basic);
    let run = h.runs().pop().unwrap();
    h.reports();
    h.finish(run.id, ok(&"x".repeat(10_000)));
    assert_eq!(h.reports()[0].result.as_ref().unwrap().len(), 10_000);
    assert_eq!(
        h.core.instance_status(6).unwrap().result.unwrap().len(),
        MAX_CACHED_RESULT_BYTES
    );
}

#[test]
fn peer_tasks_share_the_jobs_slots_and_shutdown_refuses_the_waiting() {
    let mut h = Harness::new(config());
    h.input(Input::PeerTask {
        ticket: 1,
        job_id: 4,
        concurrency: 1,
    });
    assert!(matches!(
        h.take_effects().as_slice(),
        [Effect::PeerTask {
            ticket: 1,
            granted: true
        }]
    ));
    h.schedule(job(1, 4), ProcessorKind::Basic);
    assert!(h.runs().is_empty(), "the peer task holds the slot");
    h.input(Input::PeerTask {
        ticket: 2,
        job_id: 4,
        concurrency: 1,
    });
    h.input(Input::PeerTaskDone { ticket: 1 });
    assert_eq!(h.runs().len(), 1, "first come, first served");
    h.take_effects();
    h.input(Input::Shutdown);
    let effects = h.take_effects();
    assert!(effects.iter().any(|e| matches!(
        e,
        Effect::PeerTask {
            ticket: 2,
            granted: false
        }
    )));
    assert!(effects
        .iter()
        .any(|e| matches!(e, Effect::CancelInstance { instance_id: 1 })));
    let last = h.reports().pop().unwrap();
    assert_eq!(last.result.as_deref(), Some("worker shut down"));
    h.schedule(job(2, 5), ProcessorKind::Basic);
    assert_eq!(h.core.running(), 0, "no new instance once shutting down");
}
