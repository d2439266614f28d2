//! The outermost middleware: turns a handler panic into a 500, counts responses by class and
//! logs every request at debug.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures::FutureExt;

use axum::http::header::AUTHORIZATION;
use axum::http::Method;

use super::failure::{Failure, LoginFailed};
use super::rate::retry_after_secs;
use super::Shared;
use crate::api::ApiError;

/// Request counters, appended to `GET /metrics` (relaxed atomics: independent counters that
/// are only ever summed).
#[derive(Debug, Default)]
pub(crate) struct HttpMetrics {
    ok: AtomicU64,
    client_errors: AtomicU64,
    server_errors: AtomicU64,
    panics: AtomicU64,
    rate_limited: AtomicU64,
    login_failures: AtomicU64,
    login_throttled: AtomicU64,
    connections_rate_limited: AtomicU64,
    forwarded: AtomicU64,
    forward_failures: AtomicU64,
}

/// The address of the peer a request came from (put in its extensions by
/// [`HttpServer`](super::HttpServer)).
#[derive(Debug, Clone, Copy)]
pub(crate) struct PeerAddr(pub(crate) std::net::SocketAddr);

impl HttpMetrics {
    /// Counts a request answered 429 by the rate limit.
    pub(crate) fn rate_limited(&self) {
        self.rate_limited.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a request forwarded to its app's owner and answered by it.
    pub(crate) fn forwarded(&self) {
        self.forwarded.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a request that could not be forwarded to its app's owner (answered 503).
    pub(crate) fn forward_failed(&self) {
        self.forward_failures.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a connection closed on arrival for its source's connection rate.
    pub(crate) fn connection_rate_limited(&self) {
        self.connections_rate_limited
            .fetch_add(1, Ordering::Relaxed);
    }

    fn record(&self, status: u16) {
        let counter = match status {
            500.. => &self.server_errors,
            400.. => &self.client_errors,
            _ => &self.ok,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Prometheus text (version 0.0.4) of the counters.
    pub(crate) fn render(&self) -> String {
        let ok = self.ok.load(Ordering::Relaxed);
        let client = self.client_errors.load(Ordering::Relaxed);
        let server = self.server_errors.load(Ordering::Relaxed);
        let panics = self.panics.load(Ordering::Relaxed);
        let limited = self.rate_limited.load(Ordering::Relaxed);
        let failures = self.login_failures.load(Ordering::Relaxed);
        let throttled = self.login_throttled.load(Ordering::Relaxed);
        let refused = self.connections_rate_limited.load(Ordering::Relaxed);
        let forwarded = self.forwarded.load(Ordering::Relaxed);
        let forward_failures = self.forward_failures.load(Ordering::Relaxed);
        format!(
            "# HELP ferrojob_http_responses_total HTTP responses of the OpenAPI, by status class.\n\
             # TYPE ferrojob_http_responses_total counter\n\
             ferrojob_http_responses_total{{class=\"2xx\"}} {ok}\n\
             ferrojob_http_responses_total{{class=\"4xx\"}} {client}\n\
             ferrojob_http_responses_total{{class=\"5xx\"}} {server}\n\
             # HELP ferrojob_http_handler_panics_total OpenAPI handlers that panicked (answered 500).\n\
             # TYPE ferrojob_http_handler_panics_total counter\n\
             ferrojob_http_handler_panics_total {panics}\n\
             # HELP ferrojob_http_rate_limited_total OpenAPI requests answered 429 because their app (or the admin) exceeded its request rate.\n\
             # TYPE ferrojob_http_rate_limited_total counter\n\
             ferrojob_http_rate_limited_total {limited}\n\
             # HELP ferrojob_http_login_failures_total Requests whose credential was refused (OpenAPI tokens, console sign-ins).\n\
             # TYPE ferrojob_http_login_failures_total counter\n\
             ferrojob_http_login_failures_total {failures}\n\
             # HELP ferrojob_http_login_throttled_total Requests with a credential answered 429 because their source address failed too many sign-ins.\n\
             # TYPE ferrojob_http_login_throttled_total counter\n\
             ferrojob_http_login_throttled_total {throttled}\n\
             # HELP ferrojob_http_connections_rate_limited_total HTTP connections closed on arrival because their source address opened too many.\n\
             # TYPE ferrojob_http_connections_rate_limited_total counter\n\
             ferrojob_http_connections_rate_limited_total {refused}\n\
             # HELP ferrojob_http_forwarded_total Requests of apps another server of the cluster owns, forwarded to it and answered.\n\
             # TYPE ferrojob_http_forwarded_total counter\n\
             ferrojob_http_forwarded_total {forwarded}\n\
             # HELP ferrojob_http_forward_failures_total Requests of apps another server owns answered 503 because the owner was unknown, unreachable or too slow.\n\
             # TYPE ferrojob_http_forward_failures_total counter\n\
             ferrojob_http_forward_failures_total {forward_failures}\n"
        )
    }
}

/// [`HttpConfig::body_read_timeout`](super::HttpConfig::body_read_timeout), carried to the
/// body readers of `extract` in the request's extensions.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BodyReadTimeout(pub(crate) Duration);

fn panic_message(panic: &(dyn std::any::Any + Send)) -> &str {
    if let Some(s) = panic.downcast_ref::<&'static str>() {
        s
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s
    } else {
        "(no message)"
    }
}

/// Whether `req` presents a credential: a bearer header, or the console's sign-in form.
fn presents_credential(req: &Request) -> bool {
    req.headers().contains_key(AUTHORIZATION)
        || (req.method() == Method::POST && req.uri().path() == "/login")
}

/// Runs the rest of the stack for `req`, catching a panic as a 500 JSON error; refuses a
/// credential from a source past its failed sign-ins, and counts the refused ones.
pub(crate) async fn guard(State(shared): State<Shared>, mut req: Request, next: Next) -> Response {
    req.extensions_mut()
        .insert(BodyReadTimeout(shared.body_read_timeout));
    // A request forwarded by a server of the cluster counts as its client's from here on.
    super::forward::accept_forwarded(&shared, &mut req);
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let started = Instant::now();
    let source = req.extensions().get::<PeerAddr>().map(|p| p.0.ip());
    let limit = shared.failures.as_ref().zip(source);
    if let Some((failures, ip)) = limit {
        if presents_credential(&req) {
            if let Some(wait_ms) = failures.blocked(ip, shared.clock.now_ms()) {
                shared
                    .metrics
                    .login_throttled
                    .fetch_add(1, Ordering::Relaxed);
                tracing::debug!(%ip, path, "credential refused unchecked: too many failed sign-ins");
                let response = Failure::rate_limited(retry_after_secs(wait_ms)).into_response();
                shared.metrics.record(response.status().as_u16());
                return response;
            }
        }
    }
    let response = match AssertUnwindSafe(next.run(req)).catch_unwind().await {
        Ok(response) => response,
        Err(panic) => {
            shared.metrics.panics.fetch_add(1, Ordering::Relaxed);
            tracing::error!(
                %method,
                path,
                panic = panic_message(panic.as_ref()),
                "an OpenAPI handler panicked; answered 500"
            );
            Failure::from(ApiError::internal(
                "the server failed while handling this request; see its log",
            ))
            .into_response()
        }
    };
    let status = response.status().as_u16();
    shared.metrics.record(status);
    if response.extensions().get::<LoginFailed>().is_some() {
        shared
            .metrics
            .login_failures
            .fetch_add(1, Ordering::Relaxed);
        if let Some((failures, ip)) = limit {
            failures.record(ip, shared.clock.now_ms());
        }
    }
    let elapsed_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
    if status >= 500 {
        tracing::warn!(%method, path, status, elapsed_us, "http request failed on the server side");
    } else {
        tracing::debug!(%method, path, status, elapsed_us, "http request");
    }
    response
}
