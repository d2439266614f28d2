//! Table tests of the non-CRON time expressions, the type names, lifecycle windows and the
//! errors of each parser.

use chrono::DateTime;
use ferrojob::time_expression::{
    next_n, Lifecycle, TimeExpression, TimeExpressionError, TimeExpressionType as T,
};

fn ms(rfc3339: &str) -> i64 {
    DateTime::parse_from_rfc3339(rfc3339)
        .unwrap_or_else(|e| panic!("bad test timestamp {rfc3339}: {e}"))
        .timestamp_millis()
}

fn show(t: i64) -> String {
    DateTime::from_timestamp_millis(t).unwrap().to_rfc3339()
}

/// The first `expected.len()` triggers of `(kind, expr, tz)` after `after` with `anchor`.
#[track_caller]
fn check(kind: T, expr: &str, tz: &str, anchor: i64, after: &str, expected: &[&str]) {
    let e =
        TimeExpression::parse(kind, expr, Some(tz)).unwrap_or_else(|err| panic!("{expr}: {err}"));
    let got: Vec<String> = next_n(&e, anchor, ms(after), expected.len())
        .into_iter()
        .map(show)
        .collect();
    let want: Vec<String> = expected.iter().map(|w| show(ms(w))).collect();
    assert_eq!(got, want, "{kind} `{expr}` in {tz} after {after}");
}

#[track_caller]
fn check_err(kind: T, expr: &str, says: &str) {
    match TimeExpression::parse(kind, expr, None) {
        Ok(e) => panic!("{kind} `{expr}` parsed as {e:?}"),
        Err(err) => {
            let msg = err.to_string();
            assert!(
                msg.contains(says),
                "{kind} `{expr}`: `{msg}` does not say `{says}`"
            );
        }
    }
}

#[test]
fn fixed_rate_never_drifts() {
    let e = TimeExpression::parse(T::FixedRate, "1000", None).unwrap();
    assert_eq!(e, TimeExpression::FixedRate { period_ms: 1000 });
    // k-th fire at anchor + k·period, whatever `after` is.
    assert_eq!(e.next_after(500, 500), Some(1500));
    assert_eq!(e.next_after(500, 1499), Some(1500));
    assert_eq!(e.next_after(500, 1500), Some(2500));
    assert_eq!(e.next_after(500, 1_000_000_123), Some(1_000_000_500));
    assert_eq!(e.next_after(500, -5), Some(1500));
    assert_eq!(e.next_n(0, 0, 3), vec![1000, 2000, 3000]);
    let e = TimeExpression::parse(T::FixedRate, " 1 ", None).unwrap();
    assert_eq!(e.next_n(7, 7, 3), vec![8, 9, 10]);
    let e = TimeExpression::parse(T::FixedRate, "9223372036854775807", None).unwrap();
    assert_eq!(e.next_after(1, 1), None, "overflow is None, not a panic");
}

#[test]
fn fixed_delay_counts_from_the_completion() {
    let e = TimeExpression::parse(T::FixedDelay, "30000", None).unwrap();
    assert_eq!(e, TimeExpression::FixedDelay { delay_ms: 30_000 });
    // The previous run completed at 100_000: the next is due 30 s later.
    assert_eq!(e.next_after(100_000, 100_000), Some(130_000));
    assert_eq!(e.next_after(100_000, 120_000), Some(130_000));
    // Nothing ran since (the scheduler was down): same spacing from that completion.
    assert_eq!(e.next_after(100_000, 130_000), Some(160_000));
    // next_n assumes runs that take no time.
    assert_eq!(e.next_n(0, 0, 3), vec![30_000, 60_000, 90_000]);
    assert_eq!(e.time_zone(), chrono_tz::Tz::UTC);
}

#[test]
fn api_and_workflow_never_fire() {
    for kind in [T::Api, T::Workflow] {
        let e = TimeExpression::parse(kind, "", None).unwrap();
        assert_eq!(e.kind(), kind);
        assert_eq!(e.next_after(0, 0), None);
        assert!(e.next_n(0, 0, 5).is_empty());
        assert!(TimeExpression::parse(kind, "  ", Some("Asia/Shanghai")).is_ok());
    }
    check_err(T::Api, "0 * * * * ?", "take no time expression");
}

#[test]
fn daily_time_interval() {
    let weekdays = r#"{"interval":10,"unit":"MINUTES","startTimeOfDay":"09:00:00","endTimeOfDay":"09:30:00","daysOfWeek":[2,3,4,5,6]}"#;
    // 2026-11-20 is a Friday: 09:00..09:30 every 10 min, then Monday.
    check(
        T::DailyTimeInterval,
        weekdays,
        "UTC",
        0,
        "2026-11-20T08:00:00Z",
        &[
            "2026-11-20T09:00:00Z",
            "2026-11-20T09:10:00Z",
            "2026-11-20T09:20:00Z",
            "2026-11-20T09:30:00Z",
            "2026-11-23T09:00:00Z",
        ],
    );
    // Mid-window and between slots: the next aligned slot.
    check(
        T::DailyTimeInterval,
        weekdays,
        "UTC",
        0,
        "2026-11-20T09:05:00Z",
        &["2026-11-20T09:10:00Z"],
    );
    check(
        T::DailyTimeInterval,
        weekdays,
        "UTC",
        0,
        "2026-11-20T09:10:00Z",
        &["2026-11-20T09:20:00Z"],
    );
    // In the job's zone.
    check(
        T::DailyTimeInterval,
        weekdays,
        "Asia/Shanghai",
        0,
        "2026-11-20T00:00:00Z",
        &["2026-11-20T09:00:00+08:00"],
    );
    // PowerJob's field name `intervalUnit`, default unit SECONDS, default whole day, names.
    check(
        T::DailyTimeInterval,
        r#"{"interval":7200,"startTimeOfDay":"01:00","daysOfWeek":["SUN"]}"#,
        "UTC",
        0,
        "2026-11-20T00:00:00Z",
        &["2026-11-22T01:00:00Z", "2026-11-22T03:00:00Z"],
    );
    check(
        T::DailyTimeInterval,
        r#"{"interval":2,"intervalUnit":"HOURS","endTimeOfDay":"04:00:00"}"#,
        "UTC",
        0,
        "2026-11-20T03:00:00Z",
        &["2026-11-20T04:00:00Z", "2026-11-21T00:00:00Z"],
    );
    check(
        T::DailyTimeInterval,
        r#"{"interval":30000,"unit":"MILLISECONDS","startTimeOfDay":"12:00:00","endTimeOfDay":"12:01:00"}"#,
        "UTC",
        0,
        "2026-11-20T12:00:00Z",
        &[
            "2026-11-20T12:00:30Z",
            "2026-11-20T12:01:00Z",
            "2026-11-21T12:00:00Z",
        ],
    );
    // DST (Berlin spring forward 2026-03-29 02:00 -> 03:00): slots in the gap collapse into one.
    check(
        T::DailyTimeInterval,
        r#"{"interval":30,"unit":"MINUTES","startTimeOfDay":"01:30:00","endTimeOfDay":"03:30:00"}"#,
        "Europe/Berlin",
        0,
        "2026-03-29T00:00:00Z",
        &[
            "2026-03-29T01:30:00+01:00",
            "2026-03-29T03:00:00+02:00",
            "2026-03-29T03:30:00+02:00",
            "2026-03-30T01:30:00+02:00",
        ],
    );
    // DST (Berlin fall back 2026-10-25 03:00 -> 02:00): the repeated hour does not fire again.
    check(
        T::DailyTimeInterval,
        r#"{"interval":30,"unit":"MINUTES","startTimeOfDay":"02:00:00","endTimeOfDay":"03:00:00"}"#,
        "Europe/Berlin",
        0,
        "2026-10-24T23:00:00Z",
        &[
            "2026-10-25T02:00:00+02:00",
            "2026-10-25T02:30:00+02:00",
            "2026-10-25T03:00:00+01:00",
            "2026-10-26T02:00:00+01:00",
        ],
    );
    let e = TimeExpression::parse(T::DailyTimeInterval, weekdays, None).unwrap();
    assert_eq!(e.to_string(), weekdays);
}

#[test]
fn invalid_expressions_say_what_is_wrong() {
    check_err(T::FixedRate, "", "the expression is empty");
    check_err(T::FixedRate, "0", "at least 1 millisecond");
    check_err(
        T::FixedRate,
        "-5",
        "expected a whole number of milliseconds",
    );
    check_err(
        T::FixedRate,
        "1.5",
        "expected a whole number of milliseconds",
    );
    check_err(T::FixedDelay, "10s", "invalid FIXED_DELAY expression `10s`");
    check_err(T::FixedRate, "9223372036854775808", "too large");
    check_err(T::FixedRate, "99999999999999999999999", "too large");
    check_err(T::DailyTimeInterval, "", "expected JSON like");
    check_err(
        T::DailyTimeInterval,
        "every 10 minutes",
        "expected JSON like",
    );
    check_err(
        T::DailyTimeInterval,
        r#"{"interval":0}"#,
        "interval: 0 is not a whole number >= 1",
    );
    check_err(T::DailyTimeInterval, r#"{"interval":"x"}"#, "interval");
    check_err(
        T::DailyTimeInterval,
        r#"{"startTimeOfDay":"09:00"}"#,
        "missing field `interval`",
    );
    check_err(
        T::DailyTimeInterval,
        r#"{"interval":1,"unit":"WEEKS"}"#,
        "unit: `WEEKS` is not one of",
    );
    check_err(
        T::DailyTimeInterval,
        r#"{"interval":25,"unit":"HOURS"}"#,
        "longer than a day",
    );
    check_err(
        T::DailyTimeInterval,
        r#"{"interval":1500,"unit":"MILLISECONDS"}"#,
        "not a whole number of seconds",
    );
    check_err(
        T::DailyTimeInterval,
        r#"{"interval":1,"startTimeOfDay":"24:00:00"}"#,
        "startTimeOfDay: `24:00:00`",
    );
    check_err(
        T::DailyTimeInterval,
        r#"{"interval":1,"endTimeOfDay":"9h"}"#,
        "endTimeOfDay: `9h`",
    );
    check_err(
        T::DailyTimeInterval,
        r#"{"interval":1,"startTimeOfDay":"10:00","endTimeOfDay":"09:00"}"#,
        "endTimeOfDay is before startTimeOfDay",
    );
    check_err(
        T::DailyTimeInterval,
        r#"{"interval":1,"daysOfWeek":[0]}"#,
        "daysOfWeek: 0 is not a weekday 1-7 (1 = SUN)",
    );
    check_err(
        T::DailyTimeInterval,
        r#"{"interval":1,"daysOfWeek":["Funday"]}"#,
        "daysOfWeek",
    );
    check_err(
        T::DailyTimeInterval,
        r#"{"interval":1,"intervall":2}"#,
        "unknown field `intervall`",
    );
    assert!(matches!(
        TimeExpression::parse(T::FixedRate, "1000", Some("Nowhere/Land")),
        Err(TimeExpressionError::UnknownTimeZone { .. })
    ));
}

#[test]
fn type_names() {
    for (name, kind) in [
        ("cron", T::Cron),
        ("CRON", T::Cron),
        ("api", T::Api),
        ("fixed-rate", T::FixedRate),
        ("FIXED_RATE", T::FixedRate),
        ("fix_rate", T::FixedRate),
        ("fixed-delay", T::FixedDelay),
        ("FIX_DELAY", T::FixedDelay),
        ("daily-time-interval", T::DailyTimeInterval),
        ("DAILY_TIME_INTERVAL", T::DailyTimeInterval),
        ("workflow", T::Workflow),
    ] {
        assert_eq!(name.parse::<T>().unwrap(), kind, "{name}");
    }
    let err = "hourly".parse::<T>().unwrap_err();
    assert!(
        err.to_string().contains("expected one of API, CRON"),
        "{err}"
    );
    for kind in T::ALL {
        assert_eq!(kind.to_string().parse::<T>().unwrap(), kind);
        let json = serde_json::to_string(&kind).unwrap();
        assert_eq!(json, format!("\"{kind}\""));
        assert_eq!(serde_json::from_str::<T>(&json).unwrap(), kind);
    }
}

#[test]
fn lifecycle_window_bounds_the_triggers() {
    let e = TimeExpression::parse(T::Cron, "0 0 12 * * ?", None).unwrap();
    let w = Lifecycle::new(
        Some(ms("2026-11-22T00:00:00Z")),
        Some(ms("2026-11-23T12:00:00Z")),
    )
    .unwrap();
    assert_eq!(
        e.next_within(&w, 0, ms("2026-11-01T00:00:00Z")),
        Some(ms("2026-11-22T12:00:00Z"))
    );
    assert_eq!(
        e.next_within(&w, 0, ms("2026-11-22T12:00:00Z")),
        Some(ms("2026-11-23T12:00:00Z"))
    );
    assert_eq!(e.next_within(&w, 0, ms("2026-11-23T12:00:00Z")), None);
    // A start exactly on a trigger includes it.
    let w = Lifecycle::new(Some(ms("2026-11-22T12:00:00Z")), None).unwrap();
    assert_eq!(e.next_within(&w, 0, 0), Some(ms("2026-11-22T12:00:00Z")));
    assert!(Lifecycle::new(Some(2), Some(1)).is_err());
}
