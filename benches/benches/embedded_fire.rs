//! Bench group `embedded_fire`: placeholder until its issue lands (see BENCHMARKS.md).
fn main() {}
