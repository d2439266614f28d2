//! ferrojob's wire protocol: frames, versioned messages, a sans-IO connection core and a
//! tokio adapter.
//!
//! ```text
//!   bytes (plain TCP, or inside TLS: tls + net) --> frame::Decoder --> Frame --(validate)--> Message
//!                                   \                     |
//!   connection::Connection  <--------+---- handle_input --+   (sans-IO: no sockets, no clock)
//!        | poll_event / poll_transmit / poll_timeout
//!   net::{Listener, connect, ReconnectingClient}  (tokio: sockets, timers, tasks)
//! ```
//!
//! The transport knows nothing of the store or of scheduling: it moves [`message::Message`]s.
//!
//! # Map
//!
//! - [`frame`]: the 24-byte header, the protocol version and the incremental [`Decoder`].
//! - [`message`]: one struct per frame kind, one file per family (handshake and keep-alive,
//!   server ↔ worker, TaskTracker ↔ ProcessorTracker), and the closed enum [`Message`].
//! - [`auth`]: the HMAC handshake proofs, bound to the accepting end's [`Role`] and to the
//!   TLS channel.
//! - [`tls`]: TLS settings from PEM files ([`tls::ServerTls`], [`tls::ClientTls`]) and the
//!   channel binding.
//! - [`connection`]: [`Connection`], the sans-IO core (handshake, send buffer, pending
//!   requests, every timer).
//! - [`net`]: the tokio adapter ([`net::Listener`], [`net::connect`],
//!   [`net::ReconnectingClient`], [`net::ConnectionHandle`]).
//! - [`backoff`]: reconnect delays; [`metrics`]: [`TransportMetrics`]; [`error`]: the errors.
//!
//! # Invariants
//!
//! - `frame`, `message`, `auth` and `connection` do no I/O and read no clock: time comes in
//!   as an argument; sockets and timers exist only in `net`.
//! - No archived value from a socket is used unvalidated: payloads are read only through
//!   [`Frame::message`], [`Frame::access`] or [`MessageKind::validate`], which run bytecheck.
//! - No memory is reserved for a frame before its header passed every check.
//! - No queue is unbounded: the send buffer, the command and incoming queues, pending
//!   requests, the accept queue and the connections per listener all have limits.
//! - The app secret never crosses the wire (a test scans the handshake bytes for it).
//! - The crate never names the store or the engine.

#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
#![cfg_attr(
    test,
    allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)
)]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod auth;
pub mod backoff;
pub mod connection;
pub mod error;
pub mod frame;
pub mod message;
pub mod metrics;
pub mod net;
pub mod rate_limit;
pub mod tls;

pub use auth::{AppSecret, AppSecrets, Binding, NotServed, Role};
pub use backoff::{Backoff, BackoffConfig};
pub use connection::{
    AdmissionControl, ClientIdentity, Connection, ConnectionConfig, Event, PeerInfo,
    DEFAULT_MAX_HANDSHAKE_PAYLOAD_LEN,
};
pub use error::{
    ConnectionError, EncodeError, FrameError, RequestError, SendError, TransportError,
};
pub use frame::{Decoder, Flags, Frame, FrameHeader, DEFAULT_MAX_PAYLOAD_LEN, PROTOCOL_VERSION};
pub use message::{Message, MessageKind};
pub use metrics::{MetricsSnapshot, TransportMetrics};
