//! Transport counters: plain atomics, shared by every connection of a listener or client,
//! read with [`TransportMetrics::snapshot`] by whatever exports them.
//!
//! All counters use `Relaxed`: each is an independent tally; no other memory is published
//! through them.

use std::sync::atomic::{AtomicU64, Ordering};

macro_rules! counters {
    ($($(#[$doc:meta])* $name:ident),* $(,)?) => {
        /// Live counters (atomics). Increment with the `inc_*`/`add_*` helpers.
        #[derive(Debug, Default)]
        pub struct TransportMetrics {
            $($(#[$doc])* pub $name: AtomicU64,)*
        }

        /// A point-in-time copy of [`TransportMetrics`].
        #[derive(Debug, Default, Clone, PartialEq, Eq)]
        #[allow(missing_docs)]
        pub struct MetricsSnapshot {
            $(pub $name: u64,)*
        }

        impl TransportMetrics {
            /// Copies every counter.
            pub fn snapshot(&self) -> MetricsSnapshot {
                MetricsSnapshot {
                    $($name: self.$name.load(Ordering::Relaxed),)*
                }
            }
        }

        impl MetricsSnapshot {
            /// `(name, value)` of every counter, for exporters.
            pub fn fields(&self) -> Vec<(&'static str, u64)> {
                vec![$((stringify!($name), self.$name),)*]
            }
        }
    };
}

counters! {
    /// Connections that completed the handshake.
    connections_established,
    /// Connections that ended, for any reason.
    connections_closed,
    /// Connections accepted by a listener (before the handshake).
    connections_accepted,
    /// Handshakes refused or timed out (`handshake_timeouts` included).
    handshake_failures,
    /// Connections closed because the handshake did not complete within
    /// `ConnectionConfig::handshake_timeout` (also counted in `handshake_failures`).
    handshake_timeouts,
    /// TLS handshakes that failed or timed out, before the ferrojob handshake (untrusted
    /// certificate, plain TCP against TLS; also counted in `handshake_failures`).
    tls_handshake_failures,
    /// Handshaking connections closed because the pre-authentication pool
    /// (`NetConfig::max_handshaking`) was full when a new connection arrived; the oldest goes.
    preauth_pool_full,
    /// Frames announced before authentication over
    /// `ConnectionConfig::max_handshake_payload_len` (also counted in `oversized_frames`).
    preauth_frames_too_large,
    /// Connections closed on arrival because their source address exceeded its handshake
    /// rate (`NetConfig::handshake_rate_per_min`, `handshake_burst`).
    handshakes_rate_limited,
    /// Connections closed on arrival because their source address failed too many
    /// handshakes (`NetConfig::failed_handshakes_per_min`, `failed_handshake_burst`).
    failed_handshakes_limited,
    /// Connections closed because `NetConfig::max_connections` authenticated connections
    /// were open already: on arrival, or instead of accepting the handshake.
    connections_over_limit,
    /// Frames received and decoded.
    frames_received,
    /// Frames queued for sending.
    frames_sent,
    /// Bytes received from sockets.
    bytes_received,
    /// Bytes written to sockets.
    bytes_sent,
    /// Coalesced batches fully written to a socket (one `poll_transmit` each, usually one
    /// `write` syscall); frames_sent / write_calls = frames per write.
    write_calls,
    /// Frames with a wrong magic.
    bad_magic,
    /// Frames with an unsupported protocol version.
    bad_version,
    /// Frames with an unknown message kind.
    unknown_kind,
    /// Frames with invalid flags or reserved bits.
    bad_header,
    /// Frames over the maximum payload length.
    oversized_frames,
    /// Payloads that failed rkyv validation.
    invalid_archives,
    /// Messages not valid in the connection's state or direction.
    unexpected_messages,
    /// Connections closed by the idle timeout.
    idle_timeouts,
    /// Connections closed because a frame arrived too slowly.
    slow_peers,
    /// Connections closed because the peer did not read.
    peers_not_reading,
    /// Connections closed because the peer kept asking for replies the connection sends on
    /// its own (Pongs, refusals) without reading them:
    /// `ConnectionConfig::max_queued_control_replies` were waiting.
    control_queue_overflows,
    /// Requests that got no response in time.
    request_timeouts,
    /// Responses that arrived after their request timed out (or for no request).
    late_responses,
    /// Sends refused because the queue was full.
    send_queue_full,
    /// Outgoing messages refused by the encoder (too large).
    encode_errors,
    /// Client reconnect attempts.
    reconnect_attempts,
}

impl TransportMetrics {
    /// Adds one to `counter`.
    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Adds `n` to `counter`.
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Counts a frame error under its specific counter.
    pub fn count_frame_error(&self, error: &crate::error::FrameError) {
        use crate::error::FrameError as E;
        let counter = match error {
            E::BadMagic { .. } => &self.bad_magic,
            E::UnsupportedVersion { .. } => &self.bad_version,
            E::UnknownKind { .. } => &self.unknown_kind,
            E::BadFlags { .. } | E::ReservedNotZero { .. } | E::DecoderFailed => &self.bad_header,
            E::TooLarge { .. } => &self.oversized_frames,
            E::InvalidArchive { .. } => &self.invalid_archives,
        };
        Self::inc(counter);
    }
}
