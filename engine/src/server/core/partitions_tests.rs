//! The core acting only for the partitions it holds: acquiring loads and fires a partition's
//! apps, losing stops at once without a write, another server picks up where the first
//! stopped, and every message carries the partition's epoch.

use std::sync::Arc;

use ferrojob_store::MemoryStore;
use ferrojob_transport::message as wire;
use ferrojob_transport::NotServed;

use super::partitions::NotOwner;
use super::tests::{at, core, heartbeat_of, report, T0};
use super::*;
use crate::api::InstanceAction;
use crate::cluster::{partition_of, Epoch, PartitionId, ServerId};
use crate::dispatch::RegistryConfig;
use crate::server::{AppRecord, JobRecord, Repo};
use crate::time_expression::TimeExpressionType;

/// A message sent to a worker: (worker, instance, epoch, is a ScheduleJob).
type Msg = (String, u64, u64, bool);

/// Two apps in different partitions, each with a FIXED_RATE job every second (first
/// trigger at T0 + 1 s), in one store.
struct Fixture {
    repo: Arc<Repo>,
    a: AppRecord,
    b: AppRecord,
    job_a: JobId,
    job_b: JobId,
}

impl Fixture {
    fn new() -> Fixture {
        let store: Arc<dyn ferrojob_store::Store> = Arc::new(MemoryStore::new());
        let repo = Arc::new(Repo::open(store).unwrap());
        let a = repo
            .create_app("a", "secret-secret-secret", T0)
            .unwrap()
            .wait()
            .unwrap();
        let other = (0..100)
            .map(|i| format!("app-{i}"))
            .find(|n| partition_of(n) != partition_of("a"))
            .unwrap();
        let b = repo
            .create_app(&other, "secret-secret-secret", T0)
            .unwrap()
            .wait()
            .unwrap();
        let job = |app: &AppRecord| {
            let rec = JobRecord::new(app.id, "j", TimeExpressionType::FixedRate, "1000", "noop");
            repo.create_job(rec, Some(T0 + 1_000), T0)
                .unwrap()
                .wait()
                .unwrap()
                .id
        };
        let (job_a, job_b) = (job(&a), job(&b));
        Fixture {
            repo,
            a,
            b,
            job_a,
            job_b,
        }
    }

    fn pa(&self) -> PartitionId {
        partition_of(&self.a.name)
    }

    /// A server of a cluster over the fixture's store, holding no partition yet, with a
    /// worker of each app connected.
    fn server(&self) -> Core {
        let (template, _) = core();
        let registry = Arc::new(
            WorkerRegistry::new(RegistryConfig {
                heartbeat_interval_ms: 1000,
                ..RegistryConfig::default()
            })
            .unwrap(),
        );
        let mut c = Core::new(
            template.config.clone(),
            Arc::clone(&self.repo),
            registry,
            Arc::new(Metrics::default()),
            SelectState::seeded(1),
            T0,
        );
        at(&mut c, T0, T0);
        c.start_partitioned(self.repo.list_apps().unwrap(), T0);
        c
    }
}

/// Carries out the step's effects until none is left (writes acknowledged at once); the
/// messages sent, and whether anything was written.
fn settle(core: &mut Core, now: EpochMs) -> (Vec<Msg>, bool) {
    let mut sent = Vec::new();
    let mut wrote = false;
    loop {
        let effects = core.take_effects();
        if effects.is_empty() {
            return (sent, wrote);
        }
        for e in effects {
            match e {
                Effect::Await(Awaited::Write(c, then)) => {
                    wrote = true;
                    let ok = c.wait().is_ok();
                    core.resume(then, ok, now);
                }
                Effect::Await(Awaited::Created(c, then)) => {
                    wrote = true;
                    core.created(c.wait(), then, now);
                }
                Effect::Await(Awaited::Detached(c)) => {
                    wrote = true;
                    let _ = c.wait();
                }
                Effect::Send {
                    worker,
                    msg: Outgoing::Schedule { msg, .. },
                    ..
                } => sent.push((worker, msg.instance_id, msg.epoch, true)),
                Effect::Send {
                    worker,
                    msg: Outgoing::Stop(s),
                    ..
                } => sent.push((worker, s.instance_id, s.epoch, false)),
                _ => {}
            }
        }
    }
}

/// Steps to `now` with both apps' workers beating, and runs the due timers.
fn tick(core: &mut Core, f: &Fixture, now: EpochMs) -> (Vec<Msg>, bool) {
    at(core, now, now);
    heartbeat_of(core, &f.a.name, "wa:1");
    heartbeat_of(core, &f.b.name, "wb:1");
    core.on_timers(now);
    settle(core, now)
}

fn connect_both(core: &mut Core, f: &Fixture) {
    core.worker_connected(f.a.id, "wa:1", 1);
    core.worker_connected(f.b.id, "wb:1", 1);
    heartbeat_of(core, &f.a.name, "wa:1");
    heartbeat_of(core, &f.b.name, "wb:1");
}

#[test]
fn acquiring_a_partition_loads_only_its_apps_and_fires_them_with_its_epoch() {
    let f = Fixture::new();
    let mut s = f.server();
    connect_both(&mut s, &f);
    // Nothing is acted for before a partition is held.
    let (sent, _) = tick(&mut s, &f, T0 + 1_000);
    assert!(sent.is_empty(), "{sent:?}");
    assert!(s.jobs.is_empty());

    at(&mut s, T0 + 1_100, T0 + 1_100);
    s.on_partition_acquired(f.pa(), Epoch(5), T0 + 1_100)
        .unwrap();
    assert_eq!(s.held_partitions(), vec![(f.pa(), Epoch(5))]);
    assert!(s.jobs.contains_key(&f.job_a));
    assert!(
        !s.jobs.contains_key(&f.job_b),
        "another partition's job loaded"
    );
    // The trigger missed while nobody held it follows the job's misfire policy; then the
    // job fires every second, always with the partition's epoch, and only app a's worker
    // hears of it.
    let mut fired = Vec::new();
    for t in 1..=3 {
        let (sent, _) = tick(&mut s, &f, T0 + 1_100 + t * 1_000);
        fired.extend(sent);
    }
    assert!(!fired.is_empty());
    for (worker, _, epoch, schedule) in &fired {
        assert_eq!((worker.as_str(), *epoch, *schedule), ("wa:1", 5, true));
    }
    assert!(s.active.values().all(|st| st.rec.app_id == f.a.id));
    // The other app is refused: its API commands, and its workers at the handshake.
    let err = s
        .prepare_run(f.b.id, f.job_b, String::new(), 0, T0 + 4_200)
        .unwrap_err();
    assert_eq!(err.code, crate::api::ErrorCode::Unavailable);
    assert!(err.message.contains(&f.b.name), "{}", err.message);
    assert_eq!(s.serves(&f.b.name), Err(NotServed::OwnerUnknown));
    assert_eq!(s.serves(&f.a.name), Ok(()));
}

#[test]
fn losing_a_partition_stops_at_once_and_writes_nothing() {
    let f = Fixture::new();
    let mut s = f.server();
    connect_both(&mut s, &f);
    s.on_partition_acquired(f.pa(), Epoch(3), T0).unwrap();
    let (sent, _) = tick(&mut s, &f, T0 + 1_000);
    let (_, inst, _, _) = sent.first().cloned().unwrap();
    let inst = InstanceId(inst);
    let r = report(inst, "wa:1", wire::InstanceStatus::Running, (1 << 32) + 1);
    s.on_report(f.a.id, "wa:1", &r, T0 + 1_010);
    settle(&mut s, T0 + 1_010);
    let stored_before = f.repo.load().unwrap();

    at(&mut s, T0 + 1_500, T0 + 1_500);
    let b = ServerId::new("server-b:10086").unwrap();
    s.on_partition_lost(f.pa(), Some(b.clone()), T0 + 1_500);
    assert!(!s.has_effects(), "losing a partition did something");
    assert!(s.jobs.is_empty() && s.active.is_empty());
    assert!(s.held_partitions().is_empty());
    // Its armed triggers, checks and the worker's reports do nothing from now on.
    for t in [2_000, 3_000, 12_000, 60_000] {
        let (sent, wrote) = tick(&mut s, &f, T0 + t);
        assert!(sent.is_empty() && !wrote, "acted at {t}: {sent:?}");
    }
    let r = report(inst, "wa:1", wire::InstanceStatus::Succeed, (1 << 32) + 2);
    s.on_report(f.a.id, "wa:1", &r, T0 + 60_010);
    let (sent, wrote) = settle(&mut s, T0 + 60_010);
    assert!(sent.is_empty() && !wrote);
    assert_eq!(f.repo.load().unwrap(), stored_before, "the store changed");
    // Commands are refused naming the new owner; so are its workers.
    let err = s
        .prepare_run(f.a.id, f.job_a, String::new(), 0, T0 + 60_020)
        .unwrap_err();
    assert!(err.message.contains("server-b:10086"), "{}", err.message);
    assert!(matches!(
        s.command_held(f.a.id, inst, InstanceAction::Stop, T0 + 60_020),
        Some(Err(_))
    ));
    assert_eq!(
        s.acting_for(f.a.id),
        Err(NotOwner {
            app: "a".into(),
            partition: Some(f.pa()),
            owner: Some(b.clone()),
        })
    );
    assert_eq!(
        s.serves("a"),
        Err(NotServed::OwnedBy("server-b:10086".into()))
    );
}

#[test]
fn taking_a_partition_over_picks_up_its_instances_and_asks_their_workers() {
    let f = Fixture::new();
    // Server 1 holds the partition at epoch 1 and dispatches a fire to wa:1.
    let mut s1 = f.server();
    connect_both(&mut s1, &f);
    s1.on_partition_acquired(f.pa(), Epoch(1), T0).unwrap();
    let (sent, _) = tick(&mut s1, &f, T0 + 1_000);
    let inst = InstanceId(sent.first().unwrap().1);
    // An API run held back 30 s, pending on disk.
    at(&mut s1, T0 + 1_100, T0 + 1_100);
    let (c, then) = s1
        .prepare_run(f.a.id, f.job_a, String::new(), 30_000, T0 + 1_100)
        .unwrap();
    let delayed = s1.created(c.wait(), then, T0 + 1_100).unwrap();
    settle(&mut s1, T0 + 1_100);
    // Server 1 is lost (paused past its lease); server 2 takes the partition at epoch 2.
    let mut s2 = f.server();
    at(&mut s2, T0 + 1_500, T0 + 1_500);
    s2.on_partition_acquired(f.pa(), Epoch(2), T0 + 1_500)
        .unwrap();
    assert_eq!(
        s2.active.get(&inst).map(|st| st.rec.status),
        Some(InstanceStatus::WaitingWorkerReceive)
    );
    assert_eq!(
        s2.active.get(&delayed).map(|st| st.rec.status),
        Some(InstanceStatus::WaitingDispatch)
    );
    assert!(s2.reconcile.contains_key(&(f.a.id, "wa:1".to_owned())));
    // The worker connects to server 2: it is asked about the instance it runs.
    s2.worker_connected(f.a.id, "wa:1", 1);
    let asked: Vec<_> = s2
        .take_effects()
        .into_iter()
        .filter_map(|e| match e {
            Effect::Query { worker, ids, .. } => Some((worker, ids)),
            _ => None,
        })
        .collect();
    assert_eq!(asked, vec![("wa:1".to_owned(), vec![inst])]);
    s2.on_query_answer(
        f.a.id,
        "wa:1",
        inst,
        recover::QueryAnswer::Status(InstanceStatus::Running, None),
        T0 + 1_600,
    );
    assert_eq!(
        s2.active.get(&inst).map(|st| st.rec.status),
        Some(InstanceStatus::Running)
    );
    // Server 2 schedules on, with its epoch: the job's next fires, the delayed run when due,
    // and a stop of the running instance.
    let mut later = Vec::new();
    for t in 2..=32 {
        later.extend(tick(&mut s2, &f, T0 + t * 1_000).0);
    }
    assert!(later.iter().any(|m| m.1 == delayed.0), "{later:?}");
    assert!(later.iter().all(|m| m.2 == 2), "{later:?}");
    at(&mut s2, T0 + 32_100, T0 + 32_100);
    let (c, stop, _) = s2
        .command_held(f.a.id, inst, InstanceAction::Stop, T0 + 32_100)
        .unwrap()
        .unwrap();
    c.wait().unwrap();
    s2.commanded(stop, T0 + 32_100);
    let (sent, _) = settle(&mut s2, T0 + 32_100);
    assert_eq!(sent, vec![("wa:1".to_owned(), inst.0, 2, false)]);
}

#[test]
fn a_partition_taken_again_fires_each_trigger_once() {
    let f = Fixture::new();
    let mut s = f.server();
    connect_both(&mut s, &f);
    s.on_partition_acquired(f.pa(), Epoch(1), T0).unwrap();
    assert_eq!(tick(&mut s, &f, T0 + 1_000).0.len(), 1);
    // Lost and taken again before the next trigger: the first holding's armed trigger is
    // still in the wheel, and must not fire a second run.
    at(&mut s, T0 + 1_200, T0 + 1_200);
    s.on_partition_lost(f.pa(), None, T0 + 1_200);
    at(&mut s, T0 + 1_300, T0 + 1_300);
    s.on_partition_acquired(f.pa(), Epoch(4), T0 + 1_300)
        .unwrap();
    let (sent, _) = tick(&mut s, &f, T0 + 2_000);
    let fires: Vec<_> = sent.iter().filter(|m| m.3).collect();
    assert_eq!(fires.len(), 1, "{sent:?}");
    assert_eq!(fires[0].2, 4);
}

#[test]
fn a_single_server_acts_for_every_app_with_epoch_zero() {
    let (mut core, app) = core();
    at(&mut core, T0, T0);
    core.worker_connected(app, "w1:1", 1);
    super::tests::heartbeat(&mut core, "w1:1");
    let rec = JobRecord::new(app, "j", TimeExpressionType::Api, "", "noop");
    let saved = core.repo.create_job(rec, None, T0).unwrap().wait().unwrap();
    let job = core.job_created(saved, "a", None).unwrap();
    // Partition inputs mean nothing to it.
    core.on_partition_acquired(partition_of("a"), Epoch(9), T0)
        .unwrap();
    core.on_partition_lost(partition_of("a"), None, T0);
    assert!(core.held_partitions().is_empty());
    assert_eq!(core.serves("any-app"), Ok(()));
    let (c, then) = core.prepare_run(app, job, String::new(), 0, T0).unwrap();
    core.created(c.wait(), then, T0).unwrap();
    let (sent, _) = settle(&mut core, T0);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].2, 0);
}

#[test]
fn acquiring_a_partition_leaves_the_other_held_partitions_jobs_alone() {
    let f = Fixture::new();
    let rec = JobRecord::new(f.b.id, "fd", TimeExpressionType::FixedDelay, "1000", "noop");
    let fd = f
        .repo
        .create_job(rec, Some(T0 + 1_000), T0)
        .unwrap()
        .wait()
        .unwrap()
        .id;
    let mut s = f.server();
    connect_both(&mut s, &f);
    s.on_partition_acquired(partition_of(&f.b.name), Epoch(1), T0)
        .unwrap();
    let (sent, _) = tick(&mut s, &f, T0 + 1_000);
    let fd_runs = |s: &Core| s.active.values().filter(|st| st.rec.job_id == fd).count();
    assert_eq!(fd_runs(&s), 1, "{sent:?}");
    // The FIXED_DELAY run is going: no next trigger until it ends. Taking another partition
    // must not re-arm it as if it had been idle.
    at(&mut s, T0 + 1_100, T0 + 1_100);
    s.on_partition_acquired(f.pa(), Epoch(1), T0 + 1_100)
        .unwrap();
    settle(&mut s, T0 + 1_100);
    assert_eq!(f.repo.trigger(fd).and_then(|t| t.next_trigger), None);
    for t in [2_100, 3_100] {
        tick(&mut s, &f, T0 + t);
    }
    assert_eq!(fd_runs(&s), 1, "a second FIXED_DELAY run started");
}

#[test]
fn a_server_that_does_not_act_for_the_app_refuses_deletions_as_not_its_own() {
    let f = Fixture::new();
    let mut s = f.server();
    let mut done = InstanceRecord::new(f.job_a, f.a.id, "", T0);
    done.fail("x", T0).unwrap();
    let done = f.repo.create_instance(done, None).unwrap().wait().unwrap();
    // Not held: refused as unavailable (503), naming no owner yet, and nothing marked.
    let err = s.delete_instance_begin(f.a.id, done.id).unwrap_err();
    assert_eq!(err.code, crate::api::ErrorCode::Unavailable, "{err:?}");
    let err = s
        .delete_wf_instance_begin(f.a.id, WorkflowInstanceId(1))
        .unwrap_err();
    assert_eq!(err.code, crate::api::ErrorCode::Unavailable, "{err:?}");
    assert!(s.deleting.is_empty() && s.wf_deleting.is_empty());
    // Held: the finished instance may go; an unknown workflow instance is not found.
    s.on_partition_acquired(f.pa(), Epoch(1), T0).unwrap();
    s.delete_instance_begin(f.a.id, done.id).unwrap();
    assert!(s.deleting.contains(&done.id));
    s.delete_instance_end(done.id);
    let err = s
        .delete_wf_instance_begin(f.a.id, WorkflowInstanceId(1))
        .unwrap_err();
    assert_eq!(err.code, crate::api::ErrorCode::NotFound, "{err:?}");
    // Another app of a partition not held: refused as not its own before anything is read.
    let err = s.delete_instance_begin(f.b.id, done.id).unwrap_err();
    assert_eq!(err.code, crate::api::ErrorCode::Unavailable, "{err:?}");
}

#[test]
fn refusals_name_the_preferred_owner_of_the_membership_view_by_its_worker_address() {
    use super::partitions::LiveServer;
    use crate::cluster::preferred_owner;

    let f = Fixture::new();
    let mut s = f.server();
    let pb = partition_of(&f.b.name);
    let ids: Vec<ServerId> = ["s-1", "s-2", "s-3"]
        .iter()
        .map(|i| ServerId::new(i).unwrap())
        .collect();
    let address = |id: &ServerId| format!("10.0.0.{}:10086", &id.as_str()[2..]);
    let view = |ids: &[ServerId]| -> Vec<LiveServer> {
        ids.iter()
            .map(|id| LiveServer {
                id: id.clone(),
                worker_address: Some(address(id)),
            })
            .collect()
    };
    s.set_live_servers(view(&ids));
    let owner = preferred_owner(pb, &ids).unwrap().clone();
    assert_eq!(
        s.serves(&f.b.name),
        Err(NotServed::OwnedBy(address(&owner)))
    );
    // The API's refusal names it by its id.
    assert_eq!(s.acting_for(f.b.id).unwrap_err().owner, Some(owner.clone()));

    // The owner leaves the view: the refusal names the server that takes the app over.
    let rest: Vec<ServerId> = ids.iter().filter(|i| **i != owner).cloned().collect();
    s.set_live_servers(view(&rest));
    let next = preferred_owner(pb, &rest).unwrap().clone();
    assert_ne!(next, owner);
    assert_eq!(s.serves(&f.b.name), Err(NotServed::OwnedBy(address(&next))));

    // A partition this server lost: the view's preferred owner, not the last holder told.
    s.on_partition_acquired(f.pa(), Epoch(1), T0).unwrap();
    assert_eq!(s.serves(&f.a.name), Ok(()));
    let told = ServerId::new("s-9").unwrap();
    s.on_partition_lost(f.pa(), Some(told), T0 + 1);
    let pa_owner = preferred_owner(f.pa(), &rest).unwrap();
    assert_eq!(
        s.serves(&f.a.name),
        Err(NotServed::OwnedBy(address(pa_owner)))
    );

    // A server that announced no address is named by its id.
    s.set_live_servers(vec![LiveServer {
        id: next.clone(),
        worker_address: None,
    }]);
    assert_eq!(
        s.serves(&f.b.name),
        Err(NotServed::OwnedBy(next.to_string()))
    );
}

#[test]
fn a_run_created_already_dispatched_is_a_hand_over_under_way_until_its_creation_comes_back() {
    let f = Fixture::new();
    let mut s = f.server();
    connect_both(&mut s, &f);
    at(&mut s, T0 + 100, T0 + 100);
    s.on_partition_acquired(f.pa(), Epoch(5), T0 + 100).unwrap();
    tick(&mut s, &f, T0 + 100);
    assert!(!s.hand_overs_under_way(f.pa()));

    // An API run finds its worker at once: it is written WAITING_WORKER_RECEIVE on that
    // worker, and its ScheduleJob goes out when the write is acknowledged. Until then a stop
    // must wait for it, or the next owner finds it recorded on a worker that never heard of
    // it.
    let (c, then) = s
        .prepare_run(f.a.id, f.job_a, String::new(), 0, T0 + 200)
        .unwrap();
    assert!(matches!(then, AfterCreate::Dispatched(_)), "{then:?}");
    assert!(s.hand_overs_under_way(f.pa()));
    let other = partition_of(&f.b.name);
    assert!(
        !s.hand_overs_under_way(other),
        "another partition waits too"
    );
    s.created(c.wait(), then, T0 + 200);
    assert!(!s.hand_overs_under_way(f.pa()));
    let (sent, _) = settle(&mut s, T0 + 200);
    assert!(
        sent.iter()
            .any(|(w, _, epoch, schedule)| w == "wa:1" && *epoch == 5 && *schedule),
        "{sent:?}"
    );

    // A creation that fails, or comes back after the partition was lost, is no longer
    // under way either.
    let (c, then) = s
        .prepare_run(f.a.id, f.job_a, String::new(), 0, T0 + 300)
        .unwrap();
    assert!(s.hand_overs_under_way(f.pa()));
    drop(c);
    s.create_failed(then);
    assert!(!s.hand_overs_under_way(f.pa()));
    let (c, then) = s
        .prepare_run(f.a.id, f.job_a, String::new(), 0, T0 + 400)
        .unwrap();
    assert!(matches!(then, AfterCreate::Dispatched(_)), "{then:?}");
    s.on_partition_lost(f.pa(), None, T0 + 400);
    s.created(c.wait(), then, T0 + 400);
    assert!(s.creating_dispatched.is_empty());
}
