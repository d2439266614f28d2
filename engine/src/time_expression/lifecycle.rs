//! A job's lifecycle window and its misfire policy.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::{EpochMs, TimeExpressionError};

/// The window in which a job may fire: `start <= t <= end`, both optional and inclusive, in
/// milliseconds since the Unix epoch (UTC). The default is unbounded.
///
/// Invariant: `start <= end` when both are set. [`Lifecycle::new`] checks it; a deserialized
/// window must be checked with [`Lifecycle::validate`].
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
)]
#[rkyv(derive(Debug, PartialEq, Eq))]
pub struct Lifecycle {
    /// First instant a fire may happen at (inclusive); `None` = no lower bound.
    pub start: Option<EpochMs>,
    /// Last instant a fire may happen at (inclusive); `None` = no upper bound.
    pub end: Option<EpochMs>,
}

impl Lifecycle {
    /// A window; fails when `start > end`.
    pub fn new(
        start: Option<EpochMs>,
        end: Option<EpochMs>,
    ) -> Result<Lifecycle, TimeExpressionError> {
        let lifecycle = Lifecycle { start, end };
        lifecycle.validate()?;
        Ok(lifecycle)
    }

    /// Checks the invariant `start <= end`.
    pub fn validate(&self) -> Result<(), TimeExpressionError> {
        match (self.start, self.end) {
            (Some(start), Some(end)) if start > end => {
                Err(TimeExpressionError::Lifecycle { start, end })
            }
            _ => Ok(()),
        }
    }

    /// Whether `t` lies in the window.
    pub fn contains(&self, t: EpochMs) -> bool {
        self.start.is_none_or(|s| t >= s) && self.end.is_none_or(|e| t <= e)
    }

    /// Where a search for the next fire strictly after `after` must start so that it lands in
    /// the window: `max(after, start - 1)`.
    pub fn clamp(&self, after: EpochMs) -> EpochMs {
        match self.start {
            Some(start) => after.max(start.saturating_sub(1)),
            None => after,
        }
    }
}

/// What the scheduler does with fires it missed (it was down or overloaded) once it notices.
///
/// Serialized as `FIRE_ONCE`, `FIRE_ALL`, `SKIP`; parsed case-insensitively with `-` or `_`.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
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
pub enum MisfirePolicy {
    /// Run once now for all the missed fires together, then continue on schedule (default).
    #[default]
    FireOnce,
    /// Run once per missed fire, oldest first, up to
    /// [`MAX_CATCH_UP`](crate::schedule::MAX_CATCH_UP) of them; the rest are reported as missed.
    FireAll,
    /// Run none of the missed fires (each is reported as missed); continue on schedule.
    Skip,
}

impl MisfirePolicy {
    /// The policy's name as written in configuration, e.g. `FIRE_ONCE`.
    pub fn as_str(self) -> &'static str {
        match self {
            MisfirePolicy::FireOnce => "FIRE_ONCE",
            MisfirePolicy::FireAll => "FIRE_ALL",
            MisfirePolicy::Skip => "SKIP",
        }
    }
}

impl fmt::Display for MisfirePolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for MisfirePolicy {
    type Err = TimeExpressionError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match super::normalize_name(s).as_str() {
            "FIRE_ONCE" => Ok(MisfirePolicy::FireOnce),
            "FIRE_ALL" => Ok(MisfirePolicy::FireAll),
            "SKIP" => Ok(MisfirePolicy::Skip),
            _ => Err(TimeExpressionError::UnknownMisfirePolicy {
                name: s.chars().take(64).collect(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window() {
        let w = Lifecycle::new(Some(100), Some(200)).unwrap();
        assert!(!w.contains(99));
        assert!(w.contains(100));
        assert!(w.contains(200));
        assert!(!w.contains(201));
        assert_eq!(w.clamp(0), 99);
        assert_eq!(w.clamp(150), 150);
        assert!(Lifecycle::default().contains(i64::MIN));
        let err = Lifecycle::new(Some(2), Some(1)).unwrap_err();
        assert!(err.to_string().contains("start"), "{err}");
    }

    #[test]
    fn misfire_names() {
        assert_eq!(MisfirePolicy::default(), MisfirePolicy::FireOnce);
        assert_eq!(
            "fire-all".parse::<MisfirePolicy>().unwrap(),
            MisfirePolicy::FireAll
        );
        assert_eq!(
            "SKIP".parse::<MisfirePolicy>().unwrap(),
            MisfirePolicy::Skip
        );
        assert!("later".parse::<MisfirePolicy>().is_err());
        assert_eq!(
            serde_json::to_string(&MisfirePolicy::FireOnce).unwrap(),
            "\"FIRE_ONCE\""
        );
        assert_eq!(
            serde_json::from_str::<MisfirePolicy>("\"FIRE_ALL\"").unwrap(),
            MisfirePolicy::FireAll
        );
    }
}
