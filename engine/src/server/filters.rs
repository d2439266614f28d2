//! What a listing of jobs, workflows or instances keeps: [`JobFilter`], [`WorkflowFilter`],
//! [`InstanceFilter`] with its [`TimeRange`]s. Every repository applies them with these
//! `matches`, so that a listing answers the same on each.

use crate::ids::JobId;
use crate::model::InstanceStatus;
use crate::time_expression::EpochMs;

use super::instance::InstanceRecord;
use super::records::JobRecord;

/// A half-open range of instants `[from, to)`, ms since the epoch; an absent end is
/// unbounded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TimeRange {
    /// First instant in the range (inclusive).
    pub from: Option<EpochMs>,
    /// First instant after the range (exclusive).
    pub to: Option<EpochMs>,
}

impl TimeRange {
    /// No bound at either end.
    pub fn is_unbounded(&self) -> bool {
        self.from.is_none() && self.to.is_none()
    }

    /// Whether `t` is in the range.
    pub fn contains(&self, t: EpochMs) -> bool {
        self.from.is_none_or(|f| t >= f) && self.to.is_none_or(|e| t < e)
    }
}

/// Which instances [`LogRepo::list_instances`](super::LogRepo::list_instances) returns: those
/// matching every part.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct InstanceFilter {
    /// Only this job's instances.
    pub job: Option<JobId>,
    /// Only instances in this status.
    pub status: Option<InstanceStatus>,
    /// Only instances whose `trigger_time` is in this range.
    pub trigger: TimeRange,
    /// Only instances with a `finished_time` in this range (a bounded range excludes the
    /// unfinished ones).
    pub finished: TimeRange,
}

impl InstanceFilter {
    /// Whether `inst` passes the filter (its app is the caller's to check).
    pub fn matches(&self, inst: &InstanceRecord) -> bool {
        self.job.is_none_or(|j| inst.job_id == j)
            && self.status.is_none_or(|s| inst.status == s)
            && self.trigger.contains(inst.trigger_time)
            && (self.finished.is_unbounded()
                || inst
                    .finished_time
                    .is_some_and(|t| self.finished.contains(t)))
    }
}

/// Whether `name` contains `needle`, ignoring case (Unicode lowercase of both).
fn name_contains(name: &str, needle: &str) -> bool {
    if needle.is_empty() || name.contains(needle) {
        return true;
    }
    name.to_lowercase().contains(&needle.to_lowercase())
}

/// Which jobs [`LogRepo::list_jobs`](super::LogRepo::list_jobs) returns: those matching every
/// part.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JobFilter {
    /// Only jobs whose name contains this, ignoring case.
    pub name: Option<String>,
    /// Only jobs carrying this tag (exact match).
    pub tag: Option<String>,
    /// Only jobs of this time expression type.
    pub time_expression_type: Option<crate::time_expression::TimeExpressionType>,
    /// Only jobs of this execute type.
    pub execute_type: Option<crate::model::ExecuteType>,
    /// Only enabled (`true`) or disabled (`false`) jobs.
    pub enabled: Option<bool>,
}

impl JobFilter {
    /// Whether `job` passes the filter.
    pub fn matches(&self, job: &JobRecord) -> bool {
        self.name
            .as_deref()
            .is_none_or(|n| name_contains(&job.name, n))
            && self
                .tag
                .as_deref()
                .is_none_or(|t| job.tags.iter().any(|x| x == t))
            && self
                .time_expression_type
                .is_none_or(|k| job.time_expression_type == k)
            && self.execute_type.is_none_or(|e| job.execute_type == e)
            && self.enabled.is_none_or(|e| job.enabled == e)
    }
}

/// Which workflows [`LogRepo::list_workflows`](super::LogRepo::list_workflows) returns: those
/// matching every part.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WorkflowFilter {
    /// Only workflows whose name contains this, ignoring case.
    pub name: Option<String>,
    /// Only workflows carrying this tag (exact match).
    pub tag: Option<String>,
    /// Only workflows of this time expression type.
    pub time_expression_type: Option<crate::time_expression::TimeExpressionType>,
}

impl WorkflowFilter {
    /// Whether a workflow named `name` passes the name part of the filter.
    pub fn name_matches(&self, name: &str) -> bool {
        self.name.as_deref().is_none_or(|n| name_contains(name, n))
    }

    /// Whether the filter looks at more than the name (then the definition is read).
    pub fn needs_definition(&self) -> bool {
        self.tag.is_some() || self.time_expression_type.is_some()
    }

    /// Whether `def` passes the filter.
    pub fn matches(&self, def: &crate::workflow::WorkflowDef) -> bool {
        self.name_matches(&def.name)
            && self
                .tag
                .as_deref()
                .is_none_or(|t| def.tags.iter().any(|x| x == t))
            && self
                .time_expression_type
                .is_none_or(|k| def.time_expression_type == k)
    }
}
