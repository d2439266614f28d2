//! A server of a cluster on PostgreSQL: its membership's verdicts turned into the core's
//! partition inputs and the repository's fences.
//!
//! The membership ([`Member`]) calls [`Partitions::acting`] and [`Partitions::stop`] from its
//! own task, which must never wait for long:
//!
//! - `stop` takes effect before it returns: the repository refuses the partition's writes
//!   (queued ones by their fence), the core drops the partition's apps in one step, and their
//!   workers' connections are closed (they come back to the new owner).
//! - `acting` is handed to one thread that loads partitions, in the order granted: it rereads
//!   the partition's rows the former owner left, lets the repository write under the new
//!   epoch, reads the stored state (outside the core's lock) and has the core act for the
//!   partition (restart recovery, filtered). A load that fails is tried again every second
//!   while the partition is still granted.
//!
//! A partition stopped while its load is still queued or running is not acted for: the
//! thread checks, under the core's lock, that the grant it loads is still the current one.

use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use crate::cluster::{partition_of, Epoch, PartitionId, ServerId, PARTITION_COUNT};
use crate::server::pg::member::{Homes, Partitions};
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
                while let Ok((p, epoch)) = queue.recv() {
                    loader.load(p, epoch);
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
}

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

    /// Loads partition `p` granted at `epoch`, until it is loaded or no longer granted.
    fn load(&self, p: PartitionId, epoch: Epoch) {
        while self.current(p, epoch) {
            match self.try_load(p, epoch) {
                Ok(()) => return,
                Err(e) => {
                    tracing::error!(partition = p.get(), %epoch, error = %e, "cannot load a granted partition; trying again");
                    std::thread::sleep(RELOAD_AFTER);
                }
            }
        }
    }

    fn try_load(&self, p: PartitionId, epoch: Epoch) -> Result<(), crate::server::RepoError> {
        self.pg.prepare_partition(p)?;
        {
            let granted = self.granted.lock();
            if granted.get(p.index()).copied().flatten() != Some(epoch) {
                return Ok(());
            }
            self.pg.hold_partition(p, epoch);
        }
        // Read outside the core's lock, so that a large store's load never holds up the
        // core's other steps (nor, through them, the runtime's threads).
        let loaded = self.runtime.repo.load()?;
        let workflows = self.runtime.repo.load_workflows()?;
        self.runtime.step(|core, now| {
            // Checked under the core's lock: a stop after this waits for the step.
            if self.current(p, epoch) {
                core.on_partition_loaded(p, epoch, loaded, workflows, now);
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
