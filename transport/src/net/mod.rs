//! The tokio adapter: sockets, timers and tasks around the sans-IO [`Connection`] core.
//!
//! ```text
//!  callers --ConnectionHandle::{send,request,respond,shutdown}--> bounded mpsc (backpressure)
//!                                                                     |
//!                           one task per connection (driver)  <-------+
//!                           Connection core <-> TcpStream halves (or TLS stream halves)
//!                           many frames per write() (coalescing)
//!                                                                     |
//!  callers <--------------- bounded mpsc of Incoming {correlation, message} <---+
//! ```
//!
//! - [`Listener`]: accepts connections, runs each handshake in its own task, and yields only
//!   authenticated connections from [`Listener::accept`]. A bad peer costs its own task only.
//!   Connections still in their handshake live in a small pool of their own
//!   ([`NetConfig::max_handshaking`]), apart from authenticated ones
//!   ([`NetConfig::max_connections`]), and each source address may start only so many
//!   handshakes per minute ([`NetConfig::handshake_rate_per_min`]); see `admission.rs`.
//! - [`connect`]: one client connection; [`ReconnectingClient`]: a client that reconnects with
//!   exponential backoff and jitter, keeping one handle and one incoming queue across
//!   connections.
//!
//! TLS: with [`NetConfig::server_tls`] a [`Listener`] runs a TLS handshake before the
//! ferrojob handshake (both within `connection.handshake_timeout`, in the
//! pre-authentication pool); with [`NetConfig::client_tls`] clients do, and check the
//! server's certificate. Either way the ferrojob proofs then bind the TLS channel and
//! [`NetConfig::role`] (see [`crate::auth`]). Without them, connections are plain TCP.
//!
//! Write coalescing: the driver drains up to `max_batch` queued commands into the core before
//! each write, and the core hands out all queued frames at once, so under load one `write`
//! carries many frames (see the `write_calls` and `frames_sent` metrics).
//!
//! [`Connection`]: crate::Connection

mod admission;
mod client;
mod driver;
mod handle;
mod listener;

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpStream;

pub use client::{connect, Connected, ReconnectingClient};
#[cfg(any(test, feature = "test-util"))]
pub use handle::UnconnectedPeer;
pub use handle::{ConnectionHandle, Incoming};
pub use listener::{Accepted, Listener};

use crate::auth::{Binding, Role};
use crate::backoff::BackoffConfig;
use crate::connection::{Connection, ConnectionConfig};
use crate::error::TransportError;
use crate::tls::{channel_binding, ClientTls, ServerTls};

/// Settings of the tokio adapter.
#[derive(Debug, Clone, PartialEq)]
pub struct NetConfig {
    /// The connection core's settings (timeouts, sizes).
    pub connection: ConnectionConfig,
    /// Commands (sends, requests, answers) queued per connection before callers wait
    /// (default 4096).
    pub send_queue: usize,
    /// Received messages queued per connection before the driver stops reading (default
    /// 4096). While the queue is full the connection task waits: it neither reads nor sends
    /// pings, so a consumer stalled for longer than the peer's idle timeout loses the
    /// connection. Consume promptly (`recv_many` for throughput).
    pub incoming_queue: usize,
    /// Largest read buffer per connection, bytes (default 64 KiB, at least 1 KiB). Each
    /// connection starts with 4 KiB and doubles it, after authentication only, each time a
    /// read fills it.
    pub read_buffer: usize,
    /// Commands drained into one write at most (default 1024).
    pub max_batch: usize,
    /// TCP connect timeout for clients (default 5 s).
    pub connect_timeout: Duration,
    /// How long a closing connection may take to flush its last bytes (default 2 s).
    pub close_flush_timeout: Duration,
    /// Reconnect backoff of [`ReconnectingClient`].
    pub backoff: BackoffConfig,
    /// Established connections waiting in [`Listener::accept`]'s queue (default 128).
    pub accept_queue: usize,
    /// Authenticated connections a [`Listener`] serves at once (default 10 000, at least 1).
    /// At the limit a new connection is closed on arrival with a close frame (`Overloaded`),
    /// and a peer that completes its handshake while the last slot is taken is refused
    /// instead of accepted; both count in `connections_over_limit`. Handshaking connections
    /// never hold one of these slots.
    pub max_connections: usize,
    /// Connections a [`Listener`] keeps in their handshake at once (default 256, at least 1).
    /// When a new connection finds the pool full, the oldest handshaking connection is closed
    /// to make room (`preauth_pool_full`): a real peer needs one round trip, a peer that
    /// never authenticates only holds its place until pushed out or until
    /// `connection.handshake_timeout`.
    pub max_handshaking: usize,
    /// Connections a [`Listener`] accepts per source address per minute after a burst of
    /// `handshake_burst` (default 6000, i.e. 100 per second; 0 turns the limit off). An
    /// IPv6 source is its /64. A connection over the rate is closed on arrival, with a close
    /// frame (`Overloaded`) and before any handshake work (`handshakes_rate_limited`). Turn
    /// it off or raise it when every peer comes through one proxy or NAT address.
    pub handshake_rate_per_min: u32,
    /// Connections a source may open at once before `handshake_rate_per_min` applies
    /// (default 200, at least 1).
    pub handshake_burst: u32,
    /// Source addresses the rate limit tracks at once (default 4096, at least 1). When full,
    /// sources whose allowance has refilled are forgotten first, then those closest to it.
    pub handshake_rate_sources: usize,
    /// Failed handshakes (unknown app, wrong secret) a [`Listener`] allows per source
    /// address per minute after a burst of `failed_handshake_burst` (default 10; 0 turns the
    /// limit off); the sources tracked are bounded by `handshake_rate_sources`. Past it, a
    /// new connection from that source is closed on arrival, before any handshake work
    /// (`failed_handshakes_limited`), so guessing a secret costs time.
    pub failed_handshakes_per_min: u32,
    /// Failed handshakes a source may make before `failed_handshakes_per_min` applies
    /// (default 20, at least 1).
    pub failed_handshake_burst: u32,
    /// The role of the accepting end, bound into the handshake proofs: a [`Listener`]
    /// accepts as this role, clients expect their peer to have it (default
    /// [`Role::Server`]; a worker's peer listener and its connections to other workers use
    /// [`Role::Worker`]).
    pub role: Role,
    /// TLS for a [`Listener`] (certificate and key); `None` serves plain TCP.
    pub server_tls: Option<ServerTls>,
    /// TLS for clients (trusted CAs, server name); `None` connects over plain TCP.
    pub client_tls: Option<ClientTls>,
}

impl Default for NetConfig {
    fn default() -> Self {
        NetConfig {
            connection: ConnectionConfig::default(),
            send_queue: 4096,
            incoming_queue: 4096,
            read_buffer: 64 * 1024,
            max_batch: 1024,
            connect_timeout: Duration::from_secs(5),
            close_flush_timeout: Duration::from_secs(2),
            backoff: BackoffConfig::default(),
            accept_queue: 128,
            max_connections: 10_000,
            max_handshaking: 256,
            handshake_rate_per_min: 6000,
            handshake_burst: 200,
            handshake_rate_sources: 4096,
            failed_handshakes_per_min: 10,
            failed_handshake_burst: 20,
            role: Role::Server,
            server_tls: None,
            client_tls: None,
        }
    }
}

fn random_nonce() -> [u8; crate::message::NONCE_LEN] {
    use rand::RngCore;
    let mut nonce = [0u8; crate::message::NONCE_LEN];
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    nonce
}

fn epoch_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// A connected socket, plain or inside TLS.
pub(crate) enum Stream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::TlsStream<TcpStream>>),
}

impl Stream {
    /// What the handshake proofs of a connection on this stream bind.
    fn binding(&self, role: Role) -> Result<Binding, String> {
        let channel = match self {
            Stream::Plain(_) => None,
            Stream::Tls(tls) => Some(match &**tls {
                tokio_rustls::TlsStream::Client(c) => channel_binding(c.get_ref().1)?,
                tokio_rustls::TlsStream::Server(s) => channel_binding(s.get_ref().1)?,
            }),
        };
        Ok(Binding { role, channel })
    }
}

/// Runs the server side of TLS on `stream` if `config` asks for it, within the handshake
/// timeout.
pub(crate) async fn accept_tls(
    stream: TcpStream,
    peer: SocketAddr,
    config: &NetConfig,
) -> Result<Stream, TransportError> {
    let Some(tls) = &config.server_tls else {
        return Ok(Stream::Plain(stream));
    };
    let timeout = config.connection.handshake_timeout;
    match tokio::time::timeout(timeout, tls.acceptor().accept(stream)).await {
        Ok(Ok(s)) => Ok(Stream::Tls(Box::new(tokio_rustls::TlsStream::Server(s)))),
        Ok(Err(e)) => Err(TransportError::Tls {
            peer,
            reason: e.to_string(),
        }),
        Err(_) => Err(TransportError::Tls {
            peer,
            reason: format!("handshake not complete after {timeout:?}"),
        }),
    }
}

/// Runs the client side of TLS on `stream` if `config` asks for it, within the connect
/// timeout.
pub(crate) async fn connect_tls(
    stream: TcpStream,
    peer: SocketAddr,
    config: &NetConfig,
) -> Result<Stream, TransportError> {
    let Some(tls) = &config.client_tls else {
        return Ok(Stream::Plain(stream));
    };
    let timeout = config.connect_timeout;
    let name = tls.server_name_for(peer);
    match tokio::time::timeout(timeout, tls.connector().connect(name, stream)).await {
        Ok(Ok(s)) => Ok(Stream::Tls(Box::new(tokio_rustls::TlsStream::Client(s)))),
        Ok(Err(e)) => Err(TransportError::Tls {
            peer,
            reason: e.to_string(),
        }),
        Err(_) => Err(TransportError::Tls {
            peer,
            reason: format!("handshake not complete after {timeout:?}"),
        }),
    }
}

/// Binds `conn`'s handshake to `stream` and `role`; a TLS stream whose keying material
/// cannot be exported is refused.
pub(crate) fn bind_connection(
    conn: &mut Connection,
    stream: &Stream,
    role: Role,
    peer: SocketAddr,
) -> Result<(), TransportError> {
    let binding = stream
        .binding(role)
        .map_err(|reason| TransportError::Tls { peer, reason })?;
    conn.bind(binding);
    Ok(())
}
