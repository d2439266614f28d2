//! The logic of every fuzz target, as plain functions.
//!
//! Each `fuzz_targets/<name>.rs` binary is a one-line libFuzzer wrapper around `<name>::run`
//! here, and `tests/replay.rs` feeds every file of `corpus/<name>/` to the same function, so CI
//! replays the corpora on stable without libFuzzer. Targets are grouped by the library crate they
//! exercise (features `engine`, `store`, `transport`, all on by default).

#[cfg(feature = "engine")]
pub mod api_json;
#[cfg(feature = "transport")]
pub mod connection;
#[cfg(feature = "engine")]
pub mod cron_parse;
#[cfg(feature = "transport")]
pub mod frame_decode;
#[cfg(feature = "transport")]
pub mod message_validate;
#[cfg(feature = "engine")]
pub mod ownership;
#[cfg(feature = "store")]
pub mod store_recover;
#[cfg(feature = "engine")]
pub mod workflow_def;
