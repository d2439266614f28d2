//! Failed sign-ins per source address ([`FailedLogins`]), in a bounded table.
//!
//! Every answer that refuses a presented credential (a 401, or a 403 for a token that is not
//! the admin token on an admin route, or a console sign-in refused) counts one failure
//! against the request's source address. A source may fail `burst` times, then once per
//! `60 s / per_min`; past that, every request of that source that presents a credential (an
//! `Authorization` header, or the console's `POST /login`) is answered 429 with
//! `Retry-After` before it is checked, so guessing costs time whatever the token. Requests
//! without credentials (`/healthz`, `/metrics`, console pages with a session) are not
//! affected.
//!
//! The count is the GCRA form of a token bucket (as the transport's handshake limit): one
//! instant per source, its *theoretical arrival time* `tat`.
//!
//! ```text
//!  interval  T = 60 s / per_min
//!  a failure at `now`:          tat := max(tat, now) + T
//!  refused at `now`   iff       tat − now > T × (burst − 1)   (the next failure would be one too many)
//! ```
//!
//! Sources: an IPv4 address, or an IPv6 address's /64 (an IPv4-mapped address is its IPv4).
//! The table holds at most `max_sources` entries; a new source at the limit first drops every
//! entry whose `tat` has passed (forgetting those changes nothing), then the one closest to
//! it. The limiter reads no clock: `now` (epoch ms) is an argument.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};

use parking_lot::Mutex;

use crate::time_expression::EpochMs;

/// How many failed sign-ins a source address may make.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailedLoginLimit {
    /// Failures a minute in the long run, at least 1.
    pub per_min: u32,
    /// Failures at once before the rate applies, at least 1.
    pub burst: u32,
    /// Most sources tracked at once, at least 1.
    pub max_sources: usize,
}

/// Default [`FailedLoginLimit::per_min`].
pub const DEFAULT_FAILED_LOGINS_PER_MIN: u32 = 10;
/// Default [`FailedLoginLimit::burst`].
pub const DEFAULT_FAILED_LOGIN_BURST: u32 = 20;
/// Default [`FailedLoginLimit::max_sources`].
pub const DEFAULT_FAILED_LOGIN_SOURCES: usize = 4096;

impl Default for FailedLoginLimit {
    fn default() -> Self {
        FailedLoginLimit {
            per_min: DEFAULT_FAILED_LOGINS_PER_MIN,
            burst: DEFAULT_FAILED_LOGIN_BURST,
            max_sources: DEFAULT_FAILED_LOGIN_SOURCES,
        }
    }
}

/// The failure count of every source (see the module doc).
#[derive(Debug)]
pub(crate) struct FailedLogins {
    /// `T`, ms.
    interval: i64,
    /// `T × (burst − 1)`, ms.
    tolerance: i64,
    max_sources: usize,
    tat: Mutex<HashMap<IpAddr, EpochMs>>,
}

/// The key of `ip`: itself, its IPv4 form, or its /64.
fn source(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

impl FailedLogins {
    pub(crate) fn new(limit: FailedLoginLimit) -> FailedLogins {
        let interval = 60_000 / i64::from(limit.per_min.max(1));
        FailedLogins {
            interval: interval.max(1),
            tolerance: interval.saturating_mul(i64::from(limit.burst.max(1) - 1)),
            max_sources: limit.max_sources.max(1),
            tat: Mutex::new(HashMap::new()),
        }
    }

    /// `Some(ms)` to wait when `ip` may not try a credential at `now`; `None` when it may.
    pub(crate) fn blocked(&self, ip: IpAddr, now: EpochMs) -> Option<u64> {
        let tat = *self.tat.lock().get(&source(ip))?;
        let over = tat.saturating_sub(now).saturating_sub(self.tolerance);
        (over > 0).then(|| u64::try_from(over).unwrap_or(u64::MAX))
    }

    /// Counts a failure of `ip` at `now`.
    pub(crate) fn record(&self, ip: IpAddr, now: EpochMs) {
        let key = source(ip);
        let mut table = self.tat.lock();
        if !table.contains_key(&key) && table.len() >= self.max_sources {
            table.retain(|_, tat| *tat > now);
            if table.len() >= self.max_sources {
                let closest = table.iter().min_by_key(|(_, t)| **t).map(|(k, _)| *k);
                if let Some(k) = closest {
                    table.remove(&k);
                }
            }
        }
        let tat = table.entry(key).or_insert(now);
        *tat = (*tat).max(now).saturating_add(self.interval);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.tat.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_burst_of_failures_then_one_a_period() {
        // 6 a minute: one every 10 s, after 3.
        let f = FailedLogins::new(FailedLoginLimit {
            per_min: 6,
            burst: 3,
            max_sources: 10,
        });
        let a = ip("10.0.0.1");
        for _ in 0..3 {
            assert_eq!(f.blocked(a, 0), None);
            f.record(a, 0);
        }
        assert_eq!(f.blocked(a, 0), Some(10_000));
        assert_eq!(f.blocked(a, 4_000), Some(6_000));
        // Another source is not affected.
        assert_eq!(f.blocked(ip("10.0.0.2"), 0), None);
        // One period later: one more try.
        assert_eq!(f.blocked(a, 10_000), None);
        f.record(a, 10_000);
        assert_eq!(f.blocked(a, 10_000), Some(10_000));
        // Long quiet: the whole burst again.
        for _ in 0..3 {
            assert_eq!(f.blocked(a, 1_000_000), None);
            f.record(a, 1_000_000);
        }
        assert!(f.blocked(a, 1_000_000).is_some());
    }

    #[test]
    fn ipv6_counts_by_its_64_and_mapped_ipv4_as_ipv4() {
        let f = FailedLogins::new(FailedLoginLimit {
            per_min: 1,
            burst: 1,
            max_sources: 10,
        });
        f.record(ip("2001:db8:1:2::1"), 0);
        assert!(f.blocked(ip("2001:db8:1:2::ffff"), 0).is_some());
        assert!(f.blocked(ip("2001:db8:1:3::1"), 0).is_none());
        f.record(ip("::ffff:192.0.2.1"), 0);
        assert!(f.blocked(ip("192.0.2.1"), 0).is_some());
    }

    #[test]
    fn the_table_stays_bounded_and_keeps_the_blocked() {
        let f = FailedLogins::new(FailedLoginLimit {
            per_min: 1,
            burst: 1,
            max_sources: 3,
        });
        let bad = ip("10.0.0.9");
        for t in 0..5 {
            f.record(bad, t);
        }
        for i in 0..100u8 {
            f.record(IpAddr::from([10, 1, 0, i]), 0);
            assert!(f.len() <= 3);
        }
        assert!(
            f.blocked(bad, 100).is_some(),
            "the most blocked source was forgotten"
        );
    }
}
