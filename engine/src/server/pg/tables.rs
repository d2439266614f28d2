//! The tables the repository writes, as the writer sees them: each table's columns and key,
//! the multi-row statements built from them, and the row operations of a write.

use crate::server::RepoError;

/// A column's SQL type, as the multi-row statements pass it (an array of it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Ty {
    /// `bigint`.
    I64,
    /// `text`.
    Text,
    /// `boolean`.
    Bool,
    /// `bytea`.
    Bytes,
    /// `jsonb`, passed as text.
    Json,
}

impl Ty {
    fn array(self) -> &'static str {
        match self {
            Ty::I64 => "bigint[]",
            Ty::Text | Ty::Json => "text[]",
            Ty::Bool => "boolean[]",
            Ty::Bytes => "bytea[]",
        }
    }
}

/// One value of a row, in the column's type.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum Val {
    /// `bigint` (nullable).
    I64(Option<i64>),
    /// `text` or `jsonb` text (nullable).
    Text(Option<String>),
    /// `boolean`.
    Bool(bool),
    /// `bytea`.
    Bytes(Vec<u8>),
}

/// The tables the repository writes: name, columns (the first `key` of them are the primary
/// key).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(super) enum Table {
    Counters,
    Apps,
    Jobs,
    Triggers,
    Instances,
    DelayedRuns,
    Logs,
    Workflows,
    WorkflowVersions,
    WorkflowTriggers,
    WorkflowInstances,
    NodeLinks,
    Alarms,
    Channels,
    ApiTokens,
    AppPreviousSecrets,
    JobVersions,
    Audit,
    IdempotencyKeys,
    Calendars,
}

impl Table {
    pub(super) fn name(self) -> &'static str {
        match self {
            Table::Counters => "counters",
            Table::Apps => "apps",
            Table::Jobs => "jobs",
            Table::Triggers => "triggers",
            Table::Instances => "instances",
            Table::DelayedRuns => "delayed_runs",
            Table::Logs => "logs",
            Table::Workflows => "workflows",
            Table::WorkflowVersions => "workflow_versions",
            Table::WorkflowTriggers => "workflow_triggers",
            Table::WorkflowInstances => "workflow_instances",
            Table::NodeLinks => "node_links",
            Table::Alarms => "alarms",
            Table::Channels => "channels",
            Table::ApiTokens => "api_tokens",
            Table::AppPreviousSecrets => "app_previous_secrets",
            Table::JobVersions => "job_versions",
            Table::Audit => "audit",
            Table::IdempotencyKeys => "idempotency_keys",
            Table::Calendars => "calendars",
        }
    }

    /// Columns in row order, and how many leading ones form the primary key.
    pub(super) fn columns(self) -> (&'static [(&'static str, Ty)], usize) {
        use Ty::*;
        match self {
            Table::Counters => (&[("name", Text), ("next", I64)], 1),
            Table::Apps => (
                &[
                    ("id", I64),
                    ("name", Text),
                    ("secret", Text),
                    ("created_at", I64),
                ],
                1,
            ),
            Table::Jobs => (
                &[
                    ("id", I64),
                    ("app_id", I64),
                    ("name", Text),
                    ("enabled", Bool),
                    ("time_expression_type", Text),
                    ("time_expression", Text),
                    ("execute_type", Text),
                    ("processor", Text),
                    ("created_at", I64),
                    ("updated_at", I64),
                    ("record", Bytes),
                    ("overlap_policy", Text),
                    ("retry_backoff", Json),
                    ("log_type", Text),
                    ("log_level", Text),
                    ("calendars", Json),
                ],
                1,
            ),
            Table::Triggers => (&[("job_id", I64), ("next_trigger", I64), ("runs", I64)], 1),
            Table::Instances => (
                &[
                    ("id", I64),
                    ("app_id", I64),
                    ("job_id", I64),
                    ("run", I64),
                    ("status", Text),
                    ("final", Bool),
                    ("trigger_time", I64),
                    ("finished_time", I64),
                    ("worker", Text),
                    ("record", Bytes),
                ],
                1,
            ),
            Table::DelayedRuns => (&[("instance_id", I64), ("job_id", I64), ("due", I64)], 1),
            Table::Logs => (
                &[
                    ("instance_id", I64),
                    ("seq", I64),
                    ("time", I64),
                    ("level", Text),
                    ("content", Text),
                    ("attempt", I64),
                    ("fields", Json),
                ],
                2,
            ),
            Table::Workflows => (
                &[
                    ("id", I64),
                    ("app_id", I64),
                    ("name", Text),
                    ("version", I64),
                    ("created_at", I64),
                    ("updated_at", I64),
                ],
                1,
            ),
            Table::WorkflowVersions => (
                &[("workflow_id", I64), ("version", I64), ("definition", Json)],
                2,
            ),
            Table::WorkflowTriggers => (
                &[("workflow_id", I64), ("next_trigger", I64), ("runs", I64)],
                1,
            ),
            Table::WorkflowInstances => (
                &[
                    ("id", I64),
                    ("app_id", I64),
                    ("workflow_id", I64),
                    ("version", I64),
                    ("run", I64),
                    ("finished", Bool),
                    ("delayed_until", I64),
                    ("snapshot", Json),
                    ("record", Bytes),
                    ("trigger_time", I64),
                ],
                1,
            ),
            Table::NodeLinks => (
                &[
                    ("instance_id", I64),
                    ("workflow_instance_id", I64),
                    ("node", I64),
                    ("attempt", I64),
                    ("context", Text),
                ],
                1,
            ),
            Table::Alarms => (
                &[
                    ("app_id", I64),
                    ("seq", I64),
                    ("pending", Bool),
                    ("alarm_id", Text),
                    ("job_id", I64),
                    ("instance_id", I64),
                    ("kind", Text),
                    ("raised_at", I64),
                    ("status", Text),
                    ("record", Bytes),
                ],
                2,
            ),
            Table::Channels => (
                &[
                    ("app_id", I64),
                    ("name", Text),
                    ("kind", Text),
                    ("url", Text),
                    ("record", Bytes),
                ],
                2,
            ),
            Table::ApiTokens => (
                &[
                    ("id", I64),
                    ("app_id", I64),
                    ("name", Text),
                    ("role", Text),
                    ("hash", Bytes),
                    ("created_at", I64),
                    ("expires_at", I64),
                ],
                1,
            ),
            Table::AppPreviousSecrets => (
                &[("app_id", I64), ("secret", Text), ("valid_until", I64)],
                1,
            ),
            Table::JobVersions => (
                &[
                    ("job_id", I64),
                    ("version", I64),
                    ("updated_at", I64),
                    ("record", Bytes),
                ],
                2,
            ),
            Table::Audit => (
                &[
                    ("app_id", I64),
                    ("seq", I64),
                    ("time", I64),
                    ("actor", Text),
                    ("token_id", I64),
                    ("role", Text),
                    ("peer", Text),
                    ("action", Text),
                    ("target", Text),
                    ("summary", Text),
                ],
                2,
            ),
            Table::IdempotencyKeys => (
                &[
                    ("path", Text),
                    ("key", Text),
                    ("at", I64),
                    ("status", I64),
                    ("record", Bytes),
                ],
                2,
            ),
            Table::Calendars => (
                &[
                    ("app_id", I64),
                    ("name", Text),
                    ("time_zone", Text),
                    ("excluded", Json),
                    ("updated_at", I64),
                    ("record", Bytes),
                ],
                2,
            ),
        }
    }

    pub(super) const ALL: [Table; 20] = [
        Table::Counters,
        Table::Apps,
        Table::Jobs,
        Table::Triggers,
        Table::Instances,
        Table::DelayedRuns,
        Table::Logs,
        Table::Workflows,
        Table::WorkflowVersions,
        Table::WorkflowTriggers,
        Table::WorkflowInstances,
        Table::NodeLinks,
        Table::Alarms,
        Table::Channels,
        Table::ApiTokens,
        Table::AppPreviousSecrets,
        Table::JobVersions,
        Table::Audit,
        Table::IdempotencyKeys,
        Table::Calendars,
    ];

    pub(super) fn upsert_sql(self) -> String {
        let (cols, key) = self.columns();
        let names: Vec<&str> = cols.iter().map(|c| c.0).collect();
        let arrays: Vec<String> = cols
            .iter()
            .enumerate()
            .map(|(i, (_, ty))| format!("${}::{}", i + 1, ty.array()))
            .collect();
        let select: Vec<String> = cols
            .iter()
            .map(|(n, ty)| match ty {
                Ty::Json => format!("{n}::jsonb"),
                _ => (*n).to_owned(),
            })
            .collect();
        let keys: Vec<&str> = names.iter().take(key).copied().collect();
        let sets: Vec<String> = names
            .iter()
            .skip(key)
            .map(|n| format!("{n} = EXCLUDED.{n}"))
            .collect();
        format!(
            "INSERT INTO {t} ({names}) SELECT {select} FROM unnest({arrays}) AS u({names}) \
             ON CONFLICT ({keys}) DO UPDATE SET {sets}",
            t = self.name(),
            names = names.join(", "),
            select = select.join(", "),
            arrays = arrays.join(", "),
            keys = keys.join(", "),
            sets = sets.join(", "),
        )
    }

    pub(super) fn delete_sql(self) -> String {
        let (cols, key) = self.columns();
        let keys: Vec<&str> = cols.iter().take(key).map(|c| c.0).collect();
        let arrays: Vec<String> = cols
            .iter()
            .take(key)
            .enumerate()
            .map(|(i, (_, ty))| format!("${}::{}", i + 1, ty.array()))
            .collect();
        format!(
            "DELETE FROM {t} WHERE ({keys}) IN (SELECT * FROM unnest({arrays}))",
            t = self.name(),
            keys = keys.join(", "),
            arrays = arrays.join(", "),
        )
    }
}

/// One row operation of a write.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum Op {
    /// Insert or replace a row (every column, in [`Table::columns`] order).
    Put(Table, Vec<Val>),
    /// Delete the row with this key (the key columns, in order).
    Delete(Table, Vec<Val>),
    /// Delete every log line of an instance.
    DeleteLogsOf(i64),
}

/// The refusal of a write whose text PostgreSQL cannot hold (a NUL character, raw in a
/// `text` column or escaped in a `jsonb` one), if any: checked before the write is queued,
/// so that it fails alone instead of failing its whole batch.
pub(super) fn refused_text(ops: &[Op]) -> Option<RepoError> {
    for op in ops {
        let Op::Put(table, vals) = op else { continue };
        for (&(name, ty), val) in table.columns().0.iter().zip(vals) {
            let Val::Text(Some(s)) = val else { continue };
            let bad = match ty {
                Ty::Json => s.contains("\\u0000"),
                _ => s.contains('\0'),
            };
            if bad {
                return Some(RepoError::invalid(
                    name,
                    format!(
                        "{}.{name} cannot hold a NUL character in PostgreSQL",
                        table.name()
                    ),
                ));
            }
        }
    }
    None
}

/// [`refused_text`] as a result, for the writes that change the repository's caches (app
/// names, trigger rows): checked before they do.
pub(super) fn check_text(ops: &[Op]) -> Result<(), RepoError> {
    refused_text(ops).map_or(Ok(()), Err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_name_every_column_and_the_key() {
        assert_eq!(
            Table::Triggers.upsert_sql(),
            "INSERT INTO triggers (job_id, next_trigger, runs) SELECT job_id, next_trigger, runs \
             FROM unnest($1::bigint[], $2::bigint[], $3::bigint[]) AS u(job_id, next_trigger, runs) \
             ON CONFLICT (job_id) DO UPDATE SET next_trigger = EXCLUDED.next_trigger, runs = EXCLUDED.runs"
        );
        assert_eq!(
            Table::Logs.delete_sql(),
            "DELETE FROM logs WHERE (instance_id, seq) IN (SELECT * FROM unnest($1::bigint[], $2::bigint[]))"
        );
    }

    #[test]
    fn a_nul_character_is_refused_in_text_and_escaped_in_json_only() {
        let log = |content: &str, fields: &str| {
            Op::Put(
                Table::Logs,
                vec![
                    Val::I64(Some(1)),
                    Val::I64(Some(1)),
                    Val::I64(Some(0)),
                    Val::Text(Some("INFO".into())),
                    Val::Text(Some(content.into())),
                    Val::I64(Some(1)),
                    Val::Text(Some(fields.into())),
                ],
            )
        };
        assert!(refused_text(&[log("a\\u0000b", "[]")]).is_none());
        assert!(matches!(
            refused_text(&[log("a\0b", "[]")]),
            Some(RepoError::Invalid {
                field: "content",
                ..
            })
        ));
        assert!(matches!(
            refused_text(&[log("ok", r#"[{"key":"k","value":"\u0000"}]"#)]),
            Some(RepoError::Invalid {
                field: "fields",
                ..
            })
        ));
    }
}
