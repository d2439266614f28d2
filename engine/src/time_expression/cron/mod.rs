//! CRON: Quartz cron expressions with a per-job IANA time zone.
//!
//! ```text
//!   ┌──────────── seconds       0-59
//!   │ ┌────────── minutes       0-59
//!   │ │ ┌──────── hours         0-23
//!   │ │ │ ┌────── day-of-month  1-31  ? L L-n LW L-nW nW
//!   │ │ │ │ ┌──── month         1-12  JAN-DEC
//!   │ │ │ │ │ ┌── day-of-week   1-7   SUN-SAT (1 = SUN)  ? L nL n#k
//!   │ │ │ │ │ │ ┌ year          1970-2099 (optional)
//!   0 15 10 ? * 6#3 2026        10:15:00 on the third Friday of every month of 2026
//! ```
//!
//! Every field takes `*`, lists `a,b`, ranges `a-b` (wrapping when `a > b`, e.g. `FRI-MON`;
//! years excepted), and steps `*/n`, `a/n`, `a-b/n`. Names are three letters in any case.
//!
//! Day forms: `L` is the last day of the month and `L-n` the n-th day before it; `nW` is the
//! weekday (Mon–Fri) nearest to day n without leaving the month (`1W` on a Saturday is Monday the
//! 3rd, `31W` on a Sunday is Friday the 29th) and matches nothing in months without a day n;
//! `LW` is the month's last weekday and `L-nW` the weekday nearest to day `L-n` (in March 2026
//! `L-2W` is the weekday nearest Sunday the 29th: Monday the 30th). In day-of-week, `nL` is the last weekday n of the month
//! (`6L` = last Friday), `n#k` the k-th one (`6#3` = third Friday; a month without a fifth
//! `5#5` is skipped) and `L` alone is Saturday, as in Quartz; an `L` item cannot be listed
//! with other days of the week, as in Quartz.
//!
//! Day-of-month and day-of-week: Quartz requires `?` in exactly one of them. ferrojob accepts
//! that and, more leniently, `*` in place of `?` (so `0 0 12 * * MON` means every Monday and
//! `* * * * * *` every second): whichever field is restricted decides, and `?`/`*` in both means
//! every day. Restricting both (`0 0 0 15 * MON`) is rejected, as in Quartz, because "the 15th
//! or a Monday" and "the 15th if a Monday" are both plausible readings. Day-of-month lists may
//! mix plain and special items (`1,L`, `15W,L-2W,L`), which Quartz itself rejects.
//!
//! # Time zones and DST
//!
//! The expression matches wall-clock times in the schedule's zone (UTC by default). The DST
//! contract, tested in Europe/Berlin and America/New_York:
//!
//! - each matching wall-clock time fires at most once: in an overlap (fall back) it fires at its
//!   first occurrence only, never again when the hour repeats;
//! - a matching time inside a gap (spring forward) fires once, at the first instant after the
//!   gap (the transition itself), so a daily job never skips a day; several matching times inside
//!   one gap collapse into that one fire.
//!
//! See [`crate::time_expression::zone`] for how wall-clock times map to instants.
//!
//! # Cost
//!
//! [`CronSchedule::next_after`] jumps field by field (see `cron/next.rs`), never second by second, and
//! stops at the end of 2099 with `None`, so an expression that can never match
//! (`0 0 0 30 2 ?`) returns `None` after at most ~1 600 cheap rounds.

mod days;
mod field;
mod next;
mod parse;

use std::fmt;

use chrono_tz::Tz;

pub use field::CronField;

use super::{zone, EpochMs, TimeExpressionError};
use days::DaySpec;
use field::{Bits, YearSet};

/// The parsed fields of an expression: which values each allows.
///
/// Invariant: `seconds`/`minutes` use bits 0–59, `hours` 0–23, `months` 1–12.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Fields {
    seconds: Bits,
    minutes: Bits,
    hours: Bits,
    days: DaySpec,
    months: Bits,
    years: YearSet,
}

/// A parsed Quartz cron expression in a time zone; see the [module docs](self) for the syntax
/// and the DST contract. `Display` prints the expression as written (trimmed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CronSchedule {
    source: String,
    tz: Tz,
    fields: Fields,
}

impl CronSchedule {
    /// Parses `expr` (Quartz syntax) to fire in time zone `tz`.
    ///
    /// Errors name the field and the reason, e.g. ``invalid CRON expression `0 0 0 ? * 8`:
    /// day-of-week: 8 is out of range 1-7 (1 = SUN, or SUN-SAT)``. Never panics.
    pub fn parse(expr: &str, tz: Tz) -> Result<CronSchedule, TimeExpressionError> {
        match parse::parse(expr) {
            Ok(fields) => Ok(CronSchedule {
                source: expr.trim().to_owned(),
                tz,
                fields,
            }),
            Err(e) => {
                // Bound the echoed expression so a huge input makes a readable message.
                let shown: String = expr.trim().chars().take(120).collect();
                let expr = if shown.len() < expr.trim().len() {
                    format!("{shown}...")
                } else {
                    shown
                };
                Err(TimeExpressionError::Cron {
                    expr,
                    field: e.field,
                    reason: e.reason,
                })
            }
        }
    }

    /// The first fire strictly after `after` (milliseconds since the Unix epoch, UTC), or `None`
    /// when the expression matches nothing more through 2099 in its zone. Fires are whole seconds.
    pub fn next_after(&self, after: EpochMs) -> Option<EpochMs> {
        zone::next_fire(self.tz, after, |start| {
            next::next_local(&self.fields, start)
        })
    }

    /// The expression's time zone.
    pub fn time_zone(&self) -> Tz {
        self.tz
    }

    /// The expression as written (trimmed).
    pub fn source(&self) -> &str {
        &self.source
    }
}

impl fmt::Display for CronSchedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}
