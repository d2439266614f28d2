//! MAP_REDUCE end to end with real processes: a `ferrojob-server` and `ferrojob-worker`s (each
//! with its own temp task store dir) on 127.0.0.1, driven through the Rust client.

mod common;

use std::time::Duration;

use common::*;
use ferrojob::api::{InstanceView, RunJob};
use ferrojob::ids::InstanceId;
use ferrojob::model::{ExecuteType, InstanceStatus};
use ferrojob::time_expression::TimeExpressionType;

/// Starts `n` workers, each with `--data-dir <cluster dir>/mr-worker<i>`.
async fn cluster(n: usize) -> Cluster {
    let mut c = Cluster::start(0, None).await;
    for i in 0..n {
        let dir = c.dir.path().join(format!("mr-worker{i}"));
        let dir = dir.to_str().unwrap().to_owned();
        c.add_worker_with(SECRET, &format!("t{i}"), &["--data-dir", &dir]);
    }
    c.wait_workers(n).await;
    c
}

async fn run_sum_mr(c: &Cluster, tasks: u64, batch: u64) -> InstanceId {
    let mut b = body("sum", TimeExpressionType::Api, "", "sum_mr", "");
    b.execute_type = ExecuteType::MapReduce;
    let job = c.job(b).await;
    c.client
        .run_job(
            APP,
            job,
            &RunJob {
                params: format!(r#"{{"tasks": {tasks}, "batch": {batch}}}"#),
                delay_ms: 0,
            },
        )
        .await
        .unwrap()
        .instance_id
}

async fn wait_final(c: &Cluster, id: InstanceId) -> InstanceView {
    wait_for(
        "the sum_mr instance to end",
        Duration::from_secs(120),
        || async {
            let i = c.client.get_instance(APP, id).await.ok()?;
            i.status.is_final().then_some(i)
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sum_mr_of_100k_tasks_over_two_workers_is_exact() {
    let c = cluster(2).await;
    let n = 100_000u64;
    let id = run_sum_mr(&c, n, 5_000).await;
    let i = wait_final(&c, id).await;
    assert_eq!(
        i.status,
        InstanceStatus::Succeed,
        "{i:?}\n{}",
        c.diagnostics()
    );
    assert_eq!(
        i.result.as_deref(),
        Some((n * (n - 1) / 2).to_string().as_str())
    );
    // Both workers ran tasks for the TaskTracker (its own ProcessorTracker included).
    for w in &c.workers {
        assert!(
            w.stderr_text().contains("running tasks for a TaskTracker"),
            "{}",
            c.diagnostics()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_mapreduce_has_its_tasks_rerun_and_the_sum_stays_exact() {
    let mut c = cluster(3).await;
    let addresses: Vec<String> = c.workers.iter().map(|w| w.field("address")).collect();
    let n = 100_000u64;
    let id = run_sum_mr(&c, n, 1_000).await;
    let tracker = wait_for("a TaskTracker", Duration::from_secs(30), || async {
        c.client.get_instance(APP, id).await.ok()?.worker
    })
    .await;
    let victim = addresses.iter().position(|a| *a != tracker).unwrap();
    // Kill the victim (SIGKILL) as soon as it runs tasks of the instance.
    wait_for(
        "the victim to run tasks",
        Duration::from_secs(60),
        || async {
            c.workers[victim]
                .stderr_text()
                .contains("running tasks for a TaskTracker")
                .then_some(())
        },
    )
    .await;
    c.workers[victim].kill();
    let i = wait_final(&c, id).await;
    assert_eq!(
        i.status,
        InstanceStatus::Succeed,
        "{i:?}\n{}",
        c.diagnostics()
    );
    assert_eq!(
        i.result.as_deref(),
        Some((n * (n - 1) / 2).to_string().as_str())
    );
    let tracker_log =
        c.workers[addresses.iter().position(|a| *a == tracker).unwrap()].stderr_text();
    assert!(
        tracker_log.contains("worker dead, tasks requeued"),
        "the TaskTracker noticed the dead worker\n{}",
        c.diagnostics()
    );
}
