//! Per-source handshake rate limit: a token bucket per source address, sans-IO (time comes in
//! as an argument), in a table of bounded size.
//!
//! Each source may open `burst` connections at once and then one per `60 s / per_min`. The
//! bucket is kept in its virtual-scheduling form (the GCRA of ITU-T I.371, equivalent to a
//! token bucket): per source one instant, the *theoretical arrival time* `tat`, instead of a
//! token count and a refill time.
//!
//! ```text
//!  interval  T = 60 s / per_min          tolerance  τ = T × (burst − 1)
//!  admit at `now`  iff  now ≥ tat − τ    then  tat := max(tat, now) + T
//!  a source with tat ≤ now has a full bucket: forgetting it changes nothing
//! ```
//!
//! Sources: an IPv4 address is one source; an IPv6 address counts as its /64 prefix (one
//! host usually owns a whole /64); an IPv4-mapped IPv6 address is its IPv4 address.
//!
//! The table holds at most `max_sources` entries. When a new source finds it full, entries
//! whose bucket is full again are dropped first (that loses nothing); if that frees nothing,
//! the eighth of the entries closest to a full bucket go, so the sources that are furthest
//! over their rate are the last forgotten. A forgotten source starts again with a full
//! bucket, so the table bound trades memory for accuracy only under a flood from more than
//! `max_sources` addresses.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::time::{Duration, Instant};

/// A token bucket per source address, for connection (handshake) attempts.
#[derive(Debug, Clone)]
pub struct HandshakeRateLimiter {
    /// One token per `interval`; `None` when the limit is off.
    interval: Option<Duration>,
    /// How far ahead of `now` a source's `tat` may be and still be admitted (`burst - 1`
    /// intervals).
    tolerance: Duration,
    max_sources: usize,
    /// Theoretical arrival time per source key (see the module doc).
    sources: HashMap<IpAddr, Instant>,
}

impl HandshakeRateLimiter {
    /// `per_min` attempts per minute per source after a burst of `burst` (at least 1);
    /// `per_min == 0` turns the limit off. At most `max_sources` (at least 1) sources are
    /// tracked at once.
    pub fn new(per_min: u32, burst: u32, max_sources: usize) -> HandshakeRateLimiter {
        let interval = (per_min > 0).then(|| Duration::from_secs(60) / per_min);
        let tolerance = interval.map_or(Duration::ZERO, |t| {
            t.saturating_mul(burst.max(1).saturating_sub(1))
        });
        HandshakeRateLimiter {
            interval,
            tolerance,
            max_sources: max_sources.max(1),
            sources: HashMap::new(),
        }
    }

    /// Whether the limit is on.
    pub fn is_enabled(&self) -> bool {
        self.interval.is_some()
    }

    /// Takes a token for one attempt from `source` at `now`: `true` admits it, `false` means
    /// the source is over its rate (the attempt consumed nothing). `now` must not go
    /// backwards.
    #[must_use]
    pub fn allow(&mut self, source: IpAddr, now: Instant) -> bool {
        let Some(interval) = self.interval else {
            return true;
        };
        let key = source_key(source);
        let tat = match self.sources.get(&key) {
            Some(&tat) => {
                // Refuse when `now < tat - τ`, written without subtracting from an Instant.
                if now.checked_add(self.tolerance).is_some_and(|t| t < tat) {
                    return false;
                }
                tat.max(now)
            }
            None => {
                if self.sources.len() >= self.max_sources {
                    self.make_room(now);
                }
                now
            }
        };
        let next = tat.checked_add(interval).unwrap_or(tat);
        self.sources.insert(key, next);
        debug_assert!(self.sources.len() <= self.max_sources);
        true
    }

    /// Whether [`allow`](Self::allow) would admit an attempt of `source` at `now`, without
    /// taking anything (the failed-handshake count checks before it records).
    pub fn would_allow(&self, source: IpAddr, now: Instant) -> bool {
        if self.interval.is_none() {
            return true;
        }
        match self.sources.get(&source_key(source)) {
            Some(&tat) => now.checked_add(self.tolerance).is_none_or(|t| t >= tat),
            None => true,
        }
    }

    /// Sources currently tracked.
    pub fn tracked_sources(&self) -> usize {
        self.sources.len()
    }

    fn make_room(&mut self, now: Instant) {
        self.sources.retain(|_, tat| *tat > now);
        if self.sources.len() < self.max_sources {
            return;
        }
        let mut by_tat: Vec<(Instant, IpAddr)> =
            self.sources.iter().map(|(&k, &tat)| (tat, k)).collect();
        let evict = (by_tat.len() / 8).max(1);
        if evict < by_tat.len() {
            by_tat.select_nth_unstable(evict - 1);
        }
        for (_, key) in by_tat.iter().take(evict) {
            self.sources.remove(key);
        }
    }
}

/// The key an address is counted under: IPv4 as is, IPv4-mapped IPv6 as IPv4, other IPv6 by
/// its /64 prefix.
pub fn source_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let prefix = u128::from(v6) & !u128::from(u64::MAX);
                IpAddr::V6(Ipv6Addr::from(prefix))
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn would_allow_peeks_without_taking() {
        let mut l = HandshakeRateLimiter::new(60, 2, 16);
        let t0 = Instant::now();
        let a = ip("10.0.0.1");
        assert!(l.would_allow(a, t0));
        assert!(l.allow(a, t0));
        assert!(l.would_allow(a, t0));
        assert!(l.would_allow(a, t0));
        assert!(l.allow(a, t0));
        assert!(!l.would_allow(a, t0));
        assert!(l.would_allow(a, t0 + Duration::from_secs(1)));
        assert!(HandshakeRateLimiter::new(0, 1, 1).would_allow(a, t0));
    }

    #[test]
    fn burst_then_one_per_interval() {
        let t0 = Instant::now();
        let mut l = HandshakeRateLimiter::new(60, 3, 16); // one per second after 3
        let a = ip("10.0.0.1");
        assert!(l.allow(a, t0));
        assert!(l.allow(a, t0));
        assert!(l.allow(a, t0));
        assert!(!l.allow(a, t0), "fourth in the same instant");
        assert!(!l.allow(a, t0 + Duration::from_millis(999)));
        assert!(l.allow(a, t0 + Duration::from_secs(1)));
        assert!(!l.allow(a, t0 + Duration::from_secs(1)));
        // A long pause refills the bucket to `burst`, never beyond.
        let later = t0 + Duration::from_secs(3600);
        for _ in 0..3 {
            assert!(l.allow(a, later));
        }
        assert!(!l.allow(a, later));
        // Another source has its own bucket.
        assert!(l.allow(ip("10.0.0.2"), later));
    }

    #[test]
    fn refusals_cost_nothing() {
        let t0 = Instant::now();
        let mut l = HandshakeRateLimiter::new(60, 1, 16);
        let a = ip("10.0.0.1");
        assert!(l.allow(a, t0));
        for ms in 0..1000 {
            assert!(!l.allow(a, t0 + Duration::from_millis(ms)));
        }
        assert!(l.allow(a, t0 + Duration::from_secs(1)));
    }

    #[test]
    fn zero_rate_is_off() {
        let t0 = Instant::now();
        let mut l = HandshakeRateLimiter::new(0, 1, 1);
        assert!(!l.is_enabled());
        for _ in 0..10_000 {
            assert!(l.allow(ip("10.0.0.1"), t0));
        }
        assert_eq!(l.tracked_sources(), 0);
    }

    #[test]
    fn ipv6_counts_per_64_and_mapped_ipv4_as_ipv4() {
        assert_eq!(source_key(ip("2001:db8:1:2:3:4:5:6")), ip("2001:db8:1:2::"));
        assert_eq!(source_key(ip("::ffff:192.0.2.7")), ip("192.0.2.7"));
        let t0 = Instant::now();
        let mut l = HandshakeRateLimiter::new(1, 1, 16);
        assert!(l.allow(ip("2001:db8:1:2::1"), t0));
        assert!(!l.allow(ip("2001:db8:1:2:ffff::9"), t0), "same /64");
        assert!(l.allow(ip("2001:db8:1:3::1"), t0), "other /64");
        assert!(l.allow(ip("192.0.2.7"), t0));
        assert!(!l.allow(ip("::ffff:192.0.2.7"), t0), "same IPv4 host");
    }

    /// The textbook bucket, in integer milliseconds of credit: it holds up to
    /// `burst × interval`, refills one millisecond per millisecond, an attempt costs
    /// `interval`.
    struct ModelBucket {
        credit_ms: u64,
        last_ms: u64,
    }

    proptest::proptest! {
        #[test]
        fn agrees_with_a_plain_token_bucket(
            per_min in proptest::sample::select(vec![1u32, 6, 60, 600, 6000, 60_000]),
            burst in 1u32..8,
            attempts in proptest::collection::vec((0u8..4, 0u64..3000), 1..200),
        ) {
            let interval_ms = 60_000 / u64::from(per_min);
            let capacity = u64::from(burst) * interval_ms;
            let t0 = Instant::now();
            let mut limiter = HandshakeRateLimiter::new(per_min, burst, 64);
            let mut model: HashMap<u8, ModelBucket> = HashMap::new();
            let mut now_ms = 0u64;
            for (source, gap_ms) in attempts {
                now_ms += gap_ms;
                let b = model.entry(source).or_insert(ModelBucket {
                    credit_ms: capacity,
                    last_ms: now_ms,
                });
                b.credit_ms = (b.credit_ms + (now_ms - b.last_ms)).min(capacity);
                b.last_ms = now_ms;
                let expected = b.credit_ms >= interval_ms;
                if expected {
                    b.credit_ms -= interval_ms;
                }
                let ip = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, source));
                let got = limiter.allow(ip, t0 + Duration::from_millis(now_ms));
                proptest::prop_assert_eq!(got, expected, "source {} at {} ms", source, now_ms);
            }
        }
    }

    #[test]
    fn the_table_stays_bounded_and_keeps_the_worst_offenders() {
        let t0 = Instant::now();
        let mut l = HandshakeRateLimiter::new(60, 2, 64);
        // One abuser far over its rate.
        let abuser = ip("192.0.2.1");
        assert!(l.allow(abuser, t0));
        assert!(l.allow(abuser, t0));
        assert!(!l.allow(abuser, t0));
        // A flood from many addresses, each once.
        for i in 0..10_000u32 {
            let a = IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            assert!(l.allow(a, t0 + Duration::from_millis(1)));
            assert!(l.tracked_sources() <= 64);
        }
        // Everyone else's bucket is closer to full than the abuser's: it is still limited.
        assert!(!l.allow(abuser, t0 + Duration::from_millis(2)));
        // Once buckets refill, entries are dropped instead of evicting.
        let later = t0 + Duration::from_secs(10);
        assert!(l.allow(ip("198.51.100.1"), later));
        assert!(l.tracked_sources() <= 64);
    }
}
