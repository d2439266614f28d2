//! The OpenAPI over HTTP/JSON: an axum router in front of an [`Arc<dyn Api>`](Api), and a
//! server that runs it on a socket.
//!
//! ```text
//!   TCP ─▶ hyper ─▶ guard (catch panics, count, log) ─▶ DefaultBodyLimit ─▶ route
//!                                                                            │
//!          route handler: authorize (bearer) ─▶ parse ids, query, JSON ─▶ Api::method
//!                    └─ rate (429 + Retry-After) │ any failure               │
//!                                  ▼                                          ▼
//!                 {"error":{"code","message"}} + status          JSON answer + status
//! ```
//!
//! - [`router`] builds the routes of the table in [`crate::api`]; [`HttpServer`] binds a
//!   socket and serves the router with hyper's HTTP/1 connection builder, one task per
//!   connection: a header-read timeout (which also bounds idle keep-alive time), at most
//!   [`HttpConfig::max_connections`] at once, new connections per source address
//!   ([`HttpConfig::connection_rate`], refused on arrival), and a shutdown that closes every connection
//!   gracefully and aborts the stragglers after [`HttpConfig::shutdown_grace`].
//! - `auth` holds bearer parsing, the constant-time comparisons and the rules of the admin
//!   token, API tokens and their roles (one check shared with the console's sign-in); an
//!   authorized request then takes a token from its app's bucket (`rate`,
//!   [`HttpConfig::api_rate`]). `failures` counts refused credentials per source address
//!   ([`HttpConfig::failed_logins`]); the guard refuses a source past its allowance.
//! - `apps` holds the app and token routes; `history` the version, rollback and audit
//!   routes; `audit` the route layer that records every successful change and command of
//!   an app in its audit trail (who, from where, what).
//! - `extract` turns path ids, query strings and bodies into `api::types`, every failure
//!   into a 400 (or 413). Run routes (`POST .../jobs/{id}/run`, `POST .../workflows/{id}/run`)
//!   take an empty body as `{}`; every other body route requires a JSON body.
//! - `forward` makes every server of a cluster answer every app's routes: the requests of an
//!   app another server owns are forwarded to it, one hop at most, after the token was
//!   checked here ([`HttpConfig::forwarding`]; the design and its trust rules are in that
//!   module's docs).
//! - `console` serves the web console: HTML pages at `/` over the same [`Api`], with its own
//!   sessions (cookie + CSRF token) instead of bearer tokens.
//! - `handlers` holds one function per job, instance and app route, `workflow` one per
//!   workflow and workflow instance route, `calendar` one per calendar route; `guard` the
//!   outer middleware.
//! - `routes` is the route table: every route is added there, and the table is what the
//!   tests compare with the OpenAPI document `openapi.json` (served at `GET /v1/openapi.json`
//!   by `openapi`, which also holds the document's other checks).
//!
//! # Auth
//!
//! `Authorization: Bearer <token>`, checked before the body is read:
//!
//! | route | accepted token | otherwise |
//! |---|---|---|
//! | `GET /healthz`, `GET /metrics`, `GET /v1/openapi.json`, `POST /v1/validate` | none needed | – |
//! | `POST /v1/apps`, `GET /v1/apps`, `DELETE /v1/apps/{app}` (admin) | the admin token | no token 401, any other token 403 |
//! | `GET /v1/apps/{app}/...`, `GET /v1/apps/{app}` | the admin token, or an API token of `{app}` with role `read` or more | 401 (also for an unknown app, so existence does not leak); with the admin token an unknown app is 404 |
//! | runs, stops, cancels, retries, enable, disable, mark-success, alarm channel tests | … role `operate` or more | 401 as above; a token of a lower role 403 |
//! | creating, updating, copying, deleting, rolling back jobs, workflows, alarm channels and calendars; tokens; `rotate-secret`; the audit trail | … role `admin` | 401 as above; a token of a lower role 403 |
//! | the web console (`/`, `/login`, `/jobs`, `/instances`, `/workers`, ...) | a session cookie from signing in with the same tokens (HTML pages; see `console`), the role checked on every form | 303 to `/login`; a form without its CSRF token, or beyond the session's role, 403 |
//!
//! With [`HttpConfig::app_secret_tokens`] an app's worker secret is also an `admin` token
//! of that app (compatibility); without it the secret is refused like any wrong token.
//!
//! `/v1/validate` is open: it reads no server state and its work is bounded (at most
//! [`MAX_VALIDATE_COUNT`](crate::api::MAX_VALIDATE_COUNT) times, a body within the limit).
//!
//! # Status codes
//!
//! | situation | status | `code` |
//! |---|---|---|
//! | created (`POST /v1/apps`, `POST .../jobs`, `POST .../workflows`, `POST .../tokens`) | 201 | – |
//! | `DELETE .../jobs/{id}`, `DELETE .../workflows/{id}`, `DELETE /v1/apps/{app}`, `DELETE .../tokens/{id}`, `DELETE .../calendars/{name}` | 204, empty body | – |
//! | every other success | 200 | – |
//! | malformed JSON, a body that is not a JSON object, wrong field type, unknown field, empty body, missing or non-JSON `Content-Type`, bad query string, non-numeric id | 400 | `invalid_argument` |
//! | no or malformed `Authorization: Bearer`, or a token that is neither the admin token nor a live token of the app (also when the app does not exist) | 401 | `unauthorized` |
//! | a token other than the admin token on an admin route; a token whose role is below the route's | 403 | `forbidden` |
//! | a request with a credential from a source past its failed sign-ins ([`HttpConfig::failed_logins`]; before it is checked) | 429 + `Retry-After` | `rate_limited` |
//! | unknown route; unknown app (with the admin token), job, instance, workflow, workflow instance or node | 404 | `not_found` |
//! | a method the route does not have | 405 (+ `Allow`) | `invalid_argument` |
//! | a body larger than [`HttpConfig::max_body_bytes`]; a batch of runs of more than [`MAX_RUN_BATCH`](crate::api::MAX_RUN_BATCH) runs, or of more runs than its app's rate burst | 413 | `payload_too_large` |
//! | an authorized request beyond its app's [`HttpConfig::api_rate`] (before its body is read; a batch of N runs takes N tokens, the other N−1 after its body is read) | 429 + `Retry-After` (seconds) | `rate_limited` |
//! | a body not complete within [`HttpConfig::body_read_timeout`] | 408 (connection closed) | `invalid_argument` |
//! | a new connection from a source past its [`HttpConfig::connection_rate`] (written on arrival, before any request is read; plain HTTP only) | 429 + `Retry-After: 1` (connection closed) | `rate_limited` |
//! | an [`ApiError`](crate::api::ApiError) from the [`Api`] | its [`ErrorCode::http_status`](crate::api::ErrorCode::http_status) (a 503 with `Retry-After: 1`) | its code |
//! | on a cluster, an app whose owner is not known now, cannot be reached or does not answer within [`Forwarding::timeout`] (after the token was checked) | 503 + `Retry-After: 1` | `unavailable` |
//! | a panic in a handler (a bug) | 500 | `internal` |
//!
//! # Invariants
//!
//! - Bad input never produces a 5xx: every extractor failure is mapped to a 4xx here, and
//!   5xx answers come only from the [`Api`] (Unavailable, Internal) or from a caught panic.
//! - A panicking handler answers 500 and the server keeps serving (the `guard` middleware
//!   catches the unwind; nothing here holds a lock across a handler).
//! - A request is authorized before its body is read: an unauthenticated caller cannot make
//!   the server buffer a body. The one exception is the console's `POST /login`, whose body
//!   carries the credentials (within the same body limit and read timeout).
//! - Secrets never reach a log line: the guard logs method, path and status only.

#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
#![cfg_attr(
    test,
    allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)
)]

mod alarm;
mod apps;
mod audit;
mod auth;
mod calendar;
mod console;
mod extract;
mod failure;
mod failures;
mod forward;
mod guard;
mod handlers;
mod history;
mod idempotency;
mod openapi;
mod rate;
mod routes;
mod server;
mod stall;
mod workflow;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::Router;

use crate::api::Api;
use crate::clock::{Clock, SystemClock};

pub use failures::{
    FailedLoginLimit, DEFAULT_FAILED_LOGINS_PER_MIN, DEFAULT_FAILED_LOGIN_BURST,
    DEFAULT_FAILED_LOGIN_SOURCES,
};
pub use forward::{
    AppHome, AppRouting, Forwarding, DEFAULT_FORWARD_TIMEOUT, FORWARDED_HEADER, MIN_KEY_LEN,
    SERVED_BY_HEADER,
};
pub use openapi::OPENAPI_JSON;
pub use rate::{ApiRateLimit, DEFAULT_API_BURST, DEFAULT_API_RATE_KEYS, DEFAULT_API_RATE_PER_SEC};
pub use server::{
    ConnectionRateLimit, HttpError, HttpServer, DEFAULT_CONNECTIONS_PER_MIN,
    DEFAULT_CONNECTION_BURST, DEFAULT_CONNECTION_SOURCES, MAX_REQUEST_HEAD_BYTES, SHUTDOWN_GRACE,
};

/// Default [`HttpConfig::max_body_bytes`]: 1 MiB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 1 << 20;

/// Default [`HttpConfig::header_read_timeout`]: 10 s.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Default [`HttpConfig::body_read_timeout`]: 30 s.
pub const DEFAULT_BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Default [`HttpConfig::write_stall_timeout`]: 30 s.
pub const DEFAULT_WRITE_STALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Default [`HttpConfig::max_connections`].
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;

/// How the HTTP layer authorizes and limits requests and connections.
///
/// Build one with [`HttpConfig::new`] and then set the fields to change, or with
/// `HttpConfig { max_body_bytes: 4096, ..HttpConfig::new(token) }`; a struct literal that
/// names every field breaks whenever a field is added.
#[derive(Clone)]
pub struct HttpConfig {
    /// The bearer token of admin routes; it also opens every app's routes. An empty token
    /// opens nothing (no request can present an empty bearer token).
    pub admin_token: String,
    /// Largest request body accepted, bytes; larger bodies are answered 413. Default
    /// [`DEFAULT_MAX_BODY_BYTES`].
    pub max_body_bytes: usize,
    /// How long a connection may take to send a complete request head (request line and
    /// headers), counted from when the server starts waiting for it. This also bounds how
    /// long an idle keep-alive connection stays open between two requests: the clock starts
    /// again as soon as the previous answer is written. A connection past it is closed
    /// without an answer. Must be more than zero. Default
    /// [`DEFAULT_HEADER_READ_TIMEOUT`].
    pub header_read_timeout: Duration,
    /// How long a route that takes a body waits for all of it, counted from when it starts
    /// reading (after authorization). Past it the request is answered 408 (code
    /// `invalid_argument`) and the connection closed, so a client that trickles a body cannot
    /// hold a connection either. Must be more than zero. Default
    /// [`DEFAULT_BODY_READ_TIMEOUT`].
    pub body_read_timeout: Duration,
    /// How long a write to a connection may wait for its peer to read before the connection
    /// is closed, so a client that sends requests and never reads the answers cannot hold a
    /// connection. Must be more than zero. Default [`DEFAULT_WRITE_STALL_TIMEOUT`].
    pub write_stall_timeout: Duration,
    /// Most connections served at once. At the limit the server stops accepting (new
    /// connections wait in the kernel's listen backlog) until one closes. Must be at least 1.
    /// Default [`DEFAULT_MAX_CONNECTIONS`].
    pub max_connections: usize,
    /// New connections per source address, as a token bucket checked when a connection is
    /// accepted: past it the connection is answered `429 Too Many Requests` (plain HTTP;
    /// closed without a word under TLS) and closed before any request is read, so a source
    /// that reconnects in a loop costs an accept and a close, not a request parse. Counted
    /// in `ferrojob_http_connections_rate_limited_total`. `None` (the default here; the
    /// bundled server sets [`ConnectionRateLimit::default`]) = no limit.
    pub connection_rate: Option<ConnectionRateLimit>,
    /// On shutdown, how long connections get to finish their in-flight request after they
    /// were asked to close; the ones still open then are dropped. Default
    /// [`SHUTDOWN_GRACE`].
    pub shutdown_grace: Duration,
    /// Mark the web console's cookies `Secure`: set it when browsers reach this server over
    /// TLS (a TLS-terminating proxy in front of it). Default false.
    pub secure_cookies: bool,
    /// Requests a second per app (and for the admin token), as a token bucket: beyond it an
    /// authorized request is answered 429 `rate_limited` with `Retry-After` (see `rate`).
    /// `None` (the default here; the bundled server sets [`ApiRateLimit::default`]) = no limit.
    pub api_rate: Option<ApiRateLimit>,
    /// Failed sign-ins allowed per source address (see `failures`): beyond them a request
    /// that presents a credential is answered 429 before it is checked. Counted only for
    /// connections served by [`HttpServer`] (which knows the peer's address). `None` (the
    /// default here; the bundled server sets [`FailedLoginLimit::default`]) = no limit.
    pub failed_logins: Option<FailedLoginLimit>,
    /// Accept an app's worker secret as an `admin` API token of that app (and in the
    /// console's sign-in): the compatibility mode for clients written before API tokens.
    /// Default false: the worker secret opens only the worker port.
    pub app_secret_tokens: bool,
    /// The time the rate limits and token expiry read. Default [`SystemClock`].
    pub clock: Arc<dyn Clock>,
    /// Serve HTTPS with this certificate and key (the TLS handshake must complete within
    /// `header_read_timeout`); `None` serves plain HTTP. Default `None`.
    pub tls: Option<ferrojob_transport::tls::ServerTls>,
    /// On a server of a cluster: forward the requests of the apps another server owns to it
    /// (see `forward`). `None` (the default): every app is served here.
    pub forwarding: Option<Forwarding>,
}

impl HttpConfig {
    /// A config with `admin_token` and every limit at its default.
    pub fn new(admin_token: impl Into<String>) -> HttpConfig {
        HttpConfig {
            admin_token: admin_token.into(),
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            body_read_timeout: DEFAULT_BODY_READ_TIMEOUT,
            write_stall_timeout: DEFAULT_WRITE_STALL_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            connection_rate: None,
            shutdown_grace: SHUTDOWN_GRACE,
            secure_cookies: false,
            api_rate: None,
            failed_logins: None,
            app_secret_tokens: false,
            clock: Arc::new(SystemClock),
            tls: None,
            forwarding: None,
        }
    }
}

impl std::fmt::Debug for HttpConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpConfig")
            .field("admin_token", &"<redacted>")
            .field("max_body_bytes", &self.max_body_bytes)
            .field("header_read_timeout", &self.header_read_timeout)
            .field("body_read_timeout", &self.body_read_timeout)
            .field("write_stall_timeout", &self.write_stall_timeout)
            .field("max_connections", &self.max_connections)
            .field("connection_rate", &self.connection_rate)
            .field("shutdown_grace", &self.shutdown_grace)
            .field("secure_cookies", &self.secure_cookies)
            .field("api_rate", &self.api_rate)
            .field("failed_logins", &self.failed_logins)
            .field("app_secret_tokens", &self.app_secret_tokens)
            .field("tls", &self.tls.is_some())
            .field("forwarding", &self.forwarding)
            .finish_non_exhaustive()
    }
}

/// What every handler shares: the [`Api`], the accepted credentials and the request
/// counters.
#[derive(Clone)]
pub(crate) struct Shared {
    pub(crate) api: Arc<dyn Api>,
    pub(crate) credentials: auth::Credentials,
    /// Failed sign-ins per source, when limited.
    pub(crate) failures: Option<Arc<failures::FailedLogins>>,
    pub(crate) metrics: Arc<guard::HttpMetrics>,
    pub(crate) body_read_timeout: Duration,
    /// The per-principal request rate, when limited.
    pub(crate) rate: Option<Arc<rate::RateLimiter>>,
    pub(crate) clock: Arc<dyn Clock>,
    /// `Idempotency-Key` answers of the create and run routes.
    pub(crate) idempotency: Arc<idempotency::Idempotency>,
    /// On a server of a cluster: forwarding to the apps' owners.
    pub(crate) forward: Option<Arc<forward::Forwarder>>,
}

/// The router of every OpenAPI route (see the table in [`crate::api`]), `GET /healthz`,
/// `GET /metrics`, `GET /v1/openapi.json` ([`OPENAPI_JSON`]) and the web console's pages (at
/// `/`, outside `/v1`), with JSON errors for unknown routes (404) and methods (405), the body
/// limit of `config` and a guard that turns a handler panic into a 500.
pub fn router(api: Arc<dyn Api>, config: HttpConfig) -> Router {
    router_counting(api, config, Arc::default())
}

/// [`router`], counting its requests in `metrics` (which [`HttpServer`] shares with its
/// accept loop).
fn router_counting(
    api: Arc<dyn Api>,
    config: HttpConfig,
    metrics: Arc<guard::HttpMetrics>,
) -> Router {
    let shared = Shared {
        api,
        credentials: auth::Credentials {
            admin_token: Arc::from(config.admin_token),
            app_secret_tokens: config.app_secret_tokens,
        },
        failures: config
            .failed_logins
            .map(|l| Arc::new(failures::FailedLogins::new(l))),
        metrics,
        body_read_timeout: config.body_read_timeout,
        rate: config.api_rate.map(|l| Arc::new(rate::RateLimiter::new(l))),
        clock: config.clock,
        idempotency: Arc::new(idempotency::Idempotency::default()),
        forward: config
            .forwarding
            .map(|f| Arc::new(forward::Forwarder::new(f))),
    };
    routes::routes()
        .into_router()
        // On the API's routes only (it reads the matched route): the audit trail.
        .route_layer(axum::middleware::from_fn_with_state(
            shared.clone(),
            audit::record,
        ))
        // Outside the audit trail: a request forwarded to its app's owner is recorded there.
        .route_layer(axum::middleware::from_fn_with_state(
            shared.clone(),
            forward::route,
        ))
        .merge(console::router(
            Arc::clone(&shared.api),
            shared.credentials.clone(),
            Arc::clone(&shared.clock),
            config.secure_cookies,
        ))
        // After every route: it is installed on the routes that exist when it is called.
        .method_not_allowed_fallback(handlers::method_not_allowed)
        .fallback(handlers::not_found)
        .layer(DefaultBodyLimit::max(config.max_body_bytes))
        .layer(axum::middleware::from_fn_with_state(
            shared.clone(),
            guard::guard,
        ))
        .with_state(shared)
}
