//! Rule tables on virtual time: each case is a sequence of events and polls, and the alarm
//! ids expected from each step (an empty list = nothing may fire).

use super::*;

/// One step of a case.
#[derive(Clone, Copy, Debug)]
enum Ev {
    /// `(now, instance, trigger)`.
    Dispatch(EpochMs, u64, Option<EpochMs>),
    /// `(now, instance, outcome)`.
    Finish(EpochMs, u64, RunOutcome),
    /// `now`.
    Poll(EpochMs),
}

use Ev::{Dispatch, Finish, Poll};
use RunOutcome::{Failed, Neutral, Succeeded};

/// Runs `steps` for job 1 with `rules` from time 0 and checks each step's alarm ids.
fn check(rules: AlarmRules, steps: &[(Ev, &[&str])]) {
    let mut alarms = JobAlarms::new(JobId(1), rules, 0);
    for (i, (ev, expected)) in steps.iter().enumerate() {
        let got = match *ev {
            Dispatch(now, id, trigger) => alarms.on_dispatched(now, InstanceId(id), trigger),
            Finish(now, id, outcome) => alarms.on_finished(now, InstanceId(id), outcome, None),
            Poll(now) => alarms.poll(now),
        };
        let ids: Vec<&str> = got.iter().map(|a| a.id.as_str()).collect();
        assert_eq!(&ids, expected, "step {i}: {ev:?}");
        for a in &got {
            assert_eq!(a.job_id, JobId(1));
            assert!(a.id.contains(a.kind.as_str()), "{a:?}");
        }
    }
}

fn failures(threshold: u32, window_ms: u64, silence_ms: u64) -> AlarmRules {
    AlarmRules {
        failures: Some(FailureRule {
            threshold,
            window_ms,
            silence_ms,
        }),
        ..AlarmRules::default()
    }
}

#[test]
fn no_rules_raise_nothing() {
    check(
        AlarmRules::default(),
        &[
            (Dispatch(0, 1, Some(-1_000_000)), &[]),
            (Finish(10, 1, Failed), &[]),
            (Finish(20, 2, Failed), &[]),
            (Poll(i64::MAX / 2), &[]),
        ],
    );
    assert!(AlarmRules::default().is_empty());
}

#[test]
fn failures_fire_at_the_threshold_within_the_window() {
    check(
        failures(3, 1000, 0),
        &[
            (Finish(100, 1, Failed), &[]),
            (Finish(200, 2, Failed), &[]),
            (Finish(300, 3, Failed), &["job-1-failures-3"]),
            // Still three within the window: fires again (no silence).
            (Finish(400, 4, Failed), &["job-1-failures-4"]),
        ],
    );
}

#[test]
fn failures_outside_the_window_do_not_count() {
    check(
        failures(2, 1000, 0),
        &[
            (Finish(0, 1, Failed), &[]),
            (Finish(1001, 2, Failed), &[]),
            // Exactly at the window's edge still counts.
            (Finish(2001, 3, Failed), &["job-1-failures-3"]),
        ],
    );
}

#[test]
fn a_window_of_zero_counts_every_failure() {
    check(
        failures(2, 0, 0),
        &[
            (Finish(0, 1, Failed), &[]),
            (Finish(1_000_000_000, 2, Failed), &["job-1-failures-2"]),
        ],
    );
}

#[test]
fn a_success_resets_the_failure_count() {
    check(
        failures(2, 0, 0),
        &[
            (Finish(0, 1, Failed), &[]),
            (Finish(10, 2, Succeeded), &[]),
            (Finish(20, 3, Failed), &[]),
            (Finish(30, 4, Neutral), &[]),
            (Finish(40, 5, Failed), &["job-1-failures-5"]),
        ],
    );
}

#[test]
fn the_silence_window_holds_back_repeats() {
    check(
        failures(1, 0, 1000),
        &[
            (Finish(0, 1, Failed), &["job-1-failures-1"]),
            (Finish(500, 2, Failed), &[]),
            (Finish(999, 3, Failed), &[]),
            (Finish(1000, 4, Failed), &["job-1-failures-4"]),
            (Finish(1500, 5, Failed), &[]),
        ],
    );
}

#[test]
fn late_start_fires_only_beyond_the_limit() {
    let rules = AlarmRules {
        late_start_ms: Some(100),
        ..AlarmRules::default()
    };
    check(
        rules,
        &[
            (Dispatch(1100, 1, Some(1000)), &[]),
            (Dispatch(1101, 2, Some(1000)), &["job-1-late_start-2"]),
            // An API run has no trigger time.
            (Dispatch(5000, 3, None), &[]),
        ],
    );
}

#[test]
fn overrun_fires_once_while_running_and_not_again_at_the_end() {
    let rules = AlarmRules {
        overrun_ms: Some(100),
        ..AlarmRules::default()
    };
    check(
        rules,
        &[
            (Dispatch(0, 1, None), &[]),
            (Dispatch(50, 2, None), &[]),
            (Poll(99), &[]),
            (Poll(100), &["job-1-overrun-1"]),
            (Poll(120), &[]),
            (Finish(130, 1, Succeeded), &[]),
            // Instance 2 ends over its limit before any poll saw it.
            (Finish(150, 2, Succeeded), &["job-1-overrun-2"]),
            (Poll(10_000), &[]),
        ],
    );
}

#[test]
fn a_run_that_ends_in_time_raises_no_overrun() {
    let rules = AlarmRules {
        overrun_ms: Some(100),
        ..AlarmRules::default()
    };
    check(
        rules,
        &[
            (Dispatch(0, 1, None), &[]),
            (Finish(99, 1, Failed), &[]),
            (Poll(1000), &[]),
        ],
    );
}

#[test]
fn the_dead_man_fires_once_per_deadline() {
    let rules = AlarmRules {
        dead_man_ms: Some(1000),
        ..AlarmRules::default()
    };
    check(
        rules,
        &[
            (Poll(999), &[]),
            (Poll(1000), &["job-1-dead_man-1000"]),
            (Poll(5000), &[]),
            (Finish(6000, 1, Failed), &[]),
            (Poll(6000), &[]),
            (Finish(6500, 2, Succeeded), &[]),
            (Poll(7499), &[]),
            (Poll(7500), &["job-1-dead_man-7500"]),
        ],
    );
}

#[test]
fn recovered_fires_once_after_an_alarm() {
    let rules = AlarmRules {
        recovered: true,
        ..failures(2, 0, 0)
    };
    check(
        rules,
        &[
            // No alarm yet: a success is no recovery.
            (Finish(0, 1, Failed), &[]),
            (Finish(10, 2, Succeeded), &[]),
            (Finish(20, 3, Failed), &[]),
            (Finish(30, 4, Failed), &["job-1-failures-4"]),
            (Finish(40, 5, Succeeded), &["job-1-recovered-5"]),
            (Finish(50, 6, Succeeded), &[]),
        ],
    );
}

#[test]
fn recovery_follows_the_dead_man_too() {
    let rules = AlarmRules {
        dead_man_ms: Some(100),
        recovered: true,
        ..AlarmRules::default()
    };
    check(
        rules,
        &[
            (Poll(100), &["job-1-dead_man-100"]),
            (Finish(150, 1, Succeeded), &["job-1-recovered-1"]),
        ],
    );
}

#[test]
fn without_the_recovered_rule_no_notice_is_sent() {
    check(
        failures(1, 0, 0),
        &[
            (Finish(0, 1, Failed), &["job-1-failures-1"]),
            (Finish(10, 2, Succeeded), &[]),
        ],
    );
}

#[test]
fn next_check_names_the_earliest_pending_deadline() {
    let rules = AlarmRules {
        overrun_ms: Some(100),
        dead_man_ms: Some(1000),
        ..AlarmRules::default()
    };
    let mut a = JobAlarms::new(JobId(1), rules, 0);
    assert_eq!(a.next_check(), Some(1000));
    let _ = a.on_dispatched(10, InstanceId(1), None);
    assert_eq!(a.next_check(), Some(110));
    assert_eq!(a.poll(110).len(), 1);
    assert_eq!(a.next_check(), Some(1000));
    assert_eq!(a.poll(1000).len(), 1);
    assert_eq!(a.next_check(), None);
    assert!(JobAlarms::new(JobId(1), AlarmRules::default(), 0)
        .next_check()
        .is_none());
}

#[test]
fn the_same_events_give_the_same_ids() {
    let run = || {
        let mut a = JobAlarms::new(JobId(9), failures(1, 0, 0), 0);
        a.on_finished(5, InstanceId(42), Failed, None)
    };
    assert_eq!(run(), run());
    assert_eq!(run()[0].id, "job-9-failures-42");
}

#[test]
fn tracked_runs_are_bounded() {
    let rules = AlarmRules {
        overrun_ms: Some(10),
        ..AlarmRules::default()
    };
    let mut a = JobAlarms::new(JobId(1), rules, 0);
    for i in 0..(MAX_TRACKED_RUNS as u64 + 10) {
        let _ = a.on_dispatched(0, InstanceId(i), None);
    }
    assert_eq!(a.poll(10).len(), MAX_TRACKED_RUNS);
}

#[test]
fn validation_names_the_field() {
    let bad = |r: AlarmRules| r.validate().unwrap_err().0;
    assert_eq!(bad(failures(0, 0, 0)), "alarm.failures.threshold");
    assert_eq!(
        bad(AlarmRules {
            overrun_ms: Some(0),
            ..AlarmRules::default()
        }),
        "alarm.overrun_ms"
    );
    assert_eq!(
        bad(AlarmRules {
            dead_man_ms: Some(u64::MAX),
            ..AlarmRules::default()
        }),
        "alarm.dead_man_ms"
    );
    assert_eq!(
        bad(AlarmRules {
            channels: vec![" ".into()],
            ..AlarmRules::default()
        }),
        "alarm.channels"
    );
    assert!(failures(3, 60_000, 600_000).validate().is_ok());
}

#[test]
fn rules_json_is_compact_and_strict() {
    let r: AlarmRules =
        serde_json::from_str(r#"{"failures":{"threshold":3},"channels":["ops"]}"#).unwrap();
    assert_eq!(r.failures.unwrap().window_ms, 0);
    assert_eq!(
        serde_json::to_string(&r).unwrap(),
        r#"{"failures":{"threshold":3,"window_ms":0,"silence_ms":0},"channels":["ops"]}"#
    );
    assert!(serde_json::from_str::<AlarmRules>(r#"{"failure":{}}"#).is_err());
    assert_eq!(serde_json::to_string(&AlarmRules::default()).unwrap(), "{}");
}
