//! The stored form of [`LogLine`], with its versions.
//!
//! | version | archive of | since |
//! |---|---|---|
//! | 1 | [`LogLineV1`]: time, level, content | the first release |
//! | 2 | [`LogLine`] | the attempt and structured fields |
//!
//! Writes are always version 2. A version 1 line reads with attempt 0 (unknown) and no
//! fields, so a store written by an older build opens unchanged.

use rkyv::{Archive, Deserialize, Serialize};

use crate::model::LogLevel;
use crate::time_expression::EpochMs;

use super::codec::{decode_archive, encode_version, version_of};
use super::error::RepoError;
use super::keys::LOGS;
use super::records::LogLine;

/// The version `encode_log_line` writes.
pub const LOG_LINE_VERSION: u8 = 2;

/// A log line as version 1 stored it: the layout must never change.
#[derive(Clone, Debug, PartialEq, Eq, Archive, Serialize, Deserialize)]
pub(crate) struct LogLineV1 {
    pub time: EpochMs,
    pub level: LogLevel,
    pub content: String,
}

impl From<LogLineV1> for LogLine {
    fn from(v: LogLineV1) -> LogLine {
        LogLine {
            time: v.time,
            level: v.level,
            content: v.content,
            attempt: 0,
            fields: Vec::new(),
        }
    }
}

/// Encodes `line` at [`LOG_LINE_VERSION`].
pub(crate) fn encode_log_line(line: &LogLine) -> Result<Vec<u8>, RepoError> {
    encode_version(LOGS, LOG_LINE_VERSION, line)
}

/// Decodes a stored log line of any known version; other bytes give [`RepoError::Corrupt`].
pub(crate) fn decode_log_line(key: &[u8], bytes: &[u8]) -> Result<LogLine, RepoError> {
    match version_of(LOGS, key, bytes)? {
        1 => decode_archive::<LogLineV1>(LOGS, key, bytes).map(LogLine::from),
        LOG_LINE_VERSION => decode_archive::<LogLine>(LOGS, key, bytes),
        v => Err(RepoError::corrupt(
            LOGS,
            key,
            format!("unknown log line version {v} (this build reads 1 to {LOG_LINE_VERSION})"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::codec::encode;
    use crate::server::records::LogLineField;

    #[test]
    fn a_version_1_line_reads_with_an_unknown_attempt_and_no_fields() {
        let old = LogLineV1 {
            time: 5,
            level: LogLevel::Warn,
            content: "disk".into(),
        };
        let bytes = encode(LOGS, &old).unwrap();
        assert_eq!(bytes[0], 1);
        let line = decode_log_line(b"k", &bytes).unwrap();
        assert_eq!(line, LogLine::from(old));
        assert_eq!(line.attempt, 0);
        assert!(line.fields.is_empty());
    }

    #[test]
    fn a_version_2_line_round_trips_and_other_versions_are_corrupt() {
        let line = LogLine {
            time: 5,
            level: LogLevel::Info,
            content: "done".into(),
            attempt: 3,
            fields: vec![LogLineField {
                key: "rows".into(),
                value: "12".into(),
            }],
        };
        let mut bytes = encode_log_line(&line).unwrap();
        assert_eq!(bytes[0], LOG_LINE_VERSION);
        assert_eq!(decode_log_line(b"k", &bytes).unwrap(), line);
        for v in [0u8, 3, 255] {
            bytes[0] = v;
            assert!(matches!(
                decode_log_line(b"k", &bytes),
                Err(RepoError::Corrupt { .. })
            ));
        }
        // A version 2 archive under version 1 fails validation or decodes, never panics.
        bytes[0] = 1;
        let _ = decode_log_line(b"k", &bytes);
    }
}
