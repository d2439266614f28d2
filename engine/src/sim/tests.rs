use super::*;

#[test]
fn a_quiet_run_finishes_every_instance() {
    let mut c = SimConfig::new(1, 2_000, 4);
    c.faults = false;
    let r = run(c);
    assert!(r.violations.is_empty(), "{r}\n{:#?}", r.violations);
    assert!(r.instances >= 1_800, "{r}");
    assert_eq!(r.instances, r.finished, "{r}");
    assert!(r.workflow_runs_acknowledged >= 40, "{r}");
    assert!(r.deleted > 0, "{r}");
    assert!(r.mapreduce_succeeded >= 15, "{r}");
}

#[test]
fn a_seed_replays_bit_for_bit() {
    let a = run(SimConfig::new(7, 1_000, 3));
    let b = run(SimConfig::new(7, 1_000, 3));
    assert_eq!(format!("{a}"), format!("{b}"));
    assert_eq!(a.violations, b.violations);
}

#[test]
fn faulty_seeds_hold_every_invariant() {
    let seeds: u64 = std::env::var("FERROJOB_SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    let mut failed = Vec::new();
    for seed in 0..seeds {
        let r = run(SimConfig::new(seed, 300, 3));
        if !r.violations.is_empty() {
            failed.push(format!(
                "{r}\n  {}",
                r.violations
                    .iter()
                    .map(|v| v.to_string())
                    .collect::<Vec<_>>()
                    .join("\n  ")
            ));
        }
    }
    assert!(
        failed.is_empty(),
        "{} failing seeds:\n{}",
        failed.len(),
        failed.join("\n")
    );
}

/// A cluster of three servers with faults: `seeds` runs, the failing ones described.
fn cluster_failures(seeds: std::ops::Range<u64>, fencing: bool) -> Vec<String> {
    let mut failed = Vec::new();
    for seed in seeds {
        let mut c = SimConfig::new(seed, 400, 2);
        c.servers = 3;
        c.fencing = fencing;
        let r = run(c);
        if !r.violations.is_empty() {
            failed.push(format!(
                "{r}\n  {}",
                r.violations
                    .iter()
                    .map(|v| v.to_string())
                    .collect::<Vec<_>>()
                    .join("\n  ")
            ));
        }
    }
    failed
}

#[test]
fn a_quiet_cluster_fires_every_job_and_finishes_every_run() {
    let mut c = SimConfig::new(3, 400, 2);
    c.servers = 3;
    c.faults = false;
    let r = run(c);
    assert!(r.violations.is_empty(), "{r}\n{:#?}", r.violations);
    assert!(r.instances >= 400, "{r}");
    assert!(r.runs_acknowledged >= 30, "{r}");
    assert_eq!(r.runs_acknowledged, r.finished, "{r}");
}

#[test]
fn a_cluster_seed_replays_bit_for_bit() {
    let config = || {
        let mut c = SimConfig::new(5, 300, 2);
        c.servers = 3;
        c
    };
    let (a, b) = (run(config()), run(config()));
    assert_eq!(format!("{a}"), format!("{b}"));
    assert_eq!(a.violations, b.violations);
}

#[test]
fn faulty_cluster_seeds_hold_every_invariant() {
    let seeds: u64 = std::env::var("FERROJOB_SIM_CLUSTER_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(8);
    let failed = cluster_failures(0..seeds, true);
    assert!(
        failed.is_empty(),
        "{} failing seeds:\n{}",
        failed.len(),
        failed.join("\n")
    );
}

/// The checker can fail: without the fence, a server that resumes after a pause longer than
/// its lease writes (and fires) for a partition another server took meanwhile.
#[test]
fn without_fencing_the_checker_finds_stale_writes_and_double_fires() {
    let failed = cluster_failures(0..8, false);
    assert!(!failed.is_empty(), "no seed failed without fencing");
    let all = failed.join("\n");
    assert!(all.contains("was taken while the database shows"), "{all}");
    assert!(all.contains("double fire"), "{all}");
}
