//! Bench group `loopback`: placeholder until its issue lands (see BENCHMARKS.md).
fn main() {}
