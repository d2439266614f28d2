//! Property tests of the record encoding: every record round-trips through a store, and no
//! stored bytes make a read panic.

use std::sync::Arc;

use ferrojob_store::{MemoryStore, Store};
use proptest::prelude::*;

use super::codec::{decode, encode};
use super::keys;
use super::*;
use crate::ids::{AppId, InstanceId, JobId};
use crate::model::{DispatchStrategy, ExecuteType, InstanceStatus, LogLevel, LogType};
use crate::time_expression::{Lifecycle, MisfirePolicy, TimeExpressionType};

fn status() -> impl Strategy<Value = InstanceStatus> {
    prop::sample::select(InstanceStatus::ALL.to_vec())
}

prop_compose! {
    fn job()(
        id in any::<u64>(), app in any::<u64>(), name in ".{0,20}",
        kind in prop::sample::select(TimeExpressionType::ALL.to_vec()),
        expr in ".{0,30}", tz in prop::option::of("[A-Za-z/_]{0,20}"),
        exec in prop::sample::select(vec![ExecuteType::Standalone, ExecuteType::Broadcast, ExecuteType::Map, ExecuteType::MapReduce]),
        processor in ".{0,20}", params in ".{0,40}",
        nums in any::<(u32, u32, u64, u32, u32, u32)>(),
        strategy in prop::sample::select(vec![DispatchStrategy::HealthFirst, DispatchStrategy::Random, DispatchStrategy::RoundRobin, DispatchStrategy::Specify]),
        workers in prop::collection::vec(".{0,10}", 0..4),
        mins in any::<(f64, f64, f64)>(),
        misfire in prop::sample::select(vec![MisfirePolicy::FireOnce, MisfirePolicy::FireAll, MisfirePolicy::Skip]),
        life in any::<(Option<i64>, Option<i64>)>(), enabled in any::<bool>(), times in any::<(i64, i64)>(),
        description in ".{0,40}", tags in prop::collection::vec(".{0,10}", 0..4),
    ) -> JobRecord {
        JobRecord {
            id: JobId(id), app_id: AppId(app), name, time_expression_type: kind,
            time_expression: expr, time_zone: tz, execute_type: exec, processor, params,
            max_instances: nums.0, concurrency: nums.1, timeout_ms: nums.2,
            instance_retries: nums.3, task_retries: nums.4, dispatch_strategy: strategy,
            retry_backoff: crate::policy::RetryBackoff::fixed(u64::from(nums.5)),
            overlap_policy: if enabled { crate::policy::OverlapPolicy::Queue } else { crate::policy::OverlapPolicy::Replace },
            designated_workers: workers, min_cpu_cores: mins.0, min_memory_gb: mins.1,
            min_disk_gb: mins.2, max_worker_count: nums.5, misfire,
            lifecycle: Lifecycle { start: life.0, end: life.1 }, enabled,
            alarm: crate::alarm::AlarmRules {
                late_start_ms: nums.2.checked_sub(1), recovered: enabled, ..Default::default()
            },
            description, calendars: tags.iter().rev().cloned().collect(), tags,
            log: super::LogSettings {
                log_type: [LogType::Online, LogType::Local, LogType::Stdout, LogType::Null][(nums.0 % 4) as usize],
                level: [LogLevel::Debug, LogLevel::Info, LogLevel::Warn, LogLevel::Error][(nums.1 % 4) as usize],
            },
            created_at: times.0, updated_at: times.1,
        }
    }
}

prop_compose! {
    fn instance()(
        ids in any::<(u64, u64, u64)>(), status in status(),
        result in prop::option::of(".{0,40}"), params in ".{0,40}",
        times in any::<(i64, Option<i64>, Option<i64>, Option<i64>, i64)>(),
        started in any::<Option<i64>>(),
        worker in prop::option::of("[a-z0-9.:]{0,20}"), counts in any::<(u32, u64, u64)>(),
    ) -> InstanceRecord {
        InstanceRecord {
            id: InstanceId(ids.0), job_id: JobId(ids.1), app_id: AppId(ids.2), status, result,
            params, trigger_time: times.0, actual_trigger_time: times.1, finished_time: times.2,
            worker, running_times: counts.0, report_seq: counts.1, last_report_time: times.3,
            status_time: times.4, run: counts.2, started_time: started,
        }
    }
}

/// Puts `value` into a memory store and reads it back through the codec.
fn through_store<T>(table: &'static str, value: &T) -> T
where
    T: for<'a> rkyv::Serialize<
            rkyv::api::high::HighSerializer<
                rkyv::util::AlignedVec,
                rkyv::ser::allocator::ArenaHandle<'a>,
                rkyv::rancor::Error,
            >,
        > + rkyv::Archive,
    T::Archived: for<'a> rkyv::bytecheck::CheckBytes<rkyv::api::high::HighValidator<'a, rkyv::rancor::Error>>
        + rkyv::Deserialize<T, rkyv::rancor::Strategy<rkyv::de::Pool, rkyv::rancor::Error>>,
{
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let key = keys::id(42);
    store
        .put(table, &key, &encode(table, value).unwrap())
        .unwrap();
    let bytes = store.get(table, &key).unwrap().unwrap();
    decode(table, &key, &bytes).unwrap()
}

/// Compares jobs field by field, treating NaN minimums as equal to themselves.
fn same_job(a: &JobRecord, b: &JobRecord) -> bool {
    let f = |x: f64, y: f64| x.to_bits() == y.to_bits();
    f(a.min_cpu_cores, b.min_cpu_cores)
        && f(a.min_memory_gb, b.min_memory_gb)
        && f(a.min_disk_gb, b.min_disk_gb)
        && JobRecord {
            min_cpu_cores: 0.0,
            min_memory_gb: 0.0,
            min_disk_gb: 0.0,
            ..a.clone()
        } == JobRecord {
            min_cpu_cores: 0.0,
            min_memory_gb: 0.0,
            min_disk_gb: 0.0,
            ..b.clone()
        }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn job_round_trips(j in job()) {
        let bytes = job_codec::encode_job(&j).unwrap();
        prop_assert!(same_job(&job_codec::decode_job(b"k", &bytes).unwrap(), &j));
    }

    #[test]
    fn instance_round_trips(i in instance()) {
        let bytes = super::instance_codec::encode_instance(keys::INSTANCES, &i).unwrap();
        prop_assert_eq!(super::instance_codec::decode_instance(keys::INSTANCES, b"k", &bytes).unwrap(), i);
    }

    #[test]
    fn small_records_round_trip(
        id in any::<u64>(), name in ".{0,20}", secret in ".{0,20}", t in any::<i64>(),
        next in any::<Option<i64>>(), runs in any::<u64>(), content in ".{0,50}",
        level in prop::sample::select(vec![LogLevel::Debug, LogLevel::Info, LogLevel::Warn, LogLevel::Error]),
    ) {
        let app = AppRecord { id: AppId(id), name, secret, created_at: t };
        prop_assert_eq!(through_store(keys::APPS, &app), app);
        let trig = TriggerRecord { next_trigger: next, runs };
        prop_assert_eq!(through_store(keys::TRIGGERS, &trig), trig);
        let d = DelayedRun { instance_id: InstanceId(id), job_id: JobId(runs), due: t };
        prop_assert_eq!(through_store(keys::DELAYED, &d), d);
        let fields = vec![super::LogLineField { key: content.clone(), value: t.to_string() }];
        let l = LogLine { time: t, level, content, attempt: runs as u32, fields };
        let bytes = super::log_codec::encode_log_line(&l).unwrap();
        prop_assert_eq!(super::log_codec::decode_log_line(b"k", &bytes).unwrap(), l);
    }

    /// Arbitrary bytes as a stored value never panic: each table's decoder returns a record or
    /// a Corrupt error naming the table.
    #[test]
    fn arbitrary_values_never_panic(mut bytes in prop::collection::vec(any::<u8>(), 0..300), versioned in any::<bool>()) {
        if versioned && !bytes.is_empty() {
            bytes[0] = RECORD_VERSION;
        }
        for table in [keys::APPS, keys::JOBS, keys::TRIGGERS, keys::INSTANCES, keys::DELAYED, keys::LOGS] {
            match check_value(table, b"k", &bytes) {
                Ok(()) => {}
                Err(RepoError::Corrupt { table: t, key, .. }) => {
                    prop_assert_eq!(t, table);
                    prop_assert_eq!(key, "6b");
                }
                Err(e) => prop_assert!(false, "unexpected error {e}"),
            }
        }
    }

    /// Every truncation and every single-byte change of a valid record is either still a
    /// valid record or a Corrupt error.
    #[test]
    fn mutated_records_never_panic(i in instance(), pos in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let good = super::instance_codec::encode_instance(keys::INSTANCES, &i).unwrap();
        let p = pos.index(good.len());
        let _ = check_value(keys::INSTANCES, b"k", &good[..p]);
        let mut bad = good.clone();
        bad[p] = byte;
        let _ = check_value(keys::INSTANCES, b"k", &bad);
    }
}

#[test]
fn unknown_version_is_corrupt() {
    let mut v = encode(keys::TRIGGERS, &TriggerRecord::default()).unwrap();
    v[0] = 2;
    let err = check_value(keys::TRIGGERS, &keys::id(7), &v).unwrap_err();
    assert!(
        matches!(&err, RepoError::Corrupt { table: "triggers", key, reason }
            if key == "0000000000000007" && reason.contains("version 2")),
        "{err}"
    );
    assert!(check_value(keys::TRIGGERS, b"k", &[]).is_err());
}

#[test]
fn app_debug_redacts_secret() {
    let app = AppRecord {
        id: AppId(1),
        name: "a".into(),
        secret: "hunter2hunter2".into(),
        created_at: 0,
    };
    assert!(!format!("{app:?}").contains("hunter2"));
}

#[test]
fn workflow_records_round_trip_and_bad_bytes_are_corrupt() {
    use super::workflow_repo::*;
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let repo = Repo::open(Arc::clone(&store)).unwrap();
    let app = repo
        .create_app("a", "secret-secret", 1)
        .unwrap()
        .wait()
        .unwrap();
    let def: crate::workflow::WorkflowDef = serde_json::from_value(serde_json::json!({
        "name": "w", "time_expression_type": "API", "nodes": [{"id": 1, "job_id": 1}],
    }))
    .unwrap();
    let wf = repo
        .create_workflow(app.id, &def, None, 5)
        .unwrap()
        .wait()
        .unwrap();
    assert_eq!(repo.workflow_def(wf.id, 1).unwrap(), def);
    let snap = crate::workflow::InstanceSnapshot {
        status: crate::workflow::InstanceStatus::Waiting,
        nodes: Vec::new(),
        decisions: Vec::new(),
        context: serde_json::Map::new(),
        failed: false,
        created_at: 5,
        started_at: None,
        finished_at: None,
    };
    let mut rec = WfInstanceRecord {
        id: repo.new_wf_instance_id().unwrap(),
        workflow_id: wf.id,
        version: 1,
        app_id: app.id,
        parent: None,
        ancestors: vec![],
        snapshot_json: String::new(),
        nodes: vec![],
        delayed_until: Some(9),
        run: 0,
        trigger_time: 4,
    };
    rec.set_snapshot(&snap).unwrap();
    let write = WfWrite {
        wf_instances: vec![(rec.clone(), true, false)],
        ..WfWrite::default()
    };
    repo.write_wf(&write).unwrap().wait().unwrap();
    assert_eq!(repo.get_wf_instance(rec.id).unwrap(), rec);
    assert_eq!(
        repo.get_wf_instance(rec.id).unwrap().snapshot().unwrap(),
        snap
    );
    let (wfs, active) = repo.load_workflows().unwrap();
    assert_eq!((wfs.len(), active.len()), (1, 1));
    let page = repo
        .list_wf_instances(app.id, Some(wf.id), None, 10)
        .unwrap();
    assert_eq!(page.items.len(), 1);
    // Garbage in either layer is a typed error, never a panic.
    let key = keys::id(rec.id.0);
    store
        .submit(ferrojob_store::Batch::new().put(WF_INSTANCES, key, vec![1, 2, 3]))
        .wait()
        .unwrap();
    assert!(matches!(
        repo.get_wf_instance(rec.id),
        Err(RepoError::Corrupt { .. })
    ));
    assert!(matches!(
        repo.load_workflows(),
        Err(RepoError::Corrupt { .. })
    ));
    rec.snapshot_json = "{not json".into();
    assert!(matches!(rec.snapshot(), Err(RepoError::Corrupt { .. })));
    let bad = WorkflowDefRecord {
        def_json: "[]".into(),
    };
    let vkey = keys::pair(wf.id.0, 1);
    store
        .submit(ferrojob_store::Batch::new().put(
            WF_VERSIONS,
            vkey,
            encode(WF_VERSIONS, &bad).unwrap(),
        ))
        .wait()
        .unwrap();
    assert!(matches!(
        repo.workflow_def(wf.id, 1),
        Err(RepoError::Corrupt { .. })
    ));
    assert!(check_value(WF_VERSIONS, &vkey, &[9, 9]).is_err());
}
