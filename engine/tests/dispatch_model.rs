//! Property tests: the registry and selection against a plain model (a `BTreeMap` of workers
//! and a brute-force filter), over random heartbeats, removals, expiries and selections at
//! virtual times.

use std::collections::{BTreeMap, BTreeSet};

use ferrojob::dispatch::{
    DispatchError, DispatchSpec, RoundRobinCursor, SelectState, WorkerMetrics, WorkerRegistry,
    WorkerStatus, GIB,
};
use ferrojob::model::{DispatchStrategy, ExecuteType};
use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const APPS: [&str; 2] = ["a", "b"];
const TAGS: [&str; 3] = ["gpu", "eu", "big"];
const WINDOW: i64 = 3000;

#[derive(Clone, Debug)]
struct Model {
    tags: BTreeSet<String>,
    overloaded: bool,
    metrics: WorkerMetrics,
    last: i64,
}

#[derive(Clone, Debug)]
enum Op {
    Heartbeat {
        app: usize,
        worker: usize,
        tags: Vec<usize>,
        overloaded: bool,
        metrics: WorkerMetrics,
    },
    Remove {
        app: usize,
        worker: usize,
    },
    Advance(i64),
    Expire,
    Select {
        app: usize,
        spec: DispatchSpec,
        job: usize,
    },
}

fn address(worker: usize) -> String {
    format!("10.0.0.{worker}:27777")
}

fn metrics() -> impl Strategy<Value = WorkerMetrics> {
    (
        0u32..8,
        prop_oneof![
            Just(-1.0),
            Just(f64::NAN),
            (0u32..40).prop_map(|l| f64::from(l) / 4.0)
        ],
        0u64..6,
        0u64..6,
    )
        .prop_map(|(cpu_cores, cpu_load, mem, disk)| WorkerMetrics {
            cpu_cores,
            cpu_load,
            memory_used_bytes: GIB / 2,
            memory_max_bytes: GIB / 2 + mem * GIB,
            disk_used_bytes: GIB,
            disk_total_bytes: GIB + disk * GIB / 2,
            reported_score: 0,
        })
}

fn spec() -> impl Strategy<Value = DispatchSpec> {
    let designated = prop::collection::vec(
        prop_oneof![
            (0usize..3).prop_map(|t| TAGS[t].to_string()),
            (0usize..6).prop_map(address)
        ],
        0..3,
    );
    (
        prop_oneof![
            Just(ExecuteType::Standalone),
            Just(ExecuteType::Broadcast),
            Just(ExecuteType::Map),
            Just(ExecuteType::MapReduce)
        ],
        prop_oneof![
            Just(DispatchStrategy::HealthFirst),
            Just(DispatchStrategy::Random),
            Just(DispatchStrategy::RoundRobin),
            Just(DispatchStrategy::Specify)
        ],
        designated,
        prop_oneof![Just(0.0), (0u32..8).prop_map(|c| f64::from(c) / 2.0)],
        prop_oneof![Just(0.0), (0u32..6).prop_map(f64::from)],
        prop_oneof![Just(0.0), (0u32..6).prop_map(|d| f64::from(d) / 2.0)],
        0u32..4,
    )
        .prop_map(
            |(execute_type, strategy, designated, cpu, mem, disk, max)| {
                let designated = if strategy == DispatchStrategy::Specify && designated.is_empty() {
                    vec!["gpu".to_string()]
                } else {
                    designated
                };
                DispatchSpec {
                    execute_type,
                    strategy,
                    designated,
                    min_cpu_cores: cpu,
                    min_memory_gb: mem,
                    min_disk_gb: disk,
                    max_worker_count: max,
                }
            },
        )
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0usize..2, 0usize..6, prop::collection::vec(0usize..3, 0..3), prop::bool::weighted(0.2), metrics())
            .prop_map(|(app, worker, tags, overloaded, metrics)| Op::Heartbeat { app, worker, tags, overloaded, metrics }),
        1 => (0usize..2, 0usize..6).prop_map(|(app, worker)| Op::Remove { app, worker }),
        // Whole seconds too, so that "exactly at the deadline" comes up often.
        3 => prop_oneof![0i64..2500, Just(1000), Just(1500), Just(3000)].prop_map(Op::Advance),
        1 => Just(Op::Expire),
        6 => (0usize..2, spec(), 0usize..2).prop_map(|(app, spec, job)| Op::Select { app, spec, job }),
    ]
}

/// The model's filter: the first reason a worker is excluded, or its score if eligible.
fn judge(w: &Model, addr: &str, spec: &DispatchSpec, now: i64) -> Result<i64, usize> {
    let m = &w.metrics;
    let load = if m.cpu_load.is_finite() && m.cpu_load >= 0.0 {
        m.cpu_load
    } else {
        0.0
    };
    let free_cpu = f64::from(m.cpu_cores) - load;
    let free = |max: u64, used: u64| max.saturating_sub(used) as f64 / GIB as f64;
    if now >= w.last + WINDOW {
        Err(0)
    } else if !spec.designated.is_empty()
        && !spec
            .designated
            .iter()
            .any(|d| d == addr || w.tags.contains(d))
    {
        Err(1)
    } else if w.overloaded {
        Err(2)
    } else if spec.min_cpu_cores > 0.0 && free_cpu < spec.min_cpu_cores {
        Err(3)
    } else if free(m.memory_max_bytes, m.memory_used_bytes) < spec.min_memory_gb {
        Err(4)
    } else if free(m.disk_total_bytes, m.disk_used_bytes) < spec.min_disk_gb {
        Err(5)
    } else {
        Ok(m.health_score())
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn registry_and_selection_match_the_model(ops in prop::collection::vec(op(), 1..80), seed in 0u64..1000) {
        let reg = WorkerRegistry::default();
        let mut model: BTreeMap<(usize, String), Model> = BTreeMap::new();
        let cursors = [RoundRobinCursor::new(), RoundRobinCursor::new()];
        let mut state = SelectState::seeded(seed);
        let mut now = 1_000_000i64;
        for op in ops {
            match op {
                Op::Heartbeat { app, worker, tags, overloaded, metrics } => {
                    let status = WorkerStatus {
                        address: address(worker),
                        tags: tags.iter().map(|&t| TAGS[t].to_string()).collect(),
                        overloaded,
                        ..WorkerStatus::default()
                    };
                    reg.heartbeat(APPS[app], &status, metrics, now).unwrap();
                    let tags = status.tags.into_iter().collect();
                    let last = model.get(&(app, address(worker))).map_or(now, |w| w.last.max(now));
                    model.insert((app, address(worker)), Model { tags, overloaded, metrics, last });
                }
                Op::Remove { app, worker } => {
                    let was = model.remove(&(app, address(worker))).is_some();
                    prop_assert_eq!(reg.remove(APPS[app], &address(worker)), was);
                }
                Op::Advance(dt) => now += dt,
                Op::Expire => {
                    let mut got: Vec<(String, String)> = reg
                        .expire(now)
                        .into_iter()
                        .map(|(a, w)| (a.to_string(), w.to_string()))
                        .collect();
                    got.sort();
                    let mut want = Vec::new();
                    model.retain(|(app, addr), w| {
                        let dead = now >= w.last + WINDOW;
                        if dead {
                            want.push((APPS[*app].to_string(), addr.clone()));
                        }
                        !dead
                    });
                    want.sort();
                    prop_assert_eq!(got, want);
                }
                Op::Select { app, spec, job } => {
                    let mut excl = [0usize; 6];
                    let mut eligible: BTreeMap<String, i64> = BTreeMap::new();
                    let mut registered = 0;
                    for ((a, addr), w) in &model {
                        if *a != app {
                            continue;
                        }
                        registered += 1;
                        match judge(w, addr, &spec, now) {
                            Ok(score) => { eligible.insert(addr.clone(), score); }
                            Err(i) => excl[i] += 1,
                        }
                    }
                    let result = reg.select(APPS[app], &spec, &cursors[job], &mut state, now);
                    if eligible.is_empty() {
                        match result {
                            Err(DispatchError::NoEligibleWorker { exclusions, .. }) => {
                                let got = [
                                    exclusions.dead,
                                    exclusions.not_designated,
                                    exclusions.overloaded,
                                    exclusions.insufficient_cpu,
                                    exclusions.insufficient_memory,
                                    exclusions.insufficient_disk,
                                ];
                                prop_assert_eq!(got, excl);
                                prop_assert_eq!(exclusions.registered, registered);
                                prop_assert_eq!(exclusions.excluded(), registered);
                            }
                            other => prop_assert!(false, "expected NoEligibleWorker, got {:?}", other),
                        }
                        continue;
                    }
                    let sel = result.unwrap();
                    prop_assert_eq!(sel.eligible, eligible.len());
                    let tracker = sel.task_tracker.to_string();
                    prop_assert!(eligible.contains_key(&tracker), "{} not eligible", tracker);
                    prop_assert_eq!(&*sel.workers[0], &*tracker);
                    let set: BTreeSet<String> = sel.workers.iter().map(|w| w.to_string()).collect();
                    prop_assert_eq!(set.len(), sel.workers.len(), "duplicates in {:?}", sel.workers);
                    prop_assert!(set.iter().all(|w| eligible.contains_key(w)));
                    if matches!(spec.strategy, DispatchStrategy::HealthFirst | DispatchStrategy::Specify) {
                        let max = eligible.values().max().copied().unwrap();
                        let first_max = eligible.iter().find(|(_, &s)| s == max).unwrap().0;
                        prop_assert_eq!(&tracker, first_max);
                    }
                    if spec.strategy == DispatchStrategy::Specify {
                        prop_assert!(!spec.designated.is_empty());
                    }
                    match spec.execute_type {
                        ExecuteType::Standalone => prop_assert_eq!(sel.workers.len(), 1),
                        _ => {
                            let cap = if spec.max_worker_count == 0 {
                                eligible.len()
                            } else {
                                eligible.len().min(spec.max_worker_count as usize)
                            };
                            prop_assert_eq!(sel.workers.len(), cap);
                            // The others are the best of the rest, score descending.
                            let mut rest: Vec<(i64, &String)> = eligible
                                .iter()
                                .filter(|(a, _)| **a != tracker)
                                .map(|(a, &s)| (-s, a))
                                .collect();
                            rest.sort();
                            let want: Vec<&String> = rest.iter().take(cap - 1).map(|(_, a)| *a).collect();
                            let got: Vec<String> = sel.workers[1..].iter().map(|w| w.to_string()).collect();
                            prop_assert_eq!(got.iter().collect::<Vec<_>>(), want);
                        }
                    }
                }
            }
            // Listing agrees with the model.
            for (i, app) in APPS.iter().enumerate() {
                let listed: Vec<String> = reg.workers(app).iter().map(|w| w.address.to_string()).collect();
                let want: Vec<String> = model.keys().filter(|(a, _)| *a == i).map(|(_, w)| w.clone()).collect();
                prop_assert_eq!(listed, want);
            }
        }
    }

    #[test]
    fn round_robin_visits_every_eligible_worker_once_per_cycle(
        workers in prop::collection::vec((prop::bool::weighted(0.7), metrics()), 1..12),
        cycles in 1usize..4,
        start in 0u64..50,
    ) {
        let reg = WorkerRegistry::default();
        let mut eligible = BTreeSet::new();
        for (i, (ok, metrics)) in workers.iter().enumerate() {
            let status = WorkerStatus { address: address(i), overloaded: !ok, ..WorkerStatus::default() };
            reg.heartbeat("a", &status, *metrics, 0).unwrap();
            if *ok {
                eligible.insert(address(i));
            }
        }
        let spec = DispatchSpec { strategy: DispatchStrategy::RoundRobin, ..DispatchSpec::default() };
        let cursor = RoundRobinCursor::new();
        let mut state = SelectState::seeded(0);
        for _ in 0..start {
            let _ = reg.select("a", &spec, &cursor, &mut state, 1);
        }
        for _ in 0..cycles {
            let mut seen = BTreeSet::new();
            for _ in 0..eligible.len() {
                let w = reg.select("a", &spec, &cursor, &mut state, 1).unwrap().task_tracker;
                prop_assert!(seen.insert(w.to_string()), "{} twice in one cycle", w);
            }
            prop_assert_eq!(&seen, &eligible);
        }
        if eligible.is_empty() {
            prop_assert!(reg.select("a", &spec, &cursor, &mut state, 1).is_err());
        }
    }
}

/// A spec without filters (no designated list, no minimums): the registry answers it from its
/// indexes instead of judging every worker.
fn plain_spec() -> impl Strategy<Value = DispatchSpec> {
    (
        prop_oneof![
            Just(ExecuteType::Standalone),
            Just(ExecuteType::Broadcast),
            Just(ExecuteType::MapReduce)
        ],
        prop_oneof![
            Just(DispatchStrategy::HealthFirst),
            Just(DispatchStrategy::Random),
            Just(DispatchStrategy::RoundRobin)
        ],
        0u32..5,
    )
        .prop_map(|(execute_type, strategy, max_worker_count)| DispatchSpec {
            execute_type,
            strategy,
            max_worker_count,
            ..DispatchSpec::default()
        })
}

/// Few distinct scores, so that ties (broken by address) are common.
fn tied_metrics() -> impl Strategy<Value = WorkerMetrics> {
    (0u64..3, prop::bool::weighted(0.8)).prop_map(|(mem, known)| WorkerMetrics {
        cpu_cores: 4,
        cpu_load: if known { 1.0 } else { -1.0 },
        memory_used_bytes: GIB,
        memory_max_bytes: GIB + mem * GIB,
        disk_used_bytes: GIB,
        disk_total_bytes: 3 * GIB,
        reported_score: 0,
    })
}

fn wide_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (0usize..2, 0usize..24, prop::collection::vec(0usize..3, 0..2), prop::bool::weighted(0.15), prop_oneof![tied_metrics(), metrics()])
            .prop_map(|(app, worker, tags, overloaded, metrics)| Op::Heartbeat { app, worker, tags, overloaded, metrics }),
        1 => (0usize..2, 0usize..24).prop_map(|(app, worker)| Op::Remove { app, worker }),
        // Backwards too: the registry must not assume that `now` only grows.
        3 => prop_oneof![0i64..1200, Just(1000), Just(3000), Just(-700)].prop_map(Op::Advance),
        1 => Just(Op::Expire),
        8 => (0usize..2, prop_oneof![3 => plain_spec(), 1 => spec()], 0usize..2)
            .prop_map(|(app, spec, job)| Op::Select { app, spec, job }),
    ]
}

/// What one selection returned, in plain values.
type Outcome = Result<(String, Vec<String>, usize), [usize; 7]>;

/// The selection as a scan of every worker in address order (the registry's algorithm before
/// it kept indexes, written out on the model's state): judge each worker, then pick with the
/// same rng draw or cursor turn, then list the others best first.
fn scan_model(
    model: &BTreeMap<(usize, String), Model>,
    app: usize,
    spec: &DispatchSpec,
    turn: &mut u64,
    rng: &mut StdRng,
    now: i64,
) -> Outcome {
    let mut excl = [0usize; 7];
    let mut eligible: Vec<(String, i64)> = Vec::new();
    for ((a, addr), w) in model {
        if *a != app {
            continue;
        }
        excl[6] += 1;
        match judge(w, addr, spec, now) {
            Ok(score) => eligible.push((addr.clone(), score)),
            Err(i) => excl[i] += 1,
        }
    }
    if eligible.is_empty() {
        return Err(excl);
    }
    let len = eligible.len();
    let pick = match spec.strategy {
        DispatchStrategy::Random => rng.gen_range(0..len),
        DispatchStrategy::RoundRobin => {
            let k = (*turn % len as u64) as usize;
            *turn += 1;
            k
        }
        // HEALTH_FIRST and SPECIFY.
        _ => {
            let max = eligible.iter().map(|e| e.1).max().unwrap();
            eligible.iter().position(|e| e.1 == max).unwrap()
        }
    };
    let tracker = eligible[pick].0.clone();
    let workers = match spec.execute_type {
        ExecuteType::Standalone => vec![tracker.clone()],
        _ => {
            let cap = match spec.max_worker_count {
                0 => len,
                n => len.min(n as usize),
            };
            let mut rest: Vec<(i64, usize, String)> = eligible
                .iter()
                .enumerate()
                .filter(|(_, e)| e.0 != tracker)
                .map(|(i, e)| (-e.1, i, e.0.clone()))
                .collect();
            rest.sort();
            std::iter::once(tracker.clone())
                .chain(rest.into_iter().take(cap - 1).map(|r| r.2))
                .collect()
        }
    };
    Ok((tracker, workers, len))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    /// Found nothing yet; guards the indexed selection (ranking, liveness set, k-th in turn)
    /// against the scan it replaced: same state, same cursor, same rng → the same `Selection`,
    /// and the same counts per filter when nobody is eligible.
    #[test]
    fn selection_is_the_scan_of_every_worker(ops in prop::collection::vec(wide_op(), 1..160), seed in 0u64..1000) {
        let reg = WorkerRegistry::default();
        let mut model: BTreeMap<(usize, String), Model> = BTreeMap::new();
        let cursors = [RoundRobinCursor::new(), RoundRobinCursor::new()];
        let mut turns = [0u64; 2];
        let mut state = SelectState::seeded(seed);
        let mut rng = StdRng::seed_from_u64(seed);
        let mut now = 1_000_000i64;
        for op in ops {
            match op {
                Op::Heartbeat { app, worker, tags, overloaded, metrics } => {
                    let status = WorkerStatus {
                        address: address(worker),
                        tags: tags.iter().map(|&t| TAGS[t].to_string()).collect(),
                        overloaded,
                        ..WorkerStatus::default()
                    };
                    reg.heartbeat(APPS[app], &status, metrics, now).unwrap();
                    let tags: BTreeSet<String> = status.tags.into_iter().collect();
                    // A worker whose tags change registers again: its heartbeat time restarts.
                    let last = match model.get(&(app, address(worker))) {
                        Some(w) if w.tags == tags => w.last.max(now),
                        _ => now,
                    };
                    model.insert((app, address(worker)), Model { tags, overloaded, metrics, last });
                }
                Op::Remove { app, worker } => {
                    let was = model.remove(&(app, address(worker))).is_some();
                    prop_assert_eq!(reg.remove(APPS[app], &address(worker)), was);
                }
                Op::Advance(dt) => now += dt,
                Op::Expire => {
                    let got = reg.expire(now).len();
                    let before = model.len();
                    model.retain(|_, w| now < w.last + WINDOW);
                    prop_assert_eq!(got, before - model.len());
                }
                Op::Select { app, spec, job } => {
                    let want = scan_model(&model, app, &spec, &mut turns[job], &mut rng, now);
                    let got: Outcome = match reg.select(APPS[app], &spec, &cursors[job], &mut state, now) {
                        Ok(sel) => Ok((
                            sel.task_tracker.to_string(),
                            sel.workers.iter().map(|w| w.to_string()).collect(),
                            sel.eligible,
                        )),
                        Err(DispatchError::NoEligibleWorker { exclusions: e, .. }) => Err([
                            e.dead,
                            e.not_designated,
                            e.overloaded,
                            e.insufficient_cpu,
                            e.insufficient_memory,
                            e.insufficient_disk,
                            e.registered,
                        ]),
                        Err(e) => panic!("unexpected error {e}"),
                    };
                    prop_assert_eq!(got, want, "spec {:?} at {}", spec, now);
                }
            }
        }
    }
}
