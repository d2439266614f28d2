//! Throughput probe of the server core (ignored by default; run with
//! `cargo test --release -p ferrojob --test server_runtime_bench -- --ignored --nocapture`):
//! N API runs from concurrent callers through `Api::run_job`, two fake noop workers over the
//! real transport, the log store with its default durability, until every instance is
//! SUCCEED (acknowledged by the store).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod server_runtime_support;

use std::time::Instant;

use ferrojob::server::StoreChoice;
use ferrojob::time_expression::TimeExpressionType as T;
use server_runtime_support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn bench_api_runs_to_durable_succeed() {
    let n: usize = std::env::var("BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let callers = 256;
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(
        StoreChoice::Log {
            dir: dir.path().to_path_buf(),
        },
        None,
    );
    cfg.keep_finished_runs = 100;
    let server = start(cfg).await;
    let api = server.api();
    let app = app(&api, "bench").await;
    let w1 =
        FakeWorker::connect(server.transport_addr(), "bench", "w1:1", &[], Mode::Succeed).await;
    let w2 =
        FakeWorker::connect(server.transport_addr(), "bench", "w2:1", &[], Mode::Succeed).await;
    w1.register(&api, &app, 8, 0).await;
    w2.register(&api, &app, 8, 0).await;
    let mut body = job(T::Api, "");
    body.dispatch_strategy = ferrojob::model::DispatchStrategy::RoundRobin;
    let j = api.create_job(app.clone(), body).await.unwrap().id;
    let t = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..callers {
        let api = api.clone();
        let app = app.clone();
        let share = n / callers + usize::from(c < n % callers);
        tasks.push(tokio::spawn(async move {
            for _ in 0..share {
                run(&api, &app, j).await;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let created = t.elapsed();
    let want = format!("ferrojob_instances{{status=\"SUCCEED\"}} {n}\n");
    loop {
        let m = api.metrics_text();
        if m.contains(&want) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let all = t.elapsed();
    // The SUCCEED count grows only once the final write is acknowledged by the store.
    let m = api.metrics_text();
    let grep = |name: &str| {
        m.lines()
            .filter(|l| l.starts_with(name))
            .map(String::from)
            .collect::<Vec<_>>()
            .join("\n")
    };
    println!(
        "{n} instances: created in {:.3}s ({:.0}/s), all SUCCEED in {:.3}s ({:.0}/s)",
        created.as_secs_f64(),
        n as f64 / created.as_secs_f64(),
        all.as_secs_f64(),
        n as f64 / all.as_secs_f64()
    );
    println!("{}", grep("ferrojob_dispatch_latency_seconds"));
    println!("{}", grep("ferrojob_store_commit_seconds_count"));
    server.shutdown().await;
}
