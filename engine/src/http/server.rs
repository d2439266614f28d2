//! [`HttpServer`]: the [`router`](super::router) served on a TCP socket in a tokio task, as
//! plain HTTP or, with [`HttpConfig::tls`], HTTPS (rustls; the TLS handshake runs in the
//! connection's task, bounded by [`HttpConfig::header_read_timeout`]).
//!
//! ```text
//!   accept loop (one task)                      connection tasks (JoinSet, one per socket)
//!   ──────────────────────                      ─────────────────────────────────────────
//!   acquire a permit (≤ max_connections) ─┐
//!   accept ───────────────────────────────┴──▶  hyper http1 conn (header_read_timeout via
//!   source over its connection rate:             TokioTimer) serving the Router; holds the
//!     429 written, closed, permit back           permit until it ends
//!   reap finished connection tasks
//!   stop signal ─▶ stop accepting,
//!                  cancel `closing` ─────────▶  graceful_shutdown(): finish the in-flight
//!                  wait ≤ shutdown_grace         request, then close
//!                  abort the rest
//! ```
//!
//! # Invariants
//!
//! - At most [`HttpConfig::max_connections`] connection tasks exist: a task holds an owned
//!   semaphore permit, taken before `accept`, for its whole life (also when aborted, since
//!   the permit is dropped with the task's future).
//! - No connection task outlives the serving task: every one is in the serving task's
//!   `JoinSet`, which is drained (gracefully, then by abort after
//!   [`HttpConfig::shutdown_grace`]) before the serving task returns; and dropping a
//!   `JoinSet` aborts what is left in it should the serving task itself be aborted.
//! - A peer cannot hold a connection without sending a request head within
//!   [`HttpConfig::header_read_timeout`], idle keep-alive time included.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, OwnedSemaphorePermit, Semaphore};
use tokio::task::{JoinError, JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;

use ferrojob_transport::rate_limit::HandshakeRateLimiter;

use super::guard::{HttpMetrics, PeerAddr};
use super::{router_counting, HttpConfig};
use crate::api::Api;

/// Default [`HttpConfig::shutdown_grace`]: how long [`HttpServer::shutdown`] waits for
/// in-flight requests before it drops the connections that are still open.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Request head (request line and headers) read without finding its end, after which the
/// request is answered 431 and the connection closed: the last read may have brought up to
/// as much again, so a head is refused somewhere between 16 and 32 KiB (nginx's default
/// allows 1 KiB plus four 8 KiB header lines). It also bounds the parser's work on a hostile
/// head: the end of a head is searched byte by byte as it trickles in.
pub const MAX_REQUEST_HEAD_BYTES: usize = 16 * 1024;

/// Default [`ConnectionRateLimit::per_min`]: 6000 (100 a second, like the worker port).
pub const DEFAULT_CONNECTIONS_PER_MIN: u32 = 6000;
/// Default [`ConnectionRateLimit::burst`].
pub const DEFAULT_CONNECTION_BURST: u32 = 200;
/// Default [`ConnectionRateLimit::max_sources`].
pub const DEFAULT_CONNECTION_SOURCES: usize = 4096;

/// New HTTP connections a source address may open ([`HttpConfig::connection_rate`]): a
/// token bucket per source (an IPv4 address, an IPv6 /64), in a table of bounded size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionRateLimit {
    /// Connections a minute in the long run, at least 1.
    pub per_min: u32,
    /// Connections at once before the rate applies, at least 1.
    pub burst: u32,
    /// Most sources tracked at once, at least 1; past it the sources closest to a full
    /// bucket are forgotten first.
    pub max_sources: usize,
}

impl Default for ConnectionRateLimit {
    fn default() -> Self {
        ConnectionRateLimit {
            per_min: DEFAULT_CONNECTIONS_PER_MIN,
            burst: DEFAULT_CONNECTION_BURST,
            max_sources: DEFAULT_CONNECTION_SOURCES,
        }
    }
}

/// What a connection over its source's rate gets before it is closed (plain HTTP only): the
/// API's error shape, code `rate_limited`.
fn rate_limited_answer() -> Vec<u8> {
    let body = r#"{"error":{"code":"rate_limited","message":"too many connections from this address: retry later"}}"#;
    format!(
        "HTTP/1.1 429 Too Many Requests\r\nRetry-After: 1\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// How long the accept loop pauses after a failed `accept` (e.g. out of file descriptors),
/// so that a persistent error does not spin a core.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// Why the HTTP server could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HttpError {
    /// The address could not be bound (in use, not local, no permission).
    #[error("cannot listen for HTTP on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// A value of the [`HttpConfig`] is out of range.
    #[error("invalid HTTP config: {0}")]
    InvalidConfig(&'static str),
}

/// The OpenAPI served on a socket. Serving runs in a tokio task from [`HttpServer::bind`]
/// until [`HttpServer::shutdown`]; dropping the server also asks it to stop (gracefully, in
/// the background, with the same grace).
#[derive(Debug)]
pub struct HttpServer {
    local_addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

/// The connection limits of [`HttpConfig`], checked.
#[derive(Clone)]
struct Limits {
    header_read_timeout: Duration,
    write_stall_timeout: Duration,
    tls: Option<tokio_rustls::TlsAcceptor>,
    max_connections: usize,
    connection_rate: Option<ConnectionRateLimit>,
    shutdown_grace: Duration,
}

impl Limits {
    fn of(config: &HttpConfig) -> Result<Limits, HttpError> {
        if config.header_read_timeout.is_zero() {
            return Err(HttpError::InvalidConfig(
                "header_read_timeout must be more than zero",
            ));
        }
        if config.body_read_timeout.is_zero() {
            return Err(HttpError::InvalidConfig(
                "body_read_timeout must be more than zero",
            ));
        }
        if config.write_stall_timeout.is_zero() {
            return Err(HttpError::InvalidConfig(
                "write_stall_timeout must be more than zero",
            ));
        }
        if config.max_connections == 0 {
            return Err(HttpError::InvalidConfig(
                "max_connections must be at least 1",
            ));
        }
        if config.max_connections > Semaphore::MAX_PERMITS {
            return Err(HttpError::InvalidConfig("max_connections is too large"));
        }
        if let Some(rate) = config.connection_rate {
            if rate.per_min == 0 || rate.burst == 0 || rate.max_sources == 0 {
                return Err(HttpError::InvalidConfig(
                    "connection_rate needs per_min, burst and max_sources of at least 1",
                ));
            }
        }
        Ok(Limits {
            header_read_timeout: config.header_read_timeout,
            write_stall_timeout: config.write_stall_timeout,
            tls: config.tls.as_ref().map(|t| t.acceptor()),
            max_connections: config.max_connections,
            connection_rate: config.connection_rate,
            shutdown_grace: config.shutdown_grace,
        })
    }
}

impl HttpServer {
    /// Binds `addr` (port 0 picks a free port; see [`HttpServer::local_addr`]) and serves
    /// [`router`](super::router)`(api, config)` on it in a new task, with the connection
    /// limits of `config`. Must be called within a tokio runtime.
    pub async fn bind(
        addr: SocketAddr,
        api: Arc<dyn Api>,
        config: HttpConfig,
    ) -> Result<HttpServer, HttpError> {
        Limits::of(&config)?;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| HttpError::Bind { addr, source })?;
        HttpServer::serve(listener, api, config)
    }

    /// [`HttpServer::bind`] on a socket already bound (so that its address is known before
    /// the server starts, e.g. to advertise it). Must be called within a tokio runtime.
    pub fn serve(
        listener: TcpListener,
        api: Arc<dyn Api>,
        config: HttpConfig,
    ) -> Result<HttpServer, HttpError> {
        let limits = Limits::of(&config)?;
        let local_addr = listener.local_addr().map_err(|source| HttpError::Bind {
            addr: SocketAddr::from(([0, 0, 0, 0], 0)),
            source,
        })?;
        let tls = config.tls.is_some();
        let metrics = Arc::new(HttpMetrics::default());
        let app = router_counting(api, config, Arc::clone(&metrics));
        let (stop, stopped) = oneshot::channel::<()>();
        let accepting = Accepting {
            listener,
            local_addr,
            metrics,
        };
        let task = tokio::spawn(serve(accepting, app, limits, stopped));
        tracing::info!(%local_addr, tls, "OpenAPI listening");
        Ok(HttpServer {
            local_addr,
            stop: Some(stop),
            task: Some(task),
        })
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting connections, asks every open connection to close once its in-flight
    /// request is answered (idle keep-alive connections close at once), drops the ones still
    /// open after [`HttpConfig::shutdown_grace`], and returns when every connection task and
    /// the serving task have ended.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            if let Err(e) = task.await {
                tracing::error!(local_addr = %self.local_addr, error = %e, "the HTTP serving task failed");
            }
        }
        tracing::info!(local_addr = %self.local_addr, "OpenAPI stopped");
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// The socket a [`HttpServer`] accepts on, and the counters it shares with its router.
struct Accepting {
    listener: TcpListener,
    local_addr: SocketAddr,
    metrics: Arc<HttpMetrics>,
}

/// The serving task: accepts until `stopped` resolves (sent or its sender dropped), then
/// shuts the connections down.
async fn serve(
    accepting: Accepting,
    app: Router,
    limits: Limits,
    mut stopped: oneshot::Receiver<()>,
) {
    let Accepting {
        listener,
        local_addr,
        metrics,
    } = accepting;
    let mut rate = limits
        .connection_rate
        .map(|l| HandshakeRateLimiter::new(l.per_min, l.burst, l.max_sources));
    let refusal = rate_limited_answer();
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let closing = CancellationToken::new();
    let mut conns: JoinSet<()> = JoinSet::new();
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(MAX_REQUEST_HEAD_BYTES)
        .keep_alive(true);
    loop {
        tokio::select! {
            biased;
            _ = &mut stopped => break,
            Some(joined) = conns.join_next(), if !conns.is_empty() => reaped(joined),
            (permit, accepted) = accept_within_limit(&listener, &permits) => {
                let Some(permit) = permit else { break };
                match accepted {
                    Ok((stream, peer)) => {
                        let now = std::time::Instant::now();
                        if rate.as_mut().is_some_and(|r| !r.allow(peer.ip(), now)) {
                            metrics.connection_rate_limited();
                            tracing::debug!(%peer, "HTTP connection over its source's rate closed");
                            if limits.tls.is_none() {
                                // A fresh socket's send buffer is empty: this does not block,
                                // and a short write only shortens the courtesy.
                                let _ = stream.try_write(&refusal);
                            }
                            drop(permit);
                            continue;
                        }
                        let conn = connection(&http, stream, peer, app.clone(), closing.clone(), permit, &limits);
                        conns.spawn(conn);
                    }
                    Err(e) => {
                        tracing::warn!(%local_addr, error = %e, "HTTP accept failed");
                        drop(permit);
                        tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    }
                }
            }
        }
    }
    drop(listener);
    closing.cancel();
    let open = conns.len();
    if open > 0 {
        tracing::debug!(%local_addr, open, "closing HTTP connections");
    }
    let drained = tokio::time::timeout(limits.shutdown_grace, async {
        while let Some(joined) = conns.join_next().await {
            reaped(joined);
        }
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            %local_addr,
            open = conns.len(),
            "HTTP connections still open after the shutdown grace; dropping them"
        );
        conns.abort_all();
        while let Some(joined) = conns.join_next().await {
            if let Err(e) = joined {
                if !e.is_cancelled() {
                    reaped(Err(e));
                }
            }
        }
    }
}

/// Waits for a connection permit, then for a connection. `None` for the permit means the
/// semaphore was closed (it never is; treated as a stop). Cancel-safe: dropped before a
/// connection arrives, it gives the permit back and accepts nothing.
async fn accept_within_limit(
    listener: &TcpListener,
    permits: &Arc<Semaphore>,
) -> (
    Option<OwnedSemaphorePermit>,
    std::io::Result<(TcpStream, SocketAddr)>,
) {
    match Arc::clone(permits).acquire_owned().await {
        Ok(permit) => (Some(permit), listener.accept().await),
        Err(_) => (
            None,
            Err(std::io::Error::other("connection semaphore closed")),
        ),
    }
}

/// Logs a connection task that did not end normally.
fn reaped(joined: Result<(), JoinError>) {
    if let Err(e) = joined {
        tracing::error!(error = %e, "an HTTP connection task failed");
    }
}

/// One connection: TLS first if configured, then hyper's HTTP/1 state machine over
/// `stream`, serving `app`, until the peer closes, a timeout closes it, or `closing` asks it
/// to finish gracefully. Holds `permit` for its whole life.
fn connection(
    http: &http1::Builder,
    stream: TcpStream,
    peer: SocketAddr,
    app: Router,
    closing: CancellationToken,
    permit: OwnedSemaphorePermit,
    limits: &Limits,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    if let Err(e) = stream.set_nodelay(true) {
        tracing::debug!(%peer, error = %e, "cannot set TCP_NODELAY");
    }
    let http = http.clone();
    let tls = limits.tls.clone();
    let handshake_timeout = limits.header_read_timeout;
    // Under TLS too: a peer that stops reading stalls the TLS layer's socket writes.
    let stream = super::stall::WriteStall::new(stream, limits.write_stall_timeout);
    async move {
        let _permit = permit;
        let Some(acceptor) = tls else {
            return serve_http(&http, TokioIo::new(stream), peer, app, closing).await;
        };
        let handshake = tokio::time::timeout(handshake_timeout, acceptor.accept(stream));
        let stream = tokio::select! {
            r = handshake => r,
            () = closing.cancelled() => return,
        };
        match stream {
            Ok(Ok(stream)) => serve_http(&http, TokioIo::new(stream), peer, app, closing).await,
            Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
            Err(_) => tracing::debug!(%peer, "TLS handshake not complete in time"),
        }
    }
}

/// Serves HTTP/1 on `io` until it ends or `closing` asks it to finish gracefully.
async fn serve_http<I>(
    http: &http1::Builder,
    io: I,
    peer: SocketAddr,
    app: Router,
    closing: CancellationToken,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    // Every request carries its peer's address (for the failed sign-in count of `guard`).
    let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        req.extensions_mut().insert(PeerAddr(peer));
        let mut app = app.clone();
        tower_service::Service::call(&mut app, req)
    });
    let conn = http.serve_connection(io, service);
    let mut conn = std::pin::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        () = closing.cancelled() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    // Client-side failures (timeouts, resets, bad bytes) are not the server's errors.
    if let Err(e) = result {
        tracing::debug!(%peer, error = %e, "HTTP connection ended with an error");
    }
}
