//! The processes `bench flood` runs next to the server: the attacker (`bench
//! flood-attack`), which hits both of its ports, and the burner of the control measurement
//! (`bench flood-burn`), which only takes as much CPU as the attacker took, so a run can tell
//! what the attack costs the server from what sharing the machine with the attacker costs.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use ferrojob_transport::frame::{Flags, FrameHeader};
use ferrojob_transport::message::MessageKind;
use ferrojob_transport::net::NetConfig;
use ferrojob_transport::{AppSecret, ClientIdentity, TransportMetrics};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// How hard the attacker pushes.
#[derive(Debug, Clone, clap::Args, Serialize)]
pub struct AttackLoad {
    /// Worker-port connections held open that never send a byte.
    #[arg(long, default_value_t = 2000)]
    idle_connections: usize,
    /// Worker-port connections that announce a 4 MiB frame (half of them) or trickle a
    /// 4000-byte one a byte every 100 ms (the other half).
    #[arg(long, default_value_t = 200)]
    big_frame_connections: usize,
    /// Loops of worker-port handshakes with a wrong secret, back to back.
    #[arg(long, default_value_t = 16)]
    bad_handshakes: usize,
    /// HTTP clients that pipeline 64 requests for the OpenAPI document and read one byte a
    /// second.
    #[arg(long, default_value_t = 128)]
    slow_readers: usize,
    /// HTTP loops sending a request with a 1 MiB header, back to back.
    #[arg(long, default_value_t = 4)]
    big_headers: usize,
    /// Source addresses the attack connections spread over (127.0.2.1 ..), 1 to 250.
    #[arg(long, default_value_t = 64)]
    pub(super) sources: u8,
    /// A closed idle, big-frame or slow-reading connection is reopened after this long, ms.
    #[arg(long, default_value_t = 500)]
    reopen_ms: u64,
}

impl AttackLoad {
    /// The flags that give this load to `bench flood-attack`.
    pub(super) fn to_args(&self) -> Vec<String> {
        [
            ("--idle-connections", self.idle_connections.to_string()),
            (
                "--big-frame-connections",
                self.big_frame_connections.to_string(),
            ),
            ("--bad-handshakes", self.bad_handshakes.to_string()),
            ("--slow-readers", self.slow_readers.to_string()),
            ("--big-headers", self.big_headers.to_string()),
            ("--sources", self.sources.to_string()),
            ("--reopen-ms", self.reopen_ms.to_string()),
        ]
        .into_iter()
        .flat_map(|(flag, value)| [flag.to_owned(), value])
        .collect()
    }
}

/// `ferrojob bench flood-attack` flags (started by `bench flood`; stops when its stdin
/// closes and prints one JSON line of [`AttackStats`]).
#[derive(Debug, Clone, clap::Args)]
pub struct AttackArgs {
    /// The server's worker port.
    #[arg(long)]
    transport: SocketAddr,
    /// The server's HTTP port.
    #[arg(long)]
    http: SocketAddr,
    /// The app the wrong-secret handshakes name.
    #[arg(long)]
    app: String,
    #[command(flatten)]
    load: AttackLoad,
}

/// What the attacker did, counted over its life.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(super) struct AttackStats {
    /// Worker-port connections opened (idle and big-frame ones).
    worker_port_connections: u64,
    /// Of those, closed by the server.
    worker_port_closed_by_server: u64,
    /// Frames announced over the pre-authentication limit.
    big_frames_announced: u64,
    /// Wrong-secret handshakes refused.
    bad_handshakes_refused: u64,
    /// Wrong-secret handshakes the server accepted (must stay 0).
    bad_handshakes_accepted: u64,
    /// Slow-reading HTTP connections opened.
    slow_reader_connections: u64,
    /// Of those, closed by the server.
    slow_reader_closed_by_server: u64,
    /// Requests with a 1 MiB header sent (or cut short by the server).
    big_header_requests: u64,
    /// Of those, answered 431.
    big_header_431: u64,
    /// Connections the attacker could not open (its own limits, refused, timed out).
    connect_errors: u64,
}

/// The same counters, shared by the attack tasks.
#[derive(Debug, Default)]
struct Counters {
    worker_port_connections: AtomicU64,
    worker_port_closed_by_server: AtomicU64,
    big_frames_announced: AtomicU64,
    bad_handshakes_refused: AtomicU64,
    bad_handshakes_accepted: AtomicU64,
    slow_reader_connections: AtomicU64,
    slow_reader_closed_by_server: AtomicU64,
    big_header_requests: AtomicU64,
    big_header_431: AtomicU64,
    connect_errors: AtomicU64,
}

impl Counters {
    fn stats(&self) -> AttackStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        AttackStats {
            worker_port_connections: get(&self.worker_port_connections),
            worker_port_closed_by_server: get(&self.worker_port_closed_by_server),
            big_frames_announced: get(&self.big_frames_announced),
            bad_handshakes_refused: get(&self.bad_handshakes_refused),
            bad_handshakes_accepted: get(&self.bad_handshakes_accepted),
            slow_reader_connections: get(&self.slow_reader_connections),
            slow_reader_closed_by_server: get(&self.slow_reader_closed_by_server),
            big_header_requests: get(&self.big_header_requests),
            big_header_431: get(&self.big_header_431),
            connect_errors: get(&self.connect_errors),
        }
    }
}

fn inc(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// The `i`-th attack source address: 127.0.2.1 up to 127.0.2.`sources`.
fn source(i: usize, sources: u8) -> IpAddr {
    let n = u8::try_from(i % usize::from(sources.max(1))).unwrap_or(0);
    IpAddr::V4(Ipv4Addr::new(127, 0, 2, n.saturating_add(1)))
}

/// A TCP connection to `to` from `from` (port chosen by the system).
async fn connect_from(from: IpAddr, to: SocketAddr, recv_buffer: Option<u32>) -> Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(from, 0))?;
    if let Some(bytes) = recv_buffer {
        socket.set_recv_buffer_size(bytes)?;
    }
    Ok(tokio::time::timeout(Duration::from_secs(5), socket.connect(to)).await??)
}

/// Reads until the peer closes (or fails); answers when it did.
async fn until_closed(stream: &mut TcpStream) {
    let mut buf = [0u8; 512];
    while matches!(stream.read(&mut buf).await, Ok(n) if n > 0) {}
}

/// Runs the attack until stdin closes, then prints its [`AttackStats`] as one JSON line.
pub(super) async fn attack(args: &AttackArgs) -> Result<()> {
    let load = &args.load;
    if load.sources == 0 || load.sources > 250 {
        bail!("--sources must be 1 to 250");
    }
    let counters = Arc::new(Counters::default());
    let reopen = Duration::from_millis(load.reopen_ms);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..load.idle_connections {
        let (c, from, to) = (
            Arc::clone(&counters),
            source(i, load.sources),
            args.transport,
        );
        tasks.spawn(async move {
            loop {
                match connect_from(from, to, None).await {
                    Ok(mut stream) => {
                        inc(&c.worker_port_connections);
                        until_closed(&mut stream).await;
                        inc(&c.worker_port_closed_by_server);
                    }
                    Err(_) => inc(&c.connect_errors),
                }
                tokio::time::sleep(reopen).await;
            }
        });
    }
    for i in 0..load.big_frame_connections {
        let (c, from, to) = (
            Arc::clone(&counters),
            source(i, load.sources),
            args.transport,
        );
        let trickle = i % 2 == 1;
        let header = FrameHeader {
            kind: MessageKind::Handshake,
            flags: Flags::NONE,
            payload_len: if trickle { 4000 } else { 4 * 1024 * 1024 },
            correlation: 0,
        }
        .to_bytes();
        tasks.spawn(async move {
            loop {
                match connect_from(from, to, None).await {
                    Ok(mut stream) => {
                        inc(&c.worker_port_connections);
                        if stream.write_all(&header).await.is_ok() {
                            if trickle {
                                // One byte every 100 ms until the server gives up on us.
                                while stream.write_all(&[0u8]).await.is_ok() {
                                    tokio::select! {
                                        _ = until_closed(&mut stream) => break,
                                        _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                                    }
                                }
                            } else {
                                inc(&c.big_frames_announced);
                                let _ = stream.write_all(&[0u8; 4096]).await;
                                until_closed(&mut stream).await;
                            }
                        }
                        inc(&c.worker_port_closed_by_server);
                    }
                    Err(_) => inc(&c.connect_errors),
                }
                tokio::time::sleep(reopen).await;
            }
        });
    }
    for _ in 0..load.bad_handshakes {
        let c = Arc::clone(&counters);
        let to = args.transport;
        let identity = ClientIdentity {
            app_name: args.app.clone(),
            worker_address: "127.0.0.1:1".into(),
            tags: Vec::new(),
            client_version: "ferrojob bench flood-attack".into(),
            secret: AppSecret::new(b"not-the-app-secret".to_vec()),
        };
        let metrics = Arc::new(TransportMetrics::default());
        tasks.spawn(async move {
            loop {
                let config = NetConfig::default();
                match ferrojob_transport::net::connect(
                    to,
                    config,
                    identity.clone(),
                    Arc::clone(&metrics),
                )
                .await
                {
                    Ok(connected) => {
                        inc(&c.bad_handshakes_accepted);
                        connected.handle.shutdown().await;
                    }
                    Err(_) => inc(&c.bad_handshakes_refused),
                }
                // Back to back, with a breath so a refused connect cannot spin.
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        });
    }
    let pipelined = "GET /v1/openapi.json HTTP/1.1\r\nHost: bench\r\n\r\n".repeat(64);
    for i in 0..load.slow_readers {
        let (c, from, to) = (Arc::clone(&counters), source(i, load.sources), args.http);
        let requests = pipelined.clone();
        tasks.spawn(async move {
            loop {
                match connect_from(from, to, Some(4096)).await {
                    Ok(mut stream) => {
                        inc(&c.slow_reader_connections);
                        let sent = tokio::time::timeout(
                            Duration::from_secs(5),
                            stream.write_all(requests.as_bytes()),
                        )
                        .await;
                        if matches!(sent, Ok(Ok(()))) {
                            let mut byte = [0u8; 1];
                            while matches!(stream.read(&mut byte).await, Ok(1)) {
                                tokio::time::sleep(Duration::from_secs(1)).await;
                            }
                        }
                        inc(&c.slow_reader_closed_by_server);
                    }
                    Err(_) => inc(&c.connect_errors),
                }
                tokio::time::sleep(reopen).await;
            }
        });
    }
    let mut big_header = b"GET /healthz HTTP/1.1\r\nHost: bench\r\nX-Fill: ".to_vec();
    big_header.resize(big_header.len() + 1024 * 1024, b'a');
    big_header.extend_from_slice(b"\r\n\r\n");
    let big_header: Arc<[u8]> = big_header.into();
    for i in 0..load.big_headers {
        let (c, from, to) = (Arc::clone(&counters), source(i, load.sources), args.http);
        let request = Arc::clone(&big_header);
        tasks.spawn(async move {
            loop {
                match connect_from(from, to, None).await {
                    Ok(mut stream) => {
                        inc(&c.big_header_requests);
                        // The server may answer and close before the header is all sent.
                        let _ = stream.write_all(&request).await;
                        let mut head = [0u8; 12];
                        let read = tokio::time::timeout(
                            Duration::from_secs(5),
                            stream.read_exact(&mut head),
                        )
                        .await;
                        if matches!(read, Ok(Ok(_))) && head.ends_with(b" 431") {
                            inc(&c.big_header_431);
                        }
                    }
                    Err(_) => {
                        inc(&c.connect_errors);
                        tokio::time::sleep(reopen).await;
                    }
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        });
    }
    println!("flood-attack ready");
    // Runs until the parent closes our stdin.
    tokio::task::spawn_blocking(|| {
        let mut sink = Vec::new();
        let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut sink);
    })
    .await
    .context("waiting for stdin")?;
    tasks.abort_all();
    println!("{}", serde_json::to_string(&counters.stats())?);
    Ok(())
}

/// `ferrojob bench flood-burn` flags (started by `bench flood` for its control measurement;
/// stops when its stdin closes).
#[derive(Debug, Clone, clap::Args)]
pub struct BurnArgs {
    /// Cores of CPU to take, 0 to 64, e.g. 0.6: the process spins while its CPU time is
    /// below this many times the time since it started, over `ceil(cores)` threads.
    #[arg(long)]
    cores: f64,
}

/// This process's CPU time (user + system) from `/proc/self/stat`, ms; 0 when unreadable.
fn own_cpu_ms() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may hold spaces) start at state, field 3; utime
    // and stime are fields 14 and 15, in clock ticks of 10 ms on Linux.
    let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let ticks: u64 = after_name
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|f| f.parse::<u64>().ok())
        .sum();
    ticks * 10
}

/// The threads a burner of `cores` spins on. 0 is allowed: an attacker whose CPU time read 0
/// (the counter moves in 10 ms ticks) is matched by a burner that takes nothing.
fn spinners(cores: f64) -> Result<usize> {
    if !(cores.is_finite() && (0.0..=64.0).contains(&cores)) {
        bail!("--cores must be 0 to 64, got {cores}");
    }
    Ok((cores.ceil() as usize).max(1))
}

/// Takes `args.cores` of CPU until stdin closes.
pub(super) fn burn(args: &BurnArgs) -> Result<()> {
    let threads = spinners(args.cores)?;
    let start = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let mut spinners = Vec::with_capacity(threads);
    for _ in 0..threads {
        let (stop, cores) = (Arc::clone(&stop), args.cores);
        spinners.push(std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let owed = cores * start.elapsed().as_secs_f64() * 1000.0;
                if (own_cpu_ms() as f64) < owed {
                    let slice = Instant::now();
                    while slice.elapsed() < Duration::from_millis(1) {
                        std::hint::spin_loop();
                    }
                } else {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        }));
    }
    println!("flood-burn ready");
    let mut sink = Vec::new();
    let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut sink);
    stop.store(true, Ordering::Relaxed);
    for s in spinners {
        let _ = s.join();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_stay_in_their_range() {
        assert_eq!(source(0, 64), IpAddr::V4(Ipv4Addr::new(127, 0, 2, 1)));
        assert_eq!(source(63, 64), IpAddr::V4(Ipv4Addr::new(127, 0, 2, 64)));
        assert_eq!(source(64, 64), IpAddr::V4(Ipv4Addr::new(127, 0, 2, 1)));
        assert_eq!(source(1000, 250), IpAddr::V4(Ipv4Addr::new(127, 0, 2, 1)));
        assert_eq!(source(5, 0), IpAddr::V4(Ipv4Addr::new(127, 0, 2, 1)));
    }

    #[test]
    fn the_attack_load_round_trips_through_its_flags() {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            load: AttackLoad,
        }
        let load = AttackLoad {
            idle_connections: 7,
            big_frame_connections: 6,
            bad_handshakes: 5,
            slow_readers: 4,
            big_headers: 3,
            sources: 2,
            reopen_ms: 1,
        };
        let mut argv = vec!["x".to_owned()];
        argv.extend(load.to_args());
        let parsed = <Cli as clap::Parser>::try_parse_from(argv).unwrap().load;
        assert_eq!(
            serde_json::to_value(&parsed).unwrap(),
            serde_json::to_value(&load).unwrap()
        );
    }

    #[test]
    fn a_burner_spins_on_enough_threads_and_takes_zero_cores() {
        assert_eq!(spinners(0.0).unwrap(), 1);
        assert_eq!(spinners(0.6).unwrap(), 1);
        assert_eq!(spinners(1.2).unwrap(), 2);
        for bad in [-0.1, 64.5, f64::NAN, f64::INFINITY] {
            assert!(spinners(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn own_cpu_time_is_read_and_grows() {
        let before = own_cpu_ms();
        // Ticks are 10 ms: spin until one more is counted (a bound only against a hang).
        let t = Instant::now();
        while own_cpu_ms() == before && t.elapsed() < Duration::from_secs(30) {
            std::hint::spin_loop();
        }
        assert!(own_cpu_ms() > before, "{before}");
    }
}
