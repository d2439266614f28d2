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
//! - **no trigger is missed**: between two consecutive scheduled instances of a FIXED_RATE
//!   job (and from its first trigger, and up to the end of its lifecycle) no trigger time is
//!   skipped unless the server was down or its clock jumped over it then, where the misfire
//!   policy (FIRE_ONCE) folds the missed triggers into one run;
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

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use crate::ids::{InstanceId, JobId, WorkflowInstanceId};
use crate::model::InstanceStatus;
use crate::server::core::Core;
use crate::server::{InstanceFilter, InstanceRecord, LoadedState, Repo, MAX_PAGE};
use crate::time_expression::EpochMs;
use crate::worker::core::RunId;
use crate::workflow::{InstanceStatus as WfStatus, NodeStatus};

use super::id_set::IdSet;

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
    /// Instances whose deletion was acknowledged (a bitmap: every deleted instance of the run).
    deleted: IdSet,
    /// The scheduled instance of each (job, trigger time) seen at deletion.
    fires: HashMap<(JobId, EpochMs), InstanceId>,
    /// FIXED_RATE jobs: (first trigger, period, end of lifecycle), server time.
    fixed_rate: BTreeMap<JobId, (EpochMs, EpochMs, EpochMs)>,
    /// Server-time spans in which triggers may be folded: the server down, clock jumps.
    outages: Vec<(EpochMs, EpochMs)>,
    /// Server time at which the server went down, while it is.
    down_since: Option<EpochMs>,
}

impl Checker {
    pub(super) fn job_created(&mut self, id: JobId) {
        self.jobs.insert(id);
    }

    /// FIXED_RATE job `id` first fires at `first`, every `period` ms, until `end` (server
    /// time).
    pub(super) fn fixed_rate_job(
        &mut self,
        id: JobId,
        first: EpochMs,
        period: EpochMs,
        end: EpochMs,
    ) {
        self.fixed_rate.insert(id, (first, period, end));
    }

    /// The server went down at server time `at`.
    pub(super) fn server_down(&mut self, at: EpochMs) {
        self.down_since.get_or_insert(at);
    }

    /// The server is up again at server time `at`.
    pub(super) fn server_up(&mut self, at: EpochMs) {
        if let Some(since) = self.down_since.take() {
            self.outages.push((since, at));
        }
    }

    /// The server's clock jumped from `from` to `to`.
    pub(super) fn clock_jumped(&mut self, from: EpochMs, to: EpochMs) {
        self.outages.push((from.min(to), from.max(to)));
    }

    /// Whether an outage overlaps the open span (`a`, `b`).
    fn outage_within(&self, a: EpochMs, b: EpochMs) -> bool {
        self.outages.iter().any(|&(s, e)| s < b && e > a)
    }

    /// No trigger of a FIXED_RATE job skipped outside an outage (see the module docs);
    /// `server_now` is the server's clock at the end.
    fn missed_triggers(&self, server_now: EpochMs, v: &mut Vec<Violation>, now: EpochMs) {
        let mut by_job: HashMap<JobId, Vec<EpochMs>> = HashMap::new();
        for (job, t) in self.fires.keys() {
            if self.fixed_rate.contains_key(job) {
                by_job.entry(*job).or_default().push(*t);
            }
        }
        for (job, &(first, period, end)) in &self.fixed_rate {
            let mut times = by_job.remove(job).unwrap_or_default();
            times.sort_unstable();
            // The span before the first run counts from one period before the first trigger.
            let mut prev = first - period;
            let mut missed = None;
            for t in times {
                if t - prev > period && !self.outage_within(prev, t) {
                    missed = Some((prev, t));
                    break;
                }
                prev = prev.max(t);
            }
            // After the last run, up to the end of the lifecycle once the clock is past it.
            if missed.is_none()
                && server_now >= end
                && end - prev >= period
                && !self.outage_within(prev, end + 1)
            {
                missed = Some((prev, end));
            }
            if let Some((a, b)) = missed {
                v.push(Violation::new(
                    now,
                    format!(
                        "{job}: a trigger between {a} and {b} (every {period} ms) has no run, and the server was up"
                    ),
                ));
            }
        }
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
        self.deleted.len()
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
        // A deletion not yet acknowledged may or may not have survived the crash: gone now,
        // it was durable and counts as acknowledged from here on; still there, retention
        // chooses it again.
        let deleting = std::mem::take(&mut self.deleting);
        let mut gone: Vec<InstanceId> = deleting
            .iter()
            .copied()
            .filter(|id| repo.get_instance(*id).is_err())
            .collect();
        gone.sort_unstable_by_key(|id| id.0);
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
        for id in gone {
            self.deleted(id);
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
        server_now: EpochMs,
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
        self.missed_triggers(server_now, v, now);
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use ferrojob_store::MemoryStore;

    use super::*;

    fn checker_with_fires(times: &[EpochMs]) -> Checker {
        let mut c = Checker::default();
        c.fixed_rate_job(JobId(1), 1_000, 1_000, 10_000);
        for (k, t) in times.iter().enumerate() {
            let id = InstanceId(u64::try_from(k).unwrap() + 1);
            c.fires.insert((JobId(1), *t), id);
        }
        c
    }

    fn missed(c: &Checker, server_now: EpochMs) -> Vec<Violation> {
        let mut v = Vec::new();
        c.missed_triggers(server_now, &mut v, 0);
        v
    }

    #[test]
    fn a_deletion_that_a_crash_made_durable_is_not_lost_at_the_next_restart() {
        let repo = Repo::open(Arc::new(MemoryStore::new())).unwrap();
        let loaded = repo.load().unwrap();
        let mut c = Checker::default();
        let id = InstanceId(5);
        c.run_acknowledged(id);
        c.finals.insert(id, InstanceStatus::Succeed);
        c.deleting.insert(id);
        // The crash came before the deletion's acknowledgement, after it was durable.
        let mut v = Vec::new();
        c.after_restart(&repo, &loaded, 0, &mut v);
        assert!(v.is_empty(), "{v:?}");
        c.after_restart(&repo, &loaded, 1, &mut v);
        assert!(v.is_empty(), "{v:?}");
        assert!(c.deleted.contains(&id));
    }

    #[test]
    fn every_trigger_run_is_complete() {
        let all: Vec<EpochMs> = (1..=10).map(|k| k * 1_000).collect();
        assert!(missed(&checker_with_fires(&all), 20_000).is_empty());
    }

    #[test]
    fn a_skipped_trigger_while_the_server_was_up_is_a_violation() {
        let gap: Vec<EpochMs> = [1, 2, 3, 5, 6, 7, 8, 9, 10]
            .iter()
            .map(|k| k * 1_000)
            .collect();
        let v = missed(&checker_with_fires(&gap), 20_000);
        assert_eq!(v.len(), 1, "{v:?}");
        assert!(v[0].what.contains("between 3000 and 5000"), "{v:?}");
    }

    #[test]
    fn triggers_folded_across_a_crash_or_a_clock_jump_are_allowed() {
        let gap: Vec<EpochMs> = [1, 2, 3, 6, 7, 8, 9, 10]
            .iter()
            .map(|k| k * 1_000)
            .collect();
        let mut c = checker_with_fires(&gap);
        c.server_down(3_500);
        c.server_up(5_800);
        assert!(missed(&c, 20_000).is_empty());
        let mut c = checker_with_fires(&gap);
        c.clock_jumped(3_200, 5_900);
        assert!(missed(&c, 20_000).is_empty());
    }

    #[test]
    fn a_job_that_stops_firing_before_its_end_is_a_violation() {
        let early: Vec<EpochMs> = (1..=6).map(|k| k * 1_000).collect();
        assert_eq!(missed(&checker_with_fires(&early), 20_000).len(), 1);
        // Before the end of its lifecycle, the tail is not judged yet.
        assert!(missed(&checker_with_fires(&early), 6_500).is_empty());
        let late_start: Vec<EpochMs> = (3..=10).map(|k| k * 1_000).collect();
        assert_eq!(missed(&checker_with_fires(&late_start), 20_000).len(), 1);
    }
}
