//! The simulator's invariants, each checked at the event where it could break, and liveness
//! at the end:
//!
//! - **nothing acknowledged is lost**: after every server restart, every job created and every
//!   run whose creation was acknowledged is in the store, and every final status acknowledged
//!   is still there, unchanged;
//! - **a final status never changes**: each final write acknowledged for an instance carries
//!   the status of the first one;
//! - **one instance per trigger**: no two scheduled instances of a job share a trigger time;
//! - **no instance runs on two live workers at once**: a processor run starts on a worker
//!   while no other connected worker still runs (and was not told to stop) the instance;
//! - **liveness**: once the faults stop, every instance in the store — and every acknowledged
//!   run — reaches a final status before the simulation's end.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::ids::{InstanceId, JobId};
use crate::model::InstanceStatus;
use crate::server::core::Core;
use crate::server::{InstanceFilter, LoadedState, Repo, MAX_PAGE};
use crate::time_expression::EpochMs;
use crate::worker::core::RunId;

/// An invariant that did not hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// Virtual time, ms since the start of the simulation's epoch.
    pub at_ms: EpochMs,
    /// What was seen.
    pub what: String,
}

impl Violation {
    pub(crate) fn new(at_ms: EpochMs, what: String) -> Violation {
        Violation { at_ms, what }
    }
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "at {} ms: {}", self.at_ms, self.what)
    }
}

/// What the checker remembers of the world.
#[derive(Debug, Default)]
pub(super) struct Checker {
    jobs: BTreeSet<JobId>,
    /// Runs whose creation the API client saw acknowledged.
    acked_runs: BTreeSet<InstanceId>,
    /// The final status acknowledged for each instance.
    finals: HashMap<InstanceId, InstanceStatus>,
    /// Processor runs going on, by instance: (worker, run, told to stop).
    running: HashMap<u64, Vec<(usize, RunId, bool)>>,
    /// The instance of each run going on.
    run_of: HashMap<(usize, RunId), u64>,
}

impl Checker {
    pub(super) fn job_created(&mut self, id: JobId) {
        self.jobs.insert(id);
    }

    pub(super) fn run_acknowledged(&mut self, id: InstanceId) {
        self.acked_runs.insert(id);
    }

    pub(super) fn instance_admitted(&mut self, _id: InstanceId) {}

    /// A final write of instance `id` was acknowledged.
    pub(super) fn final_acknowledged(
        &mut self,
        repo: &Repo,
        id: InstanceId,
        now: EpochMs,
        v: &mut Vec<Violation>,
    ) {
        let rec = match repo.get_instance(id) {
            Ok(r) => r,
            Err(e) => {
                v.push(Violation::new(
                    now,
                    format!("{id}: acknowledged final write, but the store cannot read it: {e}"),
                ));
                return;
            }
        };
        if !rec.status.is_final() {
            // A retry of the same instance may already be under way; the final status seen
            // first is what must not change.
            return;
        }
        match self.finals.get(&id) {
            Some(s) if *s != rec.status => v.push(Violation::new(
                now,
                format!("{id}: final status changed from {s:?} to {:?}", rec.status),
            )),
            Some(_) => {}
            None => {
                self.finals.insert(id, rec.status);
            }
        }
    }

    /// The server restarted from its disk: nothing acknowledged may be missing.
    pub(super) fn after_restart(
        &mut self,
        repo: &Repo,
        loaded: &LoadedState,
        now: EpochMs,
        v: &mut Vec<Violation>,
    ) {
        let jobs: BTreeSet<JobId> = loaded.jobs.iter().map(|j| j.job.id).collect();
        for j in &self.jobs {
            if !jobs.contains(j) {
                v.push(Violation::new(
                    now,
                    format!("{j}: created, lost by a restart"),
                ));
            }
        }
        for id in &self.acked_runs {
            if repo.get_instance(*id).is_err() {
                v.push(Violation::new(
                    now,
                    format!("{id}: run acknowledged to the client, lost by a restart"),
                ));
            }
        }
        let mut finals: Vec<(&InstanceId, &InstanceStatus)> = self.finals.iter().collect();
        finals.sort_unstable_by_key(|(id, _)| id.0);
        for (id, s) in finals {
            match repo.get_instance(*id) {
                Ok(r) if r.status == *s => {}
                Ok(r) => v.push(Violation::new(
                    now,
                    format!(
                        "{id}: final {s:?} acknowledged, {:?} after a restart",
                        r.status
                    ),
                )),
                Err(e) => v.push(Violation::new(
                    now,
                    format!("{id}: final {s:?} acknowledged, lost by a restart: {e}"),
                )),
            }
        }
    }

    /// Worker `worker` starts processor run `run` of `instance`. `connected(w)`: worker `w`
    /// is alive and connected.
    pub(super) fn run_started(
        &mut self,
        worker: usize,
        run: RunId,
        instance: u64,
        connected: impl Fn(usize) -> bool,
        now: EpochMs,
        v: &mut Vec<Violation>,
    ) {
        let runs = self.running.entry(instance).or_default();
        for (w, _, stopped) in runs.iter() {
            if *w != worker && !*stopped && connected(*w) {
                v.push(Violation::new(
                    now,
                    format!(
                        "instance {instance} starts on worker {worker} while it runs on connected worker {w}"
                    ),
                ));
            }
        }
        runs.push((worker, run, false));
        self.run_of.insert((worker, run), instance);
    }

    /// A run returned.
    pub(super) fn run_ended(&mut self, worker: usize, run: RunId) {
        let Some(instance) = self.run_of.remove(&(worker, run)) else {
            return;
        };
        if let Some(runs) = self.running.get_mut(&instance) {
            runs.retain(|(w, r, _)| !(*w == worker && *r == run));
            if runs.is_empty() {
                self.running.remove(&instance);
            }
        }
    }

    /// Worker `worker` was told to stop `instance` (its runs are being cancelled).
    pub(super) fn stop_received(&mut self, worker: usize, instance: u64) {
        if let Some(runs) = self.running.get_mut(&instance) {
            for (w, _, stopped) in runs.iter_mut() {
                if *w == worker {
                    *stopped = true;
                }
            }
        }
    }

    /// Worker `worker`'s process died with its runs.
    pub(super) fn worker_crashed(&mut self, worker: usize) {
        let runs: Vec<(usize, RunId)> = self
            .run_of
            .keys()
            .filter(|(w, _)| *w == worker)
            .copied()
            .collect();
        for (w, r) in runs {
            self.run_ended(w, r);
        }
    }

    /// The end: every instance final, acknowledged runs and finals in the store, one scheduled
    /// instance per (job, trigger time). Returns (instances, final ones).
    pub(super) fn at_end(
        &mut self,
        repo: &Repo,
        core: &Core,
        now: EpochMs,
        v: &mut Vec<Violation>,
    ) -> (u64, u64) {
        let mut total = 0u64;
        let mut finished = 0u64;
        let mut fires: BTreeMap<(JobId, EpochMs), InstanceId> = BTreeMap::new();
        let mut not_final = Vec::new();
        let apps: Vec<_> = {
            let mut a: Vec<_> = core.apps.values().map(|a| a.id).collect();
            a.sort_unstable_by_key(|a| a.0);
            a
        };
        for app in apps {
            let mut cursor = None;
            loop {
                let page =
                    match repo.list_instances(app, InstanceFilter::default(), cursor, MAX_PAGE) {
                        Ok(p) => p,
                        Err(e) => {
                            v.push(Violation::new(
                                now,
                                format!("listing instances failed: {e}"),
                            ));
                            break;
                        }
                    };
                for rec in &page.items {
                    total += 1;
                    if rec.status.is_final() {
                        finished += 1;
                    } else if not_final.len() < 5 {
                        not_final.push((rec.id, rec.status));
                    }
                    if let Some(s) = self.finals.get(&rec.id) {
                        if *s != rec.status {
                            v.push(Violation::new(
                                now,
                                format!(
                                    "{}: final {s:?} acknowledged, {:?} at the end",
                                    rec.id, rec.status
                                ),
                            ));
                        }
                    }
                    if rec.run > 0 {
                        if let Some(other) = fires.insert((rec.job_id, rec.trigger_time), rec.id) {
                            v.push(Violation::new(
                                now,
                                format!(
                                    "{} fired twice for trigger {}: {} and {}",
                                    rec.job_id, rec.trigger_time, other, rec.id
                                ),
                            ));
                        }
                    }
                }
                match page.next_cursor {
                    Some(c) => cursor = Some(c),
                    None => break,
                }
            }
        }
        if finished < total {
            v.push(Violation::new(
                now,
                format!(
                    "{} of {total} instances not final after the faults stopped (e.g. {not_final:?})",
                    total - finished
                ),
            ));
        }
        for id in &self.acked_runs {
            match repo.get_instance(*id) {
                Ok(r) if r.status.is_final() => {}
                Ok(r) => v.push(Violation::new(
                    now,
                    format!("{id}: acknowledged run still {:?} at the end", r.status),
                )),
                Err(e) => v.push(Violation::new(
                    now,
                    format!("{id}: acknowledged run missing at the end: {e}"),
                )),
            }
        }
        (total, finished)
    }
}
