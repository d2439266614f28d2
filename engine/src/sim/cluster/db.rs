//! The simulated database of a cluster: the `leases` and `cluster_servers` tables with the
//! database's clock, exactly `server::pg::lease`'s rules, and [`FencedRepo`], each server's
//! view of the one shared store with `server::pg::fence`'s conditional writes.
//!
//! The database's clock is the world's virtual time. A lease command or heartbeat is carried
//! out when it reaches the database; a write is checked and applied the moment the server
//! submits it (the database is one network hop away with no delay: what is simulated is
//! the check, not the latency of the write). The store underneath is one [`LogRepo`] on a
//! simulated disk that never crashes: the database's own durability is not under test here.

use std::collections::HashMap;

use crate::cluster::ownership::{Command, Input};
use crate::cluster::{partition_of, Epoch, PartitionId, ServerId, PARTITION_COUNT};
use crate::ids::{AppId, InstanceId, JobId};
use crate::time_expression::EpochMs;

mod fenced_repo;

pub(super) use fenced_repo::FencedRepo;

/// One row of the `leases` table.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct LeaseRow {
    /// The holder (a server's index), `None` when released or never granted.
    pub(super) owner: Option<usize>,
    /// The epoch of the last grant (0: never granted).
    pub(super) epoch: u64,
    /// When the lease expires by the database's clock, ms.
    pub(super) expires: EpochMs,
}

/// The database: its clock, its tables, and what the checker learns from the writes it took.
#[derive(Debug)]
pub(super) struct Db {
    /// The database's clock, ms (the world's virtual time).
    pub(super) now: EpochMs,
    pub(super) leases: Vec<LeaseRow>,
    /// Per server: when its `cluster_servers` heartbeat expires.
    heartbeats: Vec<Option<EpochMs>>,
    /// Per server: cut from the database (nothing it sends arrives, its writes fail).
    pub(super) cut: Vec<bool>,
    /// Per server and partition: the epoch the server's repository writes under
    /// (`PgRepo::hold_partition` / `release_partition`).
    held: Vec<[Option<Epoch>; PARTITION_COUNT as usize]>,
    /// Refuse writes not made under the current lease (on, except to show that the checker
    /// catches what fencing prevents).
    pub(super) fencing: bool,
    /// The partition of each app, the app of each job.
    apps: HashMap<AppId, PartitionId>,
    jobs: HashMap<JobId, AppId>,
    /// Every scheduled fire the database took: (job, trigger time) → (server, instance).
    fires: HashMap<(JobId, EpochMs), (usize, InstanceId)>,
    /// Per job: the database time of its last fire.
    pub(super) last_fire: HashMap<JobId, EpochMs>,
    /// Writes refused by the fence.
    pub(super) fenced: u64,
    /// Lease grants to a server other than the partition's previous owner.
    pub(super) takeovers: u64,
    /// Invariant violations found at the database: (time, what).
    pub(super) violations: Vec<(EpochMs, String)>,
}

impl Db {
    pub(super) fn new(servers: usize, now: EpochMs, fencing: bool) -> Db {
        Db {
            now,
            leases: vec![LeaseRow::default(); usize::from(PARTITION_COUNT)],
            heartbeats: vec![None; servers],
            cut: vec![false; servers],
            held: vec![[None; PARTITION_COUNT as usize]; servers],
            fencing,
            apps: HashMap::new(),
            jobs: HashMap::new(),
            fires: HashMap::new(),
            last_fire: HashMap::new(),
            fenced: 0,
            takeovers: 0,
            violations: Vec::new(),
        }
    }

    pub(super) fn learn_app(&mut self, app: AppId, name: &str) {
        self.apps.insert(app, partition_of(name));
    }

    pub(super) fn learn_job(&mut self, job: JobId, app: AppId) {
        self.jobs.insert(job, app);
    }

    /// `PgRepo::hold_partition` (`Some`) and `release_partition` (`None`) of server `s`.
    pub(super) fn hold(&mut self, s: usize, p: PartitionId, epoch: Option<Epoch>) {
        if let Some(slot) = self.held.get_mut(s).and_then(|h| h.get_mut(p.index())) {
            *slot = epoch;
        }
    }

    /// Forgets everything server `s` held (its process ended).
    pub(super) fn forget(&mut self, s: usize) {
        if let Some(h) = self.held.get_mut(s) {
            *h = [None; PARTITION_COUNT as usize];
        }
    }

    /// Whether server `s` is the unexpired owner of `p` at `epoch`.
    pub(super) fn owns(&self, s: usize, p: PartitionId, epoch: Epoch) -> bool {
        self.leases.get(p.index()).is_some_and(|row| {
            row.owner == Some(s) && row.epoch == epoch.0 && row.expires > self.now
        })
    }

    /// Carries out lease command `c` of server `s` (ids: every server's id, by index), as
    /// `server::pg::lease` does in SQL; the answer, if any.
    pub(super) fn command(&mut self, s: usize, c: Command, ids: &[ServerId]) -> Option<Input> {
        let now = self.now;
        let ms = |d: std::time::Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        match c {
            Command::TryAcquire {
                request,
                partition,
                lease,
            } => {
                let row = self.leases.get_mut(partition.index())?;
                if row.owner.is_none() || row.expires <= now {
                    if row.owner.is_some_and(|o| o != s) {
                        self.takeovers += 1;
                    }
                    row.owner = Some(s);
                    row.epoch += 1;
                    row.expires = now.saturating_add(ms(lease));
                    Some(Input::Acquired {
                        request,
                        partition,
                        epoch: Epoch(row.epoch),
                    })
                } else {
                    Some(Input::AcquireRefused {
                        request,
                        partition,
                        owner: row.owner.and_then(|o| ids.get(o).cloned()),
                        epoch: Epoch(row.epoch),
                    })
                }
            }
            Command::Renew {
                request,
                partition,
                epoch,
                lease,
            } => {
                let row = self.leases.get_mut(partition.index())?;
                if row.owner == Some(s) && row.epoch == epoch.0 && row.expires > now {
                    row.expires = now.saturating_add(ms(lease));
                    Some(Input::Renewed { request, partition })
                } else {
                    Some(Input::RenewRefused { request, partition })
                }
            }
            Command::Release { partition, epoch } => {
                let row = self.leases.get_mut(partition.index())?;
                if row.owner == Some(s) && row.epoch == epoch.0 {
                    row.owner = None;
                    row.expires = now;
                }
                None
            }
        }
    }

    /// Server `s`'s heartbeat, valid for `ttl_ms`; the live servers as the answer lists them.
    pub(super) fn heartbeat(&mut self, s: usize, ttl_ms: i64, ids: &[ServerId]) -> Vec<ServerId> {
        if let Some(h) = self.heartbeats.get_mut(s) {
            *h = Some(self.now.saturating_add(ttl_ms));
        }
        self.heartbeats
            .iter()
            .zip(ids)
            .filter(|(h, _)| h.is_some_and(|h| h > self.now))
            .map(|(_, id)| id.clone())
            .collect()
    }

    /// Scheduled fires the database took.
    pub(super) fn fire_count(&self) -> u64 {
        self.fires.len() as u64
    }

    fn violation(&mut self, what: String) {
        let now = self.now;
        self.violations.push((now, what));
    }
}
