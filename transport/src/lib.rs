//! ferrojob's wire protocol: frames, versioned messages, a sans-IO connection core and a
//! tokio adapter.
//!
//! ```text
//!   bytes --> frame::Decoder --> Frame --(validate)--> Message
//!                                   \                     |
//!   connection::Connection  <--------+---- handle_input --+   (sans-IO: no sockets, no clock)
//!        | poll_event / poll_transmit / poll_timeout
//!   net::{Listener, connect, ReconnectingClient}  (tokio: sockets, timers, tasks)
//! ```
//!
//! The transport knows nothing of the store or of scheduling: it moves [`message::Message`]s.

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

pub use auth::{AppSecret, AppSecrets};
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
