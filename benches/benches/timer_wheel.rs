//! Bench group `timer_wheel`: placeholder until its issue lands (see BENCHMARKS.md).
fn main() {}
