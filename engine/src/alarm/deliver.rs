//! Sending one alarm to one channel: the request each kind gets, the vendors' signatures, and
//! email over SMTP.
//!
//! | kind | endpoint | with a secret |
//! |---|---|---|
//! | `WEBHOOK`, `SLACK`, `WECOM` | `http://` or `https://` URL, `POST` of the body in [`super::channel`] | header `X-Ferrojob-Signature: sha256={hex HMAC-SHA256 of the body}` |
//! | `DINGTALK` | the robot's `https://` (or `http://`) URL (with its `access_token`) | DingTalk's signature: `&timestamp={ms}&sign={urlencoded base64 HMAC-SHA256 of "{ms}\n{secret}" under the secret}` added to the URL |
//! | `FEISHU` | the bot's `https://` (or `http://`) URL | Feishu's signature: `"timestamp":"{s}","sign":"{base64 HMAC-SHA256 of nothing under "{s}\n{secret}"}"` first in the body |
//! | `EMAIL` | `smtp://[user@]host[:port]?from=ADDR&to=ADDR[,ADDR…]` | the SMTP password (with `user@`) |
//!
//! `https://` endpoints are verified against the public roots, plus the CA the server was
//! given with `--alarm-tls-ca` (see [`crate::https`]); a webhook is never redirected.
//!
//! The vendor signatures follow DingTalk's "custom robot security settings" and Feishu's
//! "custom bot signature verification" documents; both reject a timestamp more than an hour
//! from theirs, so it is taken when the request is sent (each retry signs again).
//!
//! Email: `smtp://` requires STARTTLS (port 587 unless given), `smtps://` is TLS from the first
//! byte (port 465); `tls=none` in the query sends in clear, for a trusted relay on the same host
//! or network only (port 25 unless given). Certificates are checked against the webpki roots.
//! A password never goes in the URL (the URL is shown back by the API): it is the channel's
//! secret. The mail has the subject `[ferrojob] {app}: {kind} alarm for job {id}`, the
//! message and the alarm's fields as text, `Message-ID: <{alarm id}@ferrojob>` and
//! `X-Ferrojob-Alarm-Id`, so a retry is recognisable as the same alarm.

use std::time::Duration;

use base64::Engine as _;
use hmac::{Hmac, Mac};
use lettre::message::header::{ContentType, HeaderName, HeaderValue};
use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde::Serialize;
use sha2::Sha256;

use super::channel::{request_body, ChannelKind, Notice, ALARM_ID_HEADER, SIGNATURE_HEADER};
use crate::time_expression::EpochMs;

/// Longest an SMTP exchange or a webhook request may take.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// Most recipients of an email channel.
pub const MAX_EMAIL_RECIPIENTS: usize = 16;

/// Where one alarm goes: a channel's kind, endpoint and secret.
#[derive(Clone, Copy)]
pub struct Target<'a> {
    /// The body shape and transport.
    pub kind: ChannelKind,
    /// The webhook URL, or the `smtp://` / `smtps://` endpoint.
    pub url: &'a str,
    /// The signing key, or the SMTP password.
    pub secret: Option<&'a str>,
}

impl std::fmt::Debug for Target<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("kind", &self.kind)
            .field("url", &self.url)
            .field("secret", &self.secret.map(|_| "<redacted>"))
            .finish()
    }
}

/// Why a channel's endpoint is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EndpointError {
    /// A webhook kind with something other than an `http://` or `https://` URL.
    #[error("must be an http:// or https:// URL")]
    NotHttp,
    /// An email endpoint that does not parse or lacks a part.
    #[error("email endpoint: {0} (smtp://[user@]host[:port]?from=ADDR&to=ADDR[,ADDR...][&tls=none], or smtps://...)")]
    Email(String),
}

/// A webhook request, ready to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookRequest {
    /// The URL, with DingTalk's signature parameters when signed.
    pub url: String,
    /// Headers besides `content-type: application/json`.
    pub headers: Vec<(&'static str, String)>,
    /// The JSON body.
    pub body: Vec<u8>,
}

/// True for the targets [`send`] is needed for: email, and DingTalk or Feishu with a secret
/// (vendor signatures). The others are a plain signed `POST` any HTTP client can send from
/// [`webhook_request`].
pub fn needs_send(kind: ChannelKind, signed: bool) -> bool {
    match kind {
        ChannelKind::Email => true,
        ChannelKind::DingTalk | ChannelKind::Feishu => signed,
        ChannelKind::Webhook | ChannelKind::Slack | ChannelKind::WeCom => false,
    }
}

/// Checks `url` for a channel of `kind` (without reaching it).
pub fn validate_endpoint(kind: ChannelKind, url: &str) -> Result<(), EndpointError> {
    match kind {
        ChannelKind::Email => EmailEndpoint::parse(url).map(|_| ()),
        _ if url.starts_with("http://") || url.starts_with("https://") => Ok(()),
        _ => Err(EndpointError::NotHttp),
    }
}

/// `sha256={hex}` of the HMAC-SHA256 of `body` under `secret`.
pub fn signature_header(secret: &[u8], body: &[u8]) -> String {
    let tag = hmac_sha256(secret, body);
    let mut out = String::with_capacity(7 + tag.len() * 2);
    out.push_str("sha256=");
    for b in tag {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// DingTalk's `sign` for `timestamp_ms` (base64, before URL encoding).
pub fn dingtalk_sign(secret: &str, timestamp_ms: EpochMs) -> String {
    let to_sign = format!("{timestamp_ms}\n{secret}");
    base64::engine::general_purpose::STANDARD
        .encode(hmac_sha256(secret.as_bytes(), to_sign.as_bytes()))
}

/// Feishu's `sign` for `timestamp_s` (seconds): the string is the key, the message is empty.
pub fn feishu_sign(secret: &str, timestamp_s: i64) -> String {
    let key = format!("{timestamp_s}\n{secret}");
    base64::engine::general_purpose::STANDARD.encode(hmac_sha256(key.as_bytes(), b""))
}

fn hmac_sha256(key: &[u8], message: &[u8]) -> Vec<u8> {
    // HMAC takes keys of any length: `new_from_slice` cannot fail for it.
    match Hmac::<Sha256>::new_from_slice(key) {
        Ok(mut mac) => {
            mac.update(message);
            mac.finalize().into_bytes().to_vec()
        }
        Err(_) => Vec::new(),
    }
}

#[derive(Serialize)]
struct FeishuSigned<'a> {
    timestamp: String,
    sign: String,
    msg_type: &'a str,
    content: FeishuText<'a>,
}

#[derive(Serialize)]
struct FeishuText<'a> {
    text: &'a str,
}

/// The request a webhook kind gets for `notice` at `now` (ms since the epoch); `None` for
/// email.
pub fn webhook_request(
    target: Target<'_>,
    notice: &Notice<'_>,
    now: EpochMs,
) -> Option<WebhookRequest> {
    let mut headers = vec![(ALARM_ID_HEADER, notice.id.to_owned())];
    let mut url = target.url.to_owned();
    let body = match (target.kind, target.secret) {
        (ChannelKind::Email, _) => return None,
        (ChannelKind::DingTalk, Some(secret)) => {
            let sign = dingtalk_sign(secret, now);
            let encoded: String = form_urlencode(&sign);
            url.push(if url.contains('?') { '&' } else { '?' });
            url.push_str(&format!("timestamp={now}&sign={encoded}"));
            request_body(target.kind, notice)
        }
        (ChannelKind::Feishu, Some(secret)) => {
            let seconds = now.div_euclid(1000);
            let text = super::channel::text_line(notice);
            serde_json::to_vec(&FeishuSigned {
                timestamp: seconds.to_string(),
                sign: feishu_sign(secret, seconds),
                msg_type: "text",
                content: FeishuText { text: &text },
            })
            .unwrap_or_default()
        }
        (kind, secret) => {
            let body = request_body(kind, notice);
            if let Some(secret) = secret {
                headers.push((SIGNATURE_HEADER, signature_header(secret.as_bytes(), &body)));
            }
            body
        }
    };
    Some(WebhookRequest { url, headers, body })
}

/// `s` percent-encoded as a query value (`application/x-www-form-urlencoded`, as Java's
/// `URLEncoder` and Python's `quote_plus` in the vendors' samples).
fn form_urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'*' => {
                out.push(char::from(b))
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// How an email channel reaches its server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpSecurity {
    /// Plain connection upgraded with STARTTLS, which must succeed (`smtp://`).
    StartTls,
    /// TLS from the first byte (`smtps://`).
    Tls,
    /// No encryption (`smtp://...&tls=none`): a trusted local relay only.
    None,
}

/// A parsed email endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailEndpoint {
    /// The server's host name or address.
    pub host: String,
    /// Its port.
    pub port: u16,
    /// Transport security.
    pub security: SmtpSecurity,
    /// The login, when the server needs one (the password is the channel's secret).
    pub user: Option<String>,
    /// The sender.
    pub from: Mailbox,
    /// The recipients, 1 to [`MAX_EMAIL_RECIPIENTS`].
    pub to: Vec<Mailbox>,
}

impl EmailEndpoint {
    /// Parses `smtp://[user@]host[:port]?from=ADDR&to=ADDR[,ADDR...][&tls=none]` or
    /// `smtps://...`.
    pub fn parse(url: &str) -> Result<EmailEndpoint, EndpointError> {
        let bad = |m: &str| EndpointError::Email(m.to_owned());
        let parsed = reqwest::Url::parse(url).map_err(|e| bad(&e.to_string()))?;
        let mut security = match parsed.scheme() {
            "smtp" => SmtpSecurity::StartTls,
            "smtps" => SmtpSecurity::Tls,
            _ => return Err(bad("the scheme must be smtp or smtps")),
        };
        if parsed.password().is_some() {
            return Err(bad(
                "no password in the URL (it is shown back): give it as the channel's secret",
            ));
        }
        let host = parsed
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| bad("no host"))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let mut from = None;
        let mut to = Vec::new();
        for (key, value) in parsed.query_pairs() {
            match &*key {
                "from" => {
                    from = Some(
                        value
                            .parse::<Mailbox>()
                            .map_err(|e| bad(&format!("from {value:?}: {e}")))?,
                    )
                }
                "to" => {
                    for addr in value.split(',').map(str::trim).filter(|a| !a.is_empty()) {
                        to.push(
                            addr.parse::<Mailbox>()
                                .map_err(|e| bad(&format!("to {addr:?}: {e}")))?,
                        );
                    }
                }
                "tls" => match (&*value, security) {
                    ("none", SmtpSecurity::StartTls) => security = SmtpSecurity::None,
                    ("starttls", SmtpSecurity::StartTls) => {}
                    _ => return Err(bad(&format!("tls={value} (only tls=none with smtp://)"))),
                },
                other => return Err(bad(&format!("unknown parameter {other:?}"))),
            }
        }
        let from = from.ok_or_else(|| bad("no from="))?;
        if to.is_empty() || to.len() > MAX_EMAIL_RECIPIENTS {
            return Err(bad(&format!(
                "to= must name 1 to {MAX_EMAIL_RECIPIENTS} addresses"
            )));
        }
        let port = parsed.port().unwrap_or(match security {
            SmtpSecurity::StartTls => 587,
            SmtpSecurity::Tls => 465,
            SmtpSecurity::None => 25,
        });
        let user = Some(parsed.username())
            .filter(|u| !u.is_empty())
            .map(|u| {
                percent_decode(u).ok_or_else(|| bad("the user name is not UTF-8 once decoded"))
            })
            .transpose()?;
        Ok(EmailEndpoint {
            host,
            port,
            security,
            user,
            from,
            to,
        })
    }
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The email `notice` becomes, for `endpoint`.
pub fn email_message(endpoint: &EmailEndpoint, notice: &Notice<'_>) -> Result<Message, String> {
    let kind = serde_json::to_value(notice.kind)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    let instance = notice
        .instance_id
        .map_or_else(|| "-".to_owned(), |i| i.0.to_string());
    let body = format!(
        "{message}\n\nalarm: {id}\napp: {app}\njob: {job}\ninstance: {instance}\nrule: {kind}\nraised at: {raised} ms since the epoch\n",
        message = notice.message,
        id = notice.id,
        app = notice.app,
        job = notice.job_id.0,
        raised = notice.raised_at,
    );
    let mut builder = Message::builder()
        .from(endpoint.from.clone())
        .subject(format!(
            "[ferrojob] {}: {kind} alarm for job {}",
            notice.app, notice.job_id.0
        ))
        .message_id(Some(format!("<{}@ferrojob>", notice.id)))
        .raw_header(HeaderValue::new(
            HeaderName::new_from_ascii_str(ALARM_ID_HEADER),
            notice.id.to_owned(),
        ))
        .header(ContentType::TEXT_PLAIN);
    for to in &endpoint.to {
        builder = builder.to(to.clone());
    }
    builder
        .body(body)
        .map_err(|e| format!("building the mail failed: {e}"))
}

/// Sends `notice` by email through `endpoint` (logging in as its user with `password`):
/// `Ok` with the server's answer code when it accepted the mail.
pub async fn send_email(
    endpoint: &EmailEndpoint,
    password: Option<&str>,
    notice: &Notice<'_>,
) -> Result<String, String> {
    let message = email_message(endpoint, notice)?;
    let tls = |host: &str| {
        TlsParameters::new(host.to_owned()).map_err(|e| format!("TLS setup failed: {e}"))
    };
    let tls = match endpoint.security {
        SmtpSecurity::StartTls => Tls::Required(tls(&endpoint.host)?),
        SmtpSecurity::Tls => Tls::Wrapper(tls(&endpoint.host)?),
        SmtpSecurity::None => Tls::None,
    };
    let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&endpoint.host)
        .port(endpoint.port)
        .tls(tls)
        .timeout(Some(SEND_TIMEOUT));
    if let Some(user) = &endpoint.user {
        builder = builder.credentials(Credentials::new(
            user.clone(),
            password.unwrap_or_default().to_owned(),
        ));
    }
    let transport = builder.build();
    match transport.send(message).await {
        Ok(response) => Ok(format!("SMTP {}", response.code())),
        Err(e) => Err(format!("SMTP: {e}")),
    }
}

/// Sends `notice` to `target` at `now` (ms since the epoch, for the vendors' signatures):
/// `Ok(detail)` when it was accepted (a 2xx answer, or the SMTP server's acceptance),
/// `Err(detail)` otherwise.
pub async fn send(
    http: &reqwest::Client,
    target: Target<'_>,
    notice: &Notice<'_>,
    now: EpochMs,
) -> Result<String, String> {
    let Some(request) = webhook_request(target, notice, now) else {
        let endpoint = EmailEndpoint::parse(target.url).map_err(|e| e.to_string())?;
        return send_email(&endpoint, target.secret, notice).await;
    };
    let mut req = http
        .post(&request.url)
        .timeout(SEND_TIMEOUT)
        .header("content-type", "application/json");
    for (name, value) in request.headers {
        req = req.header(name, value);
    }
    match req.body(request.body).send().await {
        Ok(resp) if resp.status().is_success() => Ok(resp.status().as_u16().to_string()),
        Ok(resp) => Err(format!("HTTP {}", resp.status().as_u16())),
        Err(e) => Err(match crate::https::destination::refusal(&e) {
            Some(refused) => refused,
            None => format!("request failed: {}", crate::https::describe(&e)),
        }),
    }
}

#[cfg(test)]
#[path = "deliver_tests.rs"]
mod tests;
