//! Fuzz target `cron_parse`: any bytes, read as UTF-8 (lossily), parse as a time expression of
//! every type or fail with an error; never panic. When a CRON (or other) expression parses, its
//! next few triggers, from several starting points in UTC and in Europe/Berlin (DST), strictly
//! increase and are strictly after the starting point.

use ferrojob::time_expression::{EpochMs, TimeExpression, TimeExpressionType};

/// Starting points: the epoch, around Berlin's 2026 DST transitions, and the end of 2099.
const STARTS: [EpochMs; 5] = [
    0,
    1_774_738_800_000, // 2026-03-28T23:00:00Z, just before spring forward
    1_792_882_800_000, // 2026-10-24T23:00:00Z, just before fall back
    1_792_890_600_000, // 2026-10-25T01:10:00Z, inside the repeated hour
    4_102_444_700_000, // 2099-12-31T23:58:20Z
];

/// Feeds one fuzz input to the code under test; must never panic.
pub fn run(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    for tz in [None, Some("Europe/Berlin")] {
        for kind in TimeExpressionType::ALL {
            match TimeExpression::parse(kind, &text, tz) {
                Ok(expr) => check_increasing(&expr),
                Err(err) => {
                    // The message must render (it is what users see).
                    let msg = err.to_string();
                    assert!(!msg.is_empty());
                }
            }
        }
    }
}

fn check_increasing(expr: &TimeExpression) {
    for start in STARTS {
        let mut after = start;
        for _ in 0..4 {
            let Some(next) = expr.next_after(start, after) else {
                break;
            };
            assert!(
                next > after,
                "`{expr}` ({:?}): {next} is not after {after}",
                expr.kind()
            );
            after = next;
        }
    }
    // The displayed source parses back to the same schedule.
    if let TimeExpression::Cron(c) = expr {
        let again = TimeExpression::parse(
            TimeExpressionType::Cron,
            &expr.to_string(),
            Some(c.time_zone().name()),
        );
        assert_eq!(
            again.as_ref().ok(),
            Some(expr),
            "`{expr}` does not round-trip"
        );
    }
}
