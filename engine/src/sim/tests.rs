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
