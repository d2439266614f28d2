//! Worker registry and dispatch selection: liveness on virtual time, every strategy and
//! execute type, error messages, and a concurrent smoke test. No sleeping: time is an argument.

use std::collections::BTreeSet;
use std::sync::Arc;

use ferrojob::dispatch::{
    DispatchError, DispatchSpec, HeartbeatOutcome, RegistryConfig, RoundRobinCursor, SelectState,
    TrackerCounts, WorkerMetrics, WorkerRegistry, WorkerStatus, GIB,
};
use ferrojob::model::{DispatchStrategy, ExecuteType};

const APP: &str = "orders";

/// Metrics with `mem`/`disk` GiB free and `cores − load` free CPU.
fn metrics(cores: u32, load: f64, mem: u64, disk: u64) -> WorkerMetrics {
    WorkerMetrics {
        cpu_cores: cores,
        cpu_load: load,
        memory_used_bytes: GIB,
        memory_max_bytes: GIB * (1 + mem),
        disk_used_bytes: GIB,
        disk_total_bytes: GIB * (1 + disk),
        reported_score: 0,
    }
}

fn status(address: &str, tags: &[&str]) -> WorkerStatus {
    WorkerStatus {
        address: address.into(),
        tags: tags.iter().map(|t| t.to_string()).collect(),
        version: "0.1.0".into(),
        overloaded: false,
        trackers: TrackerCounts::default(),
    }
}

fn beat(reg: &WorkerRegistry, address: &str, m: WorkerMetrics, now: i64) -> HeartbeatOutcome {
    reg.heartbeat(APP, &status(address, &[]), m, now).unwrap()
}

fn spec(execute_type: ExecuteType, strategy: DispatchStrategy) -> DispatchSpec {
    DispatchSpec {
        execute_type,
        strategy,
        ..DispatchSpec::default()
    }
}

fn select(
    reg: &WorkerRegistry,
    spec: &DispatchSpec,
    now: i64,
) -> Result<Vec<String>, DispatchError> {
    let mut state = SelectState::seeded(7);
    reg.select(APP, spec, &RoundRobinCursor::new(), &mut state, now)
        .map(|s| s.workers.iter().map(|w| w.to_string()).collect())
}

fn tracker(reg: &WorkerRegistry, spec: &DispatchSpec, now: i64) -> String {
    select(reg, spec, now).unwrap().remove(0)
}

fn addrs(v: &[(Arc<str>, Arc<str>)]) -> Vec<String> {
    v.iter().map(|(app, a)| format!("{app}/{a}")).collect()
}

#[test]
fn liveness_table() {
    // (config interval ms, missed, heartbeat times, expire checks: (now, expired?))
    type Case = (u64, u32, &'static [i64], &'static [(i64, bool)]);
    let cases: [Case; 4] = [
        // Default: one heartbeat at 0 → alive until 2999, expired at exactly 3000.
        (1000, 3, &[0], &[(1000, false), (2999, false), (3000, true)]),
        // Heartbeats every second keep it alive; the window runs from the last one.
        (
            1000,
            3,
            &[0, 1000, 2000, 3000, 4000, 5000],
            &[(5000, false), (7999, false), (8000, true)],
        ),
        // A late-arriving older heartbeat does not move the last heartbeat back.
        (1000, 3, &[5000, 2000], &[(7999, false), (8000, true)]),
        // Other settings: 200 ms × 5 = 1 s window.
        (200, 5, &[100], &[(1099, false), (1100, true)]),
    ];
    for (interval, missed, beats, checks) in cases {
        let config = RegistryConfig {
            heartbeat_interval_ms: interval,
            missed_heartbeats: missed,
            ..RegistryConfig::default()
        };
        let reg = WorkerRegistry::new(config).unwrap();
        for &t in beats {
            beat(&reg, "w1:1", metrics(4, 0.0, 4, 4), t);
        }
        let standalone = spec(ExecuteType::Standalone, DispatchStrategy::HealthFirst);
        for &(now, dead) in checks {
            // Selection already excludes a dead worker that has not been expired yet.
            let picked = select(&reg, &standalone, now);
            assert_eq!(picked.is_err(), dead, "select at {now}, beats {beats:?}");
            let expired = reg.expire(now);
            let want: Vec<String> = if dead {
                vec![format!("{APP}/w1:1")]
            } else {
                vec![]
            };
            assert_eq!(addrs(&expired), want, "expire at {now}, beats {beats:?}");
        }
        assert_eq!(reg.worker_count(APP), 0);
        assert!(reg.expire(i64::MAX).is_empty(), "expired only once");
    }
}

#[test]
fn a_worker_beating_every_second_lives_for_an_hour() {
    let reg = WorkerRegistry::default();
    for t in (0..3_600_000).step_by(1000) {
        assert_eq!(
            beat(&reg, "w:1", metrics(2, 0.5, 1, 1), t),
            if t == 0 {
                HeartbeatOutcome::Registered
            } else {
                HeartbeatOutcome::Refreshed
            }
        );
        assert!(reg.expire(t + 999).is_empty(), "at {t}");
    }
    // Its sibling that stopped at 10 s went at exactly 13 s, once.
    let reg = WorkerRegistry::default();
    for t in (0..=10_000).step_by(1000) {
        beat(&reg, "a:1", metrics(2, 0.5, 1, 1), t);
        beat(&reg, "b:1", metrics(2, 0.5, 1, 1), t);
    }
    let mut expired_at = None;
    for now in (10_000..20_000).step_by(250) {
        beat(&reg, "a:1", metrics(2, 0.5, 1, 1), now - now % 1000);
        let gone = reg.expire(now);
        if !gone.is_empty() {
            assert_eq!(addrs(&gone), vec![format!("{APP}/b:1")]);
            assert!(expired_at.is_none());
            expired_at = Some(now);
        }
    }
    assert_eq!(expired_at, Some(13_000));
    assert_eq!(reg.worker_count(APP), 1);
}

#[test]
fn an_expired_worker_comes_back_by_heartbeating() {
    let reg = WorkerRegistry::default();
    assert_eq!(
        beat(&reg, "w:1", metrics(1, 0.0, 1, 1), 0),
        HeartbeatOutcome::Registered
    );
    assert_eq!(reg.expire(3000).len(), 1);
    assert_eq!(
        beat(&reg, "w:1", metrics(1, 0.0, 1, 1), 3500),
        HeartbeatOutcome::Registered
    );
    assert_eq!(
        tracker(
            &reg,
            &spec(ExecuteType::Standalone, DispatchStrategy::HealthFirst),
            3500
        ),
        "w:1"
    );
}

#[test]
fn remove_and_listing() {
    let reg = WorkerRegistry::default();
    let mut s = status("b:2", &["gpu", "eu", "gpu"]);
    s.version = "1.2.3".into();
    s.overloaded = true;
    s.trackers = TrackerCounts {
        lightweight_task_trackers: 1,
        heavy_task_trackers: 2,
        processor_trackers: 3,
    };
    reg.heartbeat(APP, &s, metrics(8, 2.0, 4, 10), 100).unwrap();
    reg.heartbeat(APP, &s, metrics(8, 3.0, 4, 10), 900).unwrap();
    beat(&reg, "a:1", metrics(1, 0.0, 1, 1), 200);
    let list = reg.workers(APP);
    assert_eq!(list.len(), 2);
    assert_eq!(&*list[0].address, "a:1");
    let b = &list[1];
    assert_eq!(&*b.address, "b:2");
    assert_eq!(
        b.tags.iter().map(|t| &**t).collect::<Vec<_>>(),
        ["eu", "gpu"]
    );
    assert_eq!(b.version, "1.2.3");
    assert!(b.overloaded);
    assert_eq!(b.trackers.processor_trackers, 3);
    assert_eq!(b.metrics.cpu_load, 3.0);
    assert_eq!(b.health_score, 8000 + 5000 + 10_000);
    assert_eq!(b.registered_at_ms, 100);
    assert_eq!(b.last_heartbeat_ms, 900);
    assert_eq!(b.dead_at_ms, 3900);
    assert!(reg.remove(APP, "b:2"));
    assert!(!reg.remove(APP, "b:2"));
    assert!(!reg.remove("other", "a:1"));
    assert_eq!(reg.worker_count(APP), 1);
    assert!(reg.workers("other").is_empty());
    assert_eq!(reg.apps(), vec![Arc::<str>::from(APP)]);
}

#[test]
fn health_first_picks_the_best_score_and_breaks_ties_by_address() {
    let reg = WorkerRegistry::default();
    beat(&reg, "c:1", metrics(4, 1.0, 2, 2), 0); // 4 + 3 + 2 = 9
    beat(&reg, "a:1", metrics(4, 0.0, 1, 5), 0); // 2 + 4 + 5 = 11
    beat(&reg, "b:1", metrics(4, 0.0, 2, 3), 0); // 4 + 4 + 3 = 11
    let hf = spec(ExecuteType::Standalone, DispatchStrategy::HealthFirst);
    assert_eq!(tracker(&reg, &hf, 10), "a:1");
    // Memory counts double: b gains 1 GiB of memory, a gains 1 GiB of disk.
    beat(&reg, "b:1", metrics(4, 0.0, 3, 3), 20);
    beat(&reg, "a:1", metrics(4, 0.0, 1, 6), 20);
    assert_eq!(tracker(&reg, &hf, 30), "b:1");
    // A worker that heartbeats a better score wins at once.
    beat(&reg, "c:1", metrics(64, 0.0, 64, 64), 40);
    assert_eq!(tracker(&reg, &hf, 50), "c:1");
}

#[test]
fn round_robin_takes_turns_per_job() {
    let reg = WorkerRegistry::default();
    for a in ["c:1", "a:1", "b:1"] {
        beat(&reg, a, metrics(1, 0.0, 1, 1), 0);
    }
    let rr = spec(ExecuteType::Standalone, DispatchStrategy::RoundRobin);
    let (job1, job2) = (RoundRobinCursor::new(), RoundRobinCursor::new());
    let mut state = SelectState::seeded(1);
    let mut pick = |cursor: &RoundRobinCursor| {
        reg.select(APP, &rr, cursor, &mut state, 1)
            .unwrap()
            .task_tracker
            .to_string()
    };
    let seq: Vec<String> = (0..6).map(|_| pick(&job1)).collect();
    assert_eq!(seq, ["a:1", "b:1", "c:1", "a:1", "b:1", "c:1"]);
    // Another job has its own cursor.
    assert_eq!(pick(&job2), "a:1");
    assert_eq!(pick(&job1), "a:1");
}

#[test]
fn random_is_deterministic_with_a_seed_and_reaches_everyone() {
    let reg = WorkerRegistry::default();
    for a in ["a:1", "b:1", "c:1", "d:1"] {
        beat(&reg, a, metrics(1, 0.0, 1, 1), 0);
    }
    let random = spec(ExecuteType::Standalone, DispatchStrategy::Random);
    let cursor = RoundRobinCursor::new();
    let draw = |seed| {
        let mut state = SelectState::seeded(seed);
        (0..200)
            .map(|_| {
                reg.select(APP, &random, &cursor, &mut state, 1)
                    .unwrap()
                    .task_tracker
            })
            .collect::<Vec<_>>()
    };
    let first = draw(42);
    assert_eq!(first, draw(42));
    assert_ne!(first, draw(43));
    let seen: BTreeSet<&str> = first.iter().map(|a| &**a).collect();
    assert_eq!(seen.len(), 4);
}

#[test]
fn specify_and_designated_lists_match_tags_or_addresses() {
    let reg = WorkerRegistry::default();
    reg.heartbeat(APP, &status("a:1", &["gpu"]), metrics(1, 0.0, 1, 1), 0)
        .unwrap();
    reg.heartbeat(APP, &status("b:1", &["cpu"]), metrics(9, 0.0, 9, 9), 0)
        .unwrap();
    reg.heartbeat(APP, &status("c:1", &[]), metrics(5, 0.0, 5, 5), 0)
        .unwrap();
    let mut s = spec(ExecuteType::Standalone, DispatchStrategy::Specify);
    s.designated = vec!["gpu".into()];
    assert_eq!(tracker(&reg, &s, 1), "a:1");
    s.designated = vec!["gpu".into(), "c:1".into()];
    assert_eq!(tracker(&reg, &s, 1), "c:1");
    // The list filters other strategies too.
    s.strategy = DispatchStrategy::HealthFirst;
    s.execute_type = ExecuteType::Broadcast;
    assert_eq!(select(&reg, &s, 1).unwrap(), ["c:1", "a:1"]);
    // Retagging moves a worker in and out of a designation.
    assert_eq!(
        reg.heartbeat(APP, &status("a:1", &["cpu"]), metrics(1, 0.0, 1, 1), 2)
            .unwrap(),
        HeartbeatOutcome::Retagged
    );
    s.designated = vec!["gpu".into()];
    let err = select(&reg, &s, 3).unwrap_err();
    assert_eq!(
        err.to_string(),
        "no eligible worker for app `orders`: 3 registered; excluded: 3 not designated"
    );
    s.designated = vec!["cpu".into()];
    assert_eq!(select(&reg, &s, 3).unwrap(), ["b:1", "a:1"]);
}

#[test]
fn broadcast_and_map_lists_are_capped_best_first() {
    let reg = WorkerRegistry::default();
    for (a, mem) in [("a:1", 1), ("b:1", 5), ("c:1", 3), ("d:1", 4), ("e:1", 2)] {
        beat(&reg, a, metrics(1, 0.0, mem, 0), 0);
    }
    let mut s = spec(ExecuteType::Broadcast, DispatchStrategy::HealthFirst);
    assert_eq!(
        select(&reg, &s, 1).unwrap(),
        ["b:1", "d:1", "c:1", "e:1", "a:1"]
    );
    s.max_worker_count = 3;
    assert_eq!(select(&reg, &s, 1).unwrap(), ["b:1", "d:1", "c:1"]);
    // ROUND_ROBIN chooses the tracker; the rest are the best others.
    s.execute_type = ExecuteType::MapReduce;
    s.strategy = DispatchStrategy::RoundRobin;
    assert_eq!(select(&reg, &s, 1).unwrap(), ["a:1", "b:1", "d:1"]);
    s.max_worker_count = 1;
    s.execute_type = ExecuteType::Map;
    assert_eq!(select(&reg, &s, 1).unwrap(), ["a:1"]);
    // STANDALONE ignores the cap and names one worker.
    s.max_worker_count = 0;
    s.execute_type = ExecuteType::Standalone;
    let sel = reg
        .select(
            APP,
            &s,
            &RoundRobinCursor::new(),
            &mut SelectState::seeded(0),
            1,
        )
        .unwrap();
    assert_eq!(sel.workers, vec![sel.task_tracker.clone()]);
    assert_eq!(sel.eligible, 5);
}

#[test]
fn overload_flag_excludes_until_cleared() {
    let reg = WorkerRegistry::default();
    let mut s = status("a:1", &[]);
    s.overloaded = true;
    reg.heartbeat(APP, &s, metrics(1, 0.0, 1, 1), 0).unwrap();
    let hf = spec(ExecuteType::Standalone, DispatchStrategy::HealthFirst);
    assert!(select(&reg, &hf, 1).is_err());
    s.overloaded = false;
    reg.heartbeat(APP, &s, metrics(1, 0.0, 1, 1), 2).unwrap();
    assert_eq!(tracker(&reg, &hf, 3), "a:1");
}

#[test]
fn no_eligible_worker_names_the_count_per_filter() {
    let reg = WorkerRegistry::default();
    let ok = metrics(8, 0.0, 8, 8);
    beat(&reg, "dead:1", ok, 0);
    reg.heartbeat(APP, &status("other:1", &["x"]), ok, 5000)
        .unwrap();
    let mut over = status("over:1", &["gpu"]);
    over.overloaded = true;
    reg.heartbeat(APP, &over, ok, 5000).unwrap();
    reg.heartbeat(APP, &status("cpu:1", &["gpu"]), metrics(8, 7.5, 8, 8), 5000)
        .unwrap();
    reg.heartbeat(
        APP,
        &status("mem1:1", &["gpu"]),
        metrics(8, 0.0, 1, 8),
        5000,
    )
    .unwrap();
    reg.heartbeat(
        APP,
        &status("mem2:1", &["gpu"]),
        metrics(8, 0.0, 1, 8),
        5000,
    )
    .unwrap();
    reg.heartbeat(
        APP,
        &status("disk:1", &["gpu", "y"]),
        metrics(8, 0.0, 8, 0),
        5000,
    )
    .unwrap();
    let s = DispatchSpec {
        designated: vec!["gpu".into(), "dead:1".into()],
        min_cpu_cores: 1.0,
        min_memory_gb: 2.0,
        min_disk_gb: 0.5,
        ..DispatchSpec::default()
    };
    let err = select(&reg, &s, 5000).unwrap_err();
    assert_eq!(
        err.to_string(),
        "no eligible worker for app `orders`: 7 registered; excluded: 1 dead (missed heartbeats), \
         1 not designated, 1 overloaded, 1 below min_cpu_cores, 2 below min_memory_gb, \
         1 below min_disk_gb"
    );
    match err {
        DispatchError::NoEligibleWorker { exclusions, .. } => {
            assert_eq!(exclusions.registered, 7);
            assert_eq!(exclusions.excluded(), 7);
            assert_eq!(exclusions.insufficient_memory, 2);
        }
        other => panic!("{other:?}"),
    }
    let err = reg
        .select(
            "nope",
            &s,
            &RoundRobinCursor::new(),
            &mut SelectState::seeded(0),
            0,
        )
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "no eligible worker for app `nope`: 0 registered"
    );
    // Minimums are inclusive: exactly 1 free core, 2 GiB and 0.5 GiB pass.
    reg.heartbeat(
        APP,
        &status("edge:1", &["gpu"]),
        metrics(2, 1.0, 2, 1),
        5000,
    )
    .unwrap();
    assert_eq!(select(&reg, &s, 5000).unwrap(), ["edge:1"]);
}

#[test]
fn invalid_specs_are_refused_with_the_field() {
    let reg = WorkerRegistry::default();
    beat(&reg, "a:1", metrics(1, 0.0, 1, 1), 0);
    let check = |s: DispatchSpec, want: &str| {
        assert_eq!(select(&reg, &s, 1).unwrap_err().to_string(), want);
        assert!(s.validate().is_err());
    };
    check(
        DispatchSpec {
            min_cpu_cores: f64::NAN,
            ..DispatchSpec::default()
        },
        "invalid dispatch spec: `min_cpu_cores` must be a finite number ≥ 0, got NaN",
    );
    check(
        DispatchSpec {
            min_memory_gb: -1.0,
            ..DispatchSpec::default()
        },
        "invalid dispatch spec: `min_memory_gb` must be a finite number ≥ 0, got -1",
    );
    check(
        DispatchSpec {
            min_disk_gb: f64::INFINITY,
            ..DispatchSpec::default()
        },
        "invalid dispatch spec: `min_disk_gb` must be a finite number ≥ 0, got inf",
    );
    check(
        spec(ExecuteType::Standalone, DispatchStrategy::Specify),
        "invalid dispatch spec: `designated` must name at least one worker address or tag for \
         the SPECIFY strategy",
    );
    check(
        DispatchSpec {
            designated: vec!["x".into(); 1025],
            ..DispatchSpec::default()
        },
        "invalid dispatch spec: `designated` may list at most 1024 workers or tags, got 1025",
    );
    assert!(DispatchSpec::default().validate().is_ok());
}

#[test]
fn bad_heartbeats_and_configs_get_typed_errors() {
    let reg = WorkerRegistry::new(RegistryConfig {
        max_workers_per_app: 2,
        ..RegistryConfig::default()
    })
    .unwrap();
    let m = metrics(1, 0.0, 1, 1);
    let refuse = |app: &str, s: WorkerStatus| reg.heartbeat(app, &s, m, 0).unwrap_err().to_string();
    assert_eq!(
        refuse(APP, status("", &[])),
        "refused heartbeat from worker `` of app `orders`: address must be 1..=255 bytes, got 0"
    );
    let long = "h".repeat(300);
    assert!(refuse(APP, status(&long, &[])).contains(&format!("`{}...`", "h".repeat(64))));
    assert!(refuse("", status("a:1", &[])).contains("app name must be 1..=255 bytes"));
    let many: Vec<String> = (0..17).map(|i| i.to_string()).collect();
    let many: Vec<&str> = many.iter().map(|s| s.as_str()).collect();
    assert!(refuse(APP, status("a:1", &many)).contains("at most 16 tags, got 17"));
    assert!(refuse(APP, status("a:1", &[""])).contains("each tag must be 1..=64 bytes"));
    let mut s = status("a:1", &[]);
    s.version = "v".repeat(65);
    assert!(refuse(APP, s).contains("version must be at most 64 bytes"));
    assert_eq!(reg.worker_count(APP), 0);
    // The cap: a third worker is refused, a known one still refreshes.
    beat(&reg, "a:1", m, 0);
    beat(&reg, "b:1", m, 0);
    assert_eq!(
        refuse(APP, status("c:1", &[])),
        "refused worker `c:1` of app `orders`: the app already has 2 workers \
         (raise RegistryConfig::max_workers_per_app)"
    );
    assert_eq!(beat(&reg, "a:1", m, 1), HeartbeatOutcome::Refreshed);
    for (config, field) in [
        (
            RegistryConfig {
                heartbeat_interval_ms: 0,
                ..RegistryConfig::default()
            },
            "heartbeat_interval_ms",
        ),
        (
            RegistryConfig {
                missed_heartbeats: 0,
                ..RegistryConfig::default()
            },
            "missed_heartbeats",
        ),
        (
            RegistryConfig {
                max_workers_per_app: 0,
                ..RegistryConfig::default()
            },
            "max_workers_per_app",
        ),
    ] {
        let err = WorkerRegistry::new(config).unwrap_err().to_string();
        assert_eq!(
            err,
            format!("invalid registry config: `{field}` must be at least 1")
        );
    }
}

#[test]
fn hostile_metrics_never_break_selection() {
    let reg = WorkerRegistry::default();
    let weird = [
        WorkerMetrics {
            cpu_load: f64::NAN,
            ..WorkerMetrics::default()
        },
        WorkerMetrics {
            cpu_cores: u32::MAX,
            cpu_load: f64::NEG_INFINITY,
            memory_used_bytes: u64::MAX,
            memory_max_bytes: 0,
            disk_used_bytes: 0,
            disk_total_bytes: u64::MAX,
            reported_score: i32::MIN,
        },
        WorkerMetrics {
            cpu_load: 1e300,
            ..WorkerMetrics::default()
        },
    ];
    for (i, m) in weird.into_iter().enumerate() {
        beat(&reg, &format!("w{i}:1"), m, i64::MIN);
        beat(&reg, &format!("v{i}:1"), m, i64::MAX);
    }
    for strategy in [
        DispatchStrategy::HealthFirst,
        DispatchStrategy::RoundRobin,
        DispatchStrategy::Random,
    ] {
        for et in [ExecuteType::Standalone, ExecuteType::Broadcast] {
            let _ = select(&reg, &spec(et, strategy), 0);
            let _ = select(&reg, &spec(et, strategy), i64::MAX);
            let _ = select(&reg, &spec(et, strategy), i64::MIN);
        }
    }
    // Workers whose heartbeat time is i64::MIN + window are long dead at 0.
    assert_eq!(reg.expire(0).len(), 3);
}

#[test]
fn concurrent_selection_heartbeats_and_expiry_stay_consistent() {
    let reg = WorkerRegistry::default();
    for i in 0..16 {
        beat(&reg, &format!("w{i:02}:1"), metrics(4, 0.0, 4, 4), 0);
    }
    let cursor = RoundRobinCursor::new();
    std::thread::scope(|scope| {
        for (seed, strategy) in [
            (1, DispatchStrategy::RoundRobin),
            (2, DispatchStrategy::HealthFirst),
        ] {
            let (reg, cursor) = (&reg, &cursor);
            scope.spawn(move || {
                let mut state = SelectState::seeded(seed);
                let s = spec(ExecuteType::Broadcast, strategy);
                for _ in 0..2000 {
                    if let Ok(sel) = reg.select(APP, &s, cursor, &mut state, 1000) {
                        let set: BTreeSet<_> = sel.workers.iter().collect();
                        assert_eq!(set.len(), sel.workers.len(), "no duplicates");
                        assert_eq!(sel.workers[0], sel.task_tracker);
                    }
                }
            });
        }
        let reg = &reg;
        scope.spawn(move || {
            for round in 0..200 {
                for i in 0..16 {
                    let mut s = status(&format!("w{i:02}:1"), &[]);
                    s.overloaded = (round + i) % 3 == 0;
                    reg.heartbeat(APP, &s, metrics(4, (round % 4) as f64, 4, 4), 500)
                        .unwrap();
                }
                reg.remove(APP, &format!("w{:02}:1", round % 16));
            }
        });
    });
    // Every worker either heartbeat last at 500 or was removed; none is dead before 3500.
    assert!(reg.expire(3499).is_empty());
    let left = reg.worker_count(APP);
    assert!(
        left >= 15,
        "one removal per round, re-registered by the next round: {left}"
    );
    assert_eq!(reg.expire(3500).len(), left);
    assert_eq!(reg.worker_count(APP), 0);
}

#[test]
fn tag_order_and_duplicates_do_not_retag() {
    let reg = WorkerRegistry::default();
    let m = metrics(1, 0.0, 1, 1);
    let beat_tags = |tags: &[&str], now| reg.heartbeat(APP, &status("a:1", tags), m, now).unwrap();
    assert_eq!(
        beat_tags(&["gpu", "eu", "gpu"], 0),
        HeartbeatOutcome::Registered
    );
    assert_eq!(beat_tags(&["eu", "gpu"], 1), HeartbeatOutcome::Refreshed);
    assert_eq!(
        beat_tags(&["gpu", "eu", "eu"], 2),
        HeartbeatOutcome::Refreshed
    );
    assert_eq!(beat_tags(&["eu"], 3), HeartbeatOutcome::Retagged);
    assert_eq!(beat_tags(&["eu", "eu"], 4), HeartbeatOutcome::Refreshed);
    assert_eq!(beat_tags(&[], 5), HeartbeatOutcome::Retagged);
    assert_eq!(beat_tags(&[], 6), HeartbeatOutcome::Refreshed);
    let w = &reg.workers(APP)[0];
    assert!(w.tags.is_empty());
    assert_eq!((w.registered_at_ms, w.last_heartbeat_ms), (5, 6));
}
