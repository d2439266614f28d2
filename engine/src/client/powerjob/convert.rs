//! One PowerJob `SaveJobInfoRequest` converted into a ferrojob job, field by field (the
//! table in the [module docs](super)), with a note for each value not carried as it was.

use serde_json::Value;

use super::daily::convert_daily;
use super::processor::processor;
use super::{enum_name, is_empty, ImportOptions, Notes, SaveJobInfoRequest};
use crate::api::{JobBody, LifecycleJson};
use crate::model::{DispatchStrategy, ExecuteType, LogLevel, LogType};
use crate::time_expression::{TimeExpression, TimeExpressionType};

pub(super) fn convert(
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
