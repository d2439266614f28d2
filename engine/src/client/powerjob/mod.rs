//! Import of PowerJob's job export: the JSON its `exportJob` (console "export", OpenAPI
//! `/openApi/exportJob`) answers, a `SaveJobInfoRequest`, into the jobs of a [`JobsFile`].
//!
//! The input is one `SaveJobInfoRequest` object, the `ResultDTO` that wraps it
//! (`{"success": true, "data": {...}}`), or an array of either. Each job is converted on its
//! own: a job that cannot be converted is [`Skipped`] with the reason, the others are kept.
//!
//! | PowerJob field | ferrojob | how |
//! |---|---|---|
//! | `jobName` | `name` | the `_EXPORT_<millis>` suffix `exportJob` appends is removed (noted) |
//! | `jobParams` | `params` | as is (the http processor's are rewritten, below) |
//! | `timeExpressionType` | `time_expression_type` | by name or PowerJob's number; `FIX_RATE`/`FIX_DELAY` spellings too |
//! | `timeExpression` | `time_expression` | DAILY_TIME_INTERVAL: `daysOfWeek` from PowerJob's 1 = Monday … 7 = Sunday to Quartz's 1 = Sunday … 7 = Saturday; `intervalUnit` `DAYS` as hours. Checked with ferrojob's parser |
//! | `executeType` | `execute_type` | STANDALONE, BROADCAST, MAP, MAP_REDUCE |
//! | `processorType` + `processorInfo` | `processor` | the official `ShellProcessor` → `shell`, `HttpProcessor` → `http`; any other processor only through [`ImportOptions::processors`] (else skipped: listed, not guessed) |
//! | `maxInstanceNum` | `max_instances` | as is (0 = unlimited in both) |
//! | `concurrency` | `concurrency` | as is |
//! | `instanceTimeLimit` | `timeout_ms` | ms in both |
//! | `instanceRetryNum`, `taskRetryNum` | `instance_retries`, `task_retries` | as is |
//! | `minCpuCores`, `minMemorySpace`, `minDiskSpace` | `min_cpu_cores`, `min_memory_gb`, `min_disk_gb` | as is (GB in both) |
//! | `enable` | `enabled` | as is; PowerJob's `exportJob` writes `true` even for a disabled job |
//! | `designatedWorkers` | `designated_workers` | the comma-separated list split |
//! | `maxWorkerCount` | `max_worker_count` | as is |
//! | `dispatchStrategy` | `dispatch_strategy` | HEALTH_FIRST, RANDOM, SPECIFY |
//! | `lifeCycle` `{start, end}` (epoch ms) | `lifecycle` | RFC 3339 |
//! | `id`, `appId` | — | server ids; the target app is the command's |
//! | `jobDescription` | `description` | as is (at most 4096 bytes, else the job is skipped) |
//! | `tag` | `tags` | split at commas, trimmed, duplicates dropped; tags ferrojob refuses skip the job, naming the reason |
//! | `logConfig` `{type, level}` | `log_type`, `log_level` | ONLINE, LOCAL, STDOUT, NULL and DEBUG to ERROR as is; LOCAL_AND_ONLINE as ONLINE and `loggerName` noted; level OFF as type NULL |
//! | `notifyUserIds`, `alarmConfig`, `extra`, unknown fields | — | not carried; each non-empty one is a [`Note`] |
//!
//! PowerJob has no time zone per job (its server's zone applies): [`ImportOptions::time_zone`]
//! sets one on CRON and DAILY_TIME_INTERVAL jobs.
//!
//! The http processor's params (`{method, url, mediaType, body, headers, timeout}`, timeout
//! in seconds, default 60) become ferrojob's (`{url, method, body, headers, timeout_ms}`) with
//! PowerJob's defaults made explicit: `http://` before a URL without a scheme, GET unless the
//! method is POST, PUT or DELETE, an empty body sent as `{}` and a JSON body as
//! `application/json`. An `https` URL is skipped (the http processor speaks plain HTTP).
//! PowerJob counts only status 200 as success, ferrojob any 2xx (noted).
//!
//! Beside this module (the input's shape and the import loop): `convert` (one job, field
//! by field), `daily` (DAILY_TIME_INTERVAL's weekdays and units) and `processor` (the
//! official processors and the http processor's params).

mod convert;
mod daily;
mod processor;

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

use super::jobs_file::{JobsFile, MAX_ENTRIES};
use crate::api::JobBody;

use convert::convert;
pub use daily::powerjob_to_quartz_weekday;

/// How to import.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImportOptions {
    /// IANA zone set on CRON and DAILY_TIME_INTERVAL jobs (PowerJob's server zone); none = UTC.
    pub time_zone: Option<String>,
    /// `processorInfo` (e.g. a Java class name) → the ferrojob processor that replaces it;
    /// the job's params are kept as they are.
    pub processors: BTreeMap<String, String>,
}

/// A PowerJob job that was not imported, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Skipped {
    /// Its name (or its position when it has none).
    pub job: String,
    /// Why.
    pub reason: String,
}

/// A PowerJob field whose value was not carried over (or was changed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    /// The job's name.
    pub job: String,
    /// The PowerJob field.
    pub field: String,
    /// What happened to it.
    pub note: String,
}

/// The result of an import.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Imported {
    /// The converted jobs, in input order.
    pub jobs: Vec<JobBody>,
    /// The jobs not imported.
    pub skipped: Vec<Skipped>,
    /// Fields not carried over or changed.
    pub notes: Vec<Note>,
}

impl Imported {
    /// A jobs file of the imported jobs for `app`.
    pub fn to_file(&self, app: Option<String>) -> JobsFile {
        JobsFile {
            app,
            jobs: self.jobs.clone(),
            workflows: Vec::new(),
            calendars: Vec::new(),
        }
    }
}

/// Why an import failed as a whole.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PowerJobError {
    /// The input is not JSON of the expected shape.
    #[error("not a PowerJob job export: {0}")]
    Format(String),
}

/// `SaveJobInfoRequest` as PowerJob writes it (Jackson/fastjson, camelCase).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SaveJobInfoRequest {
    #[serde(default)]
    id: Option<Value>,
    #[serde(default)]
    job_name: Option<String>,
    #[serde(default)]
    job_description: Option<String>,
    #[serde(default)]
    #[allow(dead_code)]
    app_id: Option<Value>,
    #[serde(default)]
    job_params: Option<String>,
    #[serde(default)]
    time_expression_type: Option<Value>,
    #[serde(default)]
    time_expression: Option<String>,
    #[serde(default)]
    execute_type: Option<Value>,
    #[serde(default)]
    processor_type: Option<Value>,
    #[serde(default)]
    processor_info: Option<String>,
    #[serde(default)]
    max_instance_num: Option<u32>,
    #[serde(default)]
    concurrency: Option<u32>,
    #[serde(default)]
    instance_time_limit: Option<u64>,
    #[serde(default)]
    instance_retry_num: Option<u32>,
    #[serde(default)]
    task_retry_num: Option<u32>,
    #[serde(default)]
    min_cpu_cores: Option<f64>,
    #[serde(default)]
    min_memory_space: Option<f64>,
    #[serde(default)]
    min_disk_space: Option<f64>,
    #[serde(default)]
    enable: Option<bool>,
    #[serde(default)]
    designated_workers: Option<String>,
    #[serde(default)]
    max_worker_count: Option<u32>,
    #[serde(default)]
    notify_user_ids: Option<Value>,
    #[serde(default)]
    extra: Option<String>,
    #[serde(default)]
    dispatch_strategy: Option<Value>,
    #[serde(default)]
    life_cycle: Option<LifeCycle>,
    #[serde(default)]
    alarm_config: Option<Value>,
    #[serde(default)]
    tag: Option<String>,
    #[serde(default)]
    log_config: Option<Value>,
    #[serde(flatten)]
    other: BTreeMap<String, Value>,
}

#[derive(Debug, Deserialize)]
struct LifeCycle {
    #[serde(default)]
    start: Option<i64>,
    #[serde(default)]
    end: Option<i64>,
}

/// Imports the PowerJob export `text`; see the [module docs](self).
pub fn import(text: &str, options: &ImportOptions) -> Result<Imported, PowerJobError> {
    let root: Value =
        serde_json::from_str(text).map_err(|e| PowerJobError::Format(e.to_string()))?;
    let mut items = Vec::new();
    flatten(root, &mut items, 0)?;
    if items.len() > MAX_ENTRIES {
        return Err(PowerJobError::Format(format!(
            "more than {MAX_ENTRIES} jobs"
        )));
    }
    let mut out = Imported::default();
    for (i, item) in items.into_iter().enumerate() {
        let fallback = format!("job #{}", i + 1);
        let req: SaveJobInfoRequest = match serde_json::from_value(item) {
            Ok(r) => r,
            Err(e) => {
                out.skipped.push(Skipped {
                    job: fallback,
                    reason: format!("not a SaveJobInfoRequest: {e}"),
                });
                continue;
            }
        };
        let name = req
            .job_name
            .as_deref()
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .map(str::to_owned);
        let shown = name.clone().unwrap_or(fallback);
        let mut notes = Vec::new();
        match convert(req, name, options, &mut notes) {
            Ok(job) => {
                out.notes
                    .extend(notes.into_iter().map(|(field, note)| Note {
                        job: job.name.clone(),
                        field,
                        note,
                    }));
                out.jobs.push(job);
            }
            Err(reason) => out.skipped.push(Skipped { job: shown, reason }),
        }
    }
    Ok(out)
}

/// Unwraps `ResultDTO`s and arrays into the job objects they hold.
fn flatten(v: Value, out: &mut Vec<Value>, depth: u32) -> Result<(), PowerJobError> {
    if depth > 4 {
        return Err(PowerJobError::Format("nested too deeply".into()));
    }
    match v {
        Value::Array(items) => {
            for item in items {
                flatten(item, out, depth + 1)?;
            }
            Ok(())
        }
        Value::Object(mut map) if map.contains_key("data") && map.contains_key("success") => {
            if map.get("success") != Some(&Value::Bool(true)) {
                let message = map.get("message").map(Value::to_string).unwrap_or_default();
                return Err(PowerJobError::Format(format!(
                    "the export failed in PowerJob: {message}"
                )));
            }
            flatten(map.remove("data").unwrap_or(Value::Null), out, depth + 1)
        }
        Value::Object(map) => {
            out.push(Value::Object(map));
            Ok(())
        }
        other => Err(PowerJobError::Format(format!(
            "expected a job object, a ResultDTO or an array, found {}",
            kind_of(&other)
        ))),
    }
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// An enum field given by name or by PowerJob's number: the upper-case name.
fn enum_name(field: &str, v: &Value, codes: &[(i64, &'static str)]) -> Result<String, String> {
    match v {
        Value::String(s) => Ok(s.trim().to_ascii_uppercase()),
        Value::Number(n) => n
            .as_i64()
            .and_then(|n| codes.iter().find(|(c, _)| *c == n))
            .map(|(_, name)| (*name).to_owned())
            .ok_or_else(|| format!("{field}: unknown code {n}")),
        other => Err(format!(
            "{field}: expected a name, found {}",
            kind_of(other)
        )),
    }
}

/// `true` for an absent, null, empty or blank value.
fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::String(s) => s.trim().is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        _ => false,
    }
}

type Notes = Vec<(String, String)>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_result_dto_is_an_error() {
        let e = import(
            r#"{"success":false,"data":null,"message":"no such job"}"#,
            &ImportOptions::default(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("no such job"), "{e}");
        assert!(import("42", &ImportOptions::default()).is_err());
    }
}
