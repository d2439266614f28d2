//! [`HttpServer`]: the [`router`](super::router) served on a TCP socket in a tokio task.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::{router, HttpConfig};
use crate::api::Api;

/// How long [`HttpServer::shutdown`] waits for in-flight requests before it drops the
/// connections that are still open.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

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
}

/// The OpenAPI served on a socket. Serving runs in a tokio task from [`HttpServer::bind`]
/// until [`HttpServer::shutdown`]; dropping the server also asks it to stop (gracefully, in
/// the background).
#[derive(Debug)]
pub struct HttpServer {
    local_addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl HttpServer {
    /// Binds `addr` (port 0 picks a free port; see [`HttpServer::local_addr`]) and serves
    /// [`router`](super::router)`(api, config)` on it in a new task. Must be called within a
    /// tokio runtime.
    pub async fn bind(
        addr: SocketAddr,
        api: Arc<dyn Api>,
        config: HttpConfig,
    ) -> Result<HttpServer, HttpError> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| HttpError::Bind { addr, source })?;
        let local_addr = listener
            .local_addr()
            .map_err(|source| HttpError::Bind { addr, source })?;
        let app = router(api, config);
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            // A dropped sender (HttpServer dropped) stops the server too.
            let signal = async move {
                let _ = stopped.await;
            };
            if let Err(e) = axum::serve(listener, app)
                .with_graceful_shutdown(signal)
                .await
            {
                tracing::error!(%local_addr, error = %e, "the HTTP server stopped with an error");
            }
        });
        tracing::info!(%local_addr, "OpenAPI listening");
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

    /// Stops accepting connections, lets in-flight requests finish (up to
    /// [`SHUTDOWN_GRACE`]; then the remaining connections are dropped) and returns when the
    /// serving task has ended.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(mut task) = self.task.take() {
            if tokio::time::timeout(SHUTDOWN_GRACE, &mut task)
                .await
                .is_err()
            {
                tracing::warn!(
                    local_addr = %self.local_addr,
                    "HTTP requests still in flight after the shutdown grace; dropping them"
                );
                task.abort();
                let _ = task.await;
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
