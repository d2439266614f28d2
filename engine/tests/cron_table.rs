//! Table tests of tricky CRON cases: each line is `check(expr, tz, after, &[expected fires])`.

use chrono::DateTime;
use ferrojob::time_expression::{
    CronField, TimeExpression, TimeExpressionError, TimeExpressionType,
};

fn ms(rfc3339: &str) -> i64 {
    DateTime::parse_from_rfc3339(rfc3339)
        .unwrap_or_else(|e| panic!("bad test timestamp {rfc3339}: {e}"))
        .timestamp_millis()
}

fn show(t: i64) -> String {
    DateTime::from_timestamp_millis(t).unwrap().to_rfc3339()
}

/// The fires strictly after `after` are exactly `expected` (RFC 3339, any offset) and, when
/// `expected` ends in `"none"`, nothing follows.
#[track_caller]
fn check(expr: &str, tz: &str, after: &str, expected: &[&str]) {
    let e = TimeExpression::parse(TimeExpressionType::Cron, expr, Some(tz))
        .unwrap_or_else(|err| panic!("{expr}: {err}"));
    let (want, ends) = match expected.split_last() {
        Some((&"none", rest)) => (rest, true),
        _ => (expected, false),
    };
    let n = want.len() + usize::from(ends);
    let got: Vec<String> = e.next_n(0, ms(after), n).into_iter().map(show).collect();
    let want: Vec<String> = want.iter().map(|w| show(ms(w))).collect();
    if ends {
        assert_eq!(got, want, "{expr} in {tz} after {after} (then nothing)");
    } else {
        assert_eq!(got, want, "{expr} in {tz} after {after}");
    }
}

#[track_caller]
fn check_err(expr: &str, field: Option<CronField>, says: &str) {
    match TimeExpression::parse(TimeExpressionType::Cron, expr, None) {
        Ok(_) => panic!("`{expr}` parsed but should not"),
        Err(err @ TimeExpressionError::Cron { field: f, .. }) => {
            let msg = err.to_string();
            assert_eq!(f, field, "`{expr}`: {msg}");
            assert!(
                msg.contains(says),
                "`{expr}`: `{msg}` does not say `{says}`"
            );
            if let Some(f) = field {
                assert!(
                    msg.contains(&format!("{f}: ")),
                    "`{expr}`: `{msg}` does not name {f}"
                );
            }
        }
        Err(other) => panic!("`{expr}`: unexpected error {other}"),
    }
}

#[test]
fn basics_names_steps_lists() {
    check(
        "* * * * * ?",
        "UTC",
        "2026-01-01T00:00:00Z",
        &["2026-01-01T00:00:01Z", "2026-01-01T00:00:02Z"],
    );
    check(
        "* * * * * *",
        "UTC",
        "2026-01-01T00:00:00.999Z",
        &["2026-01-01T00:00:01Z"],
    );
    check(
        "0 0 12 * * ?",
        "UTC",
        "2026-01-01T12:00:00Z",
        &["2026-01-02T12:00:00Z"],
    );
    check(
        "0 0 12 * * ?",
        "UTC",
        "2026-01-01T11:59:59.999Z",
        &["2026-01-01T12:00:00Z"],
    );
    check(
        "0 15 10 ? * MON-FRI",
        "UTC",
        "2026-11-20T11:00:00Z",
        &["2026-11-23T10:15:00Z", "2026-11-24T10:15:00Z"],
    );
    check(
        "0 15 10 ? * mon-fri",
        "UTC",
        "2026-11-20T11:00:00Z",
        &["2026-11-23T10:15:00Z"],
    );
    check(
        "0 0 0 ? * FRI-MON",
        "UTC",
        "2026-11-19T00:00:00Z",
        &[
            "2026-11-20T00:00:00Z",
            "2026-11-21T00:00:00Z",
            "2026-11-22T00:00:00Z",
            "2026-11-23T00:00:00Z",
            "2026-11-27T00:00:00Z",
        ],
    );
    check(
        "0 0 22-2/2 * * ?",
        "UTC",
        "2026-01-01T03:00:00Z",
        &[
            "2026-01-01T22:00:00Z",
            "2026-01-02T00:00:00Z",
            "2026-01-02T02:00:00Z",
            "2026-01-02T22:00:00Z",
        ],
    );
    check(
        "0/20 * * * * ?",
        "UTC",
        "2026-01-01T00:00:00Z",
        &[
            "2026-01-01T00:00:20Z",
            "2026-01-01T00:00:40Z",
            "2026-01-01T00:01:00Z",
        ],
    );
    check(
        "5/20 * * * * ?",
        "UTC",
        "2026-01-01T00:00:00Z",
        &[
            "2026-01-01T00:00:05Z",
            "2026-01-01T00:00:25Z",
            "2026-01-01T00:00:45Z",
            "2026-01-01T00:01:05Z",
        ],
    );
    check(
        "0 0,30 8-9 ? JAN,jul *",
        "UTC",
        "2026-06-30T00:00:00Z",
        &[
            "2026-07-01T08:00:00Z",
            "2026-07-01T08:30:00Z",
            "2026-07-01T09:00:00Z",
            "2026-07-01T09:30:00Z",
            "2026-07-02T08:00:00Z",
        ],
    );
    check(
        "0 0 0 1 */5 ?",
        "UTC",
        "2026-01-01T00:00:00Z",
        &[
            "2026-06-01T00:00:00Z",
            "2026-11-01T00:00:00Z",
            "2027-01-01T00:00:00Z",
        ],
    );
    check(
        "0 0 0 ? * 1",
        "UTC",
        "2026-11-20T00:00:00Z",
        &["2026-11-22T00:00:00Z"],
    ); // 1 = SUN
    check(
        "0 0 0 ? * 7",
        "UTC",
        "2026-11-20T00:00:00Z",
        &["2026-11-21T00:00:00Z"],
    ); // 7 = SAT
    check(
        "0 0 0 ? * L",
        "UTC",
        "2026-11-20T00:00:00Z",
        &["2026-11-21T00:00:00Z"],
    ); // L alone = SAT
    check(
        "0 0 12 * * MON",
        "UTC",
        "2026-11-20T00:00:00Z",
        &["2026-11-23T12:00:00Z"],
    ); // `*` defers to day-of-week
    check(
        "0 0 12 15 * *",
        "UTC",
        "2026-11-20T00:00:00Z",
        &["2026-12-15T12:00:00Z"],
    ); // `*` defers to day-of-month
    check(
        "  0 0 12 ?  * ?  ",
        "UTC",
        "2026-11-20T00:00:00Z",
        &["2026-11-20T12:00:00Z"],
    );
}

#[test]
fn leap_years_and_last_day() {
    check(
        "0 0 0 29 2 ?",
        "UTC",
        "2021-01-01T00:00:00Z",
        &["2024-02-29T00:00:00Z", "2028-02-29T00:00:00Z"],
    );
    check(
        "0 0 0 29 2 ? 2097-2099",
        "UTC",
        "2090-01-01T00:00:00Z",
        &["none"],
    );
    check("0 0 0 29 2 ?", "UTC", "2096-02-29T00:00:00Z", &["none"]); // 2100 is not a leap year, and past 2099 anyway
    check(
        "0 0 12 L 2 ?",
        "UTC",
        "2023-01-01T00:00:00Z",
        &[
            "2023-02-28T12:00:00Z",
            "2024-02-29T12:00:00Z",
            "2025-02-28T12:00:00Z",
        ],
    );
    check(
        "0 0 12 L * ?",
        "UTC",
        "2026-01-31T12:00:00Z",
        &[
            "2026-02-28T12:00:00Z",
            "2026-03-31T12:00:00Z",
            "2026-04-30T12:00:00Z",
        ],
    );
    check(
        "0 0 0 L-3 * ?",
        "UTC",
        "2026-01-01T00:00:00Z",
        &[
            "2026-01-28T00:00:00Z",
            "2026-02-25T00:00:00Z",
            "2026-03-28T00:00:00Z",
        ],
    );
    check(
        "0 0 0 L-28 2 ?",
        "UTC",
        "2023-01-01T00:00:00Z",
        &["2024-02-01T00:00:00Z", "2028-02-01T00:00:00Z"],
    );
    check(
        "0 0 0 1,L * ?",
        "UTC",
        "2026-02-01T00:00:00Z",
        &["2026-02-28T00:00:00Z", "2026-03-01T00:00:00Z"],
    );
    check(
        "0 0 0 31 * ?",
        "UTC",
        "2026-01-31T00:00:00Z",
        &["2026-03-31T00:00:00Z", "2026-05-31T00:00:00Z"],
    );
    check("0 0 0 30 2 ?", "UTC", "2026-01-01T00:00:00Z", &["none"]);
    check(
        "0 0 0 31 4,6,9,11 ?",
        "UTC",
        "1970-01-01T00:00:00Z",
        &["none"],
    );
}

#[test]
fn nearest_weekday() {
    // 2022-01-01 is a Saturday: 1W is Monday the 3rd, not Friday Dec 31st.
    check(
        "0 0 0 1W * ?",
        "UTC",
        "2021-12-31T00:00:00Z",
        &["2022-01-03T00:00:00Z", "2022-02-01T00:00:00Z"],
    );
    // 2022-07-31 is a Sunday: 31W is Friday the 29th, not Monday Aug 1st; 31W skips 30-day months.
    check(
        "0 0 0 31W * ?",
        "UTC",
        "2022-07-01T00:00:00Z",
        &[
            "2022-07-29T00:00:00Z",
            "2022-08-31T00:00:00Z",
            "2022-10-31T00:00:00Z",
        ],
    );
    // 2026-11-15 is a Sunday: Monday the 16th; 2026-08-15 is a Saturday: Friday the 14th.
    check(
        "0 0 0 15W * ?",
        "UTC",
        "2026-11-01T00:00:00Z",
        &["2026-11-16T00:00:00Z", "2026-12-15T00:00:00Z"],
    );
    check(
        "0 0 0 15W 8 ?",
        "UTC",
        "2026-01-01T00:00:00Z",
        &["2026-08-14T00:00:00Z"],
    );
    // LW: 2026-01-31 is a Saturday, 2026-05-31 a Sunday, 2026-03-31 a Tuesday.
    check(
        "0 0 18 LW * ?",
        "UTC",
        "2026-01-01T00:00:00Z",
        &[
            "2026-01-30T18:00:00Z",
            "2026-02-27T18:00:00Z",
            "2026-03-31T18:00:00Z",
            "2026-04-30T18:00:00Z",
            "2026-05-29T18:00:00Z",
        ],
    );
}

#[test]
fn nearest_weekday_before_the_last_day() {
    // L-2W in 2026: Jan 29 (Thu), Feb 26 (Thu), Mar 29 is a Sunday -> Monday 30, Apr 28,
    // May 29 (Fri), Jun 29 (Mon).
    check(
        "0 0 0 L-2W * ?",
        "UTC",
        "2026-01-01T00:00:00Z",
        &[
            "2026-01-29T00:00:00Z",
            "2026-02-26T00:00:00Z",
            "2026-03-30T00:00:00Z",
            "2026-04-28T00:00:00Z",
            "2026-05-29T00:00:00Z",
            "2026-06-29T00:00:00Z",
        ],
    );
    // L-30W exists only in 31-day months: Jan 1 2026 is a Thursday, Mar 1 a Sunday -> Monday 2.
    check(
        "0 0 0 L-30W * ?",
        "UTC",
        "2025-12-31T12:00:00Z",
        &[
            "2026-01-01T00:00:00Z",
            "2026-03-02T00:00:00Z",
            "2026-05-01T00:00:00Z",
        ],
    );
    // L-0W is LW.
    check(
        "0 0 18 L-0W 5 ?",
        "UTC",
        "2026-01-01T00:00:00Z",
        &["2026-05-29T18:00:00Z"],
    );
    // Lists mix L, L-n, nW and L-nW: Feb 2026 ends on a Saturday and the 15th is a Sunday.
    check(
        "0 0 0 15W,L-1W,L,L-3 2,3 ?",
        "UTC",
        "2026-02-01T00:00:00Z",
        &[
            "2026-02-16T00:00:00Z",
            "2026-02-25T00:00:00Z",
            "2026-02-27T00:00:00Z",
            "2026-02-28T00:00:00Z",
            "2026-03-16T00:00:00Z",
            "2026-03-28T00:00:00Z",
            "2026-03-30T00:00:00Z",
            "2026-03-31T00:00:00Z",
        ],
    );
    check_err(
        "0 0 0 L-31W * ?",
        Some(CronField::DayOfMonth),
        "out of range 0-30",
    );
    check_err("0 0 0 L-W * ?", Some(CronField::DayOfMonth), "L-W");
}

/// Quartz refuses `L` listed with other days of the week, and so do we.
#[test]
fn last_in_a_day_of_week_list_is_refused() {
    for expr in [
        "0 0 0 ? * 6L,MON",
        "0 0 0 ? * L,2",
        "0 0 0 ? * MON,6l",
        "0 0 0 ? * 2#1,L",
        "0 0 0 ? * 2#1,6L",
    ] {
        check_err(expr, Some(CronField::DayOfWeek), "cannot be listed");
    }
    check(
        "0 0 0 ? * 6L",
        "UTC",
        "2026-11-01T00:00:00Z",
        &["2026-11-27T00:00:00Z"],
    );
}

#[test]
fn nth_and_last_weekday() {
    // 6#3: the third Friday.
    check(
        "0 15 10 ? * 6#3",
        "UTC",
        "2026-11-01T00:00:00Z",
        &["2026-11-20T10:15:00Z", "2026-12-18T10:15:00Z"],
    );
    check(
        "0 15 10 ? * FRI#3",
        "UTC",
        "2026-11-01T00:00:00Z",
        &["2026-11-20T10:15:00Z"],
    );
    // 5#5: the fifth Thursday; February and March 2026 have none and are skipped.
    check(
        "0 0 0 ? * 5#5",
        "UTC",
        "2026-01-01T00:00:00Z",
        &[
            "2026-01-29T00:00:00Z",
            "2026-04-30T00:00:00Z",
            "2026-07-30T00:00:00Z",
        ],
    );
    // 6L: the last Friday.
    check(
        "0 0 0 ? * 6L",
        "UTC",
        "2026-11-01T00:00:00Z",
        &["2026-11-27T00:00:00Z", "2026-12-25T00:00:00Z"],
    );
    check(
        "0 0 0 ? * FRIL",
        "UTC",
        "2026-11-01T00:00:00Z",
        &["2026-11-27T00:00:00Z"],
    );
    // 2L: the last Monday (2026-08-31 is a Monday, the month's last day).
    check(
        "0 0 0 ? 8 2L",
        "UTC",
        "2026-01-01T00:00:00Z",
        &["2026-08-31T00:00:00Z"],
    );
    // Other forms still list together: the first Monday and the third Friday.
    check(
        "0 0 0 ? * 2#1,6#3",
        "UTC",
        "2026-11-01T00:00:00Z",
        &[
            "2026-11-02T00:00:00Z",
            "2026-11-20T00:00:00Z",
            "2026-12-07T00:00:00Z",
        ],
    );
}

#[test]
fn years_that_end() {
    check(
        "0 0 0 1 1 ? 2025-2026",
        "UTC",
        "2025-06-01T00:00:00Z",
        &["2026-01-01T00:00:00Z", "none"],
    );
    check(
        "0 0 0 1 1 ? 2030",
        "UTC",
        "2026-01-01T00:00:00Z",
        &["2030-01-01T00:00:00Z", "none"],
    );
    check(
        "0 0 0 1 1 ? 2020/40",
        "UTC",
        "2000-01-01T00:00:00Z",
        &["2020-01-01T00:00:00Z", "2060-01-01T00:00:00Z", "none"],
    );
    check(
        "59 59 23 31 12 ? 2099",
        "UTC",
        "2099-01-01T00:00:00Z",
        &["2099-12-31T23:59:59Z", "none"],
    );
    check(
        "* * * * * ?",
        "UTC",
        "2099-12-31T23:59:58Z",
        &["2099-12-31T23:59:59Z", "none"],
    );
    check("* * * * * ?", "UTC", "9999-12-31T23:59:58Z", &["none"]);
    check(
        "0 0 0 1 1 ? 1970",
        "UTC",
        "1960-01-01T00:00:00Z",
        &["1970-01-01T00:00:00Z", "none"],
    );
    // Local years: 2099-12-31 23:30 in Tokyo is still in 2099.
    check(
        "0 30 23 31 12 ? 2099",
        "Asia/Tokyo",
        "2099-01-01T00:00:00Z",
        &["2099-12-31T23:30:00+09:00", "none"],
    );
}

#[test]
fn dst_europe_berlin() {
    // Spring forward 2026-03-29: 02:00 CET -> 03:00 CEST at 01:00Z. 02:30 does not exist: it fires
    // once at the transition, so the daily job does not skip the day.
    check(
        "0 30 2 * * ?",
        "Europe/Berlin",
        "2026-03-27T12:00:00Z",
        &[
            "2026-03-28T02:30:00+01:00",
            "2026-03-29T03:00:00+02:00",
            "2026-03-30T02:30:00+02:00",
        ],
    );
    // Several matches inside the gap collapse into one fire.
    check(
        "0 0/20 2 * * ?",
        "Europe/Berlin",
        "2026-03-28T12:00:00Z",
        &["2026-03-29T03:00:00+02:00", "2026-03-30T02:00:00+02:00"],
    );
    // ... including with a match right at the end of the gap.
    check(
        "0 0/20 2-3 * * ?",
        "Europe/Berlin",
        "2026-03-29T00:30:00Z",
        &["2026-03-29T03:00:00+02:00", "2026-03-29T03:20:00+02:00"],
    );
    check(
        "0 0 * * * ?",
        "Europe/Berlin",
        "2026-03-28T23:30:00Z",
        &[
            "2026-03-29T01:00:00+01:00",
            "2026-03-29T03:00:00+02:00",
            "2026-03-29T04:00:00+02:00",
        ],
    );
    // Fall back 2026-10-25: 03:00 CEST -> 02:00 CET at 01:00Z. 02:30 is read twice: it fires at
    // the first reading only.
    check(
        "0 30 2 * * ?",
        "Europe/Berlin",
        "2026-10-24T12:00:00Z",
        &["2026-10-25T02:30:00+02:00", "2026-10-26T02:30:00+01:00"],
    );
    check(
        "0 0/30 * * * ?",
        "Europe/Berlin",
        "2026-10-25T00:00:00Z",
        &[
            "2026-10-25T02:30:00+02:00",
            "2026-10-25T03:00:00+01:00",
            "2026-10-25T03:30:00+01:00",
        ],
    );
    // Asked during the repeated hour (02:10 CET, the second reading): the repeats never fire.
    check(
        "0 0/30 * * * ?",
        "Europe/Berlin",
        "2026-10-25T01:10:00Z",
        &["2026-10-25T03:00:00+01:00"],
    );
    check(
        "0 10 2 * * ?",
        "Europe/Berlin",
        "2026-10-25T01:10:00Z",
        &["2026-10-26T02:10:00+01:00"],
    );
    // Asked during the first reading: the rest of the hour fires once.
    check(
        "0 0/30 * * * ?",
        "Europe/Berlin",
        "2026-10-25T00:10:00Z",
        &["2026-10-25T02:30:00+02:00", "2026-10-25T03:00:00+01:00"],
    );
    check(
        "0 0 0 * * ?",
        "Europe/Berlin",
        "2026-06-30T12:00:00Z",
        &["2026-07-01T00:00:00+02:00"],
    );
    // Far-future rules apply too (the tz database's recurring rule, not only listed years).
    check(
        "0 30 2 * * ?",
        "Europe/Berlin",
        "2090-03-25T12:00:00Z",
        &["2090-03-26T03:00:00+02:00", "2090-03-27T02:30:00+02:00"],
    );
    check(
        "0 0 12 1 7 ? 2099",
        "Europe/Berlin",
        "2098-01-01T00:00:00Z",
        &["2099-07-01T12:00:00+02:00", "none"],
    );
}

#[test]
fn dst_america_new_york() {
    // Spring forward 2026-03-08: 02:00 EST -> 03:00 EDT at 07:00Z.
    check(
        "0 30 2 * * ?",
        "America/New_York",
        "2026-03-07T12:00:00Z",
        &["2026-03-08T03:00:00-04:00", "2026-03-09T02:30:00-04:00"],
    );
    check(
        "0 0 2 * * ?",
        "America/New_York",
        "2026-03-07T12:00:00Z",
        &["2026-03-08T03:00:00-04:00", "2026-03-09T02:00:00-04:00"],
    );
    check(
        "0 59 1 * * ?",
        "America/New_York",
        "2026-03-07T12:00:00Z",
        &["2026-03-08T01:59:00-05:00", "2026-03-09T01:59:00-04:00"],
    );
    // Fall back 2026-11-01: 02:00 EDT -> 01:00 EST at 06:00Z; 01:30 fires once, in EDT.
    check(
        "0 30 1 * * ?",
        "America/New_York",
        "2026-10-31T12:00:00Z",
        &["2026-11-01T01:30:00-04:00", "2026-11-02T01:30:00-05:00"],
    );
    check(
        "0 0 * * * ?",
        "America/New_York",
        "2026-11-01T04:30:00Z",
        &[
            "2026-11-01T01:00:00-04:00",
            "2026-11-01T02:00:00-05:00",
            "2026-11-01T03:00:00-05:00",
        ],
    );
    check(
        "0 0 12 ? * 6#3",
        "America/New_York",
        "2026-11-01T00:00:00Z",
        &["2026-11-20T12:00:00-05:00"],
    );
}

#[test]
fn other_zones() {
    check(
        "0 15 10 ? * 6#3",
        "Asia/Shanghai",
        "2026-01-01T00:00:00Z",
        &["2026-01-16T10:15:00+08:00", "2026-02-20T10:15:00+08:00"],
    );
    // Lord Howe moves its clocks by 30 minutes (2026-04-05 02:00 LHDT -> 01:30 LHST).
    check(
        "0 45 1 * * ?",
        "Australia/Lord_Howe",
        "2026-04-04T00:00:00Z",
        &["2026-04-05T01:45:00+11:00", "2026-04-06T01:45:00+10:30"],
    );
    // Samoa skipped 2011-12-30 entirely (-10:00 -> +14:00 at 10:00Z): the noon job fires once
    // at the transition instead of losing the day.
    check(
        "0 0 12 * * ?",
        "Pacific/Apia",
        "2011-12-28T00:00:00Z",
        &[
            "2011-12-28T12:00:00-10:00",
            "2011-12-29T12:00:00-10:00",
            "2011-12-31T00:00:00+14:00",
            "2011-12-31T12:00:00+14:00",
        ],
    );
    // Kathmandu: +05:45.
    check(
        "0 0 9 * * ?",
        "Asia/Kathmandu",
        "2026-01-01T00:00:00Z",
        &["2026-01-01T09:00:00+05:45"],
    );
}

#[test]
fn invalid_expressions_name_the_field() {
    use CronField::*;
    check_err(
        "0 0 0 ? * 8",
        Some(DayOfWeek),
        "8 is out of range 1-7 (1 = SUN",
    );
    check_err("0 0 0 ? * 0", Some(DayOfWeek), "0 is out of range 1-7");
    check_err("60 * * * * ?", Some(Seconds), "60 is out of range 0-59");
    check_err("* 60 * * * ?", Some(Minutes), "60 is out of range 0-59");
    check_err("* * 24 * * ?", Some(Hours), "24 is out of range 0-23");
    check_err("* * * 32 * ?", Some(DayOfMonth), "32 is out of range 1-31");
    check_err("* * * 0 * ?", Some(DayOfMonth), "0 is out of range 1-31");
    check_err("* * * ? 13 *", Some(Month), "13 is out of range 1-12");
    check_err(
        "* * * ? FOO *",
        Some(Month),
        "`FOO` is not a month number 1-12 or name JAN-DEC",
    );
    check_err("* * * ? * FUN", Some(DayOfWeek), "`FUN` is not a weekday");
    check_err(
        "* * * ? * * 2100",
        Some(Year),
        "2100 is out of range 1970-2099",
    );
    check_err(
        "* * * ? * * 1969",
        Some(Year),
        "1969 is out of range 1970-2099",
    );
    check_err("0 0 0 * * ? 2026-2025", Some(Year), "runs backwards");
    check_err(
        "0 0 0 15 * MON",
        Some(DayOfWeek),
        "put `?` in one of the two",
    );
    check_err(
        "0 0 0 ? * 6#6",
        Some(DayOfWeek),
        "occurrence 6 is out of range 1-5",
    );
    check_err(
        "0 0 0 ? * 6#0",
        Some(DayOfWeek),
        "occurrence 0 is out of range 1-5",
    );
    check_err("0 0 0 ? * 8#1", Some(DayOfWeek), "8 is out of range");
    check_err(
        "0 0 0 L-31 * ?",
        Some(DayOfMonth),
        "offset 31 is out of range 0-30",
    );
    check_err(
        "0 0 0 0W * ?",
        Some(DayOfMonth),
        "day 0 is out of range 1-31",
    );
    check_err("0 0 0 XW * ?", Some(DayOfMonth), "is not `nW`");
    check_err(
        "0 ? * * * *",
        Some(Minutes),
        "`?` is only allowed in day-of-month and day-of-week",
    );
    check_err(
        "0 0 0 ?,1 * ?",
        Some(DayOfMonth),
        "`?` must be the whole field",
    );
    check_err(
        "0 */0 * * * ?",
        Some(Minutes),
        "step 0 is out of range 1-59",
    );
    check_err(
        "0 */60 * * * ?",
        Some(Minutes),
        "step 60 is out of range 1-59",
    );
    check_err("0 0 0 1,,2 * ?", Some(DayOfMonth), "empty list item");
    check_err("0 0 0 1- * ?", Some(DayOfMonth), "a value is missing");
    check_err("0 0 -1 * * ?", Some(Hours), "a value is missing");
    check_err("0 0 1x * * ?", Some(Hours), "`1x` is not a number");
    check_err("0 0 99999999999 * * ?", Some(Hours), "is too large");
    check_err("0 0 12 * *", None, "expected 6 or 7 fields");
    check_err("0 0 12 * *", None, "prefix `0 `");
    check_err("0 0 12 * * ? 2026 x", None, "found 8");
    check_err("", None, "the expression is empty");
    check_err("   ", None, "the expression is empty");
    check_err(&"1,".repeat(600), None, "the limit is 1024");
}

#[test]
fn display_is_a_full_sentence() {
    let err = TimeExpression::parse(TimeExpressionType::Cron, "0 0 0 ? * 8", None).unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid CRON expression `0 0 0 ? * 8`: day-of-week: 8 is out of range 1-7 (1 = SUN, or SUN-SAT)"
    );
    let err = TimeExpression::parse(TimeExpressionType::Cron, "0 0 * * * ?", Some("Mars/Base"))
        .unwrap_err();
    assert!(
        matches!(err, TimeExpressionError::UnknownTimeZone { .. }),
        "{err}"
    );
}
