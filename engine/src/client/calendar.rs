//! The client's calendar routes: an app's named sets of excluded dates.

use reqwest::Method;

use super::{Client, ClientError};
use crate::api::{CalendarBody, CalendarList, CalendarView};

impl Client {
    /// `PUT /v1/apps/{app}/calendars/{name}`: creates or replaces the calendar.
    pub async fn put_calendar(
        &self,
        app: &str,
        name: &str,
        body: &CalendarBody,
    ) -> Result<CalendarView, ClientError> {
        let req = self.request(Method::PUT, &["v1", "apps", app, "calendars", name])?;
        self.call(req.json(body)).await
    }

    /// `GET /v1/apps/{app}/calendars/{name}`.
    pub async fn get_calendar(&self, app: &str, name: &str) -> Result<CalendarView, ClientError> {
        self.get(&["v1", "apps", app, "calendars", name]).await
    }

    /// `GET /v1/apps/{app}/calendars`.
    pub async fn list_calendars(&self, app: &str) -> Result<CalendarList, ClientError> {
        self.get(&["v1", "apps", app, "calendars"]).await
    }

    /// `DELETE /v1/apps/{app}/calendars/{name}` (a conflict while a job or workflow names
    /// it).
    pub async fn delete_calendar(&self, app: &str, name: &str) -> Result<(), ClientError> {
        let req = self.request(Method::DELETE, &["v1", "apps", app, "calendars", name])?;
        self.send(req).await.map(drop)
    }
}
