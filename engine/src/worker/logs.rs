//! Instance logs: [`InstanceLogger`] (what processors write to) feeding one bounded queue, and
//! the shipper task that sends the queue to the server as `LogBatch`es.
//!
//! Each logger carries its job's log settings: lines below the job's level are dropped before
//! anything is built or queued; the log type picks the output — ONLINE the queue below, LOCAL
//! and STDOUT the worker's local writer (`local_log.rs`), NULL nothing. Every line carries the
//! instance's dispatch attempt and the processor's structured fields (bounded in count and size).
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

use ferrojob_transport::message::{LogBatch, LogConfig, LogEntry, LogField, LogLevel, LogType};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::epoch_ms;
use super::local_log::{LocalWriter, Output};

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

pub use crate::model::{MAX_LOG_FIELDS, MAX_LOG_FIELD_KEY_BYTES, MAX_LOG_FIELD_VALUE_BYTES};

/// Shared counters of the worker's log queue.
#[derive(Debug, Default)]
pub(crate) struct LogStats {
    /// Lines dropped because the queue was full, over the worker's life.
    pub dropped: AtomicU64,
}

/// Where one instance's lines go, from its job's log type.
#[derive(Clone, Debug)]
enum Sink {
    /// ONLINE: the shipper, then the server.
    Online(mpsc::Sender<LogEntry>),
    /// LOCAL or STDOUT: the worker's local writer thread.
    Local(LocalWriter, Output),
    /// NULL: nowhere.
    Null,
}

/// The worker's log outputs an [`InstanceLogger`] picks from.
#[derive(Clone, Debug)]
pub(crate) struct LogOutputs {
    /// The shipper's line queue (ONLINE).
    pub online: mpsc::Sender<LogEntry>,
    /// The local writer (LOCAL, STDOUT).
    pub local: LocalWriter,
}

/// The rank of a level: lines ranked below a job's level are dropped at the source.
pub(crate) fn level_rank(l: &LogLevel) -> u8 {
    match l {
        LogLevel::Debug => 0,
        LogLevel::Info => 1,
        LogLevel::Warn => 2,
        LogLevel::Error => 3,
    }
}

/// Writes lines to one instance's log. Cheap to clone; never blocks: lines below the job's
/// level are dropped at once, and when the worker's queue is full the line is dropped and
/// counted, and a WARN line saying how many were dropped is added to this instance's log as
/// soon as there is room again.
#[derive(Clone)]
pub struct InstanceLogger {
    inner: Arc<LoggerInner>,
}

struct LoggerInner {
    instance_id: u64,
    /// The dispatch attempt stamped on every line (see `LogEntry::attempt`).
    attempt: u32,
    /// [`level_rank`] of the job's level.
    min_rank: u8,
    sink: Sink,
    /// Lines of this instance dropped since the last "dropped" notice.
    dropped: AtomicU64,
    stats: Arc<LogStats>,
}

impl fmt::Debug for InstanceLogger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InstanceLogger")
            .field("instance_id", &self.inner.instance_id)
            .field("attempt", &self.inner.attempt)
            .field("min_rank", &self.inner.min_rank)
            .field("dropped", &self.inner.dropped.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl InstanceLogger {
    /// A logger shipping every line of `instance_id` to the server (ONLINE, DEBUG), attempt 0.
    pub(crate) fn new(
        instance_id: u64,
        queue: mpsc::Sender<LogEntry>,
        stats: Arc<LogStats>,
    ) -> Self {
        Self::build(instance_id, 0, 0, Sink::Online(queue), stats)
    }

    /// A logger for attempt `attempt` of `instance_id` that honours `config`: lines below
    /// `config.level` are dropped here, the rest go where `config.log_type` says.
    pub(crate) fn with_config(
        instance_id: u64,
        attempt: u32,
        config: &LogConfig,
        outputs: &LogOutputs,
        stats: Arc<LogStats>,
    ) -> Self {
        let sink = match config.log_type {
            LogType::Online => Sink::Online(outputs.online.clone()),
            LogType::Local => Sink::Local(outputs.local.clone(), Output::File),
            LogType::Stdout => Sink::Local(outputs.local.clone(), Output::Stdout),
            LogType::Null => Sink::Null,
        };
        Self::build(instance_id, attempt, level_rank(&config.level), sink, stats)
    }

    fn build(
        instance_id: u64,
        attempt: u32,
        min_rank: u8,
        sink: Sink,
        stats: Arc<LogStats>,
    ) -> Self {
        InstanceLogger {
            inner: Arc::new(LoggerInner {
                instance_id,
                attempt,
                min_rank,
                sink,
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

    /// Whether a line at `level` would be kept (the job's level lets it through and its log
    /// type is not NULL): skip building costly lines that would be dropped.
    pub fn enabled(&self, level: LogLevel) -> bool {
        !matches!(self.inner.sink, Sink::Null) && level_rank(&level) >= self.inner.min_rank
    }

    /// Lines of this instance dropped (queue full) and not yet reported in a WARN line.
    pub fn dropped_pending(&self) -> u64 {
        self.inner.dropped.load(Ordering::Relaxed)
    }

    /// Logs one line at `level`.
    pub fn log(&self, level: LogLevel, content: String) {
        self.log_fields(level, content, std::iter::empty::<(String, String)>());
    }

    /// Logs one line at `level` with structured key-value fields, which are stored with the
    /// line and shown next to it. At most [`MAX_LOG_FIELDS`] fields are kept, keys are cut
    /// to [`MAX_LOG_FIELD_KEY_BYTES`] and values to [`MAX_LOG_FIELD_VALUE_BYTES`].
    ///
    /// ```no_run
    /// # fn f(log: &ferrojob::worker::InstanceLogger) {
    /// use ferrojob::worker::LogLevel;
    /// log.log_fields(LogLevel::Info, "batch done", [("rows", "1200"), ("table", "orders")]);
    /// # }
    /// ```
    pub fn log_fields<K, V>(
        &self,
        level: LogLevel,
        content: impl Into<String>,
        fields: impl IntoIterator<Item = (K, V)>,
    ) where
        K: Into<String>,
        V: Into<String>,
    {
        if !self.enabled(level.clone()) {
            return;
        }
        let mut content = content.into();
        truncate_at_char_boundary(&mut content, MAX_LINE_BYTES);
        let fields = fields
            .into_iter()
            .take(MAX_LOG_FIELDS)
            .map(|(k, v)| {
                let mut key = k.into();
                let mut value = v.into();
                truncate_at_char_boundary(&mut key, MAX_LOG_FIELD_KEY_BYTES);
                truncate_at_char_boundary(&mut value, MAX_LOG_FIELD_VALUE_BYTES);
                LogField { key, value }
            })
            .collect();
        let inner = &self.inner;
        // Relaxed: the counter is a tally; no other memory is published through it.
        let pending = inner.dropped.swap(0, Ordering::Relaxed);
        if pending > 0 {
            let notice = LogEntry {
                instance_id: inner.instance_id,
                time_ms: epoch_ms(),
                level: LogLevel::Warn,
                content: format!("ferrojob: {pending} log lines dropped (queue full)"),
                attempt: inner.attempt,
                fields: Vec::new(),
            };
            if !self.send(notice) {
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
            attempt: inner.attempt,
            fields,
        };
        if !self.send(entry) {
            inner.dropped.fetch_add(1, Ordering::Relaxed);
            inner.stats.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Queues `entry` on this logger's output; false when it is full.
    fn send(&self, entry: LogEntry) -> bool {
        match &self.inner.sink {
            Sink::Online(q) => q.try_send(entry).is_ok(),
            Sink::Local(w, output) => w.try_write(*output, entry),
            Sink::Null => true,
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

/// Bytes of a line's text and fields (what dominates its archived size).
fn entry_bytes(e: &LogEntry) -> usize {
    e.fields.iter().fold(e.content.len(), |n, f| {
        n.saturating_add(f.key.len()).saturating_add(f.value.len())
    })
}

/// Splits `entries` in order into runs of at most `max` content and field bytes each (a run holds at
/// least one line, whatever its length).
fn split_by_bytes(entries: Vec<LogEntry>, max: usize) -> Vec<Vec<LogEntry>> {
    let mut out = Vec::new();
    let mut run: Vec<LogEntry> = Vec::new();
    let mut bytes = 0usize;
    for e in entries {
        let n = entry_bytes(&e);
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

    fn logger(level: LogLevel, log_type: LogType) -> (InstanceLogger, mpsc::Receiver<LogEntry>) {
        let (online, rx) = mpsc::channel(16);
        let (tx, _local_rx) = std::sync::mpsc::sync_channel(1);
        let outputs = LogOutputs {
            online,
            local: LocalWriter::from_sender(tx),
        };
        let config = LogConfig { log_type, level };
        let log = InstanceLogger::with_config(9, 3, &config, &outputs, Arc::default());
        (log, rx)
    }

    fn drain(rx: &mut mpsc::Receiver<LogEntry>) -> Vec<(LogLevel, String)> {
        std::iter::from_fn(|| rx.try_recv().ok())
            .map(|e| (e.level, e.content))
            .collect()
    }

    #[test]
    fn lines_below_the_jobs_level_are_dropped_at_the_source() {
        for (level, kept) in [
            (LogLevel::Debug, vec!["d", "i", "w", "e"]),
            (LogLevel::Info, vec!["i", "w", "e"]),
            (LogLevel::Warn, vec!["w", "e"]),
            (LogLevel::Error, vec!["e"]),
        ] {
            let (log, mut rx) = logger(level.clone(), LogType::Online);
            log.debug("d");
            log.info("i");
            log.warn("w");
            log.error("e");
            let got: Vec<String> = drain(&mut rx).into_iter().map(|(_, c)| c).collect();
            assert_eq!(got, kept, "level {level:?}");
            assert_eq!(
                log.dropped_pending(),
                0,
                "a filtered line is not a dropped one"
            );
        }
    }

    #[test]
    fn a_null_job_sends_nothing_and_lines_carry_their_attempt() {
        let (log, mut rx) = logger(LogLevel::Debug, LogType::Null);
        log.error("gone");
        assert!(!log.enabled(LogLevel::Error));
        assert!(drain(&mut rx).is_empty());
        assert_eq!(log.dropped_pending(), 0);
        let (log, mut rx) = logger(LogLevel::Info, LogType::Online);
        log.info("kept");
        assert_eq!(rx.try_recv().unwrap().attempt, 3);
        // LOCAL lines go to the local writer, not to the server.
        let (log, mut rx) = logger(LogLevel::Info, LogType::Local);
        log.info("local");
        assert!(drain(&mut rx).is_empty());
    }

    #[test]
    fn structured_fields_are_bounded_in_count_and_size() {
        let (log, mut rx) = logger(LogLevel::Info, LogType::Online);
        let long_key = "k".repeat(MAX_LOG_FIELD_KEY_BYTES + 10);
        let long_value = "é".repeat(MAX_LOG_FIELD_VALUE_BYTES);
        let mut fields = vec![(long_key, long_value)];
        fields.extend((0..40).map(|i| (format!("f{i}"), i.to_string())));
        log.log_fields(LogLevel::Info, "with fields", fields);
        log.log_fields(LogLevel::Debug, "below the level", [("a", "b")]);
        let e = rx.try_recv().unwrap();
        assert!(rx.try_recv().is_err());
        assert_eq!(e.fields.len(), MAX_LOG_FIELDS);
        assert_eq!(e.fields[0].key.len(), MAX_LOG_FIELD_KEY_BYTES);
        assert!(e.fields[0].value.len() <= MAX_LOG_FIELD_VALUE_BYTES);
        assert_eq!(e.fields[1].key, "f0");
        assert_eq!(e.fields[MAX_LOG_FIELDS - 1].value, "14");
    }

    #[test]
    fn a_batch_of_long_lines_is_split_to_fit_a_frame_in_order() {
        let line = |i: usize, n: usize| LogEntry {
            instance_id: 1,
            time_ms: i as i64,
            level: LogLevel::Info,
            content: "x".repeat(n),
            attempt: 1,
            fields: Vec::new(),
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
