//! The next matching wall-clock time of a cron expression, jumping field by field.
//!
//! ```text
//!   year ──no──> next allowed year, Jan 1 00:00:00
//!    │ok
//!   month ─no──> next allowed month this year (else next year), day 1 00:00:00
//!    │ok
//!   day ───no──> next allowed day this month (else next month), 00:00:00
//!    │ok
//!   hour ──no──> next allowed hour today (else next day), :00:00
//!    │ok
//!   minute ─no─> next allowed minute this hour (else next hour), :00
//!    │ok
//!   second ─no─> next allowed second this minute (else next minute)
//!    │ok
//!   match
//! ```
//!
//! Every "no" moves the candidate forward and restarts from the top, so the loop runs a few
//! times per call. A day field that can never match (`0 0 0 30 2 ?`) costs one round per month
//! until the year passes 2099, where the search stops with `None`: at most about 1 600 rounds.

use super::field::next_bit;
use super::Fields;
use crate::time_expression::civil::{civil_from_days, days_from_civil, DAY_S};

/// The first local time (local seconds, see [`crate::time_expression::civil`]) at or after
/// `start` that `fields` match, or `None` if there is none through 2099-12-31 23:59:59.
pub(crate) fn next_local(fields: &Fields, start: i64) -> Option<i64> {
    let (mut year, mut month, mut day) = civil_from_days(start.div_euclid(DAY_S));
    let sod = start.rem_euclid(DAY_S) as u32;
    let (mut hour, mut minute, mut second) = (sod / 3600, sod / 60 % 60, sod % 60);
    // The day mask of the month last computed, so that hour/minute/second rounds reuse it.
    let mut cached: Option<(i32, u32, u64)> = None;
    loop {
        // Year.
        let y = fields.years.next(year)?;
        if y != year {
            (year, month, day, hour, minute, second) = (y, 1, 1, 0, 0, 0);
        }
        // Month.
        match next_bit(fields.months, month) {
            Some(m) if m <= 12 => {
                if m != month {
                    (month, day, hour, minute, second) = (m, 1, 0, 0, 0);
                }
            }
            _ => {
                (year, month, day, hour, minute, second) = (year + 1, 1, 1, 0, 0, 0);
                continue;
            }
        }
        // Day.
        let days = match cached {
            Some((y, m, mask)) if y == year && m == month => mask,
            _ => {
                let mask = fields.days.mask(year, month);
                cached = Some((year, month, mask));
                mask
            }
        };
        match next_bit(days, day) {
            Some(d) => {
                if d != day {
                    (day, hour, minute, second) = (d, 0, 0, 0);
                }
            }
            None => {
                (month, day, hour, minute, second) = (month + 1, 1, 0, 0, 0);
                continue;
            }
        }
        // Hour.
        match next_bit(fields.hours, hour) {
            Some(h) if h < 24 => {
                if h != hour {
                    (hour, minute, second) = (h, 0, 0);
                }
            }
            _ => {
                (day, hour, minute, second) = (day + 1, 0, 0, 0);
                continue;
            }
        }
        // Minute.
        match next_bit(fields.minutes, minute) {
            Some(m) if m < 60 => {
                if m != minute {
                    (minute, second) = (m, 0);
                }
            }
            _ => {
                (hour, minute, second) = (hour + 1, 0, 0);
                continue;
            }
        }
        // Second.
        match next_bit(fields.seconds, second) {
            Some(s) if s < 60 => second = s,
            _ => {
                (minute, second) = (minute + 1, 0);
                continue;
            }
        }
        let days = days_from_civil(year, month, day);
        return Some(days * DAY_S + i64::from(hour * 3600 + minute * 60 + second));
    }
}
