//! MAP / MAP_REDUCE across in-process workers: the TaskTracker (the worker that gets the
//! `ScheduleJob` from a fake server) dispatches to the ProcessorTrackers of every worker of
//! the instance over worker-to-worker connections; retries, a worker that goes away,
//! coordinator-only mode; and the dispatch-number check that drops late reports.

mod worker_support;

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use ferrojob::mapreduce::{Finish, MapKind, TaskReport, TaskStore, TaskTrackerCore, TrackerConfig};
use ferrojob::worker::{
    MapContext, MapProcessor, MapReduceProcessor, ProcessResult, ReduceResults, TaskContext,
    Worker, WorkerConfig,
};
use ferrojob_store::MemoryStore;
use ferrojob_transport::message::{
    ExecuteType, InstanceStatus, Message, ReportTaskStatuses, ScheduleJob, StartTasks, TaskSpec,
};
use parking_lot::Mutex;
use worker_support::*;

/// Who ran which task, shared by every worker's processor.
struct Seen {
    /// The root waits for a permit before it maps (tests that must pick a victim first).
    gate: tokio::sync::Semaphore,
    /// task id → workers that ran an attempt of it.
    by_task: Mutex<BTreeMap<u64, Vec<String>>>,
    /// The worker whose tasks hang until it goes away ("" for none).
    victim: Mutex<String>,
    /// Tasks started on the victim.
    victim_started: AtomicU32,
}

impl Seen {
    fn new() -> Arc<Seen> {
        Self::gated(false)
    }

    fn gated(gated: bool) -> Arc<Seen> {
        Arc::new(Seen {
            gate: tokio::sync::Semaphore::new(if gated { 0 } else { 1 << 20 }),
            by_task: Mutex::default(),
            victim: Mutex::default(),
            victim_started: AtomicU32::new(0),
        })
    }
}

/// MAP_REDUCE: the root maps `n` tasks named "item" in batches of 100 (content: the index as
/// text); task `fail_first` fails its first attempt, task `always_fail` fails every attempt;
/// reduce sums the results.
struct Summer {
    seen: Arc<Seen>,
    n: u64,
    fail_first: Option<u64>,
    always_fail: Option<u64>,
}

impl MapProcessor for Summer {
    async fn process(&self, ctx: MapContext) -> ProcessResult {
        self.seen
            .by_task
            .lock()
            .entry(ctx.map_task_id())
            .or_default()
            .push(ctx.worker_address().to_string());
        if ctx.is_root() {
            assert_eq!(ctx.task_name(), "ROOT_TASK");
            let _permit = self.seen.gate.acquire().await.unwrap();
            let mut i = 0;
            while i < self.n {
                let end = (i + 100).min(self.n);
                let batch = (i..end).map(|v| v.to_string().into_bytes()).collect();
                if let Err(e) = ctx.map("item", batch).await {
                    return ProcessResult::fail(e.to_string());
                }
                i = end;
            }
            return ProcessResult::ok("root");
        }
        assert_eq!(ctx.task_name(), "item");
        if *self.seen.victim.lock() == ctx.worker_address() {
            self.seen.victim_started.fetch_add(1, Ordering::SeqCst);
            ctx.cancelled().await;
            return ProcessResult::fail("victim cancelled");
        }
        let value: u64 = std::str::from_utf8(ctx.task_content())
            .unwrap()
            .parse()
            .unwrap();
        if Some(value) == self.always_fail || (Some(value) == self.fail_first && ctx.attempt() == 1)
        {
            return ProcessResult::fail(format!("task {value} fails attempt {}", ctx.attempt()));
        }
        ProcessResult::ok(value.to_string())
    }
}

impl MapReduceProcessor for Summer {
    async fn reduce(&self, _ctx: TaskContext, mut results: ReduceResults) -> ProcessResult {
        let mut sum = 0u64;
        let mut count = 0u64;
        while let Some(r) = results.next().await {
            if r.name == "item" && r.success {
                sum += r.result.parse::<u64>().unwrap();
                count += 1;
            }
        }
        ProcessResult::ok(format!("{count}:{sum}"))
    }
}

struct Cluster {
    workers: Vec<Worker>,
    conns: Vec<Conn>,
    _server: FakeServer,
}

impl Cluster {
    async fn start(
        n: usize,
        seen: &Arc<Seen>,
        sum_n: u64,
        tweak: impl Fn(usize, &mut WorkerConfig),
        fail_first: Option<u64>,
        always_fail: Option<u64>,
    ) -> Cluster {
        let mut server = FakeServer::start(SECRET).await;
        let mut workers = Vec::new();
        let mut conns = Vec::new();
        for i in 0..n {
            let mut c = config(server.addr);
            c.map_tasks_in_flight = 64;
            tweak(i, &mut c);
            let w = Worker::builder(c)
                .map_reduce(
                    "summer",
                    Summer {
                        seen: Arc::clone(seen),
                        n: sum_n,
                        fail_first,
                        always_fail,
                    },
                )
                .map("tree", tree)
                .map("remap", remap)
                .builtins()
                .start()
                .await
                .unwrap();
            let conn = server.accept().await;
            assert_eq!(conn.worker_address(), w.address());
            workers.push(w);
            conns.push(conn);
        }
        Cluster {
            workers,
            conns,
            _server: server,
        }
    }

    fn addresses(&self) -> Vec<String> {
        self.workers
            .iter()
            .map(|w| w.address().to_string())
            .collect()
    }

    fn job(&self, id: u64, kind: ExecuteType, processor: &str, params: &str) -> ScheduleJob {
        let mut j = job(id, processor, params);
        j.execute_type = kind;
        j.all_worker_addresses = self.addresses();
        j.concurrency = 4;
        j
    }
}

/// MAP: the root maps 5 "mid" tasks, each of which maps 3 "leaf" tasks.
async fn tree(ctx: MapContext) -> ProcessResult {
    let (name, fanout) = match ctx.task_name() {
        "ROOT_TASK" => ("mid", 5),
        "mid" => ("leaf", 3),
        _ => return ProcessResult::ok("leaf done"),
    };
    match ctx.map(name, vec![Vec::new(); fanout]).await {
        Ok(()) => ProcessResult::ok("mapped"),
        Err(e) => ProcessResult::fail(e.to_string()),
    }
}

/// MAP: the root maps 3 batches of 10; its first attempt fails after the second batch.
async fn remap(ctx: MapContext) -> ProcessResult {
    if !ctx.is_root() {
        return ProcessResult::ok("leaf");
    }
    for batch in 0..3 {
        if ctx.attempt() == 1 && batch == 2 {
            return ProcessResult::fail("first attempt dies after two batches");
        }
        if let Err(e) = ctx.map("leaf", vec![Vec::new(); 10]).await {
            return ProcessResult::fail(e.to_string());
        }
    }
    ProcessResult::ok("mapped")
}

fn no_tweak(_: usize, _: &mut WorkerConfig) {}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sum_mr_is_exact_across_three_workers_and_reports_progress() {
    let seen = Seen::new();
    let mut c = Cluster::start(3, &seen, 0, no_tweak, None, None).await;
    let n = 3000u64;
    let j = c.job(
        1,
        ExecuteType::MapReduce,
        "sum_mr",
        &format!(r#"{{"tasks": {n}, "batch": 250}}"#),
    );
    c.conns[0].schedule(j).await;
    let reports = c.conns[0].reports_until_final(1).await;
    let last = reports.last().unwrap();
    assert_final(last, InstanceStatus::Succeed);
    assert_eq!(
        last.result.as_deref(),
        Some((n * (n - 1) / 2).to_string().as_str())
    );
    assert_eq!(
        (last.total_tasks, last.succeeded_tasks, last.failed_tasks),
        (n + 1, n + 1, 0)
    );
    // Reports are numbered without gaps and only the last one is final.
    for (i, r) in reports.iter().enumerate() {
        assert_eq!(r.report_seq, i as u64 + 1);
        assert_eq!(r.status.is_final(), i + 1 == reports.len());
    }
}

fn at_most_100_tasks(_: usize, config: &mut WorkerConfig) {
    config.max_tasks_per_instance = 100;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_map_past_the_task_limit_fails_the_instance_with_the_limit_named() {
    let seen = Seen::new();
    let mut c = Cluster::start(2, &seen, 0, at_most_100_tasks, None, None).await;
    // 60 subtasks fit (61 with the root); the next batch of 60 does not.
    let j = c.job(
        3,
        ExecuteType::MapReduce,
        "sum_mr",
        r#"{"tasks": 120, "batch": 60}"#,
    );
    c.conns[0].schedule(j).await;
    let last = c.conns[0].reports_until_final(3).await.pop().unwrap();
    assert_final(&last, InstanceStatus::Failed);
    let result = last.result.as_deref().unwrap_or_default();
    assert!(result.contains("at most 100 tasks"), "{last:?}");
    assert_eq!(last.total_tasks, 61, "{last:?}");
    // Under the limit the same worker runs the same job to the exact sum.
    let j = c.job(
        4,
        ExecuteType::MapReduce,
        "sum_mr",
        r#"{"tasks": 99, "batch": 60}"#,
    );
    c.conns[0].schedule(j).await;
    let last = c.conns[0].reports_until_final(4).await.pop().unwrap();
    assert_final(&last, InstanceStatus::Succeed);
    assert_eq!(
        last.result.as_deref(),
        Some((99 * 98 / 2).to_string().as_str())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_spread_over_workers_and_a_task_failing_once_succeeds_on_retry() {
    let seen = Seen::new();
    let mut c = Cluster::start(2, &seen, 500, no_tweak, Some(7), None).await;
    let mut j = c.job(2, ExecuteType::MapReduce, "summer", "");
    j.task_retry_num = 1;
    c.conns[0].schedule(j).await;
    let last = c.conns[0].reports_until_final(2).await.pop().unwrap();
    assert_final(&last, InstanceStatus::Succeed);
    assert_eq!(
        last.result.as_deref(),
        Some(format!("500:{}", 500 * 499 / 2).as_str())
    );
    let by_task = seen.by_task.lock();
    let workers: HashSet<&String> = by_task.values().flatten().collect();
    assert_eq!(workers.len(), 2, "both workers ran tasks");
    // Task ids: root 0, then item v has id v + 1. The failed attempt was retried once.
    assert_eq!(by_task[&8].len(), 2);
    assert_eq!(by_task.values().map(Vec::len).sum::<usize>(), 502);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exhausted_retries_fail_the_instance_with_counts() {
    let seen = Seen::new();
    let mut c = Cluster::start(2, &seen, 50, no_tweak, None, Some(3)).await;
    let mut j = c.job(3, ExecuteType::MapReduce, "summer", "");
    j.task_retry_num = 2;
    c.conns[0].schedule(j).await;
    let last = c.conns[0].reports_until_final(3).await.pop().unwrap();
    // The reduce still runs (it sees 49 successes); the instance's outcome is the reduce's.
    assert_eq!(
        (last.total_tasks, last.succeeded_tasks, last.failed_tasks),
        (51, 50, 1)
    );
    assert_eq!(seen.by_task.lock()[&4].len(), 3, "1 attempt + 2 retries");
    assert_eq!(
        last.result.as_deref(),
        Some(format!("49:{}", 50 * 49 / 2 - 3).as_str())
    );

    // A MAP instance (no reduce) with a failed task fails.
    let mut j = c.job(4, ExecuteType::Map, "summer", "");
    j.task_retry_num = 0;
    c.conns[1].schedule(j).await;
    let last = c.conns[1].reports_until_final(4).await.pop().unwrap();
    assert_final(&last, InstanceStatus::Failed);
    assert_eq!(
        (last.total_tasks, last.succeeded_tasks, last.failed_tasks),
        (51, 50, 1)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn map_without_reduce_builds_a_tree_of_tasks() {
    let seen = Seen::new();
    let mut c = Cluster::start(2, &seen, 0, no_tweak, None, None).await;
    c.conns[1]
        .schedule(c.job(5, ExecuteType::Map, "tree", ""))
        .await;
    let last = c.conns[1].reports_until_final(5).await.pop().unwrap();
    assert_final(&last, InstanceStatus::Succeed);
    assert_eq!(
        (last.total_tasks, last.succeeded_tasks, last.failed_tasks),
        (21, 21, 0)
    );
    assert_eq!(
        last.result.as_deref(),
        Some("total:21,succeeded:21,failed:0")
    );

    // A MAP_REDUCE job on a MAP-only processor fails clearly.
    c.conns[1]
        .schedule(c.job(6, ExecuteType::MapReduce, "tree", ""))
        .await;
    let last = c.conns[1].reports_until_final(6).await.pop().unwrap();
    assert_final(&last, InstanceStatus::Failed);
    assert!(
        last.result.as_deref().unwrap().contains("no reduce"),
        "{last:?}"
    );

    // Bad sum_mr params: a typed failure.
    c.conns[1]
        .schedule(c.job(
            7,
            ExecuteType::MapReduce,
            "sum_mr",
            r#"{"tasks": 5, "batch": 0}"#,
        ))
        .await;
    let last = c.conns[1].reports_until_final(7).await.pop().unwrap();
    assert_final(&last, InstanceStatus::Failed);
    assert!(
        last.result.as_deref().unwrap().contains("batch"),
        "{last:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_shut_down_mid_run_has_its_tasks_rerun_elsewhere() {
    let seen = Seen::gated(true);
    let mut c = Cluster::start(3, &seen, 400, no_tweak, None, None).await;
    let j = c.job(8, ExecuteType::MapReduce, "summer", "");
    c.conns[0].schedule(j).await;
    // The victim is neither the TaskTracker nor the root's worker: a re-run root would map
    // its subtasks again (the earlier attempt's acknowledged maps stay).
    eventually("the root runs", || seen.by_task.lock().contains_key(&0)).await;
    let root_worker = seen.by_task.lock()[&0][0].clone();
    let victim_index = (1..3)
        .find(|&i| c.workers[i].address() != root_worker)
        .unwrap();
    c.workers.swap(victim_index, 2);
    *seen.victim.lock() = c.workers[2].address().to_string();
    seen.gate.add_permits(1);
    // The victim holds some tasks (they hang there), then goes away.
    eventually("the victim runs tasks", || {
        seen.victim_started.load(Ordering::SeqCst) > 0
    })
    .await;
    let victim = c.workers.pop().unwrap();
    let victim_address = victim.address().to_string();
    victim.shutdown().await;
    let last = c.conns[0].reports_until_final(8).await.pop().unwrap();
    assert_final(&last, InstanceStatus::Succeed);
    assert_eq!(
        last.result.as_deref(),
        Some(format!("400:{}", 400 * 399 / 2).as_str())
    );
    assert_eq!(
        (last.total_tasks, last.succeeded_tasks, last.failed_tasks),
        (401, 401, 0)
    );
    let by_task = seen.by_task.lock();
    let rerun = by_task
        .values()
        .filter(|ws| ws.len() > 1 && ws[0] == victim_address)
        .count();
    assert!(rerun > 0, "some tasks of the victim ran again elsewhere");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_coordinator_only_task_tracker_runs_no_task() {
    let seen = Seen::new();
    let mut c = Cluster::start(
        3,
        &seen,
        300,
        |i, c| c.coordinator_only = i == 0,
        None,
        None,
    )
    .await;
    c.conns[0]
        .schedule(c.job(9, ExecuteType::MapReduce, "summer", ""))
        .await;
    let last = c.conns[0].reports_until_final(9).await.pop().unwrap();
    assert_final(&last, InstanceStatus::Succeed);
    assert_eq!(
        last.result.as_deref(),
        Some(format!("300:{}", 300 * 299 / 2).as_str())
    );
    let tracker = c.workers[0].address().to_string();
    {
        let by_task = seen.by_task.lock();
        assert_eq!(by_task.len(), 301);
        assert!(by_task.values().flatten().all(|w| *w != tracker));
    }

    // Alone, a coordinator-only tracker cannot run anything: a clear failure.
    let mut j = c.job(10, ExecuteType::MapReduce, "summer", "");
    j.all_worker_addresses = vec![tracker];
    c.conns[0].schedule(j).await;
    let last = c.conns[0].reports_until_final(10).await.pop().unwrap();
    assert_final(&last, InstanceStatus::Failed);
    assert!(last.result.as_deref().unwrap().contains("coordinator-only"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rerun_task_does_not_map_its_subtasks_twice() {
    let seen = Seen::new();
    let mut c = Cluster::start(2, &seen, 0, no_tweak, None, None).await;
    let mut j = c.job(11, ExecuteType::Map, "remap", "");
    j.task_retry_num = 1;
    c.conns[0].schedule(j).await;
    let last = c.conns[0].reports_until_final(11).await.pop().unwrap();
    assert_final(&last, InstanceStatus::Succeed);
    // The retry's first two map requests were stored by the first attempt: skipped.
    assert_eq!(
        (last.total_tasks, last.succeeded_tasks, last.failed_tasks),
        (31, 31, 0)
    );
}

#[test]
fn a_late_report_of_an_earlier_dispatch_is_ignored() {
    let store = TaskStore::new(Arc::new(MemoryStore::new()));
    let mut core = TaskTrackerCore::new(
        store,
        1,
        TrackerConfig::new("tt:1", MapKind::Map),
        Vec::new(),
    )
    .unwrap();
    core.set_worker("a:1", 10, 0);
    let first = core.poll_dispatch(0).unwrap();
    assert_eq!(first[0].tasks[0].dispatches, 1);
    // The worker goes quiet, its task is requeued and dispatched to it again (dispatch 2).
    core.on_worker_dead("a:1").unwrap();
    core.set_worker("a:1", 10, 1);
    let second = core.poll_dispatch(1).unwrap();
    assert_eq!(second[0].tasks[0].dispatches, 2);
    let report = |dispatch| TaskReport {
        task_id: 0,
        worker: "a:1".into(),
        dispatch: Some(dispatch),
        success: true,
        result: format!("from dispatch {dispatch}"),
    };
    // The answer to dispatch 1 arrives late: same worker, but stale.
    assert_eq!(
        core.on_task_reports(vec![report(1)]).unwrap(),
        vec![Finish::Stale]
    );
    assert!(!core.is_done());
    assert_eq!(
        core.on_task_reports(vec![report(2)]).unwrap(),
        vec![Finish::Succeeded]
    );
    assert!(core.is_done());
}

/// The whole path with a real server (in process, MemoryStore): the server dispatches the
/// MAP_REDUCE instance with both workers as candidates; its result is the exact sum.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sum_mr_through_a_real_server() {
    use ferrojob::api::{CreateApp, JobBody, RunJob};
    use ferrojob::client::Client;
    use ferrojob::launch::{launch, LaunchConfig};
    use ferrojob::model::ExecuteType as JobExecuteType;
    use ferrojob::time_expression::TimeExpressionType;
    const LONG_SECRET: &str = "mapreduce-secret";

    let any: std::net::SocketAddr = "127.0.0.1:0".parse().unwrap();
    let server = launch(LaunchConfig::new(None, any, any)).await.unwrap();
    let client = Client::new(
        &format!("http://{}", server.http_addr()),
        server.admin_token(),
    )
    .unwrap();
    client
        .create_app(&CreateApp {
            name: APP.into(),
            secret: LONG_SECRET.into(),
        })
        .await
        .unwrap();
    let mut workers = Vec::new();
    for _ in 0..2 {
        let mut c = WorkerConfig::new(server.transport_addr(), APP, LONG_SECRET);
        c.net = net();
        c.heartbeat_interval = std::time::Duration::from_millis(50);
        workers.push(Worker::builder(c).builtins().start().await.unwrap());
    }
    let registered = || async { client.list_workers(APP).await.unwrap().workers.len() };
    let deadline = tokio::time::Instant::now() + WAIT;
    while registered().await < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "workers did not register"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let mut body = JobBody::new("sum", TimeExpressionType::Api, "", "sum_mr");
    body.execute_type = JobExecuteType::MapReduce;
    let job = client.create_job(APP, &body).await.unwrap().id;
    let n = 2000u64;
    let run = client
        .run_job(
            APP,
            job,
            &RunJob {
                params: format!(r#"{{"tasks": {n}, "batch": 300}}"#),
                delay_ms: 0,
            },
        )
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    let instance = loop {
        let i = client.get_instance(APP, run.instance_id).await.unwrap();
        if i.status.is_final() {
            break i;
        }
        assert!(tokio::time::Instant::now() < deadline, "not final: {i:?}");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    };
    assert_eq!(
        instance.status,
        ferrojob::model::InstanceStatus::Succeed,
        "{instance:?}"
    );
    assert_eq!(
        instance.result.as_deref(),
        Some((n * (n - 1) / 2).to_string().as_str())
    );
    for w in workers {
        w.shutdown().await;
    }
    server.shutdown().await;
}

/// The outcomes a ProcessorTracker reports to `from` for `instance`, until `n` arrived.
async fn outcomes(from: &mut Conn, instance: u64, n: usize) -> Vec<(u64, bool, String)> {
    let mut out = Vec::new();
    while out.len() < n {
        let r: ReportTaskStatuses = from
            .wait_for(|m| match m {
                Message::ReportTaskStatuses(r) if r.instance_id == instance => Some(r.clone()),
                _ => None,
            })
            .await;
        out.extend(
            r.reports
                .into_iter()
                .map(|o| (o.task_id, o.success, o.result)),
        );
    }
    out.sort();
    out
}

fn tasks(ids: std::ops::Range<u64>) -> Vec<TaskSpec> {
    ids.map(|task_id| TaskSpec {
        task_id,
        dispatch: 1,
        name: "item".into(),
        content: task_id.to_string().into_bytes(),
    })
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_tasks_run_only_for_the_announced_instance_of_their_tracker() {
    let seen = Seen::new();
    let c = Cluster::start(1, &seen, 0, no_tweak, None, None).await;
    let own = c.workers[0].address().to_string();
    let tracker = "127.0.0.1:1";
    let mut from = peer(&own, tracker).await;
    let mut j = c.job(1, ExecuteType::MapReduce, "summer", "");
    j.all_worker_addresses = vec![tracker.into(), own.clone()];

    // Named TaskTracker and sender disagree: nothing runs, every task fails with the reason.
    let forged = StartTasks {
        instance: ScheduleJob {
            instance_id: 2,
            ..j.clone()
        },
        task_tracker_address: "127.0.0.1:2".into(),
        tasks: tasks(1..3),
    };
    let mut forger = peer(&own, tracker).await;
    forger.handle.send(forged).await.unwrap();
    let got = outcomes(&mut forger, 2, 2).await;
    assert_eq!(got.len(), 2);
    for (_, success, result) in &got {
        assert!(!success);
        assert!(result.contains("is not the sender"), "{result}");
    }

    // A consistent instance is announced by its first batch and runs.
    let announced = StartTasks {
        instance: j.clone(),
        task_tracker_address: tracker.into(),
        tasks: tasks(1..3),
    };
    from.handle.send(announced).await.unwrap();
    let got = outcomes(&mut from, 1, 2).await;
    assert!(got.iter().all(|(_, success, _)| *success), "{got:?}");

    // A later batch of the same instance with other params is refused.
    let changed = StartTasks {
        instance: ScheduleJob {
            job_params: "other".into(),
            ..j.clone()
        },
        task_tracker_address: tracker.into(),
        tasks: tasks(3..5),
    };
    from.handle.send(changed).await.unwrap();
    let got = outcomes(&mut from, 1, 2).await;
    for (_, success, result) in &got {
        assert!(!success);
        assert!(result.contains("changed since its first batch"), "{result}");
    }
    let ran: Vec<u64> = seen.by_task.lock().keys().copied().collect();
    assert_eq!(ran, [1, 2], "only the announced batch ran");
    for w in c.workers {
        w.shutdown().await;
    }
}
