//! Reconnect backoff: exponential with full jitter, deterministic given the jitter input.
//!
//! Attempt `n` (from 0) waits `base * 2^n`, capped at `max`, then scaled by a jitter factor in
//! `[1 - jitter, 1]`. The random factor comes in as an argument so tests and the sans-IO core
//! stay deterministic; the tokio client draws it from `rand`.

use std::time::Duration;

/// Backoff settings.
#[derive(Debug, Clone, PartialEq)]
pub struct BackoffConfig {
    /// Delay before the first retry.
    pub base: Duration,
    /// Largest delay.
    pub max: Duration,
    /// Fraction of the delay that is randomised, 0.0..=1.0 (0 = no jitter).
    pub jitter: f64,
}

impl Default for BackoffConfig {
    fn default() -> Self {
        BackoffConfig {
            base: Duration::from_millis(100),
            max: Duration::from_secs(30),
            jitter: 0.5,
        }
    }
}

/// Backoff state for one peer: how many attempts failed in a row.
#[derive(Debug, Clone)]
pub struct Backoff {
    config: BackoffConfig,
    attempt: u32,
}

impl Backoff {
    /// A fresh backoff (next delay is `base`, jittered).
    pub fn new(config: BackoffConfig) -> Backoff {
        Backoff { config, attempt: 0 }
    }

    /// Failed attempts in a row so far.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }

    /// The delay before the next attempt; `unit` is a uniform random number in `[0, 1)`.
    /// Advances the attempt counter.
    pub fn next_delay(&mut self, unit: f64) -> Duration {
        let exp = self.attempt.min(32);
        self.attempt = self.attempt.saturating_add(1);
        let factor = 1u64.checked_shl(exp).unwrap_or(u64::MAX);
        let raw = self
            .config
            .base
            .checked_mul(u32::try_from(factor).unwrap_or(u32::MAX))
            .unwrap_or(self.config.max)
            .min(self.config.max);
        let jitter = self.config.jitter.clamp(0.0, 1.0);
        let unit = if unit.is_finite() {
            unit.clamp(0.0, 1.0)
        } else {
            0.0
        };
        raw.mul_f64(1.0 - jitter * unit)
    }

    /// A connection succeeded: the next failure starts from `base` again.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_until_the_cap_and_resets() {
        let mut b = Backoff::new(BackoffConfig {
            base: Duration::from_millis(100),
            max: Duration::from_secs(1),
            jitter: 0.0,
        });
        let ms: Vec<u128> = (0..6).map(|_| b.next_delay(0.7).as_millis()).collect();
        assert_eq!(ms, [100, 200, 400, 800, 1000, 1000]);
        b.reset();
        assert_eq!(b.next_delay(0.0), Duration::from_millis(100));
    }

    #[test]
    fn jitter_stays_within_its_fraction() {
        let mut b = Backoff::new(BackoffConfig {
            base: Duration::from_millis(1000),
            max: Duration::from_secs(10),
            jitter: 0.5,
        });
        assert_eq!(b.next_delay(0.0), Duration::from_millis(1000));
        assert_eq!(b.next_delay(1.0), Duration::from_millis(1000));
        assert_eq!(b.next_delay(0.5), Duration::from_millis(3000));
        assert_eq!(b.next_delay(f64::NAN), Duration::from_millis(8000));
        for _ in 0..100 {
            let d = b.next_delay(0.999);
            assert!(d >= Duration::from_secs(5) && d <= Duration::from_secs(10));
        }
    }
}
