//! An instance's log as the OpenAPI returns it: lines with their level, attempt and fields,
//! and the cursors that page through them.

use serde::{Deserialize, Serialize};

use super::error::ApiError;
use crate::ids::InstanceId;
use crate::model::LogLevel;
use crate::time_expression::EpochMs;

/// One stored log line of an instance.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLineView {
    /// Its position in the instance's log (use as `cursor` or `before`).
    pub seq: u64,
    /// When the processor logged it (worker clock, epoch ms).
    pub time_ms: EpochMs,
    /// `DEBUG`, `INFO`, `WARN` or `ERROR`.
    pub level: LogLevel,
    /// The text (at most 8 KiB; longer lines are cut and marked).
    pub content: String,
    /// The dispatch attempt that wrote it: 1 for the first run, one more per retry of the
    /// instance; 0 when unknown (lines stored by an older server).
    #[serde(default)]
    pub attempt: u32,
    /// Structured fields the processor attached, in its order (at most 16; omitted when none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<LogFieldView>,
}

/// One structured field of a log line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogFieldView {
    /// The name (at most 64 bytes).
    pub key: String,
    /// The value, as text (at most 1 KiB).
    pub value: String,
}

impl LogLineView {
    /// The line as one line of text, as `GET .../log.txt` and the CLI print it:
    /// `2026-12-06T20:30:00.123Z WARN [attempt 2] text {key=value, ...}` (newlines in the
    /// text and fields escaped as `\n`).
    pub fn to_text(&self) -> String {
        let time = chrono::DateTime::from_timestamp_millis(self.time_ms)
            .map(|t| t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
            .unwrap_or_else(|| self.time_ms.to_string());
        let level = match self.level {
            LogLevel::Debug => "DEBUG",
            LogLevel::Info => "INFO",
            LogLevel::Warn => "WARN",
            LogLevel::Error => "ERROR",
        };
        let mut s = format!("{time} {level:<5} [attempt {}] ", self.attempt);
        push_escaped(&mut s, &self.content);
        if !self.fields.is_empty() {
            s.push_str(" {");
            for (i, f) in self.fields.iter().enumerate() {
                if i > 0 {
                    s.push_str(", ");
                }
                push_escaped(&mut s, &f.key);
                s.push('=');
                push_escaped(&mut s, &f.value);
            }
            s.push('}');
        }
        s
    }
}

fn push_escaped(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
}

/// `GET /v1/apps/{app}/instances/{id}/log` query. `cursor` pages forward, `before` backward;
/// at most one of them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogQuery {
    /// Lines per page, 1 to 1000 (default 1000).
    #[serde(default)]
    pub limit: Option<u32>,
    /// Only lines after this `seq` (the next page).
    #[serde(default)]
    pub cursor: Option<u64>,
    /// Only the lines just before this `seq` (the previous page).
    #[serde(default)]
    pub before: Option<u64>,
}

impl LogQuery {
    /// Refuses `cursor` and `before` together.
    pub fn validate(&self) -> Result<(), ApiError> {
        if self.cursor.is_some() && self.before.is_some() {
            return Err(ApiError::invalid(
                "before",
                "give `cursor` (page forward) or `before` (page backward), not both",
            ));
        }
        Ok(())
    }
}

/// `GET /v1/apps/{app}/instances/{id}/log` answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogView {
    /// The instance.
    pub instance_id: InstanceId,
    /// Lines, oldest first.
    pub lines: Vec<LogLineView>,
    /// Pass as `cursor` for the lines after this page; null when there are no more lines yet.
    pub next_cursor: Option<u64>,
    /// Pass as `before` for the lines before this page; null when this page starts the log.
    #[serde(default)]
    pub prev_cursor: Option<u64>,
    /// Lines the workers dropped (bounded queues) or the server refused (per-instance cap),
    /// as far as the server knows.
    pub dropped: u64,
}
