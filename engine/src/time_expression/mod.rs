//! Time expressions: when a job fires.
//!
//! Each [`TimeExpressionType`] has a parser/validator ([`TimeExpression::parse`]) and a
//! next-trigger function ([`TimeExpression::next_after`]). All instants are [`EpochMs`]:
//! `i64` milliseconds since the Unix epoch, UTC. The functions here are pure: they read no
//! clock, so "now" always comes in as an argument.
//!
//! ```text
//!   type                 expression                          fires
//!   API                  (empty)                             only when triggered
//!   CRON                 0 15 10 ? * 6#3                     Quartz cron, in the job's zone
//!   FIXED_RATE           60000                               anchor + k·period, k >= 1
//!   FIXED_DELAY          60000                               last completion + delay
//!   DAILY_TIME_INTERVAL  {"interval":10,"unit":"MINUTES",...}  every interval in a daily window
//!   WORKFLOW             (empty)                             only as part of a workflow
//! ```
//!
//! Modules: [`cron`] (Quartz syntax, DST contract), [`fixed`], [`daily`], [`lifecycle`]
//! (window and misfire policy), [`zone`] (time zones and the wall-clock → instant mapping
//! shared by CRON and DAILY_TIME_INTERVAL), `civil` (calendar arithmetic).
//!
//! Invariants: parsing never panics, whatever the input (fuzzed by `cron_parse`); next-trigger
//! functions never loop unboundedly and never return a time at or before `after`.
//!
//! Testing: `engine/tests/cron_prop.rs` checks CRON against an independently written model
//! scanned minute by minute in UTC, Europe/Berlin, America/New_York and Australia/Lord_Howe;
//! `engine/tests/cron_table.rs` and `engine/tests/time_expression_table.rs` are one-line
//! table tests (leap years, `L`, `W`, `#`, DST gaps and overlaps, errors naming the field);
//! the fuzz target `cron_parse` parses any bytes as every type and checks that triggers
//! strictly increase.

// Everything here is fed by users (expressions, zone names): no panicking shortcuts.
#![forbid(unsafe_code)]
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

mod civil;
pub mod cron;
pub mod daily;
mod error;
pub mod fixed;
pub mod lifecycle;
pub mod zone;

use std::fmt;
use std::str::FromStr;

use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

pub use cron::{CronField, CronSchedule};
pub use daily::{DailyTimeInterval, IntervalUnit};
pub use error::TimeExpressionError;
pub use lifecycle::{Lifecycle, MisfirePolicy};
pub use zone::parse_time_zone;

/// An instant: milliseconds since the Unix epoch (1970-01-01T00:00:00Z), UTC.
pub type EpochMs = i64;

/// The kinds of time expression, named as in PowerJob (serialized `SCREAMING_SNAKE_CASE`).
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[rkyv(derive(Debug, PartialEq, Eq))]
pub enum TimeExpressionType {
    /// Fires only when triggered through the API.
    Api,
    /// Quartz cron expression in a time zone.
    Cron,
    /// Every period from a fixed anchor.
    FixedRate,
    /// A delay after the previous run completed.
    FixedDelay,
    /// Every interval within a daily window on chosen weekdays.
    DailyTimeInterval,
    /// Fires only as a node of a workflow.
    Workflow,
}

impl TimeExpressionType {
    /// Every type.
    pub const ALL: [TimeExpressionType; 6] = [
        TimeExpressionType::Api,
        TimeExpressionType::Cron,
        TimeExpressionType::FixedRate,
        TimeExpressionType::FixedDelay,
        TimeExpressionType::DailyTimeInterval,
        TimeExpressionType::Workflow,
    ];

    /// The canonical name, e.g. `FIXED_RATE`.
    pub fn as_str(self) -> &'static str {
        match self {
            TimeExpressionType::Api => "API",
            TimeExpressionType::Cron => "CRON",
            TimeExpressionType::FixedRate => "FIXED_RATE",
            TimeExpressionType::FixedDelay => "FIXED_DELAY",
            TimeExpressionType::DailyTimeInterval => "DAILY_TIME_INTERVAL",
            TimeExpressionType::Workflow => "WORKFLOW",
        }
    }
}

impl fmt::Display for TimeExpressionType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Upper-cases and turns `-` and spaces into `_`: `fixed-rate` → `FIXED_RATE`.
pub(crate) fn normalize_name(s: &str) -> String {
    s.trim()
        .chars()
        .map(|c| match c {
            '-' | ' ' => '_',
            c => c.to_ascii_uppercase(),
        })
        .collect()
}

/// Accepts the canonical names in any case, with `-` or `_` (`cron`, `fixed-rate`,
/// `FIXED_RATE`, `daily-time-interval`), and PowerJob's `FIX_RATE` / `FIX_DELAY`.
impl FromStr for TimeExpressionType {
    type Err = TimeExpressionError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = match normalize_name(s).as_str() {
            "API" => TimeExpressionType::Api,
            "CRON" => TimeExpressionType::Cron,
            "FIXED_RATE" | "FIX_RATE" => TimeExpressionType::FixedRate,
            "FIXED_DELAY" | "FIX_DELAY" => TimeExpressionType::FixedDelay,
            "DAILY_TIME_INTERVAL" => TimeExpressionType::DailyTimeInterval,
            "WORKFLOW" => TimeExpressionType::Workflow,
            _ => {
                return Err(TimeExpressionError::UnknownType {
                    name: s.chars().take(64).collect(),
                })
            }
        };
        Ok(t)
    }
}

/// A parsed, validated time expression.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TimeExpression {
    /// Fires only when triggered (the scheduler handles an optional delay).
    Api,
    /// Quartz cron in a time zone. Boxed: a cron schedule is ~120 bytes of bit sets, and every
    /// scheduled job holds a `TimeExpression`, whatever its type.
    Cron(Box<CronSchedule>),
    /// Fires at `anchor + k·period_ms`, k >= 1, where the anchor is the schedule's start.
    FixedRate {
        /// Period in milliseconds, at least 1.
        period_ms: u64,
    },
    /// Fires `delay_ms` after the anchor, the completion of the previous run.
    FixedDelay {
        /// Delay in milliseconds, at least 1.
        delay_ms: u64,
    },
    /// Every interval within a daily window on chosen weekdays, in a time zone. Boxed, like
    /// CRON: inline it would make every `TimeExpression` 24 bytes instead of 16.
    DailyTimeInterval(Box<DailyTimeInterval>),
    /// Fires only as a node of a workflow.
    Workflow,
}

impl TimeExpression {
    /// Parses and validates `expr` as a `kind` expression.
    ///
    /// `tz`: IANA name, `None` (or blank) = UTC; used by CRON and DAILY_TIME_INTERVAL and
    /// validated for every kind. API and WORKFLOW take an empty (or blank) expression.
    pub fn parse(
        kind: TimeExpressionType,
        expr: &str,
        tz: Option<&str>,
    ) -> Result<TimeExpression, TimeExpressionError> {
        let tz = parse_time_zone(tz)?;
        Ok(match kind {
            TimeExpressionType::Api | TimeExpressionType::Workflow => {
                if !expr.trim().is_empty() {
                    return Err(TimeExpressionError::UnexpectedExpression {
                        kind,
                        expr: expr.trim().chars().take(64).collect(),
                    });
                }
                if kind == TimeExpressionType::Api {
                    TimeExpression::Api
                } else {
                    TimeExpression::Workflow
                }
            }
            TimeExpressionType::Cron => {
                TimeExpression::Cron(Box::new(CronSchedule::parse(expr, tz)?))
            }
            TimeExpressionType::FixedRate => TimeExpression::FixedRate {
                period_ms: fixed::parse_period(kind, expr)?,
            },
            TimeExpressionType::FixedDelay => TimeExpression::FixedDelay {
                delay_ms: fixed::parse_period(kind, expr)?,
            },
            TimeExpressionType::DailyTimeInterval => {
                TimeExpression::DailyTimeInterval(Box::new(DailyTimeInterval::parse(expr, tz)?))
            }
        })
    }

    /// The expression's type.
    pub fn kind(&self) -> TimeExpressionType {
        match self {
            TimeExpression::Api => TimeExpressionType::Api,
            TimeExpression::Cron(_) => TimeExpressionType::Cron,
            TimeExpression::FixedRate { .. } => TimeExpressionType::FixedRate,
            TimeExpression::FixedDelay { .. } => TimeExpressionType::FixedDelay,
            TimeExpression::DailyTimeInterval(_) => TimeExpressionType::DailyTimeInterval,
            TimeExpression::Workflow => TimeExpressionType::Workflow,
        }
    }

    /// The first trigger strictly after `after`; `None` = never again (API and WORKFLOW always,
    /// CRON past its last match through 2099, arithmetic overflow).
    ///
    /// `anchor`: FIXED_RATE's start (fires at `anchor + k·period_ms`, k >= 1, so never drifts),
    /// FIXED_DELAY's last completion (fires at `anchor + k·delay_ms`, k >= 1: the first is the
    /// delay after that completion, later ones only matter if nothing ran since). Ignored by
    /// CRON and DAILY_TIME_INTERVAL, which depend on the wall clock only.
    pub fn next_after(&self, anchor: EpochMs, after: EpochMs) -> Option<EpochMs> {
        match self {
            TimeExpression::Api | TimeExpression::Workflow => None,
            TimeExpression::Cron(c) => c.next_after(after),
            TimeExpression::FixedRate { period_ms } => fixed::next_after(*period_ms, anchor, after),
            TimeExpression::FixedDelay { delay_ms } => fixed::next_after(*delay_ms, anchor, after),
            TimeExpression::DailyTimeInterval(d) => d.next_after(after),
        }
    }

    /// [`TimeExpression::next_after`] restricted to a lifecycle window: the first trigger
    /// strictly after `after` that lies in `lifecycle`, or `None`.
    pub fn next_within(
        &self,
        lifecycle: &Lifecycle,
        anchor: EpochMs,
        after: EpochMs,
    ) -> Option<EpochMs> {
        let next = self.next_after(anchor, lifecycle.clamp(after))?;
        lifecycle.contains(next).then_some(next)
    }

    /// The next `n` triggers strictly after `after`, ascending (fewer if the schedule ends).
    /// FIXED_DELAY assumes each run completes the instant it fires, so its triggers are spaced
    /// exactly `delay_ms` apart from `anchor`.
    pub fn next_n(&self, anchor: EpochMs, after: EpochMs, n: usize) -> Vec<EpochMs> {
        let mut out = Vec::with_capacity(n.min(1024));
        let mut after = after;
        while out.len() < n {
            let Some(t) = self.next_after(anchor, after) else {
                break;
            };
            out.push(t);
            after = t;
        }
        out
    }

    /// The time zone the expression fires in: CRON's and DAILY_TIME_INTERVAL's own, else UTC.
    pub fn time_zone(&self) -> Tz {
        match self {
            TimeExpression::Cron(c) => c.time_zone(),
            TimeExpression::DailyTimeInterval(d) => d.time_zone(),
            _ => Tz::UTC,
        }
    }
}

/// The expression text: the cron source, the period in ms, the canonical JSON, or empty.
impl fmt::Display for TimeExpression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TimeExpression::Api | TimeExpression::Workflow => Ok(()),
            TimeExpression::Cron(c) => c.fmt(f),
            TimeExpression::FixedRate { period_ms } => write!(f, "{period_ms}"),
            TimeExpression::FixedDelay { delay_ms } => write!(f, "{delay_ms}"),
            TimeExpression::DailyTimeInterval(d) => d.fmt(f),
        }
    }
}

/// The next `n` triggers of `expr` strictly after `after`; see [`TimeExpression::next_n`].
pub fn next_n(expr: &TimeExpression, anchor: EpochMs, after: EpochMs, n: usize) -> Vec<EpochMs> {
    expr.next_n(anchor, after, n)
}
