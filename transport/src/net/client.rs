//! The client side: one connection, or a client that reconnects with backoff and jitter.

use std::net::SocketAddr;
use std::sync::Arc;

use rand::Rng;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};

use super::driver::{drive, DriverIo};
use super::handle::{command_queue, Command, ConnectionHandle, Incoming};
use super::{bind_connection, connect_tls, random_nonce, NetConfig, Stream};
use crate::backoff::Backoff;
use crate::connection::{ClientIdentity, Connection, PeerInfo};
use crate::error::{ConnectionError, RequestError, TransportError};
use crate::metrics::TransportMetrics;

/// An established client connection.
#[derive(Debug)]
pub struct Connected {
    /// Sends on the connection.
    pub handle: ConnectionHandle,
    /// Messages received, in order; `None` once closed.
    pub incoming: mpsc::Receiver<Incoming>,
    /// The server, as the handshake established it.
    pub peer: PeerInfo,
}

/// Connects, runs TLS if `config` asks for it, and makes a client core bound to the stream.
async fn open(
    addr: SocketAddr,
    config: &NetConfig,
    identity: &ClientIdentity,
    metrics: &Arc<TransportMetrics>,
) -> Result<(Stream, Connection), TransportError> {
    let tcp = open_tcp(addr, config).await?;
    let stream = connect_tls(tcp, addr, config).await.inspect_err(|_| {
        TransportMetrics::inc(&metrics.tls_handshake_failures);
        TransportMetrics::inc(&metrics.handshake_failures);
    })?;
    let mut conn = new_client(config, identity, metrics);
    bind_connection(&mut conn, &stream, config.role, addr)?;
    Ok((stream, conn))
}

async fn open_tcp(addr: SocketAddr, config: &NetConfig) -> Result<TcpStream, TransportError> {
    let stream = tokio::time::timeout(config.connect_timeout, TcpStream::connect(addr))
        .await
        .map_err(|_| TransportError::ConnectTimeout {
            peer: addr,
            timeout: config.connect_timeout,
        })?
        .map_err(|source| TransportError::Io {
            op: "connect",
            peer: addr,
            source,
        })?;
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

fn new_client(
    config: &NetConfig,
    identity: &ClientIdentity,
    metrics: &Arc<TransportMetrics>,
) -> Connection {
    Connection::new_client(
        config.connection.clone(),
        identity.clone(),
        random_nonce(),
        tokio::time::Instant::now().into_std(),
        Arc::clone(metrics),
    )
}

/// Connects once and completes the handshake. The connection runs in its own task until it
/// fails or [`ConnectionHandle::shutdown`] is called.
pub async fn connect(
    addr: SocketAddr,
    config: NetConfig,
    identity: ClientIdentity,
    metrics: Arc<TransportMetrics>,
) -> Result<Connected, TransportError> {
    let (stream, conn) = open(addr, &config, &identity, &metrics).await?;
    let (handle, mut commands) = command_queue(config.send_queue, addr);
    let (incoming_tx, incoming) = mpsc::channel(config.incoming_queue.max(1));
    let (est_tx, est_rx) = oneshot::channel();
    tokio::spawn(async move {
        let mut first = None;
        let io = DriverIo {
            commands: &mut commands,
            incoming: &incoming_tx,
            established: Some(est_tx),
            first: &mut first,
        };
        let exit = drive(stream, conn, io, &config).await;
        tracing::debug!(%addr, error = %exit.error, "client connection ended");
    });
    match est_rx.await {
        Ok(Ok(peer)) => Ok(Connected {
            handle,
            incoming,
            peer,
        }),
        Ok(Err(source)) => Err(TransportError::Connection { peer: addr, source }),
        Err(_) => Err(TransportError::Connection {
            peer: addr,
            source: ConnectionError::Eof,
        }),
    }
}

/// A client that keeps one logical connection to a server alive: it reconnects after any
/// failure with exponential backoff and jitter, and keeps the same handle and incoming queue
/// across connections. Messages accepted while disconnected wait in the (bounded) queue and
/// go out on the next connection; requests in flight when a connection drops fail with
/// [`RequestError::ConnectionLost`] (they may or may not have run).
#[derive(Debug)]
pub struct ReconnectingClient {
    /// Sends on the current connection.
    pub handle: ConnectionHandle,
    /// Messages received on any of the connections, in order.
    pub incoming: mpsc::Receiver<Incoming>,
    /// Learns of each established connection (the server's info).
    pub established: mpsc::Receiver<PeerInfo>,
}

impl ReconnectingClient {
    /// Starts connecting to `addr` in the background.
    pub fn start(
        addr: SocketAddr,
        config: NetConfig,
        identity: ClientIdentity,
        metrics: Arc<TransportMetrics>,
    ) -> ReconnectingClient {
        let (handle, commands) = command_queue(config.send_queue, addr);
        let (incoming_tx, incoming) = mpsc::channel(config.incoming_queue.max(1));
        let (est_tx, established) = mpsc::channel(16);
        tokio::spawn(supervise(
            addr,
            config,
            identity,
            metrics,
            commands,
            incoming_tx,
            est_tx,
        ));
        ReconnectingClient {
            handle,
            incoming,
            established,
        }
    }
}

async fn supervise(
    addr: SocketAddr,
    config: NetConfig,
    identity: ClientIdentity,
    metrics: Arc<TransportMetrics>,
    mut commands: mpsc::Receiver<Command>,
    incoming: mpsc::Sender<Incoming>,
    established: mpsc::Sender<PeerInfo>,
) {
    let mut backoff = Backoff::new(config.backoff.clone());
    // A one-way command taken from the queue during a backoff, sent first on reconnect.
    let mut carried: Option<Command> = None;
    loop {
        TransportMetrics::inc(&metrics.reconnect_attempts);
        let shutdown = match open(addr, &config, &identity, &metrics).await {
            Ok((stream, conn)) => {
                let (est_tx, est_rx) = oneshot::channel();
                let notify = async {
                    if let Ok(Ok(peer)) = est_rx.await {
                        let _ = established.send(peer).await;
                        true
                    } else {
                        false
                    }
                };
                let io = DriverIo {
                    commands: &mut commands,
                    incoming: &incoming,
                    established: Some(est_tx),
                    first: &mut carried,
                };
                let (exit, was_established) =
                    tokio::join!(drive(stream, conn, io, &config), notify);
                if was_established {
                    backoff.reset();
                }
                tracing::info!(%addr, error = %exit.error, "connection to server ended");
                exit.shutdown
            }
            Err(e) => {
                tracing::warn!(error = %e, "connect failed");
                false
            }
        };
        if shutdown {
            fail_queued(&mut commands);
            return;
        }
        let delay = backoff.next_delay(rand::thread_rng().gen::<f64>());
        tracing::debug!(
            ?delay,
            attempt = backoff.attempts(),
            "reconnecting after backoff"
        );
        // Wait out the backoff, failing requests at once (nothing can carry them) and
        // honouring a shutdown asked for meanwhile. One-way messages wait for the next
        // connection: once one is taken, the queue is left alone (backpressure).
        let sleep = tokio::time::sleep(delay);
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                _ = &mut sleep => break,
                command = commands.recv(), if carried.is_none() => match command {
                    None => return,
                    Some(Command::Shutdown(done)) => {
                        let _ = done.send(());
                        fail_queued(&mut commands);
                        return;
                    }
                    Some(Command::Request { reply, .. }) => {
                        let _ = reply.send(Err(RequestError::ConnectionLost(
                            "not connected (reconnecting)".into(),
                        )));
                    }
                    Some(other) => carried = Some(other),
                },
            }
        }
    }
}

fn fail_queued(commands: &mut mpsc::Receiver<Command>) {
    commands.close();
    while let Ok(c) = commands.try_recv() {
        match c {
            Command::Request { reply, .. } => {
                let _ = reply.send(Err(RequestError::ConnectionLost("client shut down".into())));
            }
            Command::Shutdown(done) => {
                let _ = done.send(());
            }
            Command::Send(_) | Command::SendBatch(_) | Command::Respond { .. } => {
                tracing::warn!("client shut down while disconnected: queued message dropped");
            }
        }
    }
}
