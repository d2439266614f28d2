//! Instances' log lines: one row per line, with its attempt and its structured fields as a
//! JSON array of `{"key", "value"}` objects in the processor's order.

use serde::{Deserialize, Serialize};
use tokio_postgres::Row;

use crate::ids::InstanceId;
use crate::model::LogLevel;
use crate::server::error::RepoError;
use crate::server::keys;
use crate::server::log_lines::keep_log_lines;
use crate::server::records::{LogLine, LogLineField};
use crate::server::repo::{Commit, LogAppend, LogEntry, Page, MAX_PAGE};

use super::tables::{Op, Table, Val};
use super::{big, get, i64s, name_of, text, unsigned, PgRepo};

impl PgRepo {
    pub(super) fn append_live(
        &self,
        id: InstanceId,
        lines: Vec<LogLine>,
    ) -> Result<Commit<LogAppend>, RepoError> {
        let (kept, mut out) = keep_log_lines(lines);
        let mut ops = Vec::with_capacity(kept.len());
        if !kept.is_empty() {
            // At most MAX_LOG_APPEND lines: the cast is lossless.
            let first = self.alloc(&self.log_seqs, kept.len() as u64)?;
            let instance = big(id.0)?;
            for (seq, line) in (first..).zip(&kept) {
                ops.push(Op::Put(
                    Table::Logs,
                    vec![
                        i64s(Some(instance)),
                        i64s(Some(big(seq)?)),
                        i64s(Some(line.time)),
                        text(&name_of(&line.level)),
                        text(&line.content),
                        i64s(Some(i64::from(line.attempt))),
                        Val::Text(Some(fields_json(&line.fields)?)),
                    ],
                ));
                out.stored += 1;
            }
        }
        Ok(self.submit(ops, out))
    }

    pub(super) fn read_logs(
        &self,
        id: InstanceId,
        cursor: Option<u64>,
        limit: usize,
    ) -> Result<Page<LogEntry>, RepoError> {
        let limit = limit.clamp(1, MAX_PAGE);
        let rows = self.query(
            "SELECT seq, time, level, content, attempt, fields::text FROM logs \
             WHERE instance_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
            vec![
                Box::new(big(id.0)?),
                Box::new(cursor.map(big).transpose()?.unwrap_or(-1)),
                Box::new(i64::try_from(limit).unwrap_or(i64::MAX)),
            ],
        )?;
        let items = rows
            .iter()
            .map(|row| entry_from(id, row))
            .collect::<Result<Vec<_>, _>>()?;
        let next_cursor = match items.last() {
            Some(e) if items.len() == limit => Some(e.seq),
            _ => None,
        };
        Ok(Page { items, next_cursor })
    }

    /// Up to `limit` (at most [`MAX_PAGE`]) lines of instance `id`'s log just before `before`,
    /// in append order (see [`LogRepo::read_logs_before`](crate::server::LogRepo::read_logs_before)):
    /// one indexed query, newest first, reversed.
    pub(super) fn read_logs_before(
        &self,
        id: InstanceId,
        before: u64,
        limit: usize,
    ) -> Result<Vec<LogEntry>, RepoError> {
        let limit = limit.clamp(1, MAX_PAGE);
        let rows = self.query(
            "SELECT seq, time, level, content, attempt, fields::text FROM logs \
             WHERE instance_id = $1 AND seq < $2 ORDER BY seq DESC LIMIT $3",
            vec![
                Box::new(big(id.0)?),
                Box::new(i64::try_from(before).unwrap_or(i64::MAX)),
                Box::new(i64::try_from(limit).unwrap_or(i64::MAX)),
            ],
        )?;
        let mut items = rows
            .iter()
            .map(|row| entry_from(id, row))
            .collect::<Result<Vec<_>, _>>()?;
        items.reverse();
        Ok(items)
    }
}

/// A structured field as the `fields` column holds it.
#[derive(Serialize, Deserialize)]
struct FieldJson {
    key: String,
    value: String,
}

fn fields_json(fields: &[LogLineField]) -> Result<String, RepoError> {
    let fields: Vec<FieldJson> = fields
        .iter()
        .map(|f| FieldJson {
            key: f.key.clone(),
            value: f.value.clone(),
        })
        .collect();
    serde_json::to_string(&fields).map_err(|e| RepoError::invalid("fields", e.to_string()))
}

/// A row of `seq, time, level, content, attempt, fields::text` of instance `id`'s log.
fn entry_from(id: InstanceId, row: &Row) -> Result<LogEntry, RepoError> {
    let seq = unsigned("logs", get(row, 0)?)?;
    let corrupt = |e: String| RepoError::corrupt("logs", &keys::pair(id.0, seq), e);
    let level: String = get(row, 2)?;
    let level: LogLevel = serde_json::from_value(serde_json::Value::String(level))
        .map_err(|e| corrupt(e.to_string()))?;
    let attempt: i64 = get(row, 4)?;
    let attempt = u32::try_from(attempt).map_err(|_| corrupt(format!("attempt {attempt}")))?;
    let fields: String = get(row, 5)?;
    let fields: Vec<FieldJson> =
        serde_json::from_str(&fields).map_err(|e| corrupt(format!("fields: {e}")))?;
    Ok(LogEntry {
        seq,
        line: LogLine {
            time: get(row, 1)?,
            level,
            content: get(row, 3)?,
            attempt,
            fields: fields
                .into_iter()
                .map(|f| LogLineField {
                    key: f.key,
                    value: f.value,
                })
                .collect(),
        },
    })
}
