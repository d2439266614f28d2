//! The tokio adapter on 127.0.0.1 with ephemeral ports: real sockets, short configured
//! timeouts, no sleeps used as synchronisation and no timing asserts.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferrojob_transport::frame::{encode_to_vec, Decoder, Flags};
use ferrojob_transport::message::{
    samples, Close, ErrorCode, ExecutorCluster, Message, Ping, QueryExecutorCluster, StopInstance,
};
use ferrojob_transport::net::{connect, Accepted, Listener, NetConfig, ReconnectingClient};
use ferrojob_transport::{
    AppSecret, AppSecrets, ClientIdentity, Connection, ConnectionError, Event, RequestError,
    SendError, TransportError, TransportMetrics,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const SECRET: &str = "loopback-secret";

fn secrets() -> Arc<dyn AppSecrets> {
    let mut m = HashMap::new();
    m.insert("billing".to_owned(), AppSecret::new(SECRET));
    Arc::new(m)
}

fn identity(secret: &str) -> ClientIdentity {
    ClientIdentity {
        app_name: "billing".into(),
        worker_address: "127.0.0.1:1".into(),
        tags: vec![],
        client_version: "test".into(),
        secret: AppSecret::new(secret),
    }
}

fn config() -> NetConfig {
    let mut c = NetConfig::default();
    c.connection.handshake_timeout = Duration::from_secs(5);
    c.backoff.base = Duration::from_millis(10);
    c.backoff.max = Duration::from_millis(100);
    c
}

async fn listener(config: NetConfig) -> Listener {
    Listener::bind("127.0.0.1:0".parse().unwrap(), config, secrets())
        .await
        .unwrap()
}

/// Answers every request with an ExecutorCluster naming the request's kind; forwards
/// one-way messages to the returned channel.
fn serve(mut acc: Accepted) -> tokio::sync::mpsc::UnboundedReceiver<Message> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(inc) = acc.incoming.recv().await {
            match inc.correlation {
                Some(c) => {
                    let reply = ExecutorCluster {
                        worker_addresses: vec![inc.message.kind().name().into()],
                    };
                    let _ = acc.handle.respond(c, reply).await;
                }
                None => {
                    let _ = tx.send(inc.message);
                }
            }
        }
    });
    rx
}

#[tokio::test]
async fn messages_and_requests_flow_both_ways() {
    let mut l = listener(config()).await;
    let addr = l.local_addr();
    let metrics = Arc::new(TransportMetrics::default());
    let (client, server) = tokio::join!(
        connect(addr, config(), identity(SECRET), metrics.clone()),
        l.accept()
    );
    let client = client.unwrap();
    let server = server.unwrap();
    assert!(
        matches!(server.peer, ferrojob_transport::PeerInfo::Worker { ref app_name, .. } if app_name == "billing")
    );
    let server_handle = server.handle.clone();
    let mut received = serve(server);

    let all: Vec<Message> = samples::all()
        .into_iter()
        .filter(|m| !m.kind().is_control())
        .collect();
    for m in &all {
        client.handle.send(m.clone()).await.unwrap();
    }
    for m in &all {
        assert_eq!(&received.recv().await.unwrap(), m);
    }
    let answer = client
        .handle
        .request(
            QueryExecutorCluster {
                app_id: 1,
                job_id: 2,
            },
            Duration::from_secs(5),
        )
        .await
        .unwrap();
    assert_eq!(
        answer,
        ExecutorCluster {
            worker_addresses: vec!["QueryExecutorCluster".into()]
        }
        .into()
    );

    // Server to client.
    server_handle
        .send(StopInstance {
            instance_id: 77,
            epoch: 0,
        })
        .await
        .unwrap();
    let mut incoming = client.incoming;
    let got = incoming.recv().await.unwrap();
    assert_eq!(
        got.message,
        StopInstance {
            instance_id: 77,
            epoch: 0
        }
        .into()
    );
    assert_eq!(got.correlation, None);
    let snap = metrics.snapshot();
    assert!(snap.frames_sent >= all.len() as u64 + 2);
    assert_eq!(snap.connections_established, 1);
}

#[tokio::test]
async fn wrong_secret_is_refused_and_good_clients_still_connect() {
    let mut l = listener(config()).await;
    let addr = l.local_addr();
    let m = Arc::new(TransportMetrics::default());
    let err = connect(addr, config(), identity("wrong"), m.clone())
        .await
        .unwrap_err();
    assert!(
        matches!(
            &err,
            TransportError::Connection {
                source: ConnectionError::PeerClosed {
                    code: ErrorCode::AuthFailed,
                    ..
                },
                ..
            }
        ),
        "{err}"
    );
    let (good, acc) = tokio::join!(connect(addr, config(), identity(SECRET), m), l.accept());
    let good = good.unwrap();
    let _rx = serve(acc.unwrap());
    good.handle
        .request(
            StopInstance {
                instance_id: 1,
                epoch: 0,
            },
            Duration::from_secs(5),
        )
        .await
        .unwrap();
    assert_eq!(l.metrics().snapshot().handshake_failures, 1);
}

/// Reads everything until EOF and returns the close frame found in it, if any.
async fn read_close(stream: &mut TcpStream) -> Option<Close> {
    let mut all = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut all)).await;
    let mut dec = Decoder::new(1 << 20);
    let mut input = &all[..];
    let mut close = None;
    while let Ok(Some(frame)) = dec.decode(&mut input) {
        if let Ok(Message::Close(c)) = frame.message() {
            close = Some(c);
        }
    }
    close
}

#[tokio::test]
async fn garbage_peer_gets_a_close_frame_and_others_carry_on() {
    let mut l = listener(config()).await;
    let addr = l.local_addr();
    let mut garbage = TcpStream::connect(addr).await.unwrap();
    garbage
        .write_all(b"GET / HTTP/1.1\r\nHost: scheduler\r\n\r\n")
        .await
        .unwrap();
    let close = read_close(&mut garbage).await.expect("close frame");
    assert_eq!(close.code, ErrorCode::Malformed);
    assert!(close.message.contains("magic"), "{}", close.message);
    assert_eq!(l.metrics().snapshot().bad_magic, 1);

    // An oversized frame announced in a valid header.
    let mut c = NetConfig::default();
    c.connection.max_payload_len = 1024;
    let small = listener(c).await;
    let mut big = TcpStream::connect(small.local_addr()).await.unwrap();
    let frame = encode_to_vec(&samples::all().remove(14), Flags::NONE, 0).unwrap(); // LogBatch
    let mut header = frame[..24].to_vec();
    header[12..16].copy_from_slice(&(1u32 << 30).to_le_bytes());
    big.write_all(&header).await.unwrap();
    let close = read_close(&mut big).await.expect("close frame");
    assert_eq!(close.code, ErrorCode::FrameTooLarge);
    assert_eq!(small.metrics().snapshot().oversized_frames, 1);

    let (good, acc) = tokio::join!(
        connect(addr, config(), identity(SECRET), Default::default()),
        l.accept()
    );
    let _rx = serve(acc.unwrap());
    good.unwrap()
        .handle
        .request(
            StopInstance {
                instance_id: 1,
                epoch: 0,
            },
            Duration::from_secs(5),
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn trickling_peer_is_cut_off_by_the_frame_timeout() {
    let mut c = config();
    c.connection.frame_timeout = Duration::from_millis(200);
    c.connection.idle_timeout = Duration::from_secs(30);
    let l = listener(c).await;
    let mut slow = TcpStream::connect(l.local_addr()).await.unwrap();
    let frame = encode_to_vec(&samples::all().remove(1), Flags::NONE, 0).unwrap(); // Handshake
    let started = Instant::now();
    let mut sent = 0;
    for b in &frame {
        if slow.write_all(std::slice::from_ref(b)).await.is_err() {
            break;
        }
        sent += 1;
        tokio::time::sleep(Duration::from_millis(40)).await;
        if l.metrics().snapshot().slow_peers > 0 || started.elapsed() > Duration::from_secs(20) {
            break;
        }
    }
    assert!(sent < frame.len(), "the whole frame trickled through");
    let close = read_close(&mut slow).await.expect("close frame");
    assert_eq!(close.code, ErrorCode::SlowPeer);
    assert_eq!(l.metrics().snapshot().slow_peers, 1);
}

/// Completes a real handshake over a raw socket with a sans-IO client core, then returns the
/// socket: the test decides whether it ever reads again.
async fn raw_authenticated(addr: SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut core = Connection::new_client(
        Default::default(),
        identity(SECRET),
        [5; 32],
        Instant::now(),
        Default::default(),
    );
    let mut buf = vec![0u8; 4096];
    while !core.is_established() {
        let n = s.read(&mut buf).await.unwrap();
        assert!(n > 0);
        core.handle_input(Instant::now(), &buf[..n]);
        let mut out = Vec::new();
        core.poll_transmit(Instant::now(), &mut out);
        core.handle_transmitted(Instant::now());
        s.write_all(&out).await.unwrap();
        while let Some(e) = core.poll_event() {
            assert!(!matches!(e, Event::Closed(_)), "{e:?}");
        }
    }
    s
}

#[tokio::test]
async fn non_reading_peer_gets_backpressure_then_is_dropped() {
    let mut c = config();
    c.send_queue = 8;
    c.max_batch = 8;
    c.connection.max_send_buffer = 64 * 1024;
    c.connection.write_stall_timeout = Duration::from_millis(300);
    c.connection.idle_timeout = Duration::from_secs(30);
    let mut l = listener(c).await;
    let addr = l.local_addr();
    let (sock, acc) = tokio::join!(raw_authenticated(addr), l.accept());
    let acc = acc.unwrap();
    let big: Message = samples::all().remove(17); // StartTask
                                                  // Fill kernel buffers, the core's buffer and the queue until try_send says Full.
    let mut accepted = 0u64;
    let full = loop {
        match acc.handle.try_send(big.clone()) {
            Ok(()) => accepted += 1,
            Err(e) => break e,
        }
        if accepted.is_multiple_of(64) {
            tokio::task::yield_now().await;
        }
        assert!(accepted < 10_000_000, "never pushed back");
    };
    assert!(matches!(full, SendError::Full { .. }), "{full:?}");
    // The stall timeout then drops the connection; sends report Closed.
    let closed = loop {
        match acc.handle.send(big.clone()).await {
            Ok(()) => continue,
            Err(e) => break e,
        }
    };
    assert_eq!(closed, SendError::Closed);
    assert_eq!(l.metrics().snapshot().peers_not_reading, 1);
    drop(sock);

    // Another connection on the same listener is unaffected.
    let (good, acc2) = tokio::join!(
        connect(addr, config(), identity(SECRET), Default::default()),
        l.accept()
    );
    let _rx = serve(acc2.unwrap());
    good.unwrap()
        .handle
        .request(
            StopInstance {
                instance_id: 1,
                epoch: 0,
            },
            Duration::from_secs(5),
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn graceful_shutdown_flushes_everything_accepted() {
    let mut l = listener(config()).await;
    let addr = l.local_addr();
    let (client, acc) = tokio::join!(
        connect(addr, config(), identity(SECRET), Default::default()),
        l.accept()
    );
    let client = client.unwrap();
    let mut acc = acc.unwrap();
    const N: u64 = 20_000;
    let sender = client.handle.clone();
    let send = tokio::spawn(async move {
        for i in 0..N {
            sender
                .send(StopInstance {
                    instance_id: i,
                    epoch: 0,
                })
                .await
                .unwrap();
        }
        sender.shutdown().await;
    });
    let mut next = 0;
    while let Some(inc) = acc.incoming.recv().await {
        assert_eq!(
            inc.message,
            StopInstance {
                instance_id: next,
                epoch: 0
            }
            .into()
        );
        next += 1;
    }
    assert_eq!(next, N, "every accepted message arrived before the close");
    send.await.unwrap();
    assert!(client.handle.is_closed());
    assert_eq!(
        client
            .handle
            .send(StopInstance {
                instance_id: 0,
                epoch: 0
            })
            .await,
        Err(SendError::Closed)
    );
}

/// Found by the loopback bench: a batch of accepted commands that overshoots the core's
/// buffer limit must still be sent, not dropped.
#[tokio::test]
async fn a_tiny_send_buffer_loses_nothing() {
    let mut c = config();
    c.connection.max_send_buffer = 256;
    c.max_batch = 64;
    let mut l = listener(c.clone()).await;
    let (client, acc) = tokio::join!(
        connect(l.local_addr(), c, identity(SECRET), Default::default()),
        l.accept()
    );
    let client = client.unwrap();
    let mut acc = acc.unwrap();
    const N: u64 = 20_000;
    let sender = client.handle.clone();
    tokio::spawn(async move {
        for i in 0..N {
            if i % 2 == 0 {
                sender
                    .send(StopInstance {
                        instance_id: i,
                        epoch: 0,
                    })
                    .await
                    .unwrap();
            } else {
                sender
                    .send_batch(vec![StopInstance {
                        instance_id: i,
                        epoch: 0,
                    }
                    .into()])
                    .await
                    .unwrap();
            }
        }
    });
    for i in 0..N {
        let inc = acc.incoming.recv().await.unwrap();
        assert_eq!(
            inc.message,
            StopInstance {
                instance_id: i,
                epoch: 0
            }
            .into()
        );
    }
}

#[tokio::test]
async fn the_listener_serves_at_most_max_connections() {
    let mut c = config();
    c.max_connections = 1;
    let mut l = listener(c).await;
    let addr = l.local_addr();
    let (first, acc) = tokio::join!(
        connect(addr, config(), identity(SECRET), Default::default()),
        l.accept()
    );
    let first = first.unwrap();
    let mut acc = acc.unwrap();
    // A second peer finds no slot: it is told so at once, with a reason.
    let err = connect(addr, config(), identity(SECRET), Default::default())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            TransportError::Connection {
                source: ConnectionError::PeerClosed {
                    code: ErrorCode::Overloaded,
                    ..
                },
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(l.metrics().snapshot().connections_over_limit, 1);
    // Once the first connection has ended on the server too, the slot is free again.
    first.handle.shutdown().await;
    while acc.incoming.recv().await.is_some() {}
    drop(acc);
    let (third, acc3) = tokio::join!(
        connect(addr, config(), identity(SECRET), Default::default()),
        l.accept()
    );
    let _rx = serve(acc3.unwrap());
    third
        .unwrap()
        .handle
        .request(
            StopInstance {
                instance_id: 1,
                epoch: 0,
            },
            Duration::from_secs(5),
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn request_without_answer_times_out() {
    let mut l = listener(config()).await;
    let addr = l.local_addr();
    let (client, acc) = tokio::join!(
        connect(addr, config(), identity(SECRET), Default::default()),
        l.accept()
    );
    let _acc = acc.unwrap(); // never answers
    let err = client
        .unwrap()
        .handle
        .request(
            StopInstance {
                instance_id: 1,
                epoch: 0,
            },
            Duration::from_millis(100),
        )
        .await
        .unwrap_err();
    assert_eq!(
        err,
        RequestError::TimedOut {
            timeout: Duration::from_millis(100)
        }
    );
}

#[tokio::test]
async fn reconnecting_client_comes_back_after_the_server_drops_it() {
    // Reserve a port, then start the client before anything listens on it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let metrics = Arc::new(TransportMetrics::default());
    let mut client = ReconnectingClient::start(addr, config(), identity(SECRET), metrics.clone());
    // Let it fail a few times (connection refused), then start the server.
    while metrics.snapshot().reconnect_attempts < 3 {
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut l = Listener::bind(addr, config(), secrets()).await.unwrap();
    let first = l.accept().await.unwrap();
    client.established.recv().await.unwrap();
    let first_handle = first.handle.clone();
    let _rx1 = serve(first);
    client
        .handle
        .request(
            StopInstance {
                instance_id: 1,
                epoch: 0,
            },
            Duration::from_secs(5),
        )
        .await
        .unwrap();

    // The server drops the connection; the client reconnects on its own.
    first_handle.shutdown().await;
    let second = l.accept().await.unwrap();
    client.established.recv().await.unwrap();
    let mut rx2 = serve(second);
    client
        .handle
        .send(StopInstance {
            instance_id: 2,
            epoch: 0,
        })
        .await
        .unwrap();
    assert_eq!(
        rx2.recv().await.unwrap(),
        StopInstance {
            instance_id: 2,
            epoch: 0
        }
        .into()
    );
    assert!(metrics.snapshot().connections_established >= 2);
    client.handle.shutdown().await;
}

/// A header announcing a `len`-byte Handshake, without the payload.
fn handshake_header_announcing(len: u32) -> Vec<u8> {
    let frame = encode_to_vec(&samples::all().remove(1), Flags::NONE, 0).unwrap(); // Handshake
    let mut header = frame[..24].to_vec();
    header[12..16].copy_from_slice(&len.to_le_bytes());
    header
}

#[tokio::test]
async fn a_flood_of_never_authenticating_connections_does_not_lock_out_workers() {
    const FLOOD: usize = 300;
    let mut c = config();
    c.max_connections = 2;
    c.max_handshaking = 16;
    // Every peer here is 127.0.0.1: the pools alone are under test.
    c.handshake_rate_per_min = 0;
    // The flood holds its places for the whole test unless pushed out.
    c.connection.handshake_timeout = Duration::from_secs(120);
    let mut l = listener(c).await;
    let addr = l.local_addr();
    // A worker already connected holds one of the two slots.
    let (first, acc) = tokio::join!(
        connect(addr, config(), identity(SECRET), Default::default()),
        l.accept()
    );
    let first = first.unwrap();
    let _rx_first = serve(acc.unwrap());

    let run = async {
        // Half announce a 4 MiB handshake, half say nothing; all stay open.
        let announce = handshake_header_announcing(4 * 1024 * 1024);
        let mut flood = Vec::with_capacity(FLOOD);
        for i in 0..FLOOD {
            let mut s = TcpStream::connect(addr).await.unwrap();
            if i % 2 == 0 {
                // The server may have closed it already (pushed out): that is fine.
                let _ = s.write_all(&announce).await;
            }
            flood.push(s);
        }
        // With the pre-auth pool full of silent peers, a real worker still gets in.
        let (good, acc) = tokio::join!(
            connect(addr, config(), identity(SECRET), Default::default()),
            l.accept()
        );
        let _rx = serve(acc.unwrap());
        good.unwrap()
            .handle
            .request(
                StopInstance {
                    instance_id: 1,
                    epoch: 0,
                },
                Duration::from_secs(5),
            )
            .await
            .unwrap();
        first
            .handle
            .request(
                StopInstance {
                    instance_id: 2,
                    epoch: 0,
                },
                Duration::from_secs(5),
            )
            .await
            .unwrap();
        flood
    };
    let flood = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("a worker could not connect during the flood");
    let s = l.metrics().snapshot();
    assert_eq!(s.connections_established, 2);
    assert_eq!(s.connections_over_limit, 0);
    // Every flood connection was accepted before the worker's (the backlog is FIFO), and
    // the silent ones leave the pool only when pushed out.
    assert!(
        s.preauth_pool_full >= (FLOOD / 2 - 16) as u64,
        "{} pushed out",
        s.preauth_pool_full
    );
    assert!(s.preauth_frames_too_large >= 1);
    assert_eq!(s.handshake_timeouts, 0);
    drop(flood);
}

/// Reads from `stream` until one whole frame arrived.
async fn read_frame(stream: &mut TcpStream) -> Message {
    let mut dec = Decoder::new(1 << 20);
    let mut buf = [0u8; 1024];
    loop {
        let n = stream.read(&mut buf).await.unwrap();
        assert!(n > 0, "closed before a whole frame");
        let mut input = &buf[..n];
        if let Some(frame) = dec.decode(&mut input).unwrap() {
            return frame.message().unwrap();
        }
    }
}

#[tokio::test]
async fn a_source_over_its_handshake_rate_is_closed_on_arrival() {
    let mut c = config();
    c.handshake_rate_per_min = 1;
    c.handshake_burst = 2;
    let l = listener(c).await;
    let addr = l.local_addr();
    let mut within = Vec::new();
    for _ in 0..2 {
        let mut s = TcpStream::connect(addr).await.unwrap();
        assert!(matches!(
            read_frame(&mut s).await,
            Message::HandshakeChallenge(_)
        ));
        within.push(s);
    }
    let mut over = TcpStream::connect(addr).await.unwrap();
    let close = read_close(&mut over).await.expect("close frame");
    assert_eq!(close.code, ErrorCode::Overloaded);
    assert_eq!(l.metrics().snapshot().handshakes_rate_limited, 1);
    // A worker from that address learns why.
    let err = connect(addr, config(), identity(SECRET), Default::default())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            TransportError::Connection {
                source: ConnectionError::PeerClosed {
                    code: ErrorCode::Overloaded,
                    ..
                },
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(l.metrics().snapshot().handshakes_rate_limited, 2);
}

#[tokio::test]
async fn a_peer_that_pings_without_reading_is_cut_off_long_before_the_write_stall() {
    let mut c = config();
    c.connection.write_stall_timeout = Duration::from_secs(600);
    c.connection.idle_timeout = Duration::from_secs(600);
    let mut l = listener(c).await;
    let addr = l.local_addr();
    let (mut sock, acc) = tokio::join!(raw_authenticated(addr), l.accept());
    let _acc = acc.unwrap();
    let mut pings = Vec::new();
    for i in 0..1024 {
        pings.extend(encode_to_vec(&Ping { time_ms: i }.into(), Flags::NONE, 0).unwrap());
    }
    // Pings, never a read: once the socket buffers are full, pongs queue in the server.
    let mut sent = 0u64;
    loop {
        if sock.write_all(&pings).await.is_err() {
            break; // the server hung up
        }
        sent += 1024;
        if l.metrics().snapshot().control_queue_overflows > 0 {
            break;
        }
        assert!(sent < 5_000_000, "not cut off after {sent} pings");
    }
    assert_eq!(l.metrics().snapshot().control_queue_overflows, 1);
    assert_eq!(l.metrics().snapshot().peers_not_reading, 0);
}

#[tokio::test]
async fn a_flood_from_one_address_is_rate_limited_and_workers_elsewhere_get_in() {
    const FLOOD: u64 = 300;
    let mut c = config();
    c.max_handshaking = 32;
    c.handshake_rate_per_min = 60;
    c.handshake_burst = 50;
    c.connection.handshake_timeout = Duration::from_secs(120);
    let mut l = listener(c).await;
    let addr = l.local_addr();
    let started = Instant::now();
    let run = async {
        // The flood comes from 127.0.0.2 (all of 127/8 is loopback on Linux), the worker
        // from 127.0.0.1.
        let mut flood = Vec::new();
        for _ in 0..FLOOD {
            let socket = tokio::net::TcpSocket::new_v4().unwrap();
            socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
            flood.push(socket.connect(addr).await.unwrap());
        }
        let (good, acc) = tokio::join!(
            connect(addr, config(), identity(SECRET), Default::default()),
            l.accept()
        );
        let _rx = serve(acc.unwrap());
        good.unwrap()
            .handle
            .request(
                StopInstance {
                    instance_id: 1,
                    epoch: 0,
                },
                Duration::from_secs(5),
            )
            .await
            .unwrap();
        flood
    };
    let flood = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("a worker could not connect during the flood");
    // The burst, plus one per second of the test, got through; the rest was closed on
    // arrival.
    let allowed = 50 + started.elapsed().as_secs() + 1;
    let s = l.metrics().snapshot();
    assert!(
        s.handshakes_rate_limited >= FLOOD.saturating_sub(allowed),
        "{} rate limited",
        s.handshakes_rate_limited
    );
    assert!(
        s.preauth_pool_full >= 50 - 32,
        "{} pushed out",
        s.preauth_pool_full
    );
    assert_eq!(s.connections_established, 1);
    drop(flood);
}

/// TLS on the worker port: a test CA, a certificate for `localhost` and 127.0.0.1 signed by
/// it, and the ferrojob handshake bound to the role and the TLS channel.
mod tls {
    use super::*;
    use ferrojob_transport::message::LogBatch;
    use ferrojob_transport::tls::{ClientTls, ServerTls};
    use ferrojob_transport::Role;
    use tokio::net::TcpListener;

    /// A CA (PEM) and a server certificate chain and key (PEM) it signed.
    struct TestPki {
        ca: String,
        cert: String,
        key: String,
    }

    fn pki() -> TestPki {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "ferrojob test CA");
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca_params, ca_key);
        let key = KeyPair::generate().unwrap();
        let params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
        let cert = params.signed_by(&key, &issuer).unwrap();
        TestPki {
            ca: ca_cert.pem(),
            cert: cert.pem(),
            key: key.serialize_pem(),
        }
    }

    fn server_config(pki: &TestPki) -> NetConfig {
        let mut c = config();
        c.server_tls = Some(ServerTls::from_pem(pki.cert.as_bytes(), pki.key.as_bytes()).unwrap());
        c
    }

    fn client_config(ca: &str, name: &str) -> NetConfig {
        let mut c = config();
        c.client_tls = Some(
            ClientTls::from_ca_pem(ca.as_bytes())
                .unwrap()
                .with_server_name(name)
                .unwrap(),
        );
        c
    }

    #[tokio::test]
    async fn messages_flow_inside_tls_with_a_verified_server() {
        let pki = pki();
        let mut l = listener(server_config(&pki)).await;
        let addr = l.local_addr();
        let metrics = Arc::new(TransportMetrics::default());
        let (client, server) = tokio::join!(
            connect(
                addr,
                client_config(&pki.ca, "localhost"),
                identity(SECRET),
                metrics
            ),
            l.accept()
        );
        let client = client.unwrap();
        let server = server.unwrap();
        assert!(matches!(
            client.peer,
            ferrojob_transport::PeerInfo::Server { .. }
        ));
        let mut received = serve(server);
        // Larger than one TLS record (16 KiB), so the writer's flush path is exercised.
        let big = LogBatch {
            worker_address: "x".repeat(100_000),
            entries: vec![],
        };
        client.handle.send(big.clone()).await.unwrap();
        assert_eq!(received.recv().await.unwrap(), Message::from(big));
        let answer = client
            .handle
            .request(
                QueryExecutorCluster {
                    app_id: 1,
                    job_id: 2,
                },
                Duration::from_secs(5),
            )
            .await
            .unwrap();
        assert!(matches!(answer, Message::ExecutorCluster(_)));
        // Without a fixed name, the IP connected to is checked (the certificate has it).
        let mut by_ip = client_config(&pki.ca, "localhost");
        by_ip.client_tls = by_ip.client_tls.map(ClientTls::without_server_name);
        let (c2, s2) = tokio::join!(
            connect(addr, by_ip, identity(SECRET), Arc::default()),
            l.accept()
        );
        c2.unwrap();
        s2.unwrap();
    }

    #[tokio::test]
    async fn a_server_with_a_certificate_from_another_ca_is_refused() {
        let pki = pki();
        let other = super::tls::pki();
        let l = listener(server_config(&pki)).await;
        let err = connect(
            l.local_addr(),
            client_config(&other.ca, "localhost"),
            identity(SECRET),
            Arc::default(),
        )
        .await
        .unwrap_err();
        assert!(matches!(err, TransportError::Tls { .. }), "{err}");
        // The right CA but a name the certificate does not carry.
        let err = connect(
            l.local_addr(),
            client_config(&pki.ca, "ferrojob.example"),
            identity(SECRET),
            Arc::default(),
        )
        .await
        .unwrap_err();
        assert!(matches!(err, TransportError::Tls { .. }), "{err}");
    }

    #[tokio::test]
    async fn plain_tcp_is_refused_by_a_tls_listener_and_the_other_way_round() {
        let pki = pki();
        let mut server = server_config(&pki);
        server.connection.handshake_timeout = Duration::from_millis(300);
        let tls_listener = listener(server).await;
        let mut plain_client = config();
        plain_client.connection.handshake_timeout = Duration::from_millis(300);
        assert!(connect(
            tls_listener.local_addr(),
            plain_client,
            identity(SECRET),
            Arc::default()
        )
        .await
        .is_err());
        let plain_listener = listener(config()).await;
        let err = connect(
            plain_listener.local_addr(),
            client_config(&pki.ca, "localhost"),
            identity(SECRET),
            Arc::default(),
        )
        .await
        .unwrap_err();
        assert!(matches!(err, TransportError::Tls { .. }), "{err}");
    }

    #[tokio::test]
    async fn a_worker_peer_listener_cannot_pass_for_the_server() {
        // Same secret, same trusted certificate: only the role tells them apart.
        let pki = pki();
        let mut peer = server_config(&pki);
        peer.role = Role::Worker;
        let peer_listener = listener(peer).await;
        let err = connect(
            peer_listener.local_addr(),
            client_config(&pki.ca, "localhost"),
            identity(SECRET),
            Arc::default(),
        )
        .await
        .unwrap_err();
        assert!(
            matches!(err, TransportError::Connection { .. }),
            "a client that meant to reach the server refuses a worker: {err}"
        );
        // And a handshake meant for a worker does not open the server.
        let server = listener(server_config(&pki)).await;
        let mut to_peer = client_config(&pki.ca, "localhost");
        to_peer.role = Role::Worker;
        assert!(connect(
            server.local_addr(),
            to_peer,
            identity(SECRET),
            Arc::default()
        )
        .await
        .is_err());
        // Matching roles connect.
        let mut peer = server_config(&pki);
        peer.role = Role::Worker;
        let mut peer_listener = listener(peer).await;
        let mut to_peer = client_config(&pki.ca, "localhost");
        to_peer.role = Role::Worker;
        let (c, s) = tokio::join!(
            connect(
                peer_listener.local_addr(),
                to_peer,
                identity(SECRET),
                Arc::default()
            ),
            peer_listener.accept()
        );
        c.unwrap();
        s.unwrap();
    }

    #[tokio::test]
    async fn a_relay_holding_a_valid_certificate_cannot_forward_a_handshake() {
        // The relay terminates TLS towards the worker with a certificate the worker trusts,
        // opens its own TLS connection to the server, and pipes the plaintext both ways.
        // The proofs are bound to each TLS channel, so neither end accepts the other's.
        let pki = pki();
        let server = listener(server_config(&pki)).await;
        let server_addr = server.local_addr();
        let relay = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let relay_addr = relay.local_addr().unwrap();
        let acceptor = ServerTls::from_pem(pki.cert.as_bytes(), pki.key.as_bytes())
            .unwrap()
            .acceptor();
        let upstream_tls = ClientTls::from_ca_pem(pki.ca.as_bytes())
            .unwrap()
            .with_server_name("localhost")
            .unwrap();
        tokio::spawn(async move {
            let (down, _) = relay.accept().await.unwrap();
            let mut down = acceptor.accept(down).await.unwrap();
            let up = TcpStream::connect(server_addr).await.unwrap();
            let mut up = upstream_tls
                .connector()
                .connect(upstream_tls.server_name_for(server_addr), up)
                .await
                .unwrap();
            let _ = tokio::io::copy_bidirectional(&mut down, &mut up).await;
        });
        let err = connect(
            relay_addr,
            client_config(&pki.ca, "localhost"),
            identity(SECRET),
            Arc::default(),
        )
        .await
        .unwrap_err();
        assert!(matches!(err, TransportError::Connection { .. }), "{err}");
    }

    #[test]
    fn bad_pem_is_a_typed_error() {
        assert!(ServerTls::from_pem(b"not pem", b"not pem").is_err());
        assert!(ClientTls::from_ca_pem(b"").is_err());
        let pki = pki();
        let other = super::tls::pki();
        assert!(
            ServerTls::from_pem(pki.cert.as_bytes(), other.key.as_bytes()).is_err(),
            "a key that does not match the certificate"
        );
        assert!(ClientTls::from_ca_pem(pki.ca.as_bytes())
            .unwrap()
            .with_server_name("not a name!")
            .is_err());
    }
}
