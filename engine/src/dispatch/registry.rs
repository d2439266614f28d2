//! [`WorkerRegistry`]: the workers of every app, fed by heartbeats, read by `select`.
//!
//! # Layout and locking
//!
//! ```text
//!   WorkerRegistry
//!     apps: DashMap<app, AppEntry>            sharded; readers take one shard read lock
//!             AppEntry
//!               snapshot: Arc<Snapshot>       immutable membership, swapped on change
//!               writer:   Arc<Mutex<()>>      serialises membership changes of this app
//!                 Snapshot
//!                   slots: [Arc<WorkerSlot>]  sorted by address
//!                   index: address -> slot
//!                     WorkerSlot
//!                       address, tags                       immutable
//!                       last_heartbeat_ms, overloaded,      atomics: what `select` reads
//!                       score, cpu/memory/disk free
//!                       details: Mutex<..>                  full metrics, version, trackers
//! ```
//!
//! The dispatch hot path (`select`) takes no global lock and holds none while it scans: it
//! takes the app's shard read lock just long enough to clone the `Arc<Snapshot>`, then reads
//! each slot's atomics. Why this shape rather than the alternatives:
//!
//! - *A snapshot rebuilt on every heartbeat* (per-app `Arc<[Worker]>` swapped on change) would
//!   rebuild an n-worker array n times per heartbeat interval: a million worker copies per
//!   second at 1000 workers. Here a heartbeat of a known worker rewrites only its own slot's
//!   atomics, under its own slot mutex, and never touches the snapshot.
//! - *A `Mutex<HashMap>` per app* (the `mutex_scan` peer of the `dispatch_select` bench)
//!   serialises every selection against every other and against heartbeats.
//!
//! Membership changes (a new worker, a removal, an expiry, a worker whose tags changed) are
//! rare; they take the app's `writer` mutex, build a new snapshot and swap it in. A new or
//! retagged worker is put in its place in a copy of the current snapshot (`Snapshot::with_slot`)
//! rather than sorting and hashing every slot again: after a server restart every worker
//! registers once, and W registrations then cost W copies of up to W pointers each, not W
//! sorts and W·W hash insertions (at 10,000 workers: seconds of CPU per restart).
//!
//! # Invariants
//!
//! - A slot in an app's current snapshot has `removed == false`; a slot is marked removed,
//!   under its details mutex, before the snapshot without it is published. A heartbeat
//!   updates a slot only under that mutex and only if it is not removed, so a heartbeat never
//!   lands on a slot that expiry has already dropped (it re-registers the worker instead), and
//!   expiry never drops a worker whose heartbeat it has seen.
//! - Slots are sorted by address, and addresses are unique per app.
//! - The atomics of one slot are written together under the slot mutex but read without it:
//!   a concurrent `select` may see fields of two consecutive heartbeats mixed, each of them a
//!   genuine measurement less than one interval old. `last_heartbeat_ms` never decreases.
//! - No app has more than `max_workers_per_app` workers.
//! - An app's entry is never dropped once created, even when its last worker goes: dropping
//!   it would race with a registration holding the old entry's writer mutex. The entries are
//!   bounded by the apps the server admits (workers prove the app's secret before their first
//!   heartbeat reaches the registry), and an empty entry is a few dozen bytes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use dashmap::DashMap;
use serde::{Deserialize, Serialize};

use super::error::DispatchError;
use super::health::{HealthScore, WorkerMetrics};
use crate::time_expression::EpochMs;

/// Longest app name accepted, bytes.
pub const MAX_APP_LEN: usize = 255;
/// Longest worker address accepted (`host:port`), bytes.
pub const MAX_ADDRESS_LEN: usize = 255;
/// Most tags one worker may carry.
pub const MAX_TAGS: usize = 16;
/// Longest tag accepted, bytes.
pub const MAX_TAG_LEN: usize = 64;
/// Longest version string accepted, bytes.
pub const MAX_VERSION_LEN: usize = 64;

/// How the registry decides that a worker is dead, and how many it keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistryConfig {
    /// How often workers heartbeat, milliseconds (at least 1; default 1000).
    pub heartbeat_interval_ms: u64,
    /// Heartbeats a worker may miss before it is dead (at least 1; default 3).
    pub missed_heartbeats: u32,
    /// Most workers per app (at least 1; default 10 000); more are refused.
    pub max_workers_per_app: usize,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        RegistryConfig {
            heartbeat_interval_ms: 1000,
            missed_heartbeats: 3,
            max_workers_per_app: 10_000,
        }
    }
}

impl RegistryConfig {
    /// How long after its last heartbeat a worker is dead:
    /// `heartbeat_interval_ms × missed_heartbeats`, milliseconds (saturating).
    pub fn liveness_window_ms(&self) -> i64 {
        let ms = self
            .heartbeat_interval_ms
            .saturating_mul(u64::from(self.missed_heartbeats));
        i64::try_from(ms).unwrap_or(i64::MAX)
    }

    fn validate(&self) -> Result<(), DispatchError> {
        let bad = |field, reason: &str| {
            Err(DispatchError::InvalidConfig {
                field,
                reason: reason.into(),
            })
        };
        if self.heartbeat_interval_ms == 0 {
            return bad("heartbeat_interval_ms", "must be at least 1");
        }
        if self.missed_heartbeats == 0 {
            return bad("missed_heartbeats", "must be at least 1");
        }
        if self.max_workers_per_app == 0 {
            return bad("max_workers_per_app", "must be at least 1");
        }
        Ok(())
    }
}

/// Tracker counts a worker reports (PowerJob's heartbeat carries the same three).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrackerCounts {
    /// TaskTrackers without persistence (plain STANDALONE instances).
    pub lightweight_task_trackers: u32,
    /// TaskTrackers with persistence (MAP, MAP_REDUCE, BROADCAST, fixed rate/delay).
    pub heavy_task_trackers: u32,
    /// ProcessorTrackers running on the worker.
    pub processor_trackers: u32,
}

/// Who a worker is and how it is doing, apart from its metrics: one heartbeat's identity part.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerStatus {
    /// Where the worker is reached (`host:port`); unique per app, 1..=255 bytes.
    pub address: String,
    /// Tags for SPECIFY dispatch; at most 16, each 1..=64 bytes; order and duplicates ignored.
    pub tags: Vec<String>,
    /// Worker software version, at most 64 bytes.
    pub version: String,
    /// The worker asks not to be sent new instances.
    pub overloaded: bool,
    /// Trackers running on the worker.
    pub trackers: TrackerCounts,
}

/// What a heartbeat did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum HeartbeatOutcome {
    /// The worker was not registered (new, or expired earlier) and now is.
    Registered,
    /// A known worker's metrics and status were refreshed.
    Refreshed,
    /// A known worker came with different tags; it was re-registered with them.
    Retagged,
}

/// One worker as [`WorkerRegistry::workers`] lists it.
#[derive(Clone, Debug, PartialEq)]
pub struct WorkerView {
    /// Where the worker is reached.
    pub address: Arc<str>,
    /// Its tags, sorted.
    pub tags: Vec<Arc<str>>,
    /// Its software version.
    pub version: String,
    /// Its last metrics.
    pub metrics: WorkerMetrics,
    /// The health score derived from them (see `health`).
    pub health_score: HealthScore,
    /// Whether it asked not to get new instances.
    pub overloaded: bool,
    /// Its trackers.
    pub trackers: TrackerCounts,
    /// When it (last) registered, epoch ms.
    pub registered_at_ms: EpochMs,
    /// When its last heartbeat arrived, epoch ms.
    pub last_heartbeat_ms: EpochMs,
    /// From when on it counts as dead unless another heartbeat arrives, epoch ms.
    pub dead_at_ms: EpochMs,
}

/// The per-worker state `select` reads. See the module doc for who writes what, when.
#[derive(Debug)]
pub(super) struct WorkerSlot {
    pub(super) address: Arc<str>,
    /// Sorted, deduplicated.
    pub(super) tags: Box<[Arc<str>]>,
    pub(super) last_heartbeat_ms: AtomicI64,
    pub(super) overloaded: AtomicBool,
    pub(super) score: AtomicI64,
    pub(super) cpu_free_millicores: AtomicI64,
    pub(super) memory_free_bytes: AtomicU64,
    pub(super) disk_free_bytes: AtomicU64,
    details: Mutex<SlotDetails>,
}

#[derive(Debug)]
struct SlotDetails {
    metrics: WorkerMetrics,
    version: String,
    trackers: TrackerCounts,
    registered_at_ms: EpochMs,
    /// Set once, when the slot leaves the app's snapshot; a removed slot is never updated.
    removed: bool,
}

impl WorkerSlot {
    fn new(
        address: Arc<str>,
        tags: Box<[Arc<str>]>,
        status: &WorkerStatus,
        metrics: WorkerMetrics,
        now: EpochMs,
    ) -> Self {
        let slot = WorkerSlot {
            address,
            tags,
            last_heartbeat_ms: AtomicI64::new(now),
            overloaded: AtomicBool::new(false),
            score: AtomicI64::new(0),
            cpu_free_millicores: AtomicI64::new(0),
            memory_free_bytes: AtomicU64::new(0),
            disk_free_bytes: AtomicU64::new(0),
            details: Mutex::new(SlotDetails {
                metrics,
                version: String::new(),
                trackers: TrackerCounts::default(),
                registered_at_ms: now,
                removed: false,
            }),
        };
        {
            let mut details = lock(&slot.details);
            slot.update(&mut details, status, metrics, now);
        }
        slot
    }

    /// Writes one heartbeat. The caller holds `details` (this slot's mutex).
    fn update(
        &self,
        details: &mut SlotDetails,
        status: &WorkerStatus,
        metrics: WorkerMetrics,
        now: EpochMs,
    ) {
        // Relaxed everywhere: each atomic is an independent measurement (see the module doc);
        // the slot mutex orders heartbeats against expiry.
        self.overloaded.store(status.overloaded, Ordering::Relaxed);
        self.score.store(metrics.health_score(), Ordering::Relaxed);
        self.cpu_free_millicores
            .store(metrics.cpu_free_millicores(), Ordering::Relaxed);
        self.memory_free_bytes
            .store(metrics.memory_free_bytes(), Ordering::Relaxed);
        self.disk_free_bytes
            .store(metrics.disk_free_bytes(), Ordering::Relaxed);
        self.last_heartbeat_ms.fetch_max(now, Ordering::Relaxed);
        details.metrics = metrics;
        details.trackers = status.trackers;
        if details.version != status.version {
            details.version.clone_from(&status.version);
        }
    }

    /// Whether `tags` (any order, duplicates allowed) is the same set as this slot's tags.
    /// No allocation: at most `MAX_TAGS` tags on each side.
    fn same_tags(&self, tags: &[String]) -> bool {
        tags.iter().all(|t| {
            self.tags
                .binary_search_by(|s| (**s).cmp(t.as_str()))
                .is_ok()
        }) && self.tags.iter().all(|s| tags.iter().any(|t| **s == **t))
    }

    fn view(&self, window: i64) -> WorkerView {
        let details = lock(&self.details);
        let last = self.last_heartbeat_ms.load(Ordering::Relaxed);
        WorkerView {
            address: self.address.clone(),
            tags: self.tags.to_vec(),
            version: details.version.clone(),
            metrics: details.metrics,
            health_score: self.score.load(Ordering::Relaxed),
            overloaded: self.overloaded.load(Ordering::Relaxed),
            trackers: details.trackers,
            registered_at_ms: details.registered_at_ms,
            last_heartbeat_ms: last,
            dead_at_ms: last.saturating_add(window),
        }
    }
}

/// One app's workers at one moment of membership (metrics inside the slots move on).
#[derive(Debug, Default)]
pub(super) struct Snapshot {
    /// Sorted by address.
    pub(super) slots: Box<[Arc<WorkerSlot>]>,
    index: HashMap<Arc<str>, usize>,
}

impl Snapshot {
    fn build(mut slots: Vec<Arc<WorkerSlot>>) -> Arc<Snapshot> {
        slots.sort_unstable_by(|a, b| a.address.cmp(&b.address));
        let index = slots
            .iter()
            .enumerate()
            .map(|(i, s)| (s.address.clone(), i))
            .collect();
        Arc::new(Snapshot {
            slots: slots.into_boxed_slice(),
            index,
        })
    }

    /// `self` with `slot` put in its place by address, replacing the slot of the same
    /// address if there is one: the snapshot [`build`](Self::build) gives for those slots,
    /// without sorting or rehashing the others.
    fn with_slot(&self, slot: Arc<WorkerSlot>) -> Arc<Snapshot> {
        let mut index = self.index.clone();
        let mut slots: Vec<Arc<WorkerSlot>> = Vec::with_capacity(self.slots.len() + 1);
        match self
            .slots
            .binary_search_by(|s| s.address.cmp(&slot.address))
        {
            Ok(at) => {
                index.insert(slot.address.clone(), at);
                slots.extend(self.slots.iter().cloned());
                if let Some(s) = slots.get_mut(at) {
                    *s = slot;
                }
            }
            Err(at) => {
                for i in index.values_mut() {
                    if *i >= at {
                        *i += 1;
                    }
                }
                index.insert(slot.address.clone(), at);
                let (before, after) = self.slots.split_at(at.min(self.slots.len()));
                slots.extend(before.iter().cloned());
                slots.push(slot);
                slots.extend(after.iter().cloned());
            }
        }
        Arc::new(Snapshot {
            slots: slots.into_boxed_slice(),
            index,
        })
    }

    fn get(&self, address: &str) -> Option<&Arc<WorkerSlot>> {
        self.index.get(address).and_then(|&i| self.slots.get(i))
    }
}

/// An app's name, snapshot and writer mutex, cloned out of the map.
type AppHandles = (Arc<str>, Arc<Snapshot>, Arc<Mutex<()>>);

#[derive(Debug)]
struct AppEntry {
    snapshot: Arc<Snapshot>,
    writer: Arc<Mutex<()>>,
}

/// The workers of every app: registered and refreshed by heartbeats, dropped by
/// [`remove`](Self::remove) and [`expire`](Self::expire), chosen from by `select`.
///
/// Reads no clock: every call that needs the time takes `now` (epoch ms, the server's clock
/// when the heartbeat arrived or the selection runs). Share it as `Arc<WorkerRegistry>`; every
/// method takes `&self`.
#[derive(Debug)]
pub struct WorkerRegistry {
    config: RegistryConfig,
    apps: DashMap<Arc<str>, AppEntry>,
}

impl Default for WorkerRegistry {
    fn default() -> Self {
        WorkerRegistry {
            config: RegistryConfig::default(),
            apps: DashMap::new(),
        }
    }
}

impl WorkerRegistry {
    /// An empty registry; refuses a config with a zero interval, miss count or cap.
    pub fn new(config: RegistryConfig) -> Result<Self, DispatchError> {
        config.validate()?;
        Ok(WorkerRegistry {
            config,
            apps: DashMap::new(),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &RegistryConfig {
        &self.config
    }

    /// Registers `status.address` under `app`, or refreshes it: metrics, overload flag,
    /// trackers, version, and the time of its last heartbeat (`now`, never moved backwards).
    ///
    /// A known worker's heartbeat touches only that worker's slot (no app-wide lock); a new
    /// worker, or one whose tags changed, is a membership change. Refused with a typed error:
    /// an empty or oversized app name, address, tag or version, too many tags, or a new
    /// worker beyond `max_workers_per_app`.
    pub fn heartbeat(
        &self,
        app: &str,
        status: &WorkerStatus,
        metrics: WorkerMetrics,
        now: EpochMs,
    ) -> Result<HeartbeatOutcome, DispatchError> {
        validate(app, status)?;
        if let Some(snapshot) = self.snapshot(app) {
            if let Some(slot) = snapshot.get(&status.address) {
                if slot.same_tags(&status.tags) {
                    let mut details = lock(&slot.details);
                    if !details.removed {
                        slot.update(&mut details, status, metrics, now);
                        return Ok(HeartbeatOutcome::Refreshed);
                    }
                }
            }
        }
        self.register(app, status, metrics, now)
    }

    /// The slow path of `heartbeat`: a membership change under the app's writer mutex.
    fn register(
        &self,
        app: &str,
        status: &WorkerStatus,
        metrics: WorkerMetrics,
        now: EpochMs,
    ) -> Result<HeartbeatOutcome, DispatchError> {
        let writer = match self.apps.get(app) {
            Some(entry) => entry.writer.clone(),
            None => self
                .apps
                .entry(Arc::from(app))
                .or_insert_with(|| AppEntry {
                    snapshot: Arc::default(),
                    writer: Arc::default(),
                })
                .writer
                .clone(),
        };
        let _writing = lock(&writer);
        // Re-read under the writer lock: another heartbeat may have registered it meanwhile.
        let current = self.snapshot(app).unwrap_or_default();
        let mut outcome = HeartbeatOutcome::Registered;
        let mut address: Option<Arc<str>> = None;
        if let Some(slot) = current.get(&status.address) {
            let mut details = lock(&slot.details);
            if slot.same_tags(&status.tags) && !details.removed {
                slot.update(&mut details, status, metrics, now);
                return Ok(HeartbeatOutcome::Refreshed);
            }
            // Tags changed: the old slot leaves, a new one with the new tags replaces it.
            details.removed = true;
            outcome = HeartbeatOutcome::Retagged;
            address = Some(slot.address.clone());
        } else if current.slots.len() >= self.config.max_workers_per_app {
            tracing::warn!(
                app,
                address = status.address,
                limit = self.config.max_workers_per_app,
                "worker refused: app is at its worker limit"
            );
            return Err(DispatchError::TooManyWorkers {
                app: app.into(),
                address: status.address.clone(),
                limit: self.config.max_workers_per_app,
            });
        }
        let address = address.unwrap_or_else(|| Arc::from(status.address.as_str()));
        let mut tags: Vec<&str> = status.tags.iter().map(String::as_str).collect();
        tags.sort_unstable();
        tags.dedup();
        let tags: Box<[Arc<str>]> = tags.into_iter().map(Arc::from).collect();
        let slot = Arc::new(WorkerSlot::new(address, tags, status, metrics, now));
        self.publish(app, current.with_slot(slot));
        tracing::info!(app, address = status.address, tags = ?status.tags, ?outcome, "worker registered");
        Ok(outcome)
    }

    /// Drops `address` from `app`. Returns whether it was registered.
    pub fn remove(&self, app: &str, address: &str) -> bool {
        let Some(writer) = self.apps.get(app).map(|e| e.writer.clone()) else {
            return false;
        };
        let _writing = lock(&writer);
        let Some(current) = self.snapshot(app) else {
            return false;
        };
        let Some(slot) = current.get(address) else {
            return false;
        };
        lock(&slot.details).removed = true;
        let slots = current
            .slots
            .iter()
            .filter(|s| *s.address != *address)
            .cloned()
            .collect();
        self.publish(app, Snapshot::build(slots));
        tracing::info!(app, address, "worker removed");
        true
    }

    /// Drops every worker whose last heartbeat is `liveness_window_ms` or more before `now`
    /// (it missed `missed_heartbeats` heartbeats) and returns them as `(app, address)`, so the
    /// server can hand their running instances to the retry policy.
    ///
    /// A worker with its last heartbeat at `t` is alive for every `now < t + window` and is
    /// expired by the first call with `now ≥ t + window`; a heartbeat that races with this
    /// call either lands first (and the worker stays) or re-registers it afterwards.
    pub fn expire(&self, now: EpochMs) -> Vec<(Arc<str>, Arc<str>)> {
        let window = self.config.liveness_window_ms();
        let is_dead = |slot: &WorkerSlot| {
            now >= slot
                .last_heartbeat_ms
                .load(Ordering::Relaxed)
                .saturating_add(window)
        };
        // Collect first: no shard lock is held while taking writer mutexes.
        let apps: Vec<AppHandles> = self
            .apps
            .iter()
            .map(|e| (e.key().clone(), e.snapshot.clone(), e.writer.clone()))
            .collect();
        let mut expired = Vec::new();
        for (app, snapshot, writer) in apps {
            if !snapshot.slots.iter().any(|s| is_dead(s)) {
                continue;
            }
            let _writing = lock(&writer);
            let Some(current) = self.snapshot(&app) else {
                continue;
            };
            let mut survivors = Vec::with_capacity(current.slots.len());
            let before = expired.len();
            for slot in current.slots.iter() {
                let mut details = lock(&slot.details);
                if is_dead(slot) {
                    details.removed = true;
                    tracing::warn!(
                        app = &*app,
                        address = &*slot.address,
                        last_heartbeat_ms = slot.last_heartbeat_ms.load(Ordering::Relaxed),
                        now,
                        "worker expired: missed heartbeats"
                    );
                    expired.push((app.clone(), slot.address.clone()));
                } else {
                    survivors.push(slot.clone());
                }
            }
            if expired.len() != before {
                self.publish(&app, Snapshot::build(survivors));
            }
        }
        expired
    }

    /// The workers of `app`, sorted by address (empty for an unknown app).
    pub fn workers(&self, app: &str) -> Vec<WorkerView> {
        let window = self.config.liveness_window_ms();
        self.snapshot(app)
            .map(|s| s.slots.iter().map(|slot| slot.view(window)).collect())
            .unwrap_or_default()
    }

    /// How many workers `app` has registered (dead ones not yet expired included).
    pub fn worker_count(&self, app: &str) -> usize {
        self.snapshot(app).map_or(0, |s| s.slots.len())
    }

    /// The apps that have (or had) workers.
    pub fn apps(&self) -> Vec<Arc<str>> {
        self.apps.iter().map(|e| e.key().clone()).collect()
    }

    /// The app's current snapshot: one shard read lock, one `Arc` clone.
    pub(super) fn snapshot(&self, app: &str) -> Option<Arc<Snapshot>> {
        self.apps.get(app).map(|e| e.snapshot.clone())
    }

    /// Swaps in `snapshot`. The caller holds the app's writer mutex.
    fn publish(&self, app: &str, snapshot: Arc<Snapshot>) {
        if let Some(mut entry) = self.apps.get_mut(app) {
            entry.snapshot = snapshot;
        }
    }
}

/// Checks a heartbeat's identity (lengths and counts; no allocation when it is fine).
fn validate(app: &str, status: &WorkerStatus) -> Result<(), DispatchError> {
    let refuse = |reason: String| DispatchError::InvalidWorker {
        app: shorten(app),
        address: shorten(&status.address),
        reason,
    };
    if app.is_empty() || app.len() > MAX_APP_LEN {
        return Err(refuse(format!(
            "app name must be 1..={MAX_APP_LEN} bytes, got {}",
            app.len()
        )));
    }
    if status.address.is_empty() || status.address.len() > MAX_ADDRESS_LEN {
        return Err(refuse(format!(
            "address must be 1..={MAX_ADDRESS_LEN} bytes, got {}",
            status.address.len()
        )));
    }
    if status.version.len() > MAX_VERSION_LEN {
        return Err(refuse(format!(
            "version must be at most {MAX_VERSION_LEN} bytes, got {}",
            status.version.len()
        )));
    }
    if status.tags.len() > MAX_TAGS {
        return Err(refuse(format!(
            "at most {MAX_TAGS} tags, got {}",
            status.tags.len()
        )));
    }
    if let Some(tag) = status
        .tags
        .iter()
        .find(|t| t.is_empty() || t.len() > MAX_TAG_LEN)
    {
        return Err(refuse(format!(
            "each tag must be 1..={MAX_TAG_LEN} bytes, got one of {}",
            tag.len()
        )));
    }
    Ok(())
}

/// At most 64 characters of `s`, for error messages about oversized input.
fn shorten(s: &str) -> String {
    match s.char_indices().nth(64) {
        Some((end, _)) => format!("{}...", s.get(..end).unwrap_or_default()),
        None => s.to_owned(),
    }
}

/// Locks `m`, ignoring poisoning: every critical section leaves its data consistent.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(address: &str, tag: &str) -> Arc<WorkerSlot> {
        let status = WorkerStatus {
            address: address.into(),
            tags: vec![tag.into()],
            version: String::new(),
            overloaded: false,
            trackers: TrackerCounts::default(),
        };
        let tags: Box<[Arc<str>]> = Box::new([Arc::from(tag)]);
        Arc::new(WorkerSlot::new(
            Arc::from(address),
            tags,
            &status,
            WorkerMetrics::default(),
            0,
        ))
    }

    fn layout(s: &Snapshot) -> Vec<(String, String, usize)> {
        s.slots
            .iter()
            .map(|slot| {
                let at = s.index.get(&slot.address).copied().unwrap_or(usize::MAX);
                (slot.address.to_string(), slot.tags.join(","), at)
            })
            .collect()
    }

    #[test]
    fn a_slot_put_in_place_gives_the_snapshot_a_rebuild_gives() {
        // Addresses out of order, at both ends, in the middle, and again with new tags.
        let adds = [
            ("w5:1", "a"),
            ("w1:1", "a"),
            ("w9:1", "a"),
            ("w3:1", "a"),
            ("w0:1", "a"),
            ("w3:1", "b"),
            ("w9:1", "b"),
            ("w0:1", "b"),
            ("w7:1", "a"),
        ];
        let mut incremental = Arc::new(Snapshot::default());
        let mut all: Vec<Arc<WorkerSlot>> = Vec::new();
        for (address, tag) in adds {
            let new = slot(address, tag);
            incremental = incremental.with_slot(new.clone());
            all.retain(|s| *s.address != *address);
            all.push(new);
            let rebuilt = Snapshot::build(all.clone());
            assert_eq!(layout(&incremental), layout(&rebuilt), "after {address}");
            assert_eq!(incremental.index.len(), rebuilt.index.len());
            for (k, (a, _, at)) in layout(&rebuilt).into_iter().enumerate() {
                assert_eq!(at, k, "{a}");
            }
        }
    }
}
