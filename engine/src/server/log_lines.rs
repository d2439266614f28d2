//! Instances' log lines in the log store: appended in order under one sequence, read forward
//! from a cursor and backward before one (the `logs` table of `keys.rs`), and the caps every
//! repository applies to an append ([`keep_log_lines`]).

use ferrojob_store::{Batch, KeyRange};

use crate::ids::InstanceId;

use super::error::RepoError;
use super::keys;
use super::keys::LOGS;
use super::log_codec::{decode_log_line, encode_log_line};
use super::records::{truncate_marked, LogLine, MAX_LOG_LINE_LEN};
use super::repo::{Commit, LogAppend, LogEntry, LogRepo, Page, MAX_LOG_APPEND, MAX_PAGE};

/// The lines of an append that are stored, and the counts so far: at most
/// [`MAX_LOG_APPEND`] lines (the rest dropped and counted), each with NUL characters as
/// U+FFFD and content beyond [`MAX_LOG_LINE_LEN`] bytes cut and marked (counted). `stored`
/// is left to the caller.
pub(crate) fn keep_log_lines(
    lines: impl IntoIterator<Item = LogLine>,
) -> (Vec<LogLine>, LogAppend) {
    let mut out = LogAppend {
        stored: 0,
        dropped: 0,
        truncated: 0,
    };
    let mut kept = Vec::new();
    for mut line in lines {
        if kept.len() == MAX_LOG_APPEND {
            out.dropped += 1;
            continue;
        }
        line.replace_nul();
        if line.content.len() > MAX_LOG_LINE_LEN {
            line.content = truncate_marked(&line.content, MAX_LOG_LINE_LEN);
            out.truncated += 1;
        }
        kept.push(line);
    }
    (kept, out)
}

impl LogRepo {
    /// Appends `lines` to instance `id`'s log, in order. Stores at most [`MAX_LOG_APPEND`]
    /// lines (the rest are dropped and counted); content beyond [`MAX_LOG_LINE_LEN`] bytes is
    /// cut and marked; a NUL character becomes U+FFFD.
    pub fn append_logs(
        &self,
        id: InstanceId,
        lines: impl IntoIterator<Item = LogLine>,
    ) -> Result<Commit<LogAppend>, RepoError> {
        self.get_instance(id)?;
        self.append_logs_of_live(id, lines)
    }

    /// [`append_logs`](LogRepo::append_logs) for an instance the caller knows exists and is not
    /// being deleted (the server core's non-final instances): no read before the write.
    pub fn append_logs_of_live(
        &self,
        id: InstanceId,
        lines: impl IntoIterator<Item = LogLine>,
    ) -> Result<Commit<LogAppend>, RepoError> {
        let (kept, mut out) = keep_log_lines(lines);
        let mut batch = Batch::new();
        if !kept.is_empty() {
            // `kept.len()` is at most MAX_LOG_APPEND: the cast is lossless.
            let first = self.log_seqs.alloc(&*self.store, kept.len() as u64)?;
            for (seq, line) in (first..).zip(&kept) {
                batch.push_put(LOGS, keys::pair(id.0, seq), encode_log_line(line)?);
                out.stored += 1;
            }
        }
        Ok(self.submit(batch, out))
    }

    /// Up to `limit` (at most [`MAX_PAGE`]) lines of instance `id`'s log after `cursor` (a
    /// [`LogEntry::seq`]), in append order.
    pub fn read_logs(
        &self,
        id: InstanceId,
        cursor: Option<u64>,
        limit: usize,
    ) -> Result<Page<LogEntry>, RepoError> {
        let limit = limit.clamp(1, MAX_PAGE);
        let mut range = KeyRange::prefix(&keys::id(id.0));
        if let Some(c) = cursor {
            range = range.after(&keys::pair(id.0, c));
        }
        let rows = self.store.range(LOGS, &range, limit)?;
        let mut items = Vec::with_capacity(rows.len());
        for (k, v) in &rows {
            items.push(LogEntry {
                seq: keys::read_child(LOGS, k)?,
                line: decode_log_line(k, v)?,
            });
        }
        let next_cursor = match items.last() {
            Some(e) if items.len() == limit => Some(e.seq),
            _ => None,
        };
        Ok(Page { items, next_cursor })
    }

    /// Up to `limit` (at most [`MAX_PAGE`]) lines of instance `id`'s log just before `before`
    /// (a [`LogEntry::seq`]), in append order: the page that precedes it (paging backward).
    /// The store scans forward only, so this reads every line before `before` (bounded by the
    /// per-instance log cap) and decodes only the page it returns.
    pub fn read_logs_before(
        &self,
        id: InstanceId,
        before: u64,
        limit: usize,
    ) -> Result<Vec<LogEntry>, RepoError> {
        let limit = limit.clamp(1, MAX_PAGE);
        let end = keys::pair(id.0, before);
        let all = KeyRange::prefix(&keys::id(id.0));
        let (start, _) = all.as_bounds();
        let mut range = KeyRange::new(start, std::ops::Bound::Excluded(&end));
        let mut last: std::collections::VecDeque<(Vec<u8>, Vec<u8>)> =
            std::collections::VecDeque::with_capacity(limit);
        loop {
            let rows = self.store.range(LOGS, &range, MAX_PAGE)?;
            let full = rows.len() == MAX_PAGE;
            let Some((k, _)) = rows.last() else { break };
            let next = range.after(k);
            for row in rows {
                if last.len() == limit {
                    last.pop_front();
                }
                last.push_back(row);
            }
            if !full {
                break;
            }
            range = next;
        }
        last.iter()
            .map(|(k, v)| {
                Ok(LogEntry {
                    seq: keys::read_child(LOGS, k)?,
                    line: decode_log_line(k, v)?,
                })
            })
            .collect()
    }
}
