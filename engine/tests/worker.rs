//! The worker against a fake server (a transport Listener): handshake, heartbeats, reports
//! and their sequence, retries, timeouts, stop, status queries, logs, panics, server loss.

mod worker_support;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ferrojob::worker::{ProcessResult, TaskContext, Worker};
use ferrojob_transport::message::{
    ErrorCode, ExecuteType, InstanceStatus, Message, QueryInstanceStatus, StopInstance,
    TimeExpressionType,
};
use ferrojob_transport::{PeerInfo, RequestError};
use tokio::sync::{oneshot, Notify};
use worker_support::*;

#[tokio::test]
async fn connects_with_its_address_and_heartbeats_sane_metrics() {
    let mut server = FakeServer::start(SECRET).await;
    let mut cfg = config(server.addr);
    cfg.tags = vec!["eu".into(), "gpu".into()];
    let worker = Worker::builder(cfg).builtins().start().await.unwrap();
    let mut conn = server.accept().await;
    match &conn.peer {
        PeerInfo::Worker {
            app_name,
            worker_address,
            tags,
            ..
        } => {
            assert_eq!(app_name, APP);
            assert_eq!(worker_address, worker.address());
            assert_eq!(tags, &vec!["eu".to_string(), "gpu".to_string()]);
        }
        other => panic!("{other:?}"),
    }
    // The first heartbeat right after the handshake, then periodic ones.
    for _ in 0..3 {
        let h = conn.heartbeat().await;
        assert_eq!(h.worker_address, worker.address());
        assert_eq!(h.app_name, APP);
        assert_eq!(h.tag.as_deref(), Some("eu"));
        assert!(!h.overloaded);
        let m = h.metrics;
        assert!(m.cpu_cores >= 1);
        assert!(m.memory_max_bytes > 0 && m.memory_used_bytes <= m.memory_max_bytes);
        assert!(m.disk_used_bytes <= m.disk_total_bytes);
        assert!(m.score > 0, "score {m:?}");
    }
    eventually("connected", || worker.is_connected()).await;
    worker.shutdown().await;
}

#[tokio::test]
async fn wrong_secret_is_refused_and_the_worker_keeps_retrying() {
    let server = FakeServer::start("another secret").await;
    let worker = Worker::builder(config(server.addr)).start().await.unwrap();
    let metrics = Arc::clone(server.listener.metrics());
    eventually("three refused handshakes", || {
        metrics.snapshot().handshake_failures >= 3
    })
    .await;
    assert!(!worker.is_connected());
    worker.shutdown().await;
}

#[tokio::test]
async fn schedule_reports_running_then_succeed_numbered_from_the_base() {
    let mut server = FakeServer::start(SECRET).await;
    let worker = Worker::builder(config(server.addr))
        .basic("hello", |ctx: TaskContext| async move {
            ProcessResult::ok(format!("hello {}", ctx.params()))
        })
        .start()
        .await
        .unwrap();
    let mut conn = server.accept().await;
    let mut j = job(1, "hello", "job-params");
    j.instance_params = "run-params".into();
    j.report_seq_base = 7;
    conn.schedule(j).await;
    let reports = conn.reports_until_final(1).await;
    assert_eq!(reports.len(), 2, "{reports:?}");
    assert_eq!(reports[0].status, InstanceStatus::Running);
    assert_eq!(reports[0].report_seq, 8);
    assert_final(&reports[1], InstanceStatus::Succeed);
    assert_eq!(reports[1].report_seq, 9);
    assert_eq!(reports[1].result.as_deref(), Some("hello run-params"));
    for r in &reports {
        assert_eq!(r.source_address, worker.address());
        assert_eq!((r.app_id, r.job_id), (1, 10));
    }
    assert_eq!(reports[1].total_tasks, 1);
    assert_eq!(reports[1].succeeded_tasks, 1);
    worker.shutdown().await;
}

#[tokio::test]
async fn failed_tasks_are_retried_task_retry_num_times() {
    let mut server = FakeServer::start(SECRET).await;
    let calls = Arc::new(AtomicU32::new(0));
    let c = Arc::clone(&calls);
    let worker = Worker::builder(config(server.addr))
        .basic("flaky", move |ctx: TaskContext| {
            let c = Arc::clone(&c);
            async move {
                c.fetch_add(1, Ordering::SeqCst);
                // Succeeds on the third attempt.
                if ctx.attempt() >= 3 {
                    ProcessResult::ok(format!("ok on attempt {}", ctx.attempt()))
                } else {
                    ProcessResult::fail(format!("attempt {} failed", ctx.attempt()))
                }
            }
        })
        .start()
        .await
        .unwrap();
    let mut conn = server.accept().await;

    let mut j = job(1, "flaky", "");
    j.task_retry_num = 2;
    conn.schedule(j).await;
    let last = conn.reports_until_final(1).await.pop().unwrap();
    assert_final(&last, InstanceStatus::Succeed);
    assert_eq!(last.result.as_deref(), Some("ok on attempt 3"));
    assert_eq!(calls.swap(0, Ordering::SeqCst), 3);

    let mut j = job(2, "flaky", "");
    j.task_retry_num = 1;
    conn.schedule(j).await;
    let last = conn.reports_until_final(2).await.pop().unwrap();
    assert_final(&last, InstanceStatus::Failed);
    assert_eq!(last.result.as_deref(), Some("attempt 2 failed"));
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    worker.shutdown().await;
}

/// Sends on drop: proves a processor's future was dropped (not just abandoned).
struct DropSignal(Option<oneshot::Sender<()>>);
impl Drop for DropSignal {
    fn drop(&mut self) {
        if let Some(tx) = self.0.take() {
            let _ = tx.send(());
        }
    }
}

#[tokio::test]
async fn timeout_fires_the_token_and_drops_the_processor() {
    let mut server = FakeServer::start(SECRET).await;
    let (dropped_tx, dropped_rx) = oneshot::channel();
    let dropped_tx = Arc::new(parking_lot::Mutex::new(Some(dropped_tx)));
    let (saw_cancel_tx, saw_cancel_rx) = oneshot::channel::<()>();
    let saw_cancel_tx = Arc::new(parking_lot::Mutex::new(Some(saw_cancel_tx)));
    let worker = Worker::builder(config(server.addr))
        .builtins()
        .basic("stubborn", move |ctx: TaskContext| {
            let guard = DropSignal(dropped_tx.lock().take());
            let saw = Arc::clone(&saw_cancel_tx);
            async move {
                let _guard = guard;
                // Watches the token from a separate task: it fires before the drop.
                let token = ctx.cancellation().clone();
                tokio::spawn(async move {
                    token.cancelled().await;
                    if let Some(tx) = saw.lock().take() {
                        let _ = tx.send(());
                    }
                });
                std::future::pending::<ProcessResult>().await
            }
        })
        .start()
        .await
        .unwrap();
    let mut conn = server.accept().await;

    let mut j = job(1, "stubborn", "");
    j.instance_timeout_ms = 100;
    conn.schedule(j).await;
    let last = conn.reports_until_final(1).await.pop().unwrap();
    assert_final(&last, InstanceStatus::Failed);
    assert_eq!(last.result.as_deref(), Some("timed out after 100 ms"));
    tokio::time::timeout(WAIT, dropped_rx)
        .await
        .unwrap()
        .unwrap();
    tokio::time::timeout(WAIT, saw_cancel_rx)
        .await
        .unwrap()
        .unwrap();

    let mut j = job(2, "sleep", "60000");
    j.instance_timeout_ms = 100;
    conn.schedule(j).await;
    let last = conn.reports_until_final(2).await.pop().unwrap();
    assert_final(&last, InstanceStatus::Failed);
    assert_eq!(last.result.as_deref(), Some("timed out after 100 ms"));
    assert_eq!(worker.running(), 0);
    worker.shutdown().await;
}

/// Whether process `pid` is gone (or a zombie nobody reaped yet: it no longer runs).
fn process_gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z')),
    }
}

fn read_pid(path: &std::path::Path) -> u32 {
    std::fs::read_to_string(path)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn timeout_kills_the_shell_and_its_children() {
    let mut server = FakeServer::start(SECRET).await;
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("pid");
    let worker = Worker::builder(config(server.addr))
        .builtins()
        .start()
        .await
        .unwrap();
    let mut conn = server.accept().await;
    // A generous timeout: the script only has to start its child before it elapses.
    let script = format!("sleep 30 & echo $! > {}; wait", pid_file.display());
    let mut j = job(1, "shell", &script);
    j.instance_timeout_ms = 1000;
    conn.schedule(j).await;
    let last = conn.reports_until_final(1).await.pop().unwrap();
    assert_final(&last, InstanceStatus::Failed);
    assert_eq!(last.result.as_deref(), Some("timed out after 1000 ms"));
    let pid = read_pid(&pid_file);
    eventually("the shell's child is killed", || process_gone(pid)).await;
    worker.shutdown().await;
}

#[tokio::test]
async fn stop_kills_the_shell_and_its_children() {
    let mut server = FakeServer::start(SECRET).await;
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("pid");
    let worker = Worker::builder(config(server.addr))
        .builtins()
        .start()
        .await
        .unwrap();
    let mut conn = server.accept().await;
    let script = format!(
        "sleep 30 & echo $! > {}; echo started; wait",
        pid_file.display()
    );
    conn.schedule(job(1, "shell", &script)).await;
    // Deterministic: stop once the script says its child runs.
    conn.wait_for(|m| match m {
        Message::LogBatch(b) => b
            .entries
            .iter()
            .any(|e| e.instance_id == 1 && e.content == "started")
            .then_some(()),
        _ => None,
    })
    .await;
    let pid = read_pid(&pid_file);
    assert!(!process_gone(pid));
    conn.handle
        .send(StopInstance {
            instance_id: 1,
            epoch: 0,
        })
        .await
        .unwrap();
    let last = conn.reports_until_final(1).await.pop().unwrap();
    assert_final(&last, InstanceStatus::Stopped);
    eventually("the shell's child is killed", || process_gone(pid)).await;
    worker.shutdown().await;
}

#[tokio::test]
async fn stop_instance_cancels_and_reports_stopped() {
    let mut server = FakeServer::start(SECRET).await;
    let worker = Worker::builder(config(server.addr))
        .builtins()
        .start()
        .await
        .unwrap();
    let mut conn = server.accept().await;
    let mut j = job(5, "sleep", "60000");
    j.report_seq_base = 3;
    conn.schedule(j).await;
    let running = conn.report(5).await;
    assert_eq!(
        (running.status, running.report_seq),
        (InstanceStatus::Running, 4)
    );
    conn.handle
        .send(StopInstance {
            instance_id: 5,
            epoch: 0,
        })
        .await
        .unwrap();
    // An unknown instance is ignored.
    conn.handle
        .send(StopInstance {
            instance_id: 99,
            epoch: 0,
        })
        .await
        .unwrap();
    let stopped = conn.report(5).await;
    assert_final(&stopped, InstanceStatus::Stopped);
    assert_eq!(stopped.report_seq, 5);
    assert_eq!(worker.running(), 0);
    worker.shutdown().await;
}

async fn query(conn: &Conn, id: u64) -> Result<Message, RequestError> {
    conn.handle
        .request(QueryInstanceStatus { instance_id: id }, WAIT)
        .await
}

#[tokio::test]
async fn query_instance_status_running_finished_and_unknown() {
    let mut server = FakeServer::start(SECRET).await;
    let release = Arc::new(Notify::new());
    let r = Arc::clone(&release);
    let worker = Worker::builder(config(server.addr))
        .basic("gate", move |_ctx: TaskContext| {
            let r = Arc::clone(&r);
            async move {
                r.notified().await;
                ProcessResult::ok("done")
            }
        })
        .start()
        .await
        .unwrap();
    let mut conn = server.accept().await;

    match query(&conn, 77).await {
        Err(RequestError::Remote { code, .. }) => assert_eq!(code, ErrorCode::NotFound),
        other => panic!("{other:?}"),
    }
    conn.schedule(job(77, "gate", "")).await;
    assert_eq!(conn.report(77).await.status, InstanceStatus::Running);
    match query(&conn, 77).await.unwrap() {
        Message::InstanceStatusReply(r) => {
            assert_eq!(r.status, InstanceStatus::Running);
            assert_eq!((r.total_tasks, r.running_tasks), (1, 1));
        }
        other => panic!("{other:?}"),
    }
    release.notify_one();
    assert_final(&conn.report(77).await, InstanceStatus::Succeed);
    match query(&conn, 77).await.unwrap() {
        Message::InstanceStatusReply(r) => {
            assert_eq!(r.status, InstanceStatus::Succeed);
            assert_eq!(r.result.as_deref(), Some("done"));
            assert_eq!((r.succeeded_tasks, r.running_tasks), (1, 0));
        }
        other => panic!("{other:?}"),
    }
    worker.shutdown().await;
}

#[tokio::test]
async fn logs_arrive_in_ordered_batches() {
    let mut server = FakeServer::start(SECRET).await;
    const LINES: usize = 1500;
    let worker = Worker::builder(config(server.addr))
        .basic("chatty", |ctx: TaskContext| async move {
            for i in 0..LINES {
                ctx.logger().info(format!("line {i}"));
            }
            ProcessResult::ok("")
        })
        .start()
        .await
        .unwrap();
    let mut conn = server.accept().await;
    conn.schedule(job(3, "chatty", "")).await;
    conn.reports_until_final(3).await;
    let mut lines = Vec::new();
    let mut batches = 0;
    for b in std::mem::take(&mut conn.logs) {
        batches += 1;
        assert!(b.entries.len() <= 512);
        assert_eq!(b.worker_address, worker.address());
        lines.extend(b.entries);
    }
    while lines.len() < LINES {
        let b = conn
            .wait_for(|m| match m {
                Message::LogBatch(b) => Some(b.clone()),
                _ => None,
            })
            .await;
        batches += 1;
        assert!(b.entries.len() <= 512);
        lines.extend(b.entries);
    }
    assert!(batches >= 3, "{batches} batches");
    let texts: Vec<String> = lines
        .iter()
        .filter(|e| e.instance_id == 3)
        .map(|e| e.content.clone())
        .collect();
    let expected: Vec<String> = (0..LINES).map(|i| format!("line {i}")).collect();
    assert_eq!(texts, expected);
    assert_eq!(worker.log_lines_dropped(), 0);
    worker.shutdown().await;
}

#[tokio::test]
async fn a_full_log_queue_drops_and_counts_lines() {
    let mut server = FakeServer::start(SECRET).await;
    let mut cfg = config(server.addr);
    cfg.log_queue = 10;
    let worker = Worker::builder(cfg)
        .basic("flood", |ctx: TaskContext| async move {
            // No await between lines: the shipper cannot drain meanwhile.
            for i in 0..100 {
                ctx.logger().info(format!("line {i}"));
            }
            ProcessResult::ok("")
        })
        .start()
        .await
        .unwrap();
    let mut conn = server.accept().await;
    conn.schedule(job(4, "flood", "")).await;
    let last = conn.reports_until_final(4).await.pop().unwrap();
    assert_final(&last, InstanceStatus::Succeed);
    assert_eq!(worker.log_lines_dropped(), 90);
    worker.shutdown().await;
}

#[tokio::test]
async fn a_panicking_processor_fails_its_instance_and_the_worker_lives_on() {
    let mut server = FakeServer::start(SECRET).await;
    let worker = Worker::builder(config(server.addr))
        .builtins()
        .basic("boom", |ctx: TaskContext| async move {
            if ctx.instance_id() > 0 {
                panic!("boom {}", ctx.instance_id());
            }
            ProcessResult::ok("")
        })
        .start()
        .await
        .unwrap();
    let mut conn = server.accept().await;
    conn.schedule(job(1, "boom", "")).await;
    let last = conn.reports_until_final(1).await.pop().unwrap();
    assert_final(&last, InstanceStatus::Failed);
    assert_eq!(last.result.as_deref(), Some("processor panicked: boom 1"));
    conn.schedule(job(2, "noop", "")).await;
    assert_final(
        &conn.reports_until_final(2).await.pop().unwrap(),
        InstanceStatus::Succeed,
    );
    worker.shutdown().await;
}

#[tokio::test]
async fn shell_and_http_are_refused_unless_allowed() {
    let mut server = FakeServer::start(SECRET).await;
    let marker = tempfile::tempdir().unwrap();
    let witness = marker.path().join("ran");
    let worker = Worker::builder(strict_config(server.addr))
        .builtins()
        .start()
        .await
        .unwrap();
    let mut conn = server.accept().await;
    let command = format!("touch {}", witness.display());
    for (id, name, params) in [
        (1, "shell", command.as_str()),
        (2, "http", "http://127.0.0.1:9/"),
    ] {
        conn.schedule(job(id, name, params)).await;
        let last = conn.reports_until_final(id).await.pop().unwrap();
        assert_final(&last, InstanceStatus::Failed);
        let msg = last.result.unwrap();
        assert!(
            msg.starts_with(&format!(
                "processor \"{name}\" is disabled on worker {}",
                worker.address()
            )),
            "{msg}"
        );
        assert!(msg.contains(&format!("--allow-processor {name}")), "{msg}");
    }
    // The safe built-ins are there; the dangerous ones are not even listed.
    conn.schedule(job(3, "nope", "")).await;
    let msg = conn
        .reports_until_final(3)
        .await
        .pop()
        .unwrap()
        .result
        .unwrap();
    assert!(
        msg.ends_with("(this worker has: noop, sleep, sum_mr)"),
        "{msg}"
    );
    assert!(!witness.exists(), "the shell command ran");
    worker.shutdown().await;
}

#[tokio::test]
async fn unknown_processor_and_map_fail() {
    let mut server = FakeServer::start(SECRET).await;
    let worker = Worker::builder(config(server.addr))
        .builtins()
        .start()
        .await
        .unwrap();
    let mut conn = server.accept().await;
    conn.schedule(job(1, "nope", "")).await;
    let last = conn.reports_until_final(1).await.pop().unwrap();
    assert_final(&last, InstanceStatus::Failed);
    let msg = last.result.unwrap();
    assert!(msg.starts_with("unknown processor \"nope\""), "{msg}");
    assert!(msg.contains("http, noop, shell, sleep, sum_mr"), "{msg}");

    let mut j = job(2, "noop", "");
    j.execute_type = ExecuteType::MapReduce;
    conn.schedule(j).await;
    let last = conn.reports_until_final(2).await.pop().unwrap();
    assert_final(&last, InstanceStatus::Failed);
    // A basic processor cannot run a MAP_REDUCE job: a clear failure.
    let msg = last.result.unwrap();
    assert!(
        msg.contains("\"noop\" is not a MAP/MAP_REDUCE processor"),
        "{msg}"
    );
    worker.shutdown().await;
}

#[tokio::test]
async fn long_runs_repeat_running_as_keepalive_with_the_next_seq() {
    let mut server = FakeServer::start(SECRET).await;
    let mut cfg = config(server.addr);
    cfg.keepalive_interval = Duration::from_millis(20);
    let release = Arc::new(Notify::new());
    let r = Arc::clone(&release);
    let worker = Worker::builder(cfg)
        .basic("gate", move |_ctx: TaskContext| {
            let r = Arc::clone(&r);
            async move {
                r.notified().await;
                ProcessResult::ok("done")
            }
        })
        .start()
        .await
        .unwrap();
    let mut conn = server.accept().await;
    let mut j = job(9, "gate", "");
    j.report_seq_base = 100;
    conn.schedule(j).await;
    let mut seqs = Vec::new();
    for _ in 0..3 {
        let r = conn.report(9).await;
        assert_eq!(r.status, InstanceStatus::Running);
        seqs.push(r.report_seq);
    }
    release.notify_one();
    for r in conn.reports_until_final(9).await {
        seqs.push(r.report_seq);
    }
    let expected: Vec<u64> = (101..101 + seqs.len() as u64).collect();
    assert_eq!(seqs, expected, "strictly increasing by one from base + 1");
    worker.shutdown().await;
}

#[tokio::test]
async fn losing_the_server_stops_fixed_rate_work_only() {
    let mut server = FakeServer::start(SECRET).await;
    let addr = server.addr;
    let mut cfg = config(addr);
    cfg.server_lost_after = Duration::from_millis(200);
    let worker = Worker::builder(cfg).builtins().start().await.unwrap();
    let mut conn = server.accept().await;
    let mut fixed = job(1, "sleep", "60000");
    fixed.time_expression_type = TimeExpressionType::FixedRate;
    conn.schedule(fixed).await;
    conn.schedule(job(2, "sleep", "60000")).await;
    assert_eq!(conn.report(1).await.status, InstanceStatus::Running);
    assert_eq!(conn.report(2).await.status, InstanceStatus::Running);

    // The server goes away (listener and connection).
    drop(conn);
    drop(server);
    eventually("disconnected", || !worker.is_connected()).await;
    eventually("the fixed-rate instance stops", || worker.running() == 1).await;

    // The server comes back on the same address: the queued final report arrives.
    let mut server = FakeServer::bind(addr, SECRET).await;
    let mut conn = server.accept().await;
    let last = conn.report(1).await;
    assert_final(&last, InstanceStatus::Failed);
    assert!(
        last.result
            .as_deref()
            .unwrap()
            .contains("server unreachable"),
        "{last:?}"
    );
    match query(&conn, 2).await.unwrap() {
        Message::InstanceStatusReply(r) => assert_eq!(r.status, InstanceStatus::Running),
        other => panic!("{other:?}"),
    }
    worker.shutdown().await;
}

/// Reports never wait behind log lines: an instance that logs heavily while the server is
/// away has its final report delivered, on the next connection, before any of its logs.
#[tokio::test]
async fn a_final_report_goes_out_before_the_logs_queued_with_it() {
    let mut server = FakeServer::start(SECRET).await;
    let addr = server.addr;
    let go = Arc::new(Notify::new());
    let g = Arc::clone(&go);
    let worker = Worker::builder(config(addr))
        .basic("chatty", move |ctx: TaskContext| {
            let g = Arc::clone(&g);
            async move {
                g.notified().await;
                for i in 0..2000 {
                    ctx.logger().info(format!("line {i}"));
                }
                // Keeps running a little after its last line (longer than the log shipper's
                // batching delay), as real jobs do: the lines are batched before it ends.
                tokio::time::sleep(Duration::from_millis(300)).await;
                ProcessResult::ok("logged")
            }
        })
        .start()
        .await
        .unwrap();
    let mut conn = server.accept().await;
    conn.schedule(job(1, "chatty", "")).await;
    assert_eq!(conn.report(1).await.status, InstanceStatus::Running);

    // The server goes away; meanwhile the instance logs 2000 lines and finishes.
    drop(conn);
    drop(server);
    eventually("disconnected", || !worker.is_connected()).await;
    go.notify_one();
    eventually("the instance finished", || worker.running() == 0).await;

    let mut server = FakeServer::bind(addr, SECRET).await;
    let mut conn = server.accept().await;
    assert!(matches!(conn.next().await, Message::WorkerHeartbeat(_)));
    match conn.next().await {
        Message::ReportInstanceStatus(r) => {
            assert_final(&r, InstanceStatus::Succeed);
            assert_eq!(r.report_seq, 2);
        }
        other => panic!(
            "expected the final report before any log batch, got a {}",
            other.kind()
        ),
    }
    // The logs follow, all of them, in order.
    let mut lines = Vec::new();
    while lines.len() < 2000 {
        if let Message::LogBatch(b) = conn.next().await {
            lines.extend(b.entries.into_iter().map(|e| e.content));
        }
    }
    let expected: Vec<String> = (0..2000).map(|i| format!("line {i}")).collect();
    assert_eq!(lines, expected);
    worker.shutdown().await;
}

#[tokio::test]
async fn shutdown_fails_running_instances_and_flushes_their_reports() {
    let mut server = FakeServer::start(SECRET).await;
    let worker = Worker::builder(config(server.addr))
        .builtins()
        .start()
        .await
        .unwrap();
    let mut conn = server.accept().await;
    conn.schedule(job(1, "sleep", "60000")).await;
    assert_eq!(conn.report(1).await.status, InstanceStatus::Running);
    worker.shutdown().await;
    let last = conn.report(1).await;
    assert_final(&last, InstanceStatus::Failed);
    assert_eq!(last.result.as_deref(), Some("worker shut down"));
}

#[tokio::test]
async fn concurrency_limits_tasks_of_one_job_on_this_worker() {
    let mut server = FakeServer::start(SECRET).await;
    let started = Arc::new(AtomicU32::new(0));
    let release = Arc::new(Notify::new());
    let (s, r) = (Arc::clone(&started), Arc::clone(&release));
    let worker = Worker::builder(config(server.addr))
        .basic("gate", move |_ctx: TaskContext| {
            let (s, r) = (Arc::clone(&s), Arc::clone(&r));
            async move {
                s.fetch_add(1, Ordering::SeqCst);
                r.notified().await;
                ProcessResult::ok("")
            }
        })
        .start()
        .await
        .unwrap();
    let mut conn = server.accept().await;
    // Same job (10), concurrency 1: the second instance is RUNNING but waits for a slot.
    conn.schedule(job(1, "gate", "")).await;
    conn.schedule(job(2, "gate", "")).await;
    assert_eq!(conn.report(1).await.status, InstanceStatus::Running);
    assert_eq!(conn.report(2).await.status, InstanceStatus::Running);
    eventually("one task started", || started.load(Ordering::SeqCst) == 1).await;
    assert_eq!(worker.running(), 2);
    // Another job has its own slots.
    let mut other = job(3, "gate", "");
    other.job_id = 11;
    conn.schedule(other).await;
    eventually("the other job's task started", || {
        started.load(Ordering::SeqCst) == 2
    })
    .await;
    release.notify_waiters();
    eventually("the waiting task started", || {
        started.load(Ordering::SeqCst) == 3
    })
    .await;
    release.notify_waiters();
    let mut done = 0;
    while done < 3 {
        let r = conn
            .wait_for(|m| match m {
                Message::ReportInstanceStatus(r) if r.status.is_final() => Some(r.clone()),
                _ => None,
            })
            .await;
        assert_final(&r, InstanceStatus::Succeed);
        done += 1;
    }
    worker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_instances_each_get_running_then_one_final_report_in_sequence() {
    const N: u64 = 20_000;
    let mut server = FakeServer::start(SECRET).await;
    let worker = Worker::builder(config(server.addr))
        .builtins()
        .start()
        .await
        .unwrap();
    let mut conn = server.accept().await;
    let sender = conn.handle.clone();
    tokio::spawn(async move {
        for id in 1..=N {
            let mut j = job(id, "noop", "");
            j.job_id = id % 7;
            j.concurrency = 4;
            j.report_seq_base = id;
            sender.send(j).await.unwrap();
        }
    });
    let mut seen = std::collections::HashMap::<u64, Vec<(InstanceStatus, u64)>>::new();
    let mut finals = 0;
    while finals < N {
        let r = conn
            .wait_for(|m| match m {
                Message::ReportInstanceStatus(r) => Some(r.clone()),
                _ => None,
            })
            .await;
        if r.status.is_final() {
            finals += 1;
        }
        seen.entry(r.instance_id)
            .or_default()
            .push((r.status, r.report_seq));
    }
    assert_eq!(seen.len() as u64, N);
    for (id, reports) in seen {
        assert_eq!(
            reports,
            vec![
                (InstanceStatus::Running, id + 1),
                (InstanceStatus::Succeed, id + 2)
            ],
            "instance {id}"
        );
    }
    eventually("nothing runs", || worker.running() == 0).await;
    worker.shutdown().await;
}

#[tokio::test]
async fn dropping_the_worker_ends_its_connection_and_work() {
    let mut server = FakeServer::start(SECRET).await;
    let worker = Worker::builder(config(server.addr))
        .builtins()
        .start()
        .await
        .unwrap();
    let mut conn = server.accept().await;
    conn.schedule(job(1, "sleep", "60000")).await;
    assert_eq!(conn.report(1).await.status, InstanceStatus::Running);
    drop(worker);
    // Abrupt: the connection ends (whatever was in flight may or may not arrive).
    while tokio::time::timeout(WAIT, conn.incoming.recv())
        .await
        .unwrap()
        .is_some()
    {}
}

#[tokio::test]
async fn the_advertised_address_is_the_identity() {
    let mut server = FakeServer::start(SECRET).await;
    let mut cfg = config(server.addr);
    cfg.listen = "0.0.0.0:0".parse().unwrap();
    let w = Worker::builder(cfg.clone()).start().await.unwrap();
    assert!(w.address().starts_with("127.0.0.1:"), "{}", w.address());
    assert_eq!(server.accept().await.worker_address(), w.address());
    w.shutdown().await;

    cfg.advertise = Some("worker-1.example:27777".into());
    let w = Worker::builder(cfg).start().await.unwrap();
    assert_eq!(w.address(), "worker-1.example:27777");
    let mut conn = server.accept().await;
    assert_eq!(conn.worker_address(), "worker-1.example:27777");
    assert_eq!(
        conn.heartbeat().await.worker_address,
        "worker-1.example:27777"
    );
    w.shutdown().await;
}

/// Not a benchmark with asserts: `cargo test --release -p ferrojob --test worker --
/// --ignored --nocapture noop_throughput` prints how fast one worker turns noop instances
/// around against the fake server (the fake server's loop is part of the measurement).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn noop_throughput() {
    // FERROJOB_NOOP_INSTANCES overrides the count (e.g. for a quick debug-build run).
    let n: u64 = std::env::var("FERROJOB_NOOP_INSTANCES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let mut server = FakeServer::start(SECRET).await;
    let worker = Worker::builder(config(server.addr))
        .builtins()
        .start()
        .await
        .unwrap();
    let mut conn = server.accept().await;
    let sender = conn.handle.clone();
    let start = std::time::Instant::now();
    tokio::spawn(async move {
        for id in 1..=n {
            let mut j = job(id, "noop", "");
            j.concurrency = 1000;
            sender.send(j).await.unwrap();
        }
    });
    let mut finals = 0;
    while finals < n {
        let m = conn.next().await;
        if let Message::ReportInstanceStatus(r) = m {
            if r.status.is_final() {
                finals += 1;
            }
        }
    }
    let s = start.elapsed().as_secs_f64();
    eprintln!(
        "{n} noop instances in {s:.2} s: {:.0} instances/s",
        n as f64 / s
    );
    worker.shutdown().await;
}
