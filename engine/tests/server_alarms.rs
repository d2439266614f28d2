//! Alarms end to end on a real server: a failing job's alarm is posted to a local HTTP
//! receiver with its exact body and signature (and to a local HTTPS receiver whose CA the
//! server was given), an alarm raised before a restart is delivered after it with the same
//! id, and a job that never succeeds trips its dead man's switch.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod server_runtime_support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};

use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use ferrojob::alarm::channel::ChannelKind;
use ferrojob::alarm::{AlarmRules, FailureRule};
use ferrojob::api::{Api, AppRef, ChannelBody, PageQuery};
use ferrojob::ids::JobId;
use ferrojob::model::InstanceStatus as S;
use ferrojob::server::StoreChoice;
use ferrojob::time_expression::TimeExpressionType as T;
use ferrojob_transport::message::InstanceStatus as W;
use hmac::{Hmac, Mac};
use server_runtime_support::*;
use sha2::Sha256;

/// One request the receiver got: (alarm id header, signature header, body).
type Got = (String, Option<String>, String);

/// A local HTTP receiver: records every POST and answers with the status in `answer`.
struct Receiver {
    addr: SocketAddr,
    got: Arc<Mutex<Vec<Got>>>,
    answer: Arc<AtomicU16>,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    async fn start(status: u16) -> Receiver {
        let got: Arc<Mutex<Vec<Got>>> = Arc::default();
        let answer = Arc::new(AtomicU16::new(status));
        let (g, a) = (Arc::clone(&got), Arc::clone(&answer));
        let app = Router::new().route(
            "/hook",
            post(move |headers: HeaderMap, body: String| {
                let (g, a) = (Arc::clone(&g), Arc::clone(&a));
                async move {
                    let h = |n: &str| headers.get(n).map(|v| v.to_str().unwrap().to_owned());
                    g.lock().unwrap().push((
                        h("x-ferrojob-alarm-id").unwrap_or_default(),
                        h("x-ferrojob-signature"),
                        body,
                    ));
                    StatusCode::from_u16(a.load(Ordering::SeqCst)).unwrap()
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Receiver {
            addr,
            got,
            answer,
            task,
        }
    }

    fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    fn got(&self) -> Vec<Got> {
        self.got.lock().unwrap().clone()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn sign(secret: &str, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body.as_bytes());
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256={hex}")
}

/// An API job that alarms on every failure, to channel `ops`.
async fn alarming_job(api: &Arc<dyn Api>, app: &AppRef) -> JobId {
    let mut body = job(T::Api, "");
    body.alarm = AlarmRules {
        failures: Some(FailureRule {
            threshold: 1,
            window_ms: 0,
            silence_ms: 0,
        }),
        recovered: true,
        channels: vec!["ops".into()],
        ..AlarmRules::default()
    };
    api.create_job(app.clone(), body).await.unwrap().id
}

async fn add_channel(api: &Arc<dyn Api>, app: &AppRef, url: String, secret: Option<&str>) {
    let view = api
        .put_channel(
            app.clone(),
            "ops".into(),
            ChannelBody {
                kind: ChannelKind::Webhook,
                url,
                secret: secret.map(str::to_owned),
            },
        )
        .await
        .unwrap();
    assert_eq!(view.signed, secret.is_some());
}

#[tokio::test]
async fn a_failed_run_alarms_a_local_webhook_with_a_signed_body() {
    let receiver = Receiver::start(200).await;
    let server = start(config(StoreChoice::Memory, None)).await;
    let api = server.api();
    let app = app(&api, "a").await;
    add_channel(&api, &app, receiver.url(), Some("hook-secret")).await;

    // The test route reaches the receiver at once and stores nothing.
    let test = api.test_channel(app.clone(), "ops".into()).await.unwrap();
    assert!(test.delivered, "{test:?}");
    assert_eq!(receiver.got().len(), 1);
    assert!(api
        .list_alarms(app.clone(), PageQuery::default())
        .await
        .unwrap()
        .items
        .is_empty());

    let mut w = FakeWorker::connect(server.transport_addr(), "a", "w1:1", &[], Mode::Fail).await;
    w.register(&api, &app, 8, 0).await;
    let job = alarming_job(&api, &app).await;
    let id = run(&api, &app, job).await;
    status_is(&api, &app, id, S::Failed).await;
    let _ = w.next_schedule().await;

    let alarm_id = format!("job-{}-failures-{}", job.0, id.0);
    let got = until("the alarm is delivered", || async {
        let got = receiver.got();
        (got.len() >= 2).then_some(got)
    })
    .await;
    let (hdr_id, sig, body) = &got[1];
    assert_eq!(hdr_id, &alarm_id);
    assert_eq!(sig.as_deref(), Some(sign("hook-secret", body).as_str()));
    let json: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(json["id"], alarm_id.as_str());
    assert_eq!(json["app"], "a");
    assert_eq!(json["job_id"], job.0);
    assert_eq!(json["instance_id"], id.0);
    assert_eq!(json["kind"], "FAILURES");

    let listed = until("the delivery is recorded", || async {
        let l = api
            .list_alarms(app.clone(), PageQuery::default())
            .await
            .unwrap();
        (l.items.first().is_some_and(|a| a.status == "DELIVERED")).then_some(l)
    })
    .await;
    assert_eq!(listed.items.len(), 1);
    assert_eq!(listed.items[0].id, alarm_id);
    assert_eq!(listed.items[0].delivered_to, vec!["ops".to_owned()]);
    assert!(listed.items[0].attempts[0].ok);
    let metrics = api.metrics_text();
    assert!(
        metrics.contains("\nferrojob_alarms_raised_total 1\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("\nferrojob_alarms_delivered_total 1\n"),
        "{metrics}"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn an_alarm_raised_before_a_restart_is_delivered_after_it_with_the_same_id() {
    let dir = tempfile::tempdir().unwrap();
    let store = StoreChoice::Log {
        dir: dir.path().to_path_buf(),
    };
    // The receiver refuses at first: the alarm stays in the outbox.
    let receiver = Receiver::start(503).await;
    let (job, instance) = {
        let server = start(config(store.clone(), None)).await;
        let api = server.api();
        let app = app(&api, "a").await;
        add_channel(&api, &app, receiver.url(), None).await;
        let mut w =
            FakeWorker::connect(server.transport_addr(), "a", "w1:1", &[], Mode::Fail).await;
        w.register(&api, &app, 8, 0).await;
        let job = alarming_job(&api, &app).await;
        let id = run(&api, &app, job).await;
        status_is(&api, &app, id, S::Failed).await;
        let _ = w.next_schedule().await;
        until("a refused attempt, recorded", || async {
            let l = api
                .list_alarms(app.clone(), PageQuery::default())
                .await
                .unwrap();
            l.items
                .first()
                .is_some_and(|a| a.status == "PENDING" && a.attempt_count >= 1)
                .then_some(())
        })
        .await;
        assert!(!receiver.got().is_empty());
        // Dropped without a shutdown: like a crash for its tasks.
        drop(server);
        (job, id)
    };
    let refused = receiver.got().len();
    receiver.answer.store(200, Ordering::SeqCst);

    let server = start(config(store, None)).await;
    let api = server.api();
    let app = api.resolve_app("a").unwrap();
    let alarm_id = format!("job-{}-failures-{}", job.0, instance.0);
    let listed = until("delivered after the restart", || async {
        let l = api
            .list_alarms(app.clone(), PageQuery::default())
            .await
            .unwrap();
        (l.items.first().is_some_and(|a| a.status == "DELIVERED")).then_some(l)
    })
    .await;
    assert_eq!(listed.items.len(), 1, "one alarm, not a second one");
    assert_eq!(listed.items[0].id, alarm_id);
    assert!(listed.items[0].attempt_count >= 2);
    let got = receiver.got();
    assert!(got.len() > refused);
    assert!(
        got.iter()
            .all(|(id, sig, _)| *id == alarm_id && sig.is_none()),
        "{got:?}"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn a_webhook_to_an_internal_address_is_refused_unless_the_server_allows_it() {
    let receiver = Receiver::start(200).await;
    let mut c = config(StoreChoice::Memory, None);
    c.alarm_allow.clear();
    let server = start(c).await;
    let api = server.api();
    let app = app(&api, "a").await;
    add_channel(&api, &app, receiver.url(), None).await;
    let test = api.test_channel(app.clone(), "ops".into()).await.unwrap();
    assert!(!test.delivered, "{test:?}");
    assert_eq!(
        test.detail,
        "destination 127.0.0.1 is loopback; refused (start the server with --alarm-allow to permit it)"
    );
    assert!(receiver.got().is_empty(), "nothing reached the receiver");
    // A cloud metadata address, and a name that resolves to loopback.
    for (url, detail) in [
        (
            "http://169.254.169.254/latest/meta-data".to_owned(),
            "destination 169.254.169.254 is link-local; refused",
        ),
        (
            receiver.url().replace("127.0.0.1", "localhost"),
            "destination localhost (",
        ),
    ] {
        add_channel(&api, &app, url, None).await;
        let test = api.test_channel(app.clone(), "ops".into()).await.unwrap();
        assert!(!test.delivered, "{test:?}");
        assert!(test.detail.starts_with(detail), "{test:?}");
    }
    assert!(receiver.got().is_empty());
    // Email: an SMTP server at a loopback address or on a name that resolves to loopback.
    let (port, sink) = smtp_sink().await;
    for (host, detail) in [
        ("127.0.0.1", "destination 127.0.0.1 is loopback; refused"),
        ("localhost", "destination localhost ("),
    ] {
        api.put_channel(
            app.clone(),
            "mail".into(),
            ChannelBody {
                kind: ChannelKind::Email,
                url: format!("smtp://{host}:{port}?from=f@shop.example&to=t@shop.example&tls=none"),
                secret: None,
            },
        )
        .await
        .unwrap();
        let test = api.test_channel(app.clone(), "mail".into()).await.unwrap();
        assert!(!test.delivered, "{test:?}");
        assert!(test.detail.starts_with(detail), "{test:?}");
    }
    sink.abort();
    assert!(
        sink.await.unwrap_err().is_cancelled(),
        "the SMTP sink saw no session"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn a_job_with_no_successful_run_trips_its_dead_man_switch() {
    let receiver = Receiver::start(200).await;
    let clock = ferrojob::clock::VirtualClock::new(T0);
    let server = start(config(StoreChoice::Memory, Some(&clock))).await;
    let api = server.api();
    let app = app(&api, "a").await;
    add_channel(&api, &app, receiver.url(), None).await;
    let mut body = job(T::Api, "");
    body.alarm = AlarmRules {
        dead_man_ms: Some(60_000),
        channels: vec!["ops".into()],
        ..AlarmRules::default()
    };
    let job = api.create_job(app.clone(), body).await.unwrap().id;
    // Virtual time moves a second per look; the switch trips a minute after the server first
    // saw the job.
    let prefix = format!("job-{}-dead_man-", job.0);
    let got = until("the dead man's switch", || async {
        clock.advance(1_000);
        let got = receiver.got();
        (!got.is_empty()).then_some(got)
    })
    .await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(got[0].0.starts_with(&prefix), "{got:?}");
    let json: serde_json::Value = serde_json::from_str(&got[0].2).unwrap();
    assert_eq!(json["kind"], "DEAD_MAN");
    assert!(json["instance_id"].is_null());
    let deadline: i64 = got[0].0[prefix.len()..].parse().unwrap();
    assert!(deadline >= T0 + 60_000, "{deadline}");
    assert!(ferrojob::clock::Clock::now_ms(&clock) >= deadline);
    server.shutdown().await;
}

#[tokio::test]
async fn the_alarm_routes_answer_over_http_through_the_client() {
    use ferrojob::api::{CreateApp, ErrorCode};
    use ferrojob::client::{Client, ClientError};
    use ferrojob::launch::{launch, LaunchConfig};

    let receiver = Receiver::start(200).await;
    let mut launch_config = LaunchConfig::new(None, local(), local());
    launch_config.core.alarm_allow = vec!["127.0.0.1/32".parse().unwrap()];
    let server = launch(launch_config).await.unwrap();
    let base = format!("http://{}", server.http_addr());
    let admin = Client::new(&base, server.admin_token()).unwrap();
    admin
        .create_app(&CreateApp {
            name: "shop".into(),
            secret: SECRET.into(),
        })
        .await
        .unwrap();
    let c = app_token(&admin, &base).await;
    let body = ChannelBody {
        kind: ChannelKind::Slack,
        url: receiver.url(),
        secret: Some("k".into()),
    };
    let view = c.put_channel("shop", "ops", &body).await.unwrap();
    assert!(view.signed);
    let list = c.list_channels("shop").await.unwrap();
    assert_eq!(list.items, vec![view]);

    let sent = c.test_channel("shop", "ops").await.unwrap();
    assert!(sent.delivered, "{sent:?}");
    let got = receiver.got();
    assert_eq!(got.len(), 1);
    assert!(got[0].0.starts_with("test-ops-"), "{got:?}");
    assert_eq!(got[0].1.as_deref(), Some(sign("k", &got[0].2).as_str()));
    let text: serde_json::Value = serde_json::from_str(&got[0].2).unwrap();
    assert!(text["text"]
        .as_str()
        .unwrap()
        .starts_with("[ferrojob] shop: "));
    assert!(c
        .list_alarms("shop", PageQuery::default())
        .await
        .unwrap()
        .items
        .is_empty());

    let code = |r: Result<_, ClientError>| match r {
        Err(ClientError::Api { error, .. }) => error.code,
        other => panic!("expected an API error, got {other:?}"),
    };
    let wrong = Client::new(&base, "not-the-secret").unwrap();
    assert_eq!(
        code(
            wrong
                .list_alarms("shop", PageQuery::default())
                .await
                .map(drop)
        ),
        ErrorCode::Unauthorized
    );
    assert_eq!(
        code(c.test_channel("shop", "nope").await.map(drop)),
        ErrorCode::NotFound
    );
    let bad = ChannelBody {
        url: "ftp://example.com".into(),
        ..body
    };
    assert_eq!(
        code(c.put_channel("shop", "ops", &bad).await.map(drop)),
        ErrorCode::InvalidArgument
    );
    c.delete_channel("shop", "ops").await.unwrap();
    assert!(c.list_channels("shop").await.unwrap().items.is_empty());
    server.shutdown().await;
}

#[tokio::test]
async fn a_run_still_going_past_its_limit_alarms_once() {
    let receiver = Receiver::start(200).await;
    let clock = ferrojob::clock::VirtualClock::new(T0);
    let server = start(config(StoreChoice::Memory, Some(&clock))).await;
    let api = server.api();
    let app = app(&api, "a").await;
    add_channel(&api, &app, receiver.url(), None).await;
    let mut w = FakeWorker::connect(server.transport_addr(), "a", "w1:1", &[], Mode::Hold).await;
    w.register(&api, &app, 8, T0).await;
    let mut body = job(T::Api, "");
    body.alarm = AlarmRules {
        overrun_ms: Some(5_000),
        channels: vec!["ops".into()],
        ..AlarmRules::default()
    };
    let job = api.create_job(app.clone(), body).await.unwrap().id;
    let id = run(&api, &app, job).await;
    status_is(&api, &app, id, S::Running).await;
    let _ = w.next_schedule().await;
    let alarm_id = format!("job-{}-overrun-{}", job.0, id.0);
    let got = until("the overrun alarm", || async {
        clock.advance(1_000);
        let got = receiver.got();
        (!got.is_empty()).then_some(got)
    })
    .await;
    assert_eq!(got[0].0, alarm_id);
    // The run's end does not raise its overrun again.
    w.r().report(id.0, W::Succeed, None).await;
    status_is(&api, &app, id, S::Succeed).await;
    let listed = api
        .list_alarms(app.clone(), PageQuery::default())
        .await
        .unwrap();
    assert_eq!(listed.items.len(), 1, "{listed:?}");
    assert_eq!(listed.items[0].id, alarm_id);
    server.shutdown().await;
}

/// A one-session SMTP sink on 127.0.0.1: answers EHLO, MAIL, RCPT, DATA and QUIT, and
/// returns the message's data lines.
async fn smtp_sink() -> (u16, tokio::task::JoinHandle<Vec<String>>) {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        let (socket, _) = listener.accept().await.unwrap();
        let (read, mut write) = socket.into_split();
        let mut read = BufReader::new(read);
        write.write_all(b"220 sink\r\n").await.unwrap();
        let (mut data, mut in_data) = (Vec::new(), false);
        loop {
            let mut line = String::new();
            if read.read_line(&mut line).await.unwrap() == 0 {
                return data;
            }
            if in_data {
                if line == ".\r\n" {
                    in_data = false;
                    write.write_all(b"250 queued\r\n").await.unwrap();
                } else {
                    data.push(line);
                }
                continue;
            }
            let answer: &[u8] = match line.get(..4).unwrap_or("").to_ascii_uppercase().as_str() {
                "EHLO" => b"250 sink\r\n",
                "DATA" => {
                    in_data = true;
                    b"354 go on\r\n"
                }
                "QUIT" => {
                    write.write_all(b"221 bye\r\n").await.unwrap();
                    return data;
                }
                _ => b"250 ok\r\n",
            };
            write.write_all(answer).await.unwrap();
        }
    });
    (port, task)
}

#[tokio::test]
async fn an_email_channel_sends_its_test_alarm_over_smtp() {
    use ferrojob::api::{CreateApp, ErrorCode};
    use ferrojob::client::{Client, ClientError};
    use ferrojob::launch::{launch, LaunchConfig};

    let (port, sink) = smtp_sink().await;
    let mut launch_config = LaunchConfig::new(None, local(), local());
    launch_config.core.alarm_allow = vec!["127.0.0.1/32".parse().unwrap()];
    let server = launch(launch_config).await.unwrap();
    let base = format!("http://{}", server.http_addr());
    let admin = Client::new(&base, server.admin_token()).unwrap();
    admin
        .create_app(&CreateApp {
            name: "shop".into(),
            secret: SECRET.into(),
        })
        .await
        .unwrap();
    let c = app_token(&admin, &base).await;
    let body = ChannelBody {
        kind: ChannelKind::Email,
        url: format!(
            "smtp://127.0.0.1:{port}?from=ferrojob@shop.example&to=oncall@shop.example&tls=none"
        ),
        secret: None,
    };
    let view = c.put_channel("shop", "mail", &body).await.unwrap();
    assert_eq!(view.kind, ChannelKind::Email);
    let sent = c.test_channel("shop", "mail").await.unwrap();
    assert!(sent.delivered, "{sent:?}");
    assert_eq!(sent.detail, "SMTP 250");
    let data = sink.await.unwrap().concat();
    assert!(
        data.contains("Subject: [ferrojob] shop: RECOVERED alarm for job 0\r\n"),
        "{data}"
    );
    assert!(data.contains("X-Ferrojob-Alarm-Id: test-mail-"), "{data}");
    assert!(data.contains("test alarm from ferrojob\r\n"), "{data}");

    // An email endpoint that cannot work is refused when the channel is set.
    for url in [
        "smtp://u:password@127.0.0.1?from=f@x.y&to=t@x.y",
        "smtp://127.0.0.1?from=f@x.y",
        "http://127.0.0.1/",
    ] {
        let bad = ChannelBody {
            url: url.into(),
            ..body.clone()
        };
        match c.put_channel("shop", "mail", &bad).await {
            Err(ClientError::Api { error, .. }) => {
                assert_eq!(
                    error.code,
                    ErrorCode::InvalidArgument,
                    "{url}: {}",
                    error.message
                )
            }
            other => panic!("{url}: expected a 400, got {other:?}"),
        }
    }
    server.shutdown().await;
}

/// A client with an `admin` API token of app `shop`.
async fn app_token(admin: &ferrojob::client::Client, base: &str) -> ferrojob::client::Client {
    let req = ferrojob::api::CreateToken {
        name: "alarms".into(),
        role: ferrojob::api::TokenRole::Admin,
        expires_in_secs: None,
    };
    let created = admin.create_token("shop", &req).await.unwrap();
    ferrojob::client::Client::new(base, created.token).unwrap()
}

/// A local HTTPS receiver on a certificate for `localhost` signed by a fresh CA: reads one
/// request per connection (by hand), records it, answers 200.
struct TlsReceiver {
    port: u16,
    ca_pem: String,
    got: Arc<Mutex<Vec<Got>>>,
    task: tokio::task::JoinHandle<()>,
}

impl TlsReceiver {
    async fn start() -> TlsReceiver {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca_params, ca_key);
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec!["localhost".to_owned()])
            .unwrap()
            .signed_by(&key, &issuer)
            .unwrap();
        let tls = ferrojob_transport::tls::ServerTls::from_pem(
            cert.pem().as_bytes(),
            key.serialize_pem().as_bytes(),
        )
        .unwrap();
        let acceptor = tls.acceptor();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let got: Arc<Mutex<Vec<Got>>> = Arc::default();
        let g = Arc::clone(&got);
        let task = tokio::spawn(async move {
            loop {
                let (tcp, _) = listener.accept().await.unwrap();
                let Ok(mut stream) = acceptor.accept(tcp).await else {
                    continue;
                };
                let mut raw = Vec::new();
                let mut buf = [0u8; 4096];
                let head_end = loop {
                    if let Some(i) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
                        break i;
                    }
                    let n = stream.read(&mut buf).await.unwrap();
                    assert!(n > 0, "the request ended in its head");
                    raw.extend_from_slice(&buf[..n]);
                };
                let head = String::from_utf8(raw[..head_end].to_vec()).unwrap();
                let header = |name: &str| {
                    head.split("\r\n").find_map(|l| {
                        let (n, v) = l.split_once(':')?;
                        n.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
                    })
                };
                let len: usize = header("content-length").unwrap().parse().unwrap();
                let mut body = raw[head_end + 4..].to_vec();
                while body.len() < len {
                    let n = stream.read(&mut buf).await.unwrap();
                    assert!(n > 0, "the request ended in its body");
                    body.extend_from_slice(&buf[..n]);
                }
                assert!(head.starts_with("POST /hook HTTP/1.1\r\n"), "{head}");
                g.lock().unwrap().push((
                    header("x-ferrojob-alarm-id").unwrap_or_default(),
                    header("x-ferrojob-signature"),
                    String::from_utf8(body).unwrap(),
                ));
                let _ = stream
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                    .await;
                let _ = stream.shutdown().await;
            }
        });
        TlsReceiver {
            port,
            ca_pem: ca.pem(),
            got,
            task,
        }
    }

    fn url(&self) -> String {
        format!("https://localhost:{}/hook", self.port)
    }

    fn got(&self) -> Vec<Got> {
        self.got.lock().unwrap().clone()
    }
}

impl Drop for TlsReceiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[tokio::test]
async fn an_https_webhook_on_a_private_ca_gets_the_exact_signed_body() {
    use ferrojob::alarm::channel::{request_body, Notice};
    use ferrojob::https::HttpsRoots;
    let receiver = TlsReceiver::start().await;

    // A server trusting only the public roots cannot reach it, and says why.
    let public_only = start(config(StoreChoice::Memory, None)).await;
    let api = public_only.api();
    let first = app(&api, "a").await;
    add_channel(&api, &first, receiver.url(), Some("hook-secret")).await;
    let test = api.test_channel(first, "ops".into()).await.unwrap();
    assert!(!test.delivered, "{test:?}");
    assert!(
        test.detail
            .contains("not signed by a CA this client trusts"),
        "{test:?}"
    );
    public_only.shutdown().await;
    assert!(receiver.got().is_empty());

    // Given the receiver's CA besides the public roots, it delivers.
    let mut c = config(StoreChoice::Memory, None);
    c.alarm_tls = HttpsRoots::from_ca_pem(receiver.ca_pem.as_bytes())
        .unwrap()
        .with_public();
    let server = start(c).await;
    let api = server.api();
    let app = app(&api, "a").await;
    add_channel(&api, &app, receiver.url(), Some("hook-secret")).await;
    let test = api.test_channel(app.clone(), "ops".into()).await.unwrap();
    assert!(test.delivered, "{test:?}");

    let mut w = FakeWorker::connect(server.transport_addr(), "a", "w1:1", &[], Mode::Fail).await;
    w.register(&api, &app, 8, 0).await;
    let job = alarming_job(&api, &app).await;
    let id = run(&api, &app, job).await;
    status_is(&api, &app, id, S::Failed).await;
    let _ = w.next_schedule().await;
    let listed = until("the delivery is recorded", || async {
        let l = api
            .list_alarms(app.clone(), PageQuery::default())
            .await
            .unwrap();
        (l.items.first().is_some_and(|a| a.status == "DELIVERED")).then_some(l)
    })
    .await;
    let alarm = &listed.items[0];
    let expected = request_body(
        ChannelKind::Webhook,
        &Notice {
            id: &alarm.id,
            app: "a",
            job_id: alarm.job_id,
            instance_id: alarm.instance_id,
            kind: alarm.kind,
            raised_at: alarm.raised_at,
            message: &alarm.message,
        },
    );
    let expected = String::from_utf8(expected).unwrap();
    let got = receiver.got();
    assert_eq!(got.len(), 2, "{got:?}");
    let (hdr_id, sig, body) = &got[1];
    assert_eq!(hdr_id, &alarm.id);
    assert_eq!(body, &expected);
    assert_eq!(
        sig.as_deref(),
        Some(sign("hook-secret", &expected).as_str())
    );
    assert_eq!(alarm.id, format!("job-{}-failures-{}", job.0, id.0));
    server.shutdown().await;
}
