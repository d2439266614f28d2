//! The sans-IO connection core: bytes in, events and bytes out, time as an argument.
//!
//! One [`Connection`] is one end of one TCP connection, client (worker) or server. It owns the
//! frame decoder, the handshake state machine, the send buffer, pending requests and every
//! timer, but no socket and no clock, so tests drive two of them on virtual time and fuzzers
//! feed them operation sequences.
//!
//! ```text
//!  client: AwaitChallenge --challenge--> AwaitAccept --accepted--> Established --> Closed
//!  server: AwaitHandshake --valid handshake--> Established --> Closed
//!          (any state) --error / Close frame / timeout / close()--> Closed
//! ```
//!
//! Timers (all relative to the `now` passed in):
//! - handshake: the handshake must complete within `handshake_timeout` of creation (5 s by
//!   default: a real peer needs one round trip);
//! - idle: nothing received for `idle_timeout` closes the connection;
//! - heartbeat: nothing sent for `heartbeat_interval` sends a [`Ping`];
//! - frame: a frame begun must be complete within `frame_timeout` (slow-loris defence);
//! - write stall: bytes handed to the socket and not written for `write_stall_timeout` mean
//!   the peer does not read;
//! - requests: each request has its own deadline.
//!
//! Limits that hold before the peer has authenticated, so that an anonymous peer costs
//! little: frames may carry at most `max_handshake_payload_len` bytes (4 KiB by default; the
//! handshake messages need a few hundred), checked by the decoder on the header before any
//! payload memory is reserved; the full `max_payload_len` applies from the first frame after
//! the handshake. At any time, the replies the core sends on its own (a [`Pong`] per [`Ping`],
//! refusals) that wait for the socket are bounded by `max_queued_control_replies`: a peer that
//! keeps asking without reading is disconnected when the bound is hit, not after the write
//! stall timeout.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::auth::{self, AppSecret, AppSecrets, Binding};
use crate::error::{ConnectionError, EncodeError, FrameError, RequestError, SendError};
use crate::frame::{
    encode_frame, Decoder, Flags, FrameHeader, DEFAULT_MAX_PAYLOAD_LEN, PROTOCOL_VERSION,
};
use crate::message::{
    Close, ErrorCode, ErrorReply, Handshake, HandshakeAccepted, HandshakeChallenge, Message,
    MessageKind, Ping, Pong, NONCE_LEN,
};
use crate::metrics::TransportMetrics;

/// Default [`ConnectionConfig::max_handshake_payload_len`]: 4 KiB.
pub const DEFAULT_MAX_HANDSHAKE_PAYLOAD_LEN: u32 = 4 * 1024;

/// Send-buffer capacity a connection keeps while it has nothing to send; a burst may grow the
/// buffer further, and the surplus is released once it is written.
pub(crate) const RETAINED_SEND_CAPACITY: usize = 64 * 1024;

/// Settings of one connection. Durations are wall-clock spans; sizes are bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectionConfig {
    /// Largest payload accepted or sent once authenticated, bytes (default 4 MiB).
    pub max_payload_len: u32,
    /// Largest payload accepted or sent before the handshake completed, bytes (default 4 KiB;
    /// capped by `max_payload_len`). A larger frame header closes the connection before any
    /// of its payload is buffered. The worker's `Handshake` (app name, address, tags, version
    /// plus about 150 bytes) must fit.
    pub max_handshake_payload_len: u32,
    /// Send a ping when nothing was sent for this long (default 5 s).
    pub heartbeat_interval: Duration,
    /// Close when nothing was received for this long (default 20 s; keep it several
    /// heartbeat intervals).
    pub idle_timeout: Duration,
    /// The handshake must complete within this of the connection's start (default 5 s).
    pub handshake_timeout: Duration,
    /// A frame begun must arrive completely within this (default 30 s).
    pub frame_timeout: Duration,
    /// Bytes handed to the socket must be written within this (default 30 s).
    pub write_stall_timeout: Duration,
    /// `send`/`request` refuse new messages while this many bytes are queued (default 8 MiB).
    pub max_send_buffer: usize,
    /// At most this many requests await responses (default 65 536).
    pub max_pending_requests: usize,
    /// Replies the connection sends on its own ([`Pong`]s, refusals) that may wait for the
    /// socket at once (default 64). One more closes the connection
    /// ([`ConnectionError::ControlQueueFull`]): the peer asks without reading the answers.
    pub max_queued_control_replies: usize,
}

impl Default for ConnectionConfig {
    fn default() -> Self {
        ConnectionConfig {
            max_payload_len: DEFAULT_MAX_PAYLOAD_LEN,
            max_handshake_payload_len: DEFAULT_MAX_HANDSHAKE_PAYLOAD_LEN,
            heartbeat_interval: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(20),
            handshake_timeout: Duration::from_secs(5),
            frame_timeout: Duration::from_secs(30),
            write_stall_timeout: Duration::from_secs(30),
            max_send_buffer: 8 * 1024 * 1024,
            max_pending_requests: 65_536,
            max_queued_control_replies: 64,
        }
    }
}

/// Decides whether a server takes a peer that has just proven its identity, before the
/// handshake is accepted (e.g. whether a connection slot is free). Called at most once per
/// connection, synchronously, from [`Connection::handle_input`].
pub trait AdmissionControl: Send + Sync + std::fmt::Debug {
    /// `Ok` accepts the handshake; `Err(reason)` closes the connection with
    /// [`ErrorCode::Overloaded`] and `reason` instead, so the peer never sees it established.
    fn admit(&mut self) -> Result<(), String>;
}

/// Who a client (worker) says it is, and the secret it proves.
#[derive(Debug, Clone)]
pub struct ClientIdentity {
    /// The app the worker belongs to.
    pub app_name: String,
    /// Address other processes reach this worker at (`host:port`).
    pub worker_address: String,
    /// Tags for SPECIFY dispatch.
    pub tags: Vec<String>,
    /// The worker's software version.
    pub client_version: String,
    /// The app's secret (never sent).
    pub secret: AppSecret,
}

/// What the handshake established about the peer.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum PeerInfo {
    /// Seen by a server: the authenticated worker.
    Worker {
        /// Its app (authenticated by the proof).
        app_name: String,
        /// Its address.
        worker_address: String,
        /// Its tags.
        tags: Vec<String>,
        /// Its software version.
        client_version: String,
    },
    /// Seen by a client: the authenticated server.
    Server {
        /// The server's heartbeat interval, milliseconds.
        heartbeat_interval_ms: u32,
        /// The server's idle timeout, milliseconds.
        idle_timeout_ms: u32,
        /// The server's clock at acceptance, epoch milliseconds.
        server_time_ms: i64,
    },
}

/// What the connection reports to its owner.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// The handshake completed; messages may flow.
    Established(PeerInfo),
    /// A message arrived. With `correlation: Some(c)` it is a request: answer it with
    /// [`Connection::respond`]`(c, ..)`.
    Message {
        /// The request's correlation, if the peer awaits an answer.
        correlation: Option<u64>,
        /// The message.
        message: Message,
    },
    /// A request made with [`Connection::request`] completed, failed or timed out.
    Response {
        /// The id `request` returned.
        request: u64,
        /// The answer; an [`ErrorReply`] becomes `Err(RequestError::Remote)`.
        result: Result<Message, RequestError>,
    },
    /// The connection is closed; no more events follow. Flush `poll_transmit` (a close frame
    /// may be queued), then drop the socket.
    Closed(ConnectionError),
}

#[derive(Debug)]
enum State {
    ClientAwaitChallenge {
        identity: ClientIdentity,
        client_nonce: [u8; NONCE_LEN],
    },
    ClientAwaitAccept {
        secret: AppSecret,
        client_nonce: [u8; NONCE_LEN],
        server_nonce: [u8; NONCE_LEN],
    },
    ServerAwaitHandshake {
        secrets: Arc<dyn AppSecrets>,
        nonce: [u8; NONCE_LEN],
    },
    Established,
    Closed,
}

#[derive(Debug)]
struct Pending {
    deadline: Instant,
    timeout: Duration,
}

/// One end of a connection, without I/O.
///
/// Call order, repeated until [`Event::Closed`]:
/// 1. feed what happened: [`handle_input`](Self::handle_input) with bytes read,
///    [`handle_eof`](Self::handle_eof) when the stream ended,
///    [`handle_transmitted`](Self::handle_transmitted) when the bytes from the last
///    `poll_transmit` are fully written, [`handle_timeout`](Self::handle_timeout) when the
///    deadline from `poll_timeout` passed; and what the owner wants: [`send`](Self::send),
///    [`request`](Self::request), [`respond`](Self::respond), [`close`](Self::close);
/// 2. drain [`poll_event`](Self::poll_event) until `None`;
/// 3. take bytes to write with [`poll_transmit`](Self::poll_transmit) (all queued frames at
///    once: this is where writes coalesce) and write them;
/// 4. sleep until [`poll_timeout`](Self::poll_timeout) or more input.
///
/// Every `now` must be monotonic (never earlier than the previous one).
#[derive(Debug)]
pub struct Connection {
    config: ConnectionConfig,
    state: State,
    decoder: Decoder,
    metrics: Arc<TransportMetrics>,
    events: VecDeque<Event>,
    out: Vec<u8>,
    /// When the oldest byte now in `out` was queued.
    out_since: Option<Instant>,
    /// Bytes handed out by `poll_transmit` and not yet confirmed written, and since when.
    in_flight: Option<(usize, Instant)>,
    /// Replies queued by the core itself (Pongs, refusals) that are in `out`, and in flight.
    /// Their sum is at most `max_queued_control_replies`.
    control_queued: usize,
    control_in_flight: usize,
    created: Instant,
    handshake_deadline: Instant,
    last_received: Instant,
    last_sent: Instant,
    frame_started: Option<Instant>,
    next_correlation: u64,
    pending: HashMap<u64, Pending>,
    deadlines: BTreeSet<(Instant, u64)>,
    server_time_ms: i64,
    /// Asked once a peer has authenticated; kept for the connection's life.
    admission: Option<Box<dyn AdmissionControl>>,
    /// What the handshake proofs bind besides the nonces (see [`Connection::bind`]).
    binding: Binding,
}

impl Connection {
    fn new(
        config: ConnectionConfig,
        state: State,
        now: Instant,
        metrics: Arc<TransportMetrics>,
    ) -> Connection {
        let handshake_deadline = now.checked_add(config.handshake_timeout).unwrap_or(now);
        let preauth_limit = config.max_handshake_payload_len.min(config.max_payload_len);
        Connection {
            decoder: Decoder::new(preauth_limit),
            config,
            state,
            metrics,
            events: VecDeque::new(),
            out: Vec::new(),
            out_since: None,
            in_flight: None,
            control_queued: 0,
            control_in_flight: 0,
            created: now,
            handshake_deadline,
            last_received: now,
            last_sent: now,
            frame_started: None,
            next_correlation: 1,
            pending: HashMap::new(),
            deadlines: BTreeSet::new(),
            server_time_ms: 0,
            admission: None,
            binding: Binding::default(),
        }
    }

    /// Sets what the handshake proofs bind: the role of the accepting end (a server end
    /// accepts as that role; a client end expects its peer to have it) and the TLS channel
    /// binding. The default is [`Role::Server`](crate::auth::Role::Server) on plain TCP.
    /// Call it before any input: a client makes its proof on the challenge, a server checks
    /// the worker's on its handshake. Once the client's proof is sent or the peer is
    /// established, calls are ignored.
    pub fn bind(&mut self, binding: Binding) {
        if matches!(
            self.state,
            State::ClientAwaitChallenge { .. } | State::ServerAwaitHandshake { .. }
        ) {
            self.binding = binding;
        }
    }

    /// A client (worker) end; waits for the server's challenge. `client_nonce` must be fresh
    /// random bytes.
    pub fn new_client(
        config: ConnectionConfig,
        identity: ClientIdentity,
        client_nonce: [u8; NONCE_LEN],
        now: Instant,
        metrics: Arc<TransportMetrics>,
    ) -> Connection {
        Connection::new(
            config,
            State::ClientAwaitChallenge {
                identity,
                client_nonce,
            },
            now,
            metrics,
        )
    }

    /// A server end; queues the challenge at once. `nonce` must be fresh random bytes;
    /// `server_time_ms` is the server's clock (epoch milliseconds) at `now`.
    pub fn new_server(
        config: ConnectionConfig,
        secrets: Arc<dyn AppSecrets>,
        nonce: [u8; NONCE_LEN],
        now: Instant,
        server_time_ms: i64,
        metrics: Arc<TransportMetrics>,
    ) -> Connection {
        let mut conn = Connection::new(
            config,
            State::ServerAwaitHandshake { secrets, nonce },
            now,
            metrics,
        );
        conn.server_time_ms = server_time_ms;
        let challenge = HandshakeChallenge {
            protocol_version: PROTOCOL_VERSION,
            nonce,
            server_time_ms,
        };
        conn.enqueue(now, &challenge.into(), Flags::NONE, 0);
        conn
    }

    /// A server end that asks `admission` before it accepts an authenticated peer (see
    /// [`AdmissionControl`]); otherwise like [`new_server`](Self::new_server). `admission`
    /// lives as long as the connection: it may hold the peer's slot.
    pub fn new_server_with_admission(
        config: ConnectionConfig,
        secrets: Arc<dyn AppSecrets>,
        admission: Box<dyn AdmissionControl>,
        nonce: [u8; NONCE_LEN],
        now: Instant,
        server_time_ms: i64,
        metrics: Arc<TransportMetrics>,
    ) -> Connection {
        let mut conn = Connection::new_server(config, secrets, nonce, now, server_time_ms, metrics);
        conn.admission = Some(admission);
        conn
    }

    /// The configuration.
    pub fn config(&self) -> &ConnectionConfig {
        &self.config
    }

    /// Whether the handshake completed and the connection is not closed.
    pub fn is_established(&self) -> bool {
        matches!(self.state, State::Established)
    }

    /// Whether the connection is closed (flush `poll_transmit`, then drop the socket).
    pub fn is_closed(&self) -> bool {
        matches!(self.state, State::Closed)
    }

    /// Bytes queued or in flight to the socket.
    pub fn queued_bytes(&self) -> usize {
        self.out
            .len()
            .saturating_add(self.in_flight.map_or(0, |(n, _)| n))
    }

    /// Whether `send` would accept a message now (established and below the buffer limit).
    pub fn can_send(&self) -> bool {
        self.is_established() && self.queued_bytes() < self.config.max_send_buffer
    }

    /// Requests awaiting responses.
    pub fn pending_requests(&self) -> usize {
        self.pending.len()
    }

    // ----- input -------------------------------------------------------------------------

    /// Feeds bytes read from the socket.
    pub fn handle_input(&mut self, now: Instant, mut bytes: &[u8]) {
        if self.is_closed() || bytes.is_empty() {
            return;
        }
        TransportMetrics::add(&self.metrics.bytes_received, bytes.len() as u64);
        self.last_received = now;
        while !self.is_closed() {
            match self.decoder.decode_message(&mut bytes) {
                Ok(Some((header, message))) => {
                    self.frame_started = None;
                    TransportMetrics::inc(&self.metrics.frames_received);
                    self.handle_frame(now, header, message);
                }
                Ok(None) => break,
                Err(e) => {
                    self.metrics.count_frame_error(&e);
                    let error = match e {
                        FrameError::TooLarge { kind, len, max } if !self.is_established() => {
                            TransportMetrics::inc(&self.metrics.preauth_frames_too_large);
                            ConnectionError::HandshakeFrameTooLarge { kind, len, max }
                        }
                        e => ConnectionError::Frame(e),
                    };
                    self.fail(now, error);
                    return;
                }
            }
        }
        if self.decoder.in_frame() {
            if self.frame_started.is_none() {
                self.frame_started = Some(now);
            }
        } else {
            self.frame_started = None;
        }
    }

    /// The peer closed its side of the stream.
    pub fn handle_eof(&mut self, now: Instant) {
        if !self.is_closed() {
            self.terminate(now, ConnectionError::Eof, false);
        }
    }

    /// The bytes from the last `poll_transmit` are fully written.
    pub fn handle_transmitted(&mut self, now: Instant) {
        if let Some((n, _)) = self.in_flight.take() {
            TransportMetrics::add(&self.metrics.bytes_sent, n as u64);
            TransportMetrics::inc(&self.metrics.write_calls);
        }
        self.control_in_flight = 0;
        let _ = now;
    }

    /// Fires every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.is_closed() {
            return;
        }
        if !self.is_established() && now >= self.handshake_deadline {
            TransportMetrics::inc(&self.metrics.handshake_failures);
            TransportMetrics::inc(&self.metrics.handshake_timeouts);
            let timeout = self.config.handshake_timeout;
            self.fail(now, ConnectionError::HandshakeTimeout { timeout });
            return;
        }
        if now >= self.idle_deadline() {
            TransportMetrics::inc(&self.metrics.idle_timeouts);
            let timeout = self.config.idle_timeout;
            self.fail(now, ConnectionError::IdleTimeout { timeout });
            return;
        }
        if let Some(deadline) = self.frame_deadline() {
            if now >= deadline {
                TransportMetrics::inc(&self.metrics.slow_peers);
                let timeout = self.config.frame_timeout;
                self.fail(now, ConnectionError::SlowPeer { timeout });
                return;
            }
        }
        if let Some(deadline) = self.stall_deadline() {
            if now >= deadline {
                TransportMetrics::inc(&self.metrics.peers_not_reading);
                let timeout = self.config.write_stall_timeout;
                let queued = self.queued_bytes();
                // The close frame could not be written either; don't queue one.
                self.terminate(
                    now,
                    ConnectionError::PeerNotReading { timeout, queued },
                    false,
                );
                return;
            }
        }
        while let Some(&(deadline, id)) = self.deadlines.first() {
            if deadline > now {
                break;
            }
            self.deadlines.pop_first();
            if let Some(p) = self.pending.remove(&id) {
                TransportMetrics::inc(&self.metrics.request_timeouts);
                self.events.push_back(Event::Response {
                    request: id,
                    result: Err(RequestError::TimedOut { timeout: p.timeout }),
                });
            }
        }
        if self.is_established() && now >= self.heartbeat_deadline() {
            let ping = Ping {
                time_ms: self.elapsed_ms(now),
            };
            self.enqueue(now, &ping.into(), Flags::NONE, 0);
        }
    }

    // ----- output ------------------------------------------------------------------------

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Moves every queued byte into `buf` (appending; swaps buffers when `buf` is empty) and
    /// marks them in flight until [`handle_transmitted`](Self::handle_transmitted). Returns
    /// the number of bytes moved. Takes nothing while earlier bytes are still in flight.
    ///
    /// With nothing to send, a send buffer grown by a burst beyond 64 KiB is released, so an
    /// idle connection keeps little memory.
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut Vec<u8>) -> usize {
        if self.in_flight.is_some() {
            return 0;
        }
        if self.out.is_empty() {
            if self.out.capacity() > RETAINED_SEND_CAPACITY {
                self.out = Vec::new();
            }
            return 0;
        }
        let n = self.out.len();
        if buf.is_empty() {
            std::mem::swap(buf, &mut self.out);
        } else {
            buf.append(&mut self.out);
        }
        self.out_since = None;
        self.in_flight = Some((n, now));
        self.control_in_flight = std::mem::take(&mut self.control_queued);
        n
    }

    /// When `handle_timeout` must next be called, if ever.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.is_closed() {
            return None;
        }
        let mut t = self.idle_deadline();
        if !self.is_established() {
            t = t.min(self.handshake_deadline);
        } else {
            t = t.min(self.heartbeat_deadline());
        }
        for d in [
            self.frame_deadline(),
            self.stall_deadline(),
            self.deadlines.first().map(|&(d, _)| d),
        ]
        .into_iter()
        .flatten()
        {
            t = t.min(d);
        }
        Some(t)
    }

    // ----- owner's commands --------------------------------------------------------------

    /// Queues a one-way message; refused with [`SendError::Full`] while `max_send_buffer`
    /// bytes are queued.
    pub fn send(&mut self, now: Instant, message: &Message) -> Result<(), SendError> {
        self.check_sendable(message.kind(), true)?;
        self.encode(now, message, Flags::NONE, 0)
    }

    /// Queues a one-way message the owner already accepted from a caller, even over the
    /// buffer limit: an owner that takes work only while [`can_send`](Self::can_send) holds
    /// bounds the overshoot itself (the tokio driver: one batch). Never refused for space.
    pub fn send_accepted(&mut self, now: Instant, message: &Message) -> Result<(), SendError> {
        self.check_sendable(message.kind(), false)?;
        self.encode(now, message, Flags::NONE, 0)
    }

    /// Queues a request; its answer comes as [`Event::Response`] with the returned id, or a
    /// timeout after `timeout`. Refused with [`SendError::Full`] like [`send`](Self::send).
    pub fn request(
        &mut self,
        now: Instant,
        message: &Message,
        timeout: Duration,
    ) -> Result<u64, SendError> {
        self.request_inner(now, message, timeout, true)
    }

    /// [`request`](Self::request) for work the owner already accepted: never refused for
    /// buffer space (see [`send_accepted`](Self::send_accepted)).
    pub fn request_accepted(
        &mut self,
        now: Instant,
        message: &Message,
        timeout: Duration,
    ) -> Result<u64, SendError> {
        self.request_inner(now, message, timeout, false)
    }

    fn request_inner(
        &mut self,
        now: Instant,
        message: &Message,
        timeout: Duration,
        enforce_limit: bool,
    ) -> Result<u64, SendError> {
        self.check_sendable(message.kind(), enforce_limit)?;
        if self.pending.len() >= self.config.max_pending_requests {
            return Err(SendError::TooManyPending {
                limit: self.config.max_pending_requests,
            });
        }
        let id = self.next_correlation;
        self.next_correlation = self.next_correlation.wrapping_add(1).max(1);
        self.encode(now, message, Flags::REQUEST, id)?;
        let deadline = now.checked_add(timeout).unwrap_or(now);
        self.pending.insert(id, Pending { deadline, timeout });
        self.deadlines.insert((deadline, id));
        Ok(id)
    }

    /// Answers the request that arrived with `correlation`. Answers are let through even
    /// when the buffer is over its limit (they are owed and bounded by the peer's requests),
    /// but not when the connection is closed.
    pub fn respond(
        &mut self,
        now: Instant,
        correlation: u64,
        message: &Message,
    ) -> Result<(), SendError> {
        if !self.is_established() {
            return Err(self.not_open_error());
        }
        if message.kind().is_control() {
            return Err(SendError::ControlMessage {
                kind: message.kind(),
            });
        }
        self.encode(now, message, Flags::RESPONSE, correlation)
    }

    /// Refuses the request that arrived with `correlation` with an [`ErrorReply`], for an
    /// owner that has nobody to hand requests to. Unlike [`respond`](Self::respond) this
    /// counts as a reply the connection sends on its own: when
    /// `max_queued_control_replies` of those wait for a peer that does not read, the
    /// connection closes ([`ConnectionError::ControlQueueFull`]).
    pub fn refuse(
        &mut self,
        now: Instant,
        correlation: u64,
        code: ErrorCode,
        message: &str,
    ) -> Result<(), SendError> {
        if !self.is_established() {
            return Err(self.not_open_error());
        }
        let refusal = ErrorReply {
            code,
            message: message.to_owned(),
        };
        self.reply(now, &refusal.into(), Flags::RESPONSE, correlation);
        if self.is_closed() {
            return Err(SendError::Closed);
        }
        Ok(())
    }

    /// Closes the connection gracefully: queues a close frame with `code` and `message`
    /// after everything already queued, fails pending requests, and reports
    /// [`Event::Closed`]. Flush `poll_transmit` afterwards.
    pub fn close(&mut self, now: Instant, code: ErrorCode, message: &str) {
        if self.is_closed() {
            return;
        }
        let error = ConnectionError::LocalClose {
            code,
            message: message.to_owned(),
        };
        self.terminate(now, error, true);
    }

    // ----- internals ---------------------------------------------------------------------

    fn not_open_error(&self) -> SendError {
        if self.is_closed() {
            SendError::Closed
        } else {
            SendError::NotEstablished
        }
    }

    fn check_sendable(&self, kind: MessageKind, enforce_limit: bool) -> Result<(), SendError> {
        if !self.is_established() {
            return Err(self.not_open_error());
        }
        if kind.is_control() {
            return Err(SendError::ControlMessage { kind });
        }
        let queued = self.queued_bytes();
        if enforce_limit && queued >= self.config.max_send_buffer {
            TransportMetrics::inc(&self.metrics.send_queue_full);
            return Err(SendError::Full {
                queued,
                limit: self.config.max_send_buffer,
            });
        }
        Ok(())
    }

    fn encode(
        &mut self,
        now: Instant,
        message: &Message,
        flags: Flags,
        correlation: u64,
    ) -> Result<(), SendError> {
        match encode_frame(
            &mut self.out,
            message,
            flags,
            correlation,
            self.config.max_payload_len,
        ) {
            Ok(()) => {
                self.sent(now);
                Ok(())
            }
            Err(e) => {
                TransportMetrics::inc(&self.metrics.encode_errors);
                Err(SendError::Encode(e))
            }
        }
    }

    /// Queues a connection-generated frame; these are small and always fit.
    fn enqueue(&mut self, now: Instant, message: &Message, flags: Flags, correlation: u64) {
        if encode_frame(&mut self.out, message, flags, correlation, u32::MAX).is_ok() {
            self.sent(now);
        }
    }

    /// Queues a reply the peer asked for and the core sends on its own (a Pong, a refusal),
    /// or closes the connection when `max_queued_control_replies` such replies already wait
    /// for the socket: the peer keeps asking without reading.
    fn reply(&mut self, now: Instant, message: &Message, flags: Flags, correlation: u64) {
        let waiting = self.control_queued.saturating_add(self.control_in_flight);
        if waiting >= self.config.max_queued_control_replies {
            TransportMetrics::inc(&self.metrics.control_queue_overflows);
            let limit = self.config.max_queued_control_replies;
            // The peer does not read: a close frame would only join the queue.
            self.terminate(now, ConnectionError::ControlQueueFull { limit }, false);
            return;
        }
        self.control_queued += 1;
        self.enqueue(now, message, flags, correlation);
    }

    /// The handshake completed: the full frame limit applies from the next frame on.
    fn establish(&mut self, peer: PeerInfo) {
        // Called between frames, so the next header is checked against the new limit.
        debug_assert!(!self.decoder.in_frame());
        if let PeerInfo::Server {
            heartbeat_interval_ms,
            ..
        } = &peer
        {
            self.config.idle_timeout =
                followed_idle_timeout(self.config.idle_timeout, *heartbeat_interval_ms);
        }
        self.state = State::Established;
        self.decoder
            .set_max_payload_len(self.config.max_payload_len);
        TransportMetrics::inc(&self.metrics.connections_established);
        self.events.push_back(Event::Established(peer));
    }

    fn sent(&mut self, now: Instant) {
        TransportMetrics::inc(&self.metrics.frames_sent);
        self.last_sent = now;
        if self.out_since.is_none() {
            self.out_since = Some(now);
        }
    }

    fn elapsed_ms(&self, now: Instant) -> i64 {
        let ms = now.saturating_duration_since(self.created).as_millis();
        self.server_time_ms
            .saturating_add(i64::try_from(ms).unwrap_or(i64::MAX))
    }

    /// The idle timeout in effect (a client's follows its server's heartbeat).
    pub fn idle_timeout(&self) -> Duration {
        self.config.idle_timeout
    }

    fn idle_deadline(&self) -> Instant {
        self.last_received
            .checked_add(self.config.idle_timeout)
            .unwrap_or(self.last_received)
    }

    fn heartbeat_deadline(&self) -> Instant {
        self.last_sent
            .checked_add(self.config.heartbeat_interval)
            .unwrap_or(self.last_sent)
    }

    fn frame_deadline(&self) -> Option<Instant> {
        self.frame_started
            .map(|t| t.checked_add(self.config.frame_timeout).unwrap_or(t))
    }

    fn stall_deadline(&self) -> Option<Instant> {
        let since = match self.in_flight {
            Some((_, t)) => Some(t),
            None => self.out_since,
        }?;
        Some(
            since
                .checked_add(self.config.write_stall_timeout)
                .unwrap_or(since),
        )
    }

    /// Closes because of an error, telling the peer why.
    fn fail(&mut self, now: Instant, error: ConnectionError) {
        tracing::debug!(%error, "closing connection");
        self.terminate(now, error, true);
    }

    fn terminate(&mut self, now: Instant, error: ConnectionError, send_close: bool) {
        if send_close {
            let close = Close {
                code: error.close_code(),
                message: close_message(&error),
            };
            self.enqueue(now, &close.into(), Flags::NONE, 0);
        }
        let lost = error.to_string();
        let mut ids: Vec<u64> = self.pending.keys().copied().collect();
        ids.sort_unstable();
        for id in ids {
            self.events.push_back(Event::Response {
                request: id,
                result: Err(RequestError::ConnectionLost(lost.clone())),
            });
        }
        self.pending.clear();
        self.deadlines.clear();
        self.frame_started = None;
        self.state = State::Closed;
        TransportMetrics::inc(&self.metrics.connections_closed);
        self.events.push_back(Event::Closed(error));
    }

    fn unexpected(&mut self, now: Instant, kind: MessageKind, context: &'static str) {
        TransportMetrics::inc(&self.metrics.unexpected_messages);
        self.fail(now, ConnectionError::UnexpectedMessage { kind, context });
    }

    fn auth_failed(&mut self, now: Instant, reason: String) {
        TransportMetrics::inc(&self.metrics.handshake_failures);
        tracing::warn!(%reason, "handshake refused");
        self.fail(now, ConnectionError::AuthFailed { reason });
    }

    fn handle_frame(&mut self, now: Instant, header: FrameHeader, message: Message) {
        if let Message::Close(c) = message {
            let error = ConnectionError::PeerClosed {
                code: c.code,
                message: c.message,
            };
            if !self.is_established() {
                TransportMetrics::inc(&self.metrics.handshake_failures);
            }
            self.terminate(now, error, false);
            return;
        }
        let state = std::mem::replace(&mut self.state, State::Closed);
        match state {
            State::Established => {
                self.state = State::Established;
                self.handle_established(now, header.flags, header.correlation, message);
            }
            State::ClientAwaitChallenge {
                identity,
                client_nonce,
            } => match message {
                Message::HandshakeChallenge(ch) => {
                    if ch.protocol_version != PROTOCOL_VERSION {
                        self.state = State::ClientAwaitChallenge {
                            identity,
                            client_nonce,
                        };
                        self.auth_failed(
                            now,
                            format!(
                                "server speaks protocol {}, this client {}",
                                ch.protocol_version, PROTOCOL_VERSION
                            ),
                        );
                        return;
                    }
                    let proof = auth::client_proof(
                        &identity.secret,
                        &self.binding,
                        &ch.nonce,
                        &client_nonce,
                        &identity.app_name,
                        &identity.worker_address,
                    );
                    let hello = Handshake {
                        protocol_version: PROTOCOL_VERSION,
                        app_name: identity.app_name,
                        worker_address: identity.worker_address,
                        tags: identity.tags,
                        client_version: identity.client_version,
                        client_nonce,
                        proof,
                    };
                    self.state = State::ClientAwaitAccept {
                        secret: identity.secret,
                        client_nonce,
                        server_nonce: ch.nonce,
                    };
                    // Fail here, with a reason, rather than be cut off by the server's
                    // pre-authentication frame limit.
                    let limit = self.decoder.max_payload_len();
                    match encode_frame(&mut self.out, &hello.into(), Flags::NONE, 0, limit) {
                        Ok(()) => self.sent(now),
                        Err(EncodeError::TooLarge { kind, len, max }) => {
                            let error = ConnectionError::HandshakeFrameTooLarge { kind, len, max };
                            self.fail(now, error);
                        }
                        Err(e) => self.auth_failed(now, e.to_string()),
                    }
                }
                other => {
                    self.state = State::ClientAwaitChallenge {
                        identity,
                        client_nonce,
                    };
                    self.unexpected(now, other.kind(), "before the handshake challenge");
                }
            },
            State::ClientAwaitAccept {
                secret,
                client_nonce,
                server_nonce,
            } => match message {
                Message::HandshakeAccepted(acc) => {
                    if !auth::verify_server_proof(
                        &secret,
                        &self.binding,
                        &client_nonce,
                        &server_nonce,
                        &acc.server_proof,
                    ) {
                        self.state = State::ClientAwaitAccept {
                            secret,
                            client_nonce,
                            server_nonce,
                        };
                        self.auth_failed(
                            now,
                            "server proof invalid: the peer does not know the app secret, is not the \
                             role this client meant to reach (server or worker), or the TLS \
                             channel differs"
                                .into(),
                        );
                        return;
                    }
                    self.establish(PeerInfo::Server {
                        heartbeat_interval_ms: acc.heartbeat_interval_ms,
                        idle_timeout_ms: acc.idle_timeout_ms,
                        server_time_ms: acc.server_time_ms,
                    });
                }
                other => {
                    self.state = State::ClientAwaitAccept {
                        secret,
                        client_nonce,
                        server_nonce,
                    };
                    self.unexpected(now, other.kind(), "while awaiting handshake acceptance");
                }
            },
            State::ServerAwaitHandshake { secrets, nonce } => match message {
                Message::Handshake(h) => {
                    self.state = State::ServerAwaitHandshake {
                        secrets: Arc::clone(&secrets),
                        nonce,
                    };
                    if h.protocol_version != PROTOCOL_VERSION {
                        self.auth_failed(
                            now,
                            format!(
                                "worker {:?} speaks protocol {}, this server {}",
                                h.worker_address, h.protocol_version, PROTOCOL_VERSION
                            ),
                        );
                        return;
                    }
                    let Some(secret) = secrets.secret(&h.app_name) else {
                        self.auth_failed(
                            now,
                            format!(
                                "worker {:?}: unknown app {:?}",
                                h.worker_address, h.app_name
                            ),
                        );
                        return;
                    };
                    let proves = |secret: &auth::AppSecret| {
                        auth::verify_client_proof(
                            secret,
                            &self.binding,
                            &nonce,
                            &h.client_nonce,
                            &h.app_name,
                            &h.worker_address,
                            &h.proof,
                        )
                    };
                    let secret = if proves(&secret) {
                        Some(secret)
                    } else {
                        // During a rotation's overlap the previous secret still opens.
                        secrets.previous_secret(&h.app_name).filter(|p| proves(p))
                    };
                    let Some(secret) = secret else {
                        self.auth_failed(
                            now,
                            format!(
                                "worker {:?}: wrong secret for app {:?}",
                                h.worker_address, h.app_name
                            ),
                        );
                        return;
                    };
                    if let Err(refusal) = secrets.serves(&h.app_name) {
                        tracing::info!(
                            worker = ?h.worker_address,
                            app = ?h.app_name,
                            %refusal,
                            "worker of an app this server does not serve refused"
                        );
                        let error = ConnectionError::LocalClose {
                            code: ErrorCode::NotOwner,
                            message: refusal.to_string(),
                        };
                        self.fail(now, error);
                        return;
                    }
                    if let Some(Err(reason)) = self.admission.as_mut().map(|a| a.admit()) {
                        tracing::debug!(
                            worker = ?h.worker_address,
                            %reason,
                            "authenticated peer not admitted"
                        );
                        let error = ConnectionError::LocalClose {
                            code: ErrorCode::Overloaded,
                            message: reason,
                        };
                        self.fail(now, error);
                        return;
                    }
                    let accepted = HandshakeAccepted {
                        server_proof: auth::server_proof(
                            &secret,
                            &self.binding,
                            &h.client_nonce,
                            &nonce,
                        ),
                        heartbeat_interval_ms: duration_ms_u32(self.config.heartbeat_interval),
                        idle_timeout_ms: duration_ms_u32(self.config.idle_timeout),
                        server_time_ms: self.elapsed_ms(now),
                    };
                    self.enqueue(now, &accepted.into(), Flags::NONE, 0);
                    self.establish(PeerInfo::Worker {
                        app_name: h.app_name,
                        worker_address: h.worker_address,
                        tags: h.tags,
                        client_version: h.client_version,
                    });
                }
                other => {
                    self.state = State::ServerAwaitHandshake { secrets, nonce };
                    self.unexpected(now, other.kind(), "before the handshake");
                }
            },
            State::Closed => {}
        }
    }

    fn handle_established(
        &mut self,
        now: Instant,
        flags: Flags,
        correlation: u64,
        message: Message,
    ) {
        let kind = message.kind();
        match message {
            Message::Ping(p) => {
                let pong = Pong { time_ms: p.time_ms };
                self.reply(now, &pong.into(), Flags::NONE, 0);
                return;
            }
            Message::Pong(_) => return,
            Message::HandshakeChallenge(_)
            | Message::Handshake(_)
            | Message::HandshakeAccepted(_) => {
                self.unexpected(now, kind, "after the handshake");
                return;
            }
            _ => {}
        }
        if flags.is_response() {
            let Some(p) = self.pending.remove(&correlation) else {
                TransportMetrics::inc(&self.metrics.late_responses);
                return;
            };
            self.deadlines.remove(&(p.deadline, correlation));
            let result = match message {
                Message::ErrorReply(ErrorReply { code, message }) => {
                    Err(RequestError::Remote { code, message })
                }
                m => Ok(m),
            };
            self.events.push_back(Event::Response {
                request: correlation,
                result,
            });
        } else if flags.is_request() {
            if correlation == 0 {
                self.fail(
                    now,
                    ConnectionError::Frame(FrameError::BadFlags {
                        flags: flags.bits(),
                    }),
                );
                return;
            }
            self.events.push_back(Event::Message {
                correlation: Some(correlation),
                message,
            });
        } else {
            self.events.push_back(Event::Message {
                correlation: None,
                message,
            });
        }
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        // A core dropped while open (its task aborted, e.g. pushed out of a full
        // pre-authentication pool) ended too.
        if !self.is_closed() {
            TransportMetrics::inc(&self.metrics.connections_closed);
        }
    }
}

fn duration_ms_u32(d: Duration) -> u32 {
    u32::try_from(d.as_millis()).unwrap_or(u32::MAX)
}

/// What the peer is told: enough to act on, without local secrets-related detail.
fn close_message(error: &ConnectionError) -> String {
    match error {
        ConnectionError::AuthFailed { .. } => "authentication failed".to_owned(),
        ConnectionError::LocalClose { message, .. } => message.clone(),
        other => other.to_string(),
    }
}

// The core moves between threads with its task and may be shared read-only.
const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Connection>();
};

/// Heartbeat intervals of the server a client may miss before it gives the connection up.
const MISSED_SERVER_HEARTBEATS: u32 = 4;
/// The shortest idle timeout a client takes from its server's heartbeat.
const MIN_FOLLOWED_IDLE_TIMEOUT: Duration = Duration::from_secs(1);

/// A client's idle timeout once its server said how often it sends at the least (a ping
/// when it has sent nothing for `heartbeat_interval_ms`): no longer than its own `idle`, and
/// no longer than [`MISSED_SERVER_HEARTBEATS`] of the server's intervals (at least
/// [`MIN_FOLLOWED_IDLE_TIMEOUT`]). A server that stops sending — paused, its machine frozen,
/// cut off without a reset — is then given up after a few of its own heartbeats, so a
/// worker finds the server that took its app over instead of waiting for a fixed timeout
/// made for the slowest servers. 0 (a server that does not say) leaves `idle` as it is.
fn followed_idle_timeout(idle: Duration, heartbeat_interval_ms: u32) -> Duration {
    if heartbeat_interval_ms == 0 {
        return idle;
    }
    let follow = Duration::from_millis(u64::from(heartbeat_interval_ms))
        .saturating_mul(MISSED_SERVER_HEARTBEATS)
        .max(MIN_FOLLOWED_IDLE_TIMEOUT);
    idle.min(follow)
}
