//! The server side: accept (per-source rate limit), TLS and handshake in a task per
//! connection (in the pre-authentication pool), admit (an established slot), yield authenticated peers.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio::task::JoinHandle;

use super::admission::{Admission, PreAuthPool, FULL};
use super::driver::{drive, DriverIo};
use super::handle::{command_queue, ConnectionHandle, Incoming};
use super::{accept_tls, bind_connection, epoch_ms, random_nonce, NetConfig};
use crate::auth::AppSecrets;
use crate::connection::{Connection, PeerInfo};
use crate::error::{ConnectionError, TransportError};
use crate::frame::{encode_to_vec, Flags};
use crate::message::{Close, ErrorCode};
use crate::metrics::TransportMetrics;
use crate::rate_limit::HandshakeRateLimiter;

/// An authenticated connection, ready for messages.
#[derive(Debug)]
pub struct Accepted {
    /// Sends on this connection.
    pub handle: ConnectionHandle,
    /// Messages received on it, in order; `None` once it is closed.
    pub incoming: mpsc::Receiver<Incoming>,
    /// The worker, as the handshake established it.
    pub peer: PeerInfo,
    /// The remote address.
    pub addr: SocketAddr,
}

/// A listening server endpoint.
#[derive(Debug)]
pub struct Listener {
    local_addr: SocketAddr,
    accepted: mpsc::Receiver<Accepted>,
    metrics: Arc<TransportMetrics>,
    task: JoinHandle<()>,
}

impl Listener {
    /// Binds `addr` and starts accepting. Connections whose handshake fails (wrong secret,
    /// garbage, timeout) are closed and counted; they never reach [`Listener::accept`].
    pub async fn bind(
        addr: SocketAddr,
        config: NetConfig,
        secrets: Arc<dyn AppSecrets>,
    ) -> Result<Listener, TransportError> {
        let tcp = TcpListener::bind(addr)
            .await
            .map_err(|source| TransportError::Io {
                op: "bind",
                peer: addr,
                source,
            })?;
        let local_addr = tcp.local_addr().map_err(|source| TransportError::Io {
            op: "local_addr",
            peer: addr,
            source,
        })?;
        let metrics = Arc::new(TransportMetrics::default());
        let (tx, accepted) = mpsc::channel(config.accept_queue.max(1));
        let task = tokio::spawn(accept_loop(tcp, config, secrets, Arc::clone(&metrics), tx));
        Ok(Listener {
            local_addr,
            accepted,
            metrics,
            task,
        })
    }

    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Counters of every connection of this listener.
    pub fn metrics(&self) -> &Arc<TransportMetrics> {
        &self.metrics
    }

    /// The next authenticated connection.
    pub async fn accept(&mut self) -> Result<Accepted, TransportError> {
        self.accepted.recv().await.ok_or(TransportError::Shutdown)
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        // Stops accepting; established connections keep running until their handles go.
        self.task.abort();
    }
}

async fn accept_loop(
    tcp: TcpListener,
    config: NetConfig,
    secrets: Arc<dyn AppSecrets>,
    metrics: Arc<TransportMetrics>,
    accepted: mpsc::Sender<Accepted>,
) {
    let established = Arc::new(Semaphore::new(
        config.max_connections.clamp(1, Semaphore::MAX_PERMITS),
    ));
    let preauth = Arc::new(PreAuthPool::new(config.max_handshaking));
    let mut rate = HandshakeRateLimiter::new(
        config.handshake_rate_per_min,
        config.handshake_burst,
        config.handshake_rate_sources,
    );
    // Failed handshakes per source: checked here on arrival, recorded by `serve`.
    let failures = Arc::new(Mutex::new(HandshakeRateLimiter::new(
        config.failed_handshakes_per_min,
        config.failed_handshake_burst,
        config.handshake_rate_sources,
    )));
    // Encoded once: every refusal on arrival writes the same bytes.
    let rate_limited_close = close_frame("too many connections from this address: retry later");
    let failures_close = close_frame("too many failed handshakes from this address: retry later");
    let full_close = close_frame(FULL);
    let mut next_id: u64 = 0;
    loop {
        let (stream, addr) = match tcp.accept().await {
            Ok(x) => x,
            Err(e) => {
                // EMFILE and friends: back off a little instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        TransportMetrics::inc(&metrics.connections_accepted);
        let now = tokio::time::Instant::now().into_std();
        if !rate.allow(addr.ip(), now) {
            TransportMetrics::inc(&metrics.handshakes_rate_limited);
            TransportMetrics::inc(&metrics.connections_closed);
            tracing::debug!(%addr, "connection over the handshake rate of its source closed");
            // A fresh socket's send buffer is empty: this never blocks, and a short write
            // only shortens the courtesy.
            let _ = stream.try_write(&rate_limited_close);
            continue;
        }
        let admitted = failures
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .would_allow(addr.ip(), now);
        if !admitted {
            TransportMetrics::inc(&metrics.failed_handshakes_limited);
            TransportMetrics::inc(&metrics.connections_closed);
            tracing::debug!(%addr, "connection from a source with too many failed handshakes closed");
            let _ = stream.try_write(&failures_close);
            continue;
        }
        if established.available_permits() == 0 {
            // Full: say so at once rather than run a handshake that cannot be admitted. A
            // slot freed meanwhile serves the next peer; one taken meanwhile is caught by
            // the admission check after the handshake.
            TransportMetrics::inc(&metrics.connections_over_limit);
            TransportMetrics::inc(&metrics.connections_closed);
            let _ = stream.try_write(&full_close);
            continue;
        }
        let _ = stream.set_nodelay(true);
        let id = next_id;
        next_id = next_id.wrapping_add(1);
        let admission = Admission::new(
            Arc::clone(&preauth),
            id,
            Arc::clone(&established),
            Arc::clone(&metrics),
        );
        let conn = Connection::new_server_with_admission(
            config.connection.clone(),
            Arc::clone(&secrets),
            Box::new(admission),
            random_nonce(),
            now,
            epoch_ms(),
            Arc::clone(&metrics),
        );
        let serving = serve(
            stream,
            addr,
            conn,
            config.clone(),
            accepted.clone(),
            Arc::clone(&metrics),
            Arc::clone(&failures),
        );
        // The task starts once it is in the pool, so it cannot leave the pool before joining.
        let (open, gate) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            if gate.await.is_ok() {
                serving.await;
            }
        });
        if preauth.admit(id, task.abort_handle()) {
            // The evicted core counts itself closed when its aborted task drops it.
            TransportMetrics::inc(&metrics.preauth_pool_full);
            tracing::debug!("pre-authentication pool full: oldest handshaking connection closed");
        }
        if open.send(()).is_err() {
            // The task is gone already (the runtime is shutting down).
            preauth.leave(id);
        }
    }
}

/// One accepted connection: TLS if configured, handshake, admission, then messages until it
/// ends.
async fn serve(
    stream: TcpStream,
    addr: SocketAddr,
    mut conn: Connection,
    config: NetConfig,
    accepted: mpsc::Sender<Accepted>,
    metrics: Arc<TransportMetrics>,
    failures: Arc<Mutex<HandshakeRateLimiter>>,
) {
    let secured = accept_tls(stream, addr, &config).await;
    let stream =
        match secured.and_then(|s| bind_connection(&mut conn, &s, config.role, addr).map(|()| s)) {
            Ok(s) => s,
            Err(e) => {
                TransportMetrics::inc(&metrics.tls_handshake_failures);
                TransportMetrics::inc(&metrics.handshake_failures);
                tracing::debug!(%addr, error = %e, "TLS handshake failed");
                // Dropping the core counts the connection closed.
                return;
            }
        };
    let (handle, mut commands) = command_queue(config.send_queue, addr);
    let (incoming_tx, incoming) = mpsc::channel(config.incoming_queue.max(1));
    let (est_tx, est_rx) = oneshot::channel();
    let handshake = async {
        if let Ok(Ok(peer)) = est_rx.await {
            let _ = accepted
                .send(Accepted {
                    handle,
                    incoming,
                    peer,
                    addr,
                })
                .await;
        }
    };
    let mut first = None;
    let io = DriverIo {
        commands: &mut commands,
        incoming: &incoming_tx,
        established: Some(est_tx),
        first: &mut first,
    };
    let (exit, ()) = tokio::join!(drive(stream, conn, io, &config), handshake);
    tracing::debug!(%addr, error = %exit.error, "connection ended");
    if matches!(exit.error, ConnectionError::AuthFailed { .. }) {
        let now = tokio::time::Instant::now().into_std();
        // Over its allowance already, the source is refused on arrival: nothing to add.
        let _ = failures
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .allow(addr.ip(), now);
    }
}

fn close_frame(message: &str) -> Vec<u8> {
    let close = Close {
        code: ErrorCode::Overloaded,
        message: message.to_owned(),
    };
    encode_to_vec(&close.into(), Flags::NONE, 0).unwrap_or_default()
}
