//! The scheduling rules of `ferrojob::schedule`: the fire plan (misfire walk) by table, at its
//! edges and against a brute-force model; the first-trigger and next-after-fire helpers.

use ferrojob::schedule::{
    BackfillError, FirePlan, Schedule, MAX_BACKFILL_RUNS, MAX_CATCH_UP, MAX_WALK_STEPS,
};
use ferrojob::time_expression::{
    EpochMs, Lifecycle, MisfirePolicy, TimeExpression, TimeExpressionType,
};
use proptest::prelude::*;

/// 2026-01-01T00:00:00Z, a Thursday. Every instant in the tables is an offset from it.
const T0: EpochMs = 1_767_225_600_000;
const SEC: i64 = 1_000;
const MIN: i64 = 60 * SEC;
const DAY: i64 = 24 * 60 * MIN;

use MisfirePolicy::{FireAll, FireOnce, Skip};

fn expr(kind: TimeExpressionType, e: &str) -> TimeExpression {
    TimeExpression::parse(kind, e, None).expect("valid expression")
}

fn rate(period_ms: u64) -> TimeExpression {
    TimeExpression::FixedRate { period_ms }
}

fn cron(e: &str) -> TimeExpression {
    expr(TimeExpressionType::Cron, e)
}

/// A window given as offsets from `T0`.
fn window(start: Option<i64>, end: Option<i64>) -> Lifecycle {
    Lifecycle::new(start.map(|s| T0 + s), end.map(|e| T0 + e)).expect("valid window")
}

fn plan(
    e: &TimeExpression,
    lifecycle: Lifecycle,
    misfire: MisfirePolicy,
    threshold_ms: u64,
    due: i64,
    now: i64,
) -> FirePlan {
    let schedule = Schedule {
        expression: e,
        lifecycle: &lifecycle,
        misfire,
    };
    schedule.plan(threshold_ms, T0 + due, T0 + now)
}

/// A job's schedule in the tables: expression, lifecycle window, misfire policy.
struct Job<'a>(&'a TimeExpression, Lifecycle, MisfirePolicy);

/// Plans `due` at `now` (offsets from `T0`, threshold 1 s) and checks the fires, the next
/// trigger and the dropped count (offsets from `T0`); the walk must not be cut and must
/// report its first drop.
#[track_caller]
fn check(
    Job(e, lifecycle, misfire): Job<'_>,
    due: i64,
    now: i64,
    want: (&[i64], Option<i64>, u64),
) {
    let got = plan(e, lifecycle, misfire, 1_000, due, now);
    let fires: Vec<i64> = got.fires.iter().map(|t| t - T0).collect();
    let got_summary = (&fires[..], got.next.map(|t| t - T0), got.dropped);
    assert_eq!(got_summary, want, "{e:?} {misfire:?} due {due} now {now}");
    assert_eq!(
        got.first_dropped.is_some(),
        got.dropped > 0,
        "first_dropped"
    );
    assert!(!got.truncated, "truncated");
}

fn all() -> Lifecycle {
    Lifecycle::default()
}

#[rustfmt::skip]
#[test]
fn fixed_rate_on_time_late_and_missed() {
    let r = rate(1_000);
    let all_ten: Vec<i64> = (1..=10).map(|k| k * 1_000).collect();
    // On time, and late within the threshold (1 s): the trigger and every later one due.
    check(Job(&r, all(), FireOnce), 1_000, 1_000,  (&[1_000], Some(2_000), 0));
    check(Job(&r, all(), Skip),     1_000, 1_999,  (&[1_000], Some(2_000), 0));
    check(Job(&r, all(), Skip),     1_000, 2_000,  (&[1_000, 2_000], Some(3_000), 0));
    // 1 000 is late by 1.5 s: missed; 2 000 is merely late.
    check(Job(&r, all(), FireOnce), 1_000, 2_500,  (&[1_000, 2_000], Some(3_000), 0));
    check(Job(&r, all(), FireAll),  1_000, 2_500,  (&[1_000, 2_000], Some(3_000), 0));
    check(Job(&r, all(), Skip),     1_000, 2_500,  (&[2_000], Some(3_000), 1));
    // Asleep for 10 s: 1..8 s are missed; 9 s and 10 s are on time.
    check(Job(&r, all(), FireOnce), 1_000, 10_000, (&[1_000, 9_000, 10_000], Some(11_000), 7));
    check(Job(&r, all(), FireAll),  1_000, 10_000, (&all_ten, Some(11_000), 0));
    check(Job(&r, all(), Skip),     1_000, 10_000, (&[9_000, 10_000], Some(11_000), 8));
    // `next` is after now even when now falls between triggers.
    check(Job(&r, all(), Skip),     1_000, 10_400, (&[10_000], Some(11_000), 9));
    // A trigger handed in before it is due (a timer that rounded) fires as on time.
    check(Job(&r, all(), Skip),     1_000, 500,    (&[1_000], Some(2_000), 0));
}

#[test]
fn threshold_zero_makes_any_lateness_a_misfire() {
    for (policy, fires, dropped) in [
        (FireOnce, vec![1_000], 0),
        (FireAll, vec![1_000], 0),
        (Skip, vec![], 1),
    ] {
        let p = plan(&rate(1_000), all(), policy, 0, 1_000, 1_001);
        let fires: Vec<EpochMs> = fires.into_iter().map(|t| T0 + t).collect();
        assert_eq!(p.fires, fires, "{policy:?}");
        assert_eq!(p.dropped, dropped, "{policy:?}");
        assert_eq!(p.next, Some(T0 + 2_000));
    }
    // Exactly on time is not late.
    let p = plan(&rate(1_000), all(), Skip, 0, 1_000, 1_000);
    assert_eq!((p.fires, p.dropped), (vec![T0 + 1_000], 0));
}

#[test]
fn fire_all_catches_up_at_most_max_catch_up_triggers() {
    // 198 missed triggers (1 s .. 198 s), two on time (199 s, 200 s).
    let p = plan(&rate(1_000), all(), FireAll, 1_000, 1_000, 200_000);
    let cap = i64::from(MAX_CATCH_UP);
    let mut expected: Vec<EpochMs> = (1..=cap).map(|k| T0 + k * 1_000).collect();
    expected.extend([T0 + 199_000, T0 + 200_000]);
    assert_eq!(p.fires, expected);
    assert_eq!(p.dropped, 198 - u64::from(MAX_CATCH_UP));
    assert_eq!(p.first_dropped, Some(T0 + (cap + 1) * 1_000));
    assert_eq!(p.next, Some(T0 + 201_000));
    assert!(!p.truncated);
}

#[test]
fn first_dropped_is_the_oldest_dropped_trigger() {
    let p = plan(&rate(1_000), all(), FireOnce, 1_000, 1_000, 10_000);
    assert_eq!(p.first_dropped, Some(T0 + 2_000));
    let p = plan(&rate(1_000), all(), Skip, 1_000, 1_000, 10_000);
    assert_eq!(p.first_dropped, Some(T0 + 1_000));
}

#[rustfmt::skip]
#[test]
fn lifecycle_bounds_the_walk() {
    let r = rate(1_000);
    // The window ends inside the walk: nothing after its end fires, and nothing is armed.
    let ends = window(None, Some(5_500));
    let five = [1_000, 2_000, 3_000, 4_000, 5_000];
    check(Job(&r, ends, FireAll),  1_000, 10_000, (&five, None, 0));
    check(Job(&r, ends, FireOnce), 1_000, 10_000, (&[1_000], None, 4));
    check(Job(&r, ends, Skip),     1_000, 10_000, (&[], None, 5));
    // The end is inclusive.
    let inclusive = window(None, Some(3_000));
    check(Job(&r, inclusive, FireAll), 1_000, 3_000, (&[1_000, 2_000, 3_000], None, 0));
    // Ending between now and the next trigger: nothing to arm.
    check(Job(&r, window(None, Some(1_500)), Skip), 1_000, 1_200, (&[1_000], None, 0));
    // A due past the end fires nothing.
    check(Job(&r, window(None, Some(500)), FireAll), 1_000, 3_000, (&[], None, 0));
    // A due before the start: the walk begins at the window's first trigger.
    let starts = window(Some(3_500), None);
    check(Job(&r, starts, FireAll), 1_000, 4_000, (&[4_000], Some(5_000), 0));
    check(Job(&r, starts, FireAll), 1_000, 2_000, (&[], Some(4_000), 0));
}

#[rustfmt::skip]
#[test]
fn fixed_delay_never_misfires() {
    let d = TimeExpression::FixedDelay { delay_ms: 1_000 };
    for policy in [FireOnce, FireAll, Skip] {
        // However late, the one pending trigger fires and nothing is armed: the run's
        // completion arms the next one.
        check(Job(&d, all(), policy), 1_000, 1_000, (&[1_000], None, 0));
        check(Job(&d, all(), policy), 1_000, DAY,   (&[1_000], None, 0));
    }
    // Before its window: armed at the window's first trigger, or fired once that is due.
    let starts = window(Some(3_500), None);
    check(Job(&d, starts, Skip), 1_000, 2_000, (&[], Some(4_000), 0));
    check(Job(&d, starts, Skip), 1_000, 9_000, (&[4_000], None, 0));
    // Past its window: nothing.
    check(Job(&d, window(None, Some(500)), Skip), 1_000, 9_000, (&[], None, 0));
}

#[test]
fn api_and_workflow_never_fire_on_their_own() {
    for e in [TimeExpression::Api, TimeExpression::Workflow] {
        for policy in [FireOnce, FireAll, Skip] {
            check(Job(&e, all(), policy), 1_000, 1_000, (&[], None, 0));
            check(Job(&e, all(), policy), 1_000, DAY, (&[], None, 0));
        }
    }
}

#[rustfmt::skip]
#[test]
fn cron_and_daily_time_interval() {
    // Every minute, asleep for 10 minutes (threshold 1 s): minutes 1..9 are missed.
    let every_minute = cron("0 * * * * ?");
    check(Job(&every_minute, all(), FireOnce), MIN, 10 * MIN, (&[MIN, 10 * MIN], Some(11 * MIN), 8));
    check(Job(&every_minute, all(), Skip), MIN, 10 * MIN + 30 * SEC, (&[], Some(11 * MIN), 10));
    // A cron's calendar decides, not a period: 12:00 on weekdays. Thursday's fire is missed
    // by four days, so FIRE_ONCE runs it, drops Friday's and Monday's, and arms Tuesday's.
    let noon = cron("0 0 12 ? * MON-FRI");
    let thu = 12 * 60 * MIN;
    check(Job(&noon, all(), FireOnce), thu, thu + 4 * DAY + MIN, (&[thu], Some(thu + 5 * DAY), 2));
    // Every 30 minutes between 09:00 and 10:00: late within the threshold at 09:30.
    let daily = expr(
        TimeExpressionType::DailyTimeInterval,
        r#"{"interval":30,"unit":"MINUTES","startTimeOfDay":"09:00:00","endTimeOfDay":"10:00:00"}"#,
    );
    let half_past_nine = 9 * 60 * MIN + 30 * MIN;
    check(
        Job(&daily, all(), Skip), half_past_nine, half_past_nine + 500,
        (&[half_past_nine], Some(half_past_nine + 30 * MIN), 0),
    );
}

#[test]
fn a_one_ms_rate_missed_for_a_year_is_bounded() {
    let year = 365 * DAY;
    let started = std::time::Instant::now();
    for policy in [Skip, FireOnce, FireAll] {
        let p = plan(&rate(1), all(), policy, 1_000, 1, year);
        assert!(p.truncated, "{policy:?}");
        // The missed part visited MAX_WALK_STEPS triggers, then jumped to the first on-time
        // one: the 1 001 triggers within the threshold all fire.
        let cap = match policy {
            Skip => 0,
            FireOnce => 1,
            FireAll => MAX_CATCH_UP,
        };
        assert_eq!(p.dropped, u64::from(MAX_WALK_STEPS - cap), "{policy:?}");
        assert_eq!(p.first_dropped, Some(T0 + 1 + i64::from(cap)));
        let on_time: Vec<EpochMs> = (year - 1_000..=year).map(|t| T0 + t).collect();
        let missed: Vec<EpochMs> = (1..=i64::from(cap)).map(|t| T0 + t).collect();
        assert_eq!(p.fires.get(..missed.len()), Some(&missed[..]), "{policy:?}");
        assert_eq!(
            p.fires.get(missed.len()..),
            Some(&on_time[..]),
            "{policy:?}"
        );
        assert_eq!(p.next, Some(T0 + year + 1), "{policy:?}");
    }
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn the_on_time_part_is_bounded_too() {
    // A threshold of 1 000 s with a 1 ms rate: a million triggers are merely late.
    let p = plan(&rate(1), all(), FireOnce, 1_000_000, 1, 1_000_000);
    assert!(p.truncated);
    assert_eq!(p.dropped, 0);
    assert_eq!(p.fires.len(), MAX_WALK_STEPS as usize);
    assert_eq!(p.fires.last(), Some(&(T0 + i64::from(MAX_WALK_STEPS))));
    assert_eq!(p.next, Some(T0 + 1_000_001));
}

#[test]
fn plan_into_reuses_and_clears_the_plan() {
    let r = rate(1_000);
    let lifecycle = all();
    let schedule = Schedule {
        expression: &r,
        lifecycle: &lifecycle,
        misfire: Skip,
    };
    let mut reused = schedule.plan(1_000, T0 + 1_000, T0 + 10_000);
    assert_eq!(reused.dropped, 8);
    schedule.plan_into(1_000, T0 + 11_000, T0 + 11_000, &mut reused);
    assert_eq!(reused, schedule.plan(1_000, T0 + 11_000, T0 + 11_000));
    assert_eq!(reused.fires, [T0 + 11_000]);
    assert_eq!((reused.dropped, reused.first_dropped), (0, None));
}

fn schedule<'a>(expression: &'a TimeExpression, lifecycle: &'a Lifecycle) -> Schedule<'a> {
    Schedule {
        expression,
        lifecycle,
        misfire: FireOnce,
    }
}

#[test]
fn first_trigger_and_next_after_fire() {
    let r = rate(100);
    let d = TimeExpression::FixedDelay { delay_ms: 100 };
    let every_minute = cron("0 * * * * ?");
    let (api, wf) = (TimeExpression::Api, TimeExpression::Workflow);
    let all = Lifecycle::default();
    let later = window(Some(1_000), Some(1_250));
    let over = window(None, Some(50));
    let s = schedule;

    // (schedule, anchor, after, first trigger), offsets from T0.
    let table = [
        (s(&r, &all), 0, 0, Some(100)),
        (s(&r, &all), 7, 7, Some(107)),
        // A window that opens later starts the grid at its start.
        (s(&r, &later), 0, 0, Some(1_100)),
        (s(&r, &later), 1_000, 1_000, Some(1_100)),
        // Resuming a grid (re-enabled job): the next grid point after `after`.
        (s(&r, &all), 0, 550, Some(600)),
        // Replaying from before now (a restart that knows its last fire).
        (s(&r, &all), -5_000, -5_000, Some(-4_900)),
        (s(&r, &later), 1_000, 1_200, None),
        (s(&r, &over), 0, 0, None),
        (s(&d, &all), 30, 30, Some(130)),
        (s(&d, &later), 30, 30, Some(1_100)),
        (s(&every_minute, &all), 12_345, 5, Some(MIN)),
        (s(&api, &all), 0, 0, None),
        (s(&wf, &all), 0, 0, None),
    ];
    for (i, (schedule, anchor, after, expected)) in table.iter().enumerate() {
        assert_eq!(
            schedule.first_trigger(T0 + anchor, T0 + after),
            expected.map(|t| T0 + t),
            "row {i}"
        );
    }

    // (schedule, fired at, next), offsets from T0.
    let table = [
        (s(&r, &all), 100, Some(200)),
        (s(&r, &later), 1_200, None),
        (s(&d, &all), 100, None),
        (s(&every_minute, &all), MIN, Some(2 * MIN)),
        (s(&api, &all), 0, None),
        (s(&wf, &all), 0, None),
    ];
    for (i, (schedule, at, expected)) in table.iter().enumerate() {
        assert_eq!(
            schedule.next_after_fire(T0 + at),
            expected.map(|t| T0 + t),
            "row {i}"
        );
    }
}

// ----- the model -----

/// The plan computed the slow way: step through every trigger from `due` to `now` with
/// `next_within` and apply the policy to each by hand. Only valid for walks shorter than
/// `MAX_WALK_STEPS`, which the generators keep to.
fn model(
    e: &TimeExpression,
    lifecycle: &Lifecycle,
    policy: MisfirePolicy,
    threshold_ms: u64,
    due: EpochMs,
    now: EpochMs,
) -> FirePlan {
    let mut out = FirePlan::default();
    if matches!(e, TimeExpression::Api | TimeExpression::Workflow) {
        return out;
    }
    let now = now.max(due);
    let mut t = if lifecycle.contains(due) {
        Some(due)
    } else {
        e.next_within(lifecycle, due, due)
    };
    if matches!(e, TimeExpression::FixedDelay { .. }) {
        match t {
            Some(at) if at <= now => out.fires.push(at),
            other => out.next = other,
        }
        return out;
    }
    let mut missed_fired = 0;
    while let Some(at) = t {
        if at > now {
            break;
        }
        let late = i128::from(now) - i128::from(at);
        let fires = if late <= i128::from(threshold_ms) {
            true
        } else {
            missed_fired += 1;
            match policy {
                FireAll => missed_fired <= MAX_CATCH_UP,
                FireOnce => missed_fired <= 1,
                Skip => false,
            }
        };
        if fires {
            out.fires.push(at);
        } else {
            out.dropped += 1;
            out.first_dropped.get_or_insert(at);
        }
        t = e.next_within(lifecycle, at, at);
    }
    out.next = t;
    out
}

/// A random FIXED_RATE or CRON expression and the length of a walk over it that stays well
/// within `MAX_WALK_STEPS` triggers.
fn expression() -> impl Strategy<Value = (TimeExpression, i64)> {
    prop_oneof![
        3 => (1u64..=10_000).prop_map(|p| (rate(p), 2_000 * p as i64)),
        2 => (1u64..=20).prop_map(|p| (rate(p), 20_000)),
        1 => (1u32..=30).prop_map(|s| (cron(&format!("*/{s} * * * * ?")), 300 * i64::from(s) * SEC)),
        1 => (0u32..60, 1u32..=30).prop_map(|(s, m)| (
            cron(&format!("{s} */{m} * * * ?")),
            300 * i64::from(m) * MIN
        )),
        1 => (0u32..60, 1u32..=12).prop_map(|(m, h)| (
            cron(&format!("0 {m} */{h} * * ?")),
            200 * i64::from(h) * 60 * MIN
        )),
        1 => Just((cron("0 0 12 ? * MON-FRI"), 300 * DAY)),
        1 => Just((cron("0 30 2 * * ?"), 300 * DAY)),
        1 => Just((
            TimeExpression::parse(
                TimeExpressionType::Cron,
                "0 30 2 * * ?",
                Some("Europe/Berlin")
            )
            .expect("valid cron"),
            300 * DAY
        )),
    ]
}

fn policy() -> impl Strategy<Value = MisfirePolicy> {
    prop_oneof![Just(FireAll), Just(FireOnce), Just(Skip)]
}

/// `(numerator, denominator)` fractions of a walk's length, for placing instants in it.
fn fraction() -> impl Strategy<Value = (i64, i64)> {
    (-200i64..=1_200).prop_map(|n| (n, 1_000))
}

fn at_fraction(base: EpochMs, span: i64, (n, d): (i64, i64)) -> EpochMs {
    base + span / d * n
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// The plan equals the model, and its invariants hold.
    #[test]
    fn plan_matches_the_brute_force_model(
        (e, span) in expression(),
        policy in policy(),
        threshold_ms in prop_oneof![Just(0u64), 0u64..5_000, 0u64..10_000_000],
        offset in 0i64..(2 * DAY),
        due_on_grid in any::<bool>(),
        due_at in fraction(),
        now_at in fraction(),
        start in proptest::option::of(fraction()),
        end in proptest::option::of(fraction()),
    ) {
        let base = T0 + offset;
        let lifecycle = {
            let start = start.map(|f| at_fraction(base, span, f));
            let end = end.map(|f| at_fraction(base, span, f));
            match (start, end) {
                (Some(s), Some(e)) if s > e => Lifecycle { start: Some(e), end: Some(s) },
                _ => Lifecycle { start, end },
            }
        };
        let schedule = Schedule { expression: &e, lifecycle: &lifecycle, misfire: policy };
        let raw_due = at_fraction(base, span, due_at).min(base + span / 2);
        // Mostly a real trigger of the schedule, as the schedulers hand in; sometimes any
        // instant (a stale or rounded timer).
        let due = if due_on_grid {
            match e.next_within(&Lifecycle::default(), raw_due, raw_due - 1) {
                Some(t) => t,
                None => return Ok(()),
            }
        } else {
            raw_due
        };
        let now = at_fraction(base, span, now_at);

        let got = schedule.plan(threshold_ms, due, now);
        let want = model(&e, &lifecycle, policy, threshold_ms, due, now);
        prop_assert!(!got.truncated);
        prop_assert_eq!(&got, &want);

        // Invariants, independently of the model.
        let now = now.max(due);
        prop_assert!(got.next.is_none_or(|n| n > now));
        prop_assert!(got.fires.windows(2).all(|w| w[0] < w[1]));
        prop_assert!(got.fires.iter().all(|t| *t <= now && lifecycle.contains(*t)));
        let missed_fired = got
            .fires
            .iter()
            .filter(|t| i128::from(now) - i128::from(**t) > i128::from(threshold_ms))
            .count();
        let cap = match policy { FireAll => MAX_CATCH_UP, FireOnce => 1, Skip => 0 };
        prop_assert!(missed_fired <= cap as usize);
        prop_assert!(got.dropped == 0 || missed_fired == cap as usize);

        // A reused plan gives the same answer.
        let mut reused = FirePlan { fires: vec![1, 2, 3], next: Some(9), dropped: 4, first_dropped: Some(5), truncated: true };
        schedule.plan_into(threshold_ms, due, now, &mut reused);
        prop_assert_eq!(reused, got);
    }

    /// Planning trigger by trigger, each at its own due instant, reproduces the schedule
    /// exactly: no trigger fires twice or is lost when nothing is late.
    #[test]
    fn on_time_plans_walk_the_schedule(
        (e, span) in expression(),
        offset in 0i64..(2 * DAY),
    ) {
        let lifecycle = Lifecycle::default();
        let schedule = Schedule { expression: &e, lifecycle: &lifecycle, misfire: Skip };
        let start = T0 + offset;
        let mut due = schedule.first_trigger(start, start);
        let mut fired = Vec::new();
        while let Some(d) = due.filter(|d| *d <= start + span / 10) {
            let p = schedule.plan(0, d, d);
            prop_assert_eq!(&p.fires, &vec![d]);
            fired.push(d);
            due = p.next;
        }
        let expected = e.next_n(start, start, fired.len());
        prop_assert_eq!(fired, expected);
    }
}

/// A backfill of `[from, to)` (offsets from `T0`), as offsets from `T0`, or its error.
fn backfill(
    e: &TimeExpression,
    lifecycle: Lifecycle,
    from: i64,
    to: i64,
    cap: usize,
) -> Result<Vec<i64>, BackfillError> {
    let s = Schedule {
        expression: e,
        lifecycle: &lifecycle,
        misfire: Skip,
    };
    s.backfill_times(T0 + from, T0 + to, cap)
        .map(|v| v.into_iter().map(|t| t - T0).collect())
}

#[rustfmt::skip]
#[test]
fn backfill_lists_every_trigger_of_the_range_by_table() {
    let every = Lifecycle::default();
    let hourly = cron("0 0 * * * ?");
    let h = 60 * MIN;
    // (name, expression, window, from, to, cap, the times or the error)
    type Case<'a> = (&'a str, &'a TimeExpression, Lifecycle, i64, i64, usize, Result<Vec<i64>, BackfillError>);
    let cases: [Case; 9] = [
        ("cron, from on a trigger", &hourly, every, 0, 3 * h, 100, Ok(vec![0, h, 2 * h])),
        ("cron, to excluded", &hourly, every, 1, 3 * h + 1, 100, Ok(vec![h, 2 * h, 3 * h])),
        ("cron, nothing inside", &hourly, every, 1, h, 100, Ok(vec![])),
        ("rate, the grid starts at from", &rate(420_000), every, 5, 20 * MIN, 100, Ok(vec![5, 7 * MIN + 5, 14 * MIN + 5])),
        ("lifecycle cuts both ends", &hourly, window(Some(h), Some(2 * h)), 0, DAY, 100, Ok(vec![h, 2 * h])),
        ("exactly the cap", &hourly, every, 0, DAY, 24, Ok((0..24).map(|i| i * h).collect())),
        ("one over the cap", &hourly, every, 0, DAY + 1, 24, Err(BackfillError::TooMany { cap: 24 })),
        ("empty range", &hourly, every, h, h, 100, Err(BackfillError::EmptyRange { from: T0 + h, to: T0 + h })),
        ("API has no triggers", &TimeExpression::Api, every, 0, DAY, 100, Err(BackfillError::NoTriggers)),
    ];
    for (name, e, lifecycle, from, to, cap, want) in cases {
        assert_eq!(backfill(e, lifecycle, from, to, cap), want, "{name}");
    }
}

#[test]
fn a_year_of_per_second_triggers_is_refused_after_cap_steps() {
    let e = cron("* * * * * ?");
    assert_eq!(
        backfill(&e, Lifecycle::default(), 0, 365 * DAY, MAX_BACKFILL_RUNS),
        Err(BackfillError::TooMany {
            cap: MAX_BACKFILL_RUNS
        })
    );
}

#[test]
fn backfill_takes_any_range_without_panicking() {
    let daily = expr(
        TimeExpressionType::DailyTimeInterval,
        r#"{"interval": 5, "unit": "SECONDS"}"#,
    );
    let exprs = [cron("0 0 * * * ?"), rate(1), rate(u64::MAX), daily];
    let edges = [i64::MIN, i64::MIN + 1, -1, 0, 1, i64::MAX - 1, i64::MAX];
    for e in &exprs {
        for &from in &edges {
            for &to in &edges {
                let s = Schedule {
                    expression: e,
                    lifecycle: &Lifecycle::default(),
                    misfire: Skip,
                };
                let r = s.backfill_times(from, to, MAX_BACKFILL_RUNS);
                if let Ok(times) = r {
                    assert!(
                        times.iter().all(|t| (from..to).contains(t)),
                        "{e:?} {from} {to}"
                    );
                }
            }
        }
    }
}
