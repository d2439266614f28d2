//! Two sans-IO peers driven on virtual time: handshake, requests, heartbeats, every timeout,
//! backpressure, close, and the reconnect backoff schedule. No sockets, no sleeps.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferrojob_transport::frame::{encode_to_vec, Decoder, Flags};
use ferrojob_transport::message::{
    samples, Ack, ErrorCode, ErrorReply, Handshake, HandshakeAccepted, HandshakeChallenge, Message,
    MessageKind, Ping, QueryExecutorCluster, StopInstance,
};
use ferrojob_transport::{
    AdmissionControl, AppSecret, AppSecrets, Backoff, BackoffConfig, ClientIdentity, Connection,
    ConnectionConfig, ConnectionError, Event, NotServed, PeerInfo, RequestError, SendError,
    TransportMetrics,
};
use proptest::prelude::*;

fn secrets(app: &str, secret: &str) -> Arc<dyn AppSecrets> {
    let mut m = HashMap::new();
    m.insert(app.to_owned(), AppSecret::new(secret));
    Arc::new(m)
}

fn identity(app: &str, secret: &str) -> ClientIdentity {
    ClientIdentity {
        app_name: app.into(),
        worker_address: "10.0.0.1:27777".into(),
        tags: vec!["eu".into()],
        client_version: "test".into(),
        secret: AppSecret::new(secret),
    }
}

fn config() -> ConnectionConfig {
    ConnectionConfig {
        heartbeat_interval: Duration::from_secs(5),
        idle_timeout: Duration::from_secs(20),
        handshake_timeout: Duration::from_secs(10),
        frame_timeout: Duration::from_secs(30),
        write_stall_timeout: Duration::from_secs(30),
        max_send_buffer: 64 * 1024,
        ..ConnectionConfig::default()
    }
}

struct Pair {
    now: Instant,
    client: Connection,
    server: Connection,
    client_events: Vec<Event>,
    server_events: Vec<Event>,
    client_metrics: Arc<TransportMetrics>,
    server_metrics: Arc<TransportMetrics>,
    /// When false, bytes from that side are dropped (a dead or partitioned peer).
    client_to_server: bool,
    server_to_client: bool,
}

impl Pair {
    fn new(client_secret: &str, server_secret: &str, config: ConnectionConfig) -> Pair {
        Pair::with_configs(client_secret, server_secret, config.clone(), config)
    }

    fn with_configs(
        client_secret: &str,
        server_secret: &str,
        config: ConnectionConfig,
        server_config: ConnectionConfig,
    ) -> Pair {
        let now = Instant::now();
        let client_metrics = Arc::new(TransportMetrics::default());
        let server_metrics = Arc::new(TransportMetrics::default());
        let client = Connection::new_client(
            config.clone(),
            identity("billing", client_secret),
            [1; 32],
            now,
            Arc::clone(&client_metrics),
        );
        let server = Connection::new_server(
            server_config,
            secrets("billing", server_secret),
            [2; 32],
            now,
            1_000,
            Arc::clone(&server_metrics),
        );
        Pair {
            now,
            client,
            server,
            client_events: Vec::new(),
            server_events: Vec::new(),
            client_metrics,
            server_metrics,
            client_to_server: true,
            server_to_client: true,
        }
    }

    fn established() -> Pair {
        let mut p = Pair::new("s3cret", "s3cret", config());
        p.drive();
        assert!(p.client.is_established() && p.server.is_established());
        p.client_events.clear();
        p.server_events.clear();
        p
    }

    /// Moves bytes both ways until neither side has anything to send.
    fn drive(&mut self) {
        loop {
            let mut moved = 0;
            let mut buf = Vec::new();
            let n = self.client.poll_transmit(self.now, &mut buf);
            if n > 0 {
                self.client.handle_transmitted(self.now);
                if self.client_to_server {
                    self.server.handle_input(self.now, &buf);
                }
                moved += n;
            }
            let mut buf = Vec::new();
            let n = self.server.poll_transmit(self.now, &mut buf);
            if n > 0 {
                self.server.handle_transmitted(self.now);
                if self.server_to_client {
                    self.client.handle_input(self.now, &buf);
                }
                moved += n;
            }
            while let Some(e) = self.client.poll_event() {
                self.client_events.push(e);
            }
            while let Some(e) = self.server.poll_event() {
                self.server_events.push(e);
            }
            if moved == 0 {
                break;
            }
        }
    }

    /// Advances virtual time to `now + d`, firing every timer on the way in order.
    fn advance(&mut self, d: Duration) {
        let end = self.now + d;
        loop {
            let next = [self.client.poll_timeout(), self.server.poll_timeout()]
                .into_iter()
                .flatten()
                .filter(|&t| t <= end)
                .min();
            let Some(t) = next else { break };
            self.now = self.now.max(t);
            self.client.handle_timeout(self.now);
            self.server.handle_timeout(self.now);
            self.drive();
        }
        self.now = end;
        self.drive();
    }

    fn client_closed(&self) -> Option<&ConnectionError> {
        self.client_events.iter().find_map(|e| match e {
            Event::Closed(err) => Some(err),
            _ => None,
        })
    }

    fn server_closed(&self) -> Option<&ConnectionError> {
        self.server_events.iter().find_map(|e| match e {
            Event::Closed(err) => Some(err),
            _ => None,
        })
    }
}

#[test]
fn handshake_establishes_both_ends_with_peer_info() {
    let mut p = Pair::new("s3cret", "s3cret", config());
    assert!(!p.client.is_established());
    assert_eq!(
        p.client.send(p.now, &Ack {}.into()),
        Err(SendError::NotEstablished)
    );
    p.drive();
    assert_eq!(
        p.server_events,
        vec![Event::Established(PeerInfo::Worker {
            app_name: "billing".into(),
            worker_address: "10.0.0.1:27777".into(),
            tags: vec!["eu".into()],
            client_version: "test".into(),
        })]
    );
    assert!(matches!(
        p.client_events.as_slice(),
        [Event::Established(PeerInfo::Server {
            heartbeat_interval_ms: 5000,
            idle_timeout_ms: 20000,
            ..
        })]
    ));
    assert_eq!(p.server_metrics.snapshot().connections_established, 1);
}

#[test]
fn wrong_secret_is_refused_with_a_close_frame() {
    let mut p = Pair::new("guess", "s3cret", config());
    p.drive();
    assert!(
        matches!(p.server_closed(), Some(ConnectionError::AuthFailed { reason }) if reason.contains("wrong secret"))
    );
    assert!(matches!(
        p.client_closed(),
        Some(ConnectionError::PeerClosed { code: ErrorCode::AuthFailed, message }) if message == "authentication failed"
    ));
    assert!(p.client.is_closed() && p.server.is_closed());
    assert_eq!(p.server_metrics.snapshot().handshake_failures, 1);
    assert_eq!(p.client_metrics.snapshot().handshake_failures, 1);
}

/// The address a refused worker claims is its own text: it is quoted and escaped in the
/// refusal (which the server logs), so it cannot forge log lines.
#[test]
fn a_refused_workers_claimed_address_is_escaped_in_the_refusal() {
    let now = Instant::now();
    let m = Arc::new(TransportMetrics::default());
    let mut forged = identity("billing", "guess");
    forged.worker_address = "w:1\nERROR forged line".into();
    let mut client = Connection::new_client(config(), forged, [1; 32], now, m.clone());
    let mut server = Connection::new_server(config(), secrets("billing", "x"), [2; 32], now, 0, m);
    for _ in 0..3 {
        let mut b = Vec::new();
        server.poll_transmit(now, &mut b);
        server.handle_transmitted(now);
        client.handle_input(now, &b);
        let mut b = Vec::new();
        client.poll_transmit(now, &mut b);
        client.handle_transmitted(now);
        server.handle_input(now, &b);
    }
    match server.poll_event() {
        Some(Event::Closed(ConnectionError::AuthFailed { reason })) => {
            assert!(!reason.contains('\n'), "{reason}");
            assert!(reason.contains(r#""w:1\nERROR forged line""#), "{reason}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn unknown_app_is_refused_like_a_wrong_secret() {
    let now = Instant::now();
    let m = Arc::new(TransportMetrics::default());
    let mut client =
        Connection::new_client(config(), identity("nope", "x"), [1; 32], now, m.clone());
    let mut server = Connection::new_server(config(), secrets("billing", "x"), [2; 32], now, 0, m);
    for _ in 0..3 {
        let mut b = Vec::new();
        server.poll_transmit(now, &mut b);
        server.handle_transmitted(now);
        client.handle_input(now, &b);
        let mut b = Vec::new();
        client.poll_transmit(now, &mut b);
        client.handle_transmitted(now);
        server.handle_input(now, &b);
    }
    assert!(
        matches!(server.poll_event(), Some(Event::Closed(ConnectionError::AuthFailed { reason })) if reason.contains("unknown app"))
    );
    assert!(matches!(
        client.poll_event(),
        Some(Event::Closed(ConnectionError::PeerClosed {
            code: ErrorCode::AuthFailed,
            ..
        }))
    ));
}

/// A server of a cluster that does not serve the app: it knows the secret, but it refuses
/// the worker once the proof checked out, naming the server that does.
#[derive(Debug)]
struct ServedElsewhere(Option<String>);

impl AppSecrets for ServedElsewhere {
    fn secret(&self, app_name: &str) -> Option<AppSecret> {
        (app_name == "billing").then(|| AppSecret::new("x"))
    }

    fn serves(&self, _app_name: &str) -> Result<(), NotServed> {
        Err(match &self.0 {
            Some(owner) => NotServed::OwnedBy(owner.clone()),
            None => NotServed::OwnerUnknown,
        })
    }
}

#[test]
fn a_server_that_does_not_serve_the_app_refuses_naming_its_owner() {
    for owner in [Some("server-b:10086".to_owned()), None] {
        let now = Instant::now();
        let m = Arc::new(TransportMetrics::default());
        let mut client =
            Connection::new_client(config(), identity("billing", "x"), [1; 32], now, m.clone());
        let secrets: Arc<dyn AppSecrets> = Arc::new(ServedElsewhere(owner.clone()));
        let mut server = Connection::new_server(config(), secrets, [2; 32], now, 0, m);
        for _ in 0..3 {
            let mut b = Vec::new();
            server.poll_transmit(now, &mut b);
            server.handle_transmitted(now);
            client.handle_input(now, &b);
            let mut b = Vec::new();
            client.poll_transmit(now, &mut b);
            client.handle_transmitted(now);
            server.handle_input(now, &b);
        }
        let detail = match client.poll_event() {
            Some(Event::Closed(ConnectionError::PeerClosed {
                code: ErrorCode::NotOwner,
                message,
            })) => message,
            other => panic!("{other:?}"),
        };
        let expected = match owner {
            Some(o) => NotServed::OwnedBy(o),
            None => NotServed::OwnerUnknown,
        };
        assert_eq!(NotServed::parse(&detail), Some(expected));
        assert!(!client.is_established());
    }
}

#[test]
fn client_rejects_a_server_that_cannot_prove_the_secret() {
    let now = Instant::now();
    let m = Arc::new(TransportMetrics::default());
    let mut client =
        Connection::new_client(config(), identity("billing", "s3cret"), [1; 32], now, m);
    let challenge: Message = HandshakeChallenge {
        protocol_version: ferrojob_transport::frame::PROTOCOL_VERSION,
        nonce: [5; 32],
        server_time_ms: 0,
    }
    .into();
    client.handle_input(now, &encode_to_vec(&challenge, Flags::NONE, 0).unwrap());
    let mut hello = Vec::new();
    client.poll_transmit(now, &mut hello);
    let mut dec = Decoder::new(1 << 20);
    let frame = dec.decode(&mut &hello[..]).unwrap().unwrap();
    assert_eq!(frame.header.kind, MessageKind::Handshake);
    let Message::Handshake(h) = frame.message().unwrap() else {
        panic!()
    };
    assert_eq!(h.app_name, "billing");
    assert!(!h.proof.iter().all(|&b| b == 0));
    let accepted: Message = HandshakeAccepted {
        server_proof: [0; 32],
        heartbeat_interval_ms: 1,
        idle_timeout_ms: 1,
        server_time_ms: 0,
    }
    .into();
    client.handle_input(now, &encode_to_vec(&accepted, Flags::NONE, 0).unwrap());
    assert!(
        matches!(client.poll_event(), Some(Event::Closed(ConnectionError::AuthFailed { reason })) if reason.contains("server proof"))
    );
}

#[test]
fn the_secret_never_crosses_the_wire() {
    let secret = "a-very-recognisable-secret";
    let now = Instant::now();
    let m = Arc::new(TransportMetrics::default());
    let mut client = Connection::new_client(
        config(),
        identity("billing", secret),
        [1; 32],
        now,
        m.clone(),
    );
    let mut server =
        Connection::new_server(config(), secrets("billing", secret), [2; 32], now, 0, m);
    let mut wire = Vec::new();
    for _ in 0..3 {
        let mut b = Vec::new();
        server.poll_transmit(now, &mut b);
        server.handle_transmitted(now);
        client.handle_input(now, &b);
        wire.extend_from_slice(&b);
        let mut b = Vec::new();
        client.poll_transmit(now, &mut b);
        client.handle_transmitted(now);
        server.handle_input(now, &b);
        wire.extend_from_slice(&b);
    }
    assert!(server.is_established() && client.is_established());
    assert!(!wire.windows(secret.len()).any(|w| w == secret.as_bytes()));
}

#[test]
fn requests_get_responses_and_error_replies() {
    let mut p = Pair::established();
    let q: Message = QueryExecutorCluster {
        app_id: 7,
        job_id: 9,
    }
    .into();
    let id = p.client.request(p.now, &q, Duration::from_secs(3)).unwrap();
    let id2 = p.client.request(p.now, &q, Duration::from_secs(3)).unwrap();
    p.drive();
    let corrs: Vec<u64> = p
        .server_events
        .drain(..)
        .map(|e| match e {
            Event::Message {
                correlation: Some(c),
                message,
            } => {
                assert_eq!(message, q);
                c
            }
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(corrs.len(), 2);
    let reply = samples::all()
        .into_iter()
        .find(|m| m.kind() == MessageKind::ExecutorCluster)
        .unwrap();
    p.server.respond(p.now, corrs[0], &reply).unwrap();
    p.server
        .respond(
            p.now,
            corrs[1],
            &ErrorReply {
                code: ErrorCode::NotFound,
                message: "job 9".into(),
            }
            .into(),
        )
        .unwrap();
    p.drive();
    assert_eq!(
        p.client_events,
        vec![
            Event::Response {
                request: id,
                result: Ok(reply)
            },
            Event::Response {
                request: id2,
                result: Err(RequestError::Remote {
                    code: ErrorCode::NotFound,
                    message: "job 9".into()
                })
            },
        ]
    );
    assert_eq!(p.client.pending_requests(), 0);
}

#[test]
fn one_way_messages_arrive_in_order_without_correlation() {
    let mut p = Pair::established();
    let all: Vec<Message> = samples::all()
        .into_iter()
        .filter(|m| !m.kind().is_control())
        .collect();
    for m in &all {
        p.client.send(p.now, m).unwrap();
    }
    p.drive();
    let got: Vec<Message> = p
        .server_events
        .drain(..)
        .map(|e| match e {
            Event::Message {
                correlation: None,
                message,
            } => message,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(got, all);
}

#[test]
fn control_messages_cannot_be_sent_by_callers() {
    let mut p = Pair::established();
    let err = p
        .client
        .send(p.now, &Ping { time_ms: 1 }.into())
        .unwrap_err();
    assert_eq!(
        err,
        SendError::ControlMessage {
            kind: MessageKind::Ping
        }
    );
}

#[test]
fn request_times_out_and_a_late_response_is_dropped() {
    let mut p = Pair::established();
    let id = p
        .client
        .request(
            p.now,
            &StopInstance {
                instance_id: 1,
                epoch: 0,
            }
            .into(),
            Duration::from_secs(2),
        )
        .unwrap();
    p.drive();
    let Some(Event::Message {
        correlation: Some(c),
        ..
    }) = p.server_events.pop()
    else {
        panic!()
    };
    p.advance(Duration::from_millis(1999));
    assert!(p.client_events.is_empty());
    p.advance(Duration::from_millis(1));
    assert_eq!(
        p.client_events,
        vec![Event::Response {
            request: id,
            result: Err(RequestError::TimedOut {
                timeout: Duration::from_secs(2)
            })
        }]
    );
    p.client_events.clear();
    p.server.respond(p.now, c, &Ack {}.into()).unwrap();
    p.drive();
    assert!(p.client_events.is_empty());
    let snap = p.client_metrics.snapshot();
    assert_eq!((snap.request_timeouts, snap.late_responses), (1, 1));
}

#[test]
fn heartbeats_keep_a_quiet_connection_alive() {
    let mut p = Pair::established();
    let before = p.client_metrics.snapshot().frames_sent;
    p.advance(Duration::from_secs(120));
    assert!(p.client.is_established() && p.server.is_established());
    assert!(p.client_closed().is_none() && p.server_closed().is_none());
    // One ping every 5 s from the side whose timer fires first; the other answers.
    let pings = p.client_metrics.snapshot().frames_sent - before;
    assert!(pings >= 20, "{pings}");
}

#[test]
fn a_silent_peer_hits_the_idle_timeout() {
    let mut p = Pair::established();
    p.server_to_client = false; // the server's bytes vanish (dead server, partition)
    p.advance(Duration::from_secs(19));
    assert!(p.client_closed().is_none());
    p.advance(Duration::from_secs(2));
    assert_eq!(
        p.client_closed(),
        Some(&ConnectionError::IdleTimeout {
            timeout: Duration::from_secs(20)
        })
    );
    assert_eq!(p.client_metrics.snapshot().idle_timeouts, 1);
}

#[test]
fn a_client_gives_up_a_silent_server_after_four_of_its_heartbeats() {
    let mut server = config();
    server.heartbeat_interval = Duration::from_millis(500);
    let mut p = Pair::with_configs("s3cret", "s3cret", config(), server);
    p.drive();
    assert!(p.client.is_established());
    assert_eq!(p.client.idle_timeout(), Duration::from_secs(2));
    // A server that sends keeps the connection open: its pings come every 500 ms.
    p.advance(Duration::from_secs(60));
    assert!(p.client_closed().is_none() && p.server_closed().is_none());
    p.server_to_client = false; // the server stops sending (paused, frozen, cut off)
    p.advance(Duration::from_millis(1400));
    assert!(p.client_closed().is_none());
    p.advance(Duration::from_millis(700));
    assert_eq!(
        p.client_closed(),
        Some(&ConnectionError::IdleTimeout {
            timeout: Duration::from_secs(2)
        })
    );
}

#[test]
fn a_client_follows_its_server_heartbeat_within_its_own_idle_timeout() {
    // A slow server heartbeat never lengthens the client's own idle timeout, and a very fast
    // one is floored at a second.
    for (server_beat, expected) in [
        (Duration::from_secs(30), Duration::from_secs(20)),
        (Duration::from_secs(5), Duration::from_secs(20)),
        (Duration::from_millis(100), Duration::from_secs(1)),
    ] {
        let mut server = config();
        server.heartbeat_interval = server_beat;
        let mut p = Pair::with_configs("s3cret", "s3cret", config(), server);
        p.drive();
        assert!(p.client.is_established());
        assert_eq!(
            p.client.idle_timeout(),
            expected,
            "server beat {server_beat:?}"
        );
        // The server's own idle timeout is its own.
        assert_eq!(p.server.idle_timeout(), Duration::from_secs(20));
    }
}

#[test]
fn a_handshake_that_never_completes_times_out() {
    let mut p = Pair::new("s3cret", "s3cret", config());
    p.server_to_client = false;
    p.advance(Duration::from_secs(11));
    assert_eq!(
        p.client_closed(),
        Some(&ConnectionError::HandshakeTimeout {
            timeout: Duration::from_secs(10)
        })
    );
    assert!(matches!(
        p.server_closed(),
        Some(ConnectionError::HandshakeTimeout { .. })
    ));
}

#[test]
fn a_trickling_peer_is_cut_off_by_the_frame_timeout() {
    let mut cfg = config();
    cfg.idle_timeout = Duration::from_secs(600);
    cfg.heartbeat_interval = Duration::from_secs(300);
    let mut p = Pair::new("s3cret", "s3cret", cfg);
    p.drive();
    let frame = encode_to_vec(&samples::schedule_job().into(), Flags::NONE, 0).unwrap();
    let mut sent = 0;
    for b in frame.iter().take(10) {
        p.server.handle_input(p.now, std::slice::from_ref(b));
        sent += 1;
        p.advance(Duration::from_secs(4)); // one byte every 4 s: never idle
        if p.server.is_closed() {
            break;
        }
    }
    assert!(sent <= 9, "cut off after ~30 s, not after {sent} bytes");
    assert_eq!(
        p.server_closed(),
        Some(&ConnectionError::SlowPeer {
            timeout: Duration::from_secs(30)
        })
    );
    assert!(matches!(
        p.client_closed(),
        Some(ConnectionError::PeerClosed {
            code: ErrorCode::SlowPeer,
            ..
        })
    ));
    assert_eq!(p.server_metrics.snapshot().slow_peers, 1);
}

#[test]
fn a_peer_that_never_reads_gets_backpressure_then_is_dropped() {
    let mut cfg = config();
    cfg.write_stall_timeout = Duration::from_secs(10);
    let mut p = Pair::new("s3cret", "s3cret", cfg);
    p.drive();
    // The socket takes one batch and never finishes writing it.
    let m: Message = samples::schedule_job().into();
    p.client.send(p.now, &m).unwrap();
    let mut stuck = Vec::new();
    assert!(p.client.poll_transmit(p.now, &mut stuck) > 0);
    let mut accepted = 1;
    let err = loop {
        match p.client.send(p.now, &m) {
            Ok(()) => accepted += 1,
            Err(e) => break e,
        }
        assert!(accepted < 10_000, "send buffer is unbounded");
    };
    assert!(
        matches!(err, SendError::Full { limit: 65536, .. }),
        "{err:?}"
    );
    assert!(p.client.queued_bytes() < 64 * 1024 + 2048);
    // Nothing more can be taken while the batch is in flight.
    assert_eq!(p.client.poll_transmit(p.now, &mut Vec::new()), 0);
    // The server's pings keep the client from idling out; the stall ends it.
    p.advance(Duration::from_secs(9));
    assert!(p.client_closed().is_none());
    p.advance(Duration::from_secs(2));
    assert!(matches!(
        p.client_closed(),
        Some(ConnectionError::PeerNotReading { .. })
    ));
    assert_eq!(p.client_metrics.snapshot().peers_not_reading, 1);
}

#[test]
fn close_flushes_earlier_messages_then_tells_the_peer_why() {
    let mut p = Pair::established();
    let pending = p
        .client
        .request(
            p.now,
            &StopInstance {
                instance_id: 5,
                epoch: 0,
            }
            .into(),
            Duration::from_secs(9),
        )
        .unwrap();
    p.client
        .send(
            p.now,
            &StopInstance {
                instance_id: 6,
                epoch: 0,
            }
            .into(),
        )
        .unwrap();
    p.client
        .close(p.now, ErrorCode::ShuttingDown, "worker stopping");
    assert_eq!(p.client.send(p.now, &Ack {}.into()), Err(SendError::Closed));
    p.drive();
    assert!(
        matches!(&p.client_events[0], Event::Response { request, result: Err(RequestError::ConnectionLost(_)) } if *request == pending)
    );
    assert!(matches!(
        &p.client_events[1],
        Event::Closed(ConnectionError::LocalClose {
            code: ErrorCode::ShuttingDown,
            ..
        })
    ));
    assert_eq!(p.server_events.len(), 3);
    assert!(matches!(
        &p.server_events[0],
        Event::Message {
            correlation: Some(_),
            ..
        }
    ));
    assert!(
        matches!(&p.server_events[1], Event::Message { correlation: None, message: Message::StopInstance(s) } if s.instance_id == 6)
    );
    assert_eq!(
        p.server_events[2],
        Event::Closed(ConnectionError::PeerClosed {
            code: ErrorCode::ShuttingDown,
            message: "worker stopping".into()
        })
    );
}

#[test]
fn garbage_closes_with_a_reason_and_counts() {
    let mut p = Pair::established();
    p.server
        .handle_input(p.now, b"GET / HTTP/1.1\r\nHost: example\r\n\r\n");
    p.drive();
    assert!(matches!(
        p.server_closed(),
        Some(ConnectionError::Frame(
            ferrojob_transport::FrameError::BadMagic { .. }
        ))
    ));
    assert!(matches!(
        p.client_closed(),
        Some(ConnectionError::PeerClosed {
            code: ErrorCode::Malformed,
            ..
        })
    ));
    assert_eq!(p.server_metrics.snapshot().bad_magic, 1);
    // Input after close is ignored, not a panic.
    p.server.handle_input(p.now, b"more");
    p.server.handle_timeout(p.now + Duration::from_secs(100));
}

#[test]
fn handshake_messages_after_establishment_are_a_protocol_error() {
    let mut p = Pair::established();
    let again: Message = HandshakeChallenge {
        protocol_version: ferrojob_transport::frame::PROTOCOL_VERSION,
        nonce: [0; 32],
        server_time_ms: 0,
    }
    .into();
    p.client
        .handle_input(p.now, &encode_to_vec(&again, Flags::NONE, 0).unwrap());
    p.drive();
    assert!(matches!(
        p.client_closed(),
        Some(ConnectionError::UnexpectedMessage {
            kind: MessageKind::HandshakeChallenge,
            ..
        })
    ));
}

#[test]
fn messages_before_the_handshake_are_refused() {
    let now = Instant::now();
    let m = Arc::new(TransportMetrics::default());
    let mut server = Connection::new_server(
        config(),
        secrets("billing", "x"),
        [2; 32],
        now,
        0,
        m.clone(),
    );
    server.handle_input(
        now,
        &encode_to_vec(&samples::schedule_job().into(), Flags::NONE, 0).unwrap(),
    );
    assert!(matches!(
        server.poll_event(),
        Some(Event::Closed(ConnectionError::UnexpectedMessage {
            kind: MessageKind::ScheduleJob,
            ..
        }))
    ));
    assert_eq!(m.snapshot().unexpected_messages, 1);
}

// ----- limits before authentication, and on replies the core sends on its own ----------

/// A header announcing `len` payload bytes of `kind`, with no payload.
fn header_announcing(kind: Message, len: u32) -> Vec<u8> {
    let frame = encode_to_vec(&kind, Flags::NONE, 0).unwrap();
    let mut header = frame[..24].to_vec();
    header[12..16].copy_from_slice(&len.to_le_bytes());
    header
}

#[test]
fn a_frame_over_the_preauth_limit_closes_before_any_payload_is_buffered() {
    let now = Instant::now();
    let m = Arc::new(TransportMetrics::default());
    let mut server = Connection::new_server(
        ConnectionConfig::default(),
        secrets("billing", "x"),
        [2; 32],
        now,
        0,
        m.clone(),
    );
    // 4 MiB is within max_payload_len but not within the pre-authentication limit.
    let hello = samples::all().remove(1); // Handshake
    server.handle_input(now, &header_announcing(hello, 4 * 1024 * 1024));
    assert_eq!(
        server.poll_event(),
        Some(Event::Closed(ConnectionError::HandshakeFrameTooLarge {
            kind: MessageKind::Handshake,
            len: 4 * 1024 * 1024,
            max: 4096,
        }))
    );
    let s = m.snapshot();
    assert_eq!(s.preauth_frames_too_large, 1);
    assert_eq!(s.oversized_frames, 1);
    // The peer is told why (after the challenge queued at creation).
    let mut out = Vec::new();
    server.poll_transmit(now, &mut out);
    let mut dec = Decoder::new(1 << 20);
    let mut input = &out[..];
    let mut close = None;
    while let Ok(Some(frame)) = dec.decode(&mut input) {
        if let Ok(Message::Close(c)) = frame.message() {
            close = Some(c);
        }
    }
    let close = close.expect("close frame");
    assert_eq!(close.code, ErrorCode::FrameTooLarge);
    assert!(
        close.message.contains("before authentication"),
        "{}",
        close.message
    );
}

#[test]
fn the_full_frame_limit_applies_from_the_first_frame_after_the_handshake() {
    let mut p = Pair::established();
    // Far over the pre-authentication limit, well within max_payload_len.
    let mut job = samples::schedule_job();
    job.job_params = "x".repeat(30 * 1024);
    p.client.send(p.now, &job.clone().into()).unwrap();
    p.client
        .send(
            p.now,
            &StopInstance {
                instance_id: 7,
                epoch: 0,
            }
            .into(),
        )
        .unwrap();
    p.drive();
    assert!(p.server_closed().is_none(), "{:?}", p.server_closed());
    assert_eq!(p.server_events.len(), 2);
    assert!(
        matches!(&p.server_events[0], Event::Message { message: Message::ScheduleJob(j), .. } if *j == job)
    );
    // And the client side raised its limit too: the server's answer of the same size.
    p.server.send(p.now, &job.into()).unwrap();
    p.drive();
    assert!(p.client_closed().is_none(), "{:?}", p.client_closed());
    assert_eq!(p.server_metrics.snapshot().preauth_frames_too_large, 0);
}

#[test]
fn the_handshake_messages_fit_the_preauth_limit() {
    // A generous identity: long names, sixteen tags.
    let hello = Handshake {
        protocol_version: ferrojob_transport::frame::PROTOCOL_VERSION,
        app_name: "a".repeat(64),
        worker_address: format!("{}:27777", "h".repeat(120)),
        tags: (0..16)
            .map(|i| format!("tag-{i}-{}", "t".repeat(24)))
            .collect(),
        client_version: "ferrojob-worker 1.2.3 (x86_64-unknown-linux-gnu)".into(),
        client_nonce: [1; 32],
        proof: [2; 32],
    };
    let sizes = [
        encode_to_vec(&hello.into(), Flags::NONE, 0).unwrap().len(),
        encode_to_vec(&samples::all().remove(0), Flags::NONE, 0)
            .unwrap()
            .len(),
        encode_to_vec(&samples::all().remove(1), Flags::NONE, 0)
            .unwrap()
            .len(),
        encode_to_vec(&samples::all().remove(2), Flags::NONE, 0)
            .unwrap()
            .len(),
    ];
    for len in sizes {
        assert!(len - 24 < 2048, "{sizes:?}");
    }
}

#[test]
fn a_client_whose_handshake_is_too_large_fails_locally_with_a_reason() {
    let now = Instant::now();
    let m = Arc::new(TransportMetrics::default());
    let mut who = identity("billing", "s3cret");
    who.tags = (0..200)
        .map(|i| format!("tag-{i:04}-{}", "t".repeat(32)))
        .collect();
    let mut client = Connection::new_client(config(), who.clone(), [1; 32], now, m.clone());
    let mut server = Connection::new_server(
        config(),
        secrets("billing", "s3cret"),
        [2; 32],
        now,
        0,
        m.clone(),
    );
    let mut out = Vec::new();
    server.poll_transmit(now, &mut out);
    client.handle_input(now, &out);
    assert!(matches!(
        client.poll_event(),
        Some(Event::Closed(ConnectionError::HandshakeFrameTooLarge {
            kind: MessageKind::Handshake,
            max: 4096,
            ..
        }))
    ));
    // Raised on both sides, the same identity gets in.
    let mut cfg = config();
    cfg.max_handshake_payload_len = 64 * 1024;
    let mut p = Pair::new("s3cret", "s3cret", cfg.clone());
    p.client = Connection::new_client(cfg, who, [1; 32], p.now, m);
    p.drive();
    assert!(p.client.is_established() && p.server.is_established());
}

#[test]
fn the_default_handshake_deadline_is_five_seconds_and_counted() {
    let cfg = ConnectionConfig::default();
    assert_eq!(cfg.handshake_timeout, Duration::from_secs(5));
    let mut p = Pair::new("s3cret", "s3cret", cfg);
    p.client_to_server = false;
    p.advance(Duration::from_millis(4999));
    assert!(p.server_closed().is_none());
    p.advance(Duration::from_millis(1));
    assert_eq!(
        p.server_closed(),
        Some(&ConnectionError::HandshakeTimeout {
            timeout: Duration::from_secs(5)
        })
    );
    let s = p.server_metrics.snapshot();
    assert_eq!(s.handshake_timeouts, 1);
    assert_eq!(s.handshake_failures, 1);
}

fn ping_frame(time_ms: i64) -> Vec<u8> {
    encode_to_vec(&Ping { time_ms }.into(), Flags::NONE, 0).unwrap()
}

#[test]
fn a_peer_that_pings_without_reading_is_cut_off_at_the_control_bound() {
    let mut p = Pair::established();
    let limit = ConnectionConfig::default().max_queued_control_replies;
    // The server's socket takes nothing: its output is never transmitted. No time passes,
    // so no timer can be what closes the connection.
    let mut pings = Vec::new();
    for i in 0..limit {
        pings.extend_from_slice(&ping_frame(i as i64));
    }
    p.server.handle_input(p.now, &pings);
    assert!(!p.server.is_closed(), "{limit} pongs may wait");
    p.server.handle_input(p.now, &ping_frame(-1));
    assert!(p.server.is_closed());
    let mut events = Vec::new();
    while let Some(e) = p.server.poll_event() {
        events.push(e);
    }
    assert_eq!(
        events,
        vec![Event::Closed(ConnectionError::ControlQueueFull { limit })]
    );
    assert_eq!(p.server_metrics.snapshot().control_queue_overflows, 1);
}

#[test]
fn pongs_in_flight_count_until_written_and_a_reading_peer_may_ping_freely() {
    let mut p = Pair::established();
    let limit = 8;
    let mut cfg = config();
    cfg.max_queued_control_replies = limit;
    let mut p2 = Pair::new("s3cret", "s3cret", cfg);
    p2.drive();
    // Half the bound handed to a socket that has not finished writing, half queued behind.
    for i in 0..limit / 2 {
        p2.server.handle_input(p2.now, &ping_frame(i as i64));
    }
    let mut stuck = Vec::new();
    assert!(p2.server.poll_transmit(p2.now, &mut stuck) > 0);
    for i in 0..limit / 2 {
        p2.server.handle_input(p2.now, &ping_frame(i as i64));
    }
    assert!(!p2.server.is_closed());
    p2.server.handle_input(p2.now, &ping_frame(0));
    assert!(p2.server.is_closed(), "in-flight pongs still count");

    // A peer that reads its pongs is never cut off, however often it pings.
    for i in 0..10 * limit {
        p.server.handle_input(p.now, &ping_frame(i as i64));
        p.drive();
    }
    assert!(p.server_closed().is_none());
    assert_eq!(p.server_metrics.snapshot().control_queue_overflows, 0);
}

#[test]
fn refusals_count_as_control_replies() {
    let mut cfg = config();
    cfg.max_queued_control_replies = 4;
    let mut p = Pair::new("s3cret", "s3cret", cfg);
    p.drive();
    for c in 1..=4 {
        p.server
            .refuse(p.now, c, ErrorCode::Internal, "nobody here")
            .unwrap();
    }
    assert_eq!(
        p.server
            .refuse(p.now, 5, ErrorCode::Internal, "nobody here"),
        Err(SendError::Closed)
    );
    assert_eq!(p.server_metrics.snapshot().control_queue_overflows, 1);
    // Answers from the owner are not control replies (they are bounded by the send buffer).
    let mut p = Pair::established();
    for c in 1..=100 {
        p.server.respond(p.now, c, &Ack {}.into()).unwrap();
    }
    assert!(!p.server.is_closed());
}

#[derive(Debug)]
struct Gate {
    asked: Arc<std::sync::atomic::AtomicUsize>,
    open: bool,
}

impl AdmissionControl for Gate {
    fn admit(&mut self) -> Result<(), String> {
        self.asked
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if self.open {
            Ok(())
        } else {
            Err("no room".into())
        }
    }
}

fn gated_pair(client_secret: &str, open: bool) -> (Pair, Arc<std::sync::atomic::AtomicUsize>) {
    let mut p = Pair::new(client_secret, "s3cret", config());
    let asked = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let gate = Gate {
        asked: Arc::clone(&asked),
        open,
    };
    p.server = Connection::new_server_with_admission(
        config(),
        secrets("billing", "s3cret"),
        Box::new(gate),
        [2; 32],
        p.now,
        1_000,
        Arc::clone(&p.server_metrics),
    );
    p.drive();
    (p, asked)
}

#[test]
fn a_refused_admission_closes_before_the_peer_sees_the_connection_established() {
    let (p, asked) = gated_pair("s3cret", false);
    assert_eq!(asked.load(std::sync::atomic::Ordering::Relaxed), 1);
    assert!(!p
        .client_events
        .iter()
        .any(|e| matches!(e, Event::Established(_))));
    assert!(!p
        .server_events
        .iter()
        .any(|e| matches!(e, Event::Established(_))));
    assert_eq!(
        p.client_closed(),
        Some(&ConnectionError::PeerClosed {
            code: ErrorCode::Overloaded,
            message: "no room".into()
        })
    );
    assert_eq!(p.server_metrics.snapshot().handshake_failures, 0);

    let (p, asked) = gated_pair("s3cret", true);
    assert_eq!(asked.load(std::sync::atomic::Ordering::Relaxed), 1);
    assert!(p.client.is_established() && p.server.is_established());

    // Admission is asked only of peers that proved the secret.
    let (p, asked) = gated_pair("wrong", true);
    assert_eq!(asked.load(std::sync::atomic::Ordering::Relaxed), 0);
    assert!(p.server.is_closed());
}

/// Reconnect schedule on virtual time: the server is down for the first three attempts;
/// each failure waits the next backoff delay; success resets it.
#[test]
fn reconnect_backoff_schedule_on_virtual_time() {
    let mut backoff = Backoff::new(BackoffConfig {
        base: Duration::from_millis(100),
        max: Duration::from_secs(2),
        jitter: 0.5,
    });
    let t0 = Instant::now();
    let mut now = t0;
    let mut attempts = Vec::new();
    let server_up_at = t0 + Duration::from_millis(500);
    let jitter = [0.0, 0.5, 1.0, 0.25];
    let mut i = 0;
    loop {
        attempts.push(now.duration_since(t0).as_millis());
        if now >= server_up_at {
            let m = Arc::new(TransportMetrics::default());
            let mut c =
                Connection::new_client(config(), identity("billing", "k"), [1; 32], now, m.clone());
            let mut s =
                Connection::new_server(config(), secrets("billing", "k"), [2; 32], now, 0, m);
            for _ in 0..3 {
                let mut b = Vec::new();
                s.poll_transmit(now, &mut b);
                s.handle_transmitted(now);
                c.handle_input(now, &b);
                let mut b = Vec::new();
                c.poll_transmit(now, &mut b);
                c.handle_transmitted(now);
                s.handle_input(now, &b);
            }
            assert!(c.is_established());
            backoff.reset();
            break;
        }
        now += backoff.next_delay(jitter[i % jitter.len()]);
        i += 1;
    }
    // 100 ms * (1 - 0.5*0.0), 200 * (1 - 0.5*0.5), 400 * (1 - 0.5), ...
    assert_eq!(attempts, [0, 100, 250, 450, 1150]);
    assert_eq!(backoff.attempts(), 0);
}

#[derive(Debug, Clone)]
enum Op {
    Send(Message),
    Request(Message, u64),
    Advance(u64),
    Respond,
}

fn op() -> impl Strategy<Value = Op> {
    let app = || common::message().prop_filter("application message", |m| !m.kind().is_control());
    prop_oneof![
        app().prop_map(Op::Send),
        (app(), 1u64..10_000).prop_map(|(m, t)| Op::Request(m, t)),
        (0u64..8_000).prop_map(Op::Advance),
        Just(Op::Respond),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Against a simple model: one-way messages arrive in order, and every request ends in
    /// exactly one response event (answer or timeout), whatever the interleaving.
    #[test]
    fn pair_matches_model(ops in proptest::collection::vec(op(), 1..40)) {
        let mut p = Pair::established();
        let mut sent = Vec::new();
        let mut requests = Vec::new();
        let mut to_answer: Vec<u64> = Vec::new();
        let mut received = Vec::new();
        for op in ops {
            match op {
                Op::Send(m) => { p.client.send(p.now, &m).unwrap(); sent.push(m); }
                Op::Request(m, t) => { requests.push(p.client.request(p.now, &m, Duration::from_millis(t)).unwrap()); }
                Op::Advance(ms) => p.advance(Duration::from_millis(ms)),
                Op::Respond => {
                    for c in to_answer.drain(..) {
                        p.server.respond(p.now, c, &Ack {}.into()).unwrap();
                    }
                }
            }
            p.drive();
            for e in p.server_events.drain(..) {
                match e {
                    Event::Message { correlation: Some(c), .. } => to_answer.push(c),
                    Event::Message { correlation: None, message } => received.push(message),
                    other => prop_assert!(false, "unexpected {:?}", other),
                }
            }
        }
        for c in to_answer.drain(..) { p.server.respond(p.now, c, &Ack {}.into()).unwrap(); }
        p.drive();
        p.advance(Duration::from_secs(10));
        prop_assert!(p.client.is_established());
        let mut responded: Vec<u64> = p.client_events.iter().filter_map(|e| match e {
            Event::Response { request, .. } => Some(*request), _ => None }).collect();
        responded.sort_unstable();
        let mut expected = requests.clone();
        expected.sort_unstable();
        prop_assert_eq!(responded, expected);
        prop_assert_eq!(p.client.pending_requests(), 0);
        prop_assert_eq!(received, sent);
    }
}
