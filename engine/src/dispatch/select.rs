//! Dispatch selection: which worker becomes an instance's TaskTracker, and which workers it
//! may use. [`WorkerRegistry::select`] is the hot path between the wheel and the socket.
//!
//! # One selection
//!
//! ```text
//!   the app's workers (sorted by address)
//!        │  per worker, the first filter that fails counts it in `Exclusions`:
//!        │  dead → not designated → overloaded → min_cpu_cores → min_memory_gb → min_disk_gb
//!        ▼
//!   eligible: [(slot, score)] in address order      (caller's scratch Vec, no allocation)
//!        │  strategy picks the TaskTracker:
//!        │    HEALTH_FIRST, SPECIFY  max score; equal scores → smallest address
//!        │    RANDOM                 uniform, from the caller's rng
//!        │    ROUND_ROBIN            eligible[cursor++ mod len], the cursor one atomic per job
//!        ▼
//!   Selection { task_tracker, workers }
//!        STANDALONE        workers = [task_tracker]
//!        BROADCAST, MAP,   workers = [task_tracker, then the other eligible workers by
//!        MAP_REDUCE                   score descending (address breaks ties)],
//!                                     at most max_worker_count in all (0 = no cap)
//! ```
//!
//! The designated list filters under every strategy when it is not empty (as PowerJob's
//! `designatedWorkers` does); SPECIFY additionally requires it to be non-empty and then picks
//! like HEALTH_FIRST among the designated workers.
//!
//! # Two ways to the same choice
//!
//! The diagram is what a spec *with filters* (a designated list, a minimum) does: one pass
//! over every worker (`scan`). A spec without them, the common case, needs only "alive and not
//! overloaded", which the app's workers keep indexed (see `workers`): `pick` takes the first
//! live worker of the ranking (HEALTH_FIRST), the k-th live worker of the not-overloaded ones
//! in address order (ROUND_ROBIN, RANDOM: the same `k`, so the same worker, as the scan), and
//! the best-first list straight from the ranking; the eligible count is the ranking's size
//! minus its dead workers. Both give the same `Selection` for the same state, cursor and rng
//! (the `dispatch_model` tests run the scan of every worker as the model).
//!
//! # Invariants
//!
//! - Nothing is selected that is dead at `now` (expired or not), not designated (when a list
//!   is given), overloaded, or below a minimum; the counts in [`Exclusions`] add up to
//!   `registered − eligible`.
//! - `workers` has no duplicates, starts with `task_tracker`, and is a subset of the eligible
//!   set; uncapped BROADCAST/MAP/MAP_REDUCE get exactly the eligible set.
//! - Every choice is a function of the registry state, the spec, `now`, the cursor and the
//!   rng: with a seeded rng, selection is deterministic.
//! - Selection takes one shard read lock to clone the app's handle and the app's read lock
//!   while it picks; it allocates only the returned `workers` vector (plus the scratch
//!   vector's first growth, and the address-ordered arrays after a membership change).

use std::cmp::Reverse;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use super::error::{DispatchError, Exclusions};
use super::health::{cores_to_millicores, gib_to_bytes, HealthScore};
use super::registry::{WorkerRegistry, WorkerSlot};
use super::workers::{is_dead, kth_alive, AppWorkers};
use crate::model::{DispatchStrategy, ExecuteType};
use crate::time_expression::EpochMs;

/// Most entries in a designated list.
pub const MAX_DESIGNATED: usize = 1024;

/// A job's dispatch settings: how it runs, how its workers are chosen, and what they need.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DispatchSpec {
    /// How the instance is split over workers.
    pub execute_type: ExecuteType,
    /// How the TaskTracker is chosen.
    pub strategy: DispatchStrategy,
    /// Worker addresses or tags; when not empty, only workers whose address or one of whose
    /// tags is listed are eligible. Required (non-empty) for SPECIFY. At most 1024 entries.
    pub designated: Vec<String>,
    /// Free CPU cores a worker must have (`cores − load`), ≥ 0; 0 = no requirement.
    pub min_cpu_cores: f64,
    /// Free memory a worker must have, GiB, ≥ 0; 0 = no requirement.
    pub min_memory_gb: f64,
    /// Free disk a worker must have, GiB, ≥ 0; 0 = no requirement.
    pub min_disk_gb: f64,
    /// Most workers for BROADCAST, MAP and MAP_REDUCE (TaskTracker included); 0 = no cap.
    pub max_worker_count: u32,
}

impl DispatchSpec {
    /// Checks the spec without a registry: minimums finite and ≥ 0, SPECIFY with a
    /// designated list, the list within bounds. The server calls this when a job is saved;
    /// `select` calls it again, so a bad spec never selects anything.
    pub fn validate(&self) -> Result<(), DispatchError> {
        self.compile().map(|_| ())
    }

    fn compile(&self) -> Result<Requirements<'_>, DispatchError> {
        let bad = |field, reason: String| Err(DispatchError::InvalidSpec { field, reason });
        for (field, value) in [
            ("min_cpu_cores", self.min_cpu_cores),
            ("min_memory_gb", self.min_memory_gb),
            ("min_disk_gb", self.min_disk_gb),
        ] {
            if !value.is_finite() || value < 0.0 {
                return bad(field, format!("must be a finite number ≥ 0, got {value}"));
            }
        }
        if self.designated.len() > MAX_DESIGNATED {
            return bad(
                "designated",
                format!(
                    "may list at most {MAX_DESIGNATED} workers or tags, got {}",
                    self.designated.len()
                ),
            );
        }
        if self.strategy == DispatchStrategy::Specify && self.designated.is_empty() {
            return bad(
                "designated",
                "must name at least one worker address or tag for the SPECIFY strategy".into(),
            );
        }
        Ok(Requirements {
            designated: &self.designated,
            min_cpu_millicores: cores_to_millicores(self.min_cpu_cores),
            min_memory_bytes: gib_to_bytes(self.min_memory_gb),
            min_disk_bytes: gib_to_bytes(self.min_disk_gb),
        })
    }
}

/// A spec's filters in the units the slots hold.
struct Requirements<'a> {
    designated: &'a [String],
    min_cpu_millicores: i64,
    min_memory_bytes: u64,
    min_disk_bytes: u64,
}

impl Requirements<'_> {
    fn designates(&self, slot: &WorkerSlot) -> bool {
        self.designated
            .iter()
            .any(|d| **d == *slot.address || slot.tags.binary_search_by(|t| (**t).cmp(d)).is_ok())
    }
}

/// A job's ROUND_ROBIN position: one atomic, advanced by every selection of the job, so
/// concurrent selections of one job take consecutive turns without a lock.
#[derive(Debug, Default)]
pub struct RoundRobinCursor(AtomicU64);

impl RoundRobinCursor {
    /// A cursor at position 0.
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes the next turn.
    fn next(&self) -> u64 {
        // Relaxed: only atomicity matters; each turn is taken exactly once.
        self.0.fetch_add(1, Ordering::Relaxed)
    }
}

/// Per-dispatching-thread state for `select`: the rng for RANDOM and a scratch vector reused
/// between selections so the scan does not allocate.
#[derive(Debug)]
pub struct SelectState<R = StdRng> {
    rng: R,
    /// (slot index in the address-ordered workers, score), in address order.
    eligible: Vec<(usize, HealthScore)>,
}

impl SelectState<StdRng> {
    /// A state whose RANDOM choices are determined by `seed` (tests, reproducible runs).
    pub fn seeded(seed: u64) -> Self {
        Self::new(StdRng::seed_from_u64(seed))
    }

    /// A state seeded from the operating system's entropy (production).
    pub fn from_entropy() -> Self {
        Self::new(StdRng::from_entropy())
    }
}

impl<R: Rng> SelectState<R> {
    /// A state drawing RANDOM choices from `rng`.
    pub fn new(rng: R) -> Self {
        SelectState {
            rng,
            eligible: Vec::new(),
        }
    }
}

/// The outcome of a selection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Selection {
    /// The worker that runs the instance (its TaskTracker).
    pub task_tracker: Arc<str>,
    /// The workers the instance may use, `task_tracker` first (see the module doc).
    pub workers: Vec<Arc<str>>,
    /// How many workers were eligible (before the `max_worker_count` cap).
    pub eligible: usize,
}

impl WorkerRegistry {
    /// Chooses the worker(s) of `app` for one instance of a job with `spec`, at time `now`.
    ///
    /// `cursor` is the job's ROUND_ROBIN position (ignored by other strategies); `state` is the
    /// calling thread's rng and scratch space. Fails with `NoEligibleWorker` (counts per
    /// filter) when no worker qualifies, and with `InvalidSpec` for a spec no worker could
    /// ever satisfy.
    pub fn select<R: Rng>(
        &self,
        app: &str,
        spec: &DispatchSpec,
        cursor: &RoundRobinCursor,
        state: &mut SelectState<R>,
        now: EpochMs,
    ) -> Result<Selection, DispatchError> {
        let req = spec.compile()?;
        let window = self.config().liveness_window_ms();
        let Some(entry) = self.entry(app) else {
            return Err(DispatchError::NoEligibleWorker {
                app: app.into(),
                exclusions: Exclusions::default(),
            });
        };
        let workers = entry.read();
        if req.filters() {
            scan(app, spec, &req, &workers.all(), cursor, state, now, window)
        } else {
            pick(app, spec, &workers, cursor, state, now, window)
        }
    }
}

impl Requirements<'_> {
    /// Whether the spec filters workers beyond liveness and the overload flag.
    fn filters(&self) -> bool {
        !self.designated.is_empty()
            || self.min_cpu_millicores > 0
            || self.min_memory_bytes > 0
            || self.min_disk_bytes > 0
    }
}

/// Selection for a spec without filters: eligible = alive and not overloaded, read from the
/// app's ranking and liveness set without visiting every worker (see `workers`).
fn pick<R: Rng>(
    app: &str,
    spec: &DispatchSpec,
    workers: &AppWorkers,
    cursor: &RoundRobinCursor,
    state: &mut SelectState<R>,
    now: EpochMs,
    window: i64,
) -> Result<Selection, DispatchError> {
    let live = workers.liveness(now, window);
    let registered = workers.by_address.len();
    let ranked = workers.ranking.len();
    let dead_ranked = live.dead_ranked().count();
    let len = ranked - dead_ranked;
    if len == 0 {
        let dead_overloaded = live.dead.len() - dead_ranked;
        return Err(DispatchError::NoEligibleWorker {
            app: app.into(),
            exclusions: Exclusions {
                registered,
                dead: live.dead.len(),
                overloaded: registered - ranked - dead_overloaded,
                ..Exclusions::default()
            },
        });
    }
    let tracker = match spec.strategy {
        DispatchStrategy::Random | DispatchStrategy::RoundRobin => {
            let k = if spec.strategy == DispatchStrategy::Random {
                state.rng.gen_range(0..len)
            } else {
                // `len` fits in u64 and the remainder is below `len`: both casts are lossless.
                (cursor.next() % len as u64) as usize
            };
            kth_alive(&workers.ranked(), live.dead_ranked(), k).cloned()
        }
        DispatchStrategy::HealthFirst | DispatchStrategy::Specify => workers
            .ranking
            .values()
            .find(|slot| !is_dead(slot, now, window))
            .cloned(),
    };
    let Some(tracker) = tracker else {
        debug_assert!(false, "the ranking and the liveness set disagree");
        return Err(DispatchError::NoEligibleWorker {
            app: app.into(),
            exclusions: Exclusions {
                registered,
                ..Exclusions::default()
            },
        });
    };
    let task_tracker = tracker.address.clone();
    let workers = match spec.execute_type {
        ExecuteType::Standalone => vec![task_tracker.clone()],
        ExecuteType::Broadcast | ExecuteType::Map | ExecuteType::MapReduce => {
            let cap = cap(spec, len);
            let mut list = Vec::with_capacity(cap);
            list.push(task_tracker.clone());
            if cap > 1 {
                // The ranking is the order wanted: score descending, address breaking ties.
                let rest = workers
                    .ranking
                    .values()
                    .filter(|slot| !is_dead(slot, now, window) && !Arc::ptr_eq(slot, &tracker))
                    .take(cap - 1)
                    .map(|slot| slot.address.clone());
                list.extend(rest);
            }
            list
        }
    };
    Ok(Selection {
        task_tracker,
        workers,
        eligible: len,
    })
}

/// Most workers for `len` eligible ones under `spec.max_worker_count` (0 = no cap).
fn cap(spec: &DispatchSpec, len: usize) -> usize {
    match spec.max_worker_count {
        0 => len,
        n => len.min(usize::try_from(n).unwrap_or(usize::MAX)),
    }
}

/// Selection for a spec with filters: every worker in address order is judged (see the
/// module doc), then the strategy picks among the eligible ones.
#[allow(clippy::too_many_arguments)]
fn scan<R: Rng>(
    app: &str,
    spec: &DispatchSpec,
    req: &Requirements<'_>,
    slots: &[Arc<WorkerSlot>],
    cursor: &RoundRobinCursor,
    state: &mut SelectState<R>,
    now: EpochMs,
    window: i64,
) -> Result<Selection, DispatchError> {
    let mut exclusions = Exclusions {
        registered: slots.len(),
        ..Exclusions::default()
    };
    let eligible = &mut state.eligible;
    eligible.clear();
    for (i, slot) in slots.iter().enumerate() {
        if is_dead(slot, now, window) {
            exclusions.dead += 1;
        } else if !req.designated.is_empty() && !req.designates(slot) {
            exclusions.not_designated += 1;
        } else if slot.overloaded.load(Ordering::Relaxed) {
            exclusions.overloaded += 1;
        } else if req.min_cpu_millicores > 0
            && slot.cpu_free_millicores.load(Ordering::Relaxed) < req.min_cpu_millicores
        {
            exclusions.insufficient_cpu += 1;
        } else if slot.memory_free_bytes.load(Ordering::Relaxed) < req.min_memory_bytes {
            exclusions.insufficient_memory += 1;
        } else if slot.disk_free_bytes.load(Ordering::Relaxed) < req.min_disk_bytes {
            exclusions.insufficient_disk += 1;
        } else {
            eligible.push((i, slot.score.load(Ordering::Relaxed)));
        }
    }
    let no_worker = || DispatchError::NoEligibleWorker {
        app: app.into(),
        exclusions,
    };
    let len = eligible.len();
    if len == 0 {
        return Err(no_worker());
    }
    let pick = match spec.strategy {
        DispatchStrategy::Random => state.rng.gen_range(0..len),
        DispatchStrategy::RoundRobin => {
            // `len` fits in u64 and the remainder is below `len`: both casts are lossless.
            (cursor.next() % len as u64) as usize
        }
        DispatchStrategy::HealthFirst | DispatchStrategy::Specify => best(eligible),
    };
    let address = |i: usize| slots.get(i).map(|s| s.address.clone());
    let Some((tracker_index, _)) = eligible.get(pick).copied() else {
        return Err(no_worker());
    };
    let Some(task_tracker) = address(tracker_index) else {
        return Err(no_worker());
    };
    let workers = match spec.execute_type {
        ExecuteType::Standalone => vec![task_tracker.clone()],
        ExecuteType::Broadcast | ExecuteType::Map | ExecuteType::MapReduce => {
            let cap = cap(spec, len);
            let mut workers = Vec::with_capacity(cap);
            workers.push(task_tracker.clone());
            if cap > 1 {
                // Best first: score descending, address (= slot index) breaking ties.
                eligible.sort_unstable_by_key(|&(i, score)| (Reverse(score), i));
                workers.extend(
                    eligible
                        .iter()
                        .filter(|&&(i, _)| i != tracker_index)
                        .take(cap - 1)
                        .filter_map(|&(i, _)| address(i)),
                );
            }
            workers
        }
    };
    Ok(Selection {
        task_tracker,
        workers,
        eligible: len,
    })
}

/// Position of the best score in `eligible` (address order): the first of equal maxima, so
/// ties go to the smallest address.
fn best(eligible: &[(usize, HealthScore)]) -> usize {
    let mut best = 0;
    let mut best_score = HealthScore::MIN;
    for (pos, &(_, score)) in eligible.iter().enumerate() {
        if score > best_score {
            best = pos;
            best_score = score;
        }
    }
    best
}
