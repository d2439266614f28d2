//! The stored form of [`WfInstanceRecord`], with its versions.
//!
//! | version | archive of | since |
//! |---|---|---|
//! | 1 | [`WfInstanceRecordV1`] | the first release |
//! | 2 | [`WfInstanceRecord`] | the logical trigger time |
//!
//! Writes are always version 2. A version 1 record has no trigger time of its own: it reads
//! with its snapshot's creation time, which is what the trigger time means for the API runs
//! and is within the misfire threshold of it for the scheduled fires that build wrote. Its
//! snapshot is not trusted here: one that does not parse reads with 0 (and is reported
//! corrupt by whoever reads the snapshot itself). The log store and PostgreSQL's `record`
//! column both hold this encoding.

use rkyv::{Archive, Deserialize, Serialize};

use crate::ids::{AppId, WorkflowId, WorkflowInstanceId};
use crate::time_expression::EpochMs;

use super::codec::{decode_archive, encode_version, version_of};
use super::error::RepoError;
use super::workflow_repo::{WfInstanceRecord, WfNodeRun, WfParent};

/// The version `encode_wf_instance` writes.
pub const WF_INSTANCE_VERSION: u8 = 2;

/// A workflow instance as version 1 stored it: the layout must never change.
#[derive(Clone, Debug, PartialEq, Eq, Archive, Serialize, Deserialize)]
pub(crate) struct WfInstanceRecordV1 {
    pub id: WorkflowInstanceId,
    pub workflow_id: WorkflowId,
    pub version: u64,
    pub app_id: AppId,
    pub parent: Option<WfParent>,
    pub ancestors: Vec<WorkflowId>,
    pub snapshot_json: String,
    pub nodes: Vec<WfNodeRun>,
    pub delayed_until: Option<EpochMs>,
    pub run: u64,
}

impl From<WfInstanceRecordV1> for WfInstanceRecord {
    fn from(v: WfInstanceRecordV1) -> WfInstanceRecord {
        let mut rec = WfInstanceRecord {
            id: v.id,
            workflow_id: v.workflow_id,
            version: v.version,
            app_id: v.app_id,
            parent: v.parent,
            ancestors: v.ancestors,
            snapshot_json: v.snapshot_json,
            nodes: v.nodes,
            delayed_until: v.delayed_until,
            run: v.run,
            trigger_time: 0,
        };
        rec.trigger_time = rec.snapshot().map_or(0, |s| s.created_at);
        rec
    }
}

/// Encodes `rec` at [`WF_INSTANCE_VERSION`]; `table` names the table in errors.
pub(crate) fn encode_wf_instance(
    table: &'static str,
    rec: &WfInstanceRecord,
) -> Result<Vec<u8>, RepoError> {
    encode_version(table, WF_INSTANCE_VERSION, rec)
}

/// Decodes a stored workflow instance of any known version; other bytes give
/// [`RepoError::Corrupt`] naming `table` and `key`.
pub(crate) fn decode_wf_instance(
    table: &'static str,
    key: &[u8],
    bytes: &[u8],
) -> Result<WfInstanceRecord, RepoError> {
    match version_of(table, key, bytes)? {
        1 => decode_archive::<WfInstanceRecordV1>(table, key, bytes).map(WfInstanceRecord::from),
        WF_INSTANCE_VERSION => decode_archive::<WfInstanceRecord>(table, key, bytes),
        v => Err(RepoError::corrupt(
            table,
            key,
            format!(
                "unknown workflow instance version {v} (this build reads 1 to {WF_INSTANCE_VERSION})"
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::NodeId;
    use crate::server::codec::encode;
    use crate::server::workflow_repo::WF_INSTANCES;

    fn old(snapshot_json: &str) -> WfInstanceRecordV1 {
        WfInstanceRecordV1 {
            id: WorkflowInstanceId(7),
            workflow_id: WorkflowId(3),
            version: 2,
            app_id: AppId(1),
            parent: Some(WfParent {
                instance: WorkflowInstanceId(5),
                node: NodeId(4),
                attempt: 1,
            }),
            ancestors: vec![WorkflowId(9)],
            snapshot_json: snapshot_json.into(),
            nodes: vec![WfNodeRun {
                node: NodeId(4),
                instance: 11,
                nested: false,
            }],
            delayed_until: Some(50),
            run: 3,
        }
    }

    #[test]
    fn a_version_1_record_reads_with_its_creation_time_as_trigger_time() {
        let snap = r#"{"status":"RUNNING","nodes":[],"decisions":[],"context":{},"failed":false,"created_at":1234,"started_at":1240,"finished_at":null}"#;
        let v1 = old(snap);
        let bytes = encode(WF_INSTANCES, &v1).unwrap();
        assert_eq!(bytes[0], 1);
        let rec = decode_wf_instance(WF_INSTANCES, b"k", &bytes).unwrap();
        assert_eq!(rec.trigger_time, 1234, "{:?}", rec.snapshot());
        assert_eq!(rec, WfInstanceRecord::from(v1));
        assert_eq!(rec.run, 3);
        assert_eq!(rec.delayed_until, Some(50));
    }

    #[test]
    fn a_version_1_record_with_a_bad_snapshot_reads_with_trigger_time_0() {
        let bytes = encode(WF_INSTANCES, &old("not json")).unwrap();
        let rec = decode_wf_instance(WF_INSTANCES, b"k", &bytes).unwrap();
        assert_eq!(rec.trigger_time, 0);
        assert!(rec.snapshot().is_err());
    }

    #[test]
    fn version_2_round_trips_and_unknown_versions_are_corrupt() {
        let mut rec = WfInstanceRecord::from(old("{}"));
        rec.trigger_time = 1_795_000_000_000;
        let bytes = encode_wf_instance(WF_INSTANCES, &rec).unwrap();
        assert_eq!(bytes[0], WF_INSTANCE_VERSION);
        assert_eq!(decode_wf_instance(WF_INSTANCES, b"k", &bytes).unwrap(), rec);
        let mut future = bytes.clone();
        future[0] = WF_INSTANCE_VERSION + 1;
        assert!(matches!(
            decode_wf_instance(WF_INSTANCES, b"k", &future),
            Err(RepoError::Corrupt { .. })
        ));
        assert!(matches!(
            decode_wf_instance(WF_INSTANCES, b"k", &[]),
            Err(RepoError::Corrupt { .. })
        ));
    }
}
