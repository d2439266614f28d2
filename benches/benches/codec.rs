//! Bench group `codec`: placeholder until its issue lands (see BENCHMARKS.md).
fn main() {}
