//! ferrojob's engine: the model, the timing wheel, time expressions, the embedded scheduler,
//! the server and worker cores, the HTTP API and its Rust client.
//!
//! Cargo features (all on by default) pick the parts that are compiled:
//!
//! | feature | modules | pulls in |
//! |---|---|---|
//! | `embedded` | `embedded` | nothing beyond the core |
//! | `server` | `server`, `cluster`, `dispatch`, `https` (`launch` with `http`) | `ferrojob-store`, `ferrojob-transport`, `reqwest`, `rustls` |
//! | `worker` | `worker`, `mapreduce`, `dispatch`, `https` | `ferrojob-store`, `ferrojob-transport`, `reqwest`, `rustls`, `sysinfo` |
//! | `client` | `client`, `https` | `reqwest`, `rustls` |
//! | `http` | `http` | `axum`, `hyper`, `hyper-util` |
//!
//! Always compiled: `ids`, `model`, `clock`, `wheel`, `time_expression`, `calendar`, `workflow` and the
//! `api` contract types. Embedding only the scheduler takes
//! `ferrojob = { default-features = false, features = ["embedded"] }`.

pub mod alarm;
pub mod api;
pub mod calendar;
#[cfg(feature = "client")]
pub mod client;
pub mod clock;
#[cfg(feature = "server")]
pub mod cluster;
#[cfg(any(feature = "server", feature = "worker", feature = "dispatch"))]
pub mod dispatch;
#[cfg(feature = "embedded")]
pub mod embedded;
#[cfg(feature = "http")]
pub mod http;
#[cfg(any(feature = "client", feature = "server", feature = "worker"))]
pub mod https;
pub mod ids;
#[cfg(all(feature = "server", feature = "http"))]
pub mod launch;
#[cfg(feature = "worker")]
pub mod mapreduce;
pub mod model;
pub mod policy;
pub mod schedule;
#[cfg(feature = "server")]
pub mod server;
#[cfg(all(feature = "server", feature = "worker"))]
pub mod sim;
pub mod time_expression;
pub mod wheel;
#[cfg(feature = "worker")]
pub mod worker;
pub mod workflow;

/// The README's examples compile as doctests, so they cannot drift from the API.
#[doc = include_str!("../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
