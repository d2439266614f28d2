//! `http`, the built-in processor that sends one HTTP request ([`HttpProcessor`]), and its
//! tests against local servers (destination checks, redirects, a huge body, TLS roots).

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use super::destination::{self, DestinationPolicy};
use super::RESULT_PREFIX_BYTES;
use crate::worker::logs::truncate_at_char_boundary;
use crate::worker::processor::{BasicProcessor, ProcessResult, TaskContext};

/// `http`'s params in JSON form.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HttpParams {
    url: String,
    #[serde(default)]
    method: Option<String>,
    #[serde(default)]
    body: Option<String>,
    #[serde(default)]
    headers: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    timeout_ms: Option<u64>,
}

/// `http`: one HTTP request. Registered by `WorkerBuilder::builtins` only when allowed
/// ([`DangerousBuiltin::Http`](super::DangerousBuiltin::Http)). Params are a URL (GET) or JSON
/// `{"url", "method", "body", "headers", "timeout_ms"}`, the URL `http://` or `https://`
/// (verified against the public roots, or the roots given to [`HttpProcessor::with_roots`];
/// a failed handshake fails the run with its reason). A 2xx status succeeds, anything else fails; the result is the status and the first
/// [`RESULT_PREFIX_BYTES`] of the body, marked `… [body cut after N bytes]` when there was
/// more; the rest of the body is never read, so a response of any size costs the worker at
/// most that much memory. Without `timeout_ms` the request is bounded by the instance's
/// timeout.
///
/// Loopback, link-local (cloud metadata), private and other internal addresses are refused
/// unless the [`DestinationPolicy`] allows them, checked on the address each connection goes
/// to, after DNS resolution and on every redirect (at most
/// [`destination::MAX_REDIRECTS`], never from `https://` to `http://`); proxies from the
/// environment are not used. See [`destination`].
#[derive(Debug, Clone)]
pub struct HttpProcessor {
    /// The shared client, or why it could not be built (reported by every run).
    client: Result<reqwest::Client, String>,
    /// Where requests may go (the client's resolver and redirect policy hold it too).
    policy: Arc<DestinationPolicy>,
}

impl Default for HttpProcessor {
    fn default() -> Self {
        HttpProcessor::with_roots(&crate::https::HttpsRoots::public())
    }
}

impl HttpProcessor {
    /// An `http` processor whose `https://` requests trust `roots` (e.g. the public roots
    /// and a private CA), with the default [`DestinationPolicy`].
    pub fn with_roots(roots: &crate::https::HttpsRoots) -> HttpProcessor {
        HttpProcessor::new(roots, DestinationPolicy::default())
    }

    /// An `http` processor trusting `roots` that connects where `policy` allows.
    pub fn new(roots: &crate::https::HttpsRoots, policy: DestinationPolicy) -> HttpProcessor {
        let policy = Arc::new(policy);
        // A client that cannot be built is reported by every run instead of a panic.
        let client = roots
            .client_builder()
            .map_err(|e| e.to_string())
            .and_then(|b| {
                b.no_proxy()
                    .dns_resolver(destination::CheckedResolver::new(Arc::clone(&policy)))
                    .redirect(destination::redirect_policy(Arc::clone(&policy)))
                    .build()
                    .map_err(|e| e.to_string())
            });
        HttpProcessor { client, policy }
    }
}

impl BasicProcessor for HttpProcessor {
    async fn process(&self, ctx: TaskContext) -> ProcessResult {
        let raw = ctx.params().trim();
        let params = if raw.starts_with('{') {
            match serde_json::from_str::<HttpParams>(raw) {
                Ok(p) => p,
                Err(e) => return ProcessResult::fail(format!("http: bad params: {e}")),
            }
        } else {
            HttpParams {
                url: raw.to_string(),
                method: None,
                body: None,
                headers: Default::default(),
                timeout_ms: None,
            }
        };
        if !(params.url.starts_with("http://") || params.url.starts_with("https://")) {
            return ProcessResult::fail(format!(
                "http: {:?} is not an http:// or https:// URL",
                params.url
            ));
        }
        let url = match reqwest::Url::parse(&params.url) {
            Ok(u) => u,
            Err(e) => return ProcessResult::fail(format!("http: bad URL {:?}: {e}", params.url)),
        };
        if let Err(refused) = self.policy.check_url(&url) {
            return ProcessResult::fail(format!("http: {refused}"));
        }
        let method_name = params
            .method
            .as_deref()
            .unwrap_or("GET")
            .to_ascii_uppercase();
        let method = match reqwest::Method::from_bytes(method_name.as_bytes()) {
            Ok(m) => m,
            Err(_) => return ProcessResult::fail(format!("http: bad method {method_name:?}")),
        };
        let client = match &self.client {
            Ok(c) => c,
            Err(e) => return ProcessResult::fail(format!("http: no HTTP client: {e}")),
        };
        let mut request = client.request(method, url);
        for (k, v) in &params.headers {
            request = request.header(k, v);
        }
        if let Some(body) = params.body {
            request = request.body(body);
        }
        if let Some(t) = params
            .timeout_ms
            .map(Duration::from_millis)
            .or(ctx.timeout())
        {
            request = request.timeout(t);
        }
        ctx.logger()
            .info(format!("http: {method_name} {}", params.url));
        let response = match request.send().await {
            Ok(r) => r,
            Err(e) => {
                return ProcessResult::fail(match destination::refusal(&e) {
                    Some(refused) => format!("http: {refused}"),
                    None => format!("http: request failed: {}", crate::https::describe(&e)),
                })
            }
        };
        let status = response.status();
        let (body, cut) = match body_prefix(response, RESULT_PREFIX_BYTES).await {
            Ok(b) => b,
            Err(e) => {
                return ProcessResult::fail(format!("http: {status}: reading body failed: {e}"))
            }
        };
        let mut text = String::from_utf8_lossy(&body).into_owned();
        truncate_at_char_boundary(&mut text, RESULT_PREFIX_BYTES);
        if cut {
            text.push_str(&format!(" … [body cut after {RESULT_PREFIX_BYTES} bytes]"));
        }
        let message = format!("{status}: {text}");
        ctx.logger().info(format!("http: {status}"));
        if status.is_success() {
            ProcessResult::ok(message)
        } else {
            ProcessResult::fail(message)
        }
    }
}

/// The first `max` bytes of `response`'s body, and whether there was more. The body is read
/// chunk by chunk and never past `max` plus one chunk: what follows is not read (the
/// connection is closed), so a response of any size costs the worker at most that.
async fn body_prefix(
    mut response: reqwest::Response,
    max: usize,
) -> Result<(Vec<u8>, bool), reqwest::Error> {
    let mut kept = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        let room = max.saturating_sub(kept.len());
        if chunk.len() > room {
            kept.extend_from_slice(chunk.get(..room).unwrap_or_default());
            return Ok((kept, true));
        }
        kept.extend_from_slice(&chunk);
    }
    Ok((kept, false))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::sync::mpsc;
    use tokio_util::sync::CancellationToken;

    use super::*;
    use crate::worker::logs::InstanceLogger;

    fn ctx(params: &str) -> TaskContext {
        let (tx, _rx) = mpsc::channel(16);
        TaskContext {
            instance_id: 5,
            job_id: 9,
            job_params: Arc::from(params),
            instance_params: Arc::from(""),
            workflow_instance_id: None,
            workflow_context: Arc::from(""),
            task_id: Arc::from("0"),
            attempt: 1,
            trigger_key: Arc::from("job-9-at-1000"),
            trigger_time: 1000,
            dispatch_attempt: 2,
            worker_address: Arc::from("127.0.0.1:7000"),
            // Bounds a request to a listener that never answers, should a check be missing.
            timeout: Some(Duration::from_secs(10)),
            logger: InstanceLogger::new(5, tx, Arc::default()),
            cancel: CancellationToken::new(),
        }
    }

    /// An `http` processor trusting the public roots that may also reach `allow`.
    fn allowing(allow: &[&str]) -> HttpProcessor {
        let policy = DestinationPolicy::new(allow.iter().map(|a| a.parse().unwrap()));
        HttpProcessor::new(&crate::https::HttpsRoots::public(), policy)
    }

    /// A listener nobody serves: whether a client connected shows in its accept queue (the
    /// kernel completes the handshake before `connect` returns), with no waiting.
    struct Witness(std::net::TcpListener);

    impl Witness {
        fn bind(ip: &str) -> Witness {
            let l = std::net::TcpListener::bind((ip, 0)).unwrap();
            l.set_nonblocking(true).unwrap();
            Witness(l)
        }

        fn port(&self) -> u16 {
            self.0.local_addr().unwrap().port()
        }

        #[track_caller]
        fn assert_untouched(&self) {
            match self.0.accept() {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("accept: {e}"),
                Ok((_, peer)) => panic!("{peer} connected to a refused destination"),
            }
        }
    }

    /// A server on `ip` that records each request line and answers by path: `/ok` 200
    /// "hello"; `/go?URL` a 302 to URL; anything else 404.
    async fn redirecting_server(
        ip: &str,
    ) -> (std::net::SocketAddr, Arc<parking_lot::Mutex<Vec<String>>>) {
        let listener = tokio::net::TcpListener::bind((ip, 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(parking_lot::Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let mut head = Vec::new();
                let mut chunk = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut chunk).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => head.extend_from_slice(&chunk[..n]),
                    }
                }
                let text = String::from_utf8_lossy(&head).into_owned();
                let line = text.lines().next().unwrap_or_default().to_owned();
                let path = line.split(' ').nth(1).unwrap_or_default().to_owned();
                log.lock().push(line);
                let response = match path.strip_prefix("/go?") {
                    Some(to) => format!(
                        "HTTP/1.1 302 Found\r\nlocation: {to}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                    ),
                    None if path == "/ok" => "HTTP/1.1 200 OK\r\ncontent-length: 5\r\nconnection: close\r\n\r\nhello".to_owned(),
                    None => "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".to_owned(),
                };
                let _ = conn.write_all(response.as_bytes()).await;
                let _ = conn.shutdown().await;
            }
        });
        (addr, seen)
    }

    const HINT: &str = "refused (start the worker with --http-allow to permit it)";

    #[tokio::test]
    async fn loopback_and_metadata_addresses_are_refused_without_an_allow_list() {
        let witness = Witness::bind("127.0.0.1");
        let port = witness.port();
        let r = HttpProcessor::default()
            .process(ctx(&format!("http://127.0.0.1:{port}/")))
            .await;
        assert!(!r.success);
        assert_eq!(
            r.message,
            format!("http: destination 127.0.0.1 is loopback; {HINT}")
        );
        // Other spellings of the same place: IPv4-mapped IPv6, "this host", a decimal IPv4.
        for (url, ip, range) in [
            (
                format!("http://[::ffff:127.0.0.1]:{port}/"),
                "127.0.0.1",
                "loopback",
            ),
            (format!("http://0.0.0.0:{port}/"), "0.0.0.0", "unspecified"),
            (
                format!("http://2130706433:{port}/"),
                "127.0.0.1",
                "loopback",
            ),
        ] {
            let r = HttpProcessor::default().process(ctx(&url)).await;
            assert!(!r.success, "{url}");
            assert!(
                r.message.starts_with("http: destination "),
                "{url}: {}",
                r.message
            );
            assert!(
                r.message.contains(&format!(" is {range}; {HINT}")),
                "{url}: {}",
                r.message
            );
            assert!(r.message.contains(ip), "{url}: {}", r.message);
        }
        witness.assert_untouched();

        // The cloud metadata service: refused before any connection is tried (the timeout
        // only bounds the run should the check be missing).
        let params = r#"{"url": "http://169.254.169.254/latest/meta-data/", "timeout_ms": 2000}"#;
        let r = HttpProcessor::default().process(ctx(params)).await;
        assert!(!r.success);
        assert_eq!(
            r.message,
            format!("http: destination 169.254.169.254 is link-local; {HINT}")
        );
    }

    #[tokio::test]
    async fn a_host_name_is_checked_on_the_addresses_it_resolves_to() {
        let witness = Witness::bind("127.0.0.1");
        let r = HttpProcessor::default()
            .process(ctx(&format!("http://localhost:{}/", witness.port())))
            .await;
        assert!(!r.success);
        // localhost resolves to 127.0.0.1 or ::1 first, depending on the system.
        assert!(
            r.message.starts_with("http: destination localhost ("),
            "{}",
            r.message
        );
        assert!(
            r.message.ends_with(&format!(") is loopback; {HINT}")),
            "{}",
            r.message
        );
        witness.assert_untouched();
    }

    #[tokio::test]
    async fn an_allow_list_permits_what_it_names() {
        let (addr, seen) = redirecting_server("127.0.0.1").await;
        let port = addr.port();
        let r = allowing(&["127.0.0.1/32"])
            .process(ctx(&format!("http://127.0.0.1:{port}/ok")))
            .await;
        assert_eq!((r.success, r.message.as_str()), (true, "200 OK: hello"));
        // A network allows its addresses whatever name leads there; a host entry allows
        // that name.
        for allow in ["127.0.0.0/8", "localhost"] {
            let r = allowing(&[allow])
                .process(ctx(&format!("http://localhost:{port}/ok")))
                .await;
            assert_eq!(
                (r.success, r.message.as_str()),
                (true, "200 OK: hello"),
                "{allow}"
            );
        }
        // Another network does not.
        let r = allowing(&["10.0.0.0/8"])
            .process(ctx(&format!("http://127.0.0.1:{port}/ok")))
            .await;
        assert!(r.message.contains("is loopback; refused"), "{}", r.message);
        assert_eq!(seen.lock().len(), 3);
    }

    #[tokio::test]
    async fn every_redirect_hop_is_checked() {
        let (addr, seen) = redirecting_server("127.0.0.1").await;
        // 127.0.0.2 is loopback too (all of 127/8 is, on Linux) but not allowed.
        let second = Witness::bind("127.0.0.2");
        let to_second = format!("http://127.0.0.2:{}/secret", second.port());
        let allowed = allowing(&["127.0.0.1/32"]);
        let r = allowed
            .process(ctx(&format!("http://{addr}/go?{to_second}")))
            .await;
        assert!(!r.success);
        assert_eq!(
            r.message,
            format!("http: redirect to {to_second}: destination 127.0.0.2 is loopback; {HINT}")
        );
        second.assert_untouched();

        assert_eq!(*seen.lock(), [format!("GET /go?{to_second} HTTP/1.1")]);

        // A redirect to a name is checked on the addresses the name resolves to: from a
        // server on 127.0.0.2 (allowed) to localhost (127.0.0.1 or ::1, not allowed).
        let (other, other_seen) = redirecting_server("127.0.0.2").await;
        let witness = Witness::bind("127.0.0.1");
        let to_name = format!("http://localhost:{}/ok", witness.port());
        let r = allowing(&["127.0.0.2/32"])
            .process(ctx(&format!("http://{other}/go?{to_name}")))
            .await;
        assert!(!r.success);
        assert!(
            r.message.starts_with("http: destination localhost ("),
            "{}",
            r.message
        );
        assert!(
            r.message.ends_with(&format!(") is loopback; {HINT}")),
            "{}",
            r.message
        );
        assert_eq!(*other_seen.lock(), [format!("GET /go?{to_name} HTTP/1.1")]);
        witness.assert_untouched();

        // Allowed, a redirect to a name is followed.
        let to_first = format!("http://localhost:{}/ok", addr.port());
        let r = allowing(&["127.0.0.2/32", "localhost"])
            .process(ctx(&format!("http://{other}/go?{to_first}")))
            .await;
        assert_eq!((r.success, r.message.as_str()), (true, "200 OK: hello"));
        assert_eq!(seen.lock().last().unwrap(), "GET /ok HTTP/1.1");
    }

    #[tokio::test]
    async fn a_huge_response_body_is_cut_not_read_whole() {
        // A server announcing 64 MiB and writing until the client goes away.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut conn, _) = listener.accept().await.unwrap();
            let mut head = [0u8; 1024];
            let _ = conn.read(&mut head).await;
            let total: usize = 64 << 20;
            let header =
                format!("HTTP/1.1 200 OK\r\ncontent-length: {total}\r\nconnection: close\r\n\r\n");
            conn.write_all(header.as_bytes()).await.unwrap();
            let block = vec![b'y'; 64 * 1024];
            let mut written = 0usize;
            while written < total {
                if conn.write_all(&block).await.is_err() {
                    break;
                }
                written += block.len();
            }
            written
        });
        let r = allowing(&["127.0.0.1/32"])
            .process(ctx(&format!("http://{addr}/big")))
            .await;
        assert!(r.success, "{}", r.message);
        let expected = format!(
            "200 OK: {} … [body cut after {RESULT_PREFIX_BYTES} bytes]",
            "y".repeat(RESULT_PREFIX_BYTES)
        );
        assert_eq!(r.message, expected);
        // The client stopped reading: the server could not write the whole body.
        let written = server.await.unwrap();
        assert!(written < 64 << 20, "the whole body was read");
    }

    #[tokio::test]
    async fn https_urls_are_verified_against_the_processor_roots() {
        use crate::https::test_server::{HttpsServer, Pki};
        use crate::https::HttpsRoots;
        let pki = Pki::new(&["localhost"]);
        let server = HttpsServer::start(&pki, 200, "pong").await;
        let url = server.url("localhost", "/ping");
        let roots = HttpsRoots::from_ca_pem(pki.ca_pem.as_bytes())
            .unwrap()
            .with_public();
        let params = format!(r#"{{"url": "{url}", "method": "post", "body": "hi"}}"#);
        let localhost = DestinationPolicy::new(["localhost".parse().unwrap()]);
        let r = HttpProcessor::new(&roots, localhost.clone())
            .process(ctx(&params))
            .await;
        assert!(r.success, "{}", r.message);
        assert_eq!(r.message, "200 OK: pong");
        let got = server.requests();
        assert_eq!(got[0].line, "POST /ping HTTP/1.1");
        assert_eq!(got[0].body, b"hi");

        // The public roots alone do not lead to the test CA: the run fails and says why.
        let r = HttpProcessor::new(&HttpsRoots::public(), localhost)
            .process(ctx(&url))
            .await;
        assert!(!r.success);
        assert!(
            r.message.contains("not signed by a CA this client trusts"),
            "{}",
            r.message
        );
        assert_eq!(server.requests().len(), 1);
        let r = HttpProcessor::default().process(ctx("ftp://h/x")).await;
        assert!(
            r.message.contains("is not an http:// or https:// URL"),
            "{}",
            r.message
        );
    }
}
