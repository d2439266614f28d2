//! The server session: connect (handshake with the app secret), serve, reconnect with
//! exponential backoff and jitter; and the heartbeat task.
//!
//! ```text
//!  session task:  connect ──ok──▶ heartbeat first, then concurrently:
//!                   reader: ScheduleJob → instance::accept │ StopInstance → cancel
//!                           QueryInstanceStatus → spawned answer (never blocks the reader)
//!                   writer: outbound queue ──recv_many──▶ send_batch (reports, log batches)
//!                 until the connection ends (→ backoff, reconnect) or shutdown (→ flush, close)
//!  heartbeat task: every heartbeat_interval: sample metrics (spawn_blocking), heartbeat on the
//!                  current connection, stop fixed rate/delay instances once the server has been
//!                  unreachable for longer than server_lost_after
//! ```
//!
//! The worker runs its own reconnect loop over [`connect`] instead of
//! `ReconnectingClient` because it must know when it is disconnected (`Worker::is_connected`,
//! `server_lost_after`), which `ReconnectingClient` does not expose. The outbound queue plays
//! the part of `ReconnectingClient`'s queue: what is queued while disconnected goes out on the
//! next connection, in order. Reader and writer run concurrently so that a full command queue
//! (slow server) never stops this side from reading, which would deadlock both peers.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use ferrojob_transport::message::{
    ErrorCode, ErrorReply, Message, StopInstance, TimeExpressionType,
};
use ferrojob_transport::net::{connect, Connected, ConnectionHandle, Incoming};
use ferrojob_transport::{Backoff, ConnectionError, TransportError};
use rand::Rng;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::instance;
use super::metrics::Sampler;
use super::state::{CancelReason, Shared};

/// Messages moved from the outbound queue to the connection per batch at most.
const OUTBOUND_BATCH: usize = 1024;

/// Runs the server session until `stop` fires; then flushes what is queued and closes.
pub(crate) async fn run(
    shared: Arc<Shared>,
    mut outbound: mpsc::Receiver<Message>,
    stop: CancellationToken,
) {
    let mut backoff = Backoff::new(shared.config.net.backoff.clone());
    loop {
        let attempt = tokio::select! {
            c = connect(
                shared.config.server,
                shared.config.net.clone(),
                shared.identity.clone(),
                Arc::clone(&shared.transport_metrics),
            ) => c,
            () = stop.cancelled() => break,
        };
        match attempt {
            Ok(connected) => {
                backoff.reset();
                if serve(&shared, connected, &mut outbound, &stop).await {
                    return;
                }
            }
            Err(e) => log_connect_error(&shared, &e),
        }
        let delay = backoff.next_delay(rand::thread_rng().gen::<f64>());
        tracing::debug!(
            ?delay,
            attempt = backoff.attempts(),
            "reconnecting after backoff"
        );
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = stop.cancelled() => break,
        }
    }
    let lost = outbound.len();
    if lost > 0 {
        tracing::warn!(
            messages = lost,
            "worker stopped while disconnected: queued reports and logs dropped"
        );
    }
}

fn log_connect_error(shared: &Shared, e: &TransportError) {
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
            server = %shared.config.server,
            app = %shared.config.app,
            error = %e,
            "the server refused this worker: check the app name and secret; retrying"
        );
    } else {
        tracing::warn!(server = %shared.config.server, error = %e, "cannot reach the server; retrying");
    }
}

/// Serves one connection; `true` when it ended because of `stop` (do not reconnect).
async fn serve(
    shared: &Arc<Shared>,
    connected: Connected,
    outbound: &mut mpsc::Receiver<Message>,
    stop: &CancellationToken,
) -> bool {
    let Connected {
        handle,
        mut incoming,
        ..
    } = connected;
    tracing::info!(server = %shared.config.server, address = %shared.address, "connected to the server");
    let _ = handle.send(shared.heartbeat()).await;
    *shared.server.lock() = Some(handle.clone());
    *shared.disconnected_since.lock() = None;
    shared.connected.store(true, Ordering::Release);

    let reader = async {
        while let Some(m) = incoming.recv().await {
            on_message(shared, &handle, m);
        }
    };
    // The writer owns the stop signal: a batch it has taken is always handed to the
    // connection (never dropped mid-send by a shutdown), and on stop it flushes the queue.
    let writer = async {
        let mut batch = Vec::with_capacity(OUTBOUND_BATCH);
        loop {
            let stopping = tokio::select! {
                n = outbound.recv_many(&mut batch, OUTBOUND_BATCH) => n == 0,
                () = stop.cancelled() => true,
            };
            if stopping {
                while let Ok(m) = outbound.try_recv() {
                    batch.push(m);
                }
            }
            if !batch.is_empty() {
                let messages = std::mem::replace(&mut batch, Vec::with_capacity(OUTBOUND_BATCH));
                if handle.send_batch(messages).await.is_err() {
                    tracing::warn!(
                        "connection ended while sending: a batch of reports/logs was lost"
                    );
                    return stopping;
                }
            }
            if stopping {
                return true;
            }
        }
    };
    let stopped = tokio::select! {
        () = reader => false,
        s = writer => s,
    };
    shared.connected.store(false, Ordering::Release);
    *shared.server.lock() = None;
    *shared.disconnected_since.lock() = Some(Instant::now());
    if stopped {
        let grace = shared.config.net.close_flush_timeout;
        let _ = tokio::time::timeout(grace, handle.shutdown()).await;
    } else {
        tracing::warn!(server = %shared.config.server, "connection to the server lost");
    }
    stopped
}

/// Handles one message from the server without blocking the reader.
fn on_message(shared: &Arc<Shared>, handle: &ConnectionHandle, m: Incoming) {
    let Incoming {
        correlation,
        message,
    } = m;
    match message {
        Message::ScheduleJob(job) => instance::accept(shared, job),
        Message::StopInstance(StopInstance { instance_id }) => {
            let entry = shared.instances.lock().get(&instance_id).cloned();
            match entry {
                Some(e) => e.cancel(CancelReason::Stopped),
                None => tracing::debug!(instance = instance_id, "stop for an unknown instance"),
            }
        }
        Message::QueryInstanceStatus(q) => {
            let answer: Message = match shared.instance_status(q.instance_id) {
                Some(reply) => reply.into(),
                None => ErrorReply {
                    code: ErrorCode::NotFound,
                    message: format!("instance {} unknown to this worker", q.instance_id),
                }
                .into(),
            };
            respond_later(handle, correlation, answer);
        }
        other => {
            tracing::debug!(kind = %other.kind(), "unexpected message from the server");
            if correlation.is_some() {
                let refusal = ErrorReply {
                    code: ErrorCode::UnexpectedMessage,
                    message: format!("{} is not handled by a worker", other.kind()),
                };
                respond_later(handle, correlation, refusal.into());
            }
        }
    }
}

fn respond_later(handle: &ConnectionHandle, correlation: Option<u64>, answer: Message) {
    let Some(c) = correlation else {
        return;
    };
    let handle = handle.clone();
    tokio::spawn(async move {
        let _ = handle.respond(c, answer).await;
    });
}

/// Samples metrics, heartbeats and watches for a lost server, every `heartbeat_interval`,
/// until `stop` fires.
pub(crate) async fn heartbeats(shared: Arc<Shared>, mut sampler: Sampler, stop: CancellationToken) {
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
            Ok((s, m)) => {
                sampler = s;
                *shared.latest_metrics.lock() = m;
            }
            Err(e) => {
                tracing::error!(error = %e, "metrics sampling failed; heartbeats stop");
                return;
            }
        }
        let handle = shared.server.lock().clone();
        if let Some(h) = handle {
            // A heartbeat stuck behind a full queue is stale: skip it rather than wait.
            let _ = h.try_send(shared.heartbeat());
        }
        stop_fixed_work_if_server_lost(&shared);
    }
}

/// PowerJob's rule: a worker cut off from the server for longer than `server_lost_after` stops
/// its FIXED_RATE / FIXED_DELAY instances (the server will have started new runs elsewhere).
fn stop_fixed_work_if_server_lost(shared: &Shared) {
    let lost_for = shared.disconnected_since.lock().map(|t| t.elapsed());
    if lost_for.is_none_or(|d| d <= shared.config.server_lost_after) {
        return;
    }
    let victims: Vec<_> = shared
        .instances
        .lock()
        .iter()
        .filter(|(_, r)| {
            matches!(
                r.time_expression_type,
                TimeExpressionType::FixedRate | TimeExpressionType::FixedDelay
            ) && !r.cancel.is_cancelled()
        })
        .map(|(id, r)| (*id, Arc::clone(r)))
        .collect();
    for (id, r) in victims {
        tracing::warn!(
            instance = id,
            "server unreachable too long: stopping fixed rate/delay instance"
        );
        r.cancel(CancelReason::ServerLost);
    }
}
