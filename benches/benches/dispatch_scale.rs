//! Bench group `dispatch_scale`: the worker registry at 10, 1,000 and 10,000 workers of one
//! app, ferrojob's `WorkerRegistry` (`indexed`) against the layout it replaced (`scan`), kept
//! here as the peer: an immutable snapshot sorted by address, copied with the new worker put
//! in its place on every registration, and a selection that judges every worker.
//!
//! - `select/<strategy>/<n>`: one STANDALONE selection without filters (the default spec);
//! - `select/map_reduce/<n>`: one uncapped MAP_REDUCE selection (every eligible worker, best
//!   first);
//! - `select/health_first_min_memory/<n>`: with a memory minimum, which both answer by a scan;
//! - `register/<n>`: n workers registering into an empty app (a reconnect after a restart).
//!
//! Every 10th worker is overloaded and scores vary. Before timing, the bench checks that both
//! choose the same workers for 2n selections of each spec.
//!
//! `cargo bench -p ferrojob-benches --no-default-features --features engine --bench dispatch_scale`

use std::cmp::Reverse;
use std::collections::HashMap;
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion};
use dashmap::DashMap;
use ferrojob::dispatch::{
    DispatchSpec, RoundRobinCursor, SelectState, TrackerCounts, WorkerMetrics, WorkerRegistry,
    WorkerStatus, GIB,
};
use ferrojob::model::{DispatchStrategy, ExecuteType};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const APP: &str = "bench";
const SIZES: [usize; 3] = [10, 1_000, 10_000];
const NOW: i64 = 1_000_000;
const WINDOW: i64 = 3_000;

/// Worker `i`'s address, status and metrics; every 10th is overloaded, scores vary.
fn worker(i: usize) -> (WorkerStatus, WorkerMetrics) {
    let status = WorkerStatus {
        address: format!("10.{}.{}.{}:27777", i / 65_536, (i / 256) % 256, i % 256),
        tags: vec![format!("zone-{}", i % 4)],
        version: "0.1.0".into(),
        overloaded: i % 10 == 3,
        trackers: TrackerCounts::default(),
    };
    let wobble = (i as u64 * 7919) % 97;
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

// ---- the peer: the previous snapshot layout and scan ---------------------------------------

struct OldSlot {
    address: Arc<str>,
    tags: Box<[Arc<str>]>,
    last_heartbeat_ms: AtomicI64,
    overloaded: AtomicBool,
    score: AtomicI64,
    cpu_free_millicores: AtomicI64,
    memory_free_bytes: AtomicU64,
    disk_free_bytes: AtomicU64,
    /// What the registry's slots carry besides (full metrics, version, trackers): the same
    /// size, so that a scan touches as much memory as the registry's does.
    _details: Mutex<(WorkerMetrics, String, TrackerCounts, i64, bool)>,
}

#[derive(Default)]
struct OldSnapshot {
    slots: Box<[Arc<OldSlot>]>,
    index: HashMap<Arc<str>, usize>,
}

impl OldSnapshot {
    /// The previous `Snapshot::with_slot`, as it was.
    fn with_slot(&self, slot: Arc<OldSlot>) -> Arc<OldSnapshot> {
        let mut index = self.index.clone();
        let mut slots: Vec<Arc<OldSlot>> = Vec::with_capacity(self.slots.len() + 1);
        match self
            .slots
            .binary_search_by(|s| s.address.cmp(&slot.address))
        {
            Ok(at) => {
                index.insert(slot.address.clone(), at);
                slots.extend(self.slots.iter().cloned());
                slots[at] = slot;
            }
            Err(at) => {
                for i in index.values_mut() {
                    if *i >= at {
                        *i += 1;
                    }
                }
                index.insert(slot.address.clone(), at);
                let (before, after) = self.slots.split_at(at);
                slots.extend(before.iter().cloned());
                slots.push(slot);
                slots.extend(after.iter().cloned());
            }
        }
        Arc::new(OldSnapshot {
            slots: slots.into_boxed_slice(),
            index,
        })
    }
}

/// The previous registry: per app, a snapshot swapped under a writer mutex.
#[derive(Default)]
struct OldRegistry {
    apps: DashMap<Arc<str>, Arc<Mutex<Arc<OldSnapshot>>>>,
    eligible: Vec<(usize, i64)>,
}

impl OldRegistry {
    fn register(&self, status: &WorkerStatus, metrics: WorkerMetrics, now: i64) {
        let app = self.apps.entry(Arc::from(APP)).or_default().clone();
        let mut current = app.lock().unwrap();
        if current.index.contains_key(status.address.as_str()) {
            return;
        }
        let mut tags: Vec<&str> = status.tags.iter().map(String::as_str).collect();
        tags.sort_unstable();
        tags.dedup();
        let slot = Arc::new(OldSlot {
            address: Arc::from(status.address.as_str()),
            tags: tags.into_iter().map(Arc::from).collect(),
            last_heartbeat_ms: AtomicI64::new(now),
            overloaded: AtomicBool::new(status.overloaded),
            score: AtomicI64::new(metrics.health_score()),
            cpu_free_millicores: AtomicI64::new(metrics.cpu_free_millicores()),
            memory_free_bytes: AtomicU64::new(metrics.memory_free_bytes()),
            disk_free_bytes: AtomicU64::new(metrics.disk_free_bytes()),
            _details: Mutex::new((metrics, status.version.clone(), status.trackers, now, false)),
        });
        let next = current.with_slot(slot);
        *current = next;
    }

    /// The previous `select`: every filter in its order, counted per filter as the error
    /// needs; the list for MAP_REDUCE. Returns the TaskTracker and the list's length.
    fn select(
        &mut self,
        spec: &DispatchSpec,
        cursor: &AtomicU64,
        rng: &mut StdRng,
        now: i64,
    ) -> Option<(Arc<str>, usize)> {
        let snapshot = self.apps.get(APP)?.lock().unwrap().clone();
        let min_cpu = (spec.min_cpu_cores * 1000.0).ceil() as i64;
        let min_memory = (spec.min_memory_gb * GIB as f64).ceil() as u64;
        let min_disk = (spec.min_disk_gb * GIB as f64).ceil() as u64;
        let designates = |slot: &OldSlot| {
            spec.designated.iter().any(|d| {
                **d == *slot.address || slot.tags.binary_search_by(|t| (**t).cmp(d)).is_ok()
            })
        };
        let slots = &snapshot.slots;
        let mut excluded = [0usize; 6];
        let eligible = &mut self.eligible;
        eligible.clear();
        for (i, slot) in slots.iter().enumerate() {
            let last = slot.last_heartbeat_ms.load(Ordering::Relaxed);
            if now >= last.saturating_add(WINDOW) {
                excluded[0] += 1;
            } else if !spec.designated.is_empty() && !designates(slot) {
                excluded[1] += 1;
            } else if slot.overloaded.load(Ordering::Relaxed) {
                excluded[2] += 1;
            } else if min_cpu > 0 && slot.cpu_free_millicores.load(Ordering::Relaxed) < min_cpu {
                excluded[3] += 1;
            } else if slot.memory_free_bytes.load(Ordering::Relaxed) < min_memory {
                excluded[4] += 1;
            } else if slot.disk_free_bytes.load(Ordering::Relaxed) < min_disk {
                excluded[5] += 1;
            } else {
                eligible.push((i, slot.score.load(Ordering::Relaxed)));
            }
        }
        black_box(excluded);
        let len = eligible.len();
        if len == 0 {
            return None;
        }
        let pick = match spec.strategy {
            DispatchStrategy::Random => rng.gen_range(0..len),
            DispatchStrategy::RoundRobin => {
                (cursor.fetch_add(1, Ordering::Relaxed) % len as u64) as usize
            }
            _ => {
                let (mut best, mut best_score) = (0, i64::MIN);
                for (pos, &(_, score)) in eligible.iter().enumerate() {
                    if score > best_score {
                        best = pos;
                        best_score = score;
                    }
                }
                best
            }
        };
        let tracker = eligible[pick].0;
        let mut listed = 1;
        if spec.execute_type != ExecuteType::Standalone {
            eligible.sort_unstable_by_key(|&(i, score)| (Reverse(score), i));
            let rest: Vec<Arc<str>> = eligible
                .iter()
                .filter(|&&(i, _)| i != tracker)
                .map(|&(i, _)| slots[i].address.clone())
                .collect();
            listed += rest.len();
        }
        Some((slots[tracker].address.clone(), listed))
    }
}

// ---- the bench ------------------------------------------------------------------------------

fn setup(n: usize) -> (WorkerRegistry, OldRegistry) {
    let registry = WorkerRegistry::default();
    let old = OldRegistry::default();
    for i in 0..n {
        let (status, metrics) = worker(i);
        registry.heartbeat(APP, &status, metrics, NOW).unwrap();
        old.register(&status, metrics, NOW);
    }
    (registry, old)
}

fn specs() -> [(&'static str, DispatchSpec); 5] {
    let plain = |execute_type, strategy| DispatchSpec {
        execute_type,
        strategy,
        ..DispatchSpec::default()
    };
    [
        (
            "health_first",
            plain(ExecuteType::Standalone, DispatchStrategy::HealthFirst),
        ),
        (
            "round_robin",
            plain(ExecuteType::Standalone, DispatchStrategy::RoundRobin),
        ),
        (
            "random",
            plain(ExecuteType::Standalone, DispatchStrategy::Random),
        ),
        (
            "map_reduce",
            plain(ExecuteType::MapReduce, DispatchStrategy::HealthFirst),
        ),
        (
            "health_first_min_memory",
            DispatchSpec {
                min_memory_gb: 1.0,
                ..plain(ExecuteType::Standalone, DispatchStrategy::HealthFirst)
            },
        ),
    ]
}

/// Both choose the same TaskTracker and list as many workers, 2n times in a row.
fn identical(registry: &WorkerRegistry, old: &mut OldRegistry, spec: &DispatchSpec, n: usize) {
    let (cursor, old_cursor) = (RoundRobinCursor::new(), AtomicU64::new(0));
    let mut state = SelectState::seeded(1);
    let mut rng = StdRng::seed_from_u64(1);
    for _ in 0..2 * n {
        let new = registry
            .select(APP, spec, &cursor, &mut state, NOW + 1)
            .map(|s| (s.task_tracker, s.workers.len()))
            .ok();
        assert_eq!(new, old.select(spec, &old_cursor, &mut rng, NOW + 1));
    }
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("dispatch_scale");
    group.sample_size(10);
    group.warm_up_time(Duration::from_millis(300));
    group.measurement_time(Duration::from_secs(1));
    for n in SIZES {
        let (registry, mut old) = setup(n);
        for (name, spec) in specs() {
            identical(&registry, &mut old, &spec, n);
            let param = format!("{name}/{n}");
            let cursor = RoundRobinCursor::new();
            let mut state = SelectState::seeded(1);
            group.bench_function(BenchmarkId::new("indexed", &param), |b| {
                b.iter(|| {
                    registry
                        .select(APP, black_box(&spec), &cursor, &mut state, NOW + 1)
                        .unwrap()
                })
            });
            let old_cursor = AtomicU64::new(0);
            let mut rng = StdRng::seed_from_u64(1);
            group.bench_function(BenchmarkId::new("scan", &param), |b| {
                b.iter(|| {
                    old.select(black_box(&spec), &old_cursor, &mut rng, NOW + 1)
                        .unwrap()
                })
            });
        }
        let workers: Vec<_> = (0..n).map(worker).collect();
        let param = format!("register/{n}");
        group.bench_function(BenchmarkId::new("indexed", &param), |b| {
            b.iter_batched(
                WorkerRegistry::default,
                |registry| {
                    for (status, metrics) in &workers {
                        registry.heartbeat(APP, status, *metrics, NOW).unwrap();
                    }
                    registry
                },
                BatchSize::PerIteration,
            )
        });
        group.bench_function(BenchmarkId::new("scan", &param), |b| {
            b.iter_batched(
                OldRegistry::default,
                |old| {
                    for (status, metrics) in &workers {
                        old.register(status, *metrics, NOW);
                    }
                    old
                },
                BatchSize::PerIteration,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
