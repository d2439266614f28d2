//! BROADCAST across three in-process workers: pre_process once on the TaskTracker, process on
//! every worker (over worker-to-worker connections), post_process with every result; an
//! unreachable peer; task retries across workers.

mod worker_support;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use ferrojob::worker::{BroadcastProcessor, ProcessResult, TaskContext, TaskResult, Worker};
use ferrojob_transport::message::{
    ExecuteType, InstanceStatus, Message, ReportTaskStatus, ScheduleJob, StartTask, TaskStatus,
};
use parking_lot::Mutex;
use worker_support::*;

#[derive(Default)]
struct Seen {
    pre: AtomicU32,
    process: Mutex<Vec<(String, String, u32)>>,
    post: Mutex<Vec<Vec<TaskResult>>>,
}

struct Recorder(Arc<Seen>);

impl BroadcastProcessor for Recorder {
    async fn pre_process(&self, ctx: TaskContext) -> ProcessResult {
        assert_eq!(ctx.task_id(), "pre");
        self.0.pre.fetch_add(1, Ordering::SeqCst);
        ProcessResult::ok("")
    }

    async fn process(&self, ctx: TaskContext) -> ProcessResult {
        self.0.process.lock().push((
            ctx.worker_address().to_string(),
            ctx.task_id().to_string(),
            ctx.attempt(),
        ));
        ctx.logger().info(format!("task {} here", ctx.task_id()));
        // The second worker fails its first attempt: task retries apply per task.
        if ctx.task_id() == "1" && ctx.attempt() == 1 {
            return ProcessResult::fail("first attempt fails");
        }
        ProcessResult::ok(format!("done by {}", ctx.worker_address()))
    }

    async fn post_process(&self, _ctx: TaskContext, results: Vec<TaskResult>) -> ProcessResult {
        let ok = results.iter().all(|r| r.success);
        let n = results.len();
        self.0.post.lock().push(results);
        ProcessResult {
            success: ok,
            message: format!("post saw {n} results"),
        }
    }
}

async fn three_workers(server: &mut FakeServer, seen: &Arc<Seen>) -> (Vec<Worker>, Vec<Conn>) {
    let mut workers = Vec::new();
    let mut conns = Vec::new();
    for _ in 0..3 {
        let w = Worker::builder(config(server.addr))
            .broadcast("rec", Recorder(Arc::clone(seen)))
            .builtins()
            .start()
            .await
            .unwrap();
        let c = server.accept().await;
        assert_eq!(c.worker_address(), w.address());
        workers.push(w);
        conns.push(c);
    }
    (workers, conns)
}

fn broadcast_job(id: u64, processor: &str, addresses: Vec<String>) -> ScheduleJob {
    let mut j = job(id, processor, "p");
    j.execute_type = ExecuteType::Broadcast;
    j.all_worker_addresses = addresses;
    j.task_retry_num = 1;
    j
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcast_runs_pre_once_process_everywhere_post_with_all_results() {
    let mut server = FakeServer::start(SECRET).await;
    let seen = Arc::new(Seen::default());
    let (workers, mut conns) = three_workers(&mut server, &seen).await;
    let addresses: Vec<String> = workers.iter().map(|w| w.address().to_string()).collect();

    conns[0]
        .schedule(broadcast_job(1, "rec", addresses.clone()))
        .await;
    let reports = conns[0].reports_until_final(1).await;
    let last = reports.last().unwrap();
    assert_final(last, InstanceStatus::Succeed);
    assert_eq!(last.result.as_deref(), Some("post saw 3 results"));
    assert_eq!(last.source_address, addresses[0]);
    assert_eq!(
        (last.total_tasks, last.succeeded_tasks, last.failed_tasks),
        (3, 3, 0)
    );

    assert_eq!(seen.pre.load(Ordering::SeqCst), 1);
    let mut runs = seen.process.lock().clone();
    runs.sort();
    let mut expected = vec![
        (addresses[0].clone(), "0".to_string(), 1),
        (addresses[1].clone(), "1".to_string(), 1),
        (addresses[1].clone(), "1".to_string(), 2),
        (addresses[2].clone(), "2".to_string(), 1),
    ];
    expected.sort();
    assert_eq!(runs, expected);
    let post = seen.post.lock().clone();
    assert_eq!(post.len(), 1);
    let mut results = post[0].clone();
    results.sort_by(|a, b| a.task_id.cmp(&b.task_id));
    for (i, r) in results.iter().enumerate() {
        assert_eq!(r.task_id, i.to_string());
        assert_eq!(r.worker, addresses[i]);
        assert!(r.success);
        assert_eq!(r.message, format!("done by {}", addresses[i]));
    }
    for w in workers {
        w.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_peer_fails_its_task_and_the_default_post_fails_the_instance() {
    let mut server = FakeServer::start(SECRET).await;
    let seen = Arc::new(Seen::default());
    let (workers, mut conns) = three_workers(&mut server, &seen).await;
    // A port nobody listens on any more.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    let addresses = vec![
        workers[0].address().to_string(),
        workers[2].address().to_string(),
        dead.clone(),
    ];
    // `noop` is a basic processor: broadcast runs it everywhere, the default post summarises.
    conns[0]
        .schedule(broadcast_job(2, "noop", addresses.clone()))
        .await;
    let last = conns[0].reports_until_final(2).await.pop().unwrap();
    assert_final(&last, InstanceStatus::Failed);
    let msg = last.result.unwrap();
    assert!(msg.starts_with("2/3 tasks succeeded; failed: 2@"), "{msg}");
    assert!(msg.contains(&format!("worker {dead} unreachable")), "{msg}");
    assert_eq!((last.succeeded_tasks, last.failed_tasks), (2, 1));

    // With a hook processor, post_process still gets all three results.
    conns[0].schedule(broadcast_job(3, "rec", addresses)).await;
    let last = conns[0].reports_until_final(3).await.pop().unwrap();
    assert_final(&last, InstanceStatus::Failed);
    assert_eq!(last.result.as_deref(), Some("post saw 3 results"));
    let post = seen.post.lock().clone();
    let failed: Vec<&TaskResult> = post[0].iter().filter(|r| !r.success).collect();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].worker, dead);
    for w in workers {
        w.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_pre_process_fails_the_instance_before_any_task() {
    struct NoPre(Arc<AtomicU32>);
    impl BroadcastProcessor for NoPre {
        async fn pre_process(&self, _ctx: TaskContext) -> ProcessResult {
            ProcessResult::fail("not today")
        }
        async fn process(&self, _ctx: TaskContext) -> ProcessResult {
            self.0.fetch_add(1, Ordering::SeqCst);
            ProcessResult::ok("")
        }
    }
    let mut server = FakeServer::start(SECRET).await;
    let calls = Arc::new(AtomicU32::new(0));
    let w = Worker::builder(config(server.addr))
        .broadcast("nopre", NoPre(Arc::clone(&calls)))
        .start()
        .await
        .unwrap();
    let mut conn = server.accept().await;
    conn.schedule(broadcast_job(1, "nopre", vec![w.address().to_string()]))
        .await;
    let last = conn.reports_until_final(1).await.pop().unwrap();
    assert_final(&last, InstanceStatus::Failed);
    assert_eq!(
        last.result.as_deref(),
        Some("pre_process failed: not today")
    );
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    w.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_a_broadcast_stops_the_peers_tasks() {
    let mut server = FakeServer::start(SECRET).await;
    let seen = Arc::new(Seen::default());
    let (workers, mut conns) = three_workers(&mut server, &seen).await;
    let addresses: Vec<String> = workers.iter().map(|w| w.address().to_string()).collect();
    let mut j = broadcast_job(4, "sleep", addresses);
    j.job_params = "60000".into();
    conns[0].schedule(j).await;
    assert_eq!(conns[0].report(4).await.status, InstanceStatus::Running);
    // Every worker runs its task (a ProcessorTracker) before we stop.
    let w = &workers;
    eventually("tasks run on every worker", || {
        w.iter().all(|w| w.processor_trackers() == 1)
    })
    .await;
    conns[0]
        .handle
        .send(ferrojob_transport::message::StopInstance {
            instance_id: 4,
            epoch: 0,
        })
        .await
        .unwrap();
    assert_final(&conns[0].report(4).await, InstanceStatus::Stopped);
    eventually("peers stop their tasks", || {
        w.iter().all(|w| w.processor_trackers() == 0)
    })
    .await;
    for w in workers {
        w.shutdown().await;
    }
}

/// What a ProcessorTracker answers to `start`, sent by `from`.
async fn answer_on(from: &mut Conn, start: StartTask) -> ReportTaskStatus {
    let task_id = start.task_id.clone();
    from.handle.send(start).await.unwrap();
    from.wait_for(|m| match m {
        Message::ReportTaskStatus(r) if r.task_id == task_id => Some(r.clone()),
        _ => None,
    })
    .await
}

/// What the worker at `worker` answers to `start`, sent on a connection of its own (as a
/// TaskTracker does) by a secret holder claiming to be `sender`.
async fn answer(worker: &str, sender: &str, start: StartTask) -> ReportTaskStatus {
    answer_on(&mut peer(worker, sender).await, start).await
}

fn start_task(instance: ScheduleJob, tracker: &str, task_id: &str) -> StartTask {
    StartTask {
        instance,
        task_tracker_address: tracker.into(),
        sub_instance_id: 0,
        task_id: task_id.into(),
        task_name: "broadcast".into(),
        task_content: Vec::new(),
        current_retry: 0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_task_runs_only_for_a_consistent_dispatch_of_a_registered_processor() {
    let mut server = FakeServer::start(SECRET).await;
    let seen = Arc::new(Seen::default());
    // The target: `rec` and the safe built-ins, no `shell`.
    let target = Worker::builder(strict_config(server.addr))
        .broadcast("rec", Recorder(Arc::clone(&seen)))
        .builtins()
        .start()
        .await
        .unwrap();
    let _conn = server.accept().await;
    let own = target.address().to_string();
    let tracker = "127.0.0.1:1";
    let dir = tempfile::tempdir().unwrap();
    let witness = dir.path().join("ran");
    let refused = |r: &ReportTaskStatus| {
        assert_eq!(r.status, TaskStatus::WorkerProcessFailed, "{r:?}");
        r.result.clone().unwrap_or_default()
    };

    // A shell task on a worker that did not allow shell.
    let mut shell = broadcast_job(1, "shell", vec![tracker.into(), own.clone()]);
    shell.job_params = format!("touch {}", witness.display());
    let msg = refused(&answer(&own, tracker, start_task(shell, tracker, "1")).await);
    assert!(msg.contains("processor \"shell\" is disabled"), "{msg}");

    // The sender names another TaskTracker than the one it authenticated as.
    let rec = broadcast_job(2, "rec", vec!["127.0.0.1:2".into(), own.clone()]);
    let msg = refused(&answer(&own, tracker, start_task(rec, "127.0.0.1:2", "1")).await);
    assert!(msg.contains("is not the sender"), "{msg}");

    // A TaskTracker that is not one of the instance's workers, and an instance this worker
    // is not part of.
    let rec = broadcast_job(3, "rec", vec!["127.0.0.1:2".into(), own.clone()]);
    let msg = refused(&answer(&own, tracker, start_task(rec, tracker, "1")).await);
    assert!(msg.contains("is not one of instance 3's workers"), "{msg}");
    let rec = broadcast_job(4, "rec", vec![tracker.into(), "127.0.0.1:3".into()]);
    let msg = refused(&answer(&own, tracker, start_task(rec, tracker, "1")).await);
    assert!(
        msg.contains(&format!("worker {own} is not one of")),
        "{msg}"
    );

    // A StartTask for an instance that is not BROADCAST.
    let mut standalone = broadcast_job(5, "rec", vec![tracker.into(), own.clone()]);
    standalone.execute_type = ExecuteType::Standalone;
    let msg = refused(&answer(&own, tracker, start_task(standalone, tracker, "1")).await);
    assert!(msg.contains("cannot carry a Standalone instance"), "{msg}");
    assert!(seen.process.lock().is_empty(), "a refused task ran");
    assert!(!witness.exists(), "the shell command ran");

    // The same sender with a consistent dispatch is served.
    let mut from = peer(&own, tracker).await;
    let rec = broadcast_job(6, "rec", vec![tracker.into(), own.clone()]);
    let r = answer_on(&mut from, start_task(rec, tracker, "2")).await;
    assert_eq!(r.status, TaskStatus::WorkerProcessSucceed, "{r:?}");
    assert_eq!(seen.process.lock().len(), 1);
    // A connection carries one instance: a task of another one closes it, unrun.
    let other = broadcast_job(7, "rec", vec![tracker.into(), own.clone()]);
    from.handle
        .send(start_task(other, tracker, "3"))
        .await
        .unwrap();
    let closed = tokio::time::timeout(WAIT, async {
        while let Some(m) = from.incoming.recv().await {
            assert!(!matches!(m.message, Message::ReportTaskStatus(_)), "{m:?}");
        }
    })
    .await;
    assert!(closed.is_ok(), "the connection stayed open");
    assert_eq!(
        seen.process.lock().len(),
        1,
        "the second instance's task ran"
    );
    target.shutdown().await;
}
