//! The stored form of [`InstanceRecord`], with its versions.
//!
//! | version | archive of | since |
//! |---|---|---|
//! | 1 | [`InstanceRecordV1`] | the first release |
//! | 2 | [`InstanceRecord`] | the attempt's start time (`started_time`) |
//!
//! Writes are always version 2. A version 1 record reads with no start time: the build that
//! wrote it did not keep one. The log store and PostgreSQL's `record` column both hold this
//! encoding.

use rkyv::{Archive, Deserialize, Serialize};

use crate::ids::{AppId, InstanceId, JobId};
use crate::model::InstanceStatus;
use crate::time_expression::EpochMs;

use super::codec::{decode_archive, encode_version, version_of};
use super::error::RepoError;
use super::instance::InstanceRecord;

/// The version `encode_instance` writes.
pub const INSTANCE_VERSION: u8 = 2;

/// An instance as version 1 stored it: the layout must never change.
#[derive(Clone, Debug, PartialEq, Eq, Archive, Serialize, Deserialize)]
pub(crate) struct InstanceRecordV1 {
    pub id: InstanceId,
    pub job_id: JobId,
    pub app_id: AppId,
    pub status: InstanceStatus,
    pub result: Option<String>,
    pub params: String,
    pub trigger_time: EpochMs,
    pub actual_trigger_time: Option<EpochMs>,
    pub finished_time: Option<EpochMs>,
    pub worker: Option<String>,
    pub running_times: u32,
    pub report_seq: u64,
    pub last_report_time: Option<EpochMs>,
    pub status_time: EpochMs,
    pub run: u64,
}

impl From<InstanceRecordV1> for InstanceRecord {
    fn from(v: InstanceRecordV1) -> InstanceRecord {
        InstanceRecord {
            id: v.id,
            job_id: v.job_id,
            app_id: v.app_id,
            status: v.status,
            result: v.result,
            params: v.params,
            trigger_time: v.trigger_time,
            actual_trigger_time: v.actual_trigger_time,
            finished_time: v.finished_time,
            worker: v.worker,
            running_times: v.running_times,
            report_seq: v.report_seq,
            last_report_time: v.last_report_time,
            status_time: v.status_time,
            run: v.run,
            started_time: None,
        }
    }
}

/// Encodes `rec` at [`INSTANCE_VERSION`]; `table` names the table in errors.
pub(crate) fn encode_instance(
    table: &'static str,
    rec: &InstanceRecord,
) -> Result<Vec<u8>, RepoError> {
    encode_version(table, INSTANCE_VERSION, rec)
}

/// Decodes a stored instance of any known version; other bytes give [`RepoError::Corrupt`]
/// naming `table` and `key`.
pub(crate) fn decode_instance(
    table: &'static str,
    key: &[u8],
    bytes: &[u8],
) -> Result<InstanceRecord, RepoError> {
    match version_of(table, key, bytes)? {
        1 => decode_archive::<InstanceRecordV1>(table, key, bytes).map(InstanceRecord::from),
        INSTANCE_VERSION => decode_archive::<InstanceRecord>(table, key, bytes),
        v => Err(RepoError::corrupt(
            table,
            key,
            format!("unknown instance version {v} (this build reads 1 to {INSTANCE_VERSION})"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::codec::encode;
    use crate::server::keys::INSTANCES;

    fn old() -> InstanceRecordV1 {
        InstanceRecordV1 {
            id: InstanceId(7),
            job_id: JobId(3),
            app_id: AppId(1),
            status: InstanceStatus::Succeed,
            result: Some("ok".into()),
            params: "p".into(),
            trigger_time: 1_000,
            actual_trigger_time: Some(1_010),
            finished_time: Some(2_000),
            worker: Some("10.0.0.1:27777".into()),
            running_times: 2,
            report_seq: (2 << 32) + 3,
            last_report_time: Some(1_990),
            status_time: 2_000,
            run: 4,
        }
    }

    #[test]
    fn a_version_1_record_reads_with_no_start_time() {
        let v1 = old();
        let bytes = encode(INSTANCES, &v1).unwrap();
        assert_eq!(bytes[0], 1);
        let rec = decode_instance(INSTANCES, b"k", &bytes).unwrap();
        assert_eq!(rec.started_time, None);
        assert_eq!(rec, InstanceRecord::from(v1));
        assert_eq!(rec.actual_trigger_time, Some(1_010));
        assert_eq!(rec.report_seq, (2 << 32) + 3);
        assert_eq!(rec.run, 4);
    }

    #[test]
    fn version_2_round_trips_and_unknown_versions_are_corrupt() {
        let mut rec = InstanceRecord::from(old());
        rec.started_time = Some(1_020);
        let bytes = encode_instance(INSTANCES, &rec).unwrap();
        assert_eq!(bytes[0], INSTANCE_VERSION);
        assert_eq!(decode_instance(INSTANCES, b"k", &bytes).unwrap(), rec);
        let mut future = bytes.clone();
        future[0] = INSTANCE_VERSION + 1;
        assert!(matches!(
            decode_instance(INSTANCES, b"k", &future),
            Err(RepoError::Corrupt { .. })
        ));
        assert!(matches!(
            decode_instance(INSTANCES, b"k", &[]),
            Err(RepoError::Corrupt { .. })
        ));
    }
}
