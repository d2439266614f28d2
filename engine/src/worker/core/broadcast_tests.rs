//! BROADCAST on its TaskTracker, on virtual time: pre_process, one task per worker with its
//! retries (the local one holding a slot), then post_process or the default summary.

use ferrojob_transport::message::{ExecuteType, InstanceStatus};

use super::tests::{config, fail, job, ok, Harness, OWN};
use super::*;

#[test]
fn broadcast_runs_pre_then_every_task_with_retries_then_post() {
    let mut h = Harness::new(config());
    let mut j = job(1, 1);
    j.execute_type = ExecuteType::Broadcast;
    j.task_retry_num = 1;
    j.all_worker_addresses = vec![OWN.into(), "10.0.0.2:7000".into(), "10.0.0.3:7000".into()];
    h.schedule(j, ProcessorKind::Broadcast);
    let pre = h.runs();
    assert_eq!(pre.len(), 1);
    assert_eq!(pre[0].kind, RunKind::BroadcastPre);
    h.finish(pre[0].id, ok(""));
    let tasks = h.runs();
    let kinds: Vec<_> = tasks.iter().map(|r| r.kind.clone()).collect();
    assert_eq!(
        kinds,
        [
            RunKind::BroadcastTask {
                index: 0,
                address: OWN.into(),
                retry: 0,
                local: true
            },
            RunKind::BroadcastTask {
                index: 1,
                address: "10.0.0.2:7000".into(),
                retry: 0,
                local: false
            },
            RunKind::BroadcastTask {
                index: 2,
                address: "10.0.0.3:7000".into(),
                retry: 0,
                local: false
            },
        ]
    );
    assert_eq!(h.core.slots.used(1), 1, "only the local task takes a slot");
    h.finish(tasks[2].id, fail("unreachable"));
    let retry = h.runs();
    assert_eq!(
        retry[0].kind,
        RunKind::BroadcastTask {
            index: 2,
            address: "10.0.0.3:7000".into(),
            retry: 1,
            local: false
        }
    );
    h.finish(tasks[0].id, ok("a"));
    assert_eq!(h.core.slots.used(1), 0);
    h.finish(tasks[1].id, fail("b"));
    let retry1 = h.runs();
    assert_eq!(
        retry1[0].kind,
        RunKind::BroadcastTask {
            index: 1,
            address: "10.0.0.2:7000".into(),
            retry: 1,
            local: false
        }
    );
    h.finish(retry[0].id, ok("c"));
    h.finish(retry1[0].id, fail("b again"));
    let post = h.runs().pop().unwrap();
    let RunKind::BroadcastPost { results } = &post.kind else {
        panic!("not a post run: {post:?}");
    };
    let got: Vec<(&str, bool, &str)> = results
        .iter()
        .map(|r| (r.task_id.as_str(), r.success, r.message.as_str()))
        .collect();
    assert_eq!(
        got,
        [("0", true, "a"), ("1", false, "b again"), ("2", true, "c")]
    );
    h.finish(post.id, ok("post"));
    let last = h.reports().pop().unwrap();
    assert_eq!(
        (last.total_tasks, last.succeeded_tasks, last.failed_tasks),
        (3, 2, 1)
    );
    let logs = h
        .take_effects()
        .into_iter()
        .filter(|e| matches!(e, Effect::Log { .. }))
        .count();
    assert_eq!(logs, 2, "one warning per retried task attempt");
}

#[test]
fn broadcast_summary_when_the_processor_has_no_hooks() {
    let mut h = Harness::new(config());
    let mut j = job(1, 1);
    j.execute_type = ExecuteType::Broadcast;
    j.all_worker_addresses = vec![OWN.into(), "10.0.0.2:7000".into()];
    h.schedule(j, ProcessorKind::Basic);
    let tasks = h.runs();
    assert_eq!(tasks.len(), 2, "no pre_process");
    h.finish(tasks[1].id, fail("down"));
    h.finish(tasks[0].id, ok("fine"));
    assert!(h.runs().is_empty(), "no post_process");
    let last = h.reports().pop().unwrap();
    assert_eq!(last.status, InstanceStatus::Failed);
    assert_eq!(
        last.result.as_deref(),
        Some("1/2 tasks succeeded; failed: 1@10.0.0.2:7000: down")
    );
    assert_eq!(
        (last.total_tasks, last.succeeded_tasks, last.failed_tasks),
        (2, 1, 1)
    );
}

#[test]
fn broadcast_post_gets_the_results_in_task_order() {
    let mut h = Harness::new(config());
    let mut j = job(1, 1);
    j.execute_type = ExecuteType::Broadcast;
    j.all_worker_addresses = vec!["10.0.0.2:7000".into(), "10.0.0.3:7000".into()];
    h.schedule(j, ProcessorKind::Broadcast);
    let pre = h.runs().pop().unwrap();
    h.finish(pre.id, ok(""));
    let tasks = h.runs();
    h.finish(tasks[1].id, ok("second"));
    h.finish(tasks[0].id, ok("first"));
    let post = h.runs().pop().unwrap();
    let RunKind::BroadcastPost { results } = &post.kind else {
        panic!("not a post run: {post:?}");
    };
    let messages: Vec<&str> = results.iter().map(|r| r.message.as_str()).collect();
    assert_eq!(messages, ["first", "second"]);
    h.finish(post.id, ok("posted"));
    let last = h.reports().pop().unwrap();
    assert_eq!(last.result.as_deref(), Some("posted"));
}

#[test]
fn a_failed_pre_process_fails_the_instance_before_any_task() {
    let mut h = Harness::new(config());
    let mut j = job(1, 1);
    j.execute_type = ExecuteType::Broadcast;
    h.schedule(j, ProcessorKind::Broadcast);
    let pre = h.runs().pop().unwrap();
    h.finish(pre.id, fail("no"));
    assert!(h.runs().is_empty());
    let last = h.reports().pop().unwrap();
    assert_eq!(last.result.as_deref(), Some("pre_process failed: no"));
}
