//! [`JobsFile::render`]: a file's text with the fields at their default left out and the
//! rest in the body's field order, so an export is short and reads like a hand-written
//! file.

use serde::{Serialize, Serializer};
use serde_json::Value;

use super::{CalendarSpec, Format, JobsFile, JobsFileError, NodeSpec, WorkflowSpec};
use crate::api::JobBody;

impl JobsFile {
    /// The file's text in `format`: fields at their default are left out.
    pub fn render(&self, format: Format) -> Result<String, JobsFileError> {
        let doc = self.compact()?;
        let text = match format {
            Format::Toml => toml::to_string(&doc).map_err(|e| e.to_string()),
            Format::Json => serde_json::to_string_pretty(&doc)
                .map(|mut s| {
                    s.push('\n');
                    s
                })
                .map_err(|e| e.to_string()),
        };
        text.map_err(|message| JobsFileError::invalid(format!("cannot write the file: {message}")))
    }

    fn compact(&self) -> Result<Doc, JobsFileError> {
        let mut top = Vec::new();
        if let Some(app) = &self.app {
            top.push(("app".to_owned(), Doc::Leaf(Value::String(app.clone()))));
        }
        let mut jobs = Vec::with_capacity(self.jobs.len());
        for job in &self.jobs {
            let default = JobBody::new(
                job.name.clone(),
                job.time_expression_type,
                "",
                job.processor.clone(),
            );
            jobs.push(compact(
                to_value(job)?,
                &to_value(&default)?,
                JOB_FIELDS,
                &["name", "time_expression_type", "processor"],
            ));
        }
        if !jobs.is_empty() {
            top.push(("jobs".to_owned(), Doc::List(jobs)));
        }
        let mut workflows = Vec::with_capacity(self.workflows.len());
        for wf in &self.workflows {
            let default: WorkflowSpec = serde_json::from_value(serde_json::json!({
                "name": wf.name,
                "time_expression_type": wf.time_expression_type,
                "nodes": [],
            }))
            .map_err(|e| JobsFileError::invalid(e.to_string()))?;
            let mut value = to_value(wf)?;
            let nodes = match &mut value {
                Value::Object(map) => map.remove("nodes"),
                _ => None,
            };
            let edges = match &mut value {
                Value::Object(map) => map.remove("edges"),
                _ => None,
            };
            let Doc::Map(mut fields) = compact(
                value,
                &to_value(&default)?,
                WORKFLOW_FIELDS,
                &["name", "time_expression_type"],
            ) else {
                return Err(JobsFileError::invalid("a workflow is not an object"));
            };
            let mut node_docs = Vec::new();
            for node in nodes.and_then(into_array).unwrap_or_default() {
                let id = node.get("id").cloned().unwrap_or(Value::Null);
                let default = serde_json::from_value::<NodeSpec>(serde_json::json!({ "id": id }))
                    .map_err(|e| JobsFileError::invalid(e.to_string()))?;
                node_docs.push(compact(node, &to_value(&default)?, NODE_FIELDS, &["id"]));
            }
            fields.push(("nodes".to_owned(), Doc::List(node_docs)));
            let edge_docs: Vec<Doc> = edges
                .and_then(into_array)
                .unwrap_or_default()
                .into_iter()
                .map(|e| compact(e, &Value::Null, EDGE_FIELDS, &["from", "to"]))
                .collect();
            if !edge_docs.is_empty() {
                fields.push(("edges".to_owned(), Doc::List(edge_docs)));
            }
            workflows.push(Doc::Map(fields));
        }
        if !workflows.is_empty() {
            top.push(("workflows".to_owned(), Doc::List(workflows)));
        }
        let calendars: Vec<Doc> = self
            .calendars
            .iter()
            .map(|c| {
                let default = CalendarSpec {
                    name: c.name.clone(),
                    time_zone: None,
                    excluded: Vec::new(),
                    description: String::new(),
                };
                Ok(compact(
                    to_value(c)?,
                    &to_value(&default)?,
                    CALENDAR_FIELDS,
                    &["name", "excluded"],
                ))
            })
            .collect::<Result<_, JobsFileError>>()?;
        if !calendars.is_empty() {
            top.push(("calendars".to_owned(), Doc::List(calendars)));
        }
        Ok(Doc::Map(top))
    }
}

fn to_value<T: Serialize>(v: &T) -> Result<Value, JobsFileError> {
    serde_json::to_value(v).map_err(|e| JobsFileError::invalid(e.to_string()))
}

fn into_array(v: Value) -> Option<Vec<Value>> {
    match v {
        Value::Array(a) => Some(a),
        _ => None,
    }
}

/// The job body's fields in declaration order (a field missing here is written last).
const JOB_FIELDS: &[&str] = &[
    "name",
    "description",
    "tags",
    "time_expression_type",
    "time_expression",
    "time_zone",
    "execute_type",
    "processor",
    "params",
    "max_instances",
    "overlap_policy",
    "concurrency",
    "timeout_ms",
    "instance_retries",
    "retry_backoff",
    "task_retries",
    "dispatch_strategy",
    "designated_workers",
    "min_cpu_cores",
    "min_memory_gb",
    "min_disk_gb",
    "max_worker_count",
    "misfire",
    "lifecycle",
    "calendars",
    "enabled",
    "log_type",
    "log_level",
];
const CALENDAR_FIELDS: &[&str] = &["name", "description", "time_zone", "excluded"];
const WORKFLOW_FIELDS: &[&str] = &[
    "name",
    "description",
    "tags",
    "time_expression_type",
    "time_expression",
    "time_zone",
    "max_instances",
    "failure_policy",
    "calendars",
];
const NODE_FIELDS: &[&str] = &[
    "id",
    "type",
    "job",
    "workflow",
    "expression",
    "params",
    "enabled",
    "skip_when_failed",
];
const EDGE_FIELDS: &[&str] = &["from", "to", "property"];

/// A value to write with its keys in a chosen order (`serde_json`'s maps are sorted).
#[derive(Debug)]
enum Doc {
    Leaf(Value),
    Map(Vec<(String, Doc)>),
    List(Vec<Doc>),
}

impl Serialize for Doc {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{SerializeMap, SerializeSeq};
        match self {
            Doc::Leaf(v) => v.serialize(s),
            Doc::Map(fields) => {
                let mut map = s.serialize_map(Some(fields.len()))?;
                for (k, v) in fields {
                    map.serialize_entry(k, v)?;
                }
                map.end()
            }
            Doc::List(items) => {
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(item)?;
                }
                seq.end()
            }
        }
    }
}

/// The fields of object `value` in `order` (others after, sorted), without nulls and without
/// those equal to the same field of `default`, except the `keep` ones. A non-object is a leaf.
fn compact(value: Value, default: &Value, order: &[&str], keep: &[&str]) -> Doc {
    let Value::Object(mut map) = value else {
        return Doc::Leaf(value);
    };
    let mut keys: Vec<String> = order
        .iter()
        .filter(|k| map.contains_key(**k))
        .map(|k| (*k).to_owned())
        .collect();
    let mut rest: Vec<String> = map
        .keys()
        .filter(|k| !order.contains(&k.as_str()))
        .cloned()
        .collect();
    rest.sort();
    keys.extend(rest);
    let mut fields = Vec::with_capacity(keys.len());
    for key in keys {
        let Some(v) = map.remove(&key) else { continue };
        let kept = keep.contains(&key.as_str());
        if v.is_null() || (!kept && default.get(&key) == Some(&v)) {
            continue;
        }
        fields.push((key, Doc::Leaf(v)));
    }
    Doc::Map(fields)
}

#[cfg(test)]
mod tests {
    use super::super::{NodeSpec, WorkflowSpec};
    use super::*;
    use crate::api::JobBody;
    use crate::time_expression::TimeExpressionType;

    fn keys(v: &Value) -> Vec<String> {
        v.as_object().unwrap().keys().cloned().collect()
    }

    #[test]
    fn the_field_lists_name_every_field() {
        let job = to_value(&JobBody::new("j", TimeExpressionType::Api, "", "noop")).unwrap();
        for k in keys(&job) {
            assert!(JOB_FIELDS.contains(&k.as_str()), "job field {k}");
        }
        let node: NodeSpec = serde_json::from_str(r#"{"id":1}"#).unwrap();
        for k in keys(&to_value(&node).unwrap()) {
            assert!(NODE_FIELDS.contains(&k.as_str()), "node field {k}");
        }
        let wf: WorkflowSpec =
            serde_json::from_str(r#"{"name":"w","time_expression_type":"API","nodes":[]}"#)
                .unwrap();
        for k in keys(&to_value(&wf).unwrap()) {
            assert!(
                WORKFLOW_FIELDS.contains(&k.as_str()) || k == "nodes" || k == "edges",
                "workflow field {k}"
            );
        }
    }
}
