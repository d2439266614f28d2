//! The simulator's invariants, each checked at the event where it could break, and liveness
//! at the end:
//!
//! - **nothing acknowledged is lost**: after every server restart, every job created and every
//!   run whose creation was acknowledged is in the store, and every final status acknowledged
//!   is still there, unchanged;
//! - **a final status never changes**: each final write acknowledged for an instance carries
//!   the status of the first one;
//! - **one instance per trigger**: no two scheduled instances of a job share a trigger time
//!   (instances deleted by retention included);
//! - **retention deletes only what is done**: an instance chosen for deletion is final;
//! - **no instance runs on two live workers at once**: a processor run starts on a worker
//!   while no other connected worker still runs (and was not told to stop) the instance;
//! - **liveness**: once the faults stop, every instance in the store — and every acknowledged
//!   run — reaches a final status before the simulation's end;
//! - **MAP_REDUCE reduces each task once**: a MAP_REDUCE instance that succeeded has the
//!   result of one reduce over exactly one result per mapped task;
//! - **workflows end with the right result**: every acknowledged workflow run survives
//!   restarts and ends final; it SUCCEEDs exactly when every node did, and each finished
//!   node's job instance (unless deleted by retention) ended as the node did.

use std::collections::{BTreeSet, HashMap, HashSet};

use crate::ids::{InstanceId, JobId, WorkflowInstanceId};
use crate::model::InstanceStatus;
use crate::server::core::Core;
use crate::server::{InstanceFilter, InstanceRecord, LoadedState, Repo, MAX_PAGE};
use crate::time_expression::EpochMs;
use crate::worker::core::RunId;
use crate::workflow::{InstanceStatus as WfStatus, NodeStatus};

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
    /// MAP_REDUCE jobs and the result each successful instance must have.
    mapreduce_jobs: HashMap<JobId, &'static str>,
    /// MAP_REDUCE instances seen succeeded with the right result.
    pub(super) mapreduce_succeeded: u64,
    /// Workflow runs the API client saw acknowledged.
    acked_workflow_runs: BTreeSet<WorkflowInstanceId>,
    /// The final status acknowledged for each instance.
    finals: HashMap<InstanceId, InstanceStatus>,
    /// Processor runs going on, by instance: (worker, run, told to stop).
    running: HashMap<u64, Vec<(usize, RunId, bool)>>,
    /// The instance of each run going on.
    run_of: HashMap<(usize, RunId), u64>,
    /// Instances submitted for deletion by retention, not yet acknowledged.
    deleting: HashSet<InstanceId>,
    /// Instances whose deletion was acknowledged.
    deleted: HashSet<InstanceId>,
    /// The scheduled instance of each (job, trigger time) seen at deletion.
    fires: HashMap<(JobId, EpochMs), InstanceId>,
}

impl Checker {
    pub(super) fn job_created(&mut self, id: JobId) {
        self.jobs.insert(id);
    }

    pub(super) fn run_acknowledged(&mut self, id: InstanceId) {
        self.acked_runs.insert(id);
    }

    pub(super) fn instance_admitted(&mut self, _id: InstanceId) {}

    pub(super) fn mapreduce_job(&mut self, id: JobId, expected: &'static str) {
        self.mapreduce_jobs.insert(id, expected);
    }

    pub(super) fn workflow_run_acknowledged(&mut self, id: WorkflowInstanceId) {
        self.acked_workflow_runs.insert(id);
    }

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

    /// Retention is about to delete `rec`: it must be final, and its trigger must not have
    /// fired another instance.
    pub(super) fn deleting(&mut self, rec: &InstanceRecord, now: EpochMs, v: &mut Vec<Violation>) {
        if !rec.status.is_final() {
            v.push(Violation::new(
                now,
                format!("{}: chosen by retention while {:?}", rec.id, rec.status),
            ));
        }
        self.fire_seen(rec, now, v);
        self.mapreduce_result(rec, now, v);
        self.deleting.insert(rec.id);
    }

    /// Retention's deletion of `id` was acknowledged.
    pub(super) fn deleted(&mut self, id: InstanceId) {
        self.deleting.remove(&id);
        self.finals.remove(&id);
        self.acked_runs.remove(&id);
        self.deleted.insert(id);
    }

    /// Instances deleted by retention so far.
    pub(super) fn deleted_count(&self) -> u64 {
        self.deleted.len() as u64
    }

    /// A MAP_REDUCE instance that succeeded reduced every child's result exactly once.
    fn mapreduce_result(&mut self, rec: &InstanceRecord, now: EpochMs, v: &mut Vec<Violation>) {
        let Some(expected) = self.mapreduce_jobs.get(&rec.job_id) else {
            return;
        };
        if rec.status != InstanceStatus::Succeed {
            return;
        }
        if rec.result.as_deref() == Some(*expected) {
            self.mapreduce_succeeded += 1;
        } else {
            v.push(Violation::new(
                now,
                format!(
                    "{}: MAP_REDUCE succeeded with {:?}, {expected:?} expected",
                    rec.id, rec.result
                ),
            ));
        }
    }

    /// A scheduled instance seen: no other instance may have its (job, trigger time).
    fn fire_seen(&mut self, rec: &InstanceRecord, now: EpochMs, v: &mut Vec<Violation>) {
        if rec.run == 0 {
            return;
        }
        if let Some(other) = self.fires.insert((rec.job_id, rec.trigger_time), rec.id) {
            if other != rec.id {
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
        // A deletion not yet acknowledged may or may not have survived the crash.
        let deleting = std::mem::take(&mut self.deleting);
        for id in &self.acked_runs {
            if repo.get_instance(*id).is_err() && !deleting.contains(id) {
                v.push(Violation::new(
                    now,
                    format!("{id}: run acknowledged to the client, lost by a restart"),
                ));
            }
        }
        for id in &self.acked_workflow_runs {
            if let Err(e) = repo.get_wf_instance(*id) {
                v.push(Violation::new(
                    now,
                    format!("{id}: workflow run acknowledged, lost by a restart: {e}"),
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
                Err(_) if deleting.contains(id) => {}
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
    /// instance per (job, trigger time), nothing deleted back. Returns (instances, final
    /// ones), those deleted by retention included.
    pub(super) fn at_end(
        &mut self,
        repo: &Repo,
        core: &Core,
        now: EpochMs,
        v: &mut Vec<Violation>,
    ) -> (u64, u64) {
        let mut total = 0u64;
        let mut finished = 0u64;
        let mut not_final = Vec::new();
        let mut listed_finals = 0usize;
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
                        listed_finals += 1;
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
                    if self.deleted.contains(&rec.id) {
                        v.push(Violation::new(
                            now,
                            format!("{}: deletion acknowledged, back at the end", rec.id),
                        ));
                    }
                    self.fire_seen(rec, now, v);
                    self.mapreduce_result(rec, now, v);
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
        if listed_finals < self.finals.len() {
            let mut finals: Vec<&InstanceId> = self.finals.keys().collect();
            finals.sort_unstable_by_key(|id| id.0);
            for id in finals {
                if repo.get_instance(*id).is_err() && !self.deleting.contains(id) {
                    v.push(Violation::new(
                        now,
                        format!("{id}: final status acknowledged, missing at the end"),
                    ));
                }
            }
        }
        for id in &self.acked_runs {
            match repo.get_instance(*id) {
                Ok(r) if r.status.is_final() => {}
                Err(_) if self.deleting.contains(id) => {}
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
        for id in &self.acked_workflow_runs {
            self.workflow_result(repo, *id, now, v);
        }
        let deleted = self.deleted_count();
        (total + deleted, finished + deleted)
    }

    /// Workflow run `id` ended, with the result its nodes give.
    fn workflow_result(
        &self,
        repo: &Repo,
        id: WorkflowInstanceId,
        now: EpochMs,
        v: &mut Vec<Violation>,
    ) {
        let snap = match repo
            .get_wf_instance(id)
            .and_then(|r| Ok((r.snapshot()?, r)))
        {
            Ok(x) => x,
            Err(e) => {
                v.push(Violation::new(
                    now,
                    format!("{id}: workflow run acknowledged, unreadable at the end: {e}"),
                ));
                return;
            }
        };
        let (snap, rec) = snap;
        let all_succeeded = snap.nodes.iter().all(|n| n.status == NodeStatus::Succeed);
        let right = match snap.status {
            WfStatus::Succeed => all_succeeded,
            WfStatus::Failed => snap.nodes.iter().any(|n| n.status == NodeStatus::Failed),
            WfStatus::Waiting | WfStatus::Running | WfStatus::Stopped => false,
        };
        if !right {
            v.push(Violation::new(
                now,
                format!(
                    "{id}: workflow run ended {:?} with nodes {:?}",
                    snap.status,
                    snap.nodes.iter().map(|n| n.status).collect::<Vec<_>>()
                ),
            ));
        }
        for node in &snap.nodes {
            let want = match node.status {
                NodeStatus::Succeed => InstanceStatus::Succeed,
                NodeStatus::Failed => InstanceStatus::Failed,
                _ => continue,
            };
            let Some(instance) = rec.run_of(node.id).and_then(|r| r.job_instance()) else {
                v.push(Violation::new(
                    now,
                    format!("{id}: node {} finished without a job instance", node.id),
                ));
                continue;
            };
            match repo.get_instance(instance) {
                Ok(r) if r.status == want => {}
                Ok(r) => v.push(Violation::new(
                    now,
                    format!(
                        "{id}: node {} is {:?}, its job instance {instance} {:?}",
                        node.id, node.status, r.status
                    ),
                )),
                Err(_) if self.deleted.contains(&instance) || self.deleting.contains(&instance) => {
                }
                Err(e) => v.push(Violation::new(
                    now,
                    format!(
                        "{id}: node {}'s job instance {instance} missing: {e}",
                        node.id
                    ),
                )),
            }
        }
    }
}
