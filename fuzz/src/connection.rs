//! Fuzz target `connection`: arbitrary operation sequences against two connection cores.
//!
//! A client and a server core exchange bytes on virtual time while the fuzzer interleaves
//! sends, requests, answers, timeouts, closes, corrupted or injected bytes and dropped
//! deliveries. Invariants: no panic; queued bytes stay bounded; after `Closed` no other event
//! comes; every request id gets at most one response; the server asks its admission control
//! at most once, and a client it refused never sees the connection established; ends bound
//! to different roles or TLS channels never establish.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arbitrary::{Arbitrary, Unstructured};
use ferrojob_transport::message::{samples, ErrorCode, Message};
use ferrojob_transport::{
    AdmissionControl, AppSecret, AppSecrets, Binding, ClientIdentity, Connection, ConnectionConfig,
    Event, Role, TransportMetrics,
};

/// Admission control that admits or refuses as the input says, and counts how often it was
/// asked.
#[derive(Debug)]
struct Gate {
    open: bool,
    asked: Arc<AtomicUsize>,
}

impl AdmissionControl for Gate {
    fn admit(&mut self) -> Result<(), String> {
        self.asked.fetch_add(1, Ordering::Relaxed);
        if self.open {
            Ok(())
        } else {
            Err("fuzz: no room".into())
        }
    }
}

#[derive(Debug, Arbitrary)]
enum Op {
    /// Move queued bytes from one side to the other (optionally only a prefix, or flipped).
    Deliver {
        from_client: bool,
        cut: Option<u16>,
        flip: Option<(u16, u8)>,
    },
    /// Inject raw bytes into one side.
    Inject { to_client: bool, bytes: Vec<u8> },
    /// Advance virtual time and fire timers.
    Advance { ms: u16 },
    /// One-way send of sample message `which`.
    Send { from_client: bool, which: u8 },
    /// Request with sample message `which`.
    Request {
        from_client: bool,
        which: u8,
        timeout_ms: u16,
    },
    /// Answer the oldest unanswered request on one side.
    Respond { client_side: bool, which: u8 },
    /// Close one side.
    Close { client: bool },
    /// End of stream on one side.
    Eof { client: bool },
}

struct Side {
    conn: Connection,
    closed: bool,
    established: bool,
    responded: HashSet<u64>,
    to_answer: Vec<u64>,
    in_flight: Vec<u8>,
}

impl Side {
    fn drain(&mut self) {
        while let Some(event) = self.conn.poll_event() {
            assert!(!self.closed, "event after Closed: {event:?}");
            match event {
                Event::Closed(_) => self.closed = true,
                Event::Established(_) => self.established = true,
                Event::Response { request, .. } => {
                    assert!(
                        self.responded.insert(request),
                        "two responses for {request}"
                    );
                }
                Event::Message {
                    correlation: Some(c),
                    ..
                } => self.to_answer.push(c),
                Event::Message { .. } => {}
            }
        }
        let limit = self.conn.config().max_send_buffer + 2 * 1024 * 1024;
        assert!(self.conn.queued_bytes() <= limit, "send buffer unbounded");
    }
}

fn config() -> ConnectionConfig {
    ConnectionConfig {
        heartbeat_interval: Duration::from_millis(500),
        idle_timeout: Duration::from_secs(2),
        handshake_timeout: Duration::from_secs(1),
        frame_timeout: Duration::from_secs(1),
        write_stall_timeout: Duration::from_secs(1),
        max_send_buffer: 16 * 1024,
        max_payload_len: 64 * 1024,
        ..ConnectionConfig::default()
    }
}

/// Feeds one fuzz input to the code under test; must never panic.
pub fn run(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let t0 = Instant::now();
    let mut now = t0;
    let metrics = Arc::new(TransportMetrics::default());
    let mut secrets = HashMap::new();
    secrets.insert("billing".to_owned(), AppSecret::new("k"));
    let secrets: Arc<dyn AppSecrets> = Arc::new(secrets);
    // One byte picks both, so that inputs saved before the gate existed keep their secret.
    let first = u.arbitrary::<u8>().unwrap_or(1);
    let good_secret = !first.is_multiple_of(8);
    let admitted = first % 16 != 9;
    // Both ends bound alike (a channel that depends on the input), except for two rare
    // values: the client expects a worker's peer listener, or sits on another TLS channel.
    let server_binding = Binding {
        role: Role::Server,
        channel: (first & 0x40 != 0).then_some([first; 32]),
    };
    let client_binding = match first {
        0xFE => Binding {
            role: Role::Worker,
            ..server_binding
        },
        0xFD => Binding {
            channel: Some([!first; 32]),
            ..server_binding
        },
        _ => server_binding,
    };
    let bound_alike = client_binding == server_binding;
    let asked = Arc::new(AtomicUsize::new(0));
    let gate = Gate {
        open: admitted,
        asked: Arc::clone(&asked),
    };
    let identity = ClientIdentity {
        app_name: "billing".into(),
        worker_address: "w:1".into(),
        tags: Vec::new(),
        client_version: "fuzz".into(),
        secret: AppSecret::new(if good_secret { "k" } else { "bad" }),
    };
    let mut client_conn =
        Connection::new_client(config(), identity, [1; 32], now, Arc::clone(&metrics));
    client_conn.bind(client_binding);
    let mut server_conn = Connection::new_server_with_admission(
        config(),
        secrets,
        Box::new(gate),
        [2; 32],
        now,
        0,
        Arc::clone(&metrics),
    );
    server_conn.bind(server_binding);
    let mut client = Side {
        conn: client_conn,
        closed: false,
        established: false,
        responded: HashSet::new(),
        to_answer: Vec::new(),
        in_flight: Vec::new(),
    };
    let mut server = Side {
        conn: server_conn,
        closed: false,
        established: false,
        responded: HashSet::new(),
        to_answer: Vec::new(),
        in_flight: Vec::new(),
    };
    let messages = samples::all();
    let pick = |which: u8| messages.get(usize::from(which) % messages.len());
    let mut steps = 0;
    while let Ok(op) = u.arbitrary::<Op>() {
        steps += 1;
        if steps > 500 {
            break;
        }
        match op {
            Op::Deliver {
                from_client,
                cut,
                flip,
            } => {
                let (from, to) = if from_client {
                    (&mut client, &mut server)
                } else {
                    (&mut server, &mut client)
                };
                if from.in_flight.is_empty() {
                    from.conn.poll_transmit(now, &mut from.in_flight);
                }
                let n = cut.map_or(from.in_flight.len(), |c| {
                    usize::from(c).min(from.in_flight.len())
                });
                let mut chunk: Vec<u8> = from.in_flight.drain(..n).collect();
                if let Some((pos, val)) = flip {
                    if let Some(b) = chunk.get_mut(usize::from(pos)) {
                        *b = val;
                    }
                }
                if from.in_flight.is_empty() {
                    from.conn.handle_transmitted(now);
                }
                to.conn.handle_input(now, &chunk);
            }
            Op::Inject { to_client, bytes } => {
                let side = if to_client { &mut client } else { &mut server };
                side.conn.handle_input(now, &bytes);
            }
            Op::Advance { ms } => {
                now += Duration::from_millis(u64::from(ms));
                client.conn.handle_timeout(now);
                server.conn.handle_timeout(now);
            }
            Op::Send { from_client, which } => {
                let side = if from_client {
                    &mut client
                } else {
                    &mut server
                };
                if let Some(m) = pick(which) {
                    // The top bit takes the owner's path (never refused for space).
                    let _ = if which & 0x80 != 0 {
                        side.conn.send_accepted(now, m)
                    } else {
                        side.conn.send(now, m)
                    };
                }
            }
            Op::Request {
                from_client,
                which,
                timeout_ms,
            } => {
                let side = if from_client {
                    &mut client
                } else {
                    &mut server
                };
                if let Some(m) = pick(which) {
                    let _ = side
                        .conn
                        .request(now, m, Duration::from_millis(u64::from(timeout_ms)));
                }
            }
            Op::Respond { client_side, which } => {
                let side = if client_side {
                    &mut client
                } else {
                    &mut server
                };
                if !side.to_answer.is_empty() {
                    let c = side.to_answer.remove(0);
                    let reply: Message = match pick(which) {
                        Some(m) => m.clone(),
                        None => ferrojob_transport::message::Ack {}.into(),
                    };
                    let _ = side.conn.respond(now, c, &reply);
                }
            }
            Op::Close { client: c } => {
                let side = if c { &mut client } else { &mut server };
                side.conn.close(now, ErrorCode::ShuttingDown, "fuzz");
            }
            Op::Eof { client: c } => {
                let side = if c { &mut client } else { &mut server };
                side.conn.handle_eof(now);
            }
        }
        client.drain();
        server.drain();
        if let (Some(t), false) = (client.conn.poll_timeout(), client.closed) {
            assert!(t >= t0, "deadline before creation");
        }
        assert!(asked.load(Ordering::Relaxed) <= 1, "admission asked twice");
        assert!(
            admitted || !(client.established || server.established),
            "established although admission refused"
        );
        assert!(
            bound_alike || !(client.established || server.established),
            "client established with a peer bound to another role or channel"
        );
    }
}
