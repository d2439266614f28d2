//! Proleptic Gregorian calendar arithmetic on plain integers.
//!
//! The cron search runs on wall-clock fields (year, month, day, hour, minute, second) and on
//! "local seconds": a wall-clock time written as seconds since 1970-01-01T00:00:00 *as if* it
//! were UTC. Converting between the two is pure integer arithmetic (Howard Hinnant's
//! `days_from_civil` / `civil_from_days`), so the hot path never builds a chrono value.

/// Days since 1970-01-01 of the civil date `year-month-day` (`month` 1–12, `day` 1–31).
pub(crate) fn days_from_civil(year: i32, month: u32, day: u32) -> i64 {
    let y = i64::from(year) - i64::from(month <= 2);
    let era = y.div_euclid(400);
    let yoe = y - era * 400; // [0, 399]
    let m = i64::from(month);
    let mp = (m + 9) % 12; // March = 0
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1; // [0, 365]
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy; // [0, 146096]
    era * 146_097 + doe - 719_468
}

/// The civil date `(year, month, day)` of `days` since 1970-01-01.
pub(crate) fn civil_from_days(days: i64) -> (i32, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097; // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11]
    let day = doy - (153 * mp + 2) / 5 + 1; // [1, 31]
    let month = if mp < 10 { mp + 3 } else { mp - 9 }; // [1, 12]
    let year = yoe + era * 400 + i64::from(month <= 2);
    // The casts cannot truncate: callers pass days within chrono's range (|year| < 262 143).
    (year as i32, month as u32, day as u32)
}

/// Whether `year` has a February 29th.
pub(crate) fn is_leap_year(year: i32) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

/// Number of days in `month` (1–12) of `year`.
pub(crate) fn days_in_month(year: i32, month: u32) -> u32 {
    match month {
        2 if is_leap_year(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Quartz weekday number of `days` since 1970-01-01: 1 = SUN, 2 = MON, ... 7 = SAT.
pub(crate) fn weekday_of_days(days: i64) -> u32 {
    // 1970-01-01 was a Thursday (Quartz 5).
    ((days + 4).rem_euclid(7) + 1) as u32
}

/// Quartz weekday number of a civil date: 1 = SUN ... 7 = SAT.
pub(crate) fn weekday(year: i32, month: u32, day: u32) -> u32 {
    weekday_of_days(days_from_civil(year, month, day))
}

/// Seconds in a day.
pub(crate) const DAY_S: i64 = 86_400;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_day_from_1900_to_2200() {
        let start = days_from_civil(1900, 1, 1);
        let end = days_from_civil(2200, 12, 31);
        let mut expected = (1900, 1, 1);
        for days in start..=end {
            let got = civil_from_days(days);
            assert_eq!(got, expected, "day {days}");
            assert_eq!(days_from_civil(got.0, got.1, got.2), days);
            let (y, m, d) = expected;
            expected = if d < days_in_month(y, m) {
                (y, m, d + 1)
            } else if m < 12 {
                (y, m + 1, 1)
            } else {
                (y + 1, 1, 1)
            };
        }
    }

    #[test]
    fn weekdays_use_quartz_numbering() {
        assert_eq!(weekday(1970, 1, 1), 5); // Thursday
        assert_eq!(weekday(2024, 2, 29), 5); // Thursday
        assert_eq!(weekday(2026, 11, 22), 1); // Sunday
        assert_eq!(weekday(2026, 11, 28), 7); // Saturday
        assert_eq!(weekday(1969, 12, 31), 4); // Wednesday
    }
}
