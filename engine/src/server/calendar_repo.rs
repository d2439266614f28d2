//! The apps' calendars (see [`crate::calendar`]).
//!
//! | table       | key                        | value              | purpose |
//! |-------------|----------------------------|--------------------|---------|
//! | `calendars` | app id (8) ++ name (UTF-8) | [`CalendarRecord`] | an app's calendars by name |
//!
//! At most [`MAX_CALENDARS_PER_APP`] per app. Whether a calendar is still named by a job or
//! workflow is the runtime's check (it knows every definition); the repository stores.
//! Deleting an app deletes its calendars (`token_repo.rs`, `delete_app`).

use ferrojob_store::{Batch, KeyRange, Scan};
use rkyv::{Archive, Deserialize, Serialize};

use crate::calendar::{
    check_calendar_name, Calendar, MAX_CALENDARS_PER_APP, MAX_CALENDAR_DESCRIPTION_LEN,
    MAX_CALENDAR_NAME_LEN,
};
use crate::ids::AppId;
use crate::time_expression::EpochMs;

use super::codec::{decode, encode};
use super::error::RepoError;
use super::keys;
use super::repo::{Commit, LogRepo};

/// Calendars by app and name.
pub const CALENDARS: &str = "calendars";

/// A calendar of an app, as stored.
#[derive(Clone, Debug, PartialEq, Eq, Archive, Serialize, Deserialize)]
pub struct CalendarRecord {
    /// The app.
    pub app_id: AppId,
    /// Unique within the app, 1 to [`MAX_CALENDAR_NAME_LEN`] bytes of `[A-Za-z0-9_.-]`.
    pub name: String,
    /// IANA zone the dates are read in (empty = UTC).
    pub time_zone: String,
    /// Excluded dates and inclusive ranges (`2026-12-25`, `2026-12-24..2026-12-26`), as given;
    /// at most [`crate::calendar::MAX_CALENDAR_ENTRIES`].
    pub excluded: Vec<String>,
    /// Free text for people, at most [`MAX_CALENDAR_DESCRIPTION_LEN`] bytes.
    pub description: String,
    /// Last change, ms since the epoch.
    pub updated_at: EpochMs,
}

impl CalendarRecord {
    /// The parsed calendar; a bad name, zone, entry or description is
    /// [`RepoError::Invalid`].
    pub fn calendar(&self) -> Result<Calendar, RepoError> {
        check_calendar_name(&self.name).map_err(|e| RepoError::invalid("name", e.to_string()))?;
        if self.description.len() > MAX_CALENDAR_DESCRIPTION_LEN {
            return Err(RepoError::invalid(
                "description",
                format!("at most {MAX_CALENDAR_DESCRIPTION_LEN} bytes"),
            ));
        }
        Calendar::new(&self.time_zone, &self.excluded).map_err(|e| {
            let field = match e {
                crate::calendar::CalendarError::TimeZone(_) => "time_zone",
                _ => "excluded",
            };
            RepoError::invalid(field, e.to_string())
        })
    }
}

pub(crate) fn calendar_key(app: AppId, name: &str) -> Vec<u8> {
    let mut k = keys::id(app.0).to_vec();
    k.extend_from_slice(name.as_bytes());
    k
}

/// The error of a calendar not found.
pub(crate) fn no_calendar(name: &str) -> RepoError {
    RepoError::NotFound {
        what: "calendar",
        id: name.chars().take(MAX_CALENDAR_NAME_LEN).collect(),
    }
}

impl LogRepo {
    /// Creates or replaces calendar `calendar.name` of its app.
    pub fn put_calendar(&self, calendar: &CalendarRecord) -> Result<Commit<()>, RepoError> {
        calendar.calendar()?;
        self.get_app(calendar.app_id)?;
        let key = calendar_key(calendar.app_id, &calendar.name);
        if self.store.get(CALENDARS, &key)?.is_none()
            && self.list_calendars(calendar.app_id)?.len() >= MAX_CALENDARS_PER_APP
        {
            return Err(RepoError::invalid(
                "name",
                format!("an app has at most {MAX_CALENDARS_PER_APP} calendars"),
            ));
        }
        let batch = Batch::new().put(CALENDARS, key, encode(CALENDARS, calendar)?);
        Ok(self.submit(batch, ()))
    }

    /// Calendar `name` of `app`.
    pub fn get_calendar(&self, app: AppId, name: &str) -> Result<CalendarRecord, RepoError> {
        let key = calendar_key(app, name);
        match self.store.get(CALENDARS, &key)? {
            Some(v) => decode(CALENDARS, &key, &v),
            None => Err(no_calendar(name)),
        }
    }

    /// Deletes calendar `name` of `app`.
    pub fn delete_calendar(&self, app: AppId, name: &str) -> Result<Commit<()>, RepoError> {
        self.get_calendar(app, name)?;
        let batch = Batch::new().delete(CALENDARS, calendar_key(app, name));
        Ok(self.submit(batch, ()))
    }

    /// Every calendar of `app`, by name (at most [`MAX_CALENDARS_PER_APP`] + 1 are read).
    pub fn list_calendars(&self, app: AppId) -> Result<Vec<CalendarRecord>, RepoError> {
        let mut out = Vec::new();
        for kv in Scan::new(&*self.store, CALENDARS, KeyRange::prefix(&keys::id(app.0))) {
            let (k, v) = kv?;
            out.push(decode(CALENDARS, &k, &v)?);
            if out.len() > MAX_CALENDARS_PER_APP {
                break;
            }
        }
        Ok(out)
    }

    /// Adds the deletion of every calendar of `app` to `batch`.
    pub(crate) fn delete_calendars_ops(
        &self,
        mut batch: Batch,
        app: AppId,
    ) -> Result<Batch, RepoError> {
        for kv in Scan::new(&*self.store, CALENDARS, KeyRange::prefix(&keys::id(app.0))) {
            let (k, _) = kv?;
            batch = batch.delete(CALENDARS, k);
        }
        Ok(batch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cal(name: &str, zone: &str, excluded: &[&str]) -> CalendarRecord {
        CalendarRecord {
            app_id: AppId(1),
            name: name.into(),
            time_zone: zone.into(),
            excluded: excluded.iter().map(|s| (*s).to_owned()).collect(),
            description: String::new(),
            updated_at: 0,
        }
    }

    #[test]
    fn records_are_validated_field_by_field() {
        assert!(cal("fr", "Europe/Paris", &["2026-12-25"])
            .calendar()
            .is_ok());
        let field = |r: CalendarRecord| match r.calendar() {
            Err(RepoError::Invalid { field, .. }) => field,
            other => panic!("{other:?}"),
        };
        assert_eq!(field(cal("a b", "UTC", &[])), "name");
        assert_eq!(field(cal("fr", "Nowhere/City", &[])), "time_zone");
        assert_eq!(field(cal("fr", "UTC", &["2026-02-30"])), "excluded");
        let mut long = cal("fr", "UTC", &[]);
        long.description = "x".repeat(MAX_CALENDAR_DESCRIPTION_LEN + 1);
        assert_eq!(field(long), "description");
    }
}
