//! Connection-level messages: the handshake, keep-alive, acknowledgements, errors and close.
//!
//! ```text
//!   client (worker)                                server
//!        |  ---------------- TCP connect ---------------> |
//!        |  <------ HandshakeChallenge{nonce} ----------- |
//!        |  ------- Handshake{app, proof, client_nonce} ->|  proof = HMAC(secret, ...)
//!        |  <------ HandshakeAccepted{server_proof} ----- |  or Close{AuthFailed | NotOwner}
//!        |  <========== any message, both ways =========> |
//!        |  ------- Ping{time} ---------------------------> |  when idle for a heartbeat
//!        |  <------ Pong{time} ---------------------------- |
//!        |  ------- Close{reason} -----------------------> |  graceful shutdown or error
//! ```

use super::common::{wire_type, ErrorCode};

/// Length of handshake nonces and HMAC-SHA256 proofs, bytes.
pub const NONCE_LEN: usize = 32;

wire_type! {
/// Server → client, first frame of every connection: the nonce the client must sign.
pub struct HandshakeChallenge {
    /// Protocol version the server speaks.
    pub protocol_version: u16,
    /// Fresh random bytes for this connection only.
    pub nonce: [u8; NONCE_LEN],
    /// Server clock, epoch milliseconds (lets the worker log clock skew).
    pub server_time_ms: i64,
}
}

wire_type! {
/// Client → server: who the client is, and proof that it knows the app's secret.
pub struct Handshake {
    /// Protocol version the client speaks.
    pub protocol_version: u16,
    /// The app the worker belongs to.
    pub app_name: String,
    /// Address other processes reach this worker at (`host:port`).
    pub worker_address: String,
    /// Worker tags for SPECIFY dispatch.
    pub tags: Vec<String>,
    /// The worker's software version, free text.
    pub client_version: String,
    /// Fresh random bytes the server must sign back, proving it knows the secret too.
    pub client_nonce: [u8; NONCE_LEN],
    /// HMAC-SHA256 keyed by the app secret over the challenge nonce, `client_nonce`,
    /// `app_name` and `worker_address` (see `crate::auth`). The secret never crosses the wire.
    pub proof: [u8; NONCE_LEN],
}
}

wire_type! {
/// Server → client: the handshake succeeded.
pub struct HandshakeAccepted {
    /// HMAC-SHA256 keyed by the app secret over both nonces: the server knows the secret too.
    pub server_proof: [u8; NONCE_LEN],
    /// How often the server expects traffic (or a ping) from the client, milliseconds.
    pub heartbeat_interval_ms: u32,
    /// After this long without traffic the server closes the connection, milliseconds.
    pub idle_timeout_ms: u32,
    /// Server clock, epoch milliseconds.
    pub server_time_ms: i64,
}
}

wire_type! {
/// Either direction: keep-alive and round-trip probe. Answered by [`Pong`] with the same time.
pub struct Ping {
    /// Sender's clock, epoch milliseconds (echoed back).
    pub time_ms: i64,
}
}

wire_type! {
/// Answer to [`Ping`].
pub struct Pong {
    /// The `time_ms` of the ping this answers.
    pub time_ms: i64,
}
}

wire_type! {
/// Positive answer to a request that returns nothing else.
pub struct Ack {}
}

wire_type! {
/// Negative answer to a request.
pub struct ErrorReply {
    /// What went wrong, for the caller to branch on.
    pub code: ErrorCode,
    /// Human-readable detail.
    pub message: String,
}
}

wire_type! {
/// Either direction, last frame of a connection: why the sender closes it.
pub struct Close {
    /// Why, for the receiver to branch on (e.g. reconnect or give up).
    pub code: ErrorCode,
    /// Human-readable detail.
    pub message: String,
}
}
