//! Bench group `cron_next`: time to compute the next 100 triggers of a cron expression from a
//! fixed start, ferrojob (`ferrojob`) against the `cron` crate 0.17 (`cron_crate`), side by side.
//!
//! Only expressions both support are compared (the `cron` crate has no `L`, `W` or `#`); both
//! number weekdays 1 = SUN ... 7 = SAT, so the text is the same for both. Before timing, the
//! bench checks that both produce the same 100 instants, and records that in
//! `target/bench-reports/cron_next.json` (`identical`, `triggers`).
//!
//! `cargo bench -p ferrojob-benches --no-default-features --features engine --bench cron_next`

use std::hint::black_box;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Tz;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use ferrojob::time_expression::{CronSchedule, EpochMs};
use ferrojob_benches::{Report, Row};

/// Triggers computed per iteration.
const N: usize = 100;

/// (parameter, expression, time zone).
const CASES: [(&str, &str, Tz); 6] = [
    ("every_second", "* * * * * ?", Tz::UTC),
    ("every_15_minutes", "0 0/15 * * * ?", Tz::UTC),
    ("weekdays_9_to_5", "0 0 9-17 ? * MON-FRI", Tz::UTC),
    (
        "weekdays_9_to_5_berlin",
        "0 0 9-17 ? * MON-FRI",
        Tz::Europe__Berlin,
    ),
    (
        "complex_list_step",
        "0 5/15 8-20/2 1,10,20 JAN-JUN,SEP ?",
        Tz::UTC,
    ),
    ("monthly_1st_and_15th", "0 30 4 1,15 * ? 2026-2099", Tz::UTC),
];

/// 2026-01-01T00:00:00Z.
const START_MS: EpochMs = 1_767_225_600_000;

fn ferrojob_next(schedule: &CronSchedule, start: EpochMs) -> Vec<EpochMs> {
    let mut out = Vec::with_capacity(N);
    let mut after = start;
    while out.len() < N {
        match schedule.next_after(after) {
            Some(t) => {
                out.push(t);
                after = t;
            }
            None => break,
        }
    }
    out
}

fn cron_crate_next(schedule: &cron::Schedule, start: &DateTime<Tz>) -> Vec<EpochMs> {
    schedule
        .after(start)
        .take(N)
        .map(|t| t.timestamp_millis())
        .collect()
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("cron_next");
    group.sample_size(20);
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(2));
    let mut report = Report::new("cron_next");
    for (param, expr, tz) in CASES {
        let ours = CronSchedule::parse(expr, tz).expect("ferrojob parses the bench expression");
        let theirs = cron::Schedule::from_str(expr).expect("cron parses the bench expression");
        let start = Utc
            .timestamp_millis_opt(START_MS)
            .single()
            .expect("valid start")
            .with_timezone(&tz);
        let a = ferrojob_next(&ours, START_MS);
        let b = cron_crate_next(&theirs, &start);
        let identical = a == b && a.len() == N;
        if !identical {
            eprintln!("cron_next/{param}: ferrojob and cron disagree on `{expr}`: {a:?} vs {b:?}");
        }
        report.push(
            Row::new("ferrojob", param)
                .with("triggers", a.len())
                .with("identical", identical),
        );
        report.push(
            Row::new("cron_crate", param)
                .with("triggers", b.len())
                .with("identical", identical),
        );
        group.bench_function(BenchmarkId::new("ferrojob", param), |bch| {
            bch.iter(|| ferrojob_next(black_box(&ours), black_box(START_MS)))
        });
        group.bench_function(BenchmarkId::new("cron_crate", param), |bch| {
            bch.iter(|| cron_crate_next(black_box(&theirs), black_box(&start)))
        });
    }
    group.finish();
    if let Err(e) = report.write() {
        eprintln!("cron_next: cannot write the report: {e}");
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
