//! Jobs as code: an app's jobs and workflows in one TOML or JSON file, keyed by name, that
//! [`super::plan`] compares with a server and applies, and that [`super::plan::export`]
//! writes from one.
//!
//! ```toml
//! app = "billing"              # optional: the app the file describes (else `--app`)
//!
//! [[jobs]]                     # every field of the job body (`crate::api::JobBody`)
//! name = "extract"
//! description = "Pulls yesterday's orders"
//! tags = ["etl", "team:billing"]
//! time_expression_type = "CRON"
//! time_expression = "0 0 2 * * ?"
//! time_zone = "Europe/Paris"
//! processor = "shell"
//! params = "./extract.sh"
//! log_level = "WARN"           # the worker drops INFO and DEBUG lines
//!
//! [[workflows]]                # a workflow body whose nodes name jobs and workflows
//! name = "nightly"
//! time_expression_type = "API"
//! [[workflows.nodes]]
//! id = 1
//! job = "extract"              # instead of `job_id`
//! [[workflows.nodes]]
//! id = 2
//! type = "NESTED_WORKFLOW"
//! workflow = "load"            # instead of `workflow_id`
//! [[workflows.edges]]
//! from = 1
//! to = 2
//!
//! [[calendars]]                # dates the jobs and workflows naming it do not fire on
//! name = "holidays-fr"
//! time_zone = "Europe/Paris"
//! excluded = ["2026-12-25", "2026-12-31..2027-01-01"]
//! ```
//!
//! - A job is exactly the API's [`JobBody`]: same fields, same defaults, unknown fields
//!   refused. A workflow is the API's [`WorkflowDef`] except that nodes name their job
//!   (`job`) and nested workflow (`workflow`) instead of giving server ids, so one file fits
//!   any server. [`WorkflowSpec::to_def`] and [`WorkflowSpec::from_def`] build the API types
//!   field by field, so a field added to them does not compile until the file has it too.
//! - Names are the keys: two jobs (or two workflows, or two calendars) of one file may not
//!   share a name. A calendar is the API's calendar body with its `name`.
//! - The format follows the file's extension (`.toml`, `.json`). [`JobsFile::render`] writes
//!   the fields that differ from their defaults, in the body's field order, so an export is
//!   short and reads like a hand-written file; parsing it gives back the same values.

use std::collections::HashMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::api::{EdgeDef, FailurePolicy, JobBody, LifecycleJson, NodeKind, WorkflowDef};
use crate::ids::{JobId, NodeId, WorkflowId};
use crate::time_expression::TimeExpressionType;

mod render;

/// Largest jobs file read, bytes.
pub const MAX_FILE_BYTES: u64 = 64 << 20;
/// Most jobs, and most workflows, one file or one app may hold for planning.
pub const MAX_ENTRIES: usize = 100_000;

/// Why a jobs file could not be read, planned or applied.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JobsFileError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The file's extension names no known format.
    #[error("{0}: unknown format; use TOML (*.toml) or JSON (*.json)")]
    UnknownFormat(String),
    /// The text is not a valid jobs file.
    #[error("not a valid jobs file ({format}): {message}")]
    Parse {
        /// `TOML` or `JSON`.
        format: &'static str,
        /// The parser's message (with the line, for TOML).
        message: String,
    },
    /// The file or the server state cannot be planned (a duplicate name, a reference to
    /// nothing, a cycle of nested workflows, a bad field).
    #[error("{0}")]
    Invalid(String),
    /// The file names no app and none was given.
    #[error("no app: give --app or set `app` in the file")]
    NoApp,
    /// A server call failed; `done` changes were applied before it.
    #[error("{what} failed after {done} applied change(s): {source}")]
    Client {
        /// What was being done.
        what: String,
        /// Changes applied before the failure.
        done: usize,
        /// The cause.
        #[source]
        source: super::ClientError,
    },
}

impl JobsFileError {
    pub(crate) fn invalid(message: impl Into<String>) -> JobsFileError {
        JobsFileError::Invalid(message.into())
    }
}

/// The two formats of a jobs file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Format {
    /// TOML (the default of `export`).
    #[default]
    Toml,
    /// JSON.
    Json,
}

impl Format {
    /// The format a path's extension names (`.toml`, `.json`, any case).
    pub fn from_path(path: &Path) -> Result<Format, JobsFileError> {
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        match ext.as_deref() {
            Some("toml") => Ok(Format::Toml),
            Some("json") => Ok(Format::Json),
            _ => Err(JobsFileError::UnknownFormat(path.display().to_string())),
        }
    }

    /// `TOML` or `JSON`.
    pub fn name(self) -> &'static str {
        match self {
            Format::Toml => "TOML",
            Format::Json => "JSON",
        }
    }
}

impl std::str::FromStr for Format {
    type Err = JobsFileError;

    fn from_str(s: &str) -> Result<Format, JobsFileError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "toml" => Ok(Format::Toml),
            "json" => Ok(Format::Json),
            _ => Err(JobsFileError::UnknownFormat(s.to_owned())),
        }
    }
}

fn default_true() -> bool {
    true
}

/// The workflow's `max_instances` default (the API's: 1).
fn default_max_instances() -> u32 {
    1
}

/// An app's jobs and workflows, by name; see the [module docs](self).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobsFile {
    /// The app the file describes (name or id); a command's `--app` must agree with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app: Option<String>,
    /// The jobs, each keyed by its `name`.
    #[serde(default)]
    pub jobs: Vec<JobBody>,
    /// The workflows, each keyed by its `name`.
    #[serde(default)]
    pub workflows: Vec<WorkflowSpec>,
    /// The calendars jobs and workflows name, each keyed by its `name`; default none
    /// (omitted when none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub calendars: Vec<CalendarSpec>,
}

/// A calendar of a jobs file: the API's calendar body with its name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CalendarSpec {
    /// The key: 1 to 64 bytes of letters, digits, '_', '-', '.'.
    pub name: String,
    /// IANA zone the dates are read in; default UTC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,
    /// Excluded dates (`2026-12-25`) and inclusive ranges (`2026-12-24..2026-12-26`).
    #[serde(default)]
    pub excluded: Vec<String>,
    /// Free text for people; default empty.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
}

impl CalendarSpec {
    /// The spec as the server stores it: the zone named (`UTC` when none), entries trimmed.
    pub fn normalized(&self) -> CalendarSpec {
        let zone = self
            .time_zone
            .as_deref()
            .map(str::trim)
            .filter(|z| !z.is_empty())
            .unwrap_or("UTC");
        CalendarSpec {
            name: self.name.clone(),
            time_zone: Some(zone.to_owned()),
            excluded: self.excluded.iter().map(|e| e.trim().to_owned()).collect(),
            description: self.description.clone(),
        }
    }

    /// The spec of a server calendar.
    pub fn from_view(v: &crate::api::CalendarView) -> CalendarSpec {
        CalendarSpec {
            name: v.name.clone(),
            time_zone: Some(v.time_zone.clone()),
            excluded: v.excluded.clone(),
            description: v.description.clone(),
        }
    }

    /// The API body.
    pub fn body(&self) -> crate::api::CalendarBody {
        crate::api::CalendarBody {
            time_zone: self.time_zone.clone(),
            excluded: self.excluded.clone(),
            description: self.description.clone(),
        }
    }
}

/// A workflow of a jobs file: [`WorkflowDef`] with nodes that name jobs and workflows.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkflowSpec {
    /// 1 to 128 bytes; the key.
    pub name: String,
    /// `API`, `CRON`, `FIXED_RATE` or `DAILY_TIME_INTERVAL`.
    pub time_expression_type: TimeExpressionType,
    /// As for jobs; empty (the default) for API.
    #[serde(default)]
    pub time_expression: String,
    /// IANA zone; default UTC.
    #[serde(default)]
    pub time_zone: Option<String>,
    /// Most instances at once; default 1.
    #[serde(default = "default_max_instances")]
    pub max_instances: u32,
    /// Default `FAIL_FAST`.
    #[serde(default)]
    pub failure_policy: FailurePolicy,
    /// The nodes.
    pub nodes: Vec<NodeSpec>,
    /// The edges; default none.
    #[serde(default)]
    pub edges: Vec<EdgeDef>,
    /// Free text for people; default empty.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// Labels listings filter on; default none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// Names of the app's calendars the workflow does not fire on; default none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub calendars: Vec<String>,
}

/// A node of a [`WorkflowSpec`]: the API's node with `job` and `workflow` names.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSpec {
    /// Unique within the workflow.
    pub id: NodeId,
    /// Default `JOB`.
    #[serde(rename = "type", default)]
    pub kind: NodeKind,
    /// The name of the job a JOB node runs.
    #[serde(default)]
    pub job: Option<String>,
    /// Handed to the job instead of its own params; default empty.
    #[serde(default)]
    pub params: String,
    /// Default true.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Default false.
    #[serde(default)]
    pub skip_when_failed: bool,
    /// A DECISION node's expression.
    #[serde(default)]
    pub expression: Option<String>,
    /// The name of the workflow a NESTED_WORKFLOW node runs.
    #[serde(default)]
    pub workflow: Option<String>,
}

impl WorkflowSpec {
    /// The spec of a server definition, naming its jobs and workflows by `job_names` and
    /// `workflow_names`; an id with no name is an error naming the workflow and node.
    pub fn from_def(
        def: &WorkflowDef,
        job_names: &HashMap<JobId, String>,
        workflow_names: &HashMap<WorkflowId, String>,
    ) -> Result<WorkflowSpec, JobsFileError> {
        let mut nodes = Vec::with_capacity(def.nodes.len());
        for n in &def.nodes {
            let job = match n.job_id {
                Some(id) => Some(job_names.get(&id).cloned().ok_or_else(|| {
                    JobsFileError::invalid(format!(
                        "workflow {:?} node {}: {id} does not exist",
                        def.name, n.id.0
                    ))
                })?),
                None => None,
            };
            let workflow = match n.workflow_id {
                Some(id) => Some(workflow_names.get(&id).cloned().ok_or_else(|| {
                    JobsFileError::invalid(format!(
                        "workflow {:?} node {}: {id} does not exist",
                        def.name, n.id.0
                    ))
                })?),
                None => None,
            };
            nodes.push(NodeSpec {
                id: n.id,
                kind: n.kind,
                job,
                params: n.params.clone(),
                enabled: n.enabled,
                skip_when_failed: n.skip_when_failed,
                expression: n.expression.clone(),
                workflow,
            });
        }
        Ok(WorkflowSpec {
            name: def.name.clone(),
            time_expression_type: def.time_expression_type,
            time_expression: def.time_expression.clone(),
            time_zone: def.time_zone.clone(),
            max_instances: def.max_instances,
            failure_policy: def.failure_policy,
            nodes,
            edges: def.edges.clone(),
            description: def.description.clone(),
            tags: def.tags.clone(),
            calendars: def.calendars.clone(),
        })
    }

    /// The API definition, with names resolved by `job_id` and `workflow_id`; a name that
    /// resolves to nothing is an error naming the workflow and node.
    pub fn to_def(
        &self,
        job_id: impl Fn(&str) -> Option<JobId>,
        workflow_id: impl Fn(&str) -> Option<WorkflowId>,
    ) -> Result<WorkflowDef, JobsFileError> {
        let mut nodes = Vec::with_capacity(self.nodes.len());
        for n in &self.nodes {
            let missing = |kind: &str, name: &str| {
                JobsFileError::invalid(format!(
                    "workflow {:?} node {}: no {kind} named {name:?}",
                    self.name, n.id.0
                ))
            };
            let job_id = match &n.job {
                Some(name) => Some(job_id(name).ok_or_else(|| missing("job", name))?),
                None => None,
            };
            let workflow_id = match &n.workflow {
                Some(name) => Some(workflow_id(name).ok_or_else(|| missing("workflow", name))?),
                None => None,
            };
            nodes.push(crate::api::NodeDef {
                id: n.id,
                kind: n.kind,
                job_id,
                params: n.params.clone(),
                enabled: n.enabled,
                skip_when_failed: n.skip_when_failed,
                expression: n.expression.clone(),
                workflow_id,
            });
        }
        Ok(WorkflowDef {
            name: self.name.clone(),
            time_expression_type: self.time_expression_type,
            time_expression: self.time_expression.clone(),
            time_zone: self.time_zone.clone(),
            max_instances: self.max_instances,
            failure_policy: self.failure_policy,
            nodes,
            edges: self.edges.clone(),
            description: self.description.clone(),
            tags: self.tags.clone(),
            calendars: self.calendars.clone(),
        })
    }

    /// The names of the workflows this one nests.
    pub fn nested(&self) -> impl Iterator<Item = &str> {
        self.nodes.iter().filter_map(|n| n.workflow.as_deref())
    }
}

/// `body` as the server stores it: an empty time zone is none and the lifecycle is written
/// in UTC, so that a file and the server's copy compare equal when they mean the same.
pub fn normalize_job(body: &JobBody) -> Result<JobBody, JobsFileError> {
    let mut out = body.clone();
    if out
        .time_zone
        .as_deref()
        .is_some_and(|z| z.trim().is_empty())
    {
        out.time_zone = None;
    }
    let lifecycle = body
        .lifecycle
        .to_lifecycle()
        .map_err(|e| JobsFileError::invalid(format!("job {:?}: {}", body.name, e.message)))?;
    out.lifecycle = LifecycleJson::from_lifecycle(&lifecycle);
    Ok(out)
}

impl JobsFile {
    /// Parses `text` in `format`.
    pub fn parse(text: &str, format: Format) -> Result<JobsFile, JobsFileError> {
        let parsed = match format {
            Format::Toml => toml::from_str::<JobsFile>(text).map_err(|e| e.to_string()),
            Format::Json => serde_json::from_str::<JobsFile>(text).map_err(|e| e.to_string()),
        };
        let file = parsed.map_err(|message| JobsFileError::Parse {
            format: format.name(),
            message: message.trim_end().to_owned(),
        })?;
        if file.jobs.len() > MAX_ENTRIES || file.workflows.len() > MAX_ENTRIES {
            return Err(JobsFileError::invalid(format!(
                "more than {MAX_ENTRIES} jobs or workflows in one file"
            )));
        }
        Ok(file)
    }

    /// Reads and parses the file at `path` (its extension names the format), at most
    /// [`MAX_FILE_BYTES`].
    pub fn read(path: &Path) -> Result<JobsFile, JobsFileError> {
        let format = Format::from_path(path)?;
        JobsFile::parse(&read_capped(path)?, format)
    }
}

/// Reads `path` as UTF-8 text, refusing files over [`MAX_FILE_BYTES`].
pub(crate) fn read_capped(path: &Path) -> Result<String, JobsFileError> {
    use std::io::Read;
    let io = |source| JobsFileError::Io {
        path: path.display().to_string(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let mut text = String::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(io)?;
    if text.len() as u64 > MAX_FILE_BYTES {
        return Err(JobsFileError::invalid(format!(
            "{}: larger than {MAX_FILE_BYTES} bytes",
            path.display()
        )));
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workflow_defaults_are_the_apis() {
        let text = r#"{"name":"w","time_expression_type":"API","nodes":[{"id":1}]}"#;
        let def: WorkflowDef = serde_json::from_str(text).unwrap();
        let spec: WorkflowSpec = serde_json::from_str(text).unwrap();
        assert_eq!(spec.max_instances, def.max_instances);
        assert_eq!(spec.failure_policy, def.failure_policy);
        assert_eq!(spec.nodes[0].enabled, def.nodes[0].enabled);
        assert_eq!(spec.nodes[0].kind, def.nodes[0].kind);
    }

    #[test]
    fn formats_follow_the_extension() {
        assert_eq!(
            Format::from_path(Path::new("a/jobs.toml")).unwrap(),
            Format::Toml
        );
        assert_eq!(
            Format::from_path(Path::new("JOBS.JSON")).unwrap(),
            Format::Json
        );
        assert!(Format::from_path(Path::new("jobs.yaml")).is_err());
        assert!(Format::from_path(Path::new("jobs")).is_err());
    }

    #[test]
    fn jobs_and_workflows_carry_their_calendars_through_a_file() {
        let text = "[[jobs]]\nname = \"a\"\ntime_expression_type = \"CRON\"\n\
                    time_expression = \"0 0 2 * * ?\"\nprocessor = \"noop\"\n\
                    calendars = [\"holidays-fr\"]\n\n\
                    [[workflows]]\nname = \"w\"\ntime_expression_type = \"API\"\n\
                    calendars = [\"freeze\"]\nnodes = [{ id = 1, job = \"a\" }]\n";
        let file = JobsFile::parse(text, Format::Toml).unwrap();
        assert_eq!(file.jobs[0].calendars, ["holidays-fr"]);
        let def = file.workflows[0]
            .to_def(|_| Some(JobId(4)), |_| None)
            .unwrap();
        assert_eq!(def.calendars, ["freeze"]);
        let names = HashMap::from([(JobId(4), "a".to_owned())]);
        let spec = WorkflowSpec::from_def(&def, &names, &HashMap::new()).unwrap();
        assert_eq!(spec.calendars, ["freeze"]);
        // Rendered back, both read the same.
        for format in [Format::Toml, Format::Json] {
            let again = JobsFile::parse(&file.render(format).unwrap(), format).unwrap();
            assert_eq!(again, file);
        }
    }

    #[test]
    fn unknown_fields_are_refused_with_their_name() {
        let e = JobsFile::parse(
            "[[jobs]]\nname = \"a\"\ntime_expression_type = \"API\"\nprocessor = \"noop\"\nretries = 3\n",
            Format::Toml,
        )
        .unwrap_err();
        assert!(e.to_string().contains("retries"), "{e}");
        let e = JobsFile::parse(r#"{"jbos": []}"#, Format::Json).unwrap_err();
        assert!(e.to_string().contains("jbos"), "{e}");
    }
}
