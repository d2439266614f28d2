//! Table tests of the instance lifecycle: legal and illegal transitions, and stale, foreign and
//! duplicate reports.

use ferrojob::ids::{AppId, JobId};
use ferrojob::model::InstanceStatus;
use ferrojob::server::*;
use InstanceStatus::*;

const W: &str = "10.0.0.1:7000";
/// Attempt 1's reports are numbered from `B + 1`.
const B: u64 = 1 << 32;

/// An instance in `status`, dispatched to `W` unless still WAITING_DISPATCH.
fn at(status: InstanceStatus) -> InstanceRecord {
    let mut i = InstanceRecord::new(JobId(1), AppId(1), "", 100);
    if status == WaitingDispatch {
        return i;
    }
    i.dispatch(W, 110).unwrap();
    match status {
        WaitingWorkerReceive => {}
        Running | Succeed | Failed | Stopped => {
            i.apply_report(B + 1, W, status, None, 120).unwrap();
        }
        Canceled => {
            let mut c = InstanceRecord::new(JobId(1), AppId(1), "", 100);
            c.cancel(105).unwrap();
            return c;
        }
        _ => unreachable!(),
    }
    assert_eq!(i.status, status);
    i
}

type Action = fn(&mut InstanceRecord) -> Result<(), RepoError>;

/// `action` from each status: `Some(to)` where legal, `None` where refused.
fn check(name: &str, action: Action, table: [(InstanceStatus, Option<InstanceStatus>); 7]) {
    for (from, to) in table {
        let mut i = at(from);
        let before = i.clone();
        match (action(&mut i), to) {
            (Ok(()), Some(to)) => {
                assert_eq!(i.status, to, "{name} from {from:?}");
                assert_eq!(i.status_time, 500, "{name} from {from:?}");
                assert_eq!(i.finished_time.is_some(), to.is_final(), "{name} {from:?}");
            }
            (Err(RepoError::IllegalTransition { from: f, .. }), None) => {
                assert_eq!(f, from);
                assert_eq!(i, before, "{name} from {from:?} changed the record");
            }
            (res, to) => panic!("{name} from {from:?}: got {res:?}, expected {to:?}"),
        }
    }
}

#[test]
fn legal_and_illegal_transitions() {
    check(
        "dispatch",
        |i| i.dispatch("w2", 500),
        [
            (WaitingDispatch, Some(WaitingWorkerReceive)),
            (WaitingWorkerReceive, None),
            (Running, None),
            (Succeed, None),
            (Failed, None),
            (Canceled, None),
            (Stopped, None),
        ],
    );
    check(
        "cancel",
        |i| i.cancel(500),
        [
            (WaitingDispatch, Some(Canceled)),
            (WaitingWorkerReceive, None),
            (Running, None),
            (Succeed, None),
            (Failed, None),
            (Canceled, None),
            (Stopped, None),
        ],
    );
    check(
        "stop",
        |i| i.stop(500),
        [
            (WaitingDispatch, None),
            (WaitingWorkerReceive, Some(Stopped)),
            (Running, Some(Stopped)),
            (Succeed, None),
            (Failed, None),
            (Canceled, None),
            (Stopped, None),
        ],
    );
    check(
        "fail",
        |i| i.fail("no worker", 500),
        [
            (WaitingDispatch, Some(Failed)),
            (WaitingWorkerReceive, Some(Failed)),
            (Running, Some(Failed)),
            (Succeed, None),
            (Failed, None),
            (Canceled, None),
            (Stopped, None),
        ],
    );
    check(
        "requeue",
        |i| i.requeue(500),
        [
            (WaitingDispatch, None),
            (WaitingWorkerReceive, Some(WaitingDispatch)),
            (Running, Some(WaitingDispatch)),
            (Succeed, None),
            (Failed, None),
            (Canceled, None),
            (Stopped, None),
        ],
    );
    check(
        "retry",
        |i| i.retry(500),
        [
            (WaitingDispatch, None),
            (WaitingWorkerReceive, None),
            (Running, None),
            (Succeed, Some(WaitingDispatch)),
            (Failed, Some(WaitingDispatch)),
            (Canceled, Some(WaitingDispatch)),
            (Stopped, Some(WaitingDispatch)),
        ],
    );
}

#[test]
fn reports_from_each_status() {
    // (from, reported, outcome or None for an illegal report, status after)
    let table: &[(
        InstanceStatus,
        InstanceStatus,
        Option<ReportOutcome>,
        InstanceStatus,
    )] = &[
        (
            WaitingWorkerReceive,
            Running,
            Some(ReportOutcome::Applied),
            Running,
        ),
        (
            WaitingWorkerReceive,
            Succeed,
            Some(ReportOutcome::Applied),
            Succeed,
        ),
        (Running, Running, Some(ReportOutcome::Applied), Running),
        (Running, Failed, Some(ReportOutcome::Applied), Failed),
        (Running, Stopped, Some(ReportOutcome::Applied), Stopped),
        (Running, WaitingDispatch, None, Running),
        (Running, Canceled, None, Running),
        (Running, WaitingWorkerReceive, None, Running),
        // Not dispatched: no worker owns it, every report is foreign.
        (
            WaitingDispatch,
            Running,
            Some(ReportOutcome::Foreign),
            WaitingDispatch,
        ),
        (Succeed, Failed, Some(ReportOutcome::Finished), Succeed),
        (Stopped, Succeed, Some(ReportOutcome::Finished), Stopped),
        (Canceled, Running, Some(ReportOutcome::Finished), Canceled),
    ];
    for &(from, reported, outcome, after) in table {
        let mut i = at(from);
        let before = i.clone();
        let res = i.apply_report(B + 5, W, reported, Some("r"), 900);
        match outcome {
            Some(o) => assert_eq!(res.unwrap(), o, "{reported:?} from {from:?}"),
            None => assert!(
                matches!(res, Err(RepoError::IllegalTransition { .. })),
                "{reported:?} from {from:?}: {res:?}"
            ),
        }
        assert_eq!(i.status, after, "{reported:?} from {from:?}");
        if outcome != Some(ReportOutcome::Applied) {
            assert_eq!(i, before, "{reported:?} from {from:?} changed the record");
        } else {
            assert_eq!((i.report_seq, i.last_report_time), (B + 5, Some(900)));
            assert_eq!(i.result.as_deref(), Some("r"));
        }
    }
}

#[test]
fn stale_foreign_and_duplicate_reports_change_nothing() {
    let mut i = at(Running); // report_seq B + 1
    assert_eq!(
        i.apply_report(B + 3, W, Running, None, 200).unwrap(),
        ReportOutcome::Applied
    );
    let snapshot = i.clone();
    // Stale: below the last applied sequence number.
    assert_eq!(
        i.apply_report(B + 2, W, Succeed, None, 210).unwrap(),
        ReportOutcome::Stale
    );
    // Duplicate: the same report again.
    assert_eq!(
        i.apply_report(B + 3, W, Running, None, 220).unwrap(),
        ReportOutcome::Duplicate
    );
    // Foreign: another worker (split brain), even with a newer sequence number.
    assert_eq!(
        i.apply_report(B + 9, "10.0.0.2:7000", Failed, None, 230)
            .unwrap(),
        ReportOutcome::Foreign
    );
    assert_eq!(i, snapshot);
    // A final report delivered twice makes one transition.
    assert_eq!(
        i.apply_report(B + 4, W, Succeed, Some("done"), 240)
            .unwrap(),
        ReportOutcome::Applied
    );
    let done = i.clone();
    assert_eq!(
        i.apply_report(B + 4, W, Succeed, Some("done"), 250)
            .unwrap(),
        ReportOutcome::Finished
    );
    assert_eq!(i, done);
    assert_eq!(i.finished_time, Some(240));
}

#[test]
fn requeue_forgets_the_worker_and_the_next_attempt_counts_from_its_own_base() {
    let mut i = at(Running);
    i.apply_report(B + 7, W, Running, None, 200).unwrap();
    i.requeue(300).unwrap();
    // The old worker's late reports are foreign now.
    assert_eq!(
        i.apply_report(B + 8, W, Succeed, None, 310).unwrap(),
        ReportOutcome::Foreign
    );
    i.dispatch(W, 320).unwrap();
    assert_eq!(i.running_times, 2);
    assert_eq!(i.report_seq, attempt_base(2));
    // The same worker picked again: attempt 1's late report is stale for attempt 2.
    assert_eq!(
        i.apply_report(B + 8, W, Succeed, None, 330).unwrap(),
        ReportOutcome::Stale
    );
    assert_eq!(
        i.apply_report(attempt_base(2) + 1, W, Succeed, None, 340)
            .unwrap(),
        ReportOutcome::Applied
    );
}

/// One report numbered far beyond its attempt used to become the instance's `report_seq`, so
/// every report of every later attempt was stale and the instance could never finish.
#[test]
fn a_report_beyond_its_attempt_is_refused_and_later_attempts_still_report() {
    let mut i = at(Running);
    let before = i.clone();
    for seq in [attempt_base(2), attempt_base(2) + 1, u64::MAX] {
        assert_eq!(
            i.apply_report(seq, W, Failed, None, 200).unwrap(),
            ReportOutcome::OutOfRange,
            "seq {seq}"
        );
        assert_eq!(i, before);
    }
    i.apply_report(B + 2, W, Failed, Some("boom"), 210).unwrap();
    i.retry(220).unwrap();
    i.dispatch(W, 230).unwrap();
    assert_eq!(
        i.apply_report(attempt_base(2) + 1, W, Succeed, None, 240)
            .unwrap(),
        ReportOutcome::Applied
    );
    assert_eq!(i.status, Succeed);
}

#[test]
fn results_are_capped() {
    let mut i = at(Running);
    let big = "x".repeat(MAX_RESULT_LEN * 2);
    i.apply_report(B + 2, W, Succeed, Some(&big), 200).unwrap();
    let r = i.result.unwrap();
    assert!(r.len() <= MAX_RESULT_LEN + 32);
    assert!(r.ends_with(&format!("...[{} bytes truncated]", MAX_RESULT_LEN)));
    let mut f = at(Running);
    f.fail(&"é".repeat(MAX_RESULT_LEN), 200).unwrap();
    assert!(f.result.unwrap().len() <= MAX_RESULT_LEN + 32);
}

/// Reconciliation answers go through the lifecycle too: they confirm or end a dispatched
/// instance and are refused from any other status.
#[test]
fn worker_answers_confirm_or_end_a_dispatched_instance() {
    let answers: [(&str, Action, InstanceStatus); 3] = [
        (
            "answer SUCCEED",
            |i| i.apply_answer(Succeed, Some("r"), 500),
            Succeed,
        ),
        (
            "answer FAILED",
            |i| i.apply_answer(Failed, Some("r"), 500),
            Failed,
        ),
        (
            "answer STOPPED",
            |i| i.apply_answer(Stopped, Some("r"), 500),
            Stopped,
        ),
    ];
    for (name, action, end) in answers {
        check(
            name,
            action,
            [
                (WaitingDispatch, None),
                (WaitingWorkerReceive, Some(end)),
                (Running, Some(end)),
                (Succeed, None),
                (Failed, None),
                (Canceled, None),
                (Stopped, None),
            ],
        );
    }
    let mut i = at(WaitingWorkerReceive);
    i.apply_answer(Running, None, 500).unwrap();
    assert_eq!((i.status, i.status_time), (Running, 500));
    // RUNNING confirmed again changes nothing.
    let before = i.clone();
    i.apply_answer(Running, None, 600).unwrap();
    assert_eq!(i, before);
    for from in [WaitingDispatch, Succeed, Failed, Canceled, Stopped] {
        assert!(
            at(from).apply_answer(Running, None, 600).is_err(),
            "{from:?}"
        );
    }
    // A status workers never hold is refused.
    assert!(at(Running)
        .apply_answer(WaitingDispatch, None, 600)
        .is_err());
}
