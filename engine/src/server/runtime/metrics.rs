//! Hand-rolled atomic metrics and their Prometheus text exposition (version 0.0.4).

use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use crate::model::InstanceStatus;

/// Every status, in PowerJob code order (index = [`status_index`]).
pub(crate) const STATUSES: [InstanceStatus; 7] = InstanceStatus::ALL;

/// The wire name of a status (`WAITING_DISPATCH`, ...).
pub(crate) fn status_name(s: InstanceStatus) -> &'static str {
    match s {
        InstanceStatus::WaitingDispatch => "WAITING_DISPATCH",
        InstanceStatus::WaitingWorkerReceive => "WAITING_WORKER_RECEIVE",
        InstanceStatus::Running => "RUNNING",
        InstanceStatus::Failed => "FAILED",
        InstanceStatus::Succeed => "SUCCEED",
        InstanceStatus::Canceled => "CANCELED",
        InstanceStatus::Stopped => "STOPPED",
    }
}

/// Index of `s` in [`STATUSES`].
pub(crate) fn status_index(s: InstanceStatus) -> usize {
    STATUSES.iter().position(|x| *x == s).unwrap_or(0)
}

/// A cumulative histogram over fixed bucket bounds (seconds), lock-free.
#[derive(Debug)]
pub(crate) struct Histogram {
    bounds: &'static [f64],
    buckets: Vec<AtomicU64>,
    sum_ns: AtomicU64,
    count: AtomicU64,
}

/// Latency buckets from 50 µs to 10 s, fine around the millisecond (where dispatch and fire
/// lateness live) so that quantiles interpolated from them are meaningful.
pub(crate) const LATENCY_BUCKETS: &[f64] = &[
    0.00005, 0.0001, 0.00025, 0.0005, 0.00075, 0.001, 0.0015, 0.002, 0.003, 0.005, 0.0075, 0.01,
    0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

impl Histogram {
    pub(crate) fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            buckets: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            sum_ns: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    pub(crate) fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        if let Some(i) = self.bounds.iter().position(|b| secs <= *b) {
            if let Some(b) = self.buckets.get(i) {
                b.fetch_add(1, Ordering::Relaxed);
            }
        }
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.sum_ns.fetch_add(ns, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn observe_ms(&self, ms: i64) {
        self.observe(Duration::from_millis(u64::try_from(ms).unwrap_or(0)));
    }

    fn render(&self, name: &str, help: &str, out: &mut String) {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} histogram");
        let mut cumulative = 0u64;
        for (b, n) in self.bounds.iter().zip(&self.buckets) {
            cumulative += n.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {cumulative}");
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let sum = self.sum_ns.load(Ordering::Relaxed) as f64 / 1e9;
        let _ = writeln!(out, "{name}_sum {sum}");
        let _ = writeln!(out, "{name}_count {count}");
    }
}

/// The server core's metrics.
#[derive(Debug)]
pub(crate) struct Metrics {
    /// Instances per non-final status now (gauge; final slots unused).
    pub(crate) gauges: [AtomicI64; 7],
    /// Final statuses acknowledged by the store since start (counter; non-final slots
    /// unused).
    pub(crate) finals: [AtomicU64; 7],
    /// Instance ready (WAITING_DISPATCH) → ScheduleJob handed to the connection.
    pub(crate) dispatch_latency: Histogram,
    /// Scheduled trigger → fire.
    pub(crate) fire_lateness: Histogram,
    /// Store submit → acknowledged, for the core's writes.
    pub(crate) store_commit: Histogram,
    /// Reports dropped (stale, duplicate, foreign, finished, unknown instance).
    pub(crate) reports_dropped: AtomicU64,
    /// Dispatch attempts that found no eligible worker.
    pub(crate) no_worker: AtomicU64,
    /// Messages to a worker that found its connection's queue full and waited for room.
    pub(crate) worker_send_waits: AtomicU64,
    /// ScheduleJobs not sent because the worker's connection backlog was full.
    pub(crate) worker_sends_dropped: AtomicU64,
    /// Writes refused because this server no longer held their partition (a cluster).
    pub(crate) writes_fenced: AtomicU64,
    /// Runs the SKIP overlap policy skipped.
    pub(crate) runs_skipped: AtomicU64,
    /// Scheduled triggers (jobs' and workflows') skipped because a calendar excludes their
    /// date.
    pub(crate) runs_calendar_skipped: AtomicU64,
    /// Runs the QUEUE overlap policy queued.
    pub(crate) runs_queued: AtomicU64,
    /// Running instances the REPLACE overlap policy stopped.
    pub(crate) runs_replaced: AtomicU64,
    /// Store writes that failed.
    pub(crate) store_errors: AtomicU64,
    /// The store failed a write (the health check reports "degraded").
    pub(crate) store_failed: std::sync::atomic::AtomicBool,
    /// Log lines dropped by the per-instance cap.
    pub(crate) log_lines_dropped: AtomicU64,
    /// Alarms raised (written to the outbox or the history).
    pub(crate) alarms_raised: AtomicU64,
    /// Alarms every channel accepted.
    pub(crate) alarms_delivered: AtomicU64,
    /// Alarms given up after their last attempt.
    pub(crate) alarms_failed: AtomicU64,
    /// Alarms in the outbox as the delivery task last saw them from its start (at most one
    /// round's page, 256).
    pub(crate) alarms_pending: AtomicI64,
    /// Finished instances deleted by the age sweep.
    pub(crate) retention_deleted: AtomicU64,
    /// Finished instances deleted because their job kept more than `keep_finished_runs`.
    pub(crate) retention_pruned: AtomicU64,
    /// Rounds of the age sweep completed.
    pub(crate) retention_sweeps: AtomicU64,
    /// Finished workflow instances deleted by the age sweep.
    pub(crate) retention_wf_deleted: AtomicU64,
    /// Finished workflow instances deleted because their workflow kept more than
    /// `keep_finished_workflow_runs`.
    pub(crate) retention_wf_pruned: AtomicU64,
    /// Final report of a workflow node's instance → ScheduleJob of a successor handed to
    /// its connection.
    pub(crate) wf_handoff: Histogram,
    /// Largest handoff so far, ns.
    pub(crate) wf_handoff_max_ns: AtomicU64,
    /// Workflow instances started (runs, fires, nested runs, retries).
    pub(crate) wf_started: AtomicU64,
    /// Workflow instances finished: SUCCEED, FAILED, STOPPED.
    pub(crate) wf_finals: [AtomicU64; 3],
    /// The log store, for its compaction state (unset with the in-memory store). Weak: the
    /// metrics never keep a closed store alive.
    pub(crate) log_store: std::sync::OnceLock<std::sync::Weak<ferrojob_store::LogStore>>,
}

/// Handoff buckets from 10 µs to 1 s: the target is 1 ms at p99.
pub(crate) const HANDOFF_BUCKETS: &[f64] = &[
    0.00001, 0.000025, 0.00005, 0.000075, 0.0001, 0.00015, 0.0002, 0.0003, 0.0004, 0.0005, 0.00075,
    0.001, 0.0015, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];

const WF_FINAL_NAMES: [&str; 3] = ["SUCCEED", "FAILED", "STOPPED"];

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            gauges: Default::default(),
            finals: Default::default(),
            dispatch_latency: Histogram::new(LATENCY_BUCKETS),
            fire_lateness: Histogram::new(LATENCY_BUCKETS),
            store_commit: Histogram::new(LATENCY_BUCKETS),
            reports_dropped: AtomicU64::new(0),
            worker_send_waits: AtomicU64::new(0),
            worker_sends_dropped: AtomicU64::new(0),
            writes_fenced: AtomicU64::new(0),
            no_worker: AtomicU64::new(0),
            runs_skipped: AtomicU64::new(0),
            runs_calendar_skipped: AtomicU64::new(0),
            runs_queued: AtomicU64::new(0),
            runs_replaced: AtomicU64::new(0),
            store_errors: AtomicU64::new(0),
            store_failed: std::sync::atomic::AtomicBool::new(false),
            log_lines_dropped: AtomicU64::new(0),
            alarms_raised: AtomicU64::new(0),
            alarms_delivered: AtomicU64::new(0),
            alarms_failed: AtomicU64::new(0),
            alarms_pending: AtomicI64::new(0),
            retention_deleted: AtomicU64::new(0),
            retention_pruned: AtomicU64::new(0),
            retention_sweeps: AtomicU64::new(0),
            retention_wf_deleted: AtomicU64::new(0),
            retention_wf_pruned: AtomicU64::new(0),
            wf_handoff: Histogram::new(HANDOFF_BUCKETS),
            wf_handoff_max_ns: AtomicU64::new(0),
            wf_started: AtomicU64::new(0),
            wf_finals: Default::default(),
            log_store: std::sync::OnceLock::new(),
        }
    }
}

impl Metrics {
    /// Counts and logs a write the store refused or failed.
    pub(crate) fn store_write_failed(&self, e: &crate::server::RepoError) {
        if matches!(e, crate::server::RepoError::Fenced { .. }) {
            // A server of a cluster that lost a partition: its late writes are refused, as
            // they must be; the store is fine.
            self.writes_fenced.fetch_add(1, Ordering::Relaxed);
            tracing::info!(error = %e, "a write of a partition no longer held was refused");
            return;
        }
        self.store_errors.fetch_add(1, Ordering::Relaxed);
        if matches!(e, crate::server::RepoError::Store(_)) {
            self.store_failed
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
        tracing::error!(error = %e, "store write failed");
    }

    pub(crate) fn count_no_worker(&self) {
        self.no_worker.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one scheduled trigger a calendar excluded.
    pub(crate) fn count_calendar_skip(&self) {
        self.runs_calendar_skipped.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one run handled by an overlap policy (`SKIP`, `QUEUE` or `REPLACE`).
    pub(crate) fn count_overlap(&self, policy: crate::policy::OverlapPolicy) {
        use crate::policy::OverlapPolicy as P;
        let c = match policy {
            P::Skip => &self.runs_skipped,
            P::Queue => &self.runs_queued,
            P::Replace => &self.runs_replaced,
            _ => return,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_report_dropped(&self) {
        self.reports_dropped.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_alarms_raised(&self, n: usize) {
        self.alarms_raised.fetch_add(n as u64, Ordering::Relaxed);
    }

    pub(crate) fn count_wf_started(&self) {
        self.wf_started.fetch_add(1, Ordering::Relaxed);
    }

    /// Records one workflow handoff.
    pub(crate) fn observe_handoff(&self, d: Duration) {
        self.wf_handoff.observe(d);
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.wf_handoff_max_ns.fetch_max(ns, Ordering::Relaxed);
    }

    /// Counts a finished workflow instance.
    pub(crate) fn wf_finished(&self, s: crate::workflow::InstanceStatus) {
        use crate::workflow::InstanceStatus as W;
        let i = match s {
            W::Succeed => 0,
            W::Failed => 1,
            W::Stopped => 2,
            W::Waiting | W::Running => return,
        };
        if let Some(c) = self.wf_finals.get(i) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Accounts for an instance moving from `old` (None: created) to `new`.
    pub(crate) fn transition(&self, old: Option<InstanceStatus>, new: InstanceStatus) {
        if let Some(old) = old {
            if !old.is_final() {
                if let Some(g) = self.gauges.get(status_index(old)) {
                    g.fetch_sub(1, Ordering::Relaxed);
                }
            }
        }
        if !new.is_final() {
            if let Some(g) = self.gauges.get(status_index(new)) {
                g.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// An instance in status `s` the core no longer holds without a transition (its
    /// partition went to another server): it leaves the gauges.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn released(&self, s: InstanceStatus) {
        if !s.is_final() {
            if let Some(g) = self.gauges.get(status_index(s)) {
                g.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }

    /// Counts a final status once its write is acknowledged by the store.
    pub(crate) fn finished(&self, s: InstanceStatus) {
        if let Some(c) = self.finals.get(status_index(s)) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The Prometheus text of these metrics plus the given extra values.
    pub(crate) fn render(&self, connected_workers: usize, protocol_errors: u64) -> String {
        let mut out = String::with_capacity(4096);
        out.push_str("# HELP ferrojob_instances Instances by status: non-final statuses are gauges (now), final ones count transitions durably recorded since start.\n# TYPE ferrojob_instances gauge\n");
        for s in STATUSES {
            let i = status_index(s);
            let v = if s.is_final() {
                self.finals
                    .get(i)
                    .map_or(0, |c| c.load(Ordering::Relaxed) as i64)
            } else {
                self.gauges.get(i).map_or(0, |g| g.load(Ordering::Relaxed))
            };
            let _ = writeln!(
                out,
                "ferrojob_instances{{status=\"{}\"}} {v}",
                status_name(s)
            );
        }
        out.push_str("# HELP ferrojob_instances_finished_total Transitions into a final status durably recorded since start.\n# TYPE ferrojob_instances_finished_total counter\n");
        for s in STATUSES.iter().filter(|s| s.is_final()) {
            let v = self
                .finals
                .get(status_index(*s))
                .map_or(0, |c| c.load(Ordering::Relaxed));
            let _ = writeln!(
                out,
                "ferrojob_instances_finished_total{{status=\"{}\"}} {v}",
                status_name(*s)
            );
        }
        self.dispatch_latency.render(
            "ferrojob_dispatch_latency_seconds",
            "Instance ready to ScheduleJob handed to the worker connection.",
            &mut out,
        );
        self.fire_lateness.render(
            "ferrojob_fire_lateness_seconds",
            "Scheduled trigger time to fire.",
            &mut out,
        );
        self.store_commit.render(
            "ferrojob_store_commit_seconds",
            "Store write submitted to acknowledged.",
            &mut out,
        );
        self.wf_handoff.render(
            "ferrojob_workflow_handoff_seconds",
            "Final report of a workflow node's job instance to the ScheduleJob of a successor handed to its worker connection.",
            &mut out,
        );
        let max = self.wf_handoff_max_ns.load(Ordering::Relaxed) as f64 / 1e9;
        let _ = writeln!(out, "# HELP ferrojob_workflow_handoff_max_seconds Largest workflow handoff since start.\n# TYPE ferrojob_workflow_handoff_max_seconds gauge\nferrojob_workflow_handoff_max_seconds {max}");
        let _ = writeln!(out, "# HELP ferrojob_workflow_instances_started_total Workflow instances started (runs, fires, nested runs, retries).\n# TYPE ferrojob_workflow_instances_started_total counter\nferrojob_workflow_instances_started_total {}", self.wf_started.load(Ordering::Relaxed));
        out.push_str("# HELP ferrojob_workflow_instances_finished_total Workflow instances finished, by status.\n# TYPE ferrojob_workflow_instances_finished_total counter\n");
        for (name, c) in WF_FINAL_NAMES.iter().zip(&self.wf_finals) {
            let _ = writeln!(
                out,
                "ferrojob_workflow_instances_finished_total{{status=\"{name}\"}} {}",
                c.load(Ordering::Relaxed)
            );
        }
        let (compaction_failures, compaction_failing, keys, disk_bytes) = self
            .log_store
            .get()
            .and_then(std::sync::Weak::upgrade)
            .map_or((0, false, 0, 0), |s| {
                (
                    s.compaction_failures(),
                    s.compaction_failing(),
                    s.key_count(),
                    s.disk_bytes(),
                )
            });
        let _ = writeln!(out, "# HELP ferrojob_store_keys Live keys in the log store's index (0 with another store): the store's memory grows with them.\n# TYPE ferrojob_store_keys gauge\nferrojob_store_keys {keys}");
        let _ = writeln!(out, "# HELP ferrojob_store_disk_bytes Bytes in the log store's segments, up to the end of their data (0 with another store).\n# TYPE ferrojob_store_disk_bytes gauge\nferrojob_store_disk_bytes {disk_bytes}");
        let _ = writeln!(out, "# HELP ferrojob_store_compaction_failures_total Store compaction rounds that failed since start (each is retried, waiting 1 s doubling to 5 min).\n# TYPE ferrojob_store_compaction_failures_total counter\nferrojob_store_compaction_failures_total {compaction_failures}");
        let _ = writeln!(out, "# HELP ferrojob_store_compaction_failing 1 while the last store compaction round failed: disk space is not reclaimed until a retry succeeds.\n# TYPE ferrojob_store_compaction_failing gauge\nferrojob_store_compaction_failing {}", u8::from(compaction_failing));
        let _ = writeln!(out, "# HELP ferrojob_connected_workers Worker connections open now.\n# TYPE ferrojob_connected_workers gauge\nferrojob_connected_workers {connected_workers}");
        let _ = writeln!(out, "# HELP ferrojob_protocol_errors_total Transport frames or handshakes refused (bad magic, version, kind, header, size, archive, unexpected message, handshake failure).\n# TYPE ferrojob_protocol_errors_total counter\nferrojob_protocol_errors_total {protocol_errors}");
        for (name, help, v) in [
            (
                "ferrojob_reports_dropped_total",
                "Worker reports dropped (stale, duplicate, foreign, finished, unknown).",
                &self.reports_dropped,
            ),
            (
                "ferrojob_worker_send_waits_total",
                "Messages to a worker (ScheduleJob, StopInstance) that found its connection's queue full and waited in its backlog, in order.",
                &self.worker_send_waits,
            ),
            (
                "ferrojob_worker_sends_dropped_total",
                "ScheduleJobs not sent because the worker's connection and its backlog were full; each is dispatched again at its receive timeout.",
                &self.worker_sends_dropped,
            ),
            (
                "ferrojob_cluster_writes_fenced_total",
                "Writes refused because this server no longer held their partition's lease at the epoch they were made under (a server of a cluster that lost or handed over a partition).",
                &self.writes_fenced,
            ),
            (
                "ferrojob_dispatch_no_worker_total",
                "Dispatch attempts that found no eligible worker.",
                &self.no_worker,
            ),
            (
                "ferrojob_runs_skipped_total",
                "Runs skipped because their job's max_instances were running (overlap policy SKIP).",
                &self.runs_skipped,
            ),
            (
                "ferrojob_runs_calendar_skipped_total",
                "Scheduled triggers of jobs and workflows skipped because a calendar excludes their date.",
                &self.runs_calendar_skipped,
            ),
            (
                "ferrojob_runs_queued_total",
                "Runs queued until a slot of their job's max_instances freed (overlap policy QUEUE).",
                &self.runs_queued,
            ),
            (
                "ferrojob_runs_replaced_total",
                "Running instances stopped to make room for a new run (overlap policy REPLACE).",
                &self.runs_replaced,
            ),
            (
                "ferrojob_store_errors_total",
                "Store writes of the server core that failed.",
                &self.store_errors,
            ),
            (
                "ferrojob_log_lines_dropped_total",
                "Log lines refused by the per-instance cap.",
                &self.log_lines_dropped,
            ),
            (
                "ferrojob_alarms_raised_total",
                "Alarms raised by job alarm rules.",
                &self.alarms_raised,
            ),
            (
                "ferrojob_alarms_delivered_total",
                "Alarms every channel accepted.",
                &self.alarms_delivered,
            ),
            (
                "ferrojob_alarms_failed_total",
                "Alarms given up after their last delivery attempt.",
                &self.alarms_failed,
            ),
            (
                "ferrojob_retention_deleted_total",
                "Finished instances deleted because they were older than the retention period.",
                &self.retention_deleted,
            ),
            (
                "ferrojob_retention_pruned_total",
                "Finished instances deleted because their job kept more than keep_finished_runs.",
                &self.retention_pruned,
            ),
            (
                "ferrojob_retention_sweeps_total",
                "Rounds of the retention sweep completed.",
                &self.retention_sweeps,
            ),
            (
                "ferrojob_retention_workflow_instances_deleted_total",
                "Finished workflow instances deleted, with their node instances and logs, because they were older than the retention period.",
                &self.retention_wf_deleted,
            ),
            (
                "ferrojob_retention_workflow_instances_pruned_total",
                "Finished workflow instances deleted, with their node instances and logs, because their workflow kept more than keep_finished_workflow_runs.",
                &self.retention_wf_pruned,
            ),
        ] {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                v.load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(out, "# HELP ferrojob_alarms_pending Alarms waiting in the outbox for delivery (counted up to 256).\n# TYPE ferrojob_alarms_pending gauge\nferrojob_alarms_pending {}", self.alarms_pending.load(Ordering::Relaxed));
        out
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use ferrojob_store::backend::{Fault, SimBackend};
    use ferrojob_store::{LogOptions, LogStore, Store, WriterMode};

    use super::Metrics;

    #[test]
    fn the_store_compaction_state_is_exported() {
        let metrics = Metrics::default();
        let text = metrics.render(0, 0);
        assert!(
            text.contains("\nferrojob_store_compaction_failures_total 0\n"),
            "{text}"
        );
        assert!(
            text.contains("\nferrojob_store_compaction_failing 0\n"),
            "{text}"
        );

        let disk = SimBackend::new();
        let options = LogOptions {
            writer: WriterMode::Stepped,
            segment_bytes: 4096,
            compaction_min_garbage_bytes: 1,
            ..LogOptions::default()
        };
        let store = Arc::new(LogStore::open_with(Arc::new(disk.clone()), "/s", options).unwrap());
        for round in 0..3u8 {
            for k in 0..200u32 {
                store.put("t", &k.to_be_bytes(), &[round; 40]).unwrap();
            }
        }
        metrics.log_store.set(Arc::downgrade(&store)).unwrap();
        disk.fail(Fault::Rename, 0);
        assert!(store.compact().is_err());
        let text = metrics.render(0, 0);
        assert!(
            text.contains("\nferrojob_store_compaction_failures_total 1\n"),
            "{text}"
        );
        assert!(
            text.contains("\nferrojob_store_compaction_failing 1\n"),
            "{text}"
        );
        store.compact().unwrap();
        let text = metrics.render(0, 0);
        assert!(
            text.contains("\nferrojob_store_compaction_failures_total 1\n"),
            "{text}"
        );
        assert!(
            text.contains("\nferrojob_store_compaction_failing 0\n"),
            "{text}"
        );
    }

    #[test]
    fn the_store_keys_and_disk_bytes_are_exported() {
        let metrics = Metrics::default();
        let text = metrics.render(0, 0);
        assert!(text.contains("\nferrojob_store_keys 0\n"), "{text}");
        assert!(text.contains("\nferrojob_store_disk_bytes 0\n"), "{text}");

        let disk = SimBackend::new();
        let options = LogOptions {
            writer: WriterMode::Stepped,
            ..LogOptions::default()
        };
        let store = Arc::new(LogStore::open_with(Arc::new(disk), "/s", options).unwrap());
        for k in 0..150u32 {
            store.put("a", &k.to_be_bytes(), &[1; 40]).unwrap();
        }
        for k in 0..50u32 {
            store.put("b", &k.to_be_bytes(), &[2; 40]).unwrap();
        }
        store.delete("a", &0u32.to_be_bytes()).unwrap();
        metrics.log_store.set(Arc::downgrade(&store)).unwrap();
        let text = metrics.render(0, 0);
        assert!(text.contains("\nferrojob_store_keys 199\n"), "{text}");
        let disk_bytes = store.disk_bytes();
        assert!(disk_bytes > 200 * 40, "{disk_bytes}");
        assert!(
            text.contains(&format!("\nferrojob_store_disk_bytes {disk_bytes}\n")),
            "{text}"
        );
    }
}
