//! The embedded scheduler end to end, on a virtual clock: nothing here sleeps in real time.
//!
//! Processors that must be "in progress" when the test moves the clock tell the test they have
//! started (a channel) before it advances, so every step is deterministic. Real-time timeouts
//! appear only as hang guards (`within`), never as assertions about speed.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ferrojob::clock::VirtualClock;
use ferrojob::embedded::{
    BoxError, JobSpec, ProcessResult, RetryPolicy, RunContext, RunOutcome, RunReport, Scheduler,
    SchedulerConfig, SchedulerError, SkipReason, TriggerOptions,
};
use ferrojob::ids::JobId;
use ferrojob::model::InstanceStatus;
use ferrojob::time_expression::{MisfirePolicy, TimeExpression, TimeExpressionType};
use tokio::sync::{broadcast, mpsc};

/// 2026-01-01T00:00:00Z.
const T0: i64 = 1_767_225_600_000;

fn setup() -> (VirtualClock, Scheduler, broadcast::Receiver<RunReport>) {
    let clock = VirtualClock::new(T0);
    let scheduler = Scheduler::with_clock(Arc::new(clock.clone()), SchedulerConfig::default());
    let reports = scheduler.subscribe();
    (clock, scheduler, reports)
}

fn expr(kind: TimeExpressionType, e: &str, tz: Option<&str>) -> TimeExpression {
    TimeExpression::parse(kind, e, tz).expect("valid expression")
}

/// A hang guard: the awaited thing must happen within 10 s of real time.
async fn within<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(10), f)
        .await
        .expect("the scheduler did not answer within 10 s")
}

async fn next(reports: &mut broadcast::Receiver<RunReport>) -> RunReport {
    within(reports.recv()).await.expect("report")
}

fn ok_processor() -> impl Fn(RunContext) -> futures::future::Ready<ProcessResult> {
    |ctx: RunContext| futures::future::ready(Ok(format!("ran {}", ctx.instance_id().0)))
}

#[tokio::test]
async fn cron_fires_exactly_on_its_seconds_in_its_time_zone() {
    let (clock, s, mut reports) = setup();
    // 10:15:00 every day in Shanghai (UTC+8) = 02:15:00Z.
    let job = s
        .register(
            JobSpec::new(
                "daily",
                expr(
                    TimeExpressionType::Cron,
                    "0 15 10 * * ?",
                    Some("Asia/Shanghai"),
                ),
            ),
            ok_processor(),
        )
        .unwrap();
    s.settle().await.unwrap();
    let due = T0 + (2 * 3600 + 15 * 60) * 1000;
    assert_eq!(s.stats(job).unwrap().next_fire_at, Some(due));
    clock.advance_to(due - 1);
    s.settle().await.unwrap();
    assert!(
        reports.try_recv().is_err(),
        "nothing fires a millisecond early"
    );
    clock.advance_to(due);
    let r = next(&mut reports).await;
    assert_eq!(r.job_id, job);
    assert_eq!(r.scheduled_at, due);
    assert_eq!(
        r.lateness_us(),
        0,
        "virtual time: the fire is exactly on time"
    );
    assert_eq!(r.status(), InstanceStatus::Succeed);
    assert_eq!(s.stats(job).unwrap().next_fire_at, Some(due + 86_400_000));
    s.shutdown().await;
}

#[tokio::test]
async fn fixed_rate_keeps_its_grid_and_fixed_delay_counts_from_completion() {
    let (clock, s, mut reports) = setup();
    let rate = s
        .register(
            JobSpec::new("rate", expr(TimeExpressionType::FixedRate, "300", None)),
            ok_processor(),
        )
        .unwrap();
    // The fixed-delay processor takes 50 ms of (virtual) time and says when it has started.
    let (started_tx, mut started) = mpsc::unbounded_channel();
    let delay = s
        .register(
            JobSpec::new("delay", expr(TimeExpressionType::FixedDelay, "500", None)),
            move |ctx: RunContext| {
                let started_tx = started_tx.clone();
                async move {
                    let _ = started_tx.send(ctx.scheduled_at());
                    let clock = Arc::clone(ctx.clock());
                    clock.sleep_until(clock.now_us() + 50_000).await;
                    Ok::<_, BoxError>(String::new())
                }
            },
        )
        .unwrap();
    s.settle().await.unwrap();

    let mut rate_fires = Vec::new();
    let mut delay_fires = Vec::new();
    // Walk 10 ms steps through 1.2 s, letting the fixed-delay run start before moving on.
    for _ in 0..120 {
        clock.advance(10);
        s.settle().await.unwrap();
        while let Ok(at) = started.try_recv() {
            delay_fires.push(at - T0);
        }
        // Give runs the chance to register their sleeps before the next advance.
        tokio::task::yield_now().await;
        while let Ok(r) = reports.try_recv() {
            if r.job_id == rate {
                rate_fires.push(r.scheduled_at - T0);
            }
        }
    }
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
    while let Ok(r) = reports.try_recv() {
        if r.job_id == rate {
            rate_fires.push(r.scheduled_at - T0);
        }
    }
    assert_eq!(rate_fires, [300, 600, 900, 1_200]);
    // First at 500; it ends at 550, so the next is due at 1050 (and ends at 1100).
    assert_eq!(delay_fires, [500, 1_050]);
    assert_eq!(s.stats(delay).unwrap().succeeded, 2);
    s.shutdown().await;
}

#[tokio::test]
async fn timeout_cancels_the_attempt_and_retries_back_off() {
    let (clock, s, mut reports) = setup();
    let attempts = Arc::new(AtomicU32::new(0));
    let (started_tx, mut started) = mpsc::unbounded_channel();
    let seen = Arc::clone(&attempts);
    let job = s
        .register(
            JobSpec::new("flaky", expr(TimeExpressionType::Api, "", None))
                .with_timeout_ms(1_000)
                .with_retry(RetryPolicy::with_backoff(
                    2,
                    ferrojob::policy::RetryBackoff::exponential(100, 10_000),
                )),
            move |ctx: RunContext| {
                let started_tx = started_tx.clone();
                seen.fetch_add(1, Ordering::SeqCst);
                async move {
                    let _ = started_tx.send(ctx.attempt());
                    let result: ProcessResult = match ctx.attempt() {
                        // Hangs: only the timeout ends it.
                        1 => std::future::pending().await,
                        2 => Err("boom".into()),
                        _ => Ok("third time lucky".into()),
                    };
                    result
                }
            },
        )
        .unwrap();
    s.trigger(job, TriggerOptions::now()).unwrap();
    s.settle().await.unwrap();
    assert_eq!(within(started.recv()).await, Some(1));
    clock.advance(999);
    tokio::task::yield_now().await;
    assert!(started.try_recv().is_err(), "not timed out before 1000 ms");
    clock.advance(1); // timeout → retry 1 after 100 ms
                      // The retry waits for its backoff on the clock: give it the 100 ms.
    wait_then_advance(&clock, 100).await;
    assert_eq!(within(started.recv()).await, Some(2));
    // Attempt 2 fails at once → retry 2 after 200 ms.
    wait_then_advance(&clock, 200).await;
    assert_eq!(within(started.recv()).await, Some(3));
    let r = next(&mut reports).await;
    assert_eq!(r.attempts, 3);
    assert_eq!(
        r.outcome,
        RunOutcome::Succeeded {
            result: "third time lucky".into()
        }
    );
    assert_eq!(r.finished_at_us, (T0 + 1_300) * 1000);
    assert_eq!(attempts.load(Ordering::SeqCst), 3);
    s.shutdown().await;
}

/// Lets spawned runs reach their next await, then advances the clock by `ms`.
async fn wait_then_advance(clock: &VirtualClock, ms: u64) {
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
    clock.advance(ms);
}

#[tokio::test]
async fn last_attempt_failure_and_timeout_are_reported() {
    let (clock, s, mut reports) = setup();
    let fail = s
        .register(
            JobSpec::new("fail", expr(TimeExpressionType::Api, "", None)),
            |_ctx: RunContext| async { Err::<String, BoxError>("disk full".into()) },
        )
        .unwrap();
    s.trigger(fail, TriggerOptions::now()).unwrap();
    let r = next(&mut reports).await;
    assert_eq!(
        r.outcome,
        RunOutcome::Failed {
            error: "disk full".into()
        }
    );
    assert_eq!(r.status(), InstanceStatus::Failed);

    let (started_tx, mut started) = mpsc::unbounded_channel();
    let slow = s
        .register(
            JobSpec::new("slow", expr(TimeExpressionType::Api, "", None)).with_timeout_ms(50),
            move |_ctx: RunContext| {
                let started_tx = started_tx.clone();
                async move {
                    let _ = started_tx.send(());
                    std::future::pending::<ProcessResult>().await
                }
            },
        )
        .unwrap();
    s.trigger(slow, TriggerOptions::now()).unwrap();
    within(started.recv()).await;
    wait_then_advance(&clock, 50).await;
    assert_eq!(next(&mut reports).await.outcome, RunOutcome::TimedOut);
    s.shutdown().await;
}

fn explode() -> ProcessResult {
    panic!("processor bug")
}

#[tokio::test]
async fn a_panicking_processor_fails_its_run_and_nothing_else() {
    let (_clock, s, mut reports) = setup();
    let bad = s
        .register(
            JobSpec::new("bad", expr(TimeExpressionType::Api, "", None)),
            |_ctx: RunContext| async { explode() },
        )
        .unwrap();
    let good = s
        .register(
            JobSpec::new("good", expr(TimeExpressionType::Api, "", None)),
            ok_processor(),
        )
        .unwrap();
    s.trigger(bad, TriggerOptions::now()).unwrap();
    let r = next(&mut reports).await;
    assert_eq!(
        r.outcome,
        RunOutcome::Failed {
            error: "processor panicked: processor bug".into()
        }
    );
    s.trigger(good, TriggerOptions::now()).unwrap();
    assert_eq!(next(&mut reports).await.status(), InstanceStatus::Succeed);
    assert_eq!(s.stats(bad).unwrap().running, 0, "the slot was released");
    s.shutdown().await;
}

#[tokio::test]
async fn max_instances_skips_triggers_while_a_run_is_in_progress() {
    let (clock, s, mut reports) = setup();
    let (started_tx, mut started) = mpsc::unbounded_channel();
    let job = s
        .register(
            JobSpec::new("single", expr(TimeExpressionType::FixedRate, "100", None))
                .with_max_instances(1),
            move |ctx: RunContext| {
                let started_tx = started_tx.clone();
                async move {
                    let _ = started_tx.send(());
                    let clock = Arc::clone(ctx.clock());
                    clock.sleep_until(clock.now_us() + 250_000).await;
                    Ok::<_, BoxError>(String::new())
                }
            },
        )
        .unwrap();
    s.settle().await.unwrap();
    clock.advance(100);
    within(started.recv()).await; // run 1 busy until 350
    clock.advance(100); // 200: skipped
    let skipped = next(&mut reports).await;
    assert_eq!(
        skipped.outcome,
        RunOutcome::Skipped {
            reason: SkipReason::TooManyInstances
        }
    );
    assert_eq!(skipped.scheduled_at, T0 + 200);
    clock.advance(100); // 300: skipped
    assert!(matches!(
        next(&mut reports).await.outcome,
        RunOutcome::Skipped { .. }
    ));
    clock.advance(50); // 350: run 1 ends
    let done = next(&mut reports).await;
    assert_eq!(done.scheduled_at, T0 + 100);
    assert_eq!(done.status(), InstanceStatus::Succeed);
    clock.advance(50); // 400: runs again
    within(started.recv()).await;
    let stats = s.stats(job).unwrap();
    assert_eq!((stats.fired, stats.skipped, stats.running), (2, 2, 1));
    s.shutdown().await;
}

#[tokio::test]
async fn enable_disable_remove_and_unknown_ids() {
    let (clock, s, mut reports) = setup();
    let job = s
        .register(
            JobSpec::new("tick", expr(TimeExpressionType::FixedRate, "1000", None)),
            ok_processor(),
        )
        .unwrap();
    s.disable(job).unwrap();
    s.settle().await.unwrap();
    clock.advance(5_000);
    s.settle().await.unwrap();
    assert_eq!(
        s.stats(job).unwrap().fired,
        0,
        "a disabled job does not fire"
    );
    assert!(reports.try_recv().is_err());
    assert_eq!(s.stats(job).unwrap().next_fire_at, None);
    s.enable(job).unwrap();
    s.settle().await.unwrap();
    assert_eq!(
        s.stats(job).unwrap().next_fire_at,
        Some(T0 + 6_000),
        "back on its grid, without replaying the disabled period"
    );
    clock.advance(1_000);
    assert_eq!(next(&mut reports).await.scheduled_at, T0 + 6_000);

    let fired_before_removal = s.stats(job).unwrap().fired;
    assert_eq!(fired_before_removal, 1);
    assert_eq!(s.jobs().len(), 1);
    s.remove(job).unwrap();
    let unknown = JobId(job.0);
    assert_eq!(s.remove(unknown), Err(SchedulerError::UnknownJob(unknown)));
    assert_eq!(s.enable(unknown), Err(SchedulerError::UnknownJob(unknown)));
    assert_eq!(
        s.trigger(JobId(999), TriggerOptions::now()),
        Err(SchedulerError::UnknownJob(JobId(999)))
    );
    assert!(s.stats(unknown).is_err());
    s.settle().await.unwrap();
    clock.advance(10_000);
    s.settle().await.unwrap();
    // Anything spawned by now would run during these yields (single-threaded test runtime).
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
    assert!(reports.try_recv().is_err(), "a removed job never fires");
    assert!(s.jobs().is_empty());
    s.shutdown().await;
    assert_eq!(
        s.register(
            JobSpec::new("late", expr(TimeExpressionType::Api, "", None)),
            ok_processor()
        ),
        Err(SchedulerError::ShutDown)
    );
}

#[tokio::test]
async fn delayed_trigger_carries_its_params_and_fires_on_time() {
    let (clock, s, mut reports) = setup();
    let (params_tx, mut params) = mpsc::unbounded_channel();
    let job = s
        .register(
            JobSpec::new("api", expr(TimeExpressionType::Api, "", None)).with_params("job-p"),
            move |ctx: RunContext| {
                let _ = params_tx.send((
                    ctx.params().to_owned(),
                    ctx.instance_params().map(str::to_owned),
                ));
                async { Ok::<_, BoxError>(String::new()) }
            },
        )
        .unwrap();
    let instance = s
        .trigger(
            job,
            TriggerOptions::now()
                .with_params("run-p")
                .with_delay_ms(1_500),
        )
        .unwrap();
    s.settle().await.unwrap();
    clock.advance(1_499);
    s.settle().await.unwrap();
    assert_eq!(s.stats(job).unwrap().fired, 0);
    clock.advance(1);
    let r = next(&mut reports).await;
    assert_eq!(r.instance_id, instance);
    assert_eq!(r.scheduled_at, T0 + 1_500);
    assert_eq!(r.lateness_us(), 0);
    assert_eq!(
        params.recv().await,
        Some(("job-p".to_owned(), Some("run-p".to_owned())))
    );
    s.shutdown().await;
}

#[tokio::test]
async fn misfire_after_a_long_stall_follows_the_policy() {
    let (clock, s, mut reports) = setup();
    let mk = |policy| {
        JobSpec::new("m", expr(TimeExpressionType::Cron, "0 * * * * ?", None)).with_misfire(policy)
    };
    let once = s
        .register(mk(MisfirePolicy::FireOnce), ok_processor())
        .unwrap();
    let all = s
        .register(mk(MisfirePolicy::FireAll), ok_processor())
        .unwrap();
    let skip = s.register(mk(MisfirePolicy::Skip), ok_processor()).unwrap();
    s.settle().await.unwrap();
    // The process "stalls" for 10 minutes: every minute's trigger is late when it is seen.
    clock.advance(10 * 60_000);
    s.settle().await.unwrap();
    let mut runs = std::collections::HashMap::<JobId, u32>::new();
    let mut dropped = std::collections::HashMap::<JobId, u64>::new();
    // FIRE_ONCE: 1 + the on-time 10th; FIRE_ALL: 10; SKIP: the on-time 10th + 1 skip report.
    for _ in 0..(2 + 1) + 10 + (1 + 1) {
        let r = next(&mut reports).await;
        match r.outcome {
            RunOutcome::Skipped {
                reason: SkipReason::Misfired { missed },
            } => *dropped.entry(r.job_id).or_default() += missed,
            RunOutcome::Succeeded { .. } => *runs.entry(r.job_id).or_default() += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(runs.get(&once), Some(&2));
    assert_eq!(dropped.get(&once), Some(&8));
    assert_eq!(runs.get(&all), Some(&10));
    assert_eq!(dropped.get(&all), None);
    assert_eq!(runs.get(&skip), Some(&1));
    assert_eq!(dropped.get(&skip), Some(&9));
    for job in [once, all, skip] {
        assert_eq!(s.stats(job).unwrap().next_fire_at, Some(T0 + 11 * 60_000));
    }
    s.shutdown().await;
}

#[tokio::test]
async fn shutdown_cancels_runs_in_progress_and_waits_for_them() {
    let (_clock, s, mut reports) = setup();
    let (started_tx, mut started) = mpsc::unbounded_channel();
    let job = s
        .register(
            JobSpec::new("forever", expr(TimeExpressionType::Api, "", None)),
            move |ctx: RunContext| {
                let started_tx = started_tx.clone();
                async move {
                    let _ = started_tx.send(());
                    ctx.cancelled().await;
                    Ok::<_, BoxError>("cancelled cooperatively".into())
                }
            },
        )
        .unwrap();
    s.trigger(job, TriggerOptions::now()).unwrap();
    within(started.recv()).await;
    within(s.shutdown()).await;
    assert_eq!(next(&mut reports).await.outcome, RunOutcome::Cancelled);
    let stats = s.stats(job).unwrap();
    assert_eq!((stats.running, stats.cancelled, stats.failed), (0, 1, 0));
}

#[tokio::test]
async fn a_fixed_backoff_waits_the_same_before_every_retry_and_a_bad_one_is_refused() {
    use ferrojob::policy::RetryBackoff;
    let (clock, s, mut reports) = setup();
    let (started_tx, mut started) = mpsc::unbounded_channel();
    let job = s
        .register(
            JobSpec::new("fails", expr(TimeExpressionType::Api, "", None))
                .with_retry(RetryPolicy::with_backoff(2, RetryBackoff::fixed(300))),
            move |ctx: RunContext| {
                let _ = started_tx.send(ctx.attempt());
                async move {
                    let result: ProcessResult = Err("always".into());
                    result
                }
            },
        )
        .unwrap();
    s.trigger(job, TriggerOptions::now()).unwrap();
    s.settle().await.unwrap();
    assert_eq!(within(started.recv()).await, Some(1));
    wait_then_advance(&clock, 299).await;
    assert!(started.try_recv().is_err(), "retried before 300 ms");
    wait_then_advance(&clock, 1).await;
    assert_eq!(within(started.recv()).await, Some(2));
    wait_then_advance(&clock, 300).await;
    assert_eq!(within(started.recv()).await, Some(3));
    let r = next(&mut reports).await;
    assert_eq!(r.attempts, 3);
    assert_eq!(r.finished_at_us, (T0 + 600) * 1000);

    let bad = RetryBackoff {
        factor: 0.5,
        ..RetryBackoff::default()
    };
    let refused = s.register(
        JobSpec::new("bad", expr(TimeExpressionType::Api, "", None))
            .with_retry(RetryPolicy::with_backoff(1, bad)),
        |_: RunContext| async { ProcessResult::Ok(String::new()) },
    );
    assert!(
        matches!(&refused, Err(SchedulerError::InvalidJob { reason, .. }) if reason.contains("factor")),
        "{refused:?}"
    );
    s.shutdown().await;
}
