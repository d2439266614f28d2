//! Calendars: named sets of excluded dates (holidays) in a time zone. A job or workflow that
//! names calendars does not fire on a trigger whose date, read in a calendar's zone, that
//! calendar excludes: the trigger is skipped (counted, not run) and the next one is planned
//! as usual.
//!
//! This module is the one place the rule lives ([`Calendar::excludes`], [`excluded_by`]);
//! the server's fires, backfills and previews and `ferrojob validate` all call it. It reads
//! no clock: the trigger time comes in as an argument.
//!
//! An entry is a date (`2026-12-25`) or an inclusive range of dates
//! (`2026-12-24..2026-12-26`). Entries are kept sorted and merged, so a check is one binary
//! search over at most [`MAX_CALENDAR_ENTRIES`] ranges.
//!
//! ```text
//!   trigger 2026-12-24T23:30:00Z ── in Asia/Shanghai ──▶ 2026-12-25 07:30 ── excluded? ──▶ skip
//! ```

use chrono::{DateTime, NaiveDate};
use chrono_tz::Tz;
use thiserror::Error;

use crate::time_expression::{parse_time_zone, EpochMs};

/// Longest calendar name, in bytes.
pub const MAX_CALENDAR_NAME_LEN: usize = 64;
/// Most calendars of one app.
pub const MAX_CALENDARS_PER_APP: usize = 64;
/// Most excluded entries (dates or ranges) of one calendar.
pub const MAX_CALENDAR_ENTRIES: usize = 1000;
/// Most calendars one job or workflow names.
pub const MAX_CALENDARS_PER_JOB: usize = 8;
/// Longest calendar description, in bytes.
pub const MAX_CALENDAR_DESCRIPTION_LEN: usize = 1024;

/// Why a calendar, an entry or a list of calendar names was rejected.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum CalendarError {
    /// The name is empty, too long or has other characters.
    #[error(
        "calendar name {0:?}: 1 to {MAX_CALENDAR_NAME_LEN} bytes of letters, digits, '_', '-', '.'"
    )]
    Name(String),
    /// An excluded entry does not parse.
    #[error("excluded entry {entry:?}: {reason}")]
    Entry {
        /// The entry (cut to 40 characters).
        entry: String,
        /// What is wrong and what is expected.
        reason: String,
    },
    /// The time zone is not an IANA name.
    #[error("unknown time zone {0:?} (an IANA name such as Europe/Paris)")]
    TimeZone(String),
    /// More entries than [`MAX_CALENDAR_ENTRIES`].
    #[error("a calendar has at most {MAX_CALENDAR_ENTRIES} excluded entries, got {0}")]
    TooManyEntries(usize),
    /// More calendar names than [`MAX_CALENDARS_PER_JOB`], or one named twice.
    #[error("{0}")]
    Names(String),
}

/// An inclusive range of dates; one date is a range of one day.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DateRange {
    /// The first excluded date.
    pub first: NaiveDate,
    /// The last excluded date (equal to `first` for a single date, never before it).
    pub last: NaiveDate,
}

impl DateRange {
    /// Parses `YYYY-MM-DD` or `YYYY-MM-DD..YYYY-MM-DD` (surrounding blanks ignored).
    pub fn parse(text: &str) -> Result<DateRange, CalendarError> {
        let entry = text.trim();
        let err = |reason: &str| CalendarError::Entry {
            entry: entry.chars().take(40).collect(),
            reason: reason.to_owned(),
        };
        let date = |s: &str| {
            NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d")
                .map_err(|_| err("expected YYYY-MM-DD or YYYY-MM-DD..YYYY-MM-DD"))
        };
        let range = match entry.split_once("..") {
            Some((a, b)) => DateRange {
                first: date(a)?,
                last: date(b)?,
            },
            None => {
                let d = date(entry)?;
                DateRange { first: d, last: d }
            }
        };
        if range.last < range.first {
            return Err(err("the range ends before it starts"));
        }
        Ok(range)
    }

    /// Whether `date` lies in the range.
    pub fn contains(&self, date: NaiveDate) -> bool {
        self.first <= date && date <= self.last
    }
}

impl std::fmt::Display for DateRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.first == self.last {
            write!(f, "{}", self.first.format("%Y-%m-%d"))
        } else {
            write!(
                f,
                "{}..{}",
                self.first.format("%Y-%m-%d"),
                self.last.format("%Y-%m-%d")
            )
        }
    }
}

/// Checks a calendar name: 1 to [`MAX_CALENDAR_NAME_LEN`] bytes of `[A-Za-z0-9_.-]`.
pub fn check_calendar_name(name: &str) -> Result<(), CalendarError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_CALENDAR_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(CalendarError::Name(name.chars().take(80).collect()))
    }
}

/// Checks the calendar names a job or workflow carries: each a valid name, none twice, at
/// most [`MAX_CALENDARS_PER_JOB`].
pub fn check_calendar_names(names: &[String]) -> Result<(), CalendarError> {
    if names.len() > MAX_CALENDARS_PER_JOB {
        return Err(CalendarError::Names(format!(
            "at most {MAX_CALENDARS_PER_JOB} calendars, got {}",
            names.len()
        )));
    }
    for (i, name) in names.iter().enumerate() {
        check_calendar_name(name)?;
        if names.iter().take(i).any(|n| n == name) {
            return Err(CalendarError::Names(format!(
                "calendar {name:?} is named twice"
            )));
        }
    }
    Ok(())
}

/// A parsed calendar: its zone and its excluded ranges, sorted and merged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Calendar {
    zone: Tz,
    ranges: Vec<DateRange>,
}

impl Calendar {
    /// Parses a calendar: `time_zone` an IANA name (empty = UTC), `excluded` at most
    /// [`MAX_CALENDAR_ENTRIES`] entries of [`DateRange::parse`]'s forms.
    pub fn new<S: AsRef<str>>(time_zone: &str, excluded: &[S]) -> Result<Calendar, CalendarError> {
        if excluded.len() > MAX_CALENDAR_ENTRIES {
            return Err(CalendarError::TooManyEntries(excluded.len()));
        }
        let zone = parse_time_zone(Some(time_zone))
            .map_err(|_| CalendarError::TimeZone(time_zone.chars().take(80).collect()))?;
        let mut ranges = excluded
            .iter()
            .map(|e| DateRange::parse(e.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        ranges.sort_unstable();
        let mut merged: Vec<DateRange> = Vec::with_capacity(ranges.len());
        for r in ranges {
            match merged.last_mut() {
                // Overlapping or adjacent ranges become one.
                Some(m) if r.first <= m.last.succ_opt().unwrap_or(m.last) => {
                    m.last = m.last.max(r.last);
                }
                _ => merged.push(r),
            }
        }
        Ok(Calendar {
            zone,
            ranges: merged,
        })
    }

    /// The zone dates are read in.
    pub fn zone(&self) -> Tz {
        self.zone
    }

    /// The excluded ranges, sorted and merged.
    pub fn ranges(&self) -> &[DateRange] {
        &self.ranges
    }

    /// Whether the calendar excludes `date`.
    pub fn excludes_date(&self, date: NaiveDate) -> bool {
        let i = self.ranges.partition_point(|r| r.first <= date);
        i.checked_sub(1)
            .and_then(|j| self.ranges.get(j))
            .is_some_and(|r| r.contains(date))
    }

    /// Whether the calendar excludes the instant `at` (ms since the epoch): its date in the
    /// calendar's zone is excluded. An instant outside chrono's range is never excluded.
    pub fn excludes(&self, at: EpochMs) -> bool {
        DateTime::from_timestamp_millis(at)
            .is_some_and(|t| self.excludes_date(t.with_timezone(&self.zone).date_naive()))
    }
}

/// The first of `calendars` (name, calendar) that excludes `at`, by name; `None` when the
/// trigger fires.
pub fn excluded_by<'a, I>(calendars: I, at: EpochMs) -> Option<&'a str>
where
    I: IntoIterator<Item = (&'a str, &'a Calendar)>,
{
    calendars
        .into_iter()
        .find(|(_, c)| c.excludes(at))
        .map(|(n, _)| n)
}

/// Most triggers [`preview`] examines: a calendar that excludes long runs of dates ends the
/// preview early instead of searching on.
pub const MAX_PREVIEW_SCAN: usize = 10_000;

/// The triggers a preview shows: the first ones that fire, and the ones skipped on the way.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Preview {
    /// Triggers that fire, ascending, at most the count asked for.
    pub fires: Vec<EpochMs>,
    /// Triggers before the last of `fires` that `calendar` excludes, ascending.
    pub skipped: Vec<EpochMs>,
}

/// The first `count` triggers of `expr` strictly after `after` that `calendar` (if any)
/// allows, with those it excludes on the way; at most [`MAX_PREVIEW_SCAN`] triggers are
/// examined. `anchor` is as for [`TimeExpression::next_after`].
///
/// [`TimeExpression::next_after`]: crate::time_expression::TimeExpression::next_after
pub fn preview(
    expr: &crate::time_expression::TimeExpression,
    calendar: Option<&Calendar>,
    anchor: EpochMs,
    after: EpochMs,
    count: usize,
) -> Preview {
    let calendars = calendar.map_or(&[][..], std::slice::from_ref);
    preview_all(expr, calendars, anchor, after, count)
}

/// [`preview`] for a job that names several calendars: a trigger any of them excludes is
/// skipped, as the server skips it.
pub fn preview_all(
    expr: &crate::time_expression::TimeExpression,
    calendars: &[Calendar],
    anchor: EpochMs,
    after: EpochMs,
    count: usize,
) -> Preview {
    let mut out = Preview::default();
    let mut after = after;
    for _ in 0..MAX_PREVIEW_SCAN {
        if out.fires.len() >= count {
            break;
        }
        let Some(t) = expr.next_after(anchor, after) else {
            break;
        };
        if calendars.iter().any(|c| c.excludes(t)) {
            out.skipped.push(t);
        } else {
            out.fires.push(t);
        }
        after = t;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(rfc3339: &str) -> EpochMs {
        DateTime::parse_from_rfc3339(rfc3339)
            .unwrap()
            .timestamp_millis()
    }

    /// `zone` and `excluded` make a calendar; each trigger `at` is excluded or not.
    fn check(zone: &str, excluded: &[&str], at: &str, expected: bool) {
        let cal = Calendar::new(zone, excluded).unwrap();
        assert_eq!(
            cal.excludes(ms(at)),
            expected,
            "{zone} {excluded:?} at {at}"
        );
    }

    #[test]
    fn exclusion_table() {
        // One date, UTC.
        check("UTC", &["2026-12-25"], "2026-12-25T00:00:00Z", true);
        check("UTC", &["2026-12-25"], "2026-12-25T23:59:59.999Z", true);
        check("UTC", &["2026-12-25"], "2026-12-24T23:59:59.999Z", false);
        check("UTC", &["2026-12-25"], "2026-12-26T00:00:00Z", false);
        // An empty zone is UTC.
        check("", &["2026-12-25"], "2026-12-25T12:00:00Z", true);
        // The date boundary: 23:30 UTC on the 24th is already the 25th in Shanghai (UTC+8)…
        check(
            "Asia/Shanghai",
            &["2026-12-25"],
            "2026-12-24T23:30:00Z",
            true,
        );
        check("UTC", &["2026-12-25"], "2026-12-24T23:30:00Z", false);
        // … and 15:59 UTC on the 25th is the 25th's last minute there; 16:00 is the 26th.
        check(
            "Asia/Shanghai",
            &["2026-12-25"],
            "2026-12-25T15:59:00Z",
            true,
        );
        check(
            "Asia/Shanghai",
            &["2026-12-25"],
            "2026-12-25T16:00:00Z",
            false,
        );
        // West of UTC: 03:00 UTC on the 26th is still the 25th in New York.
        check(
            "America/New_York",
            &["2026-12-25"],
            "2026-12-26T03:00:00Z",
            true,
        );
        check(
            "America/New_York",
            &["2026-12-25"],
            "2026-12-25T03:00:00Z",
            false,
        );
        // Inclusive ranges.
        check(
            "UTC",
            &["2026-12-24..2026-12-26"],
            "2026-12-24T00:00:00Z",
            true,
        );
        check(
            "UTC",
            &["2026-12-24..2026-12-26"],
            "2026-12-26T23:00:00Z",
            true,
        );
        check(
            "UTC",
            &["2026-12-24..2026-12-26"],
            "2026-12-27T00:00:00Z",
            false,
        );
        check(
            "UTC",
            &["2026-12-24..2026-12-26"],
            "2026-12-23T23:00:00Z",
            false,
        );
        // Several entries, unsorted and overlapping.
        let many = [
            "2027-01-01",
            "2026-12-24..2026-12-26",
            "2026-12-25..2026-12-28",
        ];
        check("UTC", &many, "2026-12-28T10:00:00Z", true);
        check("UTC", &many, "2026-12-29T10:00:00Z", false);
        check("UTC", &many, "2027-01-01T10:00:00Z", true);
        // A DST change inside the excluded day (Paris, 2026-03-29).
        check(
            "Europe/Paris",
            &["2026-03-29"],
            "2026-03-28T23:00:00Z",
            true,
        );
        check(
            "Europe/Paris",
            &["2026-03-29"],
            "2026-03-29T21:59:00Z",
            true,
        );
        check(
            "Europe/Paris",
            &["2026-03-29"],
            "2026-03-29T22:00:00Z",
            false,
        );
        // No entries: nothing is excluded.
        check("UTC", &[], "2026-12-25T00:00:00Z", false);
    }

    #[test]
    fn entries_are_merged_and_printed_back() {
        let cal = Calendar::new(
            "UTC",
            &[
                "2026-12-26",
                "2026-12-24..2026-12-25",
                "2027-01-01",
                "2026-12-27",
            ],
        )
        .unwrap();
        let text: Vec<String> = cal.ranges().iter().map(ToString::to_string).collect();
        assert_eq!(text, ["2026-12-24..2026-12-27", "2027-01-01"]);
    }

    #[test]
    fn bad_entries_names_and_zones_are_rejected() {
        for bad in [
            "",
            "2026-13-01",
            "2026-12-26..2026-12-24",
            "25/12/2026",
            "2026-12-24..",
            "x..y",
        ] {
            assert!(
                matches!(DateRange::parse(bad), Err(CalendarError::Entry { .. })),
                "{bad:?}"
            );
        }
        assert!(matches!(
            Calendar::new("Mars/Olympus", &["2026-12-25"]),
            Err(CalendarError::TimeZone(_))
        ));
        let many: Vec<String> = (0..=MAX_CALENDAR_ENTRIES)
            .map(|i| format!("2026-01-01..2026-01-{:02}", i % 28 + 1))
            .collect();
        assert!(matches!(
            Calendar::new("UTC", &many),
            Err(CalendarError::TooManyEntries(_))
        ));
        for bad in ["", "a b", "x/y", &"n".repeat(MAX_CALENDAR_NAME_LEN + 1)] {
            assert!(check_calendar_name(bad).is_err(), "{bad:?}");
        }
        assert!(check_calendar_name("holidays-fr.2026_v1").is_ok());
        assert!(check_calendar_names(&["a".into(), "a".into()]).is_err());
        let nine: Vec<String> = (0..=MAX_CALENDARS_PER_JOB)
            .map(|i| format!("c{i}"))
            .collect();
        assert!(check_calendar_names(&nine).is_err());
    }

    #[test]
    fn preview_skips_excluded_triggers_and_stays_bounded() {
        use crate::time_expression::{TimeExpression, TimeExpressionType};
        // Daily at 23:30 UTC: the trigger of the 24th is the 25th in Shanghai.
        let expr = TimeExpression::parse(TimeExpressionType::Cron, "0 30 23 * * ?", None).unwrap();
        let cal = Calendar::new("Asia/Shanghai", &["2026-12-25"]).unwrap();
        let after = ms("2026-12-23T00:00:00Z");
        let p = preview(&expr, Some(&cal), after, after, 3);
        assert_eq!(
            p.fires,
            [
                ms("2026-12-23T23:30:00Z"),
                ms("2026-12-25T23:30:00Z"),
                ms("2026-12-26T23:30:00Z")
            ]
        );
        assert_eq!(p.skipped, [ms("2026-12-24T23:30:00Z")]);
        // No calendar: every trigger fires.
        assert_eq!(preview(&expr, None, after, after, 2).fires.len(), 2);
        // A calendar that excludes every date: bounded, nothing fires.
        let all = Calendar::new("UTC", &["1970-01-01..2299-12-31"]).unwrap();
        let rate = TimeExpression::parse(TimeExpressionType::FixedRate, "1000", None).unwrap();
        let p = preview(&rate, Some(&all), after, after, 5);
        assert!(p.fires.is_empty());
        assert_eq!(p.skipped.len(), MAX_PREVIEW_SCAN);
    }

    #[test]
    fn preview_all_skips_what_any_calendar_excludes() {
        use crate::time_expression::{TimeExpression, TimeExpressionType};
        let expr = TimeExpression::parse(TimeExpressionType::Cron, "0 0 12 * * ?", None).unwrap();
        let fr = Calendar::new("Europe/Paris", &["2026-07-14"]).unwrap();
        let us = Calendar::new("America/New_York", &["2026-07-15..2026-07-16"]).unwrap();
        let after = ms("2026-07-13T13:00:00Z");
        let p = preview_all(&expr, &[fr, us], after, after, 2);
        assert_eq!(
            p.fires,
            [ms("2026-07-17T12:00:00Z"), ms("2026-07-18T12:00:00Z")]
        );
        assert_eq!(
            p.skipped,
            [
                ms("2026-07-14T12:00:00Z"),
                ms("2026-07-15T12:00:00Z"),
                ms("2026-07-16T12:00:00Z")
            ]
        );
        assert_eq!(
            preview_all(&expr, &[], after, after, 2),
            preview(&expr, None, after, after, 2)
        );
    }

    #[test]
    fn excluded_by_names_the_first_calendar_that_excludes() {
        let fr = Calendar::new("Europe/Paris", &["2026-07-14"]).unwrap();
        let cn = Calendar::new("Asia/Shanghai", &["2026-10-01..2026-10-07"]).unwrap();
        let cals = [("fr", &fr), ("cn", &cn)];
        assert_eq!(excluded_by(cals, ms("2026-07-14T08:00:00Z")), Some("fr"));
        assert_eq!(excluded_by(cals, ms("2026-10-03T08:00:00Z")), Some("cn"));
        assert_eq!(excluded_by(cals, ms("2026-07-15T08:00:00Z")), None);
        // Instants chrono cannot represent are never excluded.
        assert_eq!(excluded_by(cals, i64::MAX), None);
    }
}
