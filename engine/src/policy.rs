//! A job's run policies, shared by the server and the embedded scheduler: how long to wait
//! before each retry of a failed run ([`RetryBackoff`]) and what a run does when the job's
//! `max_instances` are already running ([`OverlapPolicy`]).
//!
//! Both are pure: a delay is a function of the policy, the retry number and a seed the caller
//! chooses (the server uses the instance id), so the same inputs always give the same delay
//! and tests need no randomness.
//!
//! | shape | delay before retry `n` (1-based), before jitter |
//! |---|---|
//! | `FIXED` | `initial_delay_ms` |
//! | `EXPONENTIAL` | `min(initial_delay_ms · factor^(n-1), max_delay_ms)` |
//!
//! Jitter `j` (0 to 1) then takes up to that share off the delay: the delay `d` becomes
//! `d - floor(d · j · u)`, where `u` in `[0, 1)` is derived from the seed and `n`. So a
//! jittered delay is never longer than the unjittered one, and retries of many instances
//! that failed together (a worker died) spread over `[d·(1-j), d]` instead of arriving at
//! once.

#![forbid(unsafe_code)]
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
#![cfg_attr(
    test,
    allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)
)]

use std::fmt;

use serde::{Deserialize, Serialize};

/// Longest retry delay a policy may give, ms (one day).
pub const MAX_RETRY_DELAY_MS: u64 = 24 * 3600 * 1000;

/// Largest exponential `factor`.
pub const MAX_BACKOFF_FACTOR: f64 = 100.0;

/// How retry delays grow.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[rkyv(derive(Debug, PartialEq, Eq))]
pub enum BackoffShape {
    /// Every retry waits `initial_delay_ms`.
    Fixed,
    /// Each retry waits `factor` times longer than the previous one, up to `max_delay_ms`
    /// (the default).
    #[default]
    Exponential,
}

/// How long a failed run waits before each retry (see the module documentation for the
/// formula). The default is the server's: exponential from 1 s, doubling, at most 30 s, no
/// jitter.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Serialize,
    Deserialize,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
)]
#[serde(deny_unknown_fields, default)]
pub struct RetryBackoff {
    /// `FIXED` or `EXPONENTIAL` (default).
    pub shape: BackoffShape,
    /// Delay before the first retry, ms (default 1000; at most [`MAX_RETRY_DELAY_MS`]).
    pub initial_delay_ms: u64,
    /// Growth per retry of an `EXPONENTIAL` backoff, 1 to [`MAX_BACKOFF_FACTOR`] (default 2;
    /// ignored by `FIXED`).
    pub factor: f64,
    /// Upper bound of any delay, ms (default 30 000; at least `initial_delay_ms`, at most
    /// [`MAX_RETRY_DELAY_MS`]).
    pub max_delay_ms: u64,
    /// Share of each delay that is randomised away, 0 (default: none) to 1.
    pub jitter: f64,
}

impl Default for RetryBackoff {
    fn default() -> Self {
        RetryBackoff::exponential(1_000, 30_000)
    }
}

impl RetryBackoff {
    /// Every retry after `delay_ms`.
    pub const fn fixed(delay_ms: u64) -> RetryBackoff {
        RetryBackoff {
            shape: BackoffShape::Fixed,
            initial_delay_ms: delay_ms,
            factor: 2.0,
            max_delay_ms: delay_ms,
            jitter: 0.0,
        }
    }

    /// From `initial_delay_ms`, doubling, at most `max_delay_ms`, no jitter.
    pub const fn exponential(initial_delay_ms: u64, max_delay_ms: u64) -> RetryBackoff {
        RetryBackoff {
            shape: BackoffShape::Exponential,
            initial_delay_ms,
            factor: 2.0,
            max_delay_ms,
            jitter: 0.0,
        }
    }

    /// Checks every field; the error is `(field, reason)` with the field's JSON name.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if self.initial_delay_ms > MAX_RETRY_DELAY_MS {
            return Err((
                "initial_delay_ms",
                format!(
                    "at most {MAX_RETRY_DELAY_MS} ms, got {}",
                    self.initial_delay_ms
                ),
            ));
        }
        if self.max_delay_ms > MAX_RETRY_DELAY_MS {
            return Err((
                "max_delay_ms",
                format!("at most {MAX_RETRY_DELAY_MS} ms, got {}", self.max_delay_ms),
            ));
        }
        if self.max_delay_ms < self.initial_delay_ms {
            return Err((
                "max_delay_ms",
                format!(
                    "must be at least initial_delay_ms ({}), got {}",
                    self.initial_delay_ms, self.max_delay_ms
                ),
            ));
        }
        if !self.factor.is_finite() || !(1.0..=MAX_BACKOFF_FACTOR).contains(&self.factor) {
            return Err((
                "factor",
                format!("must be 1 to {MAX_BACKOFF_FACTOR}, got {}", self.factor),
            ));
        }
        if !self.jitter.is_finite() || !(0.0..=1.0).contains(&self.jitter) {
            return Err(("jitter", format!("must be 0 to 1, got {}", self.jitter)));
        }
        Ok(())
    }

    /// The delay before retry `n` (1-based; 0 counts as 1), ms, jittered by `seed` (the same
    /// seed and `n` always give the same delay).
    pub fn delay_ms(&self, n: u32, seed: u64) -> u64 {
        let base = match self.shape {
            BackoffShape::Fixed => self.initial_delay_ms,
            BackoffShape::Exponential => {
                // Past 2^11 retries any factor above 1 has long reached the cap; the bound
                // keeps `powi` finite.
                let exp = i32::try_from(n.saturating_sub(1).min(2048)).unwrap_or(2048);
                let grown = self.initial_delay_ms as f64 * self.factor.powi(exp);
                // `as` saturates, and the cap bounds it anyway.
                (grown.min(self.max_delay_ms as f64) as u64).min(self.max_delay_ms)
            }
        };
        if self.jitter <= 0.0 || base == 0 {
            return base;
        }
        let u = unit_interval(mix(seed ^ u64::from(n).rotate_left(32)));
        let off = (base as f64 * self.jitter.min(1.0) * u) as u64;
        base.saturating_sub(off)
    }
}

/// SplitMix64's finaliser (Steele, Lea & Flood, 2014): spreads any seed over 64 bits.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// `x` as a number in `[0, 1)` (its top 53 bits).
fn unit_interval(x: u64) -> f64 {
    (x >> 11) as f64 / (1u64 << 53) as f64
}

/// What a run of a job does when the job's `max_instances` instances are already running.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[rkyv(derive(Debug, PartialEq, Eq))]
#[non_exhaustive]
pub enum OverlapPolicy {
    /// The run's instance is FAILED with the reason (the default, and PowerJob's behaviour).
    #[default]
    Fail,
    /// No instance is created for a scheduled fire and an API run is refused; the skip is
    /// counted. A run that already has an instance (a workflow node, a retry, a delayed run)
    /// is CANCELED with the reason.
    Skip,
    /// The instance waits in WAITING_DISPATCH and runs when a slot frees, first come first
    /// served, up to a bounded queue per job (beyond it the run is FAILED).
    Queue,
    /// The oldest running instance is stopped, then the new one starts.
    Replace,
}

impl OverlapPolicy {
    /// The policy's name as written in the API, e.g. `QUEUE`.
    pub fn as_str(self) -> &'static str {
        match self {
            OverlapPolicy::Fail => "FAIL",
            OverlapPolicy::Skip => "SKIP",
            OverlapPolicy::Queue => "QUEUE",
            OverlapPolicy::Replace => "REPLACE",
        }
    }
}

impl fmt::Display for OverlapPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One table row: the delays of retries 1..=n.
    fn check(p: RetryBackoff, seed: u64, expected: &[u64]) {
        let got: Vec<u64> = (1..=expected.len() as u32)
            .map(|n| p.delay_ms(n, seed))
            .collect();
        assert_eq!(got, expected, "{p:?}");
    }

    #[test]
    fn shapes() {
        check(
            RetryBackoff::default(),
            0,
            &[1_000, 2_000, 4_000, 8_000, 16_000, 30_000, 30_000],
        );
        check(RetryBackoff::fixed(500), 0, &[500, 500, 500]);
        let triple = RetryBackoff {
            factor: 3.0,
            ..RetryBackoff::exponential(100, 2_000)
        };
        check(triple, 9, &[100, 300, 900, 2_000, 2_000]);
        let flat = RetryBackoff {
            factor: 1.0,
            ..RetryBackoff::exponential(250, 1_000)
        };
        check(flat, 0, &[250, 250, 250]);
        let half = RetryBackoff {
            factor: 1.5,
            ..RetryBackoff::exponential(1_000, 10_000)
        };
        check(half, 0, &[1_000, 1_500, 2_250, 3_375]);
        // Retry 0 counts as the first; a huge retry number stays at the cap.
        assert_eq!(RetryBackoff::default().delay_ms(0, 0), 1_000);
        assert_eq!(RetryBackoff::default().delay_ms(u32::MAX, 0), 30_000);
        let big = RetryBackoff {
            factor: MAX_BACKOFF_FACTOR,
            ..RetryBackoff::exponential(MAX_RETRY_DELAY_MS, MAX_RETRY_DELAY_MS)
        };
        assert_eq!(big.delay_ms(u32::MAX, 1), MAX_RETRY_DELAY_MS);
    }

    #[test]
    fn jitter_is_deterministic_and_bounded() {
        let p = RetryBackoff {
            jitter: 0.5,
            ..RetryBackoff::default()
        };
        for seed in 0..200u64 {
            for n in 1..8 {
                let d = p.delay_ms(n, seed);
                let base = RetryBackoff::default().delay_ms(n, seed);
                assert!(
                    d <= base && d >= base / 2,
                    "seed {seed} n {n}: {d} of {base}"
                );
                assert_eq!(d, p.delay_ms(n, seed), "the same inputs, the same delay");
            }
        }
        // Different instances spread out: 100 seeds give many distinct first delays.
        let mut firsts: Vec<u64> = (0..100).map(|s| p.delay_ms(1, s)).collect();
        firsts.sort_unstable();
        firsts.dedup();
        assert!(firsts.len() > 50, "{firsts:?}");
        // Full jitter may reach down to 0, never above the base.
        let full = RetryBackoff {
            jitter: 1.0,
            ..RetryBackoff::fixed(1_000)
        };
        assert!((0..100).all(|s| full.delay_ms(3, s) <= 1_000));
    }

    #[test]
    fn validation_names_the_field() {
        let bad = |p: RetryBackoff| p.validate().unwrap_err().0;
        assert!(RetryBackoff::default().validate().is_ok());
        assert!(RetryBackoff::fixed(0).validate().is_ok());
        assert_eq!(bad(RetryBackoff::exponential(5_000, 1_000)), "max_delay_ms");
        assert_eq!(
            bad(RetryBackoff::fixed(MAX_RETRY_DELAY_MS + 1)),
            "initial_delay_ms"
        );
        for factor in [0.5, f64::NAN, f64::INFINITY, 101.0] {
            assert_eq!(
                bad(RetryBackoff {
                    factor,
                    ..RetryBackoff::default()
                }),
                "factor"
            );
        }
        for jitter in [-0.1, 1.5, f64::NAN] {
            assert_eq!(
                bad(RetryBackoff {
                    jitter,
                    ..RetryBackoff::default()
                }),
                "jitter"
            );
        }
    }

    #[test]
    fn json_names() {
        let p: RetryBackoff =
            serde_json::from_str(r#"{"shape":"FIXED","initial_delay_ms":200}"#).unwrap();
        assert_eq!(p.shape, BackoffShape::Fixed);
        assert_eq!(p.initial_delay_ms, 200);
        assert_eq!(p.max_delay_ms, 30_000);
        assert!(serde_json::from_str::<RetryBackoff>(r#"{"shap":"FIXED"}"#).is_err());
        assert_eq!(
            serde_json::to_string(&OverlapPolicy::Replace).unwrap(),
            "\"REPLACE\""
        );
        assert_eq!(
            serde_json::from_str::<OverlapPolicy>("\"QUEUE\"").unwrap(),
            OverlapPolicy::Queue
        );
    }
}
