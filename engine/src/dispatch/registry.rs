//! [`WorkerRegistry`]: the workers of every app, fed by heartbeats, read by `select`.
//!
//! # Layout and locking
//!
//! ```text
//!   WorkerRegistry
//!     apps: DashMap<app, Arc<RwLock<AppWorkers>>>   sharded; readers clone the app's Arc
//!             AppWorkers (see `workers`)            by address, ranked by score, liveness
//!               WorkerSlot
//!                 address, tags                       immutable
//!                 last_heartbeat_ms,                  atomics: what `select` reads
//!                 cpu/memory/disk free
//!                 score, overloaded                   atomics, changed under the write lock
//!                 details: Mutex<..>                  full metrics, version, trackers
//! ```
//!
//! The dispatch hot path (`select`) takes the app's shard read lock just long enough to clone
//! the app's `Arc`, then the app's read lock while it picks. Why this shape:
//!
//! - *A snapshot rebuilt on every heartbeat* would rebuild an n-worker array n times per
//!   heartbeat interval. Here a heartbeat of a known worker whose score and overload flag did
//!   not change rewrites only its own slot's atomics, under the app's read lock and its own
//!   slot mutex; one whose rank changed takes the write lock for two O(log n) map updates.
//! - *An immutable snapshot copied on every membership change* (the previous layout) made the
//!   reconnect of W workers after a server restart cost O(W²); here each registration is an
//!   insert into two maps: O(log W).
//! - *A scan of every worker per dispatch* cost O(workers) per instance; `AppWorkers` keeps the
//!   orders the strategies need (see `workers`), so a spec without filters picks in O(log n).
//!
//! # Invariants
//!
//! - A slot in an app's maps has `removed == false`; a slot is marked removed, under its
//!   details mutex and the app's write lock, when it leaves them. A heartbeat updates a slot
//!   only under the app's lock and that mutex and only if it is not removed, so a heartbeat
//!   never lands on a slot that expiry has already dropped (it re-registers the worker
//!   instead), and expiry never drops a worker whose heartbeat it has seen.
//! - Addresses are unique per app.
//! - `score` and `overloaded` change only under the app's write lock (they place the slot in
//!   the ranking); the other atomics of one slot are written together under the slot mutex
//!   but read without it: a concurrent `select` may see fields of two consecutive heartbeats
//!   mixed, each of them a genuine measurement less than one interval old.
//!   `last_heartbeat_ms` never decreases.
//! - No app has more than `max_workers_per_app` workers.
//! - An app's entry is never dropped once created, even when its last worker goes: dropping
//!   it would race with a registration holding the old entry's writer mutex. The entries are
//!   bounded by the apps the server admits (workers prove the app's secret before their first
//!   heartbeat reaches the registry), and an empty entry is a few hundred bytes.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use dashmap::DashMap;
use parking_lot::RwLock;
use serde::{Deserialize, Serialize};

use super::error::DispatchError;
use super::health::{HealthScore, WorkerMetrics};
use super::workers::{is_dead, AppWorkers};
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
    /// Set once, when the slot leaves the app's workers; a removed slot is never updated.
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

    /// Writes one heartbeat and returns the previous last heartbeat. The caller holds
    /// `details` (this slot's mutex), and the app's write lock unless the score and the
    /// overload flag stay as they are.
    fn update(
        &self,
        details: &mut SlotDetails,
        status: &WorkerStatus,
        metrics: WorkerMetrics,
        now: EpochMs,
    ) -> EpochMs {
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
        let prev = self.last_heartbeat_ms.fetch_max(now, Ordering::SeqCst);
        details.metrics = metrics;
        details.trackers = status.trackers;
        if details.version != status.version {
            details.version.clone_from(&status.version);
        }
        prev
    }

    /// Whether a heartbeat with `status` and `metrics` leaves this slot's place in the ranking
    /// (its score and overload flag) as it is.
    fn same_rank(&self, status: &WorkerStatus, metrics: &WorkerMetrics) -> bool {
        self.overloaded.load(Ordering::Relaxed) == status.overloaded
            && self.score.load(Ordering::Relaxed) == metrics.health_score()
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

/// One app's workers behind its lock.
pub(super) type AppEntry = Arc<RwLock<AppWorkers>>;

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
    /// A known worker's heartbeat that leaves its score and overload flag as they were touches
    /// only that worker's slot (under the app's read lock); a new worker, one whose tags
    /// changed, or one whose rank changed takes the app's write lock for O(log n) updates.
    /// Refused with a typed error: an empty or oversized app name, address, tag or version,
    /// too many tags, or a new worker beyond `max_workers_per_app`.
    pub fn heartbeat(
        &self,
        app: &str,
        status: &WorkerStatus,
        metrics: WorkerMetrics,
        now: EpochMs,
    ) -> Result<HeartbeatOutcome, DispatchError> {
        validate(app, status)?;
        let window = self.config.liveness_window_ms();
        if let Some(entry) = self.entry(app) {
            let workers = entry.read();
            if let Some(slot) = workers.by_address.get(status.address.as_str()) {
                if slot.same_tags(&status.tags) && slot.same_rank(status, &metrics) {
                    let mut details = lock(&slot.details);
                    if !details.removed {
                        let prev = slot.update(&mut details, status, metrics, now);
                        workers.beat(prev, window);
                        return Ok(HeartbeatOutcome::Refreshed);
                    }
                }
            }
        }
        self.register(app, status, metrics, now)
    }

    /// The slow path of `heartbeat`: a membership or rank change under the app's write lock.
    fn register(
        &self,
        app: &str,
        status: &WorkerStatus,
        metrics: WorkerMetrics,
        now: EpochMs,
    ) -> Result<HeartbeatOutcome, DispatchError> {
        let window = self.config.liveness_window_ms();
        let entry = match self.entry(app) {
            Some(entry) => entry,
            None => self.apps.entry(Arc::from(app)).or_default().clone(),
        };
        let mut workers = entry.write();
        let mut outcome = HeartbeatOutcome::Registered;
        let mut address: Option<Arc<str>> = None;
        if let Some(slot) = workers.by_address.get(status.address.as_str()).cloned() {
            let mut details = lock(&slot.details);
            debug_assert!(!details.removed, "a removed slot is still registered");
            if slot.same_tags(&status.tags) {
                let before = workers.unrank(&slot);
                let prev = slot.update(&mut details, status, metrics, now);
                workers.rerank(&slot, before);
                workers.beat(prev, window);
                return Ok(HeartbeatOutcome::Refreshed);
            }
            // Tags changed: the old slot leaves, a new one with the new tags replaces it.
            details.removed = true;
            drop(details);
            workers.forget(&slot);
            outcome = HeartbeatOutcome::Retagged;
            address = Some(slot.address.clone());
        } else if workers.by_address.len() >= self.config.max_workers_per_app {
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
        workers.insert(slot, now, window);
        drop(workers);
        tracing::info!(app, address = status.address, tags = ?status.tags, ?outcome, "worker registered");
        Ok(outcome)
    }

    /// Drops `address` from `app`. Returns whether it was registered.
    pub fn remove(&self, app: &str, address: &str) -> bool {
        let Some(entry) = self.entry(app) else {
            return false;
        };
        let mut workers = entry.write();
        let Some(slot) = workers.by_address.get(address).cloned() else {
            return false;
        };
        lock(&slot.details).removed = true;
        workers.forget(&slot);
        drop(workers);
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
        // Collect first: no shard lock is held while taking app locks.
        let apps: Vec<(Arc<str>, AppEntry)> = self
            .apps
            .iter()
            .map(|e| (e.key().clone(), e.value().clone()))
            .collect();
        let mut expired = Vec::new();
        for (app, entry) in apps {
            if entry.read().liveness(now, window).dead.is_empty() {
                continue;
            }
            let mut workers = entry.write();
            // Dead at `now` under the write lock: no heartbeat can land meanwhile.
            let dead = workers.liveness(now, window).dead.clone();
            for slot in dead {
                let mut details = lock(&slot.details);
                debug_assert!(is_dead(&slot, now, window));
                details.removed = true;
                drop(details);
                tracing::warn!(
                    app = &*app,
                    address = &*slot.address,
                    last_heartbeat_ms = slot.last_heartbeat_ms.load(Ordering::Relaxed),
                    now,
                    "worker expired: missed heartbeats"
                );
                workers.forget(&slot);
                expired.push((app.clone(), slot.address.clone()));
            }
        }
        expired
    }

    /// The workers of `app`, sorted by address (empty for an unknown app).
    pub fn workers(&self, app: &str) -> Vec<WorkerView> {
        let window = self.config.liveness_window_ms();
        self.entry(app)
            .map(|e| {
                e.read()
                    .by_address
                    .values()
                    .map(|slot| slot.view(window))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// How many workers `app` has registered (dead ones not yet expired included).
    pub fn worker_count(&self, app: &str) -> usize {
        self.entry(app).map_or(0, |e| e.read().by_address.len())
    }

    /// The apps that have (or had) workers.
    pub fn apps(&self) -> Vec<Arc<str>> {
        self.apps.iter().map(|e| e.key().clone()).collect()
    }

    /// The app's workers: one shard read lock, one `Arc` clone.
    pub(super) fn entry(&self, app: &str) -> Option<AppEntry> {
        self.apps.get(app).map(|e| e.value().clone())
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
