//! Calendars in the core: a trigger on an excluded date creates no instance and the next
//! one fires; which calendars a job names that its app lacks.

use super::tests::*;
use super::*;
use crate::time_expression::TimeExpressionType;

#[test]
fn a_trigger_on_an_excluded_date_creates_no_instance_and_the_next_one_fires() {
    const HOUR: EpochMs = 3_600_000;
    // Daily at 23:30 UTC; the calendar excludes 2026-01-02 in Shanghai (UTC+8), which
    // starts at 16:00 UTC on the 1st: the trigger of 2026-01-01T23:30Z is excluded.
    let (mut core, app, job) = with_job(|j| {
        j.time_expression_type = TimeExpressionType::Cron;
        j.time_expression = "0 30 23 * * ?".into();
        j.calendars = vec!["cn".into()];
    });
    put_calendar(&mut core, app, "cn", "Asia/Shanghai", &["2026-01-02"]);
    let first = T0 + 23 * HOUR + HOUR / 2;
    assert_eq!(
        core.repo.trigger(job).and_then(|t| t.next_trigger),
        Some(first)
    );
    let (sent, _) = tick(&mut core, first);
    assert!(sent.is_empty(), "the excluded trigger ran");
    assert!(
        core.active.is_empty(),
        "an excluded trigger creates no instance"
    );
    assert_eq!(core.jobs[&job].calendar_skipped, 1);
    assert_eq!(core.jobs[&job].skipped, 0, "not the overlap policy's count");
    assert_eq!(
        core.metrics
            .runs_calendar_skipped
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    assert_eq!(
        core.repo.trigger(job).and_then(|t| t.next_trigger),
        Some(first + 24 * HOUR),
        "the next trigger is planned as usual"
    );
    // The next day is not excluded: it fires.
    let (sent, _) = tick(&mut core, first + 24 * HOUR);
    assert_eq!(sent.len(), 1);
    assert_eq!(core.jobs[&job].calendar_skipped, 1);
    // A run asked for through the API is not affected by calendars, on an excluded date too.
    put_calendar(&mut core, app, "cn", "UTC", &["2026-01-01..2026-01-31"]);
    assert!(run(&mut core, app, job, first + 24 * HOUR + 1).is_some());
}

#[test]
fn a_calendar_that_excludes_every_date_skips_each_trigger_without_searching() {
    let (mut core, app, job) = with_job(|j| {
        j.time_expression_type = TimeExpressionType::FixedRate;
        j.time_expression = "1000".into();
        j.misfire = crate::time_expression::MisfirePolicy::FireAll;
        j.calendars = vec!["never".into()];
    });
    put_calendar(&mut core, app, "never", "UTC", &["1970-01-01..2299-12-31"]);
    for s in 1..=3 {
        let (sent, _) = tick(&mut core, T0 + s * 1_000);
        assert!(sent.is_empty());
    }
    // A late step (FIRE_ALL catches up on the missed triggers): each one is excluded too.
    let (sent, _) = tick(&mut core, T0 + 6_000);
    assert!(sent.is_empty());
    assert_eq!(core.jobs[&job].calendar_skipped, 6);
    assert!(core.active.is_empty());
    assert_eq!(
        core.repo.trigger(job).and_then(|t| t.next_trigger),
        Some(T0 + 7_000)
    );
    // The calendar deleted, the job fires again.
    core.calendar_deleted(app, "never");
    let (sent, _) = tick(&mut core, T0 + 7_000);
    assert_eq!(sent.len(), 1);
}

#[test]
fn calendar_users_and_unknown_names() {
    let (mut core, app, job) = with_job(|j| j.calendars = vec!["fr".into()]);
    put_calendar(&mut core, app, "fr", "Europe/Paris", &["2026-07-14"]);
    let users = core.calendar_users(app, "fr");
    assert_eq!(users.jobs, vec![job]);
    assert!(core.calendar_users(app, "other").is_empty());
    let names = vec!["fr".to_owned(), "de".to_owned()];
    assert_eq!(core.unknown_calendar(app, &names), Some("de"));
    assert_eq!(core.unknown_calendar(app, &names[..1]), None);
    assert_eq!(core.unknown_calendar(AppId(999), &names[..1]), Some("fr"));
}
