//! A server of a cluster on PostgreSQL: its membership's verdicts turned into the core's
//! partition inputs and the repository's fences.
//!
//! The membership ([`Member`]) calls [`Partitions::acting`] and [`Partitions::stop`] from its
//! own task, which must never wait for long:
//!
//! - `stop` takes effect before it returns, after waiting (at most `HAND_OVER_WAIT`, 500 ms) for
//!   the partition's dispatches whose write is under way: the repository refuses the partition's writes
//!   (queued ones by their fence), the core drops the partition's apps in one step, and their
//!   workers' connections are closed (they come back to the new owner).
//! - `live_servers` hands the membership view to the core, so that its refusals of workers
//!   and API calls name the preferred owner of the app's partition (the one holding it or
//!   taking it over), by the worker address it announced.
//! - `acting` is handed to one thread that loads partitions, in the order granted, those
//!   granted meanwhile together: it rereads the partitions' rows the former owner left, lets
//!   the repository write under the new epochs, reads the stored state once (outside the
//!   core's lock) and has the core act for each partition (restart recovery, filtered). A
//!   load that fails is tried again every second while a partition is still granted.
//!
//! A partition stopped while its load is still queued or running is not acted for: the
//! thread checks, under the core's lock, that the grant it loads is still the current one.
//!
//! When the repository's writer loses its session mid-transaction, the membership stops every
//! held partition through `stop` and acquires it again (`writer_status`, see
//! `crate::server::pg::member`): the load of each new grant rereads the partition's rows, so
//! that nothing cached before the failure is written.

use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

#[cfg(feature = "http")]
use crate::cluster::ServerId;
use crate::cluster::{partition_of, Epoch, PartitionId, PARTITION_COUNT};
use crate::server::core::partitions::LiveServer;
use crate::server::pg::lease::ServerRow;
#[cfg(feature = "http")]
use crate::server::pg::member::Homes;
use crate::server::pg::member::Partitions;
use crate::server::PgRepo;

use super::driver::Runtime;

/// Grants waiting for the loading thread at most: the membership grants a partition at most
/// once per lease, and a stop in between makes a queued grant a no-op.
const MAX_QUEUED_GRANTS: usize = 4 * PARTITION_COUNT as usize;

/// How long a failed partition load waits before it is tried again.
const RELOAD_AFTER: Duration = Duration::from_secs(1);

/// The current grant of each partition: `Some(epoch)` between `acting` and `stop`.
type Granted = Arc<Mutex<[Option<Epoch>; PARTITION_COUNT as usize]>>;

/// The [`Partitions`] of a server's membership (see the module docs).
pub(crate) struct ClusterGlue {
    runtime: Arc<Runtime>,
    pg: Arc<PgRepo>,
    granted: Granted,
    grants: mpsc::SyncSender<(PartitionId, Epoch)>,
}

impl ClusterGlue {
    /// The glue, with its loading thread (which ends when the glue is dropped).
    pub(crate) fn start(
        runtime: Arc<Runtime>,
        pg: Arc<PgRepo>,
        tokio: tokio::runtime::Handle,
    ) -> std::io::Result<Arc<ClusterGlue>> {
        let granted: Granted = Arc::new(Mutex::new([None; PARTITION_COUNT as usize]));
        let (grants, queue) = mpsc::sync_channel(MAX_QUEUED_GRANTS);
        let loader = Loader {
            runtime: Arc::clone(&runtime),
            pg: Arc::clone(&pg),
            granted: Arc::clone(&granted),
        };
        std::thread::Builder::new()
            .name("ferrojob-partitions".to_owned())
            .spawn(move || {
                let _entered = tokio.enter();
                // Grants queued meanwhile are loaded together.
                while let Ok(first) = queue.recv() {
                    let mut grants = vec![first];
                    grants.extend(queue.try_iter().take(MAX_QUEUED_GRANTS));
                    loader.load(grants);
                }
            })?;
        Ok(Arc::new(ClusterGlue {
            runtime,
            pg,
            granted,
            grants,
        }))
    }
}

impl Partitions for ClusterGlue {
    fn acting(&self, partition: PartitionId, epoch: Epoch) {
        if let Some(slot) = self.granted.lock().get_mut(partition.index()) {
            *slot = Some(epoch);
        }
        if self.grants.try_send((partition, epoch)).is_err() {
            // Cannot happen with the membership's pace; the grant is then not acted for and
            // its lease is renewed for nothing until it is lost.
            tracing::error!(
                partition = partition.get(),
                "too many partition grants queued: this one is not loaded"
            );
        }
    }

    fn stop(&self, partition: PartitionId) {
        // Dispatches whose WAITING_WORKER_RECEIVE write is under way reach their workers
        // first (their writes still commit under the lease: this server stops acting before
        // the database lets the lease go), so the next owner finds them on their workers
        // instead of recorded as handed to a worker that never heard of them. Bounded: a
        // write the database does not acknowledge in time is left to the next owner.
        let until = std::time::Instant::now() + HAND_OVER_WAIT;
        let under_way = || self.runtime.core.lock().hand_overs_under_way(partition);
        if under_way() {
            let wait = || {
                while under_way() && std::time::Instant::now() < until {
                    std::thread::sleep(Duration::from_millis(2));
                }
            };
            // The membership's task runs on the server's multi-threaded runtime: its other
            // tasks (the writes' acknowledgements among them) move off this thread meanwhile.
            crate::server::pg::blocking(wait);
        }
        {
            let mut granted = self.granted.lock();
            if let Some(slot) = granted.get_mut(partition.index()) {
                *slot = None;
            }
            self.pg.release_partition(partition);
        }
        self.runtime
            .step(|core, now| core.on_partition_lost(partition, None, now));
        self.runtime.close_partition_connections(partition);
    }

    fn writer_status(
        &self,
    ) -> Option<tokio::sync::watch::Receiver<crate::server::pg::member::WriterStatus>> {
        Some(self.pg.writer_status())
    }

    fn live_servers(&self, live: &[ServerRow]) {
        let live: Vec<LiveServer> = live
            .iter()
            .map(|s| LiveServer {
                id: s.id.clone(),
                worker_address: s.addresses.first().cloned(),
            })
            .collect();
        self.runtime.step(|core, _| core.set_live_servers(live));
    }
}

/// Longest a stop waits for the partition's dispatches under way (see [`ClusterGlue::stop`]).
const HAND_OVER_WAIT: Duration = Duration::from_millis(500);

/// The loading thread's side.
struct Loader {
    runtime: Arc<Runtime>,
    pg: Arc<PgRepo>,
    granted: Granted,
}

impl Loader {
    fn current(&self, p: PartitionId, epoch: Epoch) -> bool {
        self.granted.lock().get(p.index()).copied().flatten() == Some(epoch)
    }

    /// Loads the partitions of `grants`, until each is loaded or no longer granted.
    fn load(&self, mut grants: Vec<(PartitionId, Epoch)>) {
        loop {
            grants.retain(|(p, epoch)| self.current(*p, *epoch));
            if grants.is_empty() {
                return;
            }
            match self.try_load(&grants) {
                Ok(()) => return,
                Err(e) => {
                    let partitions: Vec<u16> = grants.iter().map(|(p, _)| p.get()).collect();
                    tracing::error!(?partitions, error = %e, "cannot load granted partitions; trying again");
                    std::thread::sleep(RELOAD_AFTER);
                }
            }
        }
    }

    /// One read of the store for all of `grants` (a dead server's share is granted at
    /// once: read one by one, the last would wait for all the others' reads).
    fn try_load(&self, grants: &[(PartitionId, Epoch)]) -> Result<(), crate::server::RepoError> {
        let partitions: Vec<PartitionId> = grants.iter().map(|(p, _)| *p).collect();
        self.pg.prepare_partitions(&partitions)?;
        let held: Vec<(PartitionId, Epoch)> = {
            let granted = self.granted.lock();
            grants
                .iter()
                .copied()
                .filter(|(p, epoch)| granted.get(p.index()).copied().flatten() == Some(*epoch))
                // A grant older than a failure of the writes is not acted for: the
                // membership gives it up and acquires the partition again.
                .filter(|(p, epoch)| self.pg.hold_partition(*p, *epoch))
                .collect()
        };
        if held.is_empty() {
            return Ok(());
        }
        // Read outside the core's lock, so that a large store's load never holds up the
        // core's other steps (nor, through them, the runtime's threads).
        let loaded = self.runtime.repo.load()?;
        let workflows = self.runtime.repo.load_workflows()?;
        self.runtime.step(|core, now| {
            for (p, epoch) in held {
                // Checked under the core's lock: a stop after this waits for the step.
                if self.current(p, epoch) {
                    core.on_partition_loaded(p, epoch, loaded.clone(), workflows.clone(), now);
                }
            }
        });
        Ok(())
    }
}

impl Runtime {
    /// Closes the connections of the workers of partition `p`'s apps (the partition was
    /// lost: they are to find its new owner).
    pub(crate) fn close_partition_connections(&self, p: PartitionId) {
        let apps: Vec<crate::ids::AppId> = {
            let core = self.core.lock();
            core.app_names
                .iter()
                .filter(|(_, name)| partition_of(name) == p)
                .map(|(id, _)| *id)
                .collect()
        };
        if apps.is_empty() {
            return;
        }
        // Each connection's task hears of the close and tells the core, as for any worker.
        let closing: Vec<_> = self
            .conns
            .iter()
            .filter(|e| apps.contains(&e.key().0))
            .map(|e| e.value().handle.clone())
            .collect();
        for h in closing {
            tokio::spawn(async move { h.shutdown().await });
        }
    }
}

/// Where the HTTP API serves each app on a server of a cluster: here when the core acts for
/// the app's partition (granted and loaded), else at the partition's holder as the
/// membership last read it (see `crate::http`'s forwarding).
#[cfg(feature = "http")]
pub(crate) struct AppHomes {
    pub(crate) runtime: Arc<Runtime>,
    pub(crate) homes: Arc<Homes>,
    pub(crate) me: ServerId,
}

#[cfg(feature = "http")]
impl crate::http::AppRouting for AppHomes {
    fn home(&self, app: &str) -> crate::http::AppHome {
        use crate::http::AppHome;
        if self.runtime.core.lock().serves(app).is_ok() {
            return AppHome::Here;
        }
        match self.homes.of(partition_of(app)) {
            // Held here but not loaded yet (or just lost): nobody else acts for it either.
            Some(h) if h.owner == self.me => AppHome::Unknown,
            Some(h) => match h.http_url {
                Some(url) => AppHome::Owner {
                    server: h.owner.to_string(),
                    url,
                },
                None => AppHome::Unknown,
            },
            None => AppHome::Unknown,
        }
    }
}
