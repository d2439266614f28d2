//! The worker listing over the server's registry: each connected worker of an app with its
//! tags, health score and last reported metrics (bytes shown as GiB).

use crate::api::{ApiError, AppRef, WorkerInfo, WorkerList};
use crate::dispatch::GIB;

use super::api::NodeApi;

impl NodeApi {
    pub(super) async fn workers_of(&self, app: AppRef) -> Result<WorkerList, ApiError> {
        let gb = |b: u64| b as f64 / GIB as f64;
        let workers = self
            .0
            .registry
            .workers(&app.name)
            .into_iter()
            .map(|w| WorkerInfo {
                address: w.address.to_string(),
                tags: w.tags.iter().map(|t| t.to_string()).collect(),
                version: w.version.clone(),
                health_score: w.health_score as f64 / 1000.0,
                cpu_cores: f64::from(w.metrics.cpu_cores),
                cpu_load: w.metrics.known_load(),
                memory_used_gb: gb(w.metrics.memory_used_bytes),
                memory_total_gb: gb(w.metrics.memory_max_bytes),
                disk_used_gb: gb(w.metrics.disk_used_bytes),
                disk_total_gb: gb(w.metrics.disk_total_bytes),
                overloaded: w.overloaded,
                last_heartbeat: w.last_heartbeat_ms,
            })
            .collect();
        Ok(WorkerList { workers })
    }
}
