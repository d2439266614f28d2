//! The calendar routes' JSON bodies: an app's named sets of excluded dates (see
//! [`crate::calendar`]). Jobs and workflows name them in their `calendars` field.

use serde::{Deserialize, Serialize};

use crate::time_expression::EpochMs;

/// `PUT /v1/apps/{app}/calendars/{name}` body: creates or replaces the calendar.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CalendarBody {
    /// IANA zone the dates are read in (a trigger is excluded when its date there is);
    /// default UTC.
    #[serde(default)]
    pub time_zone: Option<String>,
    /// Excluded dates (`2026-12-25`) and inclusive ranges (`2026-12-24..2026-12-26`), at
    /// most 1000; default none.
    #[serde(default)]
    pub excluded: Vec<String>,
    /// Free text for people, at most 1024 bytes; default empty (omitted when empty).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
}

/// A calendar as the API shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CalendarView {
    /// The calendar's name, what jobs and workflows name in `calendars`.
    pub name: String,
    /// IANA zone the dates are read in (`UTC` when none was given).
    pub time_zone: String,
    /// The excluded dates and ranges, as given.
    pub excluded: Vec<String>,
    /// Free text for people (omitted when empty).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// Last change (epoch ms).
    pub updated_at: EpochMs,
}

/// `GET /v1/apps/{app}/calendars` answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CalendarList {
    /// Every calendar of the app, by name.
    pub items: Vec<CalendarView>,
}
