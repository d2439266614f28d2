//! The alarm outbox and the apps' channels.

use tokio_postgres::Row;

use crate::ids::AppId;
use crate::server::alarm_repo::{AlarmRecord, ChannelRecord, MAX_CHANNELS_PER_APP};
use crate::server::codec::{decode, encode};
use crate::server::error::RepoError;
use crate::server::repo::{Commit, Page, MAX_PAGE};

use super::tables::{Op, Table, Val};
use super::{big, get, i64s, name_of, text, PgRepo};

impl PgRepo {
    pub(super) fn alarms_ops(
        &self,
        ops: &mut Vec<Op>,
        alarms: &mut [AlarmRecord],
    ) -> Result<(), RepoError> {
        if !alarms.is_empty() {
            let n = u64::try_from(alarms.len()).unwrap_or(u64::MAX);
            let first = self.alloc(&self.alarm_seqs, n)?;
            for (seq, alarm) in (first..).zip(alarms.iter_mut()) {
                alarm.seq = seq;
                ops.push(Self::alarm_op(alarm)?);
            }
        }
        Ok(())
    }

    pub(super) fn alarm_from(row: &Row) -> Result<AlarmRecord, RepoError> {
        let app: i64 = get(row, 0)?;
        let seq: i64 = get(row, 1)?;
        let mut key = app.to_be_bytes().to_vec();
        key.extend_from_slice(&seq.to_be_bytes());
        decode("alarms", &key, &get::<Vec<u8>>(row, 2)?)
    }

    pub(super) fn pending_alarms(
        &self,
        after: Option<(AppId, u64)>,
        limit: usize,
    ) -> Result<Vec<AlarmRecord>, RepoError> {
        let limit = limit.clamp(1, MAX_PAGE);
        let (app, seq) = match after {
            Some((a, s)) => (big(a.0)?, big(s)?),
            None => (-1, -1),
        };
        self.query(
            "SELECT app_id, seq, record FROM alarms WHERE pending AND (app_id, seq) > ($1, $2) \
             ORDER BY app_id, seq LIMIT $3",
            vec![
                Box::new(app),
                Box::new(seq),
                Box::new(i64::try_from(limit).unwrap_or(i64::MAX)),
            ],
        )?
        .iter()
        .map(Self::alarm_from)
        .collect()
    }

    pub(super) fn list_alarms(
        &self,
        app: AppId,
        cursor: Option<u64>,
        limit: usize,
    ) -> Result<Page<AlarmRecord>, RepoError> {
        let limit = limit.clamp(1, MAX_PAGE);
        let rows = self.query(
            "SELECT app_id, seq, record FROM alarms WHERE app_id = $1 AND seq < $2 \
             ORDER BY seq DESC LIMIT $3",
            vec![
                Box::new(big(app.0)?),
                Box::new(cursor.map(big).transpose()?.unwrap_or(i64::MAX)),
                Box::new(i64::try_from(limit).unwrap_or(i64::MAX)),
            ],
        )?;
        let items = rows
            .iter()
            .map(Self::alarm_from)
            .collect::<Result<Vec<_>, _>>()?;
        let next_cursor = match items.last() {
            Some(a) if rows.len() == limit => Some(a.seq),
            _ => None,
        };
        Ok(Page { items, next_cursor })
    }

    pub(super) fn prune_alarms(
        &self,
        app: AppId,
        keep: usize,
        limit: usize,
    ) -> Result<Commit<usize>, RepoError> {
        let limit = limit.clamp(1, MAX_PAGE);
        let app_id = big(app.0)?;
        let rows = self.query(
            "SELECT seq, pending FROM alarms WHERE app_id = $1 ORDER BY seq DESC LIMIT $2",
            vec![
                Box::new(app_id),
                Box::new(i64::try_from(keep.saturating_add(limit)).unwrap_or(i64::MAX)),
            ],
        )?;
        let mut ops = Vec::new();
        for row in rows.iter().skip(keep) {
            let seq: i64 = get(row, 0)?;
            let pending: bool = get(row, 1)?;
            if !pending {
                ops.push(Op::Delete(
                    Table::Alarms,
                    vec![i64s(Some(app_id)), i64s(Some(seq))],
                ));
            }
        }
        let n = ops.len();
        Ok(self.submit(ops, n))
    }

    pub(super) fn put_channel(&self, channel: &ChannelRecord) -> Result<Commit<()>, RepoError> {
        channel.validate()?;
        self.get_app(channel.app_id)?;
        let app_id = big(channel.app_id.0)?;
        let exists = self
            .query_opt(
                "SELECT 1 FROM channels WHERE app_id = $1 AND name = $2",
                vec![Box::new(app_id), Box::new(channel.name.clone())],
            )?
            .is_some();
        if !exists && self.list_channels(channel.app_id)?.len() >= MAX_CHANNELS_PER_APP {
            return Err(RepoError::invalid(
                "name",
                format!("an app has at most {MAX_CHANNELS_PER_APP} channels"),
            ));
        }
        let ops = vec![Op::Put(
            Table::Channels,
            vec![
                i64s(Some(app_id)),
                text(&channel.name),
                text(&name_of(&channel.kind)),
                text(&channel.url),
                Val::Bytes(encode("channels", channel)?),
            ],
        )];
        Ok(self.submit(ops, ()))
    }

    pub(super) fn get_channel(&self, app: AppId, name: &str) -> Result<ChannelRecord, RepoError> {
        match self.query_opt(
            "SELECT record FROM channels WHERE app_id = $1 AND name = $2",
            vec![Box::new(big(app.0)?), Box::new(name.to_owned())],
        )? {
            Some(row) => decode("channels", name.as_bytes(), &get::<Vec<u8>>(&row, 0)?),
            None => Err(RepoError::NotFound {
                what: "channel",
                id: name
                    .chars()
                    .take(crate::server::alarm_repo::MAX_CHANNEL_NAME_LEN)
                    .collect(),
            }),
        }
    }

    pub(super) fn delete_channel(&self, app: AppId, name: &str) -> Result<Commit<()>, RepoError> {
        self.get_channel(app, name)?;
        let ops = vec![Op::Delete(
            Table::Channels,
            vec![i64s(Some(big(app.0)?)), text(name)],
        )];
        Ok(self.submit(ops, ()))
    }

    pub(super) fn list_channels(&self, app: AppId) -> Result<Vec<ChannelRecord>, RepoError> {
        let rows = self.query(
            "SELECT name, record FROM channels WHERE app_id = $1 ORDER BY name LIMIT $2",
            vec![
                Box::new(big(app.0)?),
                Box::new(i64::try_from(MAX_CHANNELS_PER_APP + 1).unwrap_or(i64::MAX)),
            ],
        )?;
        rows.iter()
            .map(|row| {
                let name: String = get(row, 0)?;
                decode("channels", name.as_bytes(), &get::<Vec<u8>>(row, 1)?)
            })
            .collect()
    }
}
