//! The deterministic simulator: the real server core (`server::core::Core`) on the real log
//! store (stepped, on a [`SimBackend`](ferrojob_store::backend::SimBackend) disk), the real
//! worker cores and MapReduce task tracker cores, a simulated network and API clients, all on
//! virtual time in one thread. One seed decides everything: latencies, run durations and
//! outcomes, and — unless turned off — the faults: connections cut (at once, or half-open so
//! that the server reads the old connection's messages after the new one's), workers crashing and
//! coming back, the server crashing at any point and restarting from the exact post-crash
//! disk image (power loss: unsynced writes gone or torn; process crash: unsynced writes
//! kept), slow fsyncs, duplicated and reordered reports, and clock jumps. Retention deletes
//! old finished runs and the store compacts, as on a real server.
//!
//! Files: `world/mod.rs` the event loop; `world/workload.rs` jobs, workflows and the API
//! client's runs; `world/server.rs` the server process; `world/workers.rs` the workers;
//! `world/mapreduce.rs` map runs on their task trackers; `world/net.rs` the network;
//! `world/faults.rs` the fault schedule; `check.rs` the invariants; `id_set.rs` the checker's
//! bitmap of deleted instances.
//!
//! ```text
//!   event queue (time, seq) ─► server step (Core + Repo + LogStore, stepped) ─► effects
//!        ▲                      worker step (WorkerCore per worker)          ─► transmits
//!        └──────── network: per-connection FIFO with latency; cuts drop what is in flight
//!                  to the worker, half-open ones still deliver what is in flight to the server
//!   after every event: the invariants (check.rs); at the end, once faults stop: liveness
//! ```
//!
//! The same seed replays the same run bit for bit: nothing reads a clock or the process's
//! randomness; every map the core iterates into a decision is sorted first.

mod check;
mod id_set;
mod world;

pub use check::Violation;
pub use world::{run, SimConfig, SimReport};

#[cfg(test)]
mod tests;
