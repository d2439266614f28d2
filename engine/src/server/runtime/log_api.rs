//! The instance log route over the server core: a page of stored lines, forward from a
//! cursor or backward from `before`, with the count of lines dropped at the server's caps.

use crate::api::{ApiError, AppRef, LogFieldView, LogLineView, LogQuery, LogView};
use crate::ids::InstanceId;

use super::api::{limit, NodeApi};

impl NodeApi {
    pub(super) async fn log_page(
        &self,
        app: AppRef,
        id: InstanceId,
        query: LogQuery,
    ) -> Result<LogView, ApiError> {
        let sh = &self.0;
        query.validate()?;
        self.instance(&app, id)?;
        let limit = limit(query.limit, 1000);
        let (items, next_cursor, prev_cursor) = match query.before {
            Some(before) => {
                let items = sh.repo.read_logs_before(id, before, limit)?;
                // A full page may have lines before it; the page after it starts at
                // `before` (what the caller came from).
                let prev = items
                    .first()
                    .filter(|_| items.len() >= limit)
                    .map(|e| e.seq);
                let next = items.last().map(|e| e.seq);
                (items, next, prev)
            }
            None => {
                let page = sh.repo.read_logs(id, query.cursor, limit)?;
                let prev = match (page.items.first(), query.cursor) {
                    (_, None) => None,
                    (Some(first), Some(_)) => Some(first.seq),
                    (None, Some(c)) => c.checked_add(1),
                };
                (page.items, page.next_cursor, prev)
            }
        };
        let dropped = sh.log_counts.get(&id).map_or(0, |c| c.1);
        Ok(LogView {
            instance_id: id,
            lines: items
                .into_iter()
                .map(|e| LogLineView {
                    seq: e.seq,
                    time_ms: e.line.time,
                    level: e.line.level,
                    content: e.line.content,
                    attempt: e.line.attempt,
                    fields: e
                        .line
                        .fields
                        .into_iter()
                        .map(|f| LogFieldView {
                            key: f.key,
                            value: f.value,
                        })
                        .collect(),
                })
                .collect(),
            next_cursor,
            prev_cursor,
            dropped,
        })
    }
}
