//! Errors, one enum per operation callers branch on.

use std::net::SocketAddr;
use std::time::Duration;

use crate::message::{ErrorCode, MessageKind};

/// A frame could not be decoded. The stream is unusable afterwards (framing is lost).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The first four bytes were not `FJOB`: not a ferrojob peer, or the stream lost framing.
    #[error("bad frame magic {found:02x?} (expected \"FJOB\"): the peer does not speak the ferrojob protocol")]
    BadMagic {
        /// The bytes found.
        found: [u8; 4],
    },
    /// The peer speaks another protocol version.
    #[error("unsupported protocol version {found} (this build speaks {supported}): upgrade the older side")]
    UnsupportedVersion {
        /// The version in the frame.
        found: u16,
        /// The version this build speaks.
        supported: u16,
    },
    /// The header names a message kind this build does not know.
    #[error("unknown message kind {code}: the peer is newer or corrupt")]
    UnknownKind {
        /// The kind code in the frame.
        code: u16,
    },
    /// Unknown flag bits, or REQUEST and RESPONSE together.
    #[error("invalid frame flags {flags:#06x}")]
    BadFlags {
        /// The flags in the frame.
        flags: u16,
    },
    /// The reserved header field was not zero.
    #[error("reserved header field is {value}, must be 0")]
    ReservedNotZero {
        /// The value found.
        value: u16,
    },
    /// The payload is longer than the configured maximum.
    #[error("{kind} payload of {len} bytes exceeds the maximum of {max} bytes (raise max_payload_len on the receiver if this is legitimate)")]
    TooLarge {
        /// The frame's kind.
        kind: MessageKind,
        /// The announced length, bytes.
        len: u64,
        /// The configured maximum, bytes.
        max: u32,
    },
    /// The payload did not validate as the archive of its kind.
    #[error("invalid {kind} payload: {reason}")]
    InvalidArchive {
        /// The frame's kind.
        kind: MessageKind,
        /// What rkyv's validator reported.
        reason: String,
    },
    /// `decode` was called again after an error.
    #[error("decoder already failed on an earlier frame; the connection must be closed")]
    DecoderFailed,
}

impl FrameError {
    /// The close code that tells the peer what was wrong.
    pub fn close_code(&self) -> ErrorCode {
        match self {
            FrameError::UnsupportedVersion { .. } => ErrorCode::UnsupportedVersion,
            FrameError::TooLarge { .. } => ErrorCode::FrameTooLarge,
            _ => ErrorCode::Malformed,
        }
    }
}

/// A message could not be encoded into a frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// The archived message is longer than the maximum payload length.
    #[error("{kind} archives to {len} bytes, over the maximum payload of {max} bytes: split it (e.g. smaller log batches)")]
    TooLarge {
        /// The message kind.
        kind: MessageKind,
        /// The archive length, bytes.
        len: u64,
        /// The maximum, bytes.
        max: u32,
    },
    /// rkyv failed to archive the message.
    #[error("cannot archive {kind}: {reason}")]
    Archive {
        /// The message kind.
        kind: MessageKind,
        /// rkyv's error.
        reason: String,
    },
}

/// Why a connection ended (or is ending).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectionError {
    /// The peer sent bytes that are not a valid frame.
    #[error("bad frame from peer: {0}")]
    Frame(#[from] FrameError),
    /// The handshake failed (unknown app, wrong secret, wrong version, bad server proof).
    #[error("handshake failed: {reason}")]
    AuthFailed {
        /// What failed, for the local log (the peer only learns `AuthFailed`).
        reason: String,
    },
    /// The handshake did not complete in time.
    #[error("handshake not completed within {timeout:?}")]
    HandshakeTimeout {
        /// The configured handshake timeout.
        timeout: Duration,
    },
    /// A frame before authentication was larger than the pre-authentication limit.
    #[error("{kind} frame of {len} bytes before authentication exceeds the pre-authentication limit of {max} bytes (max_handshake_payload_len; the handshake's app name, address and tags must fit)")]
    HandshakeFrameTooLarge {
        /// The frame's kind.
        kind: MessageKind,
        /// The announced (or encoded) payload length, bytes.
        len: u64,
        /// The pre-authentication limit, bytes.
        max: u32,
    },
    /// The peer asked for more replies the connection sends on its own (Pongs, refusals)
    /// than the limit while not reading them.
    #[error("{limit} replies (pongs, refusals) waiting for a peer that does not read them")]
    ControlQueueFull {
        /// The configured limit (`max_queued_control_replies`).
        limit: usize,
    },
    /// Nothing was received for the idle timeout.
    #[error("nothing received for {timeout:?}: peer presumed dead")]
    IdleTimeout {
        /// The configured idle timeout.
        timeout: Duration,
    },
    /// A frame was started but not completed within the frame timeout (slow-loris).
    #[error("a frame took longer than {timeout:?} to arrive: peer too slow")]
    SlowPeer {
        /// The configured frame timeout.
        timeout: Duration,
    },
    /// Queued bytes were not taken by the socket for the write-stall timeout.
    #[error("peer did not read for {timeout:?} with {queued} bytes queued")]
    PeerNotReading {
        /// The configured write-stall timeout.
        timeout: Duration,
        /// Bytes waiting to be written.
        queued: usize,
    },
    /// The peer sent a message that is not valid in this state or direction.
    #[error("unexpected {kind} {context}")]
    UnexpectedMessage {
        /// The message kind received.
        kind: MessageKind,
        /// Where it was unexpected.
        context: &'static str,
    },
    /// The peer closed the connection with a reason.
    #[error("peer closed the connection: {code:?}: {message}")]
    PeerClosed {
        /// The peer's reason.
        code: ErrorCode,
        /// The peer's detail.
        message: String,
    },
    /// The local side closed the connection.
    #[error("closed locally: {code:?}: {message}")]
    LocalClose {
        /// The reason sent to the peer.
        code: ErrorCode,
        /// The detail sent to the peer.
        message: String,
    },
    /// The peer closed the TCP stream without a close frame.
    #[error("peer closed the stream without a close frame")]
    Eof,
    /// The socket failed.
    #[error("socket error: {0}")]
    Io(String),
}

impl ConnectionError {
    /// The code sent to the peer in the close frame for this error.
    pub fn close_code(&self) -> ErrorCode {
        match self {
            ConnectionError::Frame(e) => e.close_code(),
            ConnectionError::AuthFailed { .. } => ErrorCode::AuthFailed,
            ConnectionError::HandshakeTimeout { .. } => ErrorCode::AuthFailed,
            ConnectionError::HandshakeFrameTooLarge { .. } => ErrorCode::FrameTooLarge,
            ConnectionError::ControlQueueFull { .. } => ErrorCode::Overloaded,
            ConnectionError::IdleTimeout { .. } => ErrorCode::IdleTimeout,
            ConnectionError::SlowPeer { .. } => ErrorCode::SlowPeer,
            ConnectionError::PeerNotReading { .. } => ErrorCode::Overloaded,
            ConnectionError::UnexpectedMessage { .. } => ErrorCode::UnexpectedMessage,
            ConnectionError::PeerClosed { code, .. } | ConnectionError::LocalClose { code, .. } => {
                code.clone()
            }
            ConnectionError::Eof | ConnectionError::Io(_) => ErrorCode::Internal,
        }
    }
}

/// A message was not accepted for sending.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// The send queue is full: the peer reads slower than we write. Retry later (backpressure).
    #[error("send queue full ({queued} bytes queued, limit {limit}): the peer is not keeping up")]
    Full {
        /// Bytes queued.
        queued: usize,
        /// The configured limit.
        limit: usize,
    },
    /// Too many requests await responses.
    #[error("{limit} requests already await responses")]
    TooManyPending {
        /// The configured limit.
        limit: usize,
    },
    /// The handshake has not completed yet.
    #[error("connection not established yet")]
    NotEstablished,
    /// The connection is closed or closing.
    #[error("connection closed")]
    Closed,
    /// Connection-level messages (handshake, ping, close) are sent by the connection itself.
    #[error("{kind} is sent by the connection itself, not by callers")]
    ControlMessage {
        /// The kind refused.
        kind: MessageKind,
    },
    /// The message could not be encoded.
    #[error(transparent)]
    Encode(#[from] EncodeError),
}

/// A request got no (positive) response.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// No response within the request's timeout.
    #[error("no response within {timeout:?}")]
    TimedOut {
        /// The request's timeout.
        timeout: Duration,
    },
    /// The connection ended before the response arrived; the request may or may not have run.
    #[error("connection lost before the response: {0}")]
    ConnectionLost(String),
    /// The peer answered with an error reply.
    #[error("peer refused: {code:?}: {message}")]
    Remote {
        /// The peer's code.
        code: ErrorCode,
        /// The peer's detail.
        message: String,
    },
    /// The request could not be sent.
    #[error(transparent)]
    Send(#[from] SendError),
}

/// Errors of the tokio adapter: connecting, listening, and connections that ended.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// A socket operation failed.
    #[error("{op} {peer}: {source}")]
    Io {
        /// What was being done (`bind`, `connect`, `accept`, ...).
        op: &'static str,
        /// The address involved.
        peer: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// Connecting did not complete in time.
    #[error("connect {peer}: timed out after {timeout:?}")]
    ConnectTimeout {
        /// The address.
        peer: SocketAddr,
        /// The configured connect timeout.
        timeout: Duration,
    },
    /// The connection failed or was refused (e.g. the handshake).
    #[error("connection {peer}: {source}")]
    Connection {
        /// The address.
        peer: SocketAddr,
        /// Why.
        source: ConnectionError,
    },
    /// The TLS handshake failed (untrusted certificate, wrong name, plain TCP on the other
    /// end) or did not complete in time.
    #[error("TLS with {peer}: {reason}")]
    Tls {
        /// The address.
        peer: SocketAddr,
        /// Why.
        reason: String,
    },
    /// The listener or client was shut down.
    #[error("transport shut down")]
    Shutdown,
}
