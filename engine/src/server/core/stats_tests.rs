//! The core's per-app counts and fire lateness, in their minute and hour windows.

use ferrojob_transport::message as wire;

use super::tests::*;
use super::*;
use crate::time_expression::TimeExpressionType;

/// An API run of `job` created and ended with `status` at `now`.
fn run_ending(core: &mut Core, app: AppId, job: JobId, status: wire::InstanceStatus, now: i64) {
    at_step(core, now);
    let id = run(core, app, job, now).unwrap();
    let sent = core_sent_first(core, id);
    worker_says(core, app, &sent, status, now);
    settle(core, now);
    assert!(status_of(core, id).is_some_and(|s| s.is_final()));
}

/// A step at `now` in which the worker beats.
fn at_step(core: &mut Core, now: i64) {
    at(core, now, now);
    heartbeat(core, "w1:1");
}

#[test]
fn per_app_counts_fall_in_minute_buckets_and_age_out_of_their_windows() {
    const MIN: i64 = 60_000;
    const SUCCEED: wire::InstanceStatus = wire::InstanceStatus::Succeed;
    const FAILED: wire::InstanceStatus = wire::InstanceStatus::Failed;
    let (mut core, app, job) = with_job(|_| {});
    // T0 is a whole hour: minute 0 of the ring ends at T0 + 59_999.
    run_ending(&mut core, app, job, SUCCEED, T0 + MIN - 1);
    run_ending(&mut core, app, job, FAILED, T0 + MIN);
    run_ending(&mut core, app, job, SUCCEED, T0 + 60 * MIN - 1);
    let r = core.stats.read(app, T0 + 60 * MIN);
    assert_eq!(r.since, T0, "the core started counting at T0");
    // Minutes 56 to 60: the run of minute 59.
    let w = r.last_5_minutes;
    assert_eq!(
        (w.from, w.finished, w.succeeded, w.failed),
        (T0 + 56 * MIN, 1, 1, 0)
    );
    // Minutes 1 to 60: minute 0's run is out.
    let w = r.last_hour;
    assert_eq!(
        (w.from, w.finished, w.succeeded, w.failed),
        (T0 + MIN, 2, 1, 1)
    );
    // The day reaches back before T0: it counts from T0, every run.
    let w = r.last_day;
    assert_eq!((w.from, w.finished, w.succeeded, w.failed), (T0, 3, 2, 1));
    assert_eq!(r.last_day.lateness_p50_ms, None, "no scheduled fire");
    // A day later, minute 1440 reuses minute 0's bucket: the old count is gone, not added.
    run_ending(&mut core, app, job, SUCCEED, T0 + 1440 * MIN);
    let r = core.stats.read(app, T0 + 1441 * MIN + 30_000);
    let w = r.last_day;
    assert_eq!(
        (w.from, w.finished, w.succeeded, w.failed),
        (T0 + 2 * MIN, 2, 2, 0)
    );
    assert_eq!(r.last_hour.finished, 1);
    // Another app counts apart, and a deleted app's counts go with it.
    assert_eq!(core.stats.read(AppId(app.0 + 1), T0).last_day.finished, 0);
    core.remove_app(app);
    assert_eq!(core.stats.read(app, T0 + 1441 * MIN).last_day.finished, 0);
}

#[test]
fn per_app_fire_lateness_is_a_histogram_by_minute_and_by_hour() {
    let (mut core, app, _) = with_job(|j| {
        j.time_expression_type = TimeExpressionType::FixedRate;
        j.time_expression = "60000".into();
    });
    // The first trigger is due at T0 + 60 s: fired 700 ms late, the next one 30 ms late.
    tick(&mut core, T0 + 60_700);
    tick(&mut core, T0 + 120_030);
    let r = core.stats.read(app, T0 + 120_030);
    for w in [r.last_5_minutes, r.last_hour, r.last_day] {
        assert_eq!(w.fires, 2);
        // 30 ms lies in the (20, 50] bin; 700 ms in (500, 1000], capped by the largest.
        assert_eq!(
            (w.lateness_p50_ms, w.lateness_p99_ms),
            (Some(50), Some(700))
        );
        assert_eq!(w.finished, 0, "still running");
    }
    // Two hours on, the fires are out of the hour but still in the day (kept by hour).
    let r = core.stats.read(app, T0 + 2 * 3_600_000 + 120_030);
    assert_eq!(r.last_hour.lateness_p99_ms, None);
    assert_eq!(r.last_day.lateness_p99_ms, Some(700));
    assert_eq!(r.last_day.fires, 2);
}
