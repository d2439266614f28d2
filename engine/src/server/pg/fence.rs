//! Fenced writes: in a cluster, every state write of a partition commits only while this
//! server still holds the partition's lease at the epoch it was made under.
//!
//! A write is a list of row operations; [`Fencing::scope`] names the partitions it touches
//! (through the app of each row: an app's id in the row, or the app of the job or workflow
//! it names) and the epoch each is held at when the write is submitted. A write of a
//! partition not held then is refused at once, unqueued. The writer runs
//! [`lease::fence`](super::lease::fence) for every partition of a batch first in the
//! transaction, and a refused fence fails just the writes of that partition (the rest of the
//! batch is retried without them): no write made under an epoch commits once a newer epoch
//! was granted, whatever the timing of this server (a pause, a slow disk, a partition from
//! the database).
//!
//! Fenced: the scheduling state a partition's owner keeps (jobs, their triggers and
//! versions, instances, delayed runs, workflows, their triggers, versions, instances and
//! node links, alarms). Not fenced: rows any server writes for any app (apps, tokens,
//! secrets, channels, calendars, audit records, idempotency keys, id counters), log lines
//! (a former owner's late log lines add to a run's log, they change no state), and deletes
//! that name only an instance or a workflow instance (retention's deletes of finished runs,
//! which every owner would make alike).
//!
//! # A lost session
//!
//! When a write transaction fails for another reason (the database ended the writer's
//! session, a statement or lock wait ran out of time), the repository's cached state may be
//! ahead of the database. [`Fencing::lose_state`] then makes every epoch this server has held
//! so far *stale*: a write made under one is refused by the writer, however late it reaches
//! it, and no partition is held until the cluster glue has loaded it again under a newer
//! epoch (the membership releases and re-acquires the leases, see `writer.rs`).

use std::collections::BTreeSet;

use dashmap::DashMap;
use parking_lot::RwLock;

use crate::cluster::{partition_of, Epoch, PartitionId, ServerId, PARTITION_COUNT};
use crate::ids::{AppId, JobId, WorkflowId};
use crate::server::RepoError;

use super::tables::{Op, Table, Val};

/// The epochs of each partition, as this server knows them.
#[derive(Clone, Copy, Debug, Default)]
struct Epochs {
    /// Held now: writes are made under it.
    held: Option<Epoch>,
    /// The newest ever held.
    newest: Option<Epoch>,
    /// Writes made under this epoch or an older one are refused (see [`Fencing::lose_state`]).
    stale_through: Option<Epoch>,
}

/// What this server holds, and which app each job and workflow belongs to.
#[derive(Debug)]
pub(super) struct Fencing {
    /// The server whose leases fence the writes.
    server: ServerId,
    /// The limits of the writer's session (from the lease duration).
    session: super::lease::SessionLimits,
    epochs: RwLock<[Epochs; PARTITION_COUNT as usize]>,
    apps: DashMap<AppId, PartitionId>,
    jobs: DashMap<JobId, AppId>,
    workflows: DashMap<WorkflowId, AppId>,
}

fn id_at(vals: &[Val], i: usize) -> Option<u64> {
    match vals.get(i) {
        Some(Val::I64(Some(x))) => u64::try_from(*x).ok(),
        _ => None,
    }
}

/// Whose row an operation changes.
enum Owner {
    App(u64),
    Job(u64),
    Workflow(u64),
    /// Not fenced (see the module docs).
    Nobody,
}

fn owner(op: &Op) -> Owner {
    let (table, vals, put) = match op {
        Op::Put(t, v) => (*t, v, true),
        Op::Delete(t, v) => (*t, v, false),
        Op::DeleteLogsOf(_) => return Owner::Nobody,
    };
    let at = |i| id_at(vals, i);
    let of = |f: fn(u64) -> Owner, i| at(i).map_or(Owner::Nobody, f);
    match table {
        Table::Jobs if put => of(Owner::App, 1),
        Table::Jobs | Table::Triggers | Table::JobVersions => of(Owner::Job, 0),
        Table::Instances | Table::WorkflowInstances if put => of(Owner::App, 1),
        Table::Workflows if put => of(Owner::App, 1),
        Table::Workflows | Table::WorkflowTriggers | Table::WorkflowVersions => {
            of(Owner::Workflow, 0)
        }
        Table::DelayedRuns if put => of(Owner::Job, 1),
        Table::Alarms => of(Owner::App, 0),
        // A node link is written with its instance's row, which names the app.
        Table::NodeLinks
        | Table::Instances
        | Table::WorkflowInstances
        | Table::DelayedRuns
        | Table::Counters
        | Table::Apps
        | Table::Logs
        | Table::Channels
        | Table::ApiTokens
        | Table::AppPreviousSecrets
        | Table::Audit
        | Table::IdempotencyKeys
        | Table::Calendars => Owner::Nobody,
    }
}

impl Fencing {
    pub(super) fn new(server: ServerId, session: super::lease::SessionLimits) -> Fencing {
        Fencing {
            server,
            session,
            epochs: RwLock::new([Epochs::default(); PARTITION_COUNT as usize]),
            apps: DashMap::new(),
            jobs: DashMap::new(),
            workflows: DashMap::new(),
        }
    }

    /// The server whose leases fence the writes.
    pub(super) fn server(&self) -> &ServerId {
        &self.server
    }

    /// The limits of the writer's session.
    pub(super) fn session(&self) -> super::lease::SessionLimits {
        self.session
    }

    /// Writes of `p` are made under `epoch` from now on; refused when `epoch` is stale (a
    /// grant older than a lost session), which the membership never asks for.
    pub(super) fn hold(&self, p: PartitionId, epoch: Epoch) -> bool {
        let mut epochs = self.epochs.write();
        let Some(slot) = epochs.get_mut(p.index()) else {
            return false;
        };
        if slot.stale_through.is_some_and(|s| epoch <= s) {
            return false;
        }
        slot.held = Some(epoch);
        slot.newest = slot.newest.max(Some(epoch));
        true
    }

    pub(super) fn release(&self, p: PartitionId) {
        if let Some(slot) = self.epochs.write().get_mut(p.index()) {
            slot.held = None;
        }
    }

    pub(super) fn held(&self, p: PartitionId) -> Option<Epoch> {
        self.epochs.read().get(p.index()).and_then(|s| s.held)
    }

    /// The writes' session failed mid-transaction (see the module docs): nothing is held
    /// from now on, and every epoch held so far is stale.
    pub(super) fn lose_state(&self) {
        for slot in self.epochs.write().iter_mut() {
            slot.held = None;
            slot.stale_through = slot.stale_through.max(slot.newest);
        }
    }

    /// Whether a write made under `epoch` of `p` must be refused: the epoch was held when
    /// the writes' session failed.
    pub(super) fn is_stale(&self, p: PartitionId, epoch: Epoch) -> bool {
        self.epochs
            .read()
            .get(p.index())
            .and_then(|s| s.stale_through)
            .is_some_and(|s| epoch <= s)
    }

    pub(super) fn learn_app(&self, app: AppId, name: &str) {
        self.apps.insert(app, partition_of(name));
    }

    pub(super) fn learn_job(&self, job: JobId, app: AppId) {
        self.jobs.insert(job, app);
    }

    pub(super) fn learn_workflow(&self, workflow: WorkflowId, app: AppId) {
        self.workflows.insert(workflow, app);
    }

    /// The partition of job `job`'s app, if known.
    pub(super) fn job_partition(&self, job: JobId) -> Option<PartitionId> {
        let app = *self.jobs.get(&job)?;
        self.apps.get(&app).map(|p| *p)
    }

    /// The partition of workflow `workflow`'s app, if known.
    pub(super) fn workflow_partition(&self, workflow: WorkflowId) -> Option<PartitionId> {
        let app = *self.workflows.get(&workflow)?;
        self.apps.get(&app).map(|p| *p)
    }

    /// Learns the apps, jobs and workflows `ops` create.
    fn learn(&self, ops: &[Op]) {
        for op in ops {
            let Op::Put(table, vals) = op else { continue };
            let (Some(id), app) = (id_at(vals, 0), id_at(vals, 1)) else {
                continue;
            };
            match table {
                Table::Apps => {
                    if let Some(Val::Text(Some(name))) = vals.get(1) {
                        self.learn_app(AppId(id), name);
                    }
                }
                Table::Jobs => {
                    if let Some(app) = app {
                        self.learn_job(JobId(id), AppId(app));
                    }
                }
                Table::Workflows => {
                    if let Some(app) = app {
                        self.learn_workflow(WorkflowId(id), AppId(app));
                    }
                }
                _ => {}
            }
        }
    }

    /// The partitions `ops` write, each with the epoch it is held at, in partition order;
    /// refused when one is not held, or when a row's app cannot be told.
    pub(super) fn scope(&self, ops: &[Op]) -> Result<Vec<(PartitionId, Epoch)>, RepoError> {
        self.learn(ops);
        let mut parts = BTreeSet::new();
        for op in ops {
            let app = match owner(op) {
                Owner::Nobody => continue,
                Owner::App(a) => AppId(a),
                Owner::Job(j) => match self.jobs.get(&JobId(j)) {
                    Some(a) => *a,
                    None => return Err(unknown("job", j)),
                },
                Owner::Workflow(w) => match self.workflows.get(&WorkflowId(w)) {
                    Some(a) => *a,
                    None => return Err(unknown("workflow", w)),
                },
            };
            match self.apps.get(&app) {
                Some(p) => parts.insert(*p),
                None => return Err(unknown("app", app.0)),
            };
        }
        let epochs = self.epochs.read();
        parts
            .into_iter()
            .map(|p| match epochs.get(p.index()).and_then(|s| s.held) {
                Some(e) => Ok((p, e)),
                None => Err(RepoError::Fenced {
                    partition: p.get(),
                    epoch: 0,
                }),
            })
            .collect()
    }

    /// Forgets the jobs and workflows `ops` delete (after their write was scoped).
    pub(super) fn forget(&self, ops: &[Op]) {
        for op in ops {
            if let Op::Delete(table, vals) = op {
                match (table, id_at(vals, 0)) {
                    (Table::Jobs, Some(id)) => {
                        self.jobs.remove(&JobId(id));
                    }
                    (Table::Workflows, Some(id)) => {
                        self.workflows.remove(&WorkflowId(id));
                    }
                    _ => {}
                }
            }
        }
    }
}

fn unknown(what: &'static str, id: u64) -> RepoError {
    RepoError::Database(format!(
        "internal: the fence does not know {what} {id}, so it cannot tell the write's partition"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn int(x: u64) -> Val {
        Val::I64(Some(x as i64))
    }

    fn fencing() -> Fencing {
        let f = Fencing::new(
            ServerId::new("a").unwrap(),
            super::super::lease::SessionLimits::for_lease(std::time::Duration::from_secs(10)),
        );
        f.learn_app(AppId(1), "billing");
        f.learn_app(AppId(2), "search");
        f
    }

    #[test]
    fn a_write_is_scoped_to_the_partitions_of_its_apps_at_their_held_epochs() {
        let f = fencing();
        let (pb, ps) = (partition_of("billing"), partition_of("search"));
        assert_ne!(pb, ps, "the test needs two partitions");
        f.hold(pb, Epoch(3));
        // A job created in this write: its trigger row is known by the job row.
        let create = vec![
            Op::Put(Table::Jobs, vec![int(10), int(1)]),
            Op::Put(Table::Triggers, vec![int(10), int(5), int(0)]),
        ];
        assert_eq!(f.scope(&create).unwrap(), vec![(pb, Epoch(3))]);
        // A fire of the job later: a trigger row and an instance row.
        let fire = vec![
            Op::Put(Table::Triggers, vec![int(10), int(6), int(1)]),
            Op::Put(Table::Instances, vec![int(77), int(1), int(10)]),
        ];
        assert_eq!(f.scope(&fire).unwrap(), vec![(pb, Epoch(3))]);
        // Another app's partition is not held: refused before it is queued.
        let other = vec![Op::Put(Table::Instances, vec![int(78), int(2), int(11)])];
        assert!(matches!(
            f.scope(&other),
            Err(RepoError::Fenced { partition, epoch: 0 }) if partition == ps.get()
        ));
        // Logs, tokens and retention's deletes of finished runs are not fenced.
        let free = vec![
            Op::Put(Table::Logs, vec![int(78), int(1)]),
            Op::Delete(Table::Instances, vec![int(78)]),
            Op::DeleteLogsOf(78),
            Op::Put(Table::ApiTokens, vec![int(1), int(2)]),
        ];
        assert_eq!(f.scope(&free).unwrap(), vec![]);
        // Lost: the same fire is refused; held again at a newer epoch: scoped to it.
        f.release(pb);
        assert!(f.scope(&fire).is_err());
        f.hold(pb, Epoch(5));
        assert_eq!(f.scope(&fire).unwrap(), vec![(pb, Epoch(5))]);
    }

    #[test]
    fn a_lost_state_makes_every_epoch_held_so_far_stale() {
        let f = fencing();
        let (pb, ps) = (partition_of("billing"), partition_of("search"));
        assert!(f.hold(pb, Epoch(3)));
        assert!(f.hold(ps, Epoch(4)));
        f.release(ps);
        f.lose_state();
        assert_eq!((f.held(pb), f.held(ps)), (None, None));
        // Held when the session failed, or earlier: stale, and never held again.
        for (p, e) in [(pb, 3), (pb, 2), (ps, 4)] {
            assert!(f.is_stale(p, Epoch(e)), "{p} {e}");
            assert!(!f.hold(p, Epoch(e)), "{p} {e}");
        }
        // A newer grant is not.
        assert!(!f.is_stale(pb, Epoch(4)));
        assert!(f.hold(pb, Epoch(4)));
        assert_eq!(f.held(pb), Some(Epoch(4)));
    }

    #[test]
    fn a_row_whose_app_cannot_be_told_is_refused_and_deleted_jobs_are_forgotten() {
        let f = fencing();
        f.hold(partition_of("billing"), Epoch(1));
        let orphan = vec![Op::Put(Table::Triggers, vec![int(99), int(5), int(0)])];
        assert!(matches!(f.scope(&orphan), Err(RepoError::Database(_))));
        f.learn_job(JobId(99), AppId(1));
        assert!(f.scope(&orphan).is_ok());
        let delete = vec![
            Op::Delete(Table::Jobs, vec![int(99)]),
            Op::Delete(Table::Triggers, vec![int(99)]),
        ];
        assert!(f.scope(&delete).is_ok());
        f.forget(&delete);
        assert!(f.scope(&orphan).is_err());
    }
}
