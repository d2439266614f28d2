//! The alarm outbox and the app's channels.
//!
//! | table            | key                             | value             | purpose |
//! |------------------|---------------------------------|-------------------|---------|
//! | `alarms`         | app id (8) ++ !alarm seq (8)    | [`AlarmRecord`]   | an app's alarms with their delivery history, newest first |
//! | `alarm_pending`  | app id (8) ++ alarm seq (8)     | empty             | alarms not yet delivered (the outbox) |
//! | `alarm_channels` | app id (8) ++ name (UTF-8)      | [`ChannelRecord`] | an app's channels by name |
//!
//! An alarm a final transition raises is written by
//! [`LogRepo::put_instance_with_alarms`] in the batch that writes the instance: after a crash
//! either the instance is final and its alarms are in the outbox, or neither. The delivery
//! task reads the outbox ([`LogRepo::pending_alarms`]) and records each attempt
//! ([`LogRepo::update_alarm`]); the pending row goes when the alarm is delivered or given up.
//! Alarm sequence numbers come from the same hi-lo allocation as instance ids (`meta` key
//! `next_alarm_seq`). [`LogRepo::prune_alarms`] bounds an app's history (the runtime keeps the
//! newest 10 000 alarms per app, and every pending one).

use ferrojob_store::{Batch, KeyRange, Scan};
use rkyv::{Archive, Deserialize, Serialize};

use crate::alarm::channel::ChannelKind;
use crate::alarm::{Alarm, AlarmKind};
use crate::ids::{AppId, InstanceId, JobId};
use crate::model::InstanceStatus;
use crate::time_expression::EpochMs;

use super::codec::{decode, encode};
use super::error::RepoError;
use super::instance::InstanceRecord;
use super::keys;
use super::repo::{Commit, LogRepo, Page, MAX_PAGE};

/// Alarms with their delivery history.
pub const ALARMS: &str = "alarms";
/// The outbox: undelivered alarms.
pub const ALARM_PENDING: &str = "alarm_pending";
/// Channels by app and name.
pub const ALARM_CHANNELS: &str = "alarm_channels";
/// `meta` key of the next alarm sequence number.
pub const NEXT_ALARM_SEQ: &[u8] = b"next_alarm_seq";

/// Attempts kept per alarm (the oldest are dropped beyond; `attempt_count` keeps counting).
pub const MAX_KEPT_ATTEMPTS: usize = 16;
/// Longest channel name, in bytes.
pub const MAX_CHANNEL_NAME_LEN: usize = 64;
/// Longest channel URL, in bytes.
pub const MAX_CHANNEL_URL_LEN: usize = 2048;
/// Most channels per app.
pub const MAX_CHANNELS_PER_APP: usize = 64;
/// Longest stored attempt detail, in bytes.
pub const MAX_ATTEMPT_DETAIL_LEN: usize = 512;

/// Where an alarm's delivery stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Archive, Serialize, Deserialize)]
#[rkyv(derive(Debug, PartialEq, Eq))]
pub enum DeliveryStatus {
    /// In the outbox: not yet accepted by every channel.
    Pending,
    /// Every channel accepted it.
    Delivered,
    /// Given up after the last attempt.
    Failed,
    /// Its rules name no channel: kept as history only.
    Recorded,
}

/// One delivery attempt to one channel.
#[derive(Clone, Debug, PartialEq, Eq, Archive, Serialize, Deserialize)]
pub struct AttemptRecord {
    /// When, ms since the epoch.
    pub at: EpochMs,
    /// The channel's name.
    pub channel: String,
    /// Whether the channel accepted it (a 2xx answer).
    pub ok: bool,
    /// The HTTP status or the error, at most [`MAX_ATTEMPT_DETAIL_LEN`] bytes.
    pub detail: String,
}

/// A raised alarm and its delivery.
#[derive(Clone, Debug, PartialEq, Eq, Archive, Serialize, Deserialize)]
pub struct AlarmRecord {
    /// Position in the app's alarm list (assigned on insert).
    pub seq: u64,
    /// The stable alarm id (see [`Alarm::id`]).
    pub id: String,
    /// The app.
    pub app_id: AppId,
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
    /// The channels to deliver to, by name.
    pub channels: Vec<String>,
    /// The channels that accepted it.
    pub delivered_to: Vec<String>,
    /// Delivery status.
    pub status: DeliveryStatus,
    /// Attempts made (all channels of one round count once).
    pub attempt_count: u32,
    /// When the next attempt is due, ms since the epoch.
    pub next_attempt_at: EpochMs,
    /// The last [`MAX_KEPT_ATTEMPTS`] attempts, oldest first.
    pub attempts: Vec<AttemptRecord>,
}

impl AlarmRecord {
    /// The record of a freshly raised `alarm` of `app`, going to `channels`.
    pub fn raised(app_id: AppId, alarm: Alarm, channels: Vec<String>) -> AlarmRecord {
        let status = if channels.is_empty() {
            DeliveryStatus::Recorded
        } else {
            DeliveryStatus::Pending
        };
        AlarmRecord {
            seq: 0,
            id: alarm.id,
            app_id,
            job_id: alarm.job_id,
            instance_id: alarm.instance_id,
            kind: alarm.kind,
            raised_at: alarm.raised_at,
            message: alarm.message,
            channels,
            delivered_to: Vec::new(),
            status,
            attempt_count: 0,
            next_attempt_at: alarm.raised_at,
            attempts: Vec::new(),
        }
    }

    /// Records an attempt, keeping the last [`MAX_KEPT_ATTEMPTS`].
    pub fn push_attempt(&mut self, mut attempt: AttemptRecord) {
        attempt.detail = super::records::truncate_marked(&attempt.detail, MAX_ATTEMPT_DETAIL_LEN);
        if attempt.ok && !self.delivered_to.contains(&attempt.channel) {
            self.delivered_to.push(attempt.channel.clone());
        }
        self.attempts.push(attempt);
        if self.attempts.len() > MAX_KEPT_ATTEMPTS {
            let excess = self.attempts.len() - MAX_KEPT_ATTEMPTS;
            self.attempts.drain(..excess);
        }
    }

    /// The channels still to deliver to.
    pub fn remaining(&self) -> impl Iterator<Item = &String> {
        self.channels
            .iter()
            .filter(|c| !self.delivered_to.contains(c))
    }
}

/// A channel of an app.
#[derive(Clone, PartialEq, Eq, Archive, Serialize, Deserialize)]
pub struct ChannelRecord {
    /// The app.
    pub app_id: AppId,
    /// Unique within the app, 1 to [`MAX_CHANNEL_NAME_LEN`] bytes of `[A-Za-z0-9_.-]`.
    pub name: String,
    /// The body shape.
    pub kind: ChannelKind,
    /// `http://` URL the alarm is posted to (at most [`MAX_CHANNEL_URL_LEN`] bytes).
    pub url: String,
    /// HMAC-SHA256 key of the signature header; never shown back.
    pub secret: Option<String>,
}

impl std::fmt::Debug for ChannelRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChannelRecord")
            .field("app_id", &self.app_id)
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("url", &self.url)
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl ChannelRecord {
    /// Checks the name and the URL.
    pub fn validate(&self) -> Result<(), RepoError> {
        let name_ok = !self.name.is_empty()
            && self.name.len() <= MAX_CHANNEL_NAME_LEN
            && self
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
        if !name_ok {
            return Err(RepoError::invalid(
                "name",
                format!("1 to {MAX_CHANNEL_NAME_LEN} bytes of letters, digits, '_', '-', '.'"),
            ));
        }
        if self.url.len() > MAX_CHANNEL_URL_LEN {
            return Err(RepoError::invalid(
                "url",
                format!("at most {MAX_CHANNEL_URL_LEN} bytes"),
            ));
        }
        crate::alarm::deliver::validate_endpoint(self.kind, &self.url)
            .map_err(|e| RepoError::invalid("url", e.to_string()))?;
        if self
            .secret
            .as_ref()
            .is_some_and(|s| s.is_empty() || s.len() > 256)
        {
            return Err(RepoError::invalid("secret", "1 to 256 bytes when given"));
        }
        Ok(())
    }
}

fn channel_key(app: AppId, name: &str) -> Vec<u8> {
    let mut k = keys::id(app.0).to_vec();
    k.extend_from_slice(name.as_bytes());
    k
}

impl LogRepo {
    /// [`put_instance_from`](LogRepo::put_instance_from) and, in the same batch, `alarms` (fresh
    /// sequence numbers assigned; pending ones into the outbox). The commit's value is the
    /// alarms as stored.
    pub fn put_instance_with_alarms(
        &self,
        instance: &InstanceRecord,
        prev: Option<InstanceStatus>,
        mut alarms: Vec<AlarmRecord>,
    ) -> Result<Commit<Vec<AlarmRecord>>, RepoError> {
        let mut batch = Batch::new();
        Self::instance_put_ops(&mut batch, instance, prev)?;
        if !alarms.is_empty() {
            let n = u64::try_from(alarms.len()).unwrap_or(u64::MAX);
            let first = self.alarm_seqs.alloc(&*self.store, n)?;
            for (seq, alarm) in (first..).zip(alarms.iter_mut()) {
                alarm.seq = seq;
                Self::alarm_ops(&mut batch, alarm)?;
            }
        }
        Ok(self.submit(batch, alarms))
    }

    /// Inserts alarms no instance write carries (the dead man's switch), in one batch, with
    /// fresh sequence numbers.
    pub fn insert_alarms(
        &self,
        mut alarms: Vec<AlarmRecord>,
    ) -> Result<Commit<Vec<AlarmRecord>>, RepoError> {
        let mut batch = Batch::new();
        if !alarms.is_empty() {
            let n = u64::try_from(alarms.len()).unwrap_or(u64::MAX);
            let first = self.alarm_seqs.alloc(&*self.store, n)?;
            for (seq, alarm) in (first..).zip(alarms.iter_mut()) {
                alarm.seq = seq;
                Self::alarm_ops(&mut batch, alarm)?;
            }
        }
        Ok(self.submit(batch, alarms))
    }

    fn alarm_ops(batch: &mut Batch, alarm: &AlarmRecord) -> Result<(), RepoError> {
        let app = alarm.app_id.0;
        batch.push_put(
            ALARMS,
            keys::newest_first(app, alarm.seq),
            encode(ALARMS, alarm)?,
        );
        let pending = keys::pair(app, alarm.seq);
        if alarm.status == DeliveryStatus::Pending {
            batch.push_put(ALARM_PENDING, pending, Vec::new());
        } else {
            batch.push_delete(ALARM_PENDING, pending);
        }
        Ok(())
    }

    /// Saves an alarm after a delivery attempt (the outbox row goes once it is no longer
    /// pending).
    pub fn update_alarm(&self, alarm: &AlarmRecord) -> Result<Commit<()>, RepoError> {
        let mut batch = Batch::new();
        Self::alarm_ops(&mut batch, alarm)?;
        Ok(self.submit(batch, ()))
    }

    /// Up to `limit` (at most [`MAX_PAGE`]) alarms of the outbox, by app then oldest first,
    /// after `after` (the app and sequence number of the last one of the previous page).
    pub fn pending_alarms(
        &self,
        after: Option<(AppId, u64)>,
        limit: usize,
    ) -> Result<Vec<AlarmRecord>, RepoError> {
        let limit = limit.clamp(1, MAX_PAGE);
        let mut range = KeyRange::all();
        if let Some((app, seq)) = after {
            range = range.after(&keys::pair(app.0, seq));
        }
        let rows = self.store.range(ALARM_PENDING, &range, limit)?;
        let mut out = Vec::with_capacity(rows.len());
        for (k, _) in rows {
            let (Some(app), Ok(seq)) = (k.get(..8), keys::read_child(ALARM_PENDING, &k)) else {
                return Err(RepoError::corrupt(
                    ALARM_PENDING,
                    &k,
                    "key is not an id pair",
                ));
            };
            let app = keys::read_id(ALARM_PENDING, app)?;
            let key = keys::newest_first(app, seq);
            match self.store.get(ALARMS, &key)? {
                Some(v) => out.push(decode(ALARMS, &key, &v)?),
                None => {
                    return Err(RepoError::corrupt(
                        ALARM_PENDING,
                        &k,
                        format!("outbox row names missing alarm {seq}"),
                    ))
                }
            }
        }
        Ok(out)
    }

    /// Up to `limit` (at most [`MAX_PAGE`]) alarms of `app`, newest first, after `cursor`
    /// (the last sequence number of the previous page).
    pub fn list_alarms(
        &self,
        app: AppId,
        cursor: Option<u64>,
        limit: usize,
    ) -> Result<Page<AlarmRecord>, RepoError> {
        let limit = limit.clamp(1, MAX_PAGE);
        let mut range = KeyRange::prefix(&keys::id(app.0));
        if let Some(c) = cursor {
            range = range.after(&keys::newest_first(app.0, c));
        }
        let rows = self.store.range(ALARMS, &range, limit)?;
        let mut items = Vec::with_capacity(rows.len());
        for (k, v) in &rows {
            items.push(decode::<AlarmRecord>(ALARMS, k, v)?);
        }
        let next_cursor = match items.last() {
            Some(a) if rows.len() == limit => Some(a.seq),
            _ => None,
        };
        Ok(Page { items, next_cursor })
    }

    /// Deletes up to `limit` (at most [`MAX_PAGE`]) of `app`'s oldest alarms beyond its
    /// newest `keep`, except pending ones (they stay until delivered or given up). Answers
    /// how many it deletes.
    pub fn prune_alarms(
        &self,
        app: AppId,
        keep: usize,
        limit: usize,
    ) -> Result<Commit<usize>, RepoError> {
        let limit = limit.clamp(1, MAX_PAGE);
        let rows = self.store.range(
            ALARMS,
            &KeyRange::prefix(&keys::id(app.0)),
            keep.saturating_add(limit),
        )?;
        let mut batch = Batch::new();
        let mut n = 0usize;
        for (k, _) in rows.iter().skip(keep) {
            let seq = keys::read_newest_first(ALARMS, k)?;
            if self
                .store
                .get(ALARM_PENDING, &keys::pair(app.0, seq))?
                .is_none()
            {
                batch.push_delete(ALARMS, k.clone());
                n += 1;
            }
        }
        Ok(self.submit(batch, n))
    }

    /// Creates or replaces channel `channel.name` of its app.
    pub fn put_channel(&self, channel: &ChannelRecord) -> Result<Commit<()>, RepoError> {
        channel.validate()?;
        self.get_app(channel.app_id)?;
        let key = channel_key(channel.app_id, &channel.name);
        if self.store.get(ALARM_CHANNELS, &key)?.is_none()
            && self.list_channels(channel.app_id)?.len() >= MAX_CHANNELS_PER_APP
        {
            return Err(RepoError::invalid(
                "name",
                format!("an app has at most {MAX_CHANNELS_PER_APP} channels"),
            ));
        }
        let batch = Batch::new().put(ALARM_CHANNELS, key, encode(ALARM_CHANNELS, channel)?);
        Ok(self.submit(batch, ()))
    }

    /// Channel `name` of `app`.
    pub fn get_channel(&self, app: AppId, name: &str) -> Result<ChannelRecord, RepoError> {
        let key = channel_key(app, name);
        match self.store.get(ALARM_CHANNELS, &key)? {
            Some(v) => decode(ALARM_CHANNELS, &key, &v),
            None => Err(RepoError::NotFound {
                what: "channel",
                id: name.chars().take(MAX_CHANNEL_NAME_LEN).collect(),
            }),
        }
    }

    /// Deletes channel `name` of `app` (alarms naming it then fail to deliver there).
    pub fn delete_channel(&self, app: AppId, name: &str) -> Result<Commit<()>, RepoError> {
        self.get_channel(app, name)?;
        let batch = Batch::new().delete(ALARM_CHANNELS, channel_key(app, name));
        Ok(self.submit(batch, ()))
    }

    /// Every channel of `app`, by name.
    pub fn list_channels(&self, app: AppId) -> Result<Vec<ChannelRecord>, RepoError> {
        let mut out = Vec::new();
        for kv in Scan::new(
            &*self.store,
            ALARM_CHANNELS,
            KeyRange::prefix(&keys::id(app.0)),
        ) {
            let (k, v) = kv?;
            out.push(decode(ALARM_CHANNELS, &k, &v)?);
            if out.len() > MAX_CHANNELS_PER_APP {
                break;
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alarm(job: JobId, instance: InstanceId) -> Alarm {
        Alarm {
            id: format!("job-{}-failures-{}", job.0, instance.0),
            job_id: job,
            instance_id: Some(instance),
            kind: AlarmKind::Failures,
            raised_at: 5,
            message: "failed".into(),
        }
    }

    #[test]
    fn attempts_are_bounded_and_channels_validated() {
        let mut a = AlarmRecord::raised(AppId(1), alarm(JobId(1), InstanceId(1)), vec!["x".into()]);
        for i in 0..40 {
            a.push_attempt(AttemptRecord {
                at: i,
                channel: "x".into(),
                ok: false,
                detail: "e".repeat(2000),
            });
        }
        assert_eq!(a.attempts.len(), MAX_KEPT_ATTEMPTS);
        assert_eq!(a.attempts[0].at, 40 - MAX_KEPT_ATTEMPTS as i64);
        assert!(a.attempts[0].detail.len() <= MAX_ATTEMPT_DETAIL_LEN + 32);
        let ch = |name: &str, url: &str| ChannelRecord {
            app_id: AppId(1),
            name: name.into(),
            kind: ChannelKind::Webhook,
            url: url.into(),
            secret: None,
        };
        assert!(ch("ops", "http://127.0.0.1:9/hook").validate().is_ok());
        assert!(ch("o ps", "http://x").validate().is_err());
        assert!(ch("ops", "ftp://x").validate().is_err());
        assert!(!format!(
            "{:?}",
            ChannelRecord {
                secret: Some("s3cr3t".into()),
                ..ch("a", "http://x")
            }
        )
        .contains("s3cr3t"));
    }
}
