//! Workflow backfill and logical trigger times in the core, on the virtual clock: what a
//! backfill lists and creates, and the trigger time and key each node's job instance gets.

use ferrojob_transport::message::{self as wire, ScheduleJob};

use super::*;
use crate::server::core::tests::{at, heartbeat, put_calendar, report, with_job, T0};
use crate::server::core::{Awaited, Effect, Outgoing};

const HOUR: EpochMs = 3_600_000;
const DAY: EpochMs = 24 * HOUR;

/// Like `settle` in the core's tests, keeping the whole ScheduleJobs sent.
fn settle(core: &mut Core, now: EpochMs) -> Vec<ScheduleJob> {
    let mut sent = Vec::new();
    loop {
        let effects = core.take_effects();
        if effects.is_empty() {
            return sent;
        }
        for e in effects {
            match e {
                Effect::Await(Awaited::Write(c, then)) => {
                    let ok = c.wait().is_ok();
                    core.resume(then, ok, now);
                }
                Effect::Await(Awaited::Created(c, then)) => {
                    core.created(c.wait(), then, now);
                }
                Effect::Await(Awaited::Detached(c)) => {
                    let _ = c.wait();
                }
                Effect::Send {
                    msg: Outgoing::Schedule { msg, .. },
                    ..
                } => sent.push(*msg),
                _ => {}
            }
        }
    }
}

/// A core with worker `w1:1`, an API job and workflow `def` (JSON, its nodes running that
/// job as `"job_id": 0`), created and scheduled at `T0`.
fn with_workflow(def: serde_json::Value) -> (Core, AppId, WorkflowId) {
    with_workflow_job(def, |_| {})
}

/// [`with_workflow`] whose job `job` shapes.
fn with_workflow_job(
    def: serde_json::Value,
    job: impl FnOnce(&mut crate::server::JobRecord),
) -> (Core, AppId, WorkflowId) {
    let (mut core, app, job) = with_job(job);
    let text = def
        .to_string()
        .replace("\"job_id\":0", &format!("\"job_id\":{}", job.0));
    let def: crate::workflow::WorkflowDef = serde_json::from_str(&text).unwrap();
    let dag = def.validate(|j| j == job, |_| false).unwrap();
    let next = initial_next(&dag, T0);
    let rec = core
        .repo
        .create_workflow(app, dag.def(), next, T0)
        .unwrap()
        .wait()
        .unwrap();
    let id = rec.id;
    core.workflow_created(rec, dag, next);
    (core, app, id)
}

/// Daily at 02:00 UTC: two JOB nodes, 1 then 2.
fn daily(extra: serde_json::Value) -> serde_json::Value {
    let mut def = serde_json::json!({
        "name": "nightly", "time_expression_type": "CRON", "time_expression": "0 0 2 * * ?",
        "nodes": [{"id": 1, "job_id": 0}, {"id": 2, "job_id": 0}],
        "edges": [{"from": 1, "to": 2}],
    });
    if let (Some(d), Some(e)) = (def.as_object_mut(), extra.as_object()) {
        d.extend(e.clone());
    }
    def
}

/// The worker reports SUCCEED for the attempt `msg` dispatched.
fn succeed(core: &mut Core, app: AppId, msg: &ScheduleJob, now: EpochMs) {
    at(core, now, now);
    heartbeat(core, "w1:1");
    let from = msg
        .all_worker_addresses
        .first()
        .cloned()
        .unwrap_or_default();
    let r = report(
        InstanceId(msg.instance_id),
        &from,
        wire::InstanceStatus::Succeed,
        msg.report_seq_base + 1,
    );
    core.on_report(app, &from, &r, now);
}

#[test]
fn backfill_times_list_the_range_with_its_excluded_dates_by_table() {
    let (mut core, app, wf) = with_workflow(daily(serde_json::json!({"calendars": ["fr"]})));
    put_calendar(&mut core, app, "fr", "UTC", &["2026-01-02"]);
    let two = 2 * HOUR;
    let fr = || Some("fr".to_owned());
    // (from, to) as offsets from T0 (2026-01-01T00:00Z) → (offset, excluded by).
    type Listed = [(EpochMs, Option<String>)];
    let table: &[(EpochMs, EpochMs, &Listed)] = &[
        (0, DAY, &[(two, None)]),
        (
            0,
            3 * DAY,
            &[(two, None), (DAY + two, fr()), (2 * DAY + two, None)],
        ),
        // `from` inclusive, `to` exclusive.
        (two, DAY + two, &[(two, None)]),
        (two + 1, DAY + two, &[]),
    ];
    for (from, to, want) in table {
        let got = core.wf_backfill_times(app, wf, T0 + from, T0 + to).unwrap();
        let got: Vec<_> = got.into_iter().map(|(t, c)| (t - T0, c)).collect();
        assert_eq!(got, want.to_vec(), "[{from}, {to})");
    }
    let refused = |core: &Core, app: AppId, wf: WorkflowId, from: EpochMs, to: EpochMs| {
        core.wf_backfill_times(app, wf, T0 + from, T0 + to)
            .map(drop)
            .unwrap_err()
            .code
    };
    use crate::api::ErrorCode::{InvalidArgument, NotFound};
    assert_eq!(
        refused(&core, app, wf, DAY, DAY),
        InvalidArgument,
        "empty range"
    );
    assert_eq!(
        refused(&core, app, wf, 0, 1001 * DAY),
        InvalidArgument,
        "over the cap"
    );
    assert_eq!(
        refused(&core, AppId(app.0 + 1), wf, 0, DAY),
        NotFound,
        "another app's"
    );
    assert_eq!(refused(&core, app, WorkflowId(wf.0 + 9), 0, DAY), NotFound);
    let (core, app, api_wf) = with_workflow(serde_json::json!({
        "name": "by hand", "time_expression_type": "API", "nodes": [{"id": 1, "job_id": 0}],
    }));
    assert_eq!(
        refused(&core, app, api_wf, 0, DAY),
        InvalidArgument,
        "no trigger times"
    );
}

#[test]
fn a_backfill_run_stands_for_its_time_and_hands_it_to_every_node() {
    let (mut core, app, wf) = with_workflow(daily(serde_json::json!({"max_instances": 1})));
    let now = T0 + 10 * DAY;
    let past = T0 + 2 * HOUR;
    at(&mut core, now, now);
    heartbeat(&mut core, "w1:1");
    let (wfi, t) = core.wf_prepare_backfill_run(app, wf, past, now).unwrap();
    core.emit_transition(Some(t));
    let sent = settle(&mut core, now);
    assert_eq!(core.repo.get_wf_instance(wfi).unwrap().trigger_time, past);
    assert_eq!(core.repo.get_wf_instance(wfi).unwrap().run, 0);
    // Node 1's job instance: the workflow's time, its own status clock.
    let [first] = &sent[..] else {
        panic!("{sent:?}")
    };
    assert_eq!(first.trigger_time_ms, past);
    let key = format!("workflow-instance-{}-node-1-attempt-1", wfi.0);
    assert_eq!(first.trigger_key, key);
    let rec = core
        .repo
        .get_instance(InstanceId(first.instance_id))
        .unwrap();
    assert_eq!((rec.trigger_time, rec.status_time), (past, now));
    // max_instances 1: a second run for another time is refused while it runs.
    let busy = core.wf_prepare_backfill_run(app, wf, past + DAY, now);
    assert_eq!(
        busy.map(|(id, _)| id).unwrap_err().code,
        crate::api::ErrorCode::Conflict
    );
    // Node 2, released an hour later, carries the same time.
    let later = now + HOUR;
    succeed(&mut core, app, first, later);
    let sent = settle(&mut core, later);
    let [second] = &sent[..] else {
        panic!("{sent:?}")
    };
    assert_eq!(second.trigger_time_ms, past);
    assert_eq!(
        second.trigger_key,
        format!("workflow-instance-{}-node-2-attempt-1", wfi.0)
    );
    let rec = core
        .repo
        .get_instance(InstanceId(second.instance_id))
        .unwrap();
    assert_eq!((rec.trigger_time, rec.status_time), (past, later));
}

#[test]
fn a_scheduled_fire_stands_for_its_trigger_not_the_late_moment_it_ran() {
    let (mut core, _, wf) = with_workflow(daily(serde_json::json!({"max_instances": 2})));
    let due = T0 + 2 * HOUR;
    // One second late, within the misfire threshold: fired once, for its trigger.
    let now = due + 1_000;
    at(&mut core, now, now);
    heartbeat(&mut core, "w1:1");
    core.on_timers(now);
    let sent = settle(&mut core, now);
    let [first] = &sent[..] else {
        panic!("{sent:?}")
    };
    let wfi = WorkflowInstanceId(first.workflow_instance_id.unwrap());
    let rec = core.repo.get_wf_instance(wfi).unwrap();
    assert_eq!((rec.trigger_time, rec.run), (due, 1));
    assert_eq!(first.trigger_time_ms, due);
    assert_eq!(
        first.trigger_key,
        format!("workflow-{}-at-{due}-node-1-attempt-1", wf.0)
    );
    // An API run stands for the moment it was asked for.
    let asked = now + 5;
    at(&mut core, asked, asked);
    let (run, t) = core
        .wf_create_instance(wf, serde_json::Map::new(), None, None, 0, asked)
        .unwrap();
    core.emit_transition(Some(t));
    settle(&mut core, asked);
    assert_eq!(core.repo.get_wf_instance(run).unwrap().trigger_time, asked);
}

/// Stops the one run in `sent` at `when` (a final write of its own, where a job's alarms are
/// evaluated) and answers how many alarms the core has raised.
fn alarms_after_stopping(core: &mut Core, app: AppId, sent: &[ScheduleJob], when: EpochMs) -> u64 {
    let [run] = sent else { panic!("{sent:?}") };
    let stopped = core.command_held(
        app,
        InstanceId(run.instance_id),
        crate::api::InstanceAction::Stop,
        when,
    );
    assert!(matches!(stopped, Some(Ok(_))), "{stopped:?}");
    core.metrics
        .alarms_raised
        .load(std::sync::atomic::Ordering::Relaxed)
}

#[test]
fn a_nodes_late_start_counts_from_its_creation_not_its_workflows_trigger_time() {
    let (mut core, app, wf) = with_workflow_job(daily(serde_json::json!({})), |j| {
        j.alarm.late_start_ms = Some(60_000);
    });
    // A backfill run ten days after the time it stands for: its node starts at once.
    let now = T0 + 10 * DAY;
    at(&mut core, now, now);
    heartbeat(&mut core, "w1:1");
    let (_, t) = core
        .wf_prepare_backfill_run(app, wf, T0 + 2 * HOUR, now)
        .unwrap();
    core.emit_transition(Some(t));
    let sent = settle(&mut core, now);
    assert_eq!(
        alarms_after_stopping(&mut core, app, &sent, now + 1_000),
        0,
        "a node started at once is not late"
    );
}

#[test]
fn a_job_backfill_runs_late_start_counts_from_its_creation_not_its_trigger_time() {
    let (mut core, app, job) = with_job(|j| j.alarm.late_start_ms = Some(60_000));
    // A backfill run for a time ten days back, dispatched at once.
    let now = T0 + 10 * DAY;
    at(&mut core, now, now);
    heartbeat(&mut core, "w1:1");
    let (created, then) = core
        .prepare_backfill_run(app, job, T0 + 2 * HOUR, now)
        .unwrap();
    core.created(created.wait(), then, now);
    let sent = settle(&mut core, now);
    assert_eq!(
        alarms_after_stopping(&mut core, app, &sent, now + 1_000),
        0,
        "a backfill run started at once is not late"
    );
    assert!(core.backfill_created.is_empty());
}
