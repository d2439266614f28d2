//! `application/x-www-form-urlencoded` bodies and query strings of the console, and the job
//! form's fields to and from [`JobBody`].
//!
//! Form fields are read by name from a small map rather than through a serde struct, so that
//! an empty field means "the default" and a bad one names the field in its message (shown on
//! the form, which is then rendered again with what the user typed).

use std::collections::HashMap;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::alarm::{AlarmRules, FailureRule};
use crate::api::{JobBody, LifecycleJson};
use crate::policy::RetryBackoff;

/// Most fields a console form or query string may carry; more is refused (the body limit
/// bounds the bytes, this bounds the map).
const MAX_FIELDS: usize = 64;

/// The fields of a form or a query string; a repeated name keeps its first value.
#[derive(Debug, Default, Clone)]
pub(crate) struct Fields(HashMap<String, String>);

impl Fields {
    /// Parses urlencoded `bytes`; `None` past [`MAX_FIELDS`] fields.
    pub(crate) fn parse(bytes: &[u8]) -> Option<Fields> {
        let mut map = HashMap::new();
        for (i, (k, v)) in form_urlencoded::parse(bytes).enumerate() {
            if i >= MAX_FIELDS {
                return None;
            }
            map.entry(k.into_owned()).or_insert_with(|| v.into_owned());
        }
        Some(Fields(map))
    }

    /// The field's value, trimmed; `None` when absent or blank.
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(|v| v.trim()).filter(|v| !v.is_empty())
    }

    /// The field's value untrimmed (text areas), empty when absent.
    pub(crate) fn raw(&self, name: &str) -> &str {
        self.0.get(name).map_or("", String::as_str)
    }

    /// The field as a number, `default` when blank; the error names the field.
    pub(crate) fn number<T: std::str::FromStr>(&self, name: &str, default: T) -> Result<T, String> {
        match self.get(name) {
            None => Ok(default),
            Some(v) => v
                .parse()
                .map_err(|_| format!("{name}: {v:?} is not a valid number")),
        }
    }

    /// The field as one of the API's upper-case enum names, `default` when blank.
    pub(crate) fn choice<T: DeserializeOwned>(&self, name: &str, default: T) -> Result<T, String> {
        match self.get(name) {
            None => Ok(default),
            Some(v) => parse_wire(v).ok_or_else(|| format!("{name}: {v:?} is not a valid choice")),
        }
    }

    /// The field as a number, `None` when blank; the error names the field.
    pub(crate) fn optional_number<T: std::str::FromStr>(
        &self,
        name: &str,
    ) -> Result<Option<T>, String> {
        self.get(name)
            .map(|v| {
                v.parse()
                    .map_err(|_| format!("{name}: {v:?} is not a valid number"))
            })
            .transpose()
    }

    /// A comma-separated field as its trimmed, non-empty items.
    pub(crate) fn list(&self, name: &str) -> Vec<String> {
        self.raw(name)
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()
    }

    /// Sets the field `name` to `value`.
    pub(crate) fn set(&mut self, name: &str, value: &str) {
        self.0.insert(name.to_owned(), value.to_owned());
    }

    /// Removes the field `name`; whether it was there.
    pub(crate) fn remove(&mut self, name: &str) -> bool {
        self.0.remove(name).is_some()
    }

    /// Whether a checkbox was ticked.
    pub(crate) fn checked(&self, name: &str) -> bool {
        self.get(name).is_some()
    }
}

/// `value` parsed as the API names it on the wire (`"CRON"`, `"MAP_REDUCE"`).
pub(crate) fn parse_wire<T: DeserializeOwned>(value: &str) -> Option<T> {
    serde_json::from_value(serde_json::Value::String(value.to_owned())).ok()
}

/// The API's wire name of an enum value (`"CRON"`, `"MAP_REDUCE"`).
pub(crate) fn wire<T: Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(s)) => s,
        _ => String::new(),
    }
}

/// The job form's fields as a [`JobBody`]; the error names the first bad field.
///
/// The body is written out field by field, with no `..` rest: a field added to the API
/// does not compile here until the form reads it.
pub(crate) fn job_body(f: &Fields) -> Result<JobBody, String> {
    let kind = f
        .get("time_expression_type")
        .and_then(parse_wire)
        .ok_or("time_expression_type: choose a type")?;
    let d = JobBody::new("", kind, "", "");
    let failures = match f.get("alarm_failures_threshold") {
        None => None,
        Some(_) => Some(FailureRule {
            threshold: f.number("alarm_failures_threshold", 0)?,
            window_ms: f.number("alarm_failures_window_ms", 0)?,
            silence_ms: f.number("alarm_failures_silence_ms", 0)?,
        }),
    };
    Ok(JobBody {
        name: f.get("name").unwrap_or("").to_owned(),
        time_expression_type: kind,
        time_expression: f.get("time_expression").unwrap_or("").to_owned(),
        time_zone: f.get("time_zone").map(str::to_owned),
        execute_type: f.choice("execute_type", d.execute_type)?,
        processor: f.get("processor").unwrap_or("").to_owned(),
        params: f.raw("params").to_owned(),
        max_instances: f.number("max_instances", d.max_instances)?,
        concurrency: f.number("concurrency", d.concurrency)?,
        timeout_ms: f.number("timeout_ms", d.timeout_ms)?,
        instance_retries: f.number("instance_retries", d.instance_retries)?,
        retry_backoff: RetryBackoff {
            shape: f.choice("backoff_shape", d.retry_backoff.shape)?,
            initial_delay_ms: f
                .number("backoff_initial_delay_ms", d.retry_backoff.initial_delay_ms)?,
            factor: f.number("backoff_factor", d.retry_backoff.factor)?,
            max_delay_ms: f.number("backoff_max_delay_ms", d.retry_backoff.max_delay_ms)?,
            jitter: f.number("backoff_jitter", d.retry_backoff.jitter)?,
        },
        overlap_policy: f.choice("overlap_policy", d.overlap_policy)?,
        task_retries: f.number("task_retries", d.task_retries)?,
        dispatch_strategy: f.choice("dispatch_strategy", d.dispatch_strategy)?,
        designated_workers: f.list("designated_workers"),
        min_cpu_cores: f.number("min_cpu_cores", d.min_cpu_cores)?,
        min_memory_gb: f.number("min_memory_gb", d.min_memory_gb)?,
        min_disk_gb: f.number("min_disk_gb", d.min_disk_gb)?,
        max_worker_count: f.number("max_worker_count", d.max_worker_count)?,
        misfire: f.choice("misfire", d.misfire)?,
        lifecycle: LifecycleJson {
            start: f.get("lifecycle_start").map(str::to_owned),
            end: f.get("lifecycle_end").map(str::to_owned),
        },
        enabled: f.checked("enabled"),
        alarm: AlarmRules {
            failures,
            late_start_ms: f.optional_number("alarm_late_start_ms")?,
            overrun_ms: f.optional_number("alarm_overrun_ms")?,
            dead_man_ms: f.optional_number("alarm_dead_man_ms")?,
            recovered: f.checked("alarm_recovered"),
            channels: f.list("alarm_channels"),
        },
        description: f.raw("description").trim().to_owned(),
        tags: f.list("tags"),
        log_type: f.choice("log_type", d.log_type)?,
        log_level: f.choice("log_level", d.log_level)?,
        calendars: f.list("calendars"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{DispatchStrategy, ExecuteType};
    use crate::time_expression::{MisfirePolicy, TimeExpressionType};

    fn fields(text: &str) -> Fields {
        Fields::parse(text.as_bytes()).unwrap()
    }

    #[test]
    fn a_full_job_form_becomes_a_body() {
        let f = fields(
            "name=nightly+%3Cb%3E&time_expression_type=CRON&time_expression=0+0+2+*+*+%3F\
             &time_zone=Europe%2FParis&execute_type=MAP_REDUCE&processor=shell&params=a%0Ab\
             &max_instances=2&concurrency=7&timeout_ms=1000&instance_retries=1&task_retries=3\
             &dispatch_strategy=SPECIFY&designated_workers=blue%2C+green%2C&min_cpu_cores=0.5\
             &min_memory_gb=1&min_disk_gb=2&max_worker_count=4&misfire=SKIP\
             &lifecycle_start=2026-01-01T00%3A00%3A00Z&lifecycle_end=&enabled=on",
        );
        let b = job_body(&f).unwrap();
        assert_eq!(b.name, "nightly <b>");
        assert_eq!(b.time_expression_type, TimeExpressionType::Cron);
        assert_eq!(b.time_expression, "0 0 2 * * ?");
        assert_eq!(b.time_zone.as_deref(), Some("Europe/Paris"));
        assert_eq!(b.execute_type, ExecuteType::MapReduce);
        assert_eq!(b.params, "a\nb");
        assert_eq!((b.max_instances, b.concurrency, b.timeout_ms), (2, 7, 1000));
        assert_eq!((b.instance_retries, b.task_retries), (1, 3));
        assert_eq!(b.dispatch_strategy, DispatchStrategy::Specify);
        assert_eq!(b.designated_workers, vec!["blue", "green"]);
        assert_eq!(b.min_cpu_cores, 0.5);
        assert_eq!(b.max_worker_count, 4);
        assert_eq!(b.misfire, MisfirePolicy::Skip);
        assert_eq!(b.lifecycle.start.as_deref(), Some("2026-01-01T00:00:00Z"));
        assert_eq!(b.lifecycle.end, None);
        assert!(b.enabled);
    }

    #[test]
    fn blank_fields_are_defaults_and_bad_ones_are_named() {
        let b = job_body(&fields("name=x&time_expression_type=API&processor=noop")).unwrap();
        assert_eq!(
            b,
            JobBody {
                enabled: false,
                ..JobBody::new("x", TimeExpressionType::Api, "", "noop")
            }
        );
        let err = job_body(&fields("time_expression_type=API&concurrency=many")).unwrap_err();
        assert!(err.starts_with("concurrency:"), "{err}");
        let err = job_body(&fields("time_expression_type=CRONISH")).unwrap_err();
        assert!(err.starts_with("time_expression_type:"), "{err}");
        let err = job_body(&fields("time_expression_type=API&misfire=LATER")).unwrap_err();
        assert!(err.starts_with("misfire:"), "{err}");
    }

    #[test]
    fn the_field_count_is_bounded() {
        let many: Vec<String> = (0..MAX_FIELDS + 1).map(|i| format!("f{i}=1")).collect();
        assert!(Fields::parse(many.join("&").as_bytes()).is_none());
        assert_eq!(fields("a=1&a=2").get("a"), Some("1"));
        assert_eq!(wire(&ExecuteType::MapReduce), "MAP_REDUCE");
    }
}
