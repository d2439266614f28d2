//! Bench group `dispatch_select`: one dispatch decision (STANDALONE, with a memory minimum and
//! some overloaded workers to filter out) at 10, 100 and 1000 workers, HEALTH_FIRST and
//! ROUND_ROBIN, ferrojob's `WorkerRegistry::select` (`ferrojob`) against the straightforward
//! peer (`mutex_scan`): a `Mutex<HashMap<String, Worker>>` that, per call, locks, filters every
//! worker, scores it from its metrics, sorts the eligible ones and clones the winner's address.
//! Both apply the same filters and the same tie-breaks; before timing, the bench checks that
//! they choose the same workers and records that (`identical`).
//!
//! A multi-threaded run follows (2 threads selecting while a third heartbeats every worker in
//! a loop), reporting `selects_per_s` and `heartbeats_per_s` per implementation to
//! `target/bench-reports/dispatch_select.json`.
//!
//! `cargo bench -p ferrojob-benches --no-default-features --features engine --bench dispatch_select`

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use ferrojob::dispatch::{
    DispatchSpec, RoundRobinCursor, SelectState, TrackerCounts, WorkerMetrics, WorkerRegistry,
    WorkerStatus, GIB,
};
use ferrojob::model::{DispatchStrategy, ExecuteType};
use ferrojob_benches::{Report, Row};

const APP: &str = "bench";
const SIZES: [usize; 3] = [10, 100, 1000];
const NOW: i64 = 1_000_000;
/// How long each multi-threaded configuration runs.
const MT_RUN: Duration = Duration::from_secs(1);

/// Worker `i`'s address, status and metrics; every 10th is overloaded, scores vary.
fn worker(i: usize, round: u64) -> (WorkerStatus, WorkerMetrics) {
    let status = WorkerStatus {
        address: format!("10.0.{}.{}:27777", i / 256, i % 256),
        tags: vec![format!("zone-{}", i % 4)],
        version: "0.1.0".into(),
        overloaded: i % 10 == 3,
        trackers: TrackerCounts::default(),
    };
    let wobble = (i as u64 * 7919 + round) % 97;
    let metrics = WorkerMetrics {
        cpu_cores: 8,
        cpu_load: (wobble % 8) as f64 / 2.0,
        memory_used_bytes: wobble * GIB / 16,
        memory_max_bytes: 8 * GIB,
        disk_used_bytes: wobble * GIB,
        disk_total_bytes: 200 * GIB,
        reported_score: 0,
    };
    (status, metrics)
}

fn spec(strategy: DispatchStrategy) -> DispatchSpec {
    DispatchSpec {
        execute_type: ExecuteType::Standalone,
        strategy,
        min_memory_gb: 1.0,
        ..DispatchSpec::default()
    }
}

/// The peer: what a first implementation would write.
#[derive(Default)]
struct MutexScan {
    workers: Mutex<HashMap<String, NaiveWorker>>,
}

struct NaiveWorker {
    address: String,
    tags: Vec<String>,
    overloaded: bool,
    metrics: WorkerMetrics,
    last_heartbeat_ms: i64,
}

impl MutexScan {
    fn heartbeat(&self, status: &WorkerStatus, metrics: WorkerMetrics, now: i64) {
        let mut workers = self.workers.lock().unwrap();
        workers.insert(
            status.address.clone(),
            NaiveWorker {
                address: status.address.clone(),
                tags: status.tags.clone(),
                overloaded: status.overloaded,
                metrics,
                last_heartbeat_ms: now,
            },
        );
    }

    /// Same filters, score and tie-breaks as `WorkerRegistry::select` for STANDALONE.
    fn select(&self, spec: &DispatchSpec, cursor: &AtomicU64, now: i64) -> Option<String> {
        let workers = self.workers.lock().unwrap();
        let min_mem = (spec.min_memory_gb * GIB as f64).ceil() as u64;
        let min_disk = (spec.min_disk_gb * GIB as f64).ceil() as u64;
        let mut eligible: Vec<(i64, &NaiveWorker)> = workers
            .values()
            .filter(|w| now < w.last_heartbeat_ms + 3000)
            .filter(|w| {
                spec.designated.is_empty()
                    || spec
                        .designated
                        .iter()
                        .any(|d| *d == w.address || w.tags.contains(d))
            })
            .filter(|w| !w.overloaded)
            .filter(|w| {
                spec.min_cpu_cores <= 0.0
                    || f64::from(w.metrics.cpu_cores) - w.metrics.cpu_load.max(0.0)
                        >= spec.min_cpu_cores
            })
            .filter(|w| w.metrics.memory_free_bytes() >= min_mem)
            .filter(|w| w.metrics.disk_free_bytes() >= min_disk)
            .map(|w| (w.metrics.health_score(), w))
            .collect();
        if eligible.is_empty() {
            return None;
        }
        let chosen = match spec.strategy {
            DispatchStrategy::RoundRobin => {
                eligible.sort_by(|a, b| a.1.address.cmp(&b.1.address));
                let k = cursor.fetch_add(1, Ordering::Relaxed) % eligible.len() as u64;
                eligible[k as usize].1
            }
            _ => {
                eligible.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.address.cmp(&b.1.address)));
                eligible[0].1
            }
        };
        Some(chosen.address.clone())
    }
}

fn setup(n: usize) -> (WorkerRegistry, MutexScan) {
    let registry = WorkerRegistry::default();
    let peer = MutexScan::default();
    for i in 0..n {
        let (status, metrics) = worker(i, 0);
        registry.heartbeat(APP, &status, metrics, NOW).unwrap();
        peer.heartbeat(&status, metrics, NOW);
    }
    (registry, peer)
}

fn strategies() -> [(&'static str, DispatchStrategy); 2] {
    [
        ("health_first", DispatchStrategy::HealthFirst),
        ("round_robin", DispatchStrategy::RoundRobin),
    ]
}

/// Both pick the same workers for 2n selections.
fn identical(registry: &WorkerRegistry, peer: &MutexScan, spec: &DispatchSpec, n: usize) -> bool {
    let (cursor, peer_cursor) = (RoundRobinCursor::new(), AtomicU64::new(0));
    let mut state = SelectState::seeded(1);
    (0..2 * n).all(|_| {
        let ours = registry
            .select(APP, spec, &cursor, &mut state, NOW + 1)
            .map(|s| s.task_tracker.to_string())
            .ok();
        ours.is_some() && ours == peer.select(spec, &peer_cursor, NOW + 1)
    })
}

/// Two selecting threads and one heartbeating thread for `MT_RUN`; (selects/s, heartbeats/s).
fn contended<S, H>(select: S, heartbeat: H) -> (f64, f64)
where
    S: Fn() -> bool + Sync,
    H: Fn(u64) + Sync,
{
    let stop = AtomicBool::new(false);
    let (selects, beats) = (AtomicU64::new(0), AtomicU64::new(0));
    let start = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..2 {
            scope.spawn(|| {
                let mut count = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    for _ in 0..64 {
                        assert!(black_box(select()));
                    }
                    count += 64;
                }
                selects.fetch_add(count, Ordering::Relaxed);
            });
        }
        scope.spawn(|| {
            let mut round = 0u64;
            while !stop.load(Ordering::Relaxed) {
                heartbeat(round);
                round += 1;
            }
            beats.store(round, Ordering::Relaxed);
        });
        std::thread::sleep(MT_RUN);
        stop.store(true, Ordering::Relaxed);
    });
    let secs = start.elapsed().as_secs_f64();
    (
        selects.load(Ordering::Relaxed) as f64 / secs,
        beats.load(Ordering::Relaxed) as f64 / secs,
    )
}

fn bench(c: &mut Criterion) {
    let mut report = Report::new("dispatch_select");
    let mut group = c.benchmark_group("dispatch_select");
    group.sample_size(10);
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(2));
    for n in SIZES {
        let (registry, peer) = setup(n);
        for (name, strategy) in strategies() {
            let spec = spec(strategy);
            let param = format!("{name}/{n}");
            report.push(
                Row::new("ferrojob_vs_mutex_scan", &param)
                    .with("identical", identical(&registry, &peer, &spec, n)),
            );
            let cursor = RoundRobinCursor::new();
            let mut state = SelectState::seeded(1);
            group.bench_function(BenchmarkId::new("ferrojob", &param), |b| {
                b.iter(|| {
                    registry
                        .select(APP, black_box(&spec), &cursor, &mut state, NOW + 1)
                        .unwrap()
                })
            });
            let peer_cursor = AtomicU64::new(0);
            group.bench_function(BenchmarkId::new("mutex_scan", &param), |b| {
                b.iter(|| {
                    peer.select(black_box(&spec), &peer_cursor, NOW + 1)
                        .unwrap()
                })
            });
        }
    }
    group.finish();

    // Contended: 2 selecting threads, 1 thread heartbeating every worker round after round.
    for n in [100, 1000] {
        let workers: Vec<_> = (0..n).map(|i| worker(i, 0)).collect();
        for (name, strategy) in strategies() {
            let spec = spec(strategy);
            let param = format!("{name}/{n}/2_selectors_1_heartbeater");
            let (registry, peer) = setup(n);
            let cursor = RoundRobinCursor::new();
            let (selects, beats) = contended(
                || {
                    thread_local!(static STATE: std::cell::RefCell<SelectState> =
                        std::cell::RefCell::new(SelectState::seeded(1)));
                    STATE.with(|s| {
                        registry
                            .select(APP, &spec, &cursor, &mut s.borrow_mut(), NOW + 1)
                            .is_ok()
                    })
                },
                |round| {
                    let (status, metrics) = &workers[(round % n as u64) as usize];
                    registry.heartbeat(APP, status, *metrics, NOW).unwrap();
                },
            );
            report.push(
                Row::new("ferrojob", &param)
                    .with("selects_per_s", selects.round())
                    .with("heartbeats_per_s", beats.round()),
            );
            let peer_cursor = AtomicU64::new(0);
            let (selects, beats) = contended(
                || peer.select(&spec, &peer_cursor, NOW + 1).is_some(),
                |round| {
                    let (status, metrics) = &workers[(round % n as u64) as usize];
                    peer.heartbeat(status, *metrics, NOW);
                },
            );
            report.push(
                Row::new("mutex_scan", &param)
                    .with("selects_per_s", selects.round())
                    .with("heartbeats_per_s", beats.round()),
            );
        }
    }
    match report.write() {
        Ok(path) => println!("report: {}", path.display()),
        Err(e) => eprintln!("could not write the report: {e}"),
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
