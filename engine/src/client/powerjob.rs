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

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Map, Value};

use super::jobs_file::{JobsFile, MAX_ENTRIES};
use crate::api::{JobBody, LifecycleJson};
use crate::model::{DispatchStrategy, ExecuteType, LogLevel, LogType};
use crate::time_expression::{TimeExpression, TimeExpressionType};

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

fn convert(
    req: SaveJobInfoRequest,
    name: Option<String>,
    options: &ImportOptions,
    notes: &mut Notes,
) -> Result<JobBody, String> {
    let mut name = name.ok_or("jobName is empty")?;
    if let Some(pos) = name.rfind("_EXPORT_") {
        let suffix = name.get(pos + "_EXPORT_".len()..).unwrap_or("");
        if !suffix.is_empty() && suffix.bytes().all(|b| b.is_ascii_digit()) && pos > 0 {
            notes.push((
                "jobName".into(),
                format!("the suffix _EXPORT_{suffix} PowerJob's export appends was removed"),
            ));
            name.truncate(pos);
        }
    }

    let kind = enum_name(
        "timeExpressionType",
        req.time_expression_type
            .as_ref()
            .ok_or("timeExpressionType is missing")?,
        &[
            (1, "API"),
            (2, "CRON"),
            (3, "FIXED_RATE"),
            (4, "FIXED_DELAY"),
            (5, "WORKFLOW"),
            (11, "DAILY_TIME_INTERVAL"),
        ],
    )?;
    let kind = match kind.as_str() {
        "API" => TimeExpressionType::Api,
        "CRON" => TimeExpressionType::Cron,
        "FIXED_RATE" | "FIX_RATE" => TimeExpressionType::FixedRate,
        "FIXED_DELAY" | "FIX_DELAY" => TimeExpressionType::FixedDelay,
        "WORKFLOW" => TimeExpressionType::Workflow,
        "DAILY_TIME_INTERVAL" => TimeExpressionType::DailyTimeInterval,
        other => {
            return Err(format!(
                "timeExpressionType {other} has no ferrojob equivalent"
            ))
        }
    };
    let mut expression = req.time_expression.unwrap_or_default().trim().to_owned();
    if matches!(kind, TimeExpressionType::Api | TimeExpressionType::Workflow) {
        expression.clear();
    }
    if kind == TimeExpressionType::DailyTimeInterval {
        expression = convert_daily(&expression, notes)?;
    }
    let time_zone = match kind {
        TimeExpressionType::Cron | TimeExpressionType::DailyTimeInterval => {
            options.time_zone.clone()
        }
        _ => None,
    };
    TimeExpression::parse(kind, &expression, time_zone.as_deref())
        .map_err(|e| format!("timeExpression: {e}"))?;

    let execute_type = match req.execute_type.as_ref() {
        None => ExecuteType::Standalone,
        Some(v) => match enum_name(
            "executeType",
            v,
            &[
                (1, "STANDALONE"),
                (2, "BROADCAST"),
                (3, "MAP_REDUCE"),
                (4, "MAP"),
            ],
        )?
        .as_str()
        {
            "STANDALONE" => ExecuteType::Standalone,
            "BROADCAST" => ExecuteType::Broadcast,
            "MAP" => ExecuteType::Map,
            "MAP_REDUCE" => ExecuteType::MapReduce,
            other => return Err(format!("executeType {other} has no ferrojob equivalent")),
        },
    };

    let params = req.job_params.unwrap_or_default();
    let (processor, params) = processor(
        req.processor_type.as_ref(),
        req.processor_info.as_deref().unwrap_or("").trim(),
        params,
        options,
        notes,
    )?;

    let dispatch_strategy = match req.dispatch_strategy.as_ref() {
        None | Some(Value::Null) => DispatchStrategy::HealthFirst,
        Some(v) => match enum_name(
            "dispatchStrategy",
            v,
            &[(1, "HEALTH_FIRST"), (2, "RANDOM"), (11, "SPECIFY")],
        )?
        .as_str()
        {
            "HEALTH_FIRST" => DispatchStrategy::HealthFirst,
            "RANDOM" => DispatchStrategy::Random,
            "SPECIFY" => DispatchStrategy::Specify,
            other => {
                return Err(format!(
                    "dispatchStrategy {other} has no ferrojob equivalent"
                ))
            }
        },
    };

    let lifecycle = match req.life_cycle {
        None => LifecycleJson::default(),
        Some(lc) => {
            let at = |ms: Option<i64>, field: &str| -> Result<Option<String>, String> {
                match ms {
                    None => Ok(None),
                    Some(ms) => chrono::DateTime::<chrono::Utc>::from_timestamp_millis(ms)
                        .map(|_| Some(crate::api::ms_to_rfc3339(ms)))
                        .ok_or_else(|| format!("lifeCycle.{field}: {ms} is out of range")),
                }
            };
            LifecycleJson {
                start: at(lc.start, "start")?,
                end: at(lc.end, "end")?,
            }
        }
    };
    lifecycle
        .to_lifecycle()
        .map_err(|e| format!("lifeCycle: {}", e.message))?;

    let designated_workers = req
        .designated_workers
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|w| !w.is_empty())
        .map(str::to_owned)
        .collect();

    if let Some(id) = &req.id {
        if !is_empty(id) {
            notes.push(("id".into(), "PowerJob's job id is not carried over".into()));
        }
    }
    let mut dropped = |field: &str, v: &Value| {
        if !is_empty(v) {
            notes.push((
                field.into(),
                format!("not carried over (ferrojob has no {field}): {v}"),
            ));
        }
    };
    let description = req.job_description.unwrap_or_default();
    let mut tags: Vec<String> = Vec::new();
    for t in req.tag.as_deref().unwrap_or("").split(',').map(str::trim) {
        if !t.is_empty() && !tags.iter().any(|x| x == t) {
            tags.push(t.to_owned());
        }
    }
    crate::model::check_labels(&description, &tags).map_err(|(field, why)| {
        let field = if field == "tags" {
            "tag"
        } else {
            "jobDescription"
        };
        format!("{field}: {why}")
    })?;
    dropped("notifyUserIds", &req.notify_user_ids.unwrap_or(Value::Null));
    dropped("alarmConfig", &req.alarm_config.unwrap_or(Value::Null));
    dropped("extra", &req.extra.map_or(Value::Null, Value::String));
    for (field, v) in &req.other {
        if !is_empty(v) {
            notes.push((
                field.clone(),
                format!("unknown PowerJob field, not carried over: {v}"),
            ));
        }
    }
    let (log_type, log_level) = log_settings(req.log_config.as_ref(), notes);

    let mut job = JobBody::new(name, kind, expression, processor);
    job.time_zone = time_zone;
    job.execute_type = execute_type;
    job.params = params;
    job.max_instances = req.max_instance_num.unwrap_or(0);
    job.concurrency = req.concurrency.unwrap_or(job.concurrency);
    job.timeout_ms = req.instance_time_limit.unwrap_or(0);
    job.instance_retries = req.instance_retry_num.unwrap_or(0);
    job.task_retries = req.task_retry_num.unwrap_or(0);
    job.dispatch_strategy = dispatch_strategy;
    job.designated_workers = designated_workers;
    job.min_cpu_cores = req.min_cpu_cores.unwrap_or(0.0);
    job.min_memory_gb = req.min_memory_space.unwrap_or(0.0);
    job.min_disk_gb = req.min_disk_space.unwrap_or(0.0);
    job.max_worker_count = req.max_worker_count.unwrap_or(0);
    job.lifecycle = lifecycle;
    job.enabled = req.enable.unwrap_or(true);
    job.description = description;
    job.tags = tags;
    job.log_type = log_type;
    job.log_level = log_level;
    Ok(job)
}

/// PowerJob's `logConfig` `{type, level, loggerName}` as ferrojob's log settings. Types:
/// 1 ONLINE, 2 LOCAL, 3 STDOUT, 4 LOCAL_AND_ONLINE (carried as ONLINE, noted), 999 NULL;
/// levels: 1 DEBUG, 2 INFO, 3 WARN, 4 ERROR, 99 OFF (carried as type NULL). Absent or
/// unknown values keep the defaults (ONLINE, INFO), noted when unknown; `loggerName` is noted.
fn log_settings(config: Option<&Value>, notes: &mut Notes) -> (LogType, LogLevel) {
    let mut log_type = LogType::Online;
    let mut level = LogLevel::Info;
    let Some(config) = config.filter(|v| !is_empty(v)) else {
        return (log_type, level);
    };
    match config.get("type").and_then(Value::as_i64) {
        None | Some(1) => {}
        Some(2) => log_type = LogType::Local,
        Some(3) => log_type = LogType::Stdout,
        Some(4) => notes.push((
            "logConfig".into(),
            "LOCAL_AND_ONLINE is carried as ONLINE (ferrojob sends a job's lines one way)".into(),
        )),
        Some(999) => log_type = LogType::Null,
        Some(t) => notes.push(("logConfig".into(), format!("unknown log type {t}: ONLINE"))),
    }
    match config.get("level").and_then(Value::as_i64) {
        None | Some(2) => {}
        Some(1) => level = LogLevel::Debug,
        Some(3) => level = LogLevel::Warn,
        Some(4) => level = LogLevel::Error,
        Some(99) => log_type = LogType::Null,
        Some(l) => notes.push(("logConfig".into(), format!("unknown log level {l}: INFO"))),
    }
    if let Some(name) = config.get("loggerName").filter(|v| !is_empty(v)) {
        notes.push((
            "logConfig".into(),
            format!("loggerName {name} is not carried over"),
        ));
    }
    (log_type, level)
}

/// The PowerJob weekday `d` (1 = Monday … 7 = Sunday) as Quartz counts it (1 = Sunday … 7 =
/// Saturday); `None` outside 1–7.
pub fn powerjob_to_quartz_weekday(d: i64) -> Option<i64> {
    (1..=7).contains(&d).then_some(d % 7 + 1)
}

/// PowerJob's DAILY_TIME_INTERVAL JSON in ferrojob's terms: weekdays renumbered, `DAYS`
/// written as hours.
fn convert_daily(expr: &str, notes: &mut Notes) -> Result<String, String> {
    let mut map: Map<String, Value> = serde_json::from_str(expr)
        .map_err(|e| format!("timeExpression: not a DAILY_TIME_INTERVAL JSON object: {e}"))?;
    if let Some(days) = map.get_mut("daysOfWeek") {
        let Value::Array(list) = days else {
            return Err("timeExpression.daysOfWeek: expected an array".into());
        };
        let mut converted = Vec::with_capacity(list.len());
        for d in list.iter() {
            let q = d
                .as_i64()
                .and_then(powerjob_to_quartz_weekday)
                .ok_or_else(|| format!("timeExpression.daysOfWeek: {d} is not 1 to 7"))?;
            converted.push(q);
        }
        converted.sort_unstable();
        converted.dedup();
        if !converted.is_empty() {
            notes.push((
                "timeExpression.daysOfWeek".into(),
                format!("{days} (1 = Monday) written as {converted:?} (1 = Sunday)"),
            ));
        }
        *days = Value::from(converted);
    }
    let unit = map
        .get("intervalUnit")
        .and_then(Value::as_str)
        .map(|u| u.trim().to_ascii_uppercase());
    match unit.as_deref() {
        Some("DAYS") => {
            let days = map
                .get("interval")
                .and_then(|v| {
                    v.as_u64()
                        .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
                })
                .ok_or("timeExpression.interval: not a whole number")?;
            map.insert("interval".into(), Value::from(days.saturating_mul(24)));
            map.insert("intervalUnit".into(), Value::from("HOURS"));
        }
        Some(u @ ("NANOSECONDS" | "MICROSECONDS")) => {
            return Err(format!(
                "timeExpression.intervalUnit {u}: ferrojob fires whole seconds"
            ))
        }
        _ => {}
    }
    serde_json::to_string(&map).map_err(|e| e.to_string())
}

/// The ferrojob processor and params of a PowerJob processor, or why there is none.
fn processor(
    kind: Option<&Value>,
    info: &str,
    params: String,
    options: &ImportOptions,
    notes: &mut Notes,
) -> Result<(String, String), String> {
    let kind = match kind {
        None | Some(Value::Null) => "BUILT_IN".to_owned(),
        Some(v) => enum_name(
            "processorType",
            v,
            &[
                (1, "BUILT_IN"),
                (2, "SHELL"),
                (3, "PYTHON"),
                (4, "EXTERNAL"),
            ],
        )?,
    };
    if let Some(mapped) = options.processors.get(info) {
        return Ok((mapped.clone(), params));
    }
    let official = matches!(kind.as_str(), "BUILT_IN" | "EMBEDDED_JAVA");
    if official && info.ends_with(".processors.impl.script.ShellProcessor") {
        let script = params.trim_start();
        if script.starts_with("http://") || script.starts_with("https://") {
            return Err(
                "ShellProcessor downloads its script from a URL; ferrojob's shell runs the \
                 params as the script"
                    .into(),
            );
        }
        return Ok(("shell".into(), params));
    }
    if official && info.ends_with(".processors.impl.HttpProcessor") {
        let converted = http_params(&params, notes)?;
        return Ok(("http".into(), converted));
    }
    Err(format!(
        "processor {kind} {info:?} has no ferrojob equivalent; write one and map it (e.g. \
         --processor '{info}=NAME')"
    ))
}

/// PowerJob `HttpProcessor` params as the ferrojob `http` processor's.
fn http_params(params: &str, notes: &mut Notes) -> Result<String, String> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase", deny_unknown_fields)]
    struct PowerJobHttp {
        #[serde(default)]
        method: Option<String>,
        #[serde(default)]
        url: Option<String>,
        #[serde(default)]
        media_type: Option<String>,
        #[serde(default)]
        body: Option<String>,
        #[serde(default)]
        headers: Option<BTreeMap<String, String>>,
        #[serde(default)]
        timeout: Option<u64>,
    }
    let p: PowerJobHttp = serde_json::from_str(params)
        .map_err(|e| format!("jobParams: not HttpProcessor params: {e}"))?;
    let mut url = p.url.unwrap_or_default().trim().to_owned();
    if url.is_empty() {
        return Err("jobParams.url is empty".into());
    }
    if !url.starts_with("http") {
        url = format!("http://{url}");
    }
    if url.starts_with("https") {
        return Err("jobParams.url is https; ferrojob's http processor speaks plain HTTP".into());
    }
    let method = p.method.unwrap_or_default().trim().to_ascii_uppercase();
    let method = match method.as_str() {
        "POST" | "PUT" | "DELETE" => method,
        _ => "GET".to_owned(),
    };
    let mut out = Map::new();
    out.insert("url".into(), Value::from(url));
    out.insert("method".into(), Value::from(method.clone()));
    let mut headers = p.headers.unwrap_or_default();
    if method != "GET" {
        let body = p
            .body
            .filter(|b| !b.is_empty())
            .unwrap_or_else(|| "{}".into());
        let media = p.media_type.filter(|m| !m.trim().is_empty()).or_else(|| {
            serde_json::from_str::<Value>(&body)
                .is_ok()
                .then(|| "application/json".to_owned())
        });
        if let Some(media) = media {
            if !headers
                .keys()
                .any(|k| k.eq_ignore_ascii_case("content-type"))
            {
                headers.insert("Content-Type".into(), media);
            }
        }
        out.insert("body".into(), Value::from(body));
    }
    if !headers.is_empty() {
        out.insert(
            "headers".into(),
            serde_json::to_value(headers).map_err(|e| e.to_string())?,
        );
    }
    let timeout_s = p.timeout.unwrap_or(60);
    out.insert(
        "timeout_ms".into(),
        Value::from(timeout_s.saturating_mul(1000)),
    );
    notes.push((
        "processorInfo".into(),
        "HttpProcessor: PowerJob succeeds on status 200 only, ferrojob's http on any 2xx".into(),
    ));
    serde_json::to_string(&out).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weekdays_move_from_monday_first_to_sunday_first() {
        let table = [(1, 2), (2, 3), (3, 4), (4, 5), (5, 6), (6, 7), (7, 1)];
        for (powerjob, quartz) in table {
            assert_eq!(
                powerjob_to_quartz_weekday(powerjob),
                Some(quartz),
                "{powerjob}"
            );
        }
        assert_eq!(powerjob_to_quartz_weekday(0), None);
        assert_eq!(powerjob_to_quartz_weekday(8), None);
    }

    #[test]
    fn daily_days_are_written_in_hours() {
        let mut notes = Vec::new();
        let out = convert_daily(
            r#"{"interval":1,"intervalUnit":"DAYS","startTimeOfDay":"00:00:00","endTimeOfDay":"23:59:59"}"#,
            &mut notes,
        )
        .unwrap();
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["interval"], 24);
        assert_eq!(v["intervalUnit"], "HOURS");
    }

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
