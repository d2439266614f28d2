//! The calendar routes of [`NodeApi`]: the repository stores an app's calendars, the core
//! holds them for its fires (see `core/calendars.rs`).

use crate::api::{ApiError, AppRef, CalendarBody, CalendarList, CalendarView};
use crate::server::calendar_repo::CalendarRecord;

use super::api::NodeApi;

fn calendar_view(r: &CalendarRecord) -> CalendarView {
    CalendarView {
        name: r.name.clone(),
        time_zone: if r.time_zone.is_empty() {
            "UTC".to_owned()
        } else {
            r.time_zone.clone()
        },
        excluded: r.excluded.clone(),
        description: r.description.clone(),
        updated_at: r.updated_at,
    }
}

impl NodeApi {
    pub(super) async fn calendar_put(
        &self,
        app: AppRef,
        name: String,
        body: CalendarBody,
    ) -> Result<CalendarView, ApiError> {
        let sh = &self.0;
        let record = CalendarRecord {
            app_id: app.id,
            name,
            time_zone: body.time_zone.unwrap_or_default().trim().to_owned(),
            excluded: body.excluded.iter().map(|e| e.trim().to_owned()).collect(),
            description: body.description,
            updated_at: sh.now(),
        };
        let commit = sh.repo.put_calendar(&record)?;
        sh.await_commit(commit).await?;
        sh.core.lock().calendar_put(&record);
        tracing::info!(app = %app.name, calendar = %record.name, entries = record.excluded.len(), "calendar put");
        Ok(calendar_view(&record))
    }

    pub(super) fn calendar_get(&self, app: &AppRef, name: &str) -> Result<CalendarView, ApiError> {
        Ok(calendar_view(&self.0.repo.get_calendar(app.id, name)?))
    }

    pub(super) fn calendar_list(&self, app: &AppRef) -> Result<CalendarList, ApiError> {
        let items = self.0.repo.list_calendars(app.id)?;
        Ok(CalendarList {
            items: items.iter().map(calendar_view).collect(),
        })
    }

    /// Deletes the calendar unless a live job or workflow names it (a conflict naming them).
    pub(super) async fn calendar_delete(&self, app: AppRef, name: String) -> Result<(), ApiError> {
        let sh = &self.0;
        let commit = {
            let mut core = sh.core.lock();
            let users = core.calendar_users(app.id, &name);
            if !users.is_empty() {
                let mut named: Vec<String> = users.jobs.iter().map(ToString::to_string).collect();
                named.extend(users.workflows.iter().map(ToString::to_string));
                let shown = named
                    .iter()
                    .take(10)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ");
                let more = named.len().saturating_sub(10);
                return Err(ApiError::conflict(format!(
                    "calendar {name:?} is still named by {shown}{}; remove it from them first",
                    if more > 0 {
                        format!(" and {more} more")
                    } else {
                        String::new()
                    }
                )));
            }
            let commit = sh.repo.delete_calendar(app.id, &name)?;
            core.calendar_deleted(app.id, &name);
            commit
        };
        sh.await_commit(commit).await?;
        tracing::info!(app = %app.name, calendar = %name, "calendar deleted");
        Ok(())
    }
}
