//! The client's plumbing: the base URL and its paths, the bearer token, the HTTP or HTTPS
//! connection pool, and how an answer becomes a value or a [`ClientError`]. The routes are
//! methods of [`Client`] in the parent module and its submodules.
//!
//! HTTPS: a client trusts [`HttpsRoots`] — the public roots by default
//! ([`Client::new`]), or a private CA ([`Client::with_roots`], `ferrojob --tls-ca FILE`). A
//! failed handshake (an untrusted certificate, one that does not name the host, a server not
//! speaking TLS) is [`ClientError::Tls`] naming the host and the reason.
//!
//! A cluster's servers: a client given several base URLs (`http://a:7700,http://b:7700`)
//! sends each request to the server that answered last. When that server cannot be
//! connected to, or answers 503 (it cannot write now; or the app's owner, to which every
//! server of a cluster forwards the app's requests, is not known or not reachable during a
//! failover), the request goes to the next one in turn: a request refused so, or never
//! delivered, changed nothing (except a forwarded one whose owner's answer was lost: a run
//! sent with an `Idempotency-Key` is safe to send again).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use reqwest::{Method, RequestBuilder, StatusCode, Url};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::api::{ApiError, ErrorBody, ErrorCode};
use crate::https::{HttpsError, HttpsRoots};

/// Why a [`Client`] call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The server answered with a non-2xx status and this error.
    #[error("the server answered {status}: {error}")]
    Api {
        /// The HTTP status.
        status: u16,
        /// The `{"error"}` body (made from the status if the body was not one).
        error: ApiError,
    },
    /// The request could not be sent or its answer not received (connection refused, timeout,
    /// reset).
    #[error("HTTP request failed: {0}")]
    Transport(#[source] reqwest::Error),
    /// The TLS handshake with the server failed: its certificate does not lead to a trusted
    /// CA or does not name the host, or it does not speak TLS.
    #[error("TLS handshake with {host} failed: {reason}")]
    Tls {
        /// The server's host and port.
        host: String,
        /// What the failure means (see [`crate::https::explain`]).
        reason: &'static str,
        /// rustls's error (boxed: it is large, and this error travels in every `Result`).
        #[source]
        source: Box<rustls::Error>,
    },
    /// The HTTPS settings could not be made (an unreadable CA file, one without a
    /// certificate).
    #[error(transparent)]
    Https(#[from] HttpsError),
    /// A 2xx answer whose body is not the expected JSON.
    #[error("cannot decode the server's answer: {0}")]
    Decode(#[source] serde_json::Error),
    /// The base URL does not parse or cannot carry a path.
    #[error("invalid base URL: {0}")]
    InvalidUrl(String),
}

impl ClientError {
    /// The API error code, if the server answered with an error.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Api { error, .. } => Some(error.code),
            _ => None,
        }
    }

    /// The HTTP status, if the server answered with an error.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// Timeouts and pooling of a [`Client`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientOptions {
    /// Longest wait for a TCP connection; default 5 s.
    pub connect_timeout: Duration,
    /// Longest wait for a whole request, from sending to the end of the answer; default 30 s.
    pub request_timeout: Duration,
    /// How long an idle kept-alive connection stays in the pool; default 90 s.
    pub pool_idle_timeout: Duration,
}

impl Default for ClientOptions {
    fn default() -> ClientOptions {
        ClientOptions {
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
            pool_idle_timeout: Duration::from_secs(90),
        }
    }
}

/// An OpenAPI client bound to one server (or a cluster's servers, see the module docs) and
/// one bearer token (the admin token, or an API token of one app for that app's routes).
/// Cloning shares the connection pool and the server last answering.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    /// The servers' base URLs (all with the same path).
    bases: Arc<Bases>,
    /// The one requests go to first: the last that answered.
    at: Arc<AtomicUsize>,
    token: String,
    /// The `Idempotency-Key` every POST carries (see [`Client::with_idempotency_key`]).
    idempotency_key: Option<String>,
}

/// How many times a POST with an `Idempotency-Key` is sent again after a transport error.
const IDEMPOTENT_RETRIES: u32 = 3;

/// The wait before the first resend, doubled before each later one.
const IDEMPOTENT_RETRY_DELAY: Duration = Duration::from_millis(500);

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("bases", &self.bases)
            .field("token", &"<redacted>")
            .finish()
    }
}

/// The status's error code when the body is not an [`ErrorBody`].
fn code_for_status(status: StatusCode) -> ErrorCode {
    match status.as_u16() {
        401 => ErrorCode::Unauthorized,
        403 => ErrorCode::Forbidden,
        404 => ErrorCode::NotFound,
        409 => ErrorCode::Conflict,
        413 => ErrorCode::PayloadTooLarge,
        429 => ErrorCode::RateLimited,
        503 => ErrorCode::Unavailable,
        400..=499 => ErrorCode::InvalidArgument,
        _ => ErrorCode::Internal,
    }
}

/// A failed request: [`ClientError::Tls`] when the handshake failed, else
/// [`ClientError::Transport`].
fn transport_error(error: reqwest::Error) -> ClientError {
    let tls = crate::https::tls_failure(&error).cloned();
    match tls {
        Some(source) => ClientError::Tls {
            host: error
                .url()
                .map(|u| match (u.host_str(), u.port_or_known_default()) {
                    (Some(h), Some(p)) => format!("{h}:{p}"),
                    (Some(h), None) => h.to_owned(),
                    _ => u.to_string(),
                })
                .unwrap_or_default(),
            reason: crate::https::explain(&source),
            source: Box::new(source),
        },
        None => ClientError::Transport(error),
    }
}

fn api_error(status: StatusCode, body: &[u8]) -> ClientError {
    let error = match serde_json::from_slice::<ErrorBody>(body) {
        Ok(ErrorBody { error }) => error,
        Err(_) => {
            let text = String::from_utf8_lossy(body);
            let text: String = text.chars().take(200).collect();
            ApiError::new(code_for_status(status), format!("HTTP {status}: {text}"))
        }
    };
    ClientError::Api {
        status: status.as_u16(),
        error,
    }
}

/// The body of a 2xx answer, or the error.
async fn finish(answer: Result<reqwest::Response, reqwest::Error>) -> Result<Vec<u8>, ClientError> {
    let response = answer.map_err(transport_error)?;
    let status = response.status();
    let body = response.bytes().await.map_err(transport_error)?;
    if status.is_success() {
        Ok(body.to_vec())
    } else {
        Err(api_error(status, &body))
    }
}

/// Points `url` at `base`'s server (the bases share their path).
fn rebase(url: &mut Url, base: &Url) {
    let _ = url.set_scheme(base.scheme());
    let _ = url.set_host(base.host_str());
    let _ = url.set_port(base.port());
}

/// A client's servers: one, or a cluster's.
#[derive(Debug)]
struct Bases {
    first: Url,
    others: Vec<Url>,
}

impl Bases {
    fn len(&self) -> usize {
        1 + self.others.len()
    }

    /// The `i`-th server (the first past the end).
    fn get(&self, i: usize) -> &Url {
        match i.checked_sub(1) {
            Some(j) => self.others.get(j).unwrap_or(&self.first),
            None => &self.first,
        }
    }
}

impl Client {
    /// A client of the server at `base_url` (`http://host:port`, optionally with a path
    /// prefix) with the default [`ClientOptions`].
    pub fn new(base_url: &str, token: impl Into<String>) -> Result<Client, ClientError> {
        Client::with_options(base_url, token, ClientOptions::default())
    }

    /// A client with explicit timeouts (trusting the public roots over HTTPS).
    pub fn with_options(
        base_url: &str,
        token: impl Into<String>,
        options: ClientOptions,
    ) -> Result<Client, ClientError> {
        Client::with_roots(base_url, token, options, &HttpsRoots::public())
    }

    /// A client with explicit timeouts that trusts `roots` over HTTPS (e.g. only a private
    /// CA: [`HttpsRoots::from_ca_file`]).
    pub fn with_roots(
        base_url: &str,
        token: impl Into<String>,
        options: ClientOptions,
        roots: &HttpsRoots,
    ) -> Result<Client, ClientError> {
        let mut bases = Vec::new();
        for one in base_url.split(',').map(str::trim).filter(|u| !u.is_empty()) {
            let base =
                Url::parse(one).map_err(|e| ClientError::InvalidUrl(format!("{one:?}: {e}")))?;
            if base.cannot_be_a_base() || !matches!(base.scheme(), "http" | "https") {
                return Err(ClientError::InvalidUrl(format!(
                    "{one:?}: expected http://host:port or https://host:port"
                )));
            }
            bases.push(base);
        }
        let Some((first, others)) = bases.split_first() else {
            return Err(ClientError::InvalidUrl(format!("{base_url:?}: no URL")));
        };
        if others.iter().any(|b| b.path() != first.path()) {
            return Err(ClientError::InvalidUrl(format!(
                "{base_url:?}: a cluster's URLs must have the same path"
            )));
        }
        let http = roots
            .client_builder()?
            .connect_timeout(options.connect_timeout)
            .timeout(options.request_timeout)
            .pool_idle_timeout(options.pool_idle_timeout)
            .tcp_nodelay(true)
            .build()
            .map_err(ClientError::Transport)?;
        Ok(Client {
            http,
            bases: Arc::new(Bases {
                first: first.clone(),
                others: others.to_vec(),
            }),
            at: Arc::new(AtomicUsize::new(0)),
            token: token.into(),
            idempotency_key: None,
        })
    }

    /// This client (sharing its connection pool) with every POST carrying
    /// `Idempotency-Key: key`: a create, run or backfill made with it happens at most once
    /// within the server's 24 h, however often it is sent. A POST that fails in transport
    /// (no answer: connection refused or reset, timeout) is therefore sent again, up to 3
    /// times, 0.5 s apart doubling. Use one key per logical request (for example the job and
    /// the day it is meant for), never the same key for two different runs.
    pub fn with_idempotency_key(&self, key: impl Into<String>) -> Client {
        Client {
            idempotency_key: Some(key.into()),
            ..self.clone()
        }
    }

    /// The base URL requests go to first (the server that answered last).
    pub fn base_url(&self) -> &str {
        self.base().as_str()
    }

    fn base(&self) -> &Url {
        self.bases.get(self.at.load(Ordering::Relaxed))
    }

    /// The URL of `segments` under the base (each segment percent-encoded).
    pub(super) fn url(&self, segments: &[&str]) -> Result<Url, ClientError> {
        let base = self.base();
        let mut url = base.clone();
        url.path_segments_mut()
            .map_err(|()| ClientError::InvalidUrl(format!("{base}: cannot carry a path")))?
            .pop_if_empty()
            .extend(segments);
        Ok(url)
    }

    pub(super) fn request(
        &self,
        method: Method,
        segments: &[&str],
    ) -> Result<RequestBuilder, ClientError> {
        let post = method == Method::POST;
        let req = self
            .http
            .request(method, self.url(segments)?)
            .bearer_auth(&self.token);
        Ok(match self.idempotency_key.as_deref().filter(|_| post) {
            Some(key) => req.header("Idempotency-Key", key),
            None => req,
        })
    }

    /// Sends the POST `make` builds and decodes its answer; with an `Idempotency-Key`, sends
    /// it again after a transport error (see [`Client::with_idempotency_key`]).
    async fn post_with<T: DeserializeOwned>(
        &self,
        make: impl Fn() -> Result<RequestBuilder, ClientError>,
    ) -> Result<T, ClientError> {
        let mut delay = IDEMPOTENT_RETRY_DELAY;
        let mut resends = 0;
        loop {
            match self.call(make()?).await {
                Err(ClientError::Transport(e))
                    if self.idempotency_key.is_some() && resends < IDEMPOTENT_RETRIES =>
                {
                    tracing::debug!(error = %e, resends, "sending an idempotent request again");
                    resends += 1;
                    tokio::time::sleep(delay).await;
                    delay = delay.saturating_mul(2);
                }
                other => return other,
            }
        }
    }

    /// Sends `req` and answers the body of a 2xx answer; with several servers, to the next
    /// one while a server cannot be connected to or answers 503 (see the module docs).
    pub(super) async fn send(&self, req: RequestBuilder) -> Result<Vec<u8>, ClientError> {
        let (http, request) = req.build_split();
        let request = request.map_err(transport_error)?;
        let n = self.bases.len();
        let first = self.at.load(Ordering::Relaxed);
        let mut last = None;
        for k in 0..n {
            let i = (first + k) % n;
            let attempt = if n == 1 {
                None
            } else {
                request.try_clone().map(|mut r| {
                    rebase(r.url_mut(), self.bases.get(i));
                    r
                })
            };
            let Some(attempt) = attempt else {
                // One server, or a body that cannot be sent twice: one try.
                return finish(http.execute(request).await).await;
            };
            match http.execute(attempt).await {
                Err(e) if e.is_connect() && k + 1 < n => last = Some(transport_error(e)),
                Ok(r) if r.status() == StatusCode::SERVICE_UNAVAILABLE && k + 1 < n => {
                    let status = r.status();
                    let body = r.bytes().await.map_err(transport_error)?;
                    last = Some(api_error(status, &body));
                }
                answer => {
                    self.at.store(i, Ordering::Relaxed);
                    return finish(answer).await;
                }
            }
        }
        Err(last.unwrap_or_else(|| ClientError::InvalidUrl("no server to send to".to_owned())))
    }

    pub(super) async fn call<T: DeserializeOwned>(
        &self,
        req: RequestBuilder,
    ) -> Result<T, ClientError> {
        let body = self.send(req).await?;
        serde_json::from_slice(&body).map_err(ClientError::Decode)
    }

    pub(super) async fn get<T: DeserializeOwned>(
        &self,
        segments: &[&str],
    ) -> Result<T, ClientError> {
        self.call(self.request(Method::GET, segments)?).await
    }

    pub(super) async fn get_query<T: DeserializeOwned, Q: Serialize>(
        &self,
        segments: &[&str],
        query: &Q,
    ) -> Result<T, ClientError> {
        self.call(self.request(Method::GET, segments)?.query(query))
            .await
    }

    pub(super) async fn post<T: DeserializeOwned, B: Serialize>(
        &self,
        segments: &[&str],
        body: &B,
    ) -> Result<T, ClientError> {
        self.post_with(|| Ok(self.request(Method::POST, segments)?.json(body)))
            .await
    }

    pub(super) async fn post_empty<T: DeserializeOwned>(
        &self,
        segments: &[&str],
    ) -> Result<T, ClientError> {
        self.post_with(|| self.request(Method::POST, segments))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server on 127.0.0.1 that closes its first `drops` connections unanswered and
    /// answers `{}` on the next one; it hands back the request heads it read.
    fn flaky_server(drops: usize) -> (String, std::thread::JoinHandle<Vec<String>>) {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let handle = std::thread::spawn(move || {
            let mut heads = Vec::new();
            for (i, conn) in listener.incoming().enumerate() {
                let mut conn = conn.unwrap();
                let mut buf = vec![0u8; 4096];
                let n = conn.read(&mut buf).unwrap_or(0);
                heads.push(String::from_utf8_lossy(&buf[..n]).into_owned());
                if i < drops {
                    continue;
                }
                conn.write_all(
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}",
                )
                .unwrap();
                return heads;
            }
            heads
        });
        (url, handle)
    }

    /// A server on 127.0.0.1 answering each connection with `answer` (a whole response);
    /// it hands back the request lines it read, once its listener is given up.
    fn answering(answer: &'static str) -> (String, std::sync::mpsc::Receiver<String>) {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { return };
                let mut buf = vec![0u8; 4096];
                let n = conn.read(&mut buf).unwrap_or(0);
                let head = String::from_utf8_lossy(&buf[..n]).into_owned();
                let _ = tx.send(head.lines().next().unwrap_or_default().to_owned());
                let _ = conn.write_all(answer.as_bytes());
            }
        });
        (url, rx)
    }

    #[tokio::test]
    async fn a_cluster_client_goes_past_an_unreachable_server_and_a_refusing_one_and_stays() {
        let dead = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            format!("http://{}", l.local_addr().unwrap())
        };
        let (refusing, refused) = answering(
            "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nconnection: close\r\ncontent-length: 79\r\n\r\n{\"error\":{\"code\":\"unavailable\",\"message\":\"app a is not served by this server\"}}",
        );
        let (owner, served) = answering(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nconnection: close\r\ncontent-length: 2\r\n\r\n{}",
        );
        let c = Client::new(&format!("{dead}, {refusing},{owner}"), "t").unwrap();
        let answer: serde_json::Value = c.get(&["v1", "apps", "a", "jobs"]).await.unwrap();
        assert_eq!(answer, serde_json::json!({}));
        assert_eq!(c.base_url(), format!("{owner}/"));
        // The next request goes to the server that answered, and a POST too.
        let answer: serde_json::Value = c.post_empty(&["v1", "apps", "a", "x"]).await.unwrap();
        assert_eq!(answer, serde_json::json!({}));
        assert_eq!(refused.try_iter().count(), 1);
        let lines: Vec<String> = served.try_iter().collect();
        assert_eq!(
            lines,
            ["GET /v1/apps/a/jobs HTTP/1.1", "POST /v1/apps/a/x HTTP/1.1"]
        );
        // With every server refusing, the last refusal is the answer.
        let c = Client::new(&format!("{dead},{refusing}"), "t").unwrap();
        let e = c.get::<serde_json::Value>(&["v1"]).await.unwrap_err();
        assert_eq!(e.status(), Some(503), "{e:?}");
        // URLs with different paths cannot be one cluster's.
        assert!(matches!(
            Client::new("http://a:1/x,http://b:1/y", "t"),
            Err(ClientError::InvalidUrl(_))
        ));
    }

    #[tokio::test]
    async fn a_post_with_an_idempotency_key_is_sent_again_after_a_transport_error() {
        let (url, server) = flaky_server(1);
        let c = Client::new(&url, "t").unwrap().with_idempotency_key("k-1");
        let answer: serde_json::Value = c.post_empty(&["v1", "x"]).await.unwrap();
        assert_eq!(answer, serde_json::json!({}));
        let heads = server.join().unwrap();
        assert_eq!(heads.len(), 2, "sent twice");
        for head in heads {
            assert!(
                head.to_ascii_lowercase().contains("idempotency-key: k-1"),
                "{head}"
            );
        }
    }

    #[tokio::test]
    async fn a_post_without_a_key_is_not_sent_again_and_a_get_carries_no_key() {
        let (url, server) = flaky_server(1);
        let c = Client::new(&url, "t").unwrap();
        let failed = c.post_empty::<serde_json::Value>(&["v1", "x"]).await;
        assert!(
            matches!(failed, Err(ClientError::Transport(_))),
            "{failed:?}"
        );
        let keyed = c.with_idempotency_key("k-2");
        let answer: serde_json::Value = keyed.get(&["v1", "x"]).await.unwrap();
        assert_eq!(answer, serde_json::json!({}));
        let heads = server.join().unwrap();
        assert_eq!(heads.len(), 2);
        assert!(
            !heads[1].to_ascii_lowercase().contains("idempotency-key"),
            "{}",
            heads[1]
        );
    }

    #[test]
    fn urls_encode_segments_and_keep_a_prefix() {
        let c = Client::new("http://127.0.0.1:7700", "t").unwrap();
        assert_eq!(
            c.url(&["v1", "apps", "a b/c", "jobs"]).unwrap().as_str(),
            "http://127.0.0.1:7700/v1/apps/a%20b%2Fc/jobs"
        );
        let c = Client::new("http://h:1/prefix/", "t").unwrap();
        assert_eq!(
            c.url(&["healthz"]).unwrap().as_str(),
            "http://h:1/prefix/healthz"
        );
    }

    #[test]
    fn bad_base_urls_are_refused() {
        assert!(matches!(
            Client::new("not a url", "t"),
            Err(ClientError::InvalidUrl(_))
        ));
        assert!(matches!(
            Client::new("mailto:x@y", "t"),
            Err(ClientError::InvalidUrl(_))
        ));
    }

    #[test]
    fn foreign_error_bodies_become_api_errors() {
        let e = api_error(StatusCode::BAD_GATEWAY, b"<html>bad gateway</html>");
        assert_eq!(e.status(), Some(502));
        assert_eq!(e.code(), Some(ErrorCode::Internal));
        let e = api_error(
            StatusCode::NOT_FOUND,
            br#"{"error":{"code":"not_found","message":"job 3 does not exist"}}"#,
        );
        assert_eq!(e.code(), Some(ErrorCode::NotFound));
    }

    #[tokio::test]
    async fn https_with_a_private_ca_and_typed_tls_failures() {
        use crate::https::test_server::{HttpsServer, Pki};
        let pki = Pki::new(&["localhost"]);
        let server = HttpsServer::start(&pki, 200, "ferrojob_up 1\n").await;
        let base = server.url("localhost", "/");
        let roots = HttpsRoots::from_ca_pem(pki.ca_pem.as_bytes()).unwrap();
        let client = Client::with_roots(&base, "tok", ClientOptions::default(), &roots).unwrap();
        assert_eq!(client.metrics().await.unwrap(), "ferrojob_up 1\n");
        let got = server.requests();
        assert_eq!(got[0].line, "GET /metrics HTTP/1.1");
        assert_eq!(got[0].header("authorization"), Some("Bearer tok"));

        // The public roots do not lead to the test CA.
        let e = Client::new(&base, "tok")
            .unwrap()
            .metrics()
            .await
            .unwrap_err();
        match &e {
            ClientError::Tls { host, reason, .. } => {
                assert_eq!(host, &format!("localhost:{}", server.addr.port()));
                assert_eq!(
                    *reason,
                    "the server's certificate is not signed by a CA this client trusts"
                );
            }
            other => panic!("{other:?}"),
        }
        // The certificate does not name 127.0.0.1.
        let by_ip = server.url("127.0.0.1", "/");
        let e = Client::with_roots(&by_ip, "tok", ClientOptions::default(), &roots)
            .unwrap()
            .metrics()
            .await
            .unwrap_err();
        assert!(e.to_string().contains("does not name the host"), "{e}");
        assert_eq!(server.requests().len(), 1);
    }
}
