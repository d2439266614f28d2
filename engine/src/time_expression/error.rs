//! The one error type of time expressions.

use thiserror::Error;

use super::cron::CronField;
use super::{EpochMs, TimeExpressionType};

/// Why a time expression, time zone, lifecycle window or policy name was rejected. Every message
/// is a full sentence naming the offending expression, field or value and what is expected.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum TimeExpressionError {
    /// A CRON expression does not parse. `field` is the field to blame (`None` when the
    /// expression as a whole is wrong, e.g. the number of fields).
    #[error("invalid CRON expression `{expr}`: {}{reason}", field.map(|f| format!("{f}: ")).unwrap_or_default())]
    Cron {
        /// The expression (trimmed, cut to 120 characters).
        expr: String,
        /// The offending field, if one is to blame.
        field: Option<CronField>,
        /// What is wrong and what is expected, e.g. `8 is out of range 1-7 (1 = SUN, or SUN-SAT)`.
        reason: String,
    },
    /// A FIXED_RATE period or FIXED_DELAY delay does not parse.
    #[error("invalid {kind} expression `{value}`: {reason}")]
    Period {
        /// FIXED_RATE or FIXED_DELAY.
        kind: TimeExpressionType,
        /// The expression (trimmed, cut to 64 characters).
        value: String,
        /// What is wrong and what is expected.
        reason: String,
    },
    /// A DAILY_TIME_INTERVAL expression does not parse.
    #[error("invalid DAILY_TIME_INTERVAL expression `{expr}`: {reason}")]
    DailyTimeInterval {
        /// The expression (trimmed, cut to 200 characters).
        expr: String,
        /// The offending JSON field and what is expected.
        reason: String,
    },
    /// API and WORKFLOW jobs take no expression, but one was given.
    #[error("{kind} jobs fire only when triggered and take no time expression, but `{expr}` was given; leave it empty")]
    UnexpectedExpression {
        /// API or WORKFLOW.
        kind: TimeExpressionType,
        /// The expression given (cut to 64 characters).
        expr: String,
    },
    /// The time zone is not a known IANA name.
    #[error("unknown time zone `{name}`: use an IANA name such as `UTC`, `Europe/Berlin` or `Asia/Shanghai`")]
    UnknownTimeZone {
        /// The name given.
        name: String,
    },
    /// The time-expression type name is not known.
    #[error("unknown time expression type `{name}`: expected one of API, CRON, FIXED_RATE, FIXED_DELAY, DAILY_TIME_INTERVAL, WORKFLOW")]
    UnknownType {
        /// The name given (cut to 64 characters).
        name: String,
    },
    /// The misfire policy name is not known.
    #[error("unknown misfire policy `{name}`: expected one of FIRE_ONCE, FIRE_ALL, SKIP")]
    UnknownMisfirePolicy {
        /// The name given (cut to 64 characters).
        name: String,
    },
    /// A lifecycle window ends before it starts.
    #[error("invalid lifecycle window: start {start} ms is after end {end} ms; the start must not be after the end")]
    Lifecycle {
        /// Start, ms since the Unix epoch.
        start: EpochMs,
        /// End, ms since the Unix epoch.
        end: EpochMs,
    },
}
