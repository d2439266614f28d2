//! [`AppWorkers`]: one app's workers, kept in the orders `select` reads them in, each updated
//! in O(log n) when a worker joins, leaves or changes rank.
//!
//! # Layout
//!
//! ```text
//!   AppWorkers
//!     by_address: BTreeMap<address, slot>               every worker; listing, lookups
//!     ranking:    BTreeMap<(score desc, address), slot>  the workers not overloaded, best first
//!     ordered:    lazily built arrays in address order   every worker; the ranked ones
//!                 (dropped on a membership or overload change, rebuilt by the next reader)
//!     liveness:   the workers dead at some time `at`, and until when that set stays exact
//! ```
//!
//! # Why these structures
//!
//! With 10,000 workers per app, one scan of every worker per dispatch cost more than the rest
//! of the dispatch, and a registration that copied the whole membership cost O(workers²) over
//! the reconnect of every worker after a server restart. Here:
//!
//! - a registration, removal or expiry is one insert or removal per map: O(log n);
//! - HEALTH_FIRST without filters walks `ranking` from the best and stops at the first worker
//!   alive at `now`: O(log n + workers dead and not yet expired);
//! - ROUND_ROBIN and RANDOM without filters index the ranked workers in address order
//!   (`ordered.ranked`), stepping over the dead ones the liveness set names;
//! - the eligible count without filters is `ranking.len()` minus the ranked dead workers.
//!
//! Filters a spec brings (designated workers, minimum CPU, memory or disk) depend on the spec,
//! so a spec with any of them still scans every worker (`ordered.all`), as before.
//!
//! # The liveness set
//!
//! Whether a worker is alive depends on `now`. [`Liveness`] records, for one time `at`, the
//! workers dead then (`last heartbeat + window ≤ at`) and `until`, the earliest time any other
//! worker can die (the smallest `last heartbeat + window` among them). Heartbeats only move a
//! worker's last heartbeat forward, so for every `now` in `[at, until)` the same workers are
//! dead, unless one of them heartbeats again: such a heartbeat ("revival") advances
//! `revivals`, and a set recorded before it is recomputed. A membership change adjusts the set
//! in place (a new worker shortens `until`, a removed worker leaves `dead`). With heartbeats
//! every second and a three-second window, one O(n) pass per two seconds replaces one per
//! dispatch.
//!
//! # Invariants (checked by `debug_assert!` and the registry's model tests)
//!
//! - `ranking` holds exactly the workers of `by_address` whose `overloaded` is false, each
//!   under its current `score`; both atomics change only under the app's write lock.
//! - `ordered`, when present, lists `by_address` in order (`all`) and its ranked workers
//!   (`ranked`), in address order.
//! - A valid `liveness` names exactly the workers dead at every `now` in `[at, until)`, in
//!   address order, as long as `revivals` has not moved since it was computed.

use std::cmp::Reverse;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::{Mutex, MutexGuard};

use super::health::HealthScore;
use super::registry::WorkerSlot;
use crate::time_expression::EpochMs;

/// Where a worker that is not overloaded sits in `ranking`: best score first, then address.
pub(super) type RankKey = (Reverse<HealthScore>, Arc<str>);

/// The workers in address order, built on demand.
#[derive(Debug)]
pub(super) struct Ordered {
    /// Every worker.
    pub(super) all: Arc<[Arc<WorkerSlot>]>,
    /// The workers that are not overloaded (those in `ranking`).
    pub(super) ranked: Arc<[Arc<WorkerSlot>]>,
}

/// The workers dead at `at`, exact for every `now` in `[at, until)` (see the module doc).
#[derive(Debug, Default)]
pub(super) struct Liveness {
    valid: bool,
    at: EpochMs,
    until: EpochMs,
    /// `AppWorkers::revivals` when this set was computed.
    revivals: u64,
    /// Dead at `at`, in address order.
    pub(super) dead: Vec<Arc<WorkerSlot>>,
}

/// One app's workers (see the module doc). Readers hold the app's read lock, membership and
/// rank changes its write lock.
#[derive(Debug)]
pub(super) struct AppWorkers {
    pub(super) by_address: BTreeMap<Arc<str>, Arc<WorkerSlot>>,
    pub(super) ranking: BTreeMap<RankKey, Arc<WorkerSlot>>,
    ordered: Mutex<Option<Ordered>>,
    liveness: Mutex<Liveness>,
    /// The `at` of the current liveness set (`i64::MIN` before the first).
    dead_at: AtomicI64,
    /// How many heartbeats came from a worker some liveness set counted as dead.
    revivals: AtomicU64,
}

impl Default for AppWorkers {
    fn default() -> Self {
        AppWorkers {
            by_address: BTreeMap::new(),
            ranking: BTreeMap::new(),
            ordered: Mutex::new(None),
            liveness: Mutex::new(Liveness::default()),
            dead_at: AtomicI64::new(i64::MIN),
            revivals: AtomicU64::new(0),
        }
    }
}

/// Whether `slot` is dead at `now`: its last heartbeat `window` or more before.
pub(super) fn is_dead(slot: &WorkerSlot, now: EpochMs, window: i64) -> bool {
    now >= slot
        .last_heartbeat_ms
        .load(Ordering::Relaxed)
        .saturating_add(window)
}

fn rank_key(slot: &WorkerSlot) -> Option<RankKey> {
    (!slot.overloaded.load(Ordering::Relaxed)).then(|| {
        (
            Reverse(slot.score.load(Ordering::Relaxed)),
            slot.address.clone(),
        )
    })
}

impl AppWorkers {
    /// Adds `slot`, whose address is not registered, heartbeating at `now`. Write lock.
    pub(super) fn insert(&mut self, slot: Arc<WorkerSlot>, now: EpochMs, window: i64) {
        if let Some(key) = rank_key(&slot) {
            self.ranking.insert(key, slot.clone());
        }
        let previous = self.by_address.insert(slot.address.clone(), slot);
        debug_assert!(
            previous.is_none(),
            "a registered address was inserted again"
        );
        *self.ordered.get_mut() = None;
        let live = self.liveness.get_mut();
        if live.valid {
            let dies = now.saturating_add(window);
            if dies <= live.at {
                // Dead already at `at` (time went backwards): count again.
                live.valid = false;
            } else {
                live.until = live.until.min(dies);
            }
        }
    }

    /// Drops `slot` (registered) from every structure. Write lock; the caller has marked it
    /// removed.
    pub(super) fn forget(&mut self, slot: &Arc<WorkerSlot>) {
        if let Some(key) = rank_key(slot) {
            let ranked = self.ranking.remove(&key);
            debug_assert!(
                ranked.is_some(),
                "a ranked worker was missing from the ranking"
            );
        }
        self.by_address.remove(&slot.address);
        *self.ordered.get_mut() = None;
        self.liveness
            .get_mut()
            .dead
            .retain(|d| !Arc::ptr_eq(d, slot));
    }

    /// Takes `slot` out of the ranking before its score or overload flag change. Write lock.
    pub(super) fn unrank(&mut self, slot: &WorkerSlot) -> Option<RankKey> {
        let key = rank_key(slot)?;
        self.ranking.remove(&key);
        Some(key)
    }

    /// Puts `slot` back after [`unrank`](Self::unrank) and the change; `before` is what
    /// `unrank` returned. Write lock.
    pub(super) fn rerank(&mut self, slot: &Arc<WorkerSlot>, before: Option<RankKey>) {
        let after = rank_key(slot);
        if before.is_some() != after.is_some() {
            *self.ordered.get_mut() = None;
        }
        if let Some(key) = after {
            self.ranking.insert(key, slot.clone());
        }
    }

    /// Records a heartbeat of a registered worker whose previous last heartbeat was `prev`:
    /// if some liveness set counted it as dead, that set is stale. Either lock.
    pub(super) fn beat(&self, prev: EpochMs, window: i64) {
        // SeqCst on `dead_at` and `revivals`: a liveness pass stores `dead_at`, then reads
        // `revivals`, then the heartbeats; a heartbeat stores its time, then reads `dead_at`.
        // Either the pass sees the new heartbeat, or the heartbeat sees the pass's `at` and
        // advances `revivals`, which the next reader compares.
        if prev.saturating_add(window) <= self.dead_at.load(Ordering::SeqCst) {
            self.revivals.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// The workers dead at `now`, recomputed (one pass) only if the last set does not cover
    /// `now`. Read lock is enough.
    pub(super) fn liveness(&self, now: EpochMs, window: i64) -> MutexGuard<'_, Liveness> {
        let mut live = self.liveness.lock();
        let fresh = live.valid
            && live.revivals == self.revivals.load(Ordering::SeqCst)
            && live.at <= now
            && now < live.until;
        if !fresh {
            self.dead_at.store(now, Ordering::SeqCst);
            live.revivals = self.revivals.load(Ordering::SeqCst);
            live.dead.clear();
            let mut until = EpochMs::MAX;
            for slot in self.by_address.values() {
                let dies = slot
                    .last_heartbeat_ms
                    .load(Ordering::Relaxed)
                    .saturating_add(window);
                if now >= dies {
                    live.dead.push(slot.clone());
                } else {
                    until = until.min(dies);
                }
            }
            live.at = now;
            live.until = until;
            live.valid = true;
        }
        live
    }

    /// Every worker in address order, built if a change dropped it. Read lock is enough.
    pub(super) fn all(&self) -> Arc<[Arc<WorkerSlot>]> {
        self.ordered(|o| o.all.clone())
    }

    /// The ranked workers in address order, built if a change dropped them. Read lock is
    /// enough.
    pub(super) fn ranked(&self) -> Arc<[Arc<WorkerSlot>]> {
        self.ordered(|o| o.ranked.clone())
    }

    fn ordered<T>(&self, f: impl FnOnce(&Ordered) -> T) -> T {
        let mut ordered = self.ordered.lock();
        f(ordered.get_or_insert_with(|| {
            let all: Arc<[Arc<WorkerSlot>]> = self.by_address.values().cloned().collect();
            let ranked: Arc<[Arc<WorkerSlot>]> = all
                .iter()
                .filter(|s| !s.overloaded.load(Ordering::Relaxed))
                .cloned()
                .collect();
            debug_assert_eq!(ranked.len(), self.ranking.len());
            Ordered { all, ranked }
        }))
    }
}

impl Liveness {
    /// The dead workers that are in the ranking (not overloaded).
    pub(super) fn dead_ranked(&self) -> impl Iterator<Item = &Arc<WorkerSlot>> {
        self.dead
            .iter()
            .filter(|s| !s.overloaded.load(Ordering::Relaxed))
    }
}

/// The `k`-th (from 0) entry of `ranked` (address order) that is not in `dead_ranked` (address
/// order, each an entry of `ranked`): position `k` moved past every dead entry at or before it.
pub(super) fn kth_alive<'a, 'b>(
    ranked: &'a [Arc<WorkerSlot>],
    dead_ranked: impl Iterator<Item = &'b Arc<WorkerSlot>>,
    k: usize,
) -> Option<&'a Arc<WorkerSlot>> {
    let mut pos = k;
    for dead in dead_ranked {
        match ranked.binary_search_by(|s| s.address.cmp(&dead.address)) {
            Ok(p) if p <= pos => pos += 1,
            Ok(_) => break,
            Err(_) => debug_assert!(false, "a dead ranked worker is not in the ranked array"),
        }
    }
    ranked.get(pos)
}
