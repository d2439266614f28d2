//! Bench group `cron_next`: placeholder until its issue lands (see BENCHMARKS.md).
fn main() {}
