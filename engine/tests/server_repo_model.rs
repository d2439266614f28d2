//! Model-based property test of the repository: random operation sequences (with reopens)
//! against a plain in-memory model; after every step `load()` and the paged listing agree with
//! the model.

use std::collections::BTreeMap;
use std::sync::Arc;

use ferrojob::ids::{InstanceId, JobId};
use ferrojob::model::InstanceStatus;
use ferrojob::server::*;
use ferrojob::time_expression::TimeExpressionType;
use ferrojob_store::{MemoryStore, Store};
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Op {
    CreateJob,
    Fire { job: usize, next: Option<i64> },
    Delayed { job: usize, due: i64 },
    Dispatch { inst: usize },
    Report { inst: usize, seq: u64, status: u8 },
    Cancel { inst: usize },
    DeleteJob { job: usize },
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        1 => Just(Op::CreateJob),
        4 => (any::<usize>(), any::<Option<i64>>()).prop_map(|(job, next)| Op::Fire { job, next }),
        1 => (any::<usize>(), any::<i64>()).prop_map(|(job, due)| Op::Delayed { job, due }),
        3 => any::<usize>().prop_map(|inst| Op::Dispatch { inst }),
        3 => (any::<usize>(), 0..4u64, 0..4u8).prop_map(|(inst, seq, status)| Op::Report { inst, seq, status }),
        1 => any::<usize>().prop_map(|inst| Op::Cancel { inst }),
        1 => any::<usize>().prop_map(|job| Op::DeleteJob { job }),
        1 => Just(Op::Reopen),
    ]
}

#[derive(Default)]
struct Model {
    jobs: BTreeMap<JobId, LoadedJob>,
    instances: BTreeMap<InstanceId, InstanceRecord>,
    delayed: BTreeMap<InstanceId, DelayedRun>,
}

fn pick<K: Copy, V>(map: &BTreeMap<K, V>, i: usize) -> Option<K> {
    if map.is_empty() {
        None
    } else {
        map.keys().nth(i % map.len()).copied()
    }
}

fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let mut repo = Repo::open(store.clone()).unwrap();
    let app = repo
        .create_app("a", "secret-secret", 0)
        .unwrap()
        .wait()
        .unwrap();
    let mut m = Model::default();
    for (t, op) in ops.into_iter().enumerate() {
        let now = t as i64 * 10;
        match op {
            Op::CreateJob => {
                let job = JobRecord::new(app.id, "j", TimeExpressionType::Api, "", "noop");
                let job = repo.create_job(job, None, now).unwrap().wait().unwrap();
                m.jobs.insert(
                    job.id,
                    LoadedJob {
                        job,
                        trigger: TriggerRecord::default(),
                    },
                );
            }
            Op::Fire { job, next } => {
                let Some(id) = pick(&m.jobs, job) else {
                    continue;
                };
                let inst = repo
                    .fire(InstanceRecord::new(id, app.id, "", now), next)
                    .unwrap()
                    .wait()
                    .unwrap();
                let lj = m.jobs.get_mut(&id).unwrap();
                lj.trigger.runs += 1;
                lj.trigger.next_trigger = next;
                prop_assert_eq!(inst.run, lj.trigger.runs);
                prop_assert!(!m.instances.contains_key(&inst.id), "id reused");
                m.instances.insert(inst.id, inst);
            }
            Op::Delayed { job, due } => {
                let Some(id) = pick(&m.jobs, job) else {
                    continue;
                };
                let inst = repo
                    .create_instance(InstanceRecord::new(id, app.id, "", due), Some(due))
                    .unwrap()
                    .wait()
                    .unwrap();
                prop_assert!(!m.instances.contains_key(&inst.id), "id reused");
                m.delayed.insert(
                    inst.id,
                    DelayedRun {
                        instance_id: inst.id,
                        job_id: id,
                        due,
                    },
                );
                m.instances.insert(inst.id, inst);
            }
            Op::Dispatch { inst } | Op::Report { inst, .. } | Op::Cancel { inst } => {
                let Some(id) = pick(&m.instances, inst) else {
                    continue;
                };
                let mut rec = m.instances[&id].clone();
                let changed = match op {
                    Op::Dispatch { .. } => rec.dispatch("w", now).is_ok(),
                    Op::Cancel { .. } => rec.cancel(now).is_ok(),
                    Op::Report { seq, status, .. } => {
                        let s = [
                            InstanceStatus::Running,
                            InstanceStatus::Succeed,
                            InstanceStatus::Failed,
                            InstanceStatus::Stopped,
                        ][status as usize];
                        matches!(
                            rec.apply_report(
                                attempt_base(rec.running_times) + seq,
                                "w",
                                s,
                                Some("r"),
                                now
                            ),
                            Ok(ReportOutcome::Applied)
                        )
                    }
                    _ => unreachable!(),
                };
                if changed {
                    repo.update_instance(&rec).unwrap().wait().unwrap();
                    if rec.status != InstanceStatus::WaitingDispatch {
                        m.delayed.remove(&id);
                    }
                    m.instances.insert(id, rec);
                }
            }
            Op::DeleteJob { job } => {
                let Some(id) = pick(&m.jobs, job) else {
                    continue;
                };
                repo.delete_job(id).unwrap().wait().unwrap();
                m.jobs.remove(&id);
            }
            Op::Reopen => repo = Repo::open(store.clone()).unwrap(),
        }
        // load() agrees with the model.
        let state = repo.load().unwrap();
        prop_assert_eq!(state.apps.len(), 1);
        prop_assert_eq!(&state.jobs, &m.jobs.values().cloned().collect::<Vec<_>>());
        prop_assert_eq!(
            &state.delayed,
            &m.delayed.values().copied().collect::<Vec<_>>()
        );
        let active: Vec<_> = m
            .instances
            .values()
            .filter(|i| !i.status.is_final())
            .cloned()
            .collect();
        prop_assert_eq!(&state.active, &active);
        // Paging through every instance in pages of 3 gives the model's, newest first.
        let mut listed = Vec::new();
        let mut cursor = None;
        loop {
            let p = repo
                .list_instances(app.id, InstanceFilter::default(), cursor, 3)
                .unwrap();
            listed.extend(p.items);
            match p.next_cursor {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
        let expected: Vec<_> = m.instances.values().rev().cloned().collect();
        prop_assert_eq!(listed, expected);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn repo_agrees_with_the_model(ops in prop::collection::vec(op(), 1..40)) {
        run(ops)?;
    }
}
