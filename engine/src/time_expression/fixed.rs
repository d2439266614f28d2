//! FIXED_RATE and FIXED_DELAY: a period in milliseconds from an anchor.
//!
//! ```text
//!   anchor      +p          +2p         +3p
//!     |----------|-----------|-----------|-->   fires at anchor + k·p, k >= 1
//! ```
//!
//! Both use the same arithmetic; they differ in the anchor the scheduler passes. FIXED_RATE's
//! anchor is the schedule's start and never moves, so fires never drift however late a run is.
//! FIXED_DELAY's anchor is the completion of the previous run, so the next run starts `delay`
//! after the last one ended; if nothing ran since (the scheduler was down), later fires keep
//! the same spacing from that completion.

use super::{EpochMs, TimeExpressionError, TimeExpressionType};

/// Largest period accepted: fires must stay representable as `i64` milliseconds.
pub const MAX_PERIOD_MS: u64 = i64::MAX as u64;

/// Parses a FIXED_RATE period or FIXED_DELAY delay: a whole number of milliseconds, at least 1.
pub(crate) fn parse_period(
    kind: TimeExpressionType,
    expr: &str,
) -> Result<u64, TimeExpressionError> {
    let text = expr.trim();
    let invalid = |reason: &str| TimeExpressionError::Period {
        kind,
        value: text.chars().take(64).collect(),
        reason: reason.to_owned(),
    };
    if text.is_empty() {
        return Err(invalid("the expression is empty; give the period in milliseconds, e.g. `60000` for once a minute"));
    }
    if !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid(
            "expected a whole number of milliseconds, e.g. `60000` for once a minute",
        ));
    }
    let ms: u64 = text
        .parse()
        .map_err(|_| invalid("the period is too large"))?;
    if ms == 0 {
        return Err(invalid("the period must be at least 1 millisecond"));
    }
    if ms > MAX_PERIOD_MS {
        return Err(invalid("the period is too large"));
    }
    Ok(ms)
}

/// The first `anchor + k·period_ms` (k >= 1) strictly after `after`; `None` if it overflows.
pub(crate) fn next_after(period_ms: u64, anchor: EpochMs, after: EpochMs) -> Option<EpochMs> {
    let period = i128::from(period_ms);
    let (anchor_w, after_w) = (i128::from(anchor), i128::from(after));
    let k = if after_w < anchor_w {
        1
    } else {
        (after_w - anchor_w) / period + 1
    };
    i64::try_from(anchor_w + k * period).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_drift() {
        assert_eq!(next_after(1000, 0, 0), Some(1000));
        assert_eq!(next_after(1000, 0, 999), Some(1000));
        assert_eq!(next_after(1000, 0, 1000), Some(2000));
        assert_eq!(
            next_after(1000, 0, 1_000_000_000_001),
            Some(1_000_000_001_000)
        );
        assert_eq!(next_after(1000, 500, -10_000), Some(1500));
        assert_eq!(next_after(3, -7, -7), Some(-4));
        assert_eq!(next_after(MAX_PERIOD_MS, 1, 1), None);
    }
}
