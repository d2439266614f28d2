//! Bench group `loopback`: one TCP connection on 127.0.0.1, side by side:
//!
//! - `ferrojob`: the tokio adapter (`connect` + `Listener`), full protocol: handshake done,
//!   every message framed, validated and deserialized, writes coalesced by the driver;
//! - `raw_tcp`: a plain length-prefixed stream over tokio with the same bytes on the wire per
//!   message (32), buffered writes and reads, no validation: the practical physical limit.
//! - `raw_tcp_tasks`: `raw_tcp`'s framing moved behind the task hand-offs ferrojob's design
//!   has (caller → client connection task over an mpsc, answer back over a oneshot; server
//!   connection task → handler task → connection task over two mpscs), no encoding, no
//!   validation: the floor of that design, the hand-offs' cost alone.
//!
//! - `ferrojob_batched`: the same, messages handed over 256 at a time with `send_batch`.
//! - `ferrojob_tls`: `ferrojob` inside TLS (rustls, ring provider, a CA and certificate made
//!   at start; the handshake bound to the channel): what encryption costs per message.
//!
//! Cases: `one_way` (client → server small messages, counted on arrival) and `round_trip`
//! (sequential request → answer). `target/bench-reports/loopback.json` gets `msgs_per_s`
//! (one-way), `rtt_p50_us`/`rtt_p99_us` (round trip) and `ratio_to_raw_tcp` per function.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ferrojob_benches::{percentile, Report, Row};
use ferrojob_transport::message::{Ack, Message, StopInstance};
use ferrojob_transport::net::{connect, ConnectionHandle, Listener, NetConfig};
use ferrojob_transport::tls::{ClientTls, ServerTls};
use ferrojob_transport::{AppSecret, AppSecrets, ClientIdentity, TransportMetrics};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Runtime;
use tokio::sync::{mpsc, oneshot, Notify};

/// Payload bytes of a raw message, so that a raw message is 32 bytes on the wire like a
/// ferrojob `StopInstance` frame (24-byte header + 8-byte archive).
const RAW_PAYLOAD: usize = 28;
const REPORT_MSGS: u64 = 1_000_000;
const REPORT_RTTS: usize = 20_000;

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// Counts arrivals and wakes the sender when a target count is reached.
#[derive(Default)]
struct Counter {
    count: AtomicU64,
    target: AtomicU64,
    reached: Notify,
}

impl Counter {
    fn arrived(&self) {
        let n = self.count.fetch_add(1, Ordering::AcqRel) + 1;
        if n == self.target.load(Ordering::Acquire) {
            self.reached.notify_one();
        }
    }

    /// Sets the target `n` arrivals from now; returns the absolute target.
    fn expect(&self, n: u64) -> u64 {
        let target = self.count.load(Ordering::Acquire) + n;
        self.target.store(target, Ordering::Release);
        target
    }

    async fn wait(&self, target: u64) {
        while self.count.load(Ordering::Acquire) < target {
            self.reached.notified().await;
        }
    }
}

// ----- ferrojob -----------------------------------------------------------------------------

struct Ferro {
    client: ConnectionHandle,
    counter: Arc<Counter>,
}

/// TLS settings for both ends: a CA made now and a certificate for `localhost` it signed.
fn tls_pair() -> (ServerTls, ClientTls) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).expect("CA");
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().expect("key");
    let cert = CertificateParams::new(vec!["localhost".to_owned()])
        .expect("params")
        .signed_by(&key, &issuer)
        .expect("cert");
    let server = ServerTls::from_pem(cert.pem().as_bytes(), key.serialize_pem().as_bytes())
        .expect("server TLS");
    let client = ClientTls::from_ca_pem(ca.pem().as_bytes())
        .expect("client TLS")
        .with_server_name("localhost")
        .expect("name");
    (server, client)
}

async fn ferro_setup(tls: bool) -> Ferro {
    let mut secrets = HashMap::new();
    secrets.insert("bench".to_owned(), AppSecret::new("k"));
    let secrets: Arc<dyn AppSecrets> = Arc::new(secrets);
    let mut config = NetConfig::default();
    config.connection.heartbeat_interval = Duration::from_secs(60);
    config.connection.idle_timeout = Duration::from_secs(600);
    let mut client_config = config.clone();
    if tls {
        let (server, client) = tls_pair();
        config.server_tls = Some(server);
        client_config.client_tls = Some(client);
    }
    let mut listener = Listener::bind(
        "127.0.0.1:0".parse().expect("addr"),
        config.clone(),
        secrets,
    )
    .await
    .expect("bind");
    let identity = ClientIdentity {
        app_name: "bench".into(),
        worker_address: "127.0.0.1:1".into(),
        tags: Vec::new(),
        client_version: "bench".into(),
        secret: AppSecret::new("k"),
    };
    let addr = listener.local_addr();
    let (client, accepted) = tokio::join!(
        connect(
            addr,
            client_config,
            identity,
            Arc::new(TransportMetrics::default())
        ),
        listener.accept()
    );
    let client = client.expect("connect");
    let mut accepted = accepted.expect("accept");
    let counter = Arc::new(Counter::default());
    let c = Arc::clone(&counter);
    tokio::spawn(async move {
        let _keep = listener;
        let mut batch = Vec::with_capacity(1024);
        while accepted.incoming.recv_many(&mut batch, 1024).await > 0 {
            for inc in batch.drain(..) {
                match inc.correlation {
                    Some(corr) => {
                        let _ = accepted.handle.respond(corr, Ack {}).await;
                    }
                    None => c.arrived(),
                }
            }
        }
    });
    Ferro {
        client: client.handle,
        counter,
    }
}

async fn ferro_one_way(f: &Ferro, n: u64) -> Duration {
    let target = f.counter.expect(n);
    let start = Instant::now();
    for i in 0..n {
        f.client
            .send(StopInstance {
                instance_id: i,
                epoch: 0,
            })
            .await
            .expect("send");
    }
    f.counter.wait(target).await;
    start.elapsed()
}

/// Like `ferro_one_way`, but through `send_batch` (256 messages per queue command): what a
/// worker shipping many reports at once pays.
async fn ferro_one_way_batched(f: &Ferro, n: u64) -> Duration {
    let target = f.counter.expect(n);
    let start = Instant::now();
    let mut i = 0;
    while i < n {
        let end = (i + 256).min(n);
        let batch: Vec<Message> = (i..end)
            .map(|id| {
                StopInstance {
                    instance_id: id,
                    epoch: 0,
                }
                .into()
            })
            .collect();
        f.client.send_batch(batch).await.expect("send");
        i = end;
    }
    f.counter.wait(target).await;
    start.elapsed()
}

async fn ferro_rtt(f: &Ferro) -> Duration {
    let start = Instant::now();
    let m: Message = StopInstance {
        instance_id: 1,
        epoch: 0,
    }
    .into();
    f.client
        .request(m, Duration::from_secs(10))
        .await
        .expect("request");
    start.elapsed()
}

// ----- raw tcp ------------------------------------------------------------------------------

struct Raw {
    writer: BufWriter<tokio::net::tcp::OwnedWriteHalf>,
    reader: BufReader<tokio::net::tcp::OwnedReadHalf>,
    counter: Arc<Counter>,
}

async fn raw_setup() -> (Raw, Raw) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    // Two connections: one for one-way (server counts), one for echo (server echoes).
    let (a, b) = tokio::join!(TcpStream::connect(addr), listener.accept());
    let (one_way, one_way_server) = (a.expect("connect"), b.expect("accept").0);
    let (a, b) = tokio::join!(TcpStream::connect(addr), listener.accept());
    let (echo, echo_server) = (a.expect("connect"), b.expect("accept").0);
    for s in [&one_way, &one_way_server, &echo, &echo_server] {
        s.set_nodelay(true).expect("nodelay");
    }
    let counter = Arc::new(Counter::default());
    let c = Arc::clone(&counter);
    tokio::spawn(async move {
        let mut r = BufReader::with_capacity(64 * 1024, one_way_server);
        let mut payload = [0u8; 1024];
        loop {
            let Ok(len) = r.read_u32_le().await else {
                return;
            };
            let Some(buf) = payload.get_mut(..len as usize) else {
                return;
            };
            if r.read_exact(buf).await.is_err() {
                return;
            }
            c.arrived();
        }
    });
    tokio::spawn(async move {
        let (rd, wr) = echo_server.into_split();
        let mut r = BufReader::with_capacity(64 * 1024, rd);
        let mut w = BufWriter::with_capacity(64 * 1024, wr);
        let mut payload = [0u8; 1024];
        loop {
            let Ok(len) = r.read_u32_le().await else {
                return;
            };
            let Some(buf) = payload.get_mut(..len as usize) else {
                return;
            };
            if r.read_exact(buf).await.is_err() {
                return;
            }
            if w.write_u32_le(len).await.is_err()
                || w.write_all(buf).await.is_err()
                || w.flush().await.is_err()
            {
                return;
            }
        }
    });
    let split = |s: TcpStream, counter: Arc<Counter>| {
        let (rd, wr) = s.into_split();
        Raw {
            writer: BufWriter::with_capacity(64 * 1024, wr),
            reader: BufReader::with_capacity(64 * 1024, rd),
            counter,
        }
    };
    (split(one_way, Arc::clone(&counter)), split(echo, counter))
}

async fn raw_one_way(r: &mut Raw, n: u64) -> Duration {
    let target = r.counter.expect(n);
    let start = Instant::now();
    let mut payload = [0u8; RAW_PAYLOAD];
    for i in 0..n {
        payload[..8].copy_from_slice(&i.to_le_bytes());
        r.writer
            .write_u32_le(RAW_PAYLOAD as u32)
            .await
            .expect("write");
        r.writer.write_all(&payload).await.expect("write");
    }
    r.writer.flush().await.expect("flush");
    r.counter.wait(target).await;
    start.elapsed()
}

async fn raw_rtt(r: &mut Raw) -> Duration {
    let start = Instant::now();
    let payload = [7u8; RAW_PAYLOAD];
    r.writer
        .write_u32_le(RAW_PAYLOAD as u32)
        .await
        .expect("write");
    r.writer.write_all(&payload).await.expect("write");
    r.writer.flush().await.expect("flush");
    let len = r.reader.read_u32_le().await.expect("read");
    let mut back = [0u8; RAW_PAYLOAD];
    assert_eq!(len as usize, RAW_PAYLOAD);
    r.reader.read_exact(&mut back).await.expect("read");
    start.elapsed()
}

// ----- raw tcp behind ferrojob's task hand-offs ---------------------------------------------

type RawMsg = [u8; RAW_PAYLOAD];

/// First payload byte of a request (answered); any other value is a one-way message.
const REQUEST_FLAG: u8 = 1;
/// Queue lengths and commands drained per write, as in ferrojob's default `NetConfig`.
const QUEUE: usize = 4096;
const DRAIN: usize = 256;

enum RawCommand {
    Send(RawMsg),
    Request(RawMsg, oneshot::Sender<RawMsg>),
}

struct RawTasks {
    commands: mpsc::Sender<RawCommand>,
    counter: Arc<Counter>,
}

/// Takes every complete frame (u32 length + payload) off the front of `buf`.
fn take_frames(buf: &mut Vec<u8>, mut each: impl FnMut(RawMsg)) {
    let mut pos = 0;
    while let Some(head) = buf
        .get(pos..pos + 4)
        .and_then(|h| <[u8; 4]>::try_from(h).ok())
    {
        let len = u32::from_le_bytes(head) as usize;
        let Some(body) = buf.get(pos + 4..pos + 4 + len) else {
            break;
        };
        let mut msg = [0u8; RAW_PAYLOAD];
        let n = len.min(RAW_PAYLOAD);
        msg[..n].copy_from_slice(&body[..n]);
        each(msg);
        pos += 4 + len;
    }
    buf.drain(..pos);
}

async fn write_frame(
    w: &mut BufWriter<tokio::net::tcp::OwnedWriteHalf>,
    msg: &RawMsg,
) -> std::io::Result<()> {
    w.write_u32_le(RAW_PAYLOAD as u32).await?;
    w.write_all(msg).await
}

/// The client connection task: owns the socket, writes what callers queue, hands each answer
/// to the caller's oneshot (answers come in request order).
async fn raw_tasks_client(stream: TcpStream, mut commands: mpsc::Receiver<RawCommand>) {
    let (mut rd, wr) = stream.into_split();
    let mut w = BufWriter::with_capacity(64 * 1024, wr);
    let mut read_buf: Vec<u8> = Vec::with_capacity(64 * 1024);
    let mut waiters: VecDeque<oneshot::Sender<RawMsg>> = VecDeque::new();
    let mut batch = Vec::with_capacity(DRAIN);
    loop {
        tokio::select! {
            n = commands.recv_many(&mut batch, DRAIN) => {
                if n == 0 {
                    return;
                }
                for command in batch.drain(..) {
                    let msg = match command {
                        RawCommand::Send(msg) => msg,
                        RawCommand::Request(msg, reply) => {
                            waiters.push_back(reply);
                            msg
                        }
                    };
                    if write_frame(&mut w, &msg).await.is_err() {
                        return;
                    }
                }
                if w.flush().await.is_err() {
                    return;
                }
            }
            read = rd.read_buf(&mut read_buf) => {
                if !matches!(read, Ok(n) if n > 0) {
                    return;
                }
                take_frames(&mut read_buf, |msg| {
                    if let Some(reply) = waiters.pop_front() {
                        let _ = reply.send(msg);
                    }
                });
            }
        }
    }
}

/// The server connection task: hands every frame read to the handler, writes the handler's
/// answers.
async fn raw_tasks_server(
    stream: TcpStream,
    to_handler: mpsc::Sender<RawMsg>,
    mut answers: mpsc::Receiver<RawMsg>,
) {
    let (mut rd, wr) = stream.into_split();
    let mut w = BufWriter::with_capacity(64 * 1024, wr);
    let mut read_buf: Vec<u8> = Vec::with_capacity(64 * 1024);
    let mut received = Vec::new();
    let mut batch = Vec::with_capacity(DRAIN);
    loop {
        tokio::select! {
            n = answers.recv_many(&mut batch, DRAIN) => {
                if n == 0 {
                    return;
                }
                for msg in batch.drain(..) {
                    if write_frame(&mut w, &msg).await.is_err() {
                        return;
                    }
                }
                if w.flush().await.is_err() {
                    return;
                }
            }
            read = rd.read_buf(&mut read_buf) => {
                if !matches!(read, Ok(n) if n > 0) {
                    return;
                }
                take_frames(&mut read_buf, |msg| received.push(msg));
                for msg in received.drain(..) {
                    if to_handler.send(msg).await.is_err() {
                        return;
                    }
                }
            }
        }
    }
}

async fn raw_tasks_setup() -> RawTasks {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (a, b) = tokio::join!(TcpStream::connect(addr), listener.accept());
    let (client, server) = (a.expect("connect"), b.expect("accept").0);
    for s in [&client, &server] {
        s.set_nodelay(true).expect("nodelay");
    }
    let (to_handler, mut requests) = mpsc::channel::<RawMsg>(QUEUE);
    let (answer_tx, answers) = mpsc::channel::<RawMsg>(QUEUE);
    tokio::spawn(raw_tasks_server(server, to_handler, answers));
    let counter = Arc::new(Counter::default());
    let c = Arc::clone(&counter);
    tokio::spawn(async move {
        let mut batch = Vec::with_capacity(DRAIN);
        while requests.recv_many(&mut batch, DRAIN).await > 0 {
            for msg in batch.drain(..) {
                if msg[0] == REQUEST_FLAG {
                    if answer_tx.send(msg).await.is_err() {
                        return;
                    }
                } else {
                    c.arrived();
                }
            }
        }
    });
    let (commands, rx) = mpsc::channel(QUEUE);
    tokio::spawn(raw_tasks_client(client, rx));
    RawTasks { commands, counter }
}

async fn raw_tasks_one_way(r: &RawTasks, n: u64) -> Duration {
    let target = r.counter.expect(n);
    let start = Instant::now();
    let mut payload = [0u8; RAW_PAYLOAD];
    for i in 0..n {
        payload[1..9].copy_from_slice(&i.to_le_bytes());
        r.commands
            .send(RawCommand::Send(payload))
            .await
            .map_err(|_| "closed")
            .expect("send");
    }
    r.counter.wait(target).await;
    start.elapsed()
}

async fn raw_tasks_rtt(r: &RawTasks) -> Duration {
    let start = Instant::now();
    let mut payload = [7u8; RAW_PAYLOAD];
    payload[0] = REQUEST_FLAG;
    let (reply, answer) = oneshot::channel();
    r.commands
        .send(RawCommand::Request(payload, reply))
        .await
        .map_err(|_| "closed")
        .expect("send");
    answer.await.expect("answer");
    start.elapsed()
}

// ----- bench --------------------------------------------------------------------------------

/// Sorts `samples`; their p50 in microseconds.
fn p50_us(samples: &mut [Duration]) -> f64 {
    samples.sort_unstable();
    percentile(samples, 0.5).map_or(0.0, |d| d.as_secs_f64() * 1e6)
}

/// A round-trip row; `raw_p50_us` adds the p50 ratio to raw_tcp's.
fn rtt_row(function: &str, mut samples: Vec<Duration>, raw_p50_us: Option<f64>) -> Row {
    let p50 = p50_us(&mut samples);
    let us = |q| percentile(&samples, q).map_or(0.0, |d: Duration| d.as_secs_f64() * 1e6);
    let row = Row::new(function, "round_trip")
        .with("rtt_p50_us", p50)
        .with("rtt_p99_us", us(0.99))
        .with("samples", samples.len() as u64);
    match raw_p50_us {
        Some(raw) if raw > 0.0 => row.with("ratio_to_raw_tcp", p50 / raw),
        _ => row,
    }
}

fn bench(c: &mut Criterion) {
    let rt = runtime();
    let ferro = rt.block_on(ferro_setup(false));
    let ferro_tls = rt.block_on(ferro_setup(true));
    let (mut raw_one, mut raw_echo) = rt.block_on(raw_setup());
    let raw_tasks = rt.block_on(raw_tasks_setup());

    let mut group = c.benchmark_group("loopback");
    group.throughput(Throughput::Elements(1));
    group.bench_function(BenchmarkId::new("ferrojob", "one_way"), |b| {
        b.iter_custom(|iters| rt.block_on(ferro_one_way(&ferro, iters)))
    });
    group.bench_function(BenchmarkId::new("ferrojob_batched", "one_way"), |b| {
        b.iter_custom(|iters| rt.block_on(ferro_one_way_batched(&ferro, iters)))
    });
    group.bench_function(BenchmarkId::new("ferrojob_tls", "one_way"), |b| {
        b.iter_custom(|iters| rt.block_on(ferro_one_way(&ferro_tls, iters)))
    });
    group.bench_function(BenchmarkId::new("raw_tcp", "one_way"), |b| {
        b.iter_custom(|iters| rt.block_on(raw_one_way(&mut raw_one, iters)))
    });
    group.bench_function(BenchmarkId::new("raw_tcp_tasks", "one_way"), |b| {
        b.iter_custom(|iters| rt.block_on(raw_tasks_one_way(&raw_tasks, iters)))
    });
    group.bench_function(BenchmarkId::new("ferrojob", "round_trip"), |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    total += ferro_rtt(&ferro).await;
                }
                total
            })
        })
    });
    group.bench_function(BenchmarkId::new("ferrojob_tls", "round_trip"), |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    total += ferro_rtt(&ferro_tls).await;
                }
                total
            })
        })
    });
    group.bench_function(BenchmarkId::new("raw_tcp", "round_trip"), |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    total += raw_rtt(&mut raw_echo).await;
                }
                total
            })
        })
    });
    group.bench_function(BenchmarkId::new("raw_tcp_tasks", "round_trip"), |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    total += raw_tasks_rtt(&raw_tasks).await;
                }
                total
            })
        })
    });
    group.finish();

    // Figures for the report: the functions alternate so that machine noise hits both.
    let mut report = Report::new("loopback");
    let (mut f_best, mut fb_best, mut r_best) = (Duration::MAX, Duration::MAX, Duration::MAX);
    let (mut t_best, mut k_best) = (Duration::MAX, Duration::MAX);
    for _ in 0..3 {
        f_best = f_best.min(rt.block_on(ferro_one_way(&ferro, REPORT_MSGS)));
        t_best = t_best.min(rt.block_on(ferro_one_way(&ferro_tls, REPORT_MSGS)));
        fb_best = fb_best.min(rt.block_on(ferro_one_way_batched(&ferro, REPORT_MSGS)));
        r_best = r_best.min(rt.block_on(raw_one_way(&mut raw_one, REPORT_MSGS)));
        k_best = k_best.min(rt.block_on(raw_tasks_one_way(&raw_tasks, REPORT_MSGS)));
    }
    let f_rate = REPORT_MSGS as f64 / f_best.as_secs_f64();
    let fb_rate = REPORT_MSGS as f64 / fb_best.as_secs_f64();
    let r_rate = REPORT_MSGS as f64 / r_best.as_secs_f64();
    report.push(
        Row::new("ferrojob_batched", "one_way")
            .with("msgs_per_s", fb_rate)
            .with("ratio_to_raw_tcp", fb_rate / r_rate),
    );
    report.push(
        Row::new("ferrojob", "one_way")
            .with("msgs_per_s", f_rate)
            .with("ratio_to_raw_tcp", f_rate / r_rate),
    );
    let t_rate = REPORT_MSGS as f64 / t_best.as_secs_f64();
    report.push(
        Row::new("ferrojob_tls", "one_way")
            .with("msgs_per_s", t_rate)
            .with("ratio_to_ferrojob", t_rate / f_rate)
            .with("ratio_to_raw_tcp", t_rate / r_rate),
    );
    let k_rate = REPORT_MSGS as f64 / k_best.as_secs_f64();
    report.push(
        Row::new("raw_tcp_tasks", "one_way")
            .with("msgs_per_s", k_rate)
            .with("ratio_to_raw_tcp", k_rate / r_rate),
    );
    report.push(Row::new("raw_tcp", "one_way").with("msgs_per_s", r_rate));
    let (mut f_rtt, mut t_rtt, mut r_rtt, mut k_rtt) = (
        Vec::with_capacity(REPORT_RTTS),
        Vec::with_capacity(REPORT_RTTS),
        Vec::with_capacity(REPORT_RTTS),
        Vec::with_capacity(REPORT_RTTS),
    );
    rt.block_on(async {
        for _ in 0..REPORT_RTTS {
            f_rtt.push(ferro_rtt(&ferro).await);
            t_rtt.push(ferro_rtt(&ferro_tls).await);
            r_rtt.push(raw_rtt(&mut raw_echo).await);
            k_rtt.push(raw_tasks_rtt(&raw_tasks).await);
        }
    });
    let raw_p50 = Some(p50_us(&mut r_rtt));
    report.push(rtt_row("ferrojob", f_rtt, raw_p50));
    report.push(rtt_row("ferrojob_tls", t_rtt, raw_p50));
    report.push(rtt_row("raw_tcp_tasks", k_rtt, raw_p50));
    report.push(rtt_row("raw_tcp", r_rtt, None));
    if let Err(e) = report.write() {
        eprintln!("loopback report not written: {e}");
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    targets = bench
}
criterion_main!(benches);
