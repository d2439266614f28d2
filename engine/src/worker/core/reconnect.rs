//! How soon the worker tries the server again: exponential backoff with jitter, capped at
//! [`MAX_RECONNECT_DELAY`], with the jitter drawn from a seeded generator so that the core
//! stays deterministic.
//!
//! With several servers (a cluster), the session goes round the addresses and says after
//! each failure how soon to go on ([`Retry`]): the next address at once while the round is
//! not over; after a round, the backoff, or the shorter handoff backoff (capped at
//! [`MAX_HANDOFF_DELAY`]) when a server of the round answered that another one serves the
//! app.

use std::time::Duration;

use ferrojob_transport::{Backoff, BackoffConfig};

/// The longest a worker waits between two attempts to reach the server (before jitter, which
/// only shortens it), whatever `NetConfig::backoff` says. A restarted server gives the
/// workers of the instances it finds running a grace period to come back before it hands
/// those instances to their retry policy; that grace must cover this delay plus one connect
/// and handshake, so it is kept well below the server's default grace (3 s).
pub const MAX_RECONNECT_DELAY: Duration = Duration::from_secs(1);

/// The longest a worker waits, before jitter, to go round the servers again when a server
/// of the last round answered that another one serves the worker's app: the cluster is
/// handing the app over and its new owner takes it within about a lease, so a worker that
/// waited a full [`MAX_RECONNECT_DELAY`] would add up to that second to the failover. A
/// refusal costs a server one connection and one handshake check, and such rounds last
/// only while the app has no owner.
pub const MAX_HANDOFF_DELAY: Duration = Duration::from_millis(250);

/// How soon to try a server again after a failed attempt or a lost connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Retry {
    /// At once: the session has another address to try in this round.
    Now,
    /// After the reconnect backoff (every address of the round failed).
    Backoff,
    /// After the handoff backoff: every address of the round failed, and a server answered
    /// that another one serves the app (see [`MAX_HANDOFF_DELAY`]).
    Handoff,
}

/// The backoff between rounds while the app is handed over: `config` capped at
/// [`MAX_HANDOFF_DELAY`].
pub(crate) fn handoff_backoff(config: &BackoffConfig) -> Backoff {
    let max = config.max.min(MAX_HANDOFF_DELAY);
    Backoff::new(BackoffConfig {
        base: config.base.min(max),
        max,
        jitter: config.jitter,
    })
}

/// The worker's reconnect backoff: `config` with its `max` (and `base`) capped at
/// [`MAX_RECONNECT_DELAY`].
pub(crate) fn reconnect_backoff(config: &BackoffConfig) -> Backoff {
    let max = config.max.min(MAX_RECONNECT_DELAY);
    Backoff::new(BackoffConfig {
        base: config.base.min(max),
        max,
        jitter: config.jitter,
    })
}

/// SplitMix64 (Steele, Lea & Flood, "Fast splittable pseudorandom number generators", 2014):
/// a tiny, seedable generator for the backoff's jitter.
#[derive(Debug, Clone)]
pub(crate) struct SplitMix64(u64);

impl SplitMix64 {
    pub(crate) fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    /// A uniform number in `[0, 1)`.
    pub(crate) fn unit(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        // The top 53 bits, as a fraction of 2^53: exact in an f64.
        (z >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_backoff_is_capped_well_below_the_server_grace() {
        let mut b = reconnect_backoff(&BackoffConfig::default());
        let mut rng = SplitMix64::new(7);
        for _ in 0..64 {
            assert!(b.next_delay(rng.unit()) <= MAX_RECONNECT_DELAY);
        }
        // A smaller configured cap is kept.
        let mut b = reconnect_backoff(&BackoffConfig {
            base: Duration::from_millis(20),
            max: Duration::from_millis(200),
            jitter: 0.0,
        });
        let ms: Vec<u128> = (0..6).map(|_| b.next_delay(0.0).as_millis()).collect();
        assert_eq!(ms, [20, 40, 80, 160, 200, 200]);
    }

    #[test]
    fn the_handoff_backoff_is_capped_below_the_reconnect_backoff() {
        let mut b = handoff_backoff(&BackoffConfig::default());
        let mut rng = SplitMix64::new(7);
        let delays: Vec<Duration> = (0..64).map(|_| b.next_delay(rng.unit())).collect();
        assert!(delays.iter().all(|d| *d <= MAX_HANDOFF_DELAY));
        // Jittered: not all the same once at the cap.
        assert!(delays.iter().skip(8).any(|d| *d != delays[8]));
    }

    #[test]
    fn units_are_in_range_and_seeded() {
        let mut a = SplitMix64::new(1);
        let mut b = SplitMix64::new(1);
        for _ in 0..1000 {
            let u = a.unit();
            assert!((0.0..1.0).contains(&u));
            assert_eq!(u.to_bits(), b.unit().to_bits());
        }
    }
}
