//! The server session: connect (handshake with the app secret) when the core says, serve,
//! and feed the connection's comings and goings to the core; and the metrics sampler.
//!
//! ```text
//!  session task:  wait for core.next_connect_at ─ connect ─ ok: Input::Connected
//!                                                         └ err: Input::ConnectFailed
//!                   reader: ScheduleJob / StopInstance / QueryInstanceStatus → the core
//!                   writer: control first: core.poll_transmit (reports, heartbeats, answers)
//!                           then one log batch, then control again, ...
//!                 until the connection ends (what it received is still read; then
//!                 Input::ConnectionLost) or shutdown (flush, close)
//!  sampler task:  every heartbeat_interval: sample metrics (spawn_blocking) → Input::Metrics
//! ```
//!
//! The worker runs its own reconnect loop over [`connect`] instead of `ReconnectingClient`
//! because the core decides when to try again (its backoff is capped at
//! [`MAX_RECONNECT_DELAY`](super::core::MAX_RECONNECT_DELAY)) and must know when the
//! connection is down (`server_lost_after`). With several servers, the rotation
//! ([`Servers`]) picks the address of each attempt and says whether the next one goes out at
//! once (the round over the addresses is not over) or after a backoff. Reader and writer run concurrently so that a full
//! command queue (slow server) never stops this side from reading, which would deadlock both
//! peers.
//!
//! Priority: reports, heartbeats and query answers never wait behind log lines. The core
//! holds them; the writer drains them before every log batch, and the connection's own send
//! queue is kept short ([`SERVER_SEND_QUEUE`] commands), so a control message queued while
//! logs pour out waits behind at most that many batches.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use ferrojob_transport::message::{ErrorCode, ErrorReply, LogBatch, Message, StopInstance};
use ferrojob_transport::net::{connect, Connected, ConnectionHandle, Incoming};
use ferrojob_transport::{ConnectionError, TransportError};
use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;

use super::core::{Input, Retry, Transmit};
use super::driver::until;
use super::epoch_ms;
use super::instance::processor_kind;
use super::metrics::Sampler;
use super::servers::{Failure, Servers};
use super::state::Shared;

/// Control messages moved from the core to the connection per batch at most.
const OUTBOUND_BATCH: usize = 1024;
/// Commands (message batches) the server connection queues before the writer waits: small,
/// so that what the writer hands over next (control first) is not stuck behind many log
/// batches inside the connection.
pub(crate) const SERVER_SEND_QUEUE: usize = 16;

/// Runs the server session until `stop` fires; then flushes what is queued and closes.
pub(crate) async fn run(
    shared: Arc<Shared>,
    mut logs: mpsc::Receiver<LogBatch>,
    stop: CancellationToken,
) {
    let mut net = shared.server_net();
    net.send_queue = net.send_queue.clamp(1, SERVER_SEND_QUEUE);
    let mut servers = Servers::new(shared.config.server, &shared.config.other_servers);
    loop {
        let at = shared.driven.lock().core.next_connect_at();
        if let Some(at) = at {
            tokio::select! {
                () = tokio::time::sleep(until(at)) => {}
                () = stop.cancelled() => break,
            }
        }
        let attempt = tokio::select! {
            c = connect(
                servers.current(),
                net.clone(),
                shared.identity.clone(),
                Arc::clone(&shared.transport_metrics),
            ) => c,
            () = stop.cancelled() => break,
        };
        match attempt {
            Ok(connected) => {
                servers.connected(epoch_ms());
                if serve(&shared, servers.current(), connected, &mut logs, &stop).await {
                    return;
                }
                // The server may be gone for good: the next try goes to another one.
                let retry = servers.lost(epoch_ms());
                shared.drive(Input::ConnectionLost { retry });
            }
            Err(e) => {
                let failure = log_connect_error(&shared, servers.current(), &e);
                let retry = servers.failed(failure);
                shared.drive(Input::ConnectFailed { retry });
            }
        }
    }
    let lost = shared.driven.lock().core.transmits_queued() + logs.len();
    if lost > 0 {
        tracing::warn!(
            messages = lost,
            "worker stopped while disconnected: queued reports and logs dropped"
        );
    }
}

/// Logs why a connection attempt failed; answers what the rotation needs of it.
fn log_connect_error(shared: &Shared, server: SocketAddr, e: &TransportError) -> Failure {
    if let TransportError::Connection {
        source:
            ConnectionError::PeerClosed {
                code: ErrorCode::NotOwner,
                message,
            },
        ..
    } = e
    {
        let owner = match ferrojob_transport::NotServed::parse(message) {
            Some(ferrojob_transport::NotServed::OwnedBy(o)) => Some(o),
            _ => None,
        };
        tracing::warn!(
            %server,
            app = %shared.config.app,
            owner = owner.as_deref().unwrap_or("unknown"),
            "this server does not serve the app (another server of the cluster does); retrying"
        );
        return Failure::NotServed { owner };
    }
    let refused = matches!(
        e,
        TransportError::Connection {
            source: ConnectionError::AuthFailed { .. }
                | ConnectionError::PeerClosed {
                    code: ErrorCode::AuthFailed,
                    ..
                },
            ..
        }
    );
    if refused {
        tracing::error!(
            %server,
            app = %shared.config.app,
            error = %e,
            "the server refused this worker: check the app name and secret; retrying"
        );
    } else {
        tracing::warn!(%server, error = %e, "cannot reach the server; retrying");
    }
    Failure::Other
}

/// Serves one connection; `true` when it ended because of `stop` (do not reconnect).
async fn serve(
    shared: &Arc<Shared>,
    server: SocketAddr,
    connected: Connected,
    logs: &mut mpsc::Receiver<LogBatch>,
    stop: &CancellationToken,
) -> bool {
    let Connected {
        handle,
        mut incoming,
        ..
    } = connected;
    tracing::info!(%server, address = %shared.address, "connected to the server");
    shared.drive(Input::Connected);

    let writer = write(shared.as_ref(), &handle, logs, stop);
    let stopped = pump(
        &mut incoming,
        |m| on_message(shared, &handle, m),
        writer,
        shared.config.net.close_flush_timeout,
    )
    .await;
    if stopped {
        shared.drive(Input::ConnectionLost {
            retry: Retry::Backoff,
        });
        let grace = shared.config.net.close_flush_timeout;
        let _ = tokio::time::timeout(grace, handle.shutdown()).await;
    } else {
        tracing::warn!(%server, "connection to the server lost");
    }
    stopped
}

/// Runs the reader (every message of `incoming` to `on`, in order) and `writer` together
/// until one ends; answers what the writer answered (`true`: stopped), `false` when the
/// connection ended.
///
/// The writer may find the connection gone before the reader has taken every message the
/// connection received before it closed: a server handing the app over sends its last
/// `ScheduleJob`s and then closes, and a heartbeat sent meanwhile fails. Those messages are
/// still handed to `on` (the connection closes `incoming` once gone; `drain_for` bounds the
/// wait), so an instance the server recorded as handed to this worker runs here instead of
/// being unknown to the worker when the next server asks.
async fn pump<T>(
    incoming: &mut mpsc::Receiver<T>,
    mut on: impl FnMut(T),
    writer: impl Future<Output = bool>,
    drain_for: std::time::Duration,
) -> bool {
    let stopped = {
        let reader = async {
            while let Some(m) = incoming.recv().await {
                on(m);
            }
        };
        tokio::select! {
            () = reader => false,
            s = writer => s,
        }
    };
    if !stopped {
        let drain = async {
            while let Some(m) = incoming.recv().await {
                on(m);
            }
        };
        if tokio::time::timeout(drain_for, drain).await.is_err() {
            tracing::warn!(
                "connection ended but its received messages did not: some were not read"
            );
        }
    }
    stopped
}

/// Where the writer puts messages: the server connection (a test double in unit tests).
pub(crate) trait ServerSink {
    /// Queues one-way messages, in order; `false` when the connection is gone.
    fn send_batch(&self, messages: Vec<Message>) -> impl Future<Output = bool> + Send;
    /// Queues the answer to a request; `false` when the connection is gone.
    fn respond(&self, correlation: u64, message: Message) -> impl Future<Output = bool> + Send;
}

impl ServerSink for ConnectionHandle {
    async fn send_batch(&self, messages: Vec<Message>) -> bool {
        ConnectionHandle::send_batch(self, messages).await.is_ok()
    }
    async fn respond(&self, correlation: u64, message: Message) -> bool {
        ConnectionHandle::respond(self, correlation, message)
            .await
            .is_ok()
    }
}

/// Where the writer takes control messages from: the core (a test double in unit tests).
pub(crate) trait ControlSource: Sync {
    /// Up to `max` control messages, in order.
    fn take(&self, max: usize) -> Vec<Transmit>;
    /// Notified when there are control messages to take.
    fn ready(&self) -> &Notify;
}

impl ControlSource for Shared {
    fn take(&self, max: usize) -> Vec<Transmit> {
        self.take_transmits(max)
    }
    fn ready(&self) -> &Notify {
        &self.transmit_ready
    }
}

/// Hands the core's control messages to `sink`; `false` when the connection is gone (what
/// was taken is lost).
async fn send_control(control: &impl ControlSource, sink: &impl ServerSink) -> bool {
    loop {
        let batch = control.take(OUTBOUND_BATCH);
        if batch.is_empty() {
            return true;
        }
        let mut sends = Vec::with_capacity(batch.len());
        let mut replies = Vec::new();
        for t in batch {
            match t {
                Transmit::Send(m) => sends.push(m),
                Transmit::Reply {
                    correlation,
                    message,
                } => replies.push((correlation, message)),
            }
        }
        if !sends.is_empty() && !sink.send_batch(sends).await {
            tracing::warn!("connection ended while sending: a batch of reports was lost");
            return false;
        }
        for (correlation, message) in replies {
            if !sink.respond(correlation, message).await {
                return false;
            }
        }
    }
}

/// The writer: control messages first, then one log batch at a time, until `stop` fires
/// (then it flushes both and returns `true`) or the connection is gone (`false`).
pub(crate) async fn write(
    control: &impl ControlSource,
    sink: &impl ServerSink,
    logs: &mut mpsc::Receiver<LogBatch>,
    stop: &CancellationToken,
) -> bool {
    enum Next {
        Control,
        Log(LogBatch),
        Stop,
    }
    loop {
        if !send_control(control, sink).await {
            return false;
        }
        let next = tokio::select! {
            biased;
            () = stop.cancelled() => Next::Stop,
            () = control.ready().notified() => Next::Control,
            b = logs.recv() => b.map_or(Next::Stop, Next::Log),
        };
        match next {
            Next::Control => {}
            Next::Log(batch) => {
                if !sink.send_batch(vec![batch.into()]).await {
                    tracing::warn!("connection ended while sending: a log batch was lost");
                    return false;
                }
            }
            Next::Stop => {
                // Flush: control, then every queued log batch, then control once more
                // (shutdown's last reports may race the last logs).
                if !send_control(control, sink).await {
                    return true;
                }
                while let Ok(batch) = logs.try_recv() {
                    if !sink.send_batch(vec![batch.into()]).await {
                        return true;
                    }
                }
                let _ = send_control(control, sink).await;
                return true;
            }
        }
    }
}

/// Handles one message from the server without blocking the reader.
fn on_message(shared: &Arc<Shared>, handle: &ConnectionHandle, m: Incoming) {
    let Incoming {
        correlation,
        message,
    } = m;
    match message {
        Message::ScheduleJob(job) => {
            let processor = processor_kind(shared, &job);
            shared.drive(Input::ScheduleJob {
                job: Box::new(job),
                processor,
            });
        }
        Message::StopInstance(StopInstance { instance_id, epoch }) => {
            shared.drive(Input::StopInstance { instance_id, epoch });
        }
        Message::QueryInstanceStatus(q) => match correlation {
            Some(correlation) => shared.drive(Input::QueryInstanceStatus {
                correlation,
                instance_id: q.instance_id,
            }),
            None => tracing::debug!("QueryInstanceStatus without a correlation: ignored"),
        },
        other => {
            tracing::debug!(kind = %other.kind(), "unexpected message from the server");
            if let Some(c) = correlation {
                let refusal = ErrorReply {
                    code: ErrorCode::UnexpectedMessage,
                    message: format!("{} is not handled by a worker", other.kind()),
                };
                let handle = handle.clone();
                tokio::spawn(async move {
                    let _ = handle.respond(c, refusal).await;
                });
            }
        }
    }
}

/// Samples metrics every `heartbeat_interval` and hands them to the core (which heartbeats on
/// its own timer), until `stop` fires.
pub(crate) async fn sample_metrics(
    shared: Arc<Shared>,
    mut sampler: Sampler,
    stop: CancellationToken,
) {
    let every = shared
        .config
        .heartbeat_interval
        .max(std::time::Duration::from_millis(10));
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = stop.cancelled() => return,
        }
        // Blocking reads of /proc and statvfs: off the runtime's threads.
        match tokio::task::spawn_blocking(move || {
            let m = sampler.sample();
            (sampler, m)
        })
        .await
        {
            Ok((s, metrics)) => {
                sampler = s;
                let processor_trackers = shared
                    .processor_trackers
                    .load(std::sync::atomic::Ordering::Relaxed);
                shared.drive(Input::Metrics {
                    metrics,
                    processor_trackers,
                });
            }
            Err(e) => {
                tracing::error!(error = %e, "metrics sampling failed; heartbeats keep the last sample");
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use ferrojob_transport::message::{LogEntry, LogLevel, SystemMetrics, TimeExpressionType};
    use ferrojob_transport::BackoffConfig;
    use parking_lot::Mutex;

    use super::*;
    use crate::worker::core::{CoreConfig, ProcessorKind, WorkerCore};
    use crate::worker::logs::LOG_BATCH_QUEUE;

    /// A core behind a lock, as the driver keeps it.
    struct Control {
        core: Mutex<WorkerCore>,
        ready: Notify,
    }

    impl ControlSource for Control {
        fn take(&self, max: usize) -> Vec<Transmit> {
            let mut core = self.core.lock();
            std::iter::from_fn(|| core.poll_transmit())
                .take(max)
                .collect()
        }
        fn ready(&self) -> &Notify {
            &self.ready
        }
    }

    impl Control {
        /// Dispatches an instance: the core queues its RUNNING report.
        fn schedule(&self, instance_id: u64) {
            let mut job = crate::worker::core::tests::job(instance_id, 1);
            job.time_expression_type = TimeExpressionType::Api;
            job.time_expression = String::new();
            let mut core = self.core.lock();
            core.handle(
                0,
                crate::worker::core::Input::ScheduleJob {
                    job: Box::new(job),
                    processor: ProcessorKind::Basic,
                },
            );
            while core.poll_effect().is_some() {}
            self.ready.notify_one();
        }
    }

    /// Records what the writer hands over; dispatches an instance when the first log batch
    /// arrives (a report produced while logs pour out) and stops after `stop_after` messages.
    struct Recorder {
        control: Arc<Control>,
        sent: Mutex<Vec<Message>>,
        stop: CancellationToken,
        stop_after: usize,
    }

    impl ServerSink for Recorder {
        async fn send_batch(&self, messages: Vec<Message>) -> bool {
            let first_log = {
                let mut sent = self.sent.lock();
                let before = sent
                    .iter()
                    .filter(|m| matches!(m, Message::LogBatch(_)))
                    .count();
                sent.extend(messages);
                let after = sent
                    .iter()
                    .filter(|m| matches!(m, Message::LogBatch(_)))
                    .count();
                if sent.len() >= self.stop_after {
                    self.stop.cancel();
                }
                before == 0 && after > 0
            };
            if first_log {
                self.control.schedule(1);
            }
            true
        }
        async fn respond(&self, _correlation: u64, message: Message) -> bool {
            self.sent.lock().push(message);
            true
        }
    }

    fn batch(i: u64) -> LogBatch {
        LogBatch {
            worker_address: "w:1".into(),
            entries: vec![LogEntry {
                instance_id: 9,
                time_ms: 0,
                level: LogLevel::Info,
                content: format!("line {i}"),
                attempt: 1,
                fields: Vec::new(),
            }],
        }
    }

    #[tokio::test]
    async fn messages_received_before_the_connection_ended_are_read_when_the_writer_sees_it_first()
    {
        let (tx, mut incoming) = mpsc::channel::<u32>(8);
        // The connection received three messages the reader has not taken yet when the
        // writer finds the connection gone; then the connection closes the channel.
        tokio::spawn(async move {
            tokio::task::yield_now().await;
            for m in 1..=3 {
                let _ = tx.send(m).await;
            }
        });
        let mut read = Vec::new();
        let stopped = pump(
            &mut incoming,
            |m| read.push(m),
            async { false },
            Duration::from_secs(60),
        )
        .await;
        assert!(!stopped);
        assert_eq!(read, vec![1, 2, 3]);
    }

    #[tokio::test]
    async fn a_stopped_writer_does_not_wait_for_the_connection_to_end() {
        let (_tx, mut incoming) = mpsc::channel::<u32>(8);
        let stopped = pump(
            &mut incoming,
            |_| {},
            async { true },
            Duration::from_secs(3600),
        )
        .await;
        assert!(stopped);
    }

    #[tokio::test]
    async fn a_report_overtakes_every_queued_log_batch() {
        let mut core = WorkerCore::new(
            CoreConfig {
                address: "w:1".into(),
                app: "app".into(),
                tag: None,
                heartbeat_interval_ms: 1000,
                keepalive_interval_ms: 10_000,
                default_instance_timeout_ms: 0,
                server_lost_after: Duration::from_secs(30),
                max_running_instances: 0,
                finished_cache: 10,
                backoff: BackoffConfig::default(),
                seed: 1,
                metrics: SystemMetrics {
                    cpu_cores: 1,
                    cpu_load: 0.0,
                    memory_used_bytes: 0,
                    memory_max_bytes: 0,
                    disk_used_bytes: 0,
                    disk_total_bytes: 0,
                    score: 0,
                },
            },
            0,
        );
        core.handle(0, crate::worker::core::Input::Connected);
        let control = Arc::new(Control {
            core: Mutex::new(core),
            ready: Notify::new(),
        });
        // The log batch queue is full.
        let (tx, mut logs) = mpsc::channel(LOG_BATCH_QUEUE);
        for i in 0..LOG_BATCH_QUEUE as u64 {
            tx.try_send(batch(i)).unwrap();
        }
        assert!(
            tx.try_send(batch(99)).is_err(),
            "the log batch queue is bounded"
        );
        let stop = CancellationToken::new();
        let sink = Recorder {
            control: Arc::clone(&control),
            sent: Mutex::new(Vec::new()),
            stop: stop.clone(),
            stop_after: 4,
        };
        assert!(write(control.as_ref(), &sink, &mut logs, &stop).await);
        let sent = sink.sent.into_inner();
        let kinds: Vec<&str> = sent
            .iter()
            .map(|m| match m {
                Message::WorkerHeartbeat(_) => "heartbeat",
                Message::LogBatch(_) => "log",
                Message::ReportInstanceStatus(_) => "report",
                _ => "other",
            })
            .take(4)
            .collect();
        // The heartbeat of the connection, the log batch being sent when the instance was
        // dispatched, then its report ahead of the 63 batches still queued.
        assert_eq!(kinds, ["heartbeat", "log", "report", "log"]);
        // Stopping flushed every queued batch.
        assert_eq!(sent.len(), 2 + LOG_BATCH_QUEUE);
    }
}
