//! Bench group `store_commit`: placeholder until its issue lands (see BENCHMARKS.md).
fn main() {}
