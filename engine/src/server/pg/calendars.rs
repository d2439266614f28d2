//! The apps' calendars.

use crate::calendar::MAX_CALENDARS_PER_APP;
use crate::ids::AppId;
use crate::server::calendar_repo::{no_calendar, CalendarRecord, CALENDARS};
use crate::server::codec::{decode, encode};
use crate::server::error::RepoError;
use crate::server::repo::Commit;

use super::tables::{Op, Table, Val};
use super::{big, get, i64s, text, PgRepo};

impl PgRepo {
    pub(super) fn put_calendar(&self, calendar: &CalendarRecord) -> Result<Commit<()>, RepoError> {
        calendar.calendar()?;
        self.get_app(calendar.app_id)?;
        let app_id = big(calendar.app_id.0)?;
        let exists = self
            .query_opt(
                "SELECT 1 FROM calendars WHERE app_id = $1 AND name = $2",
                vec![Box::new(app_id), Box::new(calendar.name.clone())],
            )?
            .is_some();
        if !exists && self.list_calendars(calendar.app_id)?.len() >= MAX_CALENDARS_PER_APP {
            return Err(RepoError::invalid(
                "name",
                format!("an app has at most {MAX_CALENDARS_PER_APP} calendars"),
            ));
        }
        let excluded = serde_json::to_string(&calendar.excluded)
            .map_err(|e| RepoError::invalid("excluded", e.to_string()))?;
        let ops = vec![Op::Put(
            Table::Calendars,
            vec![
                i64s(Some(app_id)),
                text(&calendar.name),
                text(&calendar.time_zone),
                Val::Text(Some(excluded)),
                i64s(Some(calendar.updated_at)),
                Val::Bytes(encode(CALENDARS, calendar)?),
            ],
        )];
        Ok(self.submit(ops, ()))
    }

    pub(super) fn get_calendar(&self, app: AppId, name: &str) -> Result<CalendarRecord, RepoError> {
        match self.query_opt(
            "SELECT record FROM calendars WHERE app_id = $1 AND name = $2",
            vec![Box::new(big(app.0)?), Box::new(name.to_owned())],
        )? {
            Some(row) => decode(CALENDARS, name.as_bytes(), &get::<Vec<u8>>(&row, 0)?),
            None => Err(no_calendar(name)),
        }
    }

    pub(super) fn delete_calendar(&self, app: AppId, name: &str) -> Result<Commit<()>, RepoError> {
        self.get_calendar(app, name)?;
        let ops = vec![Op::Delete(
            Table::Calendars,
            vec![i64s(Some(big(app.0)?)), text(name)],
        )];
        Ok(self.submit(ops, ()))
    }

    pub(super) fn list_calendars(&self, app: AppId) -> Result<Vec<CalendarRecord>, RepoError> {
        let rows = self.query(
            "SELECT name, record FROM calendars WHERE app_id = $1 ORDER BY name LIMIT $2",
            vec![
                Box::new(big(app.0)?),
                Box::new(i64::try_from(MAX_CALENDARS_PER_APP + 1).unwrap_or(i64::MAX)),
            ],
        )?;
        rows.iter()
            .map(|row| {
                let name: String = get(row, 0)?;
                decode(CALENDARS, name.as_bytes(), &get::<Vec<u8>>(row, 1)?)
            })
            .collect()
    }

    /// The deletion of every calendar of `app`.
    pub(super) fn delete_calendars_ops(&self, app: AppId) -> Result<Vec<Op>, RepoError> {
        let id = big(app.0)?;
        self.query(
            "SELECT name FROM calendars WHERE app_id = $1",
            vec![Box::new(id)],
        )?
        .iter()
        .map(|row| {
            Ok(Op::Delete(
                Table::Calendars,
                vec![i64s(Some(id)), text(&get::<String>(row, 0)?)],
            ))
        })
        .collect()
    }
}
