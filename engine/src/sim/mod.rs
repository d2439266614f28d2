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
//! bitmap of deleted instances; `cluster/` a cluster of servers (below).
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
//!
//! # A cluster
//!
//! With [`SimConfig::servers`] above 1, `cluster/` simulates servers sharing one database
//! instead (the single-server world above is then not used):
//!
//! - **Simulated**: the database (`cluster/db.rs`): the `leases` table with the database's
//!   clock (virtual time) and `server::pg::lease`'s rules (acquire when free or expired,
//!   epoch + 1 per grant, renew only by the owner at its epoch before expiry, release), the
//!   `cluster_servers` heartbeats that make the membership view, and the fence of
//!   `server::pg::fence` on every state write of a partition (a write commits only while its
//!   server holds the lease at the epoch it writes under, else it fails as `Fenced`). Each
//!   server is a real `Core` acting only for loaded partitions, a real `Ownership` machine on
//!   its own monotonic clock (offset and ±0.2 % rate) and wall clock (±2 s), lease commands and
//!   answers delayed 1–20 ms, the runtime glue's order (grant, hold the fence, read the
//!   store, load; stop: release the fence, drop the partition, close its workers'
//!   connections). Six apps with two FIXED_RATE jobs each and real worker cores that follow
//!   "not served here" to the owner; an API client that follows refusals. Faults: pauses of
//!   1.2 to 3 leases (the clocks run on, what reaches the server waits; on resume its due core
//!   timers run before or after its lease machine, either order), cuts from the database of
//!   0.5 to 3 leases (commands, heartbeats and writes lost or failed), crashes and restarts,
//!   connections cut.
//! - **Checked**: after every event, whoever's lease machine may act for a partition is the
//!   database's unexpired owner at that epoch (so one actor per partition at any instant), and
//!   a running core acts for a partition only at the epoch its machine may act with (except
//!   at the very instant its deadline timer is due); at the database, no write is taken
//!   outside its lease and no (job, trigger time) fires twice; at the end, after 30 s without
//!   faults, each app's partition is acted for by exactly one server, each job fired within
//!   the last 3 s, and each acknowledged API run is final or pending at its owner.
//!   [`SimConfig::fencing`] off shows the checker failing: a resumed server's stale fires are
//!   taken and counted as double fires.
//! - **Not simulated**: the database's own durability and latency of writes (one `LogRepo`
//!   on a disk that never crashes; a write is checked and applied when submitted), reads
//!   failing during a cut (only writes and partition loads fail), workflows, MAP_REDUCE,
//!   retention and alarms in the cluster's workload, half-open connections, and servers
//!   joining or leaving for good (membership changes only through pauses, cuts and crashes).

mod check;
mod cluster;
mod id_set;
mod world;

pub use check::Violation;
pub use world::{run, SimConfig, SimReport};

#[cfg(test)]
mod tests;
