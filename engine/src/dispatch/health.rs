//! A worker's measurements ([`WorkerMetrics`]) and what dispatch derives from them: the free
//! resources the `min_*` filters compare against and the health score HEALTH_FIRST maximises.
//!
//! # Health score
//!
//! PowerJob's formula (`SystemMetrics.calculateScore`), kept so that operators moving over see
//! the same ranking: memory matters most, then CPU, then disk.
//!
//! ```text
//!   score = 2 × free memory (GiB) + free CPU (cores) + 1 × free disk (GiB)
//!
//!   free memory = memory_max − memory_used        (saturating at 0)
//!   free disk   = disk_total − disk_used          (saturating at 0)
//!   free CPU    = cpu_cores − cpu_load            when the load is known (finite, ≥ 0);
//!                 1 core                          when it is not (PowerJob's rule: a worker
//!                                                 that cannot measure its load claims only
//!                                                 one free core rather than all of them)
//! ```
//!
//! The score is kept as an integer in thousandths of a point ([`HealthScore`]), so comparing
//! two workers is exact and ties are real ties (broken by address, see `select`). Free CPU can
//! be negative (load above the core count): such a worker ranks below an idle one with the
//! same memory and disk.
//!
//! The worker also sends a score it computed itself ([`WorkerMetrics::reported_score`]); the
//! registry ignores it for ranking, so one misconfigured worker cannot claim every instance.

use serde::{Deserialize, Serialize};

/// Bytes in one GiB: the `*_gb` filters and the score count binary gigabytes, as PowerJob does.
pub const GIB: u64 = 1 << 30;

/// A health score in thousandths of a point (see the module doc); higher is healthier.
pub type HealthScore = i64;

/// What a worker measured about itself, as its heartbeat carries it (the same fields as the
/// transport's `SystemMetrics`, so the server copies them one to one).
///
/// Values come from the network: nothing here is trusted. Non-finite or negative loads count
/// as "unknown", used amounts above their maximum count as "nothing free".
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct WorkerMetrics {
    /// Logical CPU cores available to the worker.
    pub cpu_cores: u32,
    /// One-minute load average; negative or non-finite means "unknown".
    pub cpu_load: f64,
    /// Memory in use by the worker process, bytes.
    pub memory_used_bytes: u64,
    /// Memory the worker process may use, bytes.
    pub memory_max_bytes: u64,
    /// Disk in use on the worker's data volume, bytes.
    pub disk_used_bytes: u64,
    /// Size of the worker's data volume, bytes.
    pub disk_total_bytes: u64,
    /// The score the worker computed itself; informational only (see the module doc).
    pub reported_score: i32,
}

/// The registry's view of a heartbeat's measurements (`reported_score` = the worker's own
/// score; the server recomputes the score it uses). Used by both sides: the worker for its
/// informational score, the server for every heartbeat.
impl From<&ferrojob_transport::message::SystemMetrics> for WorkerMetrics {
    fn from(m: &ferrojob_transport::message::SystemMetrics) -> WorkerMetrics {
        WorkerMetrics {
            cpu_cores: m.cpu_cores,
            cpu_load: m.cpu_load,
            memory_used_bytes: m.memory_used_bytes,
            memory_max_bytes: m.memory_max_bytes,
            disk_used_bytes: m.disk_used_bytes,
            disk_total_bytes: m.disk_total_bytes,
            reported_score: m.score,
        }
    }
}

impl WorkerMetrics {
    /// The load if it is a real measurement (finite and ≥ 0), else `None`.
    pub fn known_load(&self) -> Option<f64> {
        (self.cpu_load.is_finite() && self.cpu_load >= 0.0).then_some(self.cpu_load)
    }

    /// Free memory in bytes (`memory_max − memory_used`, at least 0).
    pub fn memory_free_bytes(&self) -> u64 {
        self.memory_max_bytes.saturating_sub(self.memory_used_bytes)
    }

    /// Free disk in bytes (`disk_total − disk_used`, at least 0).
    pub fn disk_free_bytes(&self) -> u64 {
        self.disk_total_bytes.saturating_sub(self.disk_used_bytes)
    }

    /// Free CPU for the `min_cpu_cores` filter, in thousandths of a core:
    /// `cpu_cores − load`, where an unknown load counts as 0 (PowerJob does not filter on CPU
    /// when the load is unknown; we still require the cores to exist). May be negative.
    pub fn cpu_free_millicores(&self) -> i64 {
        let load = self.known_load().unwrap_or(0.0);
        millis(f64::from(self.cpu_cores) - load)
    }

    /// The health score (see the module doc), in thousandths of a point.
    pub fn health_score(&self) -> HealthScore {
        let cpu = match self.known_load() {
            Some(load) => millis(f64::from(self.cpu_cores) - load),
            None => 1000,
        };
        let memory = i128::from(self.memory_free_bytes()) * 2000 / i128::from(GIB);
        let disk = i128::from(self.disk_free_bytes()) * 1000 / i128::from(GIB);
        let total = memory + disk + i128::from(cpu);
        HealthScore::try_from(total).unwrap_or(HealthScore::MAX)
    }
}

/// `x` in thousandths, rounded to nearest; saturating (the `as` cast saturates, NaN gives 0).
fn millis(x: f64) -> i64 {
    (x * 1000.0).round() as i64
}

/// `gb` GiB in bytes, rounded up so that a minimum is never weakened; saturating.
/// The caller has checked that `gb` is finite and ≥ 0.
pub(crate) fn gib_to_bytes(gb: f64) -> u64 {
    (gb * GIB as f64).ceil() as u64
}

/// `cores` in thousandths of a core, rounded up so that a minimum is never weakened.
pub(crate) fn cores_to_millicores(cores: f64) -> i64 {
    (cores * 1000.0).ceil() as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metrics(cores: u32, load: f64, mem_free_gib: u64, disk_free_gib: u64) -> WorkerMetrics {
        WorkerMetrics {
            cpu_cores: cores,
            cpu_load: load,
            memory_used_bytes: GIB,
            memory_max_bytes: GIB * (1 + mem_free_gib),
            disk_used_bytes: 3 * GIB,
            disk_total_bytes: GIB * (3 + disk_free_gib),
            reported_score: 0,
        }
    }

    #[test]
    fn score_is_powerjobs_formula() {
        // 2 × 4 GiB + (8 − 2.5) cores + 10 GiB = 23.5 points.
        assert_eq!(metrics(8, 2.5, 4, 10).health_score(), 23_500);
        // Unknown load: one core.
        assert_eq!(metrics(8, -1.0, 4, 10).health_score(), 19_000);
        assert_eq!(metrics(8, f64::NAN, 4, 10).health_score(), 19_000);
        assert_eq!(metrics(8, f64::INFINITY, 4, 10).health_score(), 19_000);
        // Overloaded CPU counts negative.
        assert_eq!(metrics(2, 5.0, 0, 0).health_score(), -3000);
        // The worker's own score is ignored.
        let mut m = metrics(8, 2.5, 4, 10);
        m.reported_score = i32::MAX;
        assert_eq!(m.health_score(), 23_500);
    }

    #[test]
    fn used_above_max_means_nothing_free() {
        let m = WorkerMetrics {
            cpu_cores: 1,
            cpu_load: 0.0,
            memory_used_bytes: 10,
            memory_max_bytes: 5,
            disk_used_bytes: u64::MAX,
            disk_total_bytes: 0,
            reported_score: 0,
        };
        assert_eq!(m.memory_free_bytes(), 0);
        assert_eq!(m.disk_free_bytes(), 0);
        assert_eq!(m.health_score(), 1000);
    }

    #[test]
    fn extreme_values_saturate() {
        let m = WorkerMetrics {
            cpu_cores: u32::MAX,
            cpu_load: 0.0,
            memory_used_bytes: 0,
            memory_max_bytes: u64::MAX,
            disk_used_bytes: 0,
            disk_total_bytes: u64::MAX,
            reported_score: 0,
        };
        assert!(m.health_score() > 0);
        assert_eq!(metrics(1, -f64::MAX, 0, 0).cpu_free_millicores(), 1000);
    }

    #[test]
    fn conversions_round_minimums_up() {
        assert_eq!(gib_to_bytes(0.0), 0);
        assert_eq!(gib_to_bytes(1.5), GIB + GIB / 2);
        assert_eq!(gib_to_bytes(1e30), u64::MAX);
        assert_eq!(cores_to_millicores(0.0005), 1);
        assert_eq!(cores_to_millicores(2.0), 2000);
    }
}
