//! Fuzz target `store_recover`.

/// Feeds one fuzz input to the code under test; must never panic.
pub fn run(_data: &[u8]) {}
