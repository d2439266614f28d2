//! A server of a cluster answers every app's routes: the requests of an app it does not act
//! for are forwarded, whole, to the server that does (its *owner*), and the owner's answer
//! is passed back.
//!
//! ```text
//!   client ──▶ B: guard (failed sign-ins of the client's address)
//!                 └─ forward: app acted for here? ── yes ──▶ the route's handler
//!                       │ no: authenticate the token here (a refusal is 401, counted at B)
//!                       ├─ owner known (Homes) ──▶ A: same request + `Ferrojob-Forwarded`
//!                       │                             guard: key checked, source = the client
//!                       │                             forward: marked, never forwarded again
//!                       │                             the route's handler (token checked again)
//!                       └─ owner unknown, unreachable, or too slow ──▶ 503 + Retry-After
//! ```
//!
//! # Why forward everything, reads included
//!
//! An app's state lives in two places: the database, and the memory of its owner, which is
//! ahead of the database (a running instance is never written as RUNNING; the workers of an
//! app are connected to its owner only; the statistics are counted there). A read served from
//! the database by another server would show an instance queued that runs, no workers, and no
//! statistics. Forwarding the whole request keeps every answer the owner's, so every server
//! answers exactly what the owner would, at the cost of one more hop (measured in
//! BENCHMARKS.md, "A request forwarded to the owner") and of the owner's work for reads.
//!
//! # Trust
//!
//! The forwarding server checks the caller's token itself before forwarding (tokens are in
//! the shared database), so a wrong token is refused where it arrived and counted against the
//! client's address there. It then forwards the request with its `Authorization` header, and
//! the owner checks the token again, role and rate included: the owner trusts no
//! authorization it did not check itself.
//!
//! What the owner takes from the forwarder is only where the request came from: the
//! `Ferrojob-Forwarded: for=<client address>; key=<key>` header. `key` is the cluster's
//! forwarding key, a random secret every server reads from the database
//! (`cluster_settings`) and no client knows. A request whose header carries the key is
//! served at the owner as coming from the client's address (for the failed sign-in count and
//! the audit trail) and is never forwarded again, so a request makes one hop at most. A
//! header without the right key counts for nothing: the request is an ordinary one from its
//! peer (and the header is dropped). The key crosses the network like the bearer tokens do:
//! servers of a cluster talk over a network they trust, or over loopback.
//!
//! # Limits
//!
//! - The body is read here first (within the body limit and read timeout, 413 or 408 here),
//!   then sent; the owner's answer must begin within [`Forwarding::timeout`], else 503. Its
//!   body is streamed back as it comes.
//! - An owner that is unknown (the partition has no live holder, or its holder advertised no
//!   HTTP URL), that cannot be connected to, or that does not answer in time is a 503
//!   `unavailable` with `Retry-After: 1`: ownership moves within a lease, and the request
//!   was not delivered, or its answer lost, so a retry may find the new owner.
//! - Forwarding speaks plain HTTP (`http://` URLs); an owner whose advertised URL is
//!   `https://` is answered 503 like an unreachable one.
//! - The web console's pages are not forwarded: a console page of an app another server
//!   owns shows the owner's refusal. Sign in on the owner.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{FromRequestParts, RawPathParams, Request, State};
use axum::http::header::{self, HeaderName, HeaderValue};
use axum::http::{HeaderMap, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use super::auth::{bearer, ct_eq, Denied};
use super::failure::Failure;
use super::guard::PeerAddr;
use super::Shared;
use crate::api::ApiError;

/// The header that marks a request forwarded by a server of the cluster (see the module
/// docs): `for=<client IP address>; key=<the cluster's forwarding key>`.
pub const FORWARDED_HEADER: &str = "ferrojob-forwarded";

/// The header every answer to an app's route carries on a server of a cluster: the id of the
/// server that served it (the owner, also when the request was forwarded to it).
pub const SERVED_BY_HEADER: &str = "ferrojob-served-by";

/// Shortest forwarding key trusted, bytes.
pub const MIN_KEY_LEN: usize = 16;

/// Default [`Forwarding::timeout`]: 10 s.
pub const DEFAULT_FORWARD_TIMEOUT: Duration = Duration::from_secs(10);

/// How long an idle connection to another server is kept for the next forwarded request.
const POOL_IDLE: Duration = Duration::from_secs(30);

/// Where an app's requests are served, as a server of a cluster knows it now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppHome {
    /// This server acts for the app (or is not part of a cluster).
    Here,
    /// Another server holds the app's partition, and its HTTP API answers at `url`.
    Owner {
        /// The owner's server id.
        server: String,
        /// The base URL of the owner's HTTP API (`http://host:port`).
        url: String,
    },
    /// Nobody is known to act for it now (the partition is between owners, still loading
    /// here, or held by a server that advertised no HTTP URL).
    Unknown,
}

/// Tells the HTTP API where each app is served (a server of a cluster's membership).
pub trait AppRouting: Send + Sync + 'static {
    /// Where `app`'s requests are served now. Called once per request of an app route, on
    /// the request's task: it must answer from memory, quickly.
    fn home(&self, app: &str) -> AppHome;
}

/// Forwarding of the app routes to their owner ([`HttpConfig::forwarding`](super::HttpConfig::forwarding)).
#[derive(Clone)]
pub struct Forwarding {
    /// Where each app is served.
    pub routing: Arc<dyn AppRouting>,
    /// The cluster's forwarding key (see the module docs): at least [`MIN_KEY_LEN`] bytes,
    /// or no forwarding header is trusted.
    pub key: Arc<str>,
    /// This server's id, sent in [`SERVED_BY_HEADER`].
    pub server: String,
    /// How long the owner may take to begin its answer (default
    /// [`DEFAULT_FORWARD_TIMEOUT`]).
    pub timeout: Duration,
}

impl std::fmt::Debug for Forwarding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Forwarding")
            .field("key", &"<redacted>")
            .field("server", &self.server)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// A [`Forwarding`] with its connection pool.
pub(crate) struct Forwarder {
    config: Forwarding,
    served_by: HeaderValue,
    client: Client<HttpConnector, Body>,
}

impl Forwarder {
    pub(crate) fn new(config: Forwarding) -> Forwarder {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(config.timeout));
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(POOL_IDLE)
            .build(connector);
        let served_by =
            HeaderValue::from_str(&config.server).unwrap_or_else(|_| HeaderValue::from_static("?"));
        Forwarder {
            config,
            served_by,
            client,
        }
    }
}

/// A request whose forwarding header carried the cluster's key (in its extensions): it is
/// served here, never forwarded again.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Forwarded;

/// What a request of an app route gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Served by this server's handlers.
    Serve,
    /// Forwarded to the owner at this base URL.
    Forward(String),
    /// Answered 503 + `Retry-After`, with this reason.
    Unavailable(&'static str),
}

/// The forwarding decision for a request of an app route: `forwarded` when it came from a
/// server of the cluster (it is then served here whatever `home` says: one hop at most).
pub(crate) fn decide(forwarded: bool, home: AppHome) -> Decision {
    if forwarded {
        return Decision::Serve;
    }
    match home {
        AppHome::Here => Decision::Serve,
        AppHome::Owner { url, .. } if url.starts_with("http://") => Decision::Forward(url),
        AppHome::Owner { .. } => {
            Decision::Unavailable("its owner's HTTP API is not a plain http:// URL")
        }
        AppHome::Unknown => Decision::Unavailable("no server is known to act for it now"),
    }
}

/// The client address a forwarding header names, when the header carries `key`.
pub(crate) fn verify(value: &[u8], key: &str) -> Option<IpAddr> {
    let text = std::str::from_utf8(value).ok()?;
    let mut client = None;
    let mut keyed = false;
    for part in text.split(';') {
        let (name, v) = part.trim().split_once('=')?;
        match name.trim() {
            "for" => client = Some(v.trim().parse::<IpAddr>().ok()?),
            "key" => keyed = key.len() >= MIN_KEY_LEN && ct_eq(v.trim().as_bytes(), key.as_bytes()),
            _ => return None,
        }
    }
    client.filter(|_| keyed)
}

/// The guard's part: a request with a forwarding header that carries the key is marked
/// [`Forwarded`] and its peer becomes the client it names; a header without the key is
/// dropped. Answers whether the request was forwarded.
pub(crate) fn accept_forwarded(shared: &Shared, req: &mut Request) -> bool {
    let name = HeaderName::from_static(FORWARDED_HEADER);
    let Some(value) = req.headers_mut().remove(&name) else {
        return false;
    };
    let client = shared
        .forward
        .as_ref()
        .and_then(|f| verify(value.as_bytes(), &f.config.key));
    let Some(ip) = client else {
        tracing::debug!("a forwarding header without the cluster's key was dropped");
        return false;
    };
    req.extensions_mut().insert(Forwarded);
    req.extensions_mut()
        .insert(PeerAddr(SocketAddr::new(ip, 0)));
    true
}

/// Headers that belong to one connection, not to the request or answer (RFC 9110 7.6.1),
/// and the ones this server sets itself.
fn hop_by_hop(name: &HeaderName) -> bool {
    name == header::CONNECTION
        || name == header::TRANSFER_ENCODING
        || name == header::TE
        || name == header::TRAILER
        || name == header::UPGRADE
        || name == header::HOST
        || name == header::PROXY_AUTHORIZATION
        || name.as_str() == "keep-alive"
        || name.as_str() == "proxy-connection"
        || name.as_str() == FORWARDED_HEADER
}

/// 503 `unavailable` (with `Retry-After`, as every 503).
fn unavailable(app: &str, why: &str) -> Response {
    Failure::from(ApiError::unavailable(format!(
        "app {app} is served by another server of the cluster and {why}: retry later"
    )))
    .into_response()
}

/// The route layer of the app routes: serves, forwards or refuses each request (see the
/// module docs). Runs after the guard, before the audit trail.
pub(crate) async fn route(State(shared): State<Shared>, req: Request, next: Next) -> Response {
    let Some(forwarder) = shared.forward.clone() else {
        return next.run(req).await;
    };
    let (mut parts, body) = req.into_parts();
    // Every route this layer is on has been matched; the ones without `{app}` are served.
    let app = RawPathParams::from_request_parts(&mut parts, &())
        .await
        .ok()
        .and_then(|params| {
            params
                .iter()
                .find_map(|(k, v)| (k == "app").then(|| v.to_owned()))
        });
    let req = Request::from_parts(parts, body);
    let Some(app) = app else {
        return next.run(req).await;
    };
    let forwarded = req.extensions().get::<Forwarded>().is_some();
    let url = match decide(forwarded, forwarder.config.routing.home(&app)) {
        Decision::Serve => {
            let mut response = next.run(req).await;
            // An answer forwarded here keeps its owner's header.
            response
                .headers_mut()
                .entry(HeaderName::from_static(SERVED_BY_HEADER))
                .or_insert_with(|| forwarder.served_by.clone());
            return response;
        }
        Decision::Forward(url) => url,
        Decision::Unavailable(why) => {
            if let Err(f) = authenticate(&shared, req.headers(), &app) {
                return f.into_response();
            }
            shared.metrics.forward_failed();
            return unavailable(&app, why);
        }
    };
    // Checked here first, so that a wrong token is refused (and counted) where it arrived.
    if let Err(f) = authenticate(&shared, req.headers(), &app) {
        return f.into_response();
    }
    match send(&forwarder, req, &url).await {
        Ok(response) => {
            shared.metrics.forwarded();
            response
        }
        Err(Sent::Refused(f)) => f.into_response(),
        Err(Sent::Failed(why)) => {
            shared.metrics.forward_failed();
            tracing::debug!(app, url, why, "request not forwarded to the app's owner");
            unavailable(&app, "its owner cannot be reached now")
        }
    }
}

/// Whether the request's token opens `app` at all (the owner checks its role).
fn authenticate(shared: &Shared, headers: &HeaderMap, app: &str) -> Result<(), Failure> {
    let token = bearer(headers)
        .ok_or_else(|| Failure::unauthorized("missing `Authorization: Bearer <token>` header"))?;
    shared
        .credentials
        .authenticate(&*shared.api, app, token, shared.clock.now_ms())
        .map(|_| ())
        .map_err(|d| match d {
            Denied::Invalid => Failure::unauthorized("the token is not valid for this app"),
            Denied::Api(e) => e.into(),
        })
}

/// Why a request was not forwarded.
enum Sent {
    /// Its body was refused here (too large, too slow): answered as such.
    Refused(Failure),
    /// The owner could not be reached or did not answer in time.
    Failed(String),
}

/// Sends `req` to the owner at `base` and answers the owner's answer.
async fn send(forwarder: &Forwarder, req: Request, base: &str) -> Result<Response, Sent> {
    let path = req
        .uri()
        .path_and_query()
        .map_or_else(|| req.uri().path().to_owned(), |p| p.as_str().to_owned());
    let uri: Uri = format!("{}{path}", base.trim_end_matches('/'))
        .parse()
        .map_err(|e| Sent::Failed(format!("bad owner URL {base:?}: {e}")))?;
    let client = req
        .extensions()
        .get::<PeerAddr>()
        .map(|p| p.0.ip().to_string());
    let method = req.method().clone();
    let mut headers = req.headers().clone();
    headers.retain_not(hop_by_hop);
    let marker = format!(
        "for={}; key={}",
        client.as_deref().unwrap_or("0.0.0.0"),
        forwarder.config.key
    );
    let marker =
        HeaderValue::from_str(&marker).map_err(|e| Sent::Failed(format!("header: {e}")))?;
    let body = super::extract::read_body(req)
        .await
        .map_err(Sent::Refused)?;
    let mut out = axum::http::Request::builder()
        .method(method)
        .uri(uri)
        .body(Body::from(body))
        .map_err(|e| Sent::Failed(e.to_string()))?;
    *out.headers_mut() = headers;
    out.headers_mut()
        .insert(HeaderName::from_static(FORWARDED_HEADER), marker);
    let answer = tokio::time::timeout(forwarder.config.timeout, forwarder.client.request(out))
        .await
        .map_err(|_| Sent::Failed(format!("no answer within {:?}", forwarder.config.timeout)))?
        .map_err(|e| Sent::Failed(e.to_string()))?;
    let (mut parts, body) = answer.into_parts();
    parts.headers.retain_not(|n| {
        *n == header::CONNECTION || *n == header::TRANSFER_ENCODING || n.as_str() == "keep-alive"
    });
    Ok(Response::from_parts(parts, Body::new(body)))
}

/// `retain` over header names, keeping every value of a kept name.
trait RetainNot {
    fn retain_not(&mut self, drop: impl Fn(&HeaderName) -> bool);
}

impl RetainNot for HeaderMap {
    fn retain_not(&mut self, drop: impl Fn(&HeaderName) -> bool) {
        let names: Vec<HeaderName> = self.keys().filter(|n| drop(n)).cloned().collect();
        for n in names {
            self.remove(&n);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "0123456789abcdef0123456789abcdef";

    fn owner(url: &str) -> AppHome {
        AppHome::Owner {
            server: "a".into(),
            url: url.into(),
        }
    }

    #[test]
    fn an_app_acted_for_here_is_served_here() {
        assert_eq!(decide(false, AppHome::Here), Decision::Serve);
    }

    #[test]
    fn an_app_of_another_server_is_forwarded_to_it() {
        assert_eq!(
            decide(false, owner("http://10.0.0.1:7700")),
            Decision::Forward("http://10.0.0.1:7700".into())
        );
    }

    #[test]
    fn a_forwarded_request_is_served_here_whoever_owns_the_app() {
        // One hop at most: the owner's refusal, if it is not the owner any more, goes back.
        assert_eq!(decide(true, owner("http://10.0.0.1:7700")), Decision::Serve);
        assert_eq!(decide(true, AppHome::Unknown), Decision::Serve);
    }

    #[test]
    fn an_unknown_or_unreachable_owner_is_unavailable() {
        assert!(matches!(
            decide(false, AppHome::Unknown),
            Decision::Unavailable(_)
        ));
        assert!(matches!(
            decide(false, owner("https://10.0.0.1:7700")),
            Decision::Unavailable(_)
        ));
    }

    #[test]
    fn the_forwarding_header_counts_only_with_the_key() {
        let ok = format!("for=192.0.2.7; key={KEY}");
        assert_eq!(
            verify(ok.as_bytes(), KEY),
            Some("192.0.2.7".parse().unwrap())
        );
        let v6 = format!("key={KEY};for=2001:db8::1");
        assert_eq!(
            verify(v6.as_bytes(), KEY),
            Some("2001:db8::1".parse().unwrap())
        );
        for bad in [
            "for=192.0.2.7".to_owned(),
            "for=192.0.2.7; key=".to_owned(),
            format!("for=192.0.2.7; key={KEY}x"),
            format!("for=not-an-ip; key={KEY}"),
            format!("for=192.0.2.7; key={KEY}; by=x"),
            format!("key={KEY}"),
            String::new(),
        ] {
            assert_eq!(verify(bad.as_bytes(), KEY), None, "{bad:?}");
        }
        // Without a key of its own (or with a short one), a server trusts no header.
        assert_eq!(verify(ok.as_bytes(), ""), None);
        assert_eq!(verify(b"for=192.0.2.7; key=short", "short"), None);
    }

    #[test]
    fn connection_headers_are_not_forwarded() {
        for h in ["connection", "host", "transfer-encoding", FORWARDED_HEADER] {
            assert!(hop_by_hop(&HeaderName::from_static(h)), "{h}");
        }
        for h in ["authorization", "content-type", "idempotency-key"] {
            assert!(!hop_by_hop(&HeaderName::from_static(h)), "{h}");
        }
    }
}
