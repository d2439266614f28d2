//! The alarm routes' JSON bodies: an app's channels and its alarms with their delivery
//! history. Rules themselves are the `alarm` field of a job body
//! ([`AlarmRules`](crate::alarm::AlarmRules)).

use serde::{Deserialize, Serialize};

use crate::alarm::channel::ChannelKind;
use crate::alarm::AlarmKind;
use crate::ids::{InstanceId, JobId};
use crate::time_expression::EpochMs;

/// `PUT /v1/apps/{app}/alarm-channels/{name}` body: creates or replaces the channel.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelBody {
    /// `WEBHOOK`, `SLACK`, `DINGTALK`, `FEISHU`, `WECOM` (the body shape) or `EMAIL`.
    pub kind: ChannelKind,
    /// The `http://` or `https://` URL alarms are posted to; for `EMAIL`,
    /// `smtp://[user@]host[:port]?from=ADDR&to=ADDR[,ADDR...]` (STARTTLS), `smtps://...`
    /// (TLS) or `smtp://...&tls=none` (a trusted local relay).
    pub url: String,
    /// Key of the `X-Ferrojob-Signature` HMAC-SHA256 header (DingTalk and Feishu: the
    /// robot's signing secret, used their way; `EMAIL`: the SMTP password); default none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

impl std::fmt::Debug for ChannelBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChannelBody")
            .field("kind", &self.kind)
            .field("url", &self.url)
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// A channel as the API shows it (its secret never leaves the server).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelView {
    /// The channel's name, what rules name in `alarm.channels`.
    pub name: String,
    /// The body shape.
    pub kind: ChannelKind,
    /// Where alarms are posted.
    pub url: String,
    /// Whether requests carry a signature header.
    pub signed: bool,
}

/// `GET /v1/apps/{app}/alarm-channels` answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelList {
    /// Every channel of the app, by name.
    pub items: Vec<ChannelView>,
}

/// `POST /v1/apps/{app}/alarm-channels/{name}/test` answer: one test alarm sent at once.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelTestResult {
    /// Whether the channel answered 2xx.
    pub delivered: bool,
    /// The HTTP status or the error.
    pub detail: String,
}

/// One delivery attempt to one channel.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlarmAttemptView {
    /// When, ms since the epoch.
    pub at: EpochMs,
    /// The channel's name.
    pub channel: String,
    /// Whether it answered 2xx.
    pub ok: bool,
    /// The HTTP status or the error.
    pub detail: String,
}

/// An alarm and its delivery.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlarmView {
    /// Position in the app's list (the cursor of the next page).
    pub seq: u64,
    /// The stable alarm id, sent as `X-Ferrojob-Alarm-Id` on every attempt.
    pub id: String,
    /// The job.
    pub job_id: JobId,
    /// The run that caused it.
    pub instance_id: Option<InstanceId>,
    /// The rule.
    pub kind: AlarmKind,
    /// When it was raised, ms since the epoch.
    pub raised_at: EpochMs,
    /// What happened.
    pub message: String,
    /// `PENDING`, `DELIVERED`, `FAILED` (given up) or `RECORDED` (no channel named).
    pub status: String,
    /// The channels it goes to.
    pub channels: Vec<String>,
    /// The channels that accepted it.
    pub delivered_to: Vec<String>,
    /// Delivery rounds so far.
    pub attempt_count: u32,
    /// When a pending alarm is tried next, ms since the epoch.
    pub next_attempt_at: EpochMs,
    /// The latest attempts, oldest first.
    pub attempts: Vec<AlarmAttemptView>,
}

/// `GET /v1/apps/{app}/alarms` answer, newest first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlarmList {
    /// This page.
    pub items: Vec<AlarmView>,
    /// Pass as `cursor` for the next page; absent at the end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<u64>,
}
