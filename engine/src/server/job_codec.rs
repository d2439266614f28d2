//! The stored form of [`JobRecord`], with its versions.
//!
//! | version | archive of | since |
//! |---|---|---|
//! | 1 | [`JobRecordV1`]: every field but `alarm` | the first release |
//! | 2 | [`JobRecordV2`]: every field but `description` and `tags` | alarm rules |
//! | 3 | [`JobRecordV3`]: every field but `retry_backoff`, `overlap_policy` and `log` | description and tags |
//! | 4 | [`JobRecordV4`]: every field but `log` | retry backoff and overlap policy |
//! | 5 | [`JobRecordV5`]: every field but `calendars` | log settings |
//! | 6 | [`JobRecord`] | calendars |
//!
//! Writes are always version 6. An older value is read in its own layout and migrated: a
//! version 1 job has no alarm rules, versions 1 and 2 have an empty description and no tags,
//! versions 1 to 3 back off as every job did then (exponential from 1 s, doubling, at most
//! 30 s) and FAIL a run beyond `max_instances`, versions 1 to 4 log ONLINE from INFO,
//! versions 1 to 5 name no calendar. So a store written by an older build opens unchanged; a
//! job is rewritten at version 6 on its next update.

use rkyv::{Archive, Deserialize, Serialize};

use crate::alarm::AlarmRules;
use crate::ids::{AppId, JobId};
use crate::model::{DispatchStrategy, ExecuteType};
use crate::policy::{OverlapPolicy, RetryBackoff};
use crate::time_expression::{EpochMs, Lifecycle, MisfirePolicy, TimeExpressionType};

use super::codec::{decode_archive, encode_version, version_of};
use super::error::RepoError;
use super::keys::JOBS;
use super::records::{JobRecord, LogSettings};

/// The version `encode_job` writes.
pub const JOB_RECORD_VERSION: u8 = 6;

/// A job as version 1 stored it: the layout must never change.
#[derive(Clone, Debug, PartialEq, Archive, Serialize, Deserialize)]
pub(crate) struct JobRecordV1 {
    pub id: JobId,
    pub app_id: AppId,
    pub name: String,
    pub time_expression_type: TimeExpressionType,
    pub time_expression: String,
    pub time_zone: Option<String>,
    pub execute_type: ExecuteType,
    pub processor: String,
    pub params: String,
    pub max_instances: u32,
    pub concurrency: u32,
    pub timeout_ms: u64,
    pub instance_retries: u32,
    pub task_retries: u32,
    pub dispatch_strategy: DispatchStrategy,
    pub designated_workers: Vec<String>,
    pub min_cpu_cores: f64,
    pub min_memory_gb: f64,
    pub min_disk_gb: f64,
    pub max_worker_count: u32,
    pub misfire: MisfirePolicy,
    pub lifecycle: Lifecycle,
    pub enabled: bool,
    pub created_at: EpochMs,
    pub updated_at: EpochMs,
}

impl From<JobRecordV1> for JobRecord {
    fn from(v: JobRecordV1) -> JobRecord {
        JobRecord {
            id: v.id,
            app_id: v.app_id,
            name: v.name,
            time_expression_type: v.time_expression_type,
            time_expression: v.time_expression,
            time_zone: v.time_zone,
            execute_type: v.execute_type,
            processor: v.processor,
            params: v.params,
            max_instances: v.max_instances,
            concurrency: v.concurrency,
            timeout_ms: v.timeout_ms,
            instance_retries: v.instance_retries,
            retry_backoff: RetryBackoff::default(),
            overlap_policy: OverlapPolicy::Fail,
            task_retries: v.task_retries,
            dispatch_strategy: v.dispatch_strategy,
            designated_workers: v.designated_workers,
            min_cpu_cores: v.min_cpu_cores,
            min_memory_gb: v.min_memory_gb,
            min_disk_gb: v.min_disk_gb,
            max_worker_count: v.max_worker_count,
            misfire: v.misfire,
            lifecycle: v.lifecycle,
            enabled: v.enabled,
            alarm: AlarmRules::default(),
            description: String::new(),
            tags: Vec::new(),
            log: LogSettings::default(),
            calendars: Vec::new(),
            created_at: v.created_at,
            updated_at: v.updated_at,
        }
    }
}

/// A job as version 2 stored it (version 1 plus `alarm`): the layout must never change.
#[derive(Clone, Debug, PartialEq, Archive, Serialize, Deserialize)]
pub(crate) struct JobRecordV2 {
    pub id: JobId,
    pub app_id: AppId,
    pub name: String,
    pub time_expression_type: TimeExpressionType,
    pub time_expression: String,
    pub time_zone: Option<String>,
    pub execute_type: ExecuteType,
    pub processor: String,
    pub params: String,
    pub max_instances: u32,
    pub concurrency: u32,
    pub timeout_ms: u64,
    pub instance_retries: u32,
    pub task_retries: u32,
    pub dispatch_strategy: DispatchStrategy,
    pub designated_workers: Vec<String>,
    pub min_cpu_cores: f64,
    pub min_memory_gb: f64,
    pub min_disk_gb: f64,
    pub max_worker_count: u32,
    pub misfire: MisfirePolicy,
    pub lifecycle: Lifecycle,
    pub enabled: bool,
    pub alarm: AlarmRules,
    pub created_at: EpochMs,
    pub updated_at: EpochMs,
}

impl From<JobRecordV2> for JobRecord {
    fn from(v: JobRecordV2) -> JobRecord {
        JobRecord {
            id: v.id,
            app_id: v.app_id,
            name: v.name,
            time_expression_type: v.time_expression_type,
            time_expression: v.time_expression,
            time_zone: v.time_zone,
            execute_type: v.execute_type,
            processor: v.processor,
            params: v.params,
            max_instances: v.max_instances,
            concurrency: v.concurrency,
            timeout_ms: v.timeout_ms,
            instance_retries: v.instance_retries,
            retry_backoff: RetryBackoff::default(),
            overlap_policy: OverlapPolicy::Fail,
            task_retries: v.task_retries,
            dispatch_strategy: v.dispatch_strategy,
            designated_workers: v.designated_workers,
            min_cpu_cores: v.min_cpu_cores,
            min_memory_gb: v.min_memory_gb,
            min_disk_gb: v.min_disk_gb,
            max_worker_count: v.max_worker_count,
            misfire: v.misfire,
            lifecycle: v.lifecycle,
            enabled: v.enabled,
            alarm: v.alarm,
            description: String::new(),
            tags: Vec::new(),
            log: LogSettings::default(),
            calendars: Vec::new(),
            created_at: v.created_at,
            updated_at: v.updated_at,
        }
    }
}

/// A job as version 3 stored it (version 2 plus `description` and `tags`): the layout must
/// never change.
#[derive(Clone, Debug, PartialEq, Archive, Serialize, Deserialize)]
pub(crate) struct JobRecordV3 {
    pub id: JobId,
    pub app_id: AppId,
    pub name: String,
    pub time_expression_type: TimeExpressionType,
    pub time_expression: String,
    pub time_zone: Option<String>,
    pub execute_type: ExecuteType,
    pub processor: String,
    pub params: String,
    pub max_instances: u32,
    pub concurrency: u32,
    pub timeout_ms: u64,
    pub instance_retries: u32,
    pub task_retries: u32,
    pub dispatch_strategy: DispatchStrategy,
    pub designated_workers: Vec<String>,
    pub min_cpu_cores: f64,
    pub min_memory_gb: f64,
    pub min_disk_gb: f64,
    pub max_worker_count: u32,
    pub misfire: MisfirePolicy,
    pub lifecycle: Lifecycle,
    pub enabled: bool,
    pub alarm: AlarmRules,
    pub description: String,
    pub tags: Vec<String>,
    pub created_at: EpochMs,
    pub updated_at: EpochMs,
}

impl From<JobRecordV3> for JobRecord {
    fn from(v: JobRecordV3) -> JobRecord {
        JobRecord {
            id: v.id,
            app_id: v.app_id,
            name: v.name,
            time_expression_type: v.time_expression_type,
            time_expression: v.time_expression,
            time_zone: v.time_zone,
            execute_type: v.execute_type,
            processor: v.processor,
            params: v.params,
            max_instances: v.max_instances,
            concurrency: v.concurrency,
            timeout_ms: v.timeout_ms,
            instance_retries: v.instance_retries,
            retry_backoff: RetryBackoff::default(),
            overlap_policy: OverlapPolicy::Fail,
            task_retries: v.task_retries,
            dispatch_strategy: v.dispatch_strategy,
            designated_workers: v.designated_workers,
            min_cpu_cores: v.min_cpu_cores,
            min_memory_gb: v.min_memory_gb,
            min_disk_gb: v.min_disk_gb,
            max_worker_count: v.max_worker_count,
            misfire: v.misfire,
            lifecycle: v.lifecycle,
            enabled: v.enabled,
            alarm: v.alarm,
            description: v.description,
            tags: v.tags,
            log: LogSettings::default(),
            calendars: Vec::new(),
            created_at: v.created_at,
            updated_at: v.updated_at,
        }
    }
}

/// A job as version 4 stored it (version 3 plus `retry_backoff` and `overlap_policy`): the
/// layout must never change.
#[derive(Clone, Debug, PartialEq, Archive, Serialize, Deserialize)]
pub(crate) struct JobRecordV4 {
    pub id: JobId,
    pub app_id: AppId,
    pub name: String,
    pub time_expression_type: TimeExpressionType,
    pub time_expression: String,
    pub time_zone: Option<String>,
    pub execute_type: ExecuteType,
    pub processor: String,
    pub params: String,
    pub max_instances: u32,
    pub concurrency: u32,
    pub timeout_ms: u64,
    pub instance_retries: u32,
    pub retry_backoff: RetryBackoff,
    pub overlap_policy: OverlapPolicy,
    pub task_retries: u32,
    pub dispatch_strategy: DispatchStrategy,
    pub designated_workers: Vec<String>,
    pub min_cpu_cores: f64,
    pub min_memory_gb: f64,
    pub min_disk_gb: f64,
    pub max_worker_count: u32,
    pub misfire: MisfirePolicy,
    pub lifecycle: Lifecycle,
    pub enabled: bool,
    pub alarm: AlarmRules,
    pub description: String,
    pub tags: Vec<String>,
    pub created_at: EpochMs,
    pub updated_at: EpochMs,
}

impl From<JobRecordV4> for JobRecord {
    fn from(v: JobRecordV4) -> JobRecord {
        JobRecord {
            id: v.id,
            app_id: v.app_id,
            name: v.name,
            time_expression_type: v.time_expression_type,
            time_expression: v.time_expression,
            time_zone: v.time_zone,
            execute_type: v.execute_type,
            processor: v.processor,
            params: v.params,
            max_instances: v.max_instances,
            concurrency: v.concurrency,
            timeout_ms: v.timeout_ms,
            instance_retries: v.instance_retries,
            retry_backoff: v.retry_backoff,
            overlap_policy: v.overlap_policy,
            task_retries: v.task_retries,
            dispatch_strategy: v.dispatch_strategy,
            designated_workers: v.designated_workers,
            min_cpu_cores: v.min_cpu_cores,
            min_memory_gb: v.min_memory_gb,
            min_disk_gb: v.min_disk_gb,
            max_worker_count: v.max_worker_count,
            misfire: v.misfire,
            lifecycle: v.lifecycle,
            enabled: v.enabled,
            alarm: v.alarm,
            description: v.description,
            tags: v.tags,
            log: LogSettings::default(),
            calendars: Vec::new(),
            created_at: v.created_at,
            updated_at: v.updated_at,
        }
    }
}

/// A job as version 5 stored it (version 4 plus `log`): the layout must never change.
#[derive(Clone, Debug, PartialEq, Archive, Serialize, Deserialize)]
pub(crate) struct JobRecordV5 {
    pub id: JobId,
    pub app_id: AppId,
    pub name: String,
    pub time_expression_type: TimeExpressionType,
    pub time_expression: String,
    pub time_zone: Option<String>,
    pub execute_type: ExecuteType,
    pub processor: String,
    pub params: String,
    pub max_instances: u32,
    pub concurrency: u32,
    pub timeout_ms: u64,
    pub instance_retries: u32,
    pub retry_backoff: RetryBackoff,
    pub overlap_policy: OverlapPolicy,
    pub task_retries: u32,
    pub dispatch_strategy: DispatchStrategy,
    pub designated_workers: Vec<String>,
    pub min_cpu_cores: f64,
    pub min_memory_gb: f64,
    pub min_disk_gb: f64,
    pub max_worker_count: u32,
    pub misfire: MisfirePolicy,
    pub lifecycle: Lifecycle,
    pub enabled: bool,
    pub alarm: AlarmRules,
    pub description: String,
    pub tags: Vec<String>,
    pub log: LogSettings,
    pub created_at: EpochMs,
    pub updated_at: EpochMs,
}

impl From<JobRecordV5> for JobRecord {
    fn from(v: JobRecordV5) -> JobRecord {
        JobRecord {
            id: v.id,
            app_id: v.app_id,
            name: v.name,
            time_expression_type: v.time_expression_type,
            time_expression: v.time_expression,
            time_zone: v.time_zone,
            execute_type: v.execute_type,
            processor: v.processor,
            params: v.params,
            max_instances: v.max_instances,
            concurrency: v.concurrency,
            timeout_ms: v.timeout_ms,
            instance_retries: v.instance_retries,
            retry_backoff: v.retry_backoff,
            overlap_policy: v.overlap_policy,
            task_retries: v.task_retries,
            dispatch_strategy: v.dispatch_strategy,
            designated_workers: v.designated_workers,
            min_cpu_cores: v.min_cpu_cores,
            min_memory_gb: v.min_memory_gb,
            min_disk_gb: v.min_disk_gb,
            max_worker_count: v.max_worker_count,
            misfire: v.misfire,
            lifecycle: v.lifecycle,
            enabled: v.enabled,
            alarm: v.alarm,
            description: v.description,
            tags: v.tags,
            log: v.log,
            calendars: Vec::new(),
            created_at: v.created_at,
            updated_at: v.updated_at,
        }
    }
}

/// Encodes `job` at [`JOB_RECORD_VERSION`].
pub(crate) fn encode_job(job: &JobRecord) -> Result<Vec<u8>, RepoError> {
    encode_version(JOBS, JOB_RECORD_VERSION, job)
}

/// Decodes a stored job of any known version; other bytes give [`RepoError::Corrupt`].
pub(crate) fn decode_job(key: &[u8], bytes: &[u8]) -> Result<JobRecord, RepoError> {
    match version_of(JOBS, key, bytes)? {
        1 => decode_archive::<JobRecordV1>(JOBS, key, bytes).map(JobRecord::from),
        2 => decode_archive::<JobRecordV2>(JOBS, key, bytes).map(JobRecord::from),
        3 => decode_archive::<JobRecordV3>(JOBS, key, bytes).map(JobRecord::from),
        4 => decode_archive::<JobRecordV4>(JOBS, key, bytes).map(JobRecord::from),
        5 => decode_archive::<JobRecordV5>(JOBS, key, bytes).map(JobRecord::from),
        JOB_RECORD_VERSION => decode_archive::<JobRecord>(JOBS, key, bytes),
        v => Err(RepoError::corrupt(
            JOBS,
            key,
            format!("unknown job record version {v} (this build reads 1 to {JOB_RECORD_VERSION})"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alarm::FailureRule;
    use crate::server::codec::encode;

    fn v1() -> JobRecordV1 {
        JobRecordV1 {
            id: JobId(7),
            app_id: AppId(3),
            name: "nightly".into(),
            time_expression_type: TimeExpressionType::Cron,
            time_expression: "0 0 2 * * ?".into(),
            time_zone: Some("Europe/Paris".into()),
            execute_type: ExecuteType::Standalone,
            processor: "shell".into(),
            params: "echo hi".into(),
            max_instances: 1,
            concurrency: 5,
            timeout_ms: 60_000,
            instance_retries: 2,
            task_retries: 0,
            dispatch_strategy: DispatchStrategy::HealthFirst,
            designated_workers: vec!["gpu".into()],
            min_cpu_cores: 0.5,
            min_memory_gb: 1.0,
            min_disk_gb: 0.0,
            max_worker_count: 0,
            misfire: MisfirePolicy::FireOnce,
            lifecycle: Lifecycle::default(),
            enabled: true,
            created_at: 1_000,
            updated_at: 2_000,
        }
    }

    #[test]
    fn a_version_1_job_reads_with_no_alarm_rules() {
        // What a server before alarm rules wrote: version byte 1 and the old layout.
        let bytes = encode(JOBS, &v1()).unwrap();
        assert_eq!(bytes[0], 1);
        let job = decode_job(b"k", &bytes).unwrap();
        assert_eq!(job.alarm, AlarmRules::default());
        assert_eq!(job.name, "nightly");
        assert_eq!(job.designated_workers, vec!["gpu".to_owned()]);
        assert_eq!(job.updated_at, 2_000);
        assert_eq!(job, JobRecord::from(v1()));
    }

    fn v2() -> JobRecordV2 {
        let v = v1();
        JobRecordV2 {
            id: v.id,
            app_id: v.app_id,
            name: v.name,
            time_expression_type: v.time_expression_type,
            time_expression: v.time_expression,
            time_zone: v.time_zone,
            execute_type: v.execute_type,
            processor: v.processor,
            params: v.params,
            max_instances: v.max_instances,
            concurrency: v.concurrency,
            timeout_ms: v.timeout_ms,
            instance_retries: v.instance_retries,
            task_retries: v.task_retries,
            dispatch_strategy: v.dispatch_strategy,
            designated_workers: v.designated_workers,
            min_cpu_cores: v.min_cpu_cores,
            min_memory_gb: v.min_memory_gb,
            min_disk_gb: v.min_disk_gb,
            max_worker_count: v.max_worker_count,
            misfire: v.misfire,
            lifecycle: v.lifecycle,
            enabled: v.enabled,
            alarm: AlarmRules {
                recovered: true,
                channels: vec!["ops".into()],
                ..AlarmRules::default()
            },
            created_at: v.created_at,
            updated_at: v.updated_at,
        }
    }

    #[test]
    fn a_version_2_job_reads_with_its_rules_and_no_labels() {
        // What a server before description and tags wrote.
        let bytes = encode_version(JOBS, 2, &v2()).unwrap();
        assert_eq!(bytes[0], 2);
        let job = decode_job(b"k", &bytes).unwrap();
        assert_eq!(job.alarm.channels, vec!["ops".to_owned()]);
        assert!(job.alarm.recovered);
        assert_eq!(job.description, "");
        assert!(job.tags.is_empty());
        assert_eq!(job, JobRecord::from(v2()));
    }

    #[test]
    fn a_version_3_job_reads_with_the_default_policies() {
        // What a server before retry backoff and overlap policies wrote.
        let v = v2();
        let v3 = JobRecordV3 {
            id: v.id,
            app_id: v.app_id,
            name: v.name,
            time_expression_type: v.time_expression_type,
            time_expression: v.time_expression,
            time_zone: v.time_zone,
            execute_type: v.execute_type,
            processor: v.processor,
            params: v.params,
            max_instances: v.max_instances,
            concurrency: v.concurrency,
            timeout_ms: v.timeout_ms,
            instance_retries: v.instance_retries,
            task_retries: v.task_retries,
            dispatch_strategy: v.dispatch_strategy,
            designated_workers: v.designated_workers,
            min_cpu_cores: v.min_cpu_cores,
            min_memory_gb: v.min_memory_gb,
            min_disk_gb: v.min_disk_gb,
            max_worker_count: v.max_worker_count,
            misfire: v.misfire,
            lifecycle: v.lifecycle,
            enabled: v.enabled,
            alarm: v.alarm,
            description: "nightly".into(),
            tags: vec!["etl".into()],
            created_at: v.created_at,
            updated_at: v.updated_at,
        };
        let bytes = encode_version(JOBS, 3, &v3).unwrap();
        assert_eq!(bytes[0], 3);
        let job = decode_job(b"k", &bytes).unwrap();
        assert_eq!(job.tags, vec!["etl".to_owned()]);
        assert_eq!(job.retry_backoff, RetryBackoff::default());
        assert_eq!(job.overlap_policy, OverlapPolicy::Fail);
        assert_eq!(job.log, LogSettings::default());
        assert_eq!(job, JobRecord::from(v3));
    }

    #[test]
    fn a_version_4_job_reads_with_its_policies_and_default_log_settings() {
        // What a server before log settings wrote.
        let v = JobRecord::from(v2());
        let v4 = JobRecordV4 {
            id: v.id,
            app_id: v.app_id,
            name: v.name,
            time_expression_type: v.time_expression_type,
            time_expression: v.time_expression,
            time_zone: v.time_zone,
            execute_type: v.execute_type,
            processor: v.processor,
            params: v.params,
            max_instances: v.max_instances,
            concurrency: v.concurrency,
            timeout_ms: v.timeout_ms,
            instance_retries: v.instance_retries,
            retry_backoff: RetryBackoff::fixed(2_000),
            overlap_policy: OverlapPolicy::Skip,
            task_retries: v.task_retries,
            dispatch_strategy: v.dispatch_strategy,
            designated_workers: v.designated_workers,
            min_cpu_cores: v.min_cpu_cores,
            min_memory_gb: v.min_memory_gb,
            min_disk_gb: v.min_disk_gb,
            max_worker_count: v.max_worker_count,
            misfire: v.misfire,
            lifecycle: v.lifecycle,
            enabled: v.enabled,
            alarm: v.alarm,
            description: "nightly".into(),
            tags: vec!["etl".into()],
            created_at: v.created_at,
            updated_at: v.updated_at,
        };
        let bytes = encode_version(JOBS, 4, &v4).unwrap();
        assert_eq!(bytes[0], 4);
        let job = decode_job(b"k", &bytes).unwrap();
        assert_eq!(job.retry_backoff, RetryBackoff::fixed(2_000));
        assert_eq!(job.overlap_policy, OverlapPolicy::Skip);
        assert_eq!(job.log, LogSettings::default());
        assert_eq!(job, JobRecord::from(v4));
    }

    #[test]
    fn a_version_5_job_reads_with_its_log_settings_and_no_calendars() {
        // What a server before calendars wrote.
        let v = JobRecord::from(v2());
        let log = LogSettings {
            log_type: crate::model::LogType::Local,
            level: crate::model::LogLevel::Warn,
        };
        let v5 = JobRecordV5 {
            id: v.id,
            app_id: v.app_id,
            name: v.name,
            time_expression_type: v.time_expression_type,
            time_expression: v.time_expression,
            time_zone: v.time_zone,
            execute_type: v.execute_type,
            processor: v.processor,
            params: v.params,
            max_instances: v.max_instances,
            concurrency: v.concurrency,
            timeout_ms: v.timeout_ms,
            instance_retries: v.instance_retries,
            retry_backoff: RetryBackoff::fixed(2_000),
            overlap_policy: OverlapPolicy::Skip,
            task_retries: v.task_retries,
            dispatch_strategy: v.dispatch_strategy,
            designated_workers: v.designated_workers,
            min_cpu_cores: v.min_cpu_cores,
            min_memory_gb: v.min_memory_gb,
            min_disk_gb: v.min_disk_gb,
            max_worker_count: v.max_worker_count,
            misfire: v.misfire,
            lifecycle: v.lifecycle,
            enabled: v.enabled,
            alarm: v.alarm,
            description: "nightly".into(),
            tags: vec!["etl".into()],
            log,
            created_at: v.created_at,
            updated_at: v.updated_at,
        };
        let bytes = encode_version(JOBS, 5, &v5).unwrap();
        assert_eq!(bytes[0], 5);
        let job = decode_job(b"k", &bytes).unwrap();
        assert_eq!(job.log, log);
        assert!(job.calendars.is_empty());
        assert_eq!(job, JobRecord::from(v5));
    }

    #[test]
    fn a_version_6_job_round_trips_with_its_rules_labels_policies_log_settings_and_calendars() {
        let mut job = JobRecord::from(v1());
        job.retry_backoff = RetryBackoff {
            jitter: 0.25,
            factor: 1.5,
            ..RetryBackoff::exponential(200, 5_000)
        };
        job.overlap_policy = OverlapPolicy::Queue;
        job.log = LogSettings {
            log_type: crate::model::LogType::Local,
            level: crate::model::LogLevel::Warn,
        };
        job.description = "nightly export to the warehouse".into();
        job.tags = vec!["etl".into(), "team:data".into()];
        job.calendars = vec!["holidays-fr".into(), "freeze".into()];
        job.alarm = AlarmRules {
            failures: Some(FailureRule {
                threshold: 3,
                window_ms: 60_000,
                silence_ms: 600_000,
            }),
            recovered: true,
            channels: vec!["ops".into()],
            ..AlarmRules::default()
        };
        let bytes = encode_job(&job).unwrap();
        assert_eq!(bytes[0], JOB_RECORD_VERSION);
        assert_eq!(decode_job(b"k", &bytes).unwrap(), job);
    }

    #[test]
    fn other_versions_and_bad_bytes_are_corrupt() {
        let mut bytes = encode_job(&JobRecord::from(v1())).unwrap();
        for v in [0u8, 7, 255] {
            bytes[0] = v;
            assert!(matches!(
                decode_job(b"k", &bytes),
                Err(RepoError::Corrupt { .. })
            ));
        }
        assert!(matches!(
            decode_job(b"k", &[]),
            Err(RepoError::Corrupt { .. })
        ));
        // A version 6 archive under an older byte fails validation, never panics.
        for v in [1u8, 2, 3, 4, 5] {
            bytes[0] = v;
            let _ = decode_job(b"k", &bytes);
        }
    }
}
