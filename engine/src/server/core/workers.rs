//! Workers' connections as the core sees them: a connection authenticated or closed, a
//! heartbeat. The connections themselves (sockets, queues) are the runtime's; the core knows
//! each worker by its app and announced address, with the generation of its connection.

use std::sync::Arc;

use crate::dispatch::{WorkerMetrics, WorkerStatus};
use crate::ids::AppId;

use super::{Core, Effect, WorkerKey};

impl Core {
    /// `app`'s worker `addr` authenticated a connection of generation `gen`. A worker back
    /// after a dropped connection, or one the server held instances on before it restarted,
    /// is asked about each of them ([`Effect::Query`]). Returns the generation of the
    /// connection this one replaces (the same worker reconnecting before its old connection
    /// was noticed closed).
    pub(crate) fn worker_connected(&mut self, app: AppId, addr: &str, gen: u64) -> Option<u64> {
        let key: WorkerKey = (app, addr.to_owned());
        let replaced = self.conns.insert(key.clone(), gen);
        let came_back = self.lost.remove(&key).is_some();
        let mut ids = self.reconcile.remove(&key).unwrap_or_default();
        if came_back || replaced.is_some() {
            // Back after a dropped connection, or on a new one while the old one still looks
            // open (half-open: the server's writes to it went nowhere): whatever was in
            // flight on the old one (a ScheduleJob, a StopInstance, a final report) may be
            // lost, so ask about every instance it holds.
            ids.extend(self.dispatched_to(app, addr));
        }
        ids.sort_unstable_by_key(|id| id.0);
        ids.dedup();
        if !ids.is_empty() {
            self.emit(Effect::Query {
                app,
                worker: addr.to_owned(),
                ids,
            });
        }
        replaced
    }

    /// The connection of generation `gen` of `app`'s worker `addr` closed: the worker is
    /// unroutable at once, and dead unless it is back within the liveness window. `false`
    /// when a newer connection of the worker had already replaced it.
    pub(crate) fn worker_disconnected(
        &mut self,
        app_name: &Arc<str>,
        app: AppId,
        addr: &str,
        gen: u64,
    ) -> bool {
        let key: WorkerKey = (app, addr.to_owned());
        if self.conns.get(&key) != Some(&gen) {
            return false;
        }
        self.conns.remove(&key);
        if !self.shutting_down {
            self.registry.remove(app_name, addr);
            self.lost.insert(key, (Arc::clone(app_name), self.live_ms));
            tracing::info!(app = %app_name, worker = %addr, "worker disconnected");
        }
        true
    }

    /// A heartbeat of `app`'s worker (stamped with the liveness time, see `Core::live_ms`).
    pub(crate) fn on_heartbeat(
        &mut self,
        app_name: &str,
        status: &WorkerStatus,
        metrics: WorkerMetrics,
    ) {
        if let Err(e) = self.serves(app_name) {
            tracing::debug!(worker = %status.address, error = %e, "heartbeat of an app not served here dropped");
            return;
        }
        if let Err(e) = self
            .registry
            .heartbeat(app_name, status, metrics, self.live_ms)
        {
            tracing::warn!(worker = %status.address, error = %e, "heartbeat refused");
        }
    }
}
