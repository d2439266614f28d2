//! Which apps the core acts for: every app (a single server), or only the apps of the
//! partitions this server of a cluster holds, each with the fencing epoch of its lease.
//!
//! The lease machine ([`crate::cluster::Ownership`]) decides when a partition is held; the
//! core is told through two inputs:
//!
//! - [`Core::on_partition_loaded`]: the partition's apps, jobs, pending delayed runs,
//!   queued and non-final instances, workflows and their unfinished instances are loaded
//!   from the repository through the restart-recovery path (filtered to the partition), their
//!   timers armed, and their running instances reconciled as after a restart: each worker is
//!   asked when it connects, and the retry policy takes those whose worker is not back within
//!   the grace period. Misfires follow each job's policy, as at a restart.
//! - [`Core::on_partition_lost`]: the core stops acting for it in the same step: its jobs,
//!   instances and workflows leave memory without a write (their armed timers then find
//!   nothing and do nothing), its API commands are refused with [`NotOwner`], and reports,
//!   heartbeats and dispatches of its apps are dropped.
//!
//! Every `ScheduleJob` and `StopInstance` carries the epoch of its app's partition (0 for a
//! single server), and workers drop those of an older epoch than one they have seen. When
//! every app is the core's, nothing here is on the dispatch path but one enum match: no app
//! name is hashed per instance. With held partitions, an app's partition is computed once,
//! when the core learns the app.
//!
//! A single server acts for every app. A server of a cluster (`ServerConfig::cluster`) is
//! told by its membership, through the runtime's cluster glue (`runtime/cluster.rs`), which
//! turns [`crate::cluster::Ownership`]'s acting and stopped events into these inputs.

// A cluster shares a PostgreSQL store: built without it, nothing drives the partition inputs.
#![cfg_attr(not(any(test, feature = "postgres")), allow(dead_code))]

use std::collections::{HashMap, HashSet};

use ferrojob_transport::NotServed;
use thiserror::Error;

use crate::api::ApiError;
use crate::cluster::{
    partition_of, preferred_owner, Epoch, PartitionId, ServerId, PARTITION_COUNT,
};
use crate::ids::{AppId, InstanceId};
use crate::server::workflow_repo::{LoadedWorkflow, WfInstanceRecord};
#[cfg(test)]
use crate::server::RepoError;
use crate::server::{AppRecord, LoadedState};
use crate::time_expression::EpochMs;

use super::Core;

/// The apps the core acts for.
#[derive(Debug, Default)]
pub(crate) enum Acting {
    /// Every app: a single server (epoch 0 on every message).
    #[default]
    AllApps,
    /// Only the apps of held partitions: a server of a cluster.
    Partitions(Box<Held>),
}

/// A live server of the cluster, as the membership view lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LiveServer {
    pub(crate) id: ServerId,
    /// Where its workers reach it (`host:port`, the first address it announced), if it
    /// announced one.
    pub(crate) worker_address: Option<String>,
}

/// The partitions a server of a cluster holds, and what it knows of the others.
#[derive(Debug)]
pub(crate) struct Held {
    /// Each partition's epoch while held (by partition number).
    epochs: [Option<Epoch>; PARTITION_COUNT as usize],
    /// The server last known to hold a partition this one does not (for refusals when the
    /// membership view is empty).
    owners: HashMap<PartitionId, ServerId>,
    /// The live servers of the last membership view, sorted by id, without duplicates.
    live: Vec<ServerId>,
    /// Their worker addresses.
    worker_addresses: HashMap<ServerId, String>,
    /// The partition of each app the core knows.
    parts: HashMap<AppId, PartitionId>,
}

impl Held {
    fn new() -> Held {
        Held {
            epochs: [None; PARTITION_COUNT as usize],
            owners: HashMap::new(),
            live: Vec::new(),
            worker_addresses: HashMap::new(),
            parts: HashMap::new(),
        }
    }

    /// The server to name in a refusal for partition `p`: the preferred owner of the last
    /// membership view (the server that holds it or is taking it over: possibly this one,
    /// about to act for it), else the server last known to hold it.
    fn owner(&self, p: PartitionId) -> Option<&ServerId> {
        preferred_owner(p, &self.live).or_else(|| self.owners.get(&p))
    }

    fn epoch(&self, p: PartitionId) -> Option<Epoch> {
        self.epochs.get(p.index()).copied().flatten()
    }

    fn set_epoch(&mut self, p: PartitionId, e: Option<Epoch>) {
        if let Some(slot) = self.epochs.get_mut(p.index()) {
            *slot = e;
        }
    }
}

/// An API command, report or worker of an app whose partition this server does not hold:
/// the caller is to ask [`owner`](NotOwner::owner) (when known) instead.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("app {app} is not served by this server; {}", match .owner {
    Some(o) => format!("server {o} holds it or is taking it over"),
    None => "the server that holds it is not known here".to_owned(),
})]
pub(crate) struct NotOwner {
    /// The app's name.
    pub(crate) app: String,
    /// Its partition (`None`: an app this server does not know).
    pub(crate) partition: Option<PartitionId>,
    /// The server that holds the partition or is taking it over, as far as this server
    /// knows (see [`Core::serves`]).
    pub(crate) owner: Option<ServerId>,
}

impl From<NotOwner> for ApiError {
    fn from(e: NotOwner) -> ApiError {
        ApiError::unavailable(e.to_string())
    }
}

impl Core {
    /// From now on the core acts only for the partitions it is told it acquired (none yet).
    /// Called once, before the first input; `apps` are the apps stored so far, known by name
    /// (so that a refusal can name the app) but not acted for. Arms the core's own periodic
    /// timers (worker liveness, retention), as a restart's recovery does.
    pub(crate) fn start_partitioned(&mut self, apps: Vec<AppRecord>, now: EpochMs) {
        self.acting = Acting::Partitions(Box::new(Held::new()));
        for app in apps {
            self.add_app(app);
        }
        self.arm_periodic(now);
    }

    /// Whether the core acts only for held partitions (a server of a cluster).
    pub(crate) fn is_partitioned(&self) -> bool {
        matches!(self.acting, Acting::Partitions(_))
    }

    /// Notes the partition of an app the core learns (a no-op when it acts for every app).
    pub(crate) fn place_app(&mut self, app: &AppRecord) {
        if let Acting::Partitions(h) = &mut self.acting {
            h.parts.insert(app.id, partition_of(&app.name));
        }
    }

    /// Forgets the partition of a removed app.
    pub(crate) fn unplace_app(&mut self, app: AppId) {
        if let Acting::Partitions(h) = &mut self.acting {
            h.parts.remove(&app);
        }
    }

    /// The epoch `app`'s messages carry: 0 when the core acts for every app, the epoch of the
    /// app's partition when it is held, `None` when the core does not act for the app.
    #[inline]
    pub(crate) fn epoch_of(&self, app: AppId) -> Option<u64> {
        match &self.acting {
            Acting::AllApps => Some(0),
            Acting::Partitions(h) => h.parts.get(&app).and_then(|p| h.epoch(*p)).map(|e| e.0),
        }
    }

    /// Whether the core acts for `app`; the refusal names the app's owner when known.
    pub(crate) fn acting_for(&self, app: AppId) -> Result<(), NotOwner> {
        let Acting::Partitions(h) = &self.acting else {
            return Ok(());
        };
        let name = self.app_names.get(&app);
        let partition = match (h.parts.get(&app), name) {
            (Some(p), _) => *p,
            (None, Some(n)) => partition_of(n),
            // An app the core does not know: whoever serves it, it is not this server.
            (None, None) => {
                return Err(NotOwner {
                    app: format!("{}", app.0),
                    partition: None,
                    owner: None,
                })
            }
        };
        if h.epoch(partition).is_some() {
            return Ok(());
        }
        Err(NotOwner {
            app: name.cloned().unwrap_or_else(|| format!("{}", app.0)),
            partition: Some(partition),
            owner: h.owner(partition).cloned(),
        })
    }

    /// Whether this server takes `app_name`'s workers (the transport's handshake check): a
    /// server acting for every app takes every app's; one of a cluster only those of the
    /// partitions it holds. The refusal names the partition's preferred owner in the last
    /// membership view, by its worker address when it announced one: the server that holds
    /// the partition, or the one that takes it over once its lease is free (this one too,
    /// when it is about to act for it: the worker is to come back shortly).
    pub(crate) fn serves(&self, app_name: &str) -> Result<(), NotServed> {
        let Acting::Partitions(h) = &self.acting else {
            return Ok(());
        };
        let p = partition_of(app_name);
        if h.epoch(p).is_some() {
            return Ok(());
        }
        Err(match h.owner(p) {
            Some(o) => NotServed::OwnedBy(
                h.worker_addresses
                    .get(o)
                    .cloned()
                    .unwrap_or_else(|| o.to_string()),
            ),
            None => NotServed::OwnerUnknown,
        })
    }

    /// The live servers of the cluster as the membership's last view lists them (refusals
    /// name the preferred owner among them). Ignored when the core acts for every app.
    pub(crate) fn set_live_servers(&mut self, live: Vec<LiveServer>) {
        let Acting::Partitions(h) = &mut self.acting else {
            return;
        };
        let mut ids: Vec<ServerId> = live.iter().map(|s| s.id.clone()).collect();
        ids.sort_unstable();
        ids.dedup();
        ids.truncate(crate::cluster::MAX_SERVERS);
        h.worker_addresses = live
            .into_iter()
            .filter(|s| ids.binary_search(&s.id).is_ok())
            .filter_map(|s| Some((s.id, s.worker_address?)))
            .collect();
        h.live = ids;
    }

    /// The partitions held, with their epochs, in partition order (empty when the core acts
    /// for every app).
    #[cfg(test)]
    pub(crate) fn held_partitions(&self) -> Vec<(PartitionId, Epoch)> {
        match &self.acting {
            Acting::AllApps => Vec::new(),
            Acting::Partitions(h) => PartitionId::all()
                .filter_map(|p| h.epoch(p).map(|e| (p, e)))
                .collect(),
        }
    }

    /// [`on_partition_loaded`](Self::on_partition_loaded) with the state read here, in the
    /// step (the tests' way; the runtime reads it outside the core's lock).
    #[cfg(test)]
    pub(crate) fn on_partition_acquired(
        &mut self,
        p: PartitionId,
        epoch: Epoch,
        now: EpochMs,
    ) -> Result<(), RepoError> {
        let loaded = self.repo.load()?;
        let workflows = self.repo.load_workflows()?;
        self.on_partition_loaded(p, epoch, loaded, workflows, now);
        Ok(())
    }

    /// Partition `p` was acquired at `epoch`: from this step on the core acts for its apps,
    /// whose state is `loaded` and `workflows`, the whole store as read by the caller
    /// (outside the core's lock, once the repository holds the partition's fence, so nothing
    /// of the partition changes meanwhile); see the module docs. A partition held already (at
    /// an older epoch: the lease was lost and taken again) is dropped and loaded afresh.
    /// Ignored when the core acts for every app.
    pub(crate) fn on_partition_loaded(
        &mut self,
        p: PartitionId,
        epoch: Epoch,
        loaded: LoadedState,
        (workflows, wf_active): (Vec<LoadedWorkflow>, Vec<WfInstanceRecord>),
        now: EpochMs,
    ) {
        let Acting::Partitions(h) = &self.acting else {
            tracing::warn!(
                partition = p.get(),
                "partition acquired by a server acting for every app: ignored"
            );
            return;
        };
        if h.epoch(p).is_some() {
            self.drop_partition(p);
        }
        let loaded = only_partition(loaded, p);
        let apps: HashSet<AppId> = loaded.apps.iter().map(|a| a.id).collect();
        let workflows: Vec<_> = workflows
            .into_iter()
            .filter(|w| apps.contains(&w.record.app_id))
            .collect();
        let wf_active: Vec<_> = wf_active
            .into_iter()
            .filter(|w| apps.contains(&w.app_id))
            .collect();
        if let Acting::Partitions(h) = &mut self.acting {
            h.set_epoch(p, Some(epoch));
            h.owners.remove(&p);
        }
        // Timers of an earlier holding still in the wheel carry older generations.
        self.loads = self.loads.saturating_add(1);
        tracing::info!(
            partition = p.get(),
            %epoch,
            apps = loaded.apps.len(),
            jobs = loaded.jobs.len(),
            instances = loaded.active.len(),
            "partition acquired: acting for its apps"
        );
        if !loaded.apps.is_empty() {
            self.restarted = true;
        }
        let wf_recovery = self.recover_workflows(&loaded, workflows, wf_active, now);
        self.recover_apps(loaded, now);
        self.resume_workflows(wf_recovery, now);
    }

    /// Partition `p` was lost or released (`owner`: the server that holds it now, when
    /// known): the core stops acting for its apps in this step, without writing anything
    /// (see the module docs). Ignored when the core acts for every app.
    pub(crate) fn on_partition_lost(
        &mut self,
        p: PartitionId,
        owner: Option<ServerId>,
        _now: EpochMs,
    ) {
        let Acting::Partitions(h) = &mut self.acting else {
            tracing::warn!(
                partition = p.get(),
                "partition lost by a server acting for every app: ignored"
            );
            return;
        };
        let was = h.epoch(p);
        h.set_epoch(p, None);
        match owner {
            Some(o) => {
                h.owners.insert(p, o);
            }
            None => {
                h.owners.remove(&p);
            }
        }
        if let Some(epoch) = was {
            tracing::info!(partition = p.get(), %epoch, "partition lost: stopped acting for its apps");
            self.drop_partition(p);
        }
    }

    /// Whether an instance of partition `p`'s apps has its WAITING_WORKER_RECEIVE write under
    /// way: a dispatch's, or the creation of a run created already dispatched (an API run, a
    /// fire or a workflow node that found its worker at once). Such an instance is recorded as handed to a worker, but its `ScheduleJob` goes
    /// out only once the write is acknowledged: a server that stops acting for `p` before
    /// then leaves it recorded as dispatched to a worker that never heard of it, and the next
    /// owner's reconciliation can only hand it to the retry policy. A graceful stop waits
    /// for these first (`runtime::cluster`).
    pub(crate) fn hand_overs_under_way(&self, p: PartitionId) -> bool {
        let Acting::Partitions(h) = &self.acting else {
            return false;
        };
        // Runs created already dispatched: the same, from their creation's write on.
        let creating = self
            .creating_dispatched
            .keys()
            .any(|app| h.parts.get(app) == Some(&p));
        creating
            || self.handing_over.iter().any(|id| {
                self.active
                    .get(id)
                    .is_some_and(|st| h.parts.get(&st.rec.app_id) == Some(&p))
            })
    }

    /// Drops from memory everything of partition `p`'s apps (nothing is written).
    fn drop_partition(&mut self, p: PartitionId) {
        let Acting::Partitions(h) = &self.acting else {
            return;
        };
        let apps: HashSet<AppId> = h
            .parts
            .iter()
            .filter(|(_, q)| **q == p)
            .map(|(a, _)| *a)
            .collect();
        if apps.is_empty() {
            return;
        }
        let jobs: Vec<_> = self
            .jobs
            .values()
            .filter(|j| apps.contains(&j.def.record.app_id))
            .map(|j| j.id)
            .collect();
        for id in jobs {
            self.jobs.remove(&id);
            self.alarm_books.remove(&id);
        }
        let insts: Vec<InstanceId> = self
            .active
            .values()
            .filter(|st| apps.contains(&st.rec.app_id))
            .map(|st| st.rec.id)
            .collect();
        for id in insts {
            if let Some(st) = self.active.remove(&id) {
                self.metrics.released(st.rec.status);
            }
            self.handing_over.remove(&id);
            self.node_runs.remove(&id);
            self.backfill_created.remove(&id);
        }
        self.workflows.retain(|_, w| !apps.contains(&w.app));
        let wf_insts: HashSet<_> = self
            .wf_active
            .iter()
            .filter(|(_, w)| apps.contains(&w.rec.app_id))
            .map(|(id, _)| *id)
            .collect();
        self.wf_active.retain(|id, _| !wf_insts.contains(id));
        self.node_runs
            .retain(|_, n| !wf_insts.contains(&n.wf_instance));
        self.reconcile.retain(|(a, _), _| !apps.contains(a));
        self.lost.retain(|(a, _), _| !apps.contains(a));
        self.calendars.retain(|a, _| !apps.contains(a));
    }
}

/// `loaded` cut to the apps of partition `p` and their jobs, delayed runs and instances.
fn only_partition(loaded: LoadedState, p: PartitionId) -> LoadedState {
    let LoadedState {
        apps,
        jobs,
        delayed,
        active,
    } = loaded;
    let apps: Vec<AppRecord> = apps
        .into_iter()
        .filter(|a| partition_of(&a.name) == p)
        .collect();
    let ids: HashSet<AppId> = apps.iter().map(|a| a.id).collect();
    let active: Vec<_> = active
        .into_iter()
        .filter(|r| ids.contains(&r.app_id))
        .collect();
    let held: HashSet<InstanceId> = active.iter().map(|r| r.id).collect();
    LoadedState {
        apps,
        jobs: jobs
            .into_iter()
            .filter(|j| ids.contains(&j.job.app_id))
            .collect(),
        delayed: delayed
            .into_iter()
            .filter(|d| held.contains(&d.instance_id))
            .collect(),
        active,
    }
}
