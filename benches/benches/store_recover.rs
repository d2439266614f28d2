//! Bench group `store_recover`: placeholder until its issue lands (see BENCHMARKS.md).
fn main() {}
