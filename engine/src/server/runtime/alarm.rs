//! Alarms in the server: evaluation at each final transition, and the delivery task.
//!
//! ```text
//!  final transition ─ persist ─ Alarms::on_final (JobAlarms of the job, crate::alarm)
//!        └─ ONE batch: the final instance + its alarms + their outbox rows
//!  delivery task ─ Repo::pending_alarms ─ POST to each channel not yet reached
//!        └─ Repo::update_alarm: the attempt, the next attempt time, or Delivered / Failed
//! ```
//!
//! Evaluation state (failure windows, silence, whether a job alarmed) lives in memory and
//! starts afresh on restart; the alarms themselves are durable from the write that raised
//! them. The server evaluates the rules when a run ends: `late_start_ms` from the run's
//! dispatch time, `overrun_ms` from its duration. Once a second the delivery task polls the
//! time-driven rules (`JobAlarms::poll`): the dead man's switch, and the overrun of runs still
//! going (fed from the instances in memory; each run's overrun alarm has one id, raised once
//! whether the poll or the run's end sees it first).
//!
//! Delivery is at least once: an alarm leaves the outbox only after every channel answered
//! 2xx (or after [`MAX_DELIVERY_ATTEMPTS`]); a channel that accepted is not sent it again,
//! one that did not is retried after 1 s, doubling to [`MAX_BACKOFF_MS`]. A crash between an
//! answer and the write that records it sends the alarm again, with the same id.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, Mac};
use parking_lot::Mutex;
use sha2::Sha256;

use crate::alarm::channel::{request_body, Notice, ALARM_ID_HEADER, SIGNATURE_HEADER};
use crate::alarm::AlarmKind;
use crate::api::{
    AlarmList, ApiError, AppRef, ChannelBody, ChannelList, ChannelTestResult, ChannelView,
    PageQuery,
};
use crate::https::destination::{refusal, AllowedDestination, CheckedResolver, DestinationPolicy};
use crate::https::{HttpsError, HttpsRoots};
use crate::ids::{AppId, JobId};
use crate::server::alarm_repo::{AlarmRecord, AttemptRecord, ChannelRecord, DeliveryStatus};
use crate::server::api_convert::{alarm_view, channel_record, channel_view};
use crate::time_expression::EpochMs;

use super::driver::Runtime;

/// Attempts before an alarm is given up (marked Failed).
pub const MAX_DELIVERY_ATTEMPTS: u32 = 12;
/// Longest wait between two attempts, ms.
pub const MAX_BACKOFF_MS: i64 = 300_000;
/// First wait after a failed attempt, ms.
pub const FIRST_BACKOFF_MS: i64 = 1_000;
/// Alarms one delivery round reads from the outbox.
const ROUND: usize = 256;
/// Longest the delivery task sleeps without looking at the outbox (real time).
const IDLE_POLL: Duration = Duration::from_millis(500);
/// Alarms kept per app in the history (pending ones are kept too).
pub const MAX_ALARMS_KEPT: usize = 10_000;
/// Clock time between two prunes of the alarm history, ms.
const PRUNE_EVERY_MS: i64 = 600_000;
/// Clock time between two polls of the time-driven rules, ms.
const POLL_EVERY_MS: i64 = 1_000;
/// Timeout of one channel request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The delivery task's state: its wake-up and its HTTP client, which trusts
/// [`ServerConfig::alarm_tls`](super::ServerConfig::alarm_tls) for `https://` channels (the
/// evaluation state is the core's).
#[derive(Debug)]
pub(crate) struct Alarms {
    wake: tokio::sync::Notify,
    http: reqwest::Client,
    /// Where webhooks may be posted (the resolver of `http` checks host names; this checks
    /// URLs that name an address).
    destinations: Arc<DestinationPolicy>,
    /// When the time-driven rules were last polled, clock ms.
    last_poll: AtomicI64,
    /// When the alarm history was last pruned, clock ms.
    last_prune: AtomicI64,
    /// Where the next delivery round reads the outbox from (`None`: its start), so that a
    /// full page of alarms backing off does not hide the ones after it.
    outbox_cursor: Mutex<Option<(AppId, u64)>>,
}

impl Alarms {
    /// The delivery state, its HTTP client trusting `roots` for `https://` channels, never
    /// following a redirect nor using a proxy, and connecting to internal addresses only
    /// when `allow` names them.
    pub(crate) fn new(
        roots: &HttpsRoots,
        allow: &[AllowedDestination],
    ) -> Result<Alarms, HttpsError> {
        let destinations = Arc::new(DestinationPolicy::for_alarms(allow.iter().cloned()));
        let http = roots
            .client_builder()?
            .timeout(REQUEST_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .dns_resolver(CheckedResolver::new(Arc::clone(&destinations)))
            .build()
            .map_err(|e| HttpsError::Config(e.to_string()))?;
        Ok(Alarms {
            wake: tokio::sync::Notify::new(),
            http,
            destinations,
            last_poll: AtomicI64::new(i64::MIN),
            last_prune: AtomicI64::new(i64::MIN),
            outbox_cursor: Mutex::new(None),
        })
    }
}

/// The wait after `attempts` failed attempts: 1 s doubling, at most [`MAX_BACKOFF_MS`].
pub(crate) fn backoff_ms(attempts: u32) -> i64 {
    let shift = attempts.saturating_sub(1).min(20);
    FIRST_BACKOFF_MS
        .saturating_mul(1i64 << shift)
        .min(MAX_BACKOFF_MS)
}

impl Runtime {
    /// The time-driven rules, at most once per [`POLL_EVERY_MS`] of clock time: the dead
    /// man's switch of every enabled job that has one, and the overrun of every running
    /// instance of a job with `overrun_ms`. The alarms raised are written (a batch of their
    /// own) before the delivery round reads the outbox. A job's switch counts from its last
    /// success seen by this server, or from when this server first polled it.
    async fn poll_time_rules(self: &Arc<Self>) {
        let now = self.now();
        let last = self.alarms.last_poll.load(Ordering::Relaxed);
        if now.saturating_sub(last) < POLL_EVERY_MS {
            return;
        }
        self.alarms.last_poll.store(now, Ordering::Relaxed);
        let raised = self.step(|core, now| core.time_rule_alarms(now));
        if raised.is_empty() {
            return;
        }
        match self.repo.insert_alarms(raised) {
            Ok(c) => {
                let _ = self.await_commit(c).await;
            }
            Err(e) => self.metrics.store_write_failed(&e),
        }
    }

    /// Deletes each app's alarms beyond its newest [`MAX_ALARMS_KEPT`], at most once per
    /// [`PRUNE_EVERY_MS`] of clock time and a page per app at a time.
    async fn prune_history(&self) {
        let now = self.now();
        let last = self.alarms.last_prune.load(Ordering::Relaxed);
        if now.saturating_sub(last) < PRUNE_EVERY_MS {
            return;
        }
        self.alarms.last_prune.store(now, Ordering::Relaxed);
        let mut apps: Vec<AppId> = self.core.lock().app_names.keys().copied().collect();
        apps.sort_unstable_by_key(|a| a.0);
        for app in apps {
            match self.repo.prune_alarms(app, MAX_ALARMS_KEPT, 1000) {
                Ok(c) => {
                    if self.await_commit(c).await.is_err() {
                        return;
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, %app, "cannot prune the alarm history");
                    return;
                }
            }
        }
    }

    /// Tells the delivery task that the outbox may have grown.
    pub(crate) fn wake_delivery(&self) {
        self.alarms.wake.notify_one();
    }

    /// Sends `notice` to `channel` once: `Ok(status)` for a 2xx answer, `Err(detail)`
    /// otherwise.
    pub(crate) async fn send_to_channel(
        &self,
        channel: &ChannelRecord,
        notice: &Notice<'_>,
    ) -> Result<String, String> {
        use crate::alarm::deliver;
        if let Ok(url) = reqwest::Url::parse(&channel.url) {
            self.alarms
                .destinations
                .check_url(&url)
                .map_err(|refused| refused.to_string())?;
        }
        if channel.kind == crate::alarm::channel::ChannelKind::Email {
            if let Ok(endpoint) = deliver::EmailEndpoint::parse(&channel.url) {
                self.check_smtp_host(&endpoint.host, endpoint.port).await?;
            }
        }
        if deliver::needs_send(channel.kind, channel.secret.is_some()) {
            let (kind, url, secret) = (channel.kind, &channel.url, channel.secret.as_deref());
            let target = deliver::Target { kind, url, secret };
            return deliver::send(&self.alarms.http, target, notice, self.now()).await;
        }
        let body = request_body(channel.kind, notice);
        let mut req = self
            .alarms
            .http
            .post(&channel.url)
            .header("content-type", "application/json")
            .header(ALARM_ID_HEADER, notice.id);
        if let Some(secret) = &channel.secret {
            req = req.header(SIGNATURE_HEADER, signature(secret.as_bytes(), &body));
        }
        match req.body(body).send().await {
            Ok(resp) if resp.status().is_success() => Ok(resp.status().as_u16().to_string()),
            Ok(resp) => Err(format!("HTTP {}", resp.status().as_u16())),
            Err(e) => Err(match refusal(&e) {
                Some(refused) => refused,
                None => format!("request failed: {}", crate::https::describe(&e)),
            }),
        }
    }

    /// Checks every address an SMTP host name resolves to against the destination policy
    /// (the mail transport resolves and connects on its own, so none of them may be
    /// refused); an address in the URL was checked with it.
    async fn check_smtp_host(&self, host: &str, port: u16) -> Result<(), String> {
        if host.parse::<std::net::IpAddr>().is_ok() {
            return Ok(());
        }
        let addrs = tokio::net::lookup_host((host, port))
            .await
            .map_err(|e| format!("cannot resolve {host}: {e}"))?;
        for addr in addrs.take(crate::https::destination::MAX_RESOLVED) {
            self.alarms
                .destinations
                .check(Some(host), addr.ip())
                .map_err(|refused| refused.to_string())?;
        }
        Ok(())
    }

    /// One delivery round over the outbox at `now`; returns when the next attempt is due.
    async fn deliver_round(&self) -> Option<EpochMs> {
        let from = *self.alarms.outbox_cursor.lock();
        let pending = match self.repo.pending_alarms(from, ROUND) {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the alarm outbox");
                return None;
            }
        };
        let full = pending.len() == ROUND;
        *self.alarms.outbox_cursor.lock() = match pending.last() {
            Some(a) if full => Some((a.app_id, a.seq)),
            _ => None,
        };
        if from.is_none() {
            self.metrics.alarms_pending.store(
                i64::try_from(pending.len()).unwrap_or(i64::MAX),
                Ordering::Relaxed,
            );
        }
        // More of the outbox may be due now: then the next round comes at once.
        let mut next: Option<EpochMs> = full.then(|| self.now());
        for mut alarm in pending {
            if self.is_shutting_down() {
                return None;
            }
            let now = self.now();
            if alarm.next_attempt_at > now {
                next = Some(next.map_or(alarm.next_attempt_at, |n| n.min(alarm.next_attempt_at)));
                continue;
            }
            self.attempt(&mut alarm, now).await;
            if alarm.status == DeliveryStatus::Pending {
                next = Some(next.map_or(alarm.next_attempt_at, |n| n.min(alarm.next_attempt_at)));
            }
            match self.repo.update_alarm(&alarm) {
                Ok(c) => {
                    if self.await_commit(c).await.is_err() {
                        return None;
                    }
                }
                Err(e) => {
                    self.metrics.store_write_failed(&e);
                    return None;
                }
            }
            match alarm.status {
                DeliveryStatus::Delivered => {
                    self.metrics
                        .alarms_delivered
                        .fetch_add(1, Ordering::Relaxed);
                }
                DeliveryStatus::Failed => {
                    self.metrics.alarms_failed.fetch_add(1, Ordering::Relaxed);
                }
                DeliveryStatus::Pending | DeliveryStatus::Recorded => {}
            }
        }
        next
    }

    /// Sends `alarm` to every channel that has not accepted it yet and records the outcome.
    async fn attempt(&self, alarm: &mut AlarmRecord, now: EpochMs) {
        let app = self.app_name(alarm.app_id).unwrap_or_default();
        let remaining: Vec<String> = alarm.remaining().cloned().collect();
        alarm.attempt_count = alarm.attempt_count.saturating_add(1);
        for name in remaining {
            let outcome = match self.repo.get_channel(alarm.app_id, &name) {
                Ok(channel) => {
                    let notice = Notice {
                        id: &alarm.id,
                        app: &app,
                        job_id: alarm.job_id,
                        instance_id: alarm.instance_id,
                        kind: alarm.kind,
                        raised_at: alarm.raised_at,
                        message: &alarm.message,
                    };
                    self.send_to_channel(&channel, &notice).await
                }
                Err(e) => Err(e.to_string()),
            };
            if let Err(detail) = &outcome {
                tracing::warn!(alarm = %alarm.id, channel = %name, %detail, "alarm delivery failed");
            }
            alarm.push_attempt(AttemptRecord {
                at: now,
                channel: name,
                ok: outcome.is_ok(),
                detail: outcome.unwrap_or_else(|e| e),
            });
        }
        if alarm.remaining().next().is_none() {
            alarm.status = DeliveryStatus::Delivered;
        } else if alarm.attempt_count >= MAX_DELIVERY_ATTEMPTS {
            alarm.status = DeliveryStatus::Failed;
        } else {
            alarm.next_attempt_at = now.saturating_add(backoff_ms(alarm.attempt_count));
        }
    }
}

/// The alarm routes of [`NodeApi`](super::api::NodeApi).
impl Runtime {
    pub(crate) async fn api_put_channel(
        &self,
        app: AppRef,
        name: String,
        body: ChannelBody,
    ) -> Result<ChannelView, ApiError> {
        let record = channel_record(body, app.id, name)?;
        self.await_commit(self.repo.put_channel(&record)?).await?;
        Ok(channel_view(&record))
    }

    pub(crate) fn api_list_channels(&self, app: AppRef) -> Result<ChannelList, ApiError> {
        let items = self.repo.list_channels(app.id)?;
        Ok(ChannelList {
            items: items.iter().map(channel_view).collect(),
        })
    }

    pub(crate) async fn api_delete_channel(
        &self,
        app: AppRef,
        name: String,
    ) -> Result<(), ApiError> {
        self.await_commit(self.repo.delete_channel(app.id, &name)?)
            .await?;
        Ok(())
    }

    /// Sends a test alarm (id `test-{channel}-{now}`, kind RECOVERED, no job) to the channel
    /// now; nothing is stored.
    pub(crate) async fn api_test_channel(
        &self,
        app: AppRef,
        name: String,
    ) -> Result<ChannelTestResult, ApiError> {
        let channel = self.repo.get_channel(app.id, &name)?;
        let now = self.now();
        let id = format!("test-{name}-{now}");
        let notice = Notice {
            id: &id,
            app: &app.name,
            job_id: JobId(0),
            instance_id: None,
            kind: AlarmKind::Recovered,
            raised_at: now,
            message: "test alarm from ferrojob",
        };
        let outcome = self.send_to_channel(&channel, &notice).await;
        Ok(ChannelTestResult {
            delivered: outcome.is_ok(),
            detail: outcome.unwrap_or_else(|e| e),
        })
    }

    pub(crate) fn api_list_alarms(
        &self,
        app: AppRef,
        query: PageQuery,
    ) -> Result<AlarmList, ApiError> {
        let limit = query
            .limit
            .map_or(100, |l| usize::try_from(l).unwrap_or(usize::MAX));
        let page = self.repo.list_alarms(app.id, query.cursor, limit)?;
        Ok(AlarmList {
            items: page.items.iter().map(alarm_view).collect(),
            next_cursor: page.next_cursor,
        })
    }
}

/// `sha256={hex}` of the HMAC-SHA256 of `body` under `secret`.
pub(crate) fn signature(secret: &[u8], body: &[u8]) -> String {
    // HMAC accepts keys of any length.
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret) {
        Ok(m) => m,
        Err(_) => return String::new(),
    };
    mac.update(body);
    let tag = mac.finalize().into_bytes();
    let mut out = String::with_capacity(7 + tag.len() * 2);
    out.push_str("sha256=");
    for b in tag {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// The delivery task: a round over the outbox whenever a final write raised alarms, an
/// attempt comes due, or [`IDLE_POLL`] passed.
pub(crate) async fn run(sh: Arc<Runtime>) {
    loop {
        if sh.is_shutting_down() {
            return;
        }
        sh.poll_time_rules().await;
        let next = sh.deliver_round().await;
        sh.prune_history().await;
        let wait = next
            .map(|at| at.saturating_sub(sh.now()).max(0))
            .map(|ms| Duration::from_millis(u64::try_from(ms).unwrap_or(0)))
            .map_or(IDLE_POLL, |d| d.min(IDLE_POLL));
        tokio::select! {
            () = sh.alarms.wake.notified() => {}
            () = tokio::time::sleep(wait) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_its_cap() {
        assert_eq!(backoff_ms(1), 1_000);
        assert_eq!(backoff_ms(2), 2_000);
        assert_eq!(backoff_ms(5), 16_000);
        assert_eq!(backoff_ms(9), 256_000);
        assert_eq!(backoff_ms(10), MAX_BACKOFF_MS);
        assert_eq!(backoff_ms(u32::MAX), MAX_BACKOFF_MS);
    }

    #[test]
    fn the_signature_is_hmac_sha256_in_hex() {
        // RFC 4231 test case 2.
        assert_eq!(
            signature(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
