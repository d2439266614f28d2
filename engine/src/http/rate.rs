//! Per-principal request rates: a token bucket per app (and one for the admin token), in a
//! bounded table ([`RateLimiter`]).
//!
//! Every authorized request takes one token from its principal's bucket: the app named in
//! the path (`/v1/apps/{app}/...`, whichever token opened it) or the admin (admin routes). A
//! bucket holds at most `burst` tokens and refills at `per_sec` tokens a second; a request
//! that finds it empty is answered 429 `rate_limited` with `Retry-After` (whole seconds,
//! rounded up, at least 1) before its body is read. Requests that fail authorization take no
//! token: only authorized principals have buckets, so their number is the number of apps.
//!
//! The table holds at most `max_keys` buckets. A new principal at the limit first drops every
//! bucket that has refilled completely (dropping one changes nothing: a missing bucket is a
//! full one); if none has, the fullest is dropped (its principal regains at most the tokens it
//! was missing).
//!
//! The limiter reads no clock: callers pass `now` in milliseconds (the HTTP layer reads its
//! [`Clock`](crate::clock::Clock)), so its tests run on numbers.
//!
//! Tokens are kept in thousandths, so that rates below one a millisecond refill exactly:
//! `elapsed_ms × per_sec` thousandths.

use std::collections::HashMap;

use parking_lot::Mutex;

use crate::time_expression::EpochMs;

/// Thousandths of a token per token.
const MILLI: u64 = 1000;

/// The rate of one principal's requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiRateLimit {
    /// Tokens added a second (requests a second in the long run), at least 1.
    pub per_sec: u32,
    /// Most tokens a bucket holds (requests at once after a quiet spell), at least 1.
    pub burst: u32,
    /// Most principals tracked at once (see the module doc), at least 1.
    pub max_keys: usize,
}

/// Default [`ApiRateLimit::per_sec`] of the bundled server.
pub const DEFAULT_API_RATE_PER_SEC: u32 = 1000;
/// Default [`ApiRateLimit::burst`] of the bundled server.
pub const DEFAULT_API_BURST: u32 = 2000;
/// Default [`ApiRateLimit::max_keys`].
pub const DEFAULT_API_RATE_KEYS: usize = 10_000;

impl Default for ApiRateLimit {
    fn default() -> Self {
        ApiRateLimit {
            per_sec: DEFAULT_API_RATE_PER_SEC,
            burst: DEFAULT_API_BURST,
            max_keys: DEFAULT_API_RATE_KEYS,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    /// Thousandths of a token at `at`.
    milli: u64,
    at: EpochMs,
}

/// The buckets of every principal (see the module doc).
#[derive(Debug)]
pub(crate) struct RateLimiter {
    per_sec: u64,
    /// Capacity in thousandths.
    cap: u64,
    max_keys: usize,
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl RateLimiter {
    pub(crate) fn new(limit: ApiRateLimit) -> Self {
        let per_sec = u64::from(limit.per_sec.max(1));
        RateLimiter {
            per_sec,
            cap: u64::from(limit.burst.max(1)).saturating_mul(MILLI),
            max_keys: limit.max_keys.max(1),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// `b` refilled up to `now` (a clock that went back refills nothing).
    fn refilled(&self, b: Bucket, now: EpochMs) -> Bucket {
        let elapsed = u64::try_from(now.saturating_sub(b.at)).unwrap_or(0);
        Bucket {
            milli: b
                .milli
                .saturating_add(elapsed.saturating_mul(self.per_sec))
                .min(self.cap),
            at: now.max(b.at),
        }
    }

    /// Takes a token from `key`'s bucket at `now`: `Ok` when there was one, else `Err` with
    /// the milliseconds until there is.
    pub(crate) fn check(&self, key: &str, now: EpochMs) -> Result<(), u64> {
        self.take(key, 1, now)
    }

    /// Most tokens a bucket holds (its `burst`): more cannot be taken at once.
    pub(crate) fn burst(&self) -> u64 {
        self.cap / MILLI
    }

    /// Takes `n` tokens (at most [`burst`](RateLimiter::burst)) from `key`'s bucket at `now`,
    /// all or none: `Ok` when there were `n`, else `Err` with the milliseconds until there
    /// are (a batch of API runs takes one token per run).
    pub(crate) fn take(&self, key: &str, n: u64, now: EpochMs) -> Result<(), u64> {
        let need = n.saturating_mul(MILLI);
        let mut buckets = self.buckets.lock();
        if !buckets.contains_key(key) {
            if buckets.len() >= self.max_keys {
                self.make_room(&mut buckets, now);
            }
            // A new principal's bucket is full.
            buckets.insert(
                key.to_owned(),
                Bucket {
                    milli: self.cap,
                    at: now,
                },
            );
        }
        let Some(bucket) = buckets.get_mut(key) else {
            return Ok(());
        };
        *bucket = self.refilled(*bucket, now);
        if bucket.milli >= need {
            bucket.milli -= need;
            Ok(())
        } else {
            Err((need - bucket.milli).div_ceil(self.per_sec))
        }
    }

    /// Drops every full bucket, or else the fullest one.
    fn make_room(&self, buckets: &mut HashMap<String, Bucket>, now: EpochMs) {
        buckets.retain(|_, b| self.refilled(*b, now).milli < self.cap);
        if buckets.len() < self.max_keys {
            return;
        }
        let fullest = buckets
            .iter()
            .max_by_key(|(_, b)| self.refilled(**b, now).milli)
            .map(|(k, _)| k.clone());
        if let Some(k) = fullest {
            buckets.remove(&k);
        }
    }

    /// Principals tracked now.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.buckets.lock().len()
    }
}

/// `Retry-After` seconds for a wait of `ms`: rounded up, at least 1.
pub(crate) fn retry_after_secs(ms: u64) -> u64 {
    ms.div_ceil(1000).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(per_sec: u32, burst: u32, max_keys: usize) -> RateLimiter {
        RateLimiter::new(ApiRateLimit {
            per_sec,
            burst,
            max_keys,
        })
    }

    #[test]
    fn a_burst_then_the_rate() {
        let l = limiter(10, 3, 100);
        for _ in 0..3 {
            assert_eq!(l.check("shop", 0), Ok(()));
        }
        // Empty: one token comes back after 100 ms.
        assert_eq!(l.check("shop", 0), Err(100));
        assert_eq!(l.check("shop", 40), Err(60));
        assert_eq!(l.check("shop", 100), Ok(()));
        assert_eq!(l.check("shop", 100), Err(100));
        // Another app has its own bucket.
        assert_eq!(l.check("billing", 100), Ok(()));
        // A long quiet spell refills to the burst, not beyond.
        let t = 1_000_000;
        for _ in 0..3 {
            assert_eq!(l.check("shop", t), Ok(()));
        }
        assert!(l.check("shop", t).is_err());
    }

    #[test]
    fn many_tokens_are_taken_all_or_none() {
        let l = limiter(10, 5, 100);
        assert_eq!(l.burst(), 5);
        assert_eq!(l.take("shop", 3, 0), Ok(()));
        // Two left: three more are 100 ms away, and none is taken meanwhile.
        assert_eq!(l.take("shop", 3, 0), Err(100));
        assert_eq!(l.take("shop", 2, 0), Ok(()));
        assert_eq!(l.take("shop", 3, 300), Ok(()));
        assert!(l.check("shop", 300).is_err());
    }

    #[test]
    fn a_clock_that_steps_back_refills_nothing() {
        let l = limiter(1, 1, 10);
        assert_eq!(l.check("a", 10_000), Ok(()));
        assert_eq!(l.check("a", 5_000), Err(1000));
        assert_eq!(l.check("a", 10_999), Err(1));
        assert_eq!(l.check("a", 11_000), Ok(()));
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(retry_after_secs(0), 1);
        assert_eq!(retry_after_secs(1), 1);
        assert_eq!(retry_after_secs(1000), 1);
        assert_eq!(retry_after_secs(1001), 2);
    }

    #[test]
    fn the_table_stays_bounded_and_keeps_the_limited() {
        let l = limiter(1, 2, 3);
        // Three principals, one of them out of tokens.
        assert_eq!(l.check("busy", 0), Ok(()));
        assert_eq!(l.check("busy", 0), Ok(()));
        assert!(l.check("busy", 0).is_err());
        assert_eq!(l.check("a", 0), Ok(()));
        assert_eq!(l.check("b", 0), Ok(()));
        // Many more principals later: the table never grows past 3, and `busy` (never full
        // again at these times) stays limited while `a` and `b` come and go.
        for i in 0..100 {
            assert_eq!(l.check(&format!("p{i}"), 500), Ok(()));
            assert!(l.len() <= 3);
        }
        assert!(
            l.check("busy", 500).is_err(),
            "the limited bucket was dropped"
        );
    }
}
