//! DAILY_TIME_INTERVAL: every `interval` between a start and an end time of day, on chosen
//! weekdays, in the job's time zone.
//!
//! The expression is PowerJob's JSON object:
//!
//! ```text
//!   {"interval": 10, "unit": "MINUTES",          interval >= 1; unit SECONDS (default),
//!    "startTimeOfDay": "09:00:00",               MINUTES, HOURS, or MILLISECONDS (multiples
//!    "endTimeOfDay": "18:00:00",                 of 1000); "intervalUnit" is accepted too
//!    "daysOfWeek": [2, 3, 4, 5, 6]}              1 = SUN ... 7 = SAT, or "MON".."SUN";
//!                                                absent or [] = every day
//! ```
//!
//! Times of day are `HH:MM:SS` or `HH:MM`, 24-hour; both default to the whole day (`00:00:00`,
//! `23:59:59`) and the end is inclusive. On each chosen day the job fires at
//! `start, start + interval, ...` while `<= end`, so fires stay aligned to `start` however late a
//! run is. The interval is at most one day. Weekday numbers follow Quartz (1 = SUN), like CRON,
//! whereas PowerJob's own handler counts 1 = MON: translate when importing PowerJob jobs.
//!
//! Wall-clock times follow the DST contract of [`crate::time_expression::zone`]: in a gap the
//! missing slots collapse into one fire at the transition; in an overlap the repeated hour does
//! not fire again.

use std::fmt;

use chrono_tz::Tz;
use serde::Deserialize;
use serde_json::Value;

use super::civil::{weekday_of_days, DAY_S};
use super::{zone, EpochMs, TimeExpressionError};

/// The unit of a DAILY_TIME_INTERVAL's `interval`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum IntervalUnit {
    /// Milliseconds; the interval must be a whole number of seconds.
    Milliseconds,
    /// Seconds (the default).
    Seconds,
    /// Minutes.
    Minutes,
    /// Hours.
    Hours,
}

impl IntervalUnit {
    fn as_str(self) -> &'static str {
        match self {
            IntervalUnit::Milliseconds => "MILLISECONDS",
            IntervalUnit::Seconds => "SECONDS",
            IntervalUnit::Minutes => "MINUTES",
            IntervalUnit::Hours => "HOURS",
        }
    }
}

/// A parsed DAILY_TIME_INTERVAL expression in a time zone; see the [module docs](self).
///
/// Invariants: `1 <= interval_s <= 86 400`; `start_s <= end_s < 86 400`; `days` uses bits 1–7
/// (1 = SUN) and is not empty.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DailyTimeInterval {
    interval: u64,
    unit: IntervalUnit,
    interval_s: u32,
    start_s: u32,
    end_s: u32,
    days: u8,
    tz: Tz,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Raw {
    interval: Value,
    #[serde(default, alias = "intervalUnit")]
    unit: Option<String>,
    #[serde(default)]
    start_time_of_day: Option<String>,
    #[serde(default)]
    end_time_of_day: Option<String>,
    #[serde(default)]
    days_of_week: Option<Vec<Value>>,
}

impl DailyTimeInterval {
    /// Parses the JSON expression to fire in time zone `tz`.
    pub fn parse(expr: &str, tz: Tz) -> Result<DailyTimeInterval, TimeExpressionError> {
        let shown: String = expr.trim().chars().take(200).collect();
        let invalid = |reason: String| TimeExpressionError::DailyTimeInterval {
            expr: shown.clone(),
            reason,
        };
        let raw: Raw = serde_json::from_str(expr).map_err(|e| {
            invalid(format!(
                "{e}; expected JSON like {{\"interval\":10,\"unit\":\"MINUTES\",\"startTimeOfDay\":\"09:00:00\",\"endTimeOfDay\":\"18:00:00\",\"daysOfWeek\":[2,3,4,5,6]}}"
            ))
        })?;
        let interval = match &raw.interval {
            Value::Number(n) => n.as_u64(),
            Value::String(s) => s.trim().parse::<u64>().ok(),
            _ => None,
        }
        .filter(|n| *n >= 1)
        .ok_or_else(|| {
            invalid(format!(
                "interval: {} is not a whole number >= 1",
                raw.interval
            ))
        })?;
        let unit = match raw.unit.as_deref().map(str::trim) {
            None | Some("") => IntervalUnit::Seconds,
            Some(u) => match u.to_ascii_uppercase().as_str() {
                "MILLISECONDS" | "MS" => IntervalUnit::Milliseconds,
                "SECONDS" | "SECOND" | "S" => IntervalUnit::Seconds,
                "MINUTES" | "MINUTE" | "M" => IntervalUnit::Minutes,
                "HOURS" | "HOUR" | "H" => IntervalUnit::Hours,
                _ => {
                    return Err(invalid(format!(
                        "unit: `{}` is not one of SECONDS, MINUTES, HOURS, MILLISECONDS",
                        u.chars().take(32).collect::<String>()
                    )))
                }
            },
        };
        let interval_s = match unit {
            IntervalUnit::Milliseconds if interval % 1000 != 0 => {
                return Err(invalid(format!(
                    "interval: {interval} MILLISECONDS is not a whole number of seconds; fires are whole seconds"
                )))
            }
            IntervalUnit::Milliseconds => interval / 1000,
            IntervalUnit::Seconds => interval,
            IntervalUnit::Minutes => interval.saturating_mul(60),
            IntervalUnit::Hours => interval.saturating_mul(3600),
        };
        if interval_s > DAY_S as u64 {
            return Err(invalid(format!(
                "interval: {interval} {} is longer than a day; use CRON for less frequent schedules",
                unit.as_str()
            )));
        }
        let start_s = match &raw.start_time_of_day {
            Some(t) => time_of_day(t).ok_or_else(|| {
                invalid(format!(
                    "startTimeOfDay: `{t}` is not a time of day HH:MM:SS (00:00:00-23:59:59)"
                ))
            })?,
            None => 0,
        };
        let end_s = match &raw.end_time_of_day {
            Some(t) => time_of_day(t).ok_or_else(|| {
                invalid(format!(
                    "endTimeOfDay: `{t}` is not a time of day HH:MM:SS (00:00:00-23:59:59)"
                ))
            })?,
            None => DAY_S as u32 - 1,
        };
        if end_s < start_s {
            return Err(invalid(
                "endTimeOfDay is before startTimeOfDay; the window must lie within one day".into(),
            ));
        }
        let mut days = 0u8;
        for v in raw.days_of_week.iter().flatten() {
            let day = match v {
                Value::Number(n) => n.as_u64().filter(|d| (1..=7).contains(d)),
                Value::String(s) => weekday_name(s.trim()),
                _ => None,
            }
            .ok_or_else(|| {
                invalid(format!(
                    "daysOfWeek: {v} is not a weekday 1-7 (1 = SUN) or SUN-SAT"
                ))
            })?;
            days |= 1 << day;
        }
        if days == 0 {
            days = 0b1111_1110;
        }
        Ok(DailyTimeInterval {
            interval,
            unit,
            // At most 86 400 (checked above).
            interval_s: interval_s as u32,
            start_s,
            end_s,
            days,
            tz,
        })
    }

    /// The first fire strictly after `after` (milliseconds since the Unix epoch), or `None` past
    /// the searchable range (year 2200).
    pub fn next_after(&self, after: EpochMs) -> Option<EpochMs> {
        zone::next_fire(self.tz, after, |start| self.next_local(start))
    }

    /// The first slot at or after local time `start` (local seconds).
    fn next_local(&self, start: i64) -> Option<i64> {
        let first_day = start.div_euclid(DAY_S);
        let mut sod = start.rem_euclid(DAY_S) as u32;
        // `days` is never empty, so one of the next eight days has a slot.
        for day in first_day..first_day + 8 {
            if self.days & (1 << weekday_of_days(day)) != 0 {
                let t = if sod <= self.start_s {
                    self.start_s
                } else {
                    let k = (sod - self.start_s).div_ceil(self.interval_s);
                    self.start_s
                        .saturating_add(k.saturating_mul(self.interval_s))
                };
                if t <= self.end_s {
                    return Some(day * DAY_S + i64::from(t));
                }
            }
            sod = 0;
        }
        None
    }

    /// The interval in seconds (1–86 400).
    pub fn interval_seconds(&self) -> u32 {
        self.interval_s
    }

    /// The window's first fire time of day, in seconds after midnight.
    pub fn start_time_of_day(&self) -> u32 {
        self.start_s
    }

    /// The window's last possible fire time of day (inclusive), in seconds after midnight.
    pub fn end_time_of_day(&self) -> u32 {
        self.end_s
    }

    /// The weekdays it fires on, Quartz numbering (1 = SUN ... 7 = SAT), ascending.
    pub fn days_of_week(&self) -> Vec<u8> {
        (1..=7).filter(|d| self.days & (1 << d) != 0).collect()
    }

    /// The expression's time zone.
    pub fn time_zone(&self) -> Tz {
        self.tz
    }
}

/// Canonical JSON, with every field spelled out.
impl fmt::Display for DailyTimeInterval {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hms = |s: u32| format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60);
        let days: Vec<String> = self.days_of_week().iter().map(u8::to_string).collect();
        write!(
            f,
            "{{\"interval\":{},\"unit\":\"{}\",\"startTimeOfDay\":\"{}\",\"endTimeOfDay\":\"{}\",\"daysOfWeek\":[{}]}}",
            self.interval,
            self.unit.as_str(),
            hms(self.start_s),
            hms(self.end_s),
            days.join(",")
        )
    }
}

/// `HH:MM:SS` or `HH:MM` as seconds after midnight.
fn time_of_day(text: &str) -> Option<u32> {
    let mut parts = text.trim().split(':');
    let mut next = |max: u32| -> Option<u32> {
        let p = parts.next()?;
        if p.is_empty() || p.len() > 2 || !p.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        p.parse::<u32>().ok().filter(|v| *v <= max)
    };
    let h = next(23)?;
    let m = next(59)?;
    let s = match parts.next() {
        None => 0,
        Some(p) if !p.is_empty() && p.len() <= 2 && p.bytes().all(|b| b.is_ascii_digit()) => {
            p.parse::<u32>().ok().filter(|v| *v <= 59)?
        }
        Some(_) => return None,
    };
    if parts.next().is_some() {
        return None;
    }
    Some(h * 3600 + m * 60 + s)
}

/// `SUN`..`SAT` (or full names, any case) and numeric strings `"1"`..`"7"` as 1–7.
fn weekday_name(s: &str) -> Option<u64> {
    if let Ok(n) = s.parse::<u64>() {
        return (1..=7).contains(&n).then_some(n);
    }
    const NAMES: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];
    let upper = s.to_ascii_uppercase();
    let pos = NAMES
        .iter()
        .position(|n| upper == *n || upper.starts_with(n) && upper.ends_with("DAY"))?;
    Some(pos as u64 + 1)
}
