//! The worker's health measurements for heartbeats (sysinfo), and the score the server's
//! HEALTH_FIRST dispatch ranks by (`dispatch::health`, PowerJob's formula).
//!
//! Sampling reads `/proc` and calls `statvfs`: blocking work, done in `spawn_blocking` once per
//! heartbeat interval, never on the runtime's worker threads and never per message.

use std::path::{Path, PathBuf};

use ferrojob_transport::message::SystemMetrics;
use sysinfo::{DiskRefreshKind, Disks, System};

use crate::dispatch::WorkerMetrics;

/// Keeps the sysinfo handles between samples so that each sample only refreshes values.
#[derive(Debug)]
pub(crate) struct Sampler {
    system: System,
    disks: Disks,
    dir: PathBuf,
}

impl Sampler {
    /// A sampler for the filesystem holding the current directory.
    pub(crate) fn new() -> Self {
        let dir = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"));
        Sampler {
            system: System::new(),
            disks: Disks::new_with_refreshed_list_specifics(DiskRefreshKind::nothing()),
            dir,
        }
    }

    /// Measures now (blocking: call it from `spawn_blocking`).
    pub(crate) fn sample(&mut self) -> SystemMetrics {
        self.system.refresh_memory();
        self.disks
            .refresh_specifics(false, DiskRefreshKind::nothing().with_storage());
        let cpu_cores = std::thread::available_parallelism()
            .map_or(1, |n| u32::try_from(n.get()).unwrap_or(u32::MAX));
        let load = System::load_average().one;
        let (disk_used, disk_total) = disk_of(&self.disks, &self.dir);
        let total_memory = self.system.total_memory();
        let mut metrics = SystemMetrics {
            cpu_cores,
            cpu_load: if load.is_finite() { load } else { -1.0 },
            memory_used_bytes: self.system.used_memory().min(total_memory),
            memory_max_bytes: total_memory,
            disk_used_bytes: disk_used,
            disk_total_bytes: disk_total,
            score: 0,
        };
        metrics.score = score(&metrics);
        metrics
    }
}

/// PowerJob's health score in whole points (the registry's thousandths divided by 1000,
/// saturated to `i32`). The server recomputes it from the measurements; this is informational.
pub(crate) fn score(m: &SystemMetrics) -> i32 {
    let points = WorkerMetrics::from(m).health_score() / 1000;
    i32::try_from(points).unwrap_or(if points < 0 { i32::MIN } else { i32::MAX })
}

/// `(used, total)` bytes of the mounted filesystem with the longest mount point that is a
/// prefix of `dir`; `(0, 0)` when none is known.
fn disk_of(disks: &Disks, dir: &Path) -> (u64, u64) {
    disks
        .list()
        .iter()
        .filter(|d| dir.starts_with(d.mount_point()))
        .max_by_key(|d| d.mount_point().as_os_str().len())
        .map_or((0, 0), |d| {
            let total = d.total_space();
            (total.saturating_sub(d.available_space()), total)
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dispatch::GIB;

    #[test]
    fn score_is_the_registry_score_in_points() {
        let m = SystemMetrics {
            cpu_cores: 8,
            cpu_load: 2.5,
            memory_used_bytes: GIB,
            memory_max_bytes: 5 * GIB,
            disk_used_bytes: 3 * GIB,
            disk_total_bytes: 13 * GIB,
            score: 0,
        };
        // 2 × 4 GiB + 5.5 cores + 10 GiB = 23.5 points.
        assert_eq!(score(&m), 23);
        let huge = SystemMetrics {
            memory_max_bytes: u64::MAX,
            disk_total_bytes: u64::MAX,
            ..m
        };
        assert_eq!(score(&huge), i32::MAX);
    }

    #[test]
    fn a_sample_is_sane() {
        let m = Sampler::new().sample();
        assert!(m.cpu_cores >= 1);
        assert!(m.memory_used_bytes <= m.memory_max_bytes);
        assert!(m.disk_used_bytes <= m.disk_total_bytes);
        assert_eq!(m.score, score(&m));
    }
}
