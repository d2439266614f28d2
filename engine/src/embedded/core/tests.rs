//! The core's tests: schedules, misfires, limits and manual triggers driven on virtual time.

use super::super::job::JobSpec;
use super::super::processor::Processor;
use super::*;
use crate::ids::JobId;
use crate::time_expression::{Lifecycle, MisfirePolicy, TimeExpressionType};

const T0: EpochMs = 1_767_225_600_000; // 2026-01-01T00:00:00Z

fn core() -> Core {
    Core::new(
        T0,
        Arc::new(AtomicU64::new(1)),
        CoreConfig {
            misfire_threshold_ms: 1_000,
        },
    )
}

fn noop() -> Arc<dyn Processor> {
    Arc::new(|_ctx: super::super::RunContext| async {
        Ok::<_, super::super::BoxError>(String::new())
    })
}

fn def(id: u64, spec: JobSpec) -> Arc<JobDef> {
    Arc::new(JobDef::new(JobId(id), spec, noop()))
}

fn expr(kind: TimeExpressionType, e: &str) -> TimeExpression {
    TimeExpression::parse(kind, e, None).expect("valid expression")
}

/// Polls at `now` and returns (scheduled_at - T0, skipped?) of each fire.
fn poll(core: &mut Core, now: EpochMs) -> Vec<(i64, Option<SkipReason>)> {
    let mut out = Vec::new();
    assert!(!core.poll(now, &mut out, usize::MAX));
    out.into_iter()
        .map(|f| {
            if f.skip.is_none() {
                f.def.release(false);
            }
            (f.scheduled_at - T0, f.skip)
        })
        .collect()
}

#[test]
fn fixed_rate_fires_on_its_grid_without_drift() {
    let mut c = core();
    let d = def(
        1,
        JobSpec::new("r", expr(TimeExpressionType::FixedRate, "250")),
    );
    c.handle(T0, Command::Add(d));
    assert_eq!(c.next_wakeup(), Some(T0 + 250));
    assert!(poll(&mut c, T0 + 249).is_empty());
    assert_eq!(poll(&mut c, T0 + 250), [(250, None)]);
    // Polled late (within the threshold): still the grid times, each exactly once.
    assert_eq!(poll(&mut c, T0 + 760), [(500, None), (750, None)]);
    assert_eq!(c.next_wakeup(), Some(T0 + 1_000));
}

#[test]
fn fixed_delay_waits_for_completion() {
    let mut c = core();
    let d = def(
        1,
        JobSpec::new("d", expr(TimeExpressionType::FixedDelay, "100")),
    );
    c.handle(T0, Command::Add(Arc::clone(&d)));
    assert_eq!(poll(&mut c, T0 + 100), [(100, None)]);
    assert_eq!(
        c.next_wakeup(),
        None,
        "nothing armed while the run is in flight"
    );
    c.handle(
        T0 + 130,
        Command::Completed {
            def: d,
            finished_at: T0 + 130,
        },
    );
    assert_eq!(c.next_wakeup(), Some(T0 + 230));
    assert_eq!(poll(&mut c, T0 + 230), [(230, None)]);
}

#[test]
fn misfire_policies() {
    // Threshold 1 s, a 1 s rate, asleep for 10 s: the triggers at 1..8 s are late by more
    // than the threshold (missed); 9 s and 10 s are merely late and always run.
    let on_time = [(9_000, None), (10_000, None)];
    for (policy, missed_runs, dropped) in [
        (MisfirePolicy::FireOnce, vec![1_000], Some((2_000, 7))),
        (
            MisfirePolicy::FireAll,
            vec![1_000, 2_000, 3_000, 4_000, 5_000, 6_000, 7_000, 8_000],
            None,
        ),
        (MisfirePolicy::Skip, vec![], Some((1_000, 8))),
    ] {
        let mut expected: Vec<(i64, Option<u64>)> =
            missed_runs.into_iter().map(|at| (at, None)).collect();
        expected.extend(on_time);
        expected.extend(dropped.map(|(at, n)| (at, Some(n))));
        let mut c = core();
        let spec =
            JobSpec::new("m", expr(TimeExpressionType::FixedRate, "1000")).with_misfire(policy);
        c.handle(T0, Command::Add(def(1, spec)));
        // Asleep for 10 s: triggers at 1 s .. 8 s are missed by more than the threshold.
        let got: Vec<(i64, Option<u64>)> = poll(&mut c, T0 + 10_000)
            .into_iter()
            .map(|(at, skip)| {
                let missed = skip.map(|s| match s {
                    SkipReason::Misfired { missed } => missed,
                    other => panic!("unexpected skip {other:?}"),
                });
                (at, missed)
            })
            .collect();
        assert_eq!(got, expected, "{policy:?}");
        // Back on schedule after the catch-up: the next grid point after now.
        assert_eq!(c.next_wakeup(), Some(T0 + 11_000), "{policy:?}");
    }
}

#[test]
fn fire_all_catches_up_at_most_the_shared_cap() {
    // 149 missed triggers (1 s .. 149 s): the oldest MAX_CATCH_UP run, the rest are reported
    // once; 150 s and 151 s are on time.
    let mut c = core();
    let spec = JobSpec::new("all", expr(TimeExpressionType::FixedRate, "1000"))
        .with_misfire(MisfirePolicy::FireAll);
    c.handle(T0, Command::Add(def(1, spec)));
    let got = poll(&mut c, T0 + 151_000);
    let cap = crate::schedule::MAX_CATCH_UP;
    let runs: Vec<i64> = got
        .iter()
        .filter(|(_, skip)| skip.is_none())
        .map(|(at, _)| *at)
        .collect();
    let mut expected: Vec<i64> = (1..=i64::from(cap)).map(|k| k * 1_000).collect();
    expected.extend([150_000, 151_000]);
    assert_eq!(runs, expected);
    let missed = 149 - u64::from(cap);
    assert_eq!(
        got.last(),
        Some(&(
            (i64::from(cap) + 1) * 1_000,
            Some(SkipReason::Misfired { missed })
        ))
    );
    assert_eq!(c.next_wakeup(), Some(T0 + 152_000));
}

#[test]
fn max_instances_skips_while_running() {
    let mut c = core();
    let spec = JobSpec::new("x", expr(TimeExpressionType::FixedRate, "10")).with_max_instances(1);
    let d = def(1, spec);
    c.handle(T0, Command::Add(Arc::clone(&d)));
    let mut out = Vec::new();
    c.poll(T0 + 10, &mut out, usize::MAX);
    assert!(out[0].skip.is_none());
    assert_eq!(d.running(), 1);
    out.clear();
    c.poll(T0 + 20, &mut out, usize::MAX);
    assert_eq!(out[0].skip, Some(SkipReason::TooManyInstances));
    d.release(false);
    out.clear();
    c.poll(T0 + 30, &mut out, usize::MAX);
    assert!(out[0].skip.is_none());
}

#[test]
fn disable_enable_and_remove() {
    let mut c = core();
    let d = def(
        1,
        JobSpec::new("x", expr(TimeExpressionType::FixedRate, "100")),
    );
    c.handle(T0, Command::Add(Arc::clone(&d)));
    c.handle(T0 + 50, Command::SetEnabled(Arc::clone(&d), false));
    assert_eq!(c.next_wakeup(), None);
    assert!(
        poll(&mut c, T0 + 500).is_empty(),
        "disabled: no fires, no misfires"
    );
    c.handle(T0 + 500, Command::SetEnabled(Arc::clone(&d), true));
    assert_eq!(c.next_wakeup(), Some(T0 + 600), "the grid is kept");
    c.handle(T0 + 550, Command::Remove(Arc::clone(&d)));
    assert_eq!(c.next_wakeup(), None);
    c.handle(T0 + 560, Command::SetEnabled(d, true));
    assert_eq!(c.next_wakeup(), None, "a removed job cannot be re-enabled");
}

/// The core keeps no FIXED_RATE anchor while a timer is armed (`JobDef::anchor`): whatever
/// fired before, a job disabled and enabled again arms exactly the trigger that its original
/// anchor gives.
#[test]
fn a_re_enabled_fixed_rate_job_keeps_its_grid_whatever_fired_before() {
    for period in [1, 7, 100, 1_000] {
        for start in [None, Some(T0 + 33), Some(T0 + 2_500)] {
            for resume in [None, Some(T0 - 1_234), Some(T0 + 450)] {
                for run in [0, 5, 99, 1_000, 3_001] {
                    for pause in [0, 1, 49, 1_500] {
                        let mut spec = JobSpec::new(
                            "g",
                            expr(TimeExpressionType::FixedRate, &period.to_string()),
                        )
                        .with_lifecycle(Lifecycle { start, end: None })
                        .with_misfire(MisfirePolicy::Skip);
                        if let Some(r) = resume {
                            spec = spec.with_resume_after(r);
                        }
                        let d = def(1, spec);
                        let anchor = resume.unwrap_or(T0);
                        let mut c = core();
                        c.handle(T0, Command::Add(Arc::clone(&d)));
                        let mut now = T0 + run;
                        for round in 0..2 {
                            poll(&mut c, now);
                            c.handle(now, Command::SetEnabled(Arc::clone(&d), false));
                            now += pause;
                            c.handle(now, Command::SetEnabled(Arc::clone(&d), true));
                            assert_eq!(
                                c.next_wakeup(),
                                d.spec.schedule().first_trigger(anchor, now),
                                "period {period}, start {start:?}, resume {resume:?}, \
                                 run {run}, pause {pause}, round {round}"
                            );
                            now += run;
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn manual_trigger_after_delay_and_after_removal() {
    let mut c = core();
    let d = def(1, JobSpec::new("api", expr(TimeExpressionType::Api, "")));
    c.handle(T0, Command::Add(Arc::clone(&d)));
    assert_eq!(c.next_wakeup(), None, "API jobs never fire on their own");
    for delay in [0, 40] {
        c.handle(
            T0,
            Command::Trigger {
                def: Arc::clone(&d),
                instance: InstanceId(100 + delay),
                params: Some("p".into()),
                delay_ms: delay,
            },
        );
    }
    assert_eq!(poll(&mut c, T0), [(0, None)]);
    c.handle(T0 + 1, Command::Remove(Arc::clone(&d)));
    assert_eq!(poll(&mut c, T0 + 40), [(40, Some(SkipReason::JobRemoved))]);
}

#[test]
fn schedule_timers_and_manual_triggers_share_one_wheel_in_insertion_order() {
    let mut c = core();
    let rate = def(
        1,
        JobSpec::new("r", expr(TimeExpressionType::FixedRate, "50")),
    );
    let api = def(2, JobSpec::new("a", expr(TimeExpressionType::Api, "")));
    c.handle(T0, Command::Add(Arc::clone(&api)));
    let trigger = |instance: u64| Command::Trigger {
        def: Arc::clone(&api),
        instance: InstanceId(instance),
        params: Some(format!("#{instance}").into()),
        delay_ms: 50,
    };
    // Due at T0 + 50: a trigger, then the schedule timer, then another trigger.
    c.handle(T0, trigger(7));
    c.handle(T0, Command::Add(Arc::clone(&rate)));
    c.handle(T0, trigger(8));
    assert_eq!(c.triggers.len(), 2);
    let mut out = Vec::new();
    assert!(!c.poll(T0 + 50, &mut out, usize::MAX));
    let got: Vec<(u64, bool, Option<&str>, i64)> = out
        .iter()
        .map(|f| {
            (
                f.def.id.0,
                f.from_schedule,
                f.instance_params.as_deref(),
                f.scheduled_at - T0,
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (2, false, Some("#7"), 50),
            (1, true, None, 50),
            (2, false, Some("#8"), 50)
        ]
    );
    assert_eq!(
        (out[0].instance, out[2].instance),
        (InstanceId(7), InstanceId(8))
    );
    assert!(c.triggers.is_empty(), "a fired trigger leaves the table");
    assert_eq!(c.next_wakeup(), Some(T0 + 100), "the schedule re-armed");
}

#[test]
fn every_instant_has_its_own_tick_in_order() {
    let instants = [i64::MIN, -T0, -1, 0, 1, T0, T0 + 1, i64::MAX];
    for pair in instants.windows(2) {
        assert!(tick(pair[0]) < tick(pair[1]), "{pair:?}");
    }
    for at in instants {
        assert_eq!(instant(tick(at)), at);
    }
}

#[test]
fn lifecycle_window_bounds_the_schedule() {
    let mut c = core();
    let spec =
        JobSpec::new("w", expr(TimeExpressionType::FixedRate, "100")).with_lifecycle(Lifecycle {
            start: Some(T0 + 1_000),
            end: Some(T0 + 1_250),
        });
    c.handle(T0, Command::Add(def(1, spec)));
    assert_eq!(
        c.next_wakeup(),
        Some(T0 + 1_100),
        "anchored at the window's start"
    );
    assert_eq!(poll(&mut c, T0 + 1_100), [(1_100, None)]);
    assert_eq!(poll(&mut c, T0 + 1_200), [(1_200, None)]);
    assert_eq!(c.next_wakeup(), None, "1300 is past the end");
}

#[test]
fn resume_after_replays_missed_triggers_by_policy() {
    let mut c = core();
    let spec = JobSpec::new("r", expr(TimeExpressionType::FixedRate, "1000"))
        .with_resume_after(T0 - 5_000)
        .with_misfire(MisfirePolicy::FireOnce);
    c.handle(T0, Command::Add(def(1, spec)));
    // Missed by more than the 1 s threshold: -4 s, -3 s, -2 s; FIRE_ONCE runs the first and
    // drops two. -1 s and 0 are merely late and run.
    assert_eq!(
        poll(&mut c, T0),
        [
            (-4_000, None),
            (-1_000, None),
            (0, None),
            (-3_000, Some(SkipReason::Misfired { missed: 2 }))
        ]
    );
    assert_eq!(c.next_wakeup(), Some(T0 + 1_000));
}
