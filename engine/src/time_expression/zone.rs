//! Time zones: parsing IANA names, and mapping wall-clock times to instants under the DST
//! contract shared by CRON and DAILY_TIME_INTERVAL.
//!
//! Expressions match *wall-clock* (local) times. Most local times name exactly one instant, but
//! around a DST transition some name none (a gap, spring forward) and some name two (an overlap,
//! fall back). Each matching local time `T` fires at
//!
//! ```text
//!   fire(T) = the first instant whose wall-clock reading is >= T
//!
//!   unique  T ----------------> that instant
//!   overlap T (read twice) ---> the first reading only; the repeat never fires
//!   gap     T (never read) ---> the transition instant, the first one after the gap
//! ```
//!
//! `fire` never decreases as `T` grows, so the first fire after an instant `A` is `fire(T)` of
//! the first matching `T` with `fire(T) > A`, and several matching times inside one gap collapse
//! into one fire. No matching local time is ever skipped and none fires twice.

use chrono::{DateTime, Offset, TimeZone};
use chrono_tz::Tz;

use super::civil::DAY_S;
use super::{EpochMs, TimeExpressionError};

/// Parses an IANA time-zone name; `None`, an empty or blank name mean UTC.
///
/// Exact names (`Europe/Berlin`) are tried first, then a case-insensitive match (`europe/berlin`).
pub fn parse_time_zone(name: Option<&str>) -> Result<Tz, TimeExpressionError> {
    let Some(name) = name.map(str::trim).filter(|n| !n.is_empty()) else {
        return Ok(Tz::UTC);
    };
    name.parse::<Tz>()
        .ok()
        .or_else(|| {
            chrono_tz::TZ_VARIANTS
                .iter()
                .copied()
                .find(|tz| tz.name().eq_ignore_ascii_case(name))
        })
        .ok_or_else(|| TimeExpressionError::UnknownTimeZone {
            name: name.to_owned(),
        })
}

/// Earliest instant the searches consider (1969-01-01T00:00:00Z, seconds): every zone's local
/// 1970-01-01 lies after it, and chrono converts everything in between.
const MIN_SEARCH_S: i64 = -365 * DAY_S;
/// Latest instant the searches consider (2200-01-01T00:00:00Z, seconds); CRON stops at 2099 anyway.
const MAX_SEARCH_S: i64 = 7_258_118_400;

/// Whole seconds of `after`, rounded down and clamped into the searchable range; `None` when
/// `after` lies beyond it (nothing can fire after that).
pub(crate) fn after_seconds(after: EpochMs) -> Option<i64> {
    let s = after.div_euclid(1000);
    if s >= MAX_SEARCH_S {
        None
    } else {
        Some(s.max(MIN_SEARCH_S))
    }
}

/// Offset of `tz` from UTC, in seconds, at the instant `utc_s` (seconds since the epoch).
fn offset_at(tz: Tz, utc_s: i64) -> i64 {
    match DateTime::from_timestamp(utc_s, 0) {
        Some(t) => i64::from(
            tz.offset_from_utc_datetime(&t.naive_utc())
                .fix()
                .local_minus_utc(),
        ),
        None => 0,
    }
}

/// Wall-clock reading of `tz` at instant `utc_s`, as local seconds.
pub(crate) fn local_at(tz: Tz, utc_s: i64) -> i64 {
    if tz == Tz::UTC {
        return utc_s;
    }
    utc_s + offset_at(tz, utc_s)
}

/// `fire(T)` of the module doc: the first instant (seconds) whose wall-clock reading in `tz` is
/// at or after the local time `local_s`.
pub(crate) fn fire_instant(tz: Tz, local_s: i64) -> i64 {
    if tz == Tz::UTC {
        return local_s;
    }
    let Some(naive) = DateTime::from_timestamp(local_s, 0).map(|t| t.naive_utc()) else {
        return local_s;
    };
    match tz.offset_from_local_datetime(&naive) {
        chrono::LocalResult::Single(o) => local_s - i64::from(o.fix().local_minus_utc()),
        chrono::LocalResult::Ambiguous(a, b) => {
            let a = local_s - i64::from(a.fix().local_minus_utc());
            let b = local_s - i64::from(b.fix().local_minus_utc());
            a.min(b)
        }
        // A gap: the tz database knows where it ends; the search is a fallback for gaps at the
        // edges of its table.
        chrono::LocalResult::None => chrono_tz::GapInfo::new(&naive, &tz)
            .and_then(|gap| gap.end)
            .map(|end| end.timestamp())
            .unwrap_or_else(|| first_instant_reading_at_least(tz, local_s)),
    }
}

/// Binary search for the first instant whose reading is `>= local_s`, for a `local_s` inside a
/// gap that the tz database's `GapInfo` cannot bound. Offsets lie within ±26 h, so the answer is within a day and a bit of `local_s`; in that
/// window the reading only jumps forward (zones do not stack a gap and an overlap within hours).
fn first_instant_reading_at_least(tz: Tz, local_s: i64) -> i64 {
    let mut lo = local_s - 27 * 3600; // reading < local_s here
    let mut hi = local_s + 27 * 3600; // reading >= local_s here
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if local_at(tz, mid) >= local_s {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    hi
}

/// The first fire strictly after `after` of a schedule that matches local times, given the
/// schedule's `next_local(start)`: the first matching local time `>= start` (local seconds), or
/// `None` when nothing matches any more.
///
/// Applies the DST contract of the module doc. Terminates because `start` grows strictly on every
/// round and `next_local` returns `None` past its last year; it takes one round, two when
/// `after` lies in the repeated hour of an overlap (then the second starts past the overlap).
pub(crate) fn next_fire(
    tz: Tz,
    after: EpochMs,
    mut next_local: impl FnMut(i64) -> Option<i64>,
) -> Option<EpochMs> {
    let after_s = after_seconds(after)?;
    // Fires are whole seconds: a fire is after `after` iff it is after `after_s`.
    let mut start = local_at(tz, after_s) + 1;
    loop {
        let t = next_local(start)?;
        let fire = fire_instant(tz, t);
        if fire > after_s {
            return fire.checked_mul(1000);
        }
        // `t` is read twice and `after` lies in the second reading (a fall-back overlap), so every
        // local time read twice has fired already at its first reading: resume at the end of
        // the overlap, the transition instant read under the first (earlier) offset.
        let first_offset = t - fire;
        let now_offset = local_at(tz, after_s) - after_s;
        start = if first_offset > now_offset {
            // The transition lies in (after - (first - now), after]: find it.
            let mut lo = after_s - (first_offset - now_offset); // still the first offset
            let mut hi = after_s; // already the later offset
            while hi - lo > 1 {
                let mid = lo + (hi - lo) / 2;
                if local_at(tz, mid) - mid == now_offset {
                    hi = mid;
                } else {
                    lo = mid;
                }
            }
            (t + 1).max(hi + first_offset)
        } else {
            t + 1
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> i64 {
        super::super::civil::days_from_civil(y, mo, d) * DAY_S + i64::from(h * 3600 + mi * 60)
    }

    #[test]
    fn berlin_gap_maps_to_transition() {
        let tz: Tz = "Europe/Berlin".parse().unwrap();
        // 2026-03-29 02:30 local does not exist; the clocks jump at 01:00Z from 02:00 to 03:00.
        assert_eq!(
            fire_instant(tz, utc(2026, 3, 29, 2, 30)),
            utc(2026, 3, 29, 1, 0)
        );
        assert_eq!(
            fire_instant(tz, utc(2026, 3, 29, 2, 0)),
            utc(2026, 3, 29, 1, 0)
        );
        assert_eq!(
            fire_instant(tz, utc(2026, 3, 29, 3, 0)),
            utc(2026, 3, 29, 1, 0)
        );
        assert_eq!(
            fire_instant(tz, utc(2026, 3, 29, 1, 59)),
            utc(2026, 3, 29, 0, 59)
        );
    }

    #[test]
    fn gap_search_agrees_with_the_tz_database() {
        for (zone, local) in [
            ("Europe/Berlin", utc(2026, 3, 29, 2, 30)),
            ("America/New_York", utc(2026, 3, 8, 2, 0)),
            ("Australia/Lord_Howe", utc(2026, 10, 4, 2, 10)),
            ("Pacific/Apia", utc(2011, 12, 30, 12, 0)),
        ] {
            let tz: Tz = zone.parse().unwrap();
            assert_eq!(
                first_instant_reading_at_least(tz, local),
                fire_instant(tz, local),
                "{zone}"
            );
        }
    }

    #[test]
    fn berlin_overlap_maps_to_first_reading() {
        let tz: Tz = "Europe/Berlin".parse().unwrap();
        // 2026-10-25 02:30 local is read at 00:30Z (CEST) and again at 01:30Z (CET).
        assert_eq!(
            fire_instant(tz, utc(2026, 10, 25, 2, 30)),
            utc(2026, 10, 25, 0, 30)
        );
        assert_eq!(
            fire_instant(tz, utc(2026, 10, 25, 3, 0)),
            utc(2026, 10, 25, 2, 0)
        );
    }

    #[test]
    fn time_zone_names() {
        assert_eq!(parse_time_zone(None).unwrap(), Tz::UTC);
        assert_eq!(parse_time_zone(Some(" ")).unwrap(), Tz::UTC);
        assert_eq!(
            parse_time_zone(Some("asia/shanghai")).unwrap(),
            Tz::Asia__Shanghai
        );
        let err = parse_time_zone(Some("Mars/Olympus")).unwrap_err();
        assert!(err.to_string().contains("Mars/Olympus"), "{err}");
    }
}
