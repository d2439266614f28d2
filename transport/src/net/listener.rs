//! The server side: accept, handshake in a task per connection, yield authenticated peers.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::driver::{drive, DriverIo};
use super::handle::{command_queue, ConnectionHandle, Incoming};
use super::{epoch_ms, random_nonce, NetConfig};
use crate::auth::AppSecrets;
use crate::connection::{Connection, PeerInfo};
use crate::error::TransportError;
use crate::metrics::TransportMetrics;

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
    let slots = Arc::new(tokio::sync::Semaphore::new(config.max_connections.max(1)));
    loop {
        // Held by the connection's task until it ends: bounds tasks, buffers and sockets.
        let Ok(slot) = Arc::clone(&slots).acquire_owned().await else {
            return;
        };
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
        let _ = stream.set_nodelay(true);
        let config = config.clone();
        let secrets = Arc::clone(&secrets);
        let metrics = Arc::clone(&metrics);
        let accepted = accepted.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let conn = Connection::new_server(
                config.connection.clone(),
                secrets,
                random_nonce(),
                tokio::time::Instant::now().into_std(),
                epoch_ms(),
                Arc::clone(&metrics),
            );
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
        });
    }
}
