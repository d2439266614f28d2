//! Fuzz target `message_validate`.

/// Feeds one fuzz input to the code under test; must never panic.
pub fn run(_data: &[u8]) {}
