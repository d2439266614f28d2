//! The client's alarm routes: an app's channels and its alarms.

use reqwest::Method;

use super::{Client, ClientError};
use crate::api::{AlarmList, ChannelBody, ChannelList, ChannelTestResult, ChannelView, PageQuery};

impl Client {
    /// `PUT /v1/apps/{app}/alarm-channels/{name}`: creates or replaces the channel.
    pub async fn put_channel(
        &self,
        app: &str,
        name: &str,
        body: &ChannelBody,
    ) -> Result<ChannelView, ClientError> {
        let req = self.request(Method::PUT, &["v1", "apps", app, "alarm-channels", name])?;
        self.call(req.json(body)).await
    }

    /// `GET /v1/apps/{app}/alarm-channels`.
    pub async fn list_channels(&self, app: &str) -> Result<ChannelList, ClientError> {
        self.get(&["v1", "apps", app, "alarm-channels"]).await
    }

    /// `DELETE /v1/apps/{app}/alarm-channels/{name}`.
    pub async fn delete_channel(&self, app: &str, name: &str) -> Result<(), ClientError> {
        let req = self.request(Method::DELETE, &["v1", "apps", app, "alarm-channels", name])?;
        self.send(req).await.map(drop)
    }

    /// `POST /v1/apps/{app}/alarm-channels/{name}/test`: sends a test alarm now.
    pub async fn test_channel(
        &self,
        app: &str,
        name: &str,
    ) -> Result<ChannelTestResult, ClientError> {
        self.post_empty(&["v1", "apps", app, "alarm-channels", name, "test"])
            .await
    }

    /// `GET /v1/apps/{app}/alarms`: alarms with their delivery history, newest first.
    pub async fn list_alarms(&self, app: &str, query: PageQuery) -> Result<AlarmList, ClientError> {
        self.get_query(&["v1", "apps", app, "alarms"], &query).await
    }
}
