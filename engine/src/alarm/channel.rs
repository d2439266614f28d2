//! Channels: where an app's alarms go, and the exact request body each kind receives.
//!
//! Every channel but `EMAIL` is an HTTP `POST` of a JSON body to the channel's URL; those kinds
//! differ only in the body (and in how a secret signs it: see [`super::deliver`], which also
//! sends `EMAIL` over SMTP). The generic webhook gets the whole alarm:
//!
//! ```json
//! {"id":"job-7-failures-42","app":"shop","job_id":7,"instance_id":42,
//!  "kind":"FAILURES","raised_at":1893456000000,"message":"job 7 failed 3 times ..."}
//! ```
//!
//! (`instance_id` is `null` for an alarm no run caused, such as the dead man's switch.) The
//! chat kinds get one line of text, `[ferrojob] {app}: {message} (alarm {id})`, in their
//! incoming-webhook shapes: Slack `{"text":…}`, DingTalk and WeCom
//! `{"msgtype":"text","text":{"content":…}}`, Feishu/Lark
//! `{"msg_type":"text","content":{"text":…}}`.
//!
//! Every request carries the header `X-Ferrojob-Alarm-Id: {id}`, the same on every retry, for
//! de-duplication; a webhook, Slack or WeCom channel with a secret adds
//! `X-Ferrojob-Signature: sha256={hex}`, the HMAC-SHA256 of the exact body bytes under the
//! secret, while DingTalk and Feishu channels with a secret are signed the vendors' way
//! (DingTalk in the URL, Feishu in the body; see [`super::deliver`]).

use rkyv::{Archive, Deserialize as RkyvDeserialize, Serialize as RkyvSerialize};
use serde::{Deserialize, Serialize};

use super::AlarmKind;
use crate::ids::{InstanceId, JobId};
use crate::time_expression::EpochMs;

/// Header naming the alarm (stable across retries).
pub const ALARM_ID_HEADER: &str = "X-Ferrojob-Alarm-Id";
/// Header with `sha256={hex HMAC-SHA256 of the body}` when the channel has a secret.
pub const SIGNATURE_HEADER: &str = "X-Ferrojob-Signature";

/// The body shape a channel receives.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    Archive,
    RkyvSerialize,
    RkyvDeserialize,
)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[rkyv(derive(Debug, PartialEq, Eq))]
pub enum ChannelKind {
    /// The generic webhook: the whole alarm as JSON.
    Webhook,
    /// A Slack-compatible incoming webhook.
    Slack,
    /// A DingTalk robot.
    #[serde(rename = "DINGTALK")]
    DingTalk,
    /// A Feishu/Lark bot.
    Feishu,
    /// A WeCom (WeChat Work) group robot.
    #[serde(rename = "WECOM")]
    WeCom,
    /// Email over SMTP (`smtp://` with STARTTLS, `smtps://`; see [`super::deliver`]).
    Email,
}

/// What a channel is told about one alarm.
#[derive(Clone, Copy, Debug)]
pub struct Notice<'a> {
    /// The stable alarm id.
    pub id: &'a str,
    /// The app's name.
    pub app: &'a str,
    /// The job.
    pub job_id: JobId,
    /// The run that caused it.
    pub instance_id: Option<InstanceId>,
    /// The rule.
    pub kind: AlarmKind,
    /// When it was raised, ms since the epoch.
    pub raised_at: EpochMs,
    /// What happened.
    pub message: &'a str,
}

#[derive(Serialize)]
struct WebhookBody<'a> {
    id: &'a str,
    app: &'a str,
    job_id: JobId,
    instance_id: Option<InstanceId>,
    kind: AlarmKind,
    raised_at: EpochMs,
    message: &'a str,
}

#[derive(Serialize)]
struct Text<'a> {
    text: &'a str,
}

#[derive(Serialize)]
struct Content<'a> {
    content: &'a str,
}

#[derive(Serialize)]
struct MsgType<'a> {
    msgtype: &'a str,
    text: Content<'a>,
}

#[derive(Serialize)]
struct FeishuBody<'a> {
    msg_type: &'a str,
    content: Text<'a>,
}

/// The one line of text the chat kinds get: `[ferrojob] {app}: {message} (alarm {id})`.
pub fn text_line(notice: &Notice<'_>) -> String {
    format!(
        "[ferrojob] {}: {} (alarm {})",
        notice.app, notice.message, notice.id
    )
}

/// The request body `kind` receives for `notice` (see the module docs; keys in the order
/// shown there). `EMAIL` has no HTTP body: it gets the generic webhook's (never sent).
pub fn request_body(kind: ChannelKind, notice: &Notice<'_>) -> Vec<u8> {
    let text = text_line(notice);
    let body = match kind {
        ChannelKind::Webhook | ChannelKind::Email => serde_json::to_vec(&WebhookBody {
            id: notice.id,
            app: notice.app,
            job_id: notice.job_id,
            instance_id: notice.instance_id,
            kind: notice.kind,
            raised_at: notice.raised_at,
            message: notice.message,
        }),
        ChannelKind::Slack => serde_json::to_vec(&Text { text: &text }),
        ChannelKind::DingTalk | ChannelKind::WeCom => serde_json::to_vec(&MsgType {
            msgtype: "text",
            text: Content { content: &text },
        }),
        ChannelKind::Feishu => serde_json::to_vec(&FeishuBody {
            msg_type: "text",
            content: Text { text: &text },
        }),
    };
    // Serializing these structs of strings and numbers cannot fail.
    body.unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notice() -> Notice<'static> {
        Notice {
            id: "job-7-failures-42",
            app: "shop",
            job_id: JobId(7),
            instance_id: Some(InstanceId(42)),
            kind: AlarmKind::Failures,
            raised_at: 1_893_456_000_000,
            message: "job 7 failed",
        }
    }

    fn check(kind: ChannelKind, expected: &str) {
        let body = String::from_utf8(request_body(kind, &notice())).unwrap();
        assert_eq!(body, expected, "{kind:?}");
    }

    #[test]
    fn each_kind_has_its_exact_body() {
        check(
            ChannelKind::Webhook,
            r#"{"id":"job-7-failures-42","app":"shop","job_id":7,"instance_id":42,"kind":"FAILURES","raised_at":1893456000000,"message":"job 7 failed"}"#,
        );
        let text = "[ferrojob] shop: job 7 failed (alarm job-7-failures-42)";
        check(ChannelKind::Slack, &format!(r#"{{"text":"{text}"}}"#));
        check(
            ChannelKind::DingTalk,
            &format!(r#"{{"msgtype":"text","text":{{"content":"{text}"}}}}"#),
        );
        check(
            ChannelKind::WeCom,
            &format!(r#"{{"msgtype":"text","text":{{"content":"{text}"}}}}"#),
        );
        check(
            ChannelKind::Feishu,
            &format!(r#"{{"msg_type":"text","content":{{"text":"{text}"}}}}"#),
        );
    }

    #[test]
    fn kinds_have_their_api_names() {
        for (kind, name) in [
            (ChannelKind::Webhook, "\"WEBHOOK\""),
            (ChannelKind::Slack, "\"SLACK\""),
            (ChannelKind::DingTalk, "\"DINGTALK\""),
            (ChannelKind::Feishu, "\"FEISHU\""),
            (ChannelKind::WeCom, "\"WECOM\""),
            (ChannelKind::Email, "\"EMAIL\""),
        ] {
            assert_eq!(serde_json::to_string(&kind).unwrap(), name);
            assert_eq!(serde_json::from_str::<ChannelKind>(name).unwrap(), kind);
        }
    }
}
