//! ferrojob's engine: the model, the timing wheel, time expressions and the embedded scheduler.

pub mod api;
pub mod client;
pub mod clock;
pub mod dispatch;
pub mod embedded;
pub mod http;
pub mod ids;
pub mod launch;
pub mod mapreduce;
pub mod model;
pub mod schedule;
pub mod server;
pub mod time_expression;
pub mod wheel;
pub mod worker;
pub mod workflow;

/// The README's examples compile as doctests, so they cannot drift from the API.
#[doc = include_str!("../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
