//! Rows: records into the writer's row operations, and rows read back into records.

use tokio_postgres::Row;

use crate::ids::{AppId, WorkflowId};
use crate::model::InstanceStatus;
use crate::server::alarm_repo::{AlarmRecord, DeliveryStatus};
use crate::server::codec::encode;
use crate::server::error::RepoError;
use crate::server::instance::InstanceRecord;
use crate::server::instance_codec::{decode_instance, encode_instance};
use crate::server::job_codec::encode_job;
use crate::server::records::{AppRecord, JobRecord, TriggerRecord};
use crate::server::wf_codec::encode_wf_instance;
use crate::server::workflow_repo::{WfInstanceRecord, WorkflowRecord};

use super::tables::{Op, Table, Val};
use super::{big, get, i64s, name_of, text, unsigned, PgRepo};

impl PgRepo {
    pub(super) fn instance_row(inst: &InstanceRecord) -> Result<Op, RepoError> {
        Ok(Op::Put(
            Table::Instances,
            vec![
                i64s(Some(big(inst.id.0)?)),
                i64s(Some(big(inst.app_id.0)?)),
                i64s(Some(big(inst.job_id.0)?)),
                i64s(Some(big(inst.run)?)),
                text(&name_of(&inst.status)),
                Val::Bool(inst.status.is_final()),
                i64s(Some(inst.trigger_time)),
                i64s(inst.finished_time),
                Val::Text(inst.worker.clone()),
                Val::Bytes(encode_instance("instances", inst)?),
            ],
        ))
    }

    pub(super) fn instance_put_ops(
        ops: &mut Vec<Op>,
        instance: &InstanceRecord,
        prev: Option<InstanceStatus>,
    ) -> Result<(), RepoError> {
        instance.validate()?;
        ops.push(Self::instance_row(instance)?);
        let left_waiting = instance.status != InstanceStatus::WaitingDispatch
            && prev.is_none_or(|p| p == InstanceStatus::WaitingDispatch);
        if left_waiting {
            ops.push(Op::Delete(
                Table::DelayedRuns,
                vec![i64s(Some(big(instance.id.0)?))],
            ));
        }
        Ok(())
    }

    pub(super) fn trigger_op(table: Table, id: u64, t: &TriggerRecord) -> Result<Op, RepoError> {
        Ok(Op::Put(
            table,
            vec![
                i64s(Some(big(id)?)),
                i64s(t.next_trigger),
                i64s(Some(big(t.runs)?)),
            ],
        ))
    }

    pub(super) fn alarm_op(alarm: &AlarmRecord) -> Result<Op, RepoError> {
        Ok(Op::Put(
            Table::Alarms,
            vec![
                i64s(Some(big(alarm.app_id.0)?)),
                i64s(Some(big(alarm.seq)?)),
                Val::Bool(alarm.status == DeliveryStatus::Pending),
                text(&alarm.id),
                i64s(Some(big(alarm.job_id.0)?)),
                i64s(alarm.instance_id.map(|i| big(i.0)).transpose()?),
                text(&name_of(&alarm.kind)),
                i64s(Some(alarm.raised_at)),
                text(match alarm.status {
                    DeliveryStatus::Pending => "PENDING",
                    DeliveryStatus::Delivered => "DELIVERED",
                    DeliveryStatus::Failed => "FAILED",
                    DeliveryStatus::Recorded => "RECORDED",
                }),
                Val::Bytes(encode("alarms", alarm)?),
            ],
        ))
    }

    pub(super) fn wf_instance_op(rec: &WfInstanceRecord, finished: bool) -> Result<Op, RepoError> {
        // The snapshot column is for people; the record is the source of truth.
        let snapshot = if serde_json::from_str::<serde_json::Value>(&rec.snapshot_json).is_ok() {
            rec.snapshot_json.clone()
        } else {
            "null".to_owned()
        };
        Ok(Op::Put(
            Table::WorkflowInstances,
            vec![
                i64s(Some(big(rec.id.0)?)),
                i64s(Some(big(rec.app_id.0)?)),
                i64s(Some(big(rec.workflow_id.0)?)),
                i64s(Some(big(rec.version)?)),
                i64s(Some(big(rec.run)?)),
                Val::Bool(finished),
                i64s(rec.delayed_until),
                Val::Text(Some(snapshot)),
                Val::Bytes(encode_wf_instance("workflow_instances", rec)?),
                i64s(Some(rec.trigger_time)),
            ],
        ))
    }

    pub(super) fn workflow_op(rec: &WorkflowRecord) -> Result<Op, RepoError> {
        Ok(Op::Put(
            Table::Workflows,
            vec![
                i64s(Some(big(rec.id.0)?)),
                i64s(Some(big(rec.app_id.0)?)),
                text(&rec.name),
                i64s(Some(big(rec.version)?)),
                i64s(Some(rec.created_at)),
                i64s(Some(rec.updated_at)),
            ],
        ))
    }

    pub(super) fn app_op(app: &AppRecord) -> Result<Op, RepoError> {
        Ok(Op::Put(
            Table::Apps,
            vec![
                i64s(Some(big(app.id.0)?)),
                text(&app.name),
                text(&app.secret),
                i64s(Some(app.created_at)),
            ],
        ))
    }

    pub(super) fn job_op(job: &JobRecord) -> Result<Op, RepoError> {
        Ok(Op::Put(
            Table::Jobs,
            vec![
                i64s(Some(big(job.id.0)?)),
                i64s(Some(big(job.app_id.0)?)),
                text(&job.name),
                Val::Bool(job.enabled),
                text(&name_of(&job.time_expression_type)),
                text(&job.time_expression),
                text(&name_of(&job.execute_type)),
                text(&job.processor),
                i64s(Some(job.created_at)),
                i64s(Some(job.updated_at)),
                Val::Bytes(encode_job(job)?),
                text(&name_of(&job.overlap_policy)),
                Val::Text(Some(serde_json::to_string(&job.retry_backoff).map_err(
                    |e| RepoError::invalid("retry_backoff", e.to_string()),
                )?)),
                text(&name_of(&job.log.log_type)),
                text(&name_of(&job.log.level)),
                Val::Text(Some(
                    serde_json::to_string(&job.calendars)
                        .map_err(|e| RepoError::invalid("calendars", e.to_string()))?,
                )),
            ],
        ))
    }

    pub(super) fn app_from(row: &Row) -> Result<AppRecord, RepoError> {
        Ok(AppRecord {
            id: AppId(unsigned("apps", get(row, 0)?)?),
            name: get(row, 1)?,
            secret: get(row, 2)?,
            created_at: get(row, 3)?,
        })
    }

    pub(super) fn workflow_from(row: &Row) -> Result<WorkflowRecord, RepoError> {
        Ok(WorkflowRecord {
            id: WorkflowId(unsigned("workflows", get(row, 0)?)?),
            app_id: AppId(unsigned("workflows", get(row, 1)?)?),
            name: get(row, 2)?,
            version: unsigned("workflows", get(row, 3)?)?,
            created_at: get(row, 4)?,
            updated_at: get(row, 5)?,
        })
    }

    pub(super) fn instance_from(row: &Row, col: usize) -> Result<InstanceRecord, RepoError> {
        let bytes: Vec<u8> = get(row, col)?;
        let id: i64 = get(row, 0)?;
        decode_instance("instances", &id.to_be_bytes(), &bytes)
    }
}
