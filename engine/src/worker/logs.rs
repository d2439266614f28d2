//! Instance logs: [`InstanceLogger`] (what processors write to) feeding one bounded queue, and
//! the shipper task that sends the queue to the server as `LogBatch`es.
//!
//! ```text
//!  InstanceLogger::info(..) --try_send--> bounded mpsc (log_queue lines) --> shipper task
//!     full? count the line as dropped                  batches of ≤ 512 lines and ≤ 1 MiB
//!     room again? first a WARN "ferrojob: N log lines dropped"         or every 100 ms
//!                                            --> bounded queue of LOG_BATCH_QUEUE batches
//!                                            --> the session's writer, only when no report,
//!                                                heartbeat or answer is waiting
//! ```
//!
//! When the server is slow or away, the batch queue fills, the shipper waits, the line queue
//! fills and lines are dropped (and counted): logs never hold back reports.
//!
//! Invariants: logging never blocks and never allocates more than the queue bound; every line
//! is either queued or counted as dropped (per instance, and in the worker's total); lines of
//! one logger arrive in the order they were logged.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ferrojob_transport::message::{LogBatch, LogEntry, LogLevel};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::epoch_ms;

/// Most lines per `LogBatch`.
pub(crate) const BATCH_LINES: usize = 512;
/// A batch waits at most this long for more lines after its first one.
pub(crate) const BATCH_DELAY: Duration = Duration::from_millis(100);
/// Log batches queued for the server at most (each up to [`BATCH_LINES`] lines).
pub(crate) const LOG_BATCH_QUEUE: usize = 64;
/// Longer lines are truncated to this many bytes (on a character boundary).
pub(crate) const MAX_LINE_BYTES: usize = 16 * 1024;
/// Content bytes per `LogBatch` at most (plus one line): 512 lines of 16 KiB would not fit
/// in one frame, so a batch of long lines is sent as several messages.
pub(crate) const MAX_BATCH_BYTES: usize = 1024 * 1024;

/// Shared counters of the worker's log queue.
#[derive(Debug, Default)]
pub(crate) struct LogStats {
    /// Lines dropped because the queue was full, over the worker's life.
    pub dropped: AtomicU64,
}

/// Writes lines to one instance's log. Cheap to clone; never blocks: when the worker's log
/// queue is full the line is dropped and counted, and a WARN line saying how many were dropped
/// is added to this instance's log as soon as there is room again.
#[derive(Clone)]
pub struct InstanceLogger {
    inner: Arc<LoggerInner>,
}

struct LoggerInner {
    instance_id: u64,
    queue: mpsc::Sender<LogEntry>,
    /// Lines of this instance dropped since the last "dropped" notice.
    dropped: AtomicU64,
    stats: Arc<LogStats>,
}

impl fmt::Debug for InstanceLogger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InstanceLogger")
            .field("instance_id", &self.inner.instance_id)
            .field("dropped", &self.inner.dropped.load(Ordering::Relaxed))
            .finish()
    }
}

impl InstanceLogger {
    pub(crate) fn new(
        instance_id: u64,
        queue: mpsc::Sender<LogEntry>,
        stats: Arc<LogStats>,
    ) -> Self {
        InstanceLogger {
            inner: Arc::new(LoggerInner {
                instance_id,
                queue,
                dropped: AtomicU64::new(0),
                stats,
            }),
        }
    }

    /// Logs a DEBUG line.
    pub fn debug(&self, line: impl Into<String>) {
        self.log(LogLevel::Debug, line.into());
    }

    /// Logs an INFO line.
    pub fn info(&self, line: impl Into<String>) {
        self.log(LogLevel::Info, line.into());
    }

    /// Logs a WARN line.
    pub fn warn(&self, line: impl Into<String>) {
        self.log(LogLevel::Warn, line.into());
    }

    /// Logs an ERROR line.
    pub fn error(&self, line: impl Into<String>) {
        self.log(LogLevel::Error, line.into());
    }

    /// Lines of this instance dropped (queue full) and not yet reported in a WARN line.
    pub fn dropped_pending(&self) -> u64 {
        self.inner.dropped.load(Ordering::Relaxed)
    }

    /// Logs one line at `level`.
    pub fn log(&self, level: LogLevel, mut content: String) {
        truncate_at_char_boundary(&mut content, MAX_LINE_BYTES);
        let inner = &self.inner;
        // Relaxed: the counter is a tally; no other memory is published through it.
        let pending = inner.dropped.swap(0, Ordering::Relaxed);
        if pending > 0 {
            let notice = LogEntry {
                instance_id: inner.instance_id,
                time_ms: epoch_ms(),
                level: LogLevel::Warn,
                content: format!("ferrojob: {pending} log lines dropped (queue full)"),
            };
            if inner.queue.try_send(notice).is_err() {
                // Still no room: keep counting, this line is dropped too.
                inner.dropped.fetch_add(pending + 1, Ordering::Relaxed);
                inner.stats.dropped.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
        let entry = LogEntry {
            instance_id: inner.instance_id,
            time_ms: epoch_ms(),
            level,
            content,
        };
        if inner.queue.try_send(entry).is_err() {
            inner.dropped.fetch_add(1, Ordering::Relaxed);
            inner.stats.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Cuts `s` to at most `max` bytes without splitting a character.
pub(crate) fn truncate_at_char_boundary(s: &mut String, max: usize) {
    if s.len() <= max {
        return;
    }
    let mut cut = max;
    while cut > 0 && !s.is_char_boundary(cut) {
        cut -= 1;
    }
    s.truncate(cut);
}

/// Ships queued lines to the batch queue (`outbound`) until `shutdown` fires, then flushes
/// what is queued and returns.
pub(crate) async fn ship(
    mut lines: mpsc::Receiver<LogEntry>,
    outbound: mpsc::Sender<LogBatch>,
    worker_address: String,
    shutdown: CancellationToken,
) {
    let mut batch: Vec<LogEntry> = Vec::with_capacity(BATCH_LINES);
    loop {
        let first = tokio::select! {
            n = lines.recv_many(&mut batch, BATCH_LINES) => n,
            () = shutdown.cancelled() => 0,
        };
        if first == 0 {
            break;
        }
        // Wait a little for more lines, so that a chatty processor costs one message per
        // 512 lines instead of one per line.
        let deadline = tokio::time::Instant::now() + BATCH_DELAY;
        while batch.len() < BATCH_LINES {
            let room = BATCH_LINES - batch.len();
            tokio::select! {
                n = lines.recv_many(&mut batch, room) => if n == 0 { break },
                () = tokio::time::sleep_until(deadline) => break,
                () = shutdown.cancelled() => break,
            }
        }
        let entries = std::mem::replace(&mut batch, Vec::with_capacity(BATCH_LINES));
        for entries in split_by_bytes(entries, MAX_BATCH_BYTES) {
            let message = LogBatch {
                worker_address: worker_address.clone(),
                entries,
            };
            if outbound.send(message).await.is_err() {
                return;
            }
        }
    }
    // Shutdown: flush what is queued now, without waiting for more.
    lines.close();
    while !lines.is_empty() {
        let mut rest = Vec::with_capacity(BATCH_LINES);
        if lines.recv_many(&mut rest, BATCH_LINES).await == 0 {
            break;
        }
        for entries in split_by_bytes(rest, MAX_BATCH_BYTES) {
            let message = LogBatch {
                worker_address: worker_address.clone(),
                entries,
            };
            if outbound.send(message).await.is_err() {
                return;
            }
        }
    }
}

/// Splits `entries` in order into runs of at most `max` content bytes each (a run holds at
/// least one line, whatever its length).
fn split_by_bytes(entries: Vec<LogEntry>, max: usize) -> Vec<Vec<LogEntry>> {
    let mut out = Vec::new();
    let mut run: Vec<LogEntry> = Vec::new();
    let mut bytes = 0usize;
    for e in entries {
        let n = e.content.len();
        if !run.is_empty() && bytes.saturating_add(n) > max {
            out.push(std::mem::take(&mut run));
            bytes = 0;
        }
        bytes = bytes.saturating_add(n);
        run.push(e);
    }
    if !run.is_empty() {
        out.push(run);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_queue_counts_and_reports_dropped_lines() {
        let (tx, mut rx) = mpsc::channel(2);
        let stats = Arc::new(LogStats::default());
        let log = InstanceLogger::new(7, tx, Arc::clone(&stats));
        log.info("a");
        log.info("b");
        log.info("c"); // dropped
        log.info("d"); // dropped (the notice does not fit either)
        assert_eq!(stats.dropped.load(Ordering::Relaxed), 2);
        assert_eq!(log.dropped_pending(), 2);
        assert_eq!(rx.try_recv().unwrap().content, "a");
        assert_eq!(rx.try_recv().unwrap().content, "b");
        log.info("e");
        let notice = rx.try_recv().unwrap();
        assert_eq!(notice.level, LogLevel::Warn);
        assert_eq!(notice.content, "ferrojob: 2 log lines dropped (queue full)");
        assert_eq!(rx.try_recv().unwrap().content, "e");
        assert_eq!(log.dropped_pending(), 0);
    }

    #[test]
    fn a_batch_of_long_lines_is_split_to_fit_a_frame_in_order() {
        let line = |i: usize, n: usize| LogEntry {
            instance_id: 1,
            time_ms: i as i64,
            level: LogLevel::Info,
            content: "x".repeat(n),
        };
        let entries: Vec<LogEntry> = (0..BATCH_LINES).map(|i| line(i, MAX_LINE_BYTES)).collect();
        let runs = split_by_bytes(entries, MAX_BATCH_BYTES);
        assert_eq!(runs.len(), BATCH_LINES * MAX_LINE_BYTES / MAX_BATCH_BYTES);
        for r in &runs {
            let bytes: usize = r.iter().map(|e| e.content.len()).sum();
            assert!(bytes <= MAX_BATCH_BYTES, "{bytes}");
        }
        let times: Vec<i64> = runs.iter().flatten().map(|e| e.time_ms).collect();
        assert_eq!(times, (0..BATCH_LINES as i64).collect::<Vec<_>>());
        // Short lines stay one batch; an empty batch is no message.
        let short: Vec<LogEntry> = (0..BATCH_LINES).map(|i| line(i, 10)).collect();
        assert_eq!(split_by_bytes(short, MAX_BATCH_BYTES).len(), 1);
        assert!(split_by_bytes(Vec::new(), MAX_BATCH_BYTES).is_empty());
    }

    #[test]
    fn truncation_respects_char_boundaries() {
        let mut s = "aé".repeat(10);
        truncate_at_char_boundary(&mut s, 4);
        assert_eq!(s, "aéa");
    }
}
