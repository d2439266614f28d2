//! Scenario bench `embedded_fire`: the embedded scheduler against tokio-cron-scheduler, in the
//! same process and the same run, on the real clock.
//!
//! Scenarios (each for ferrojob and `tokio_cron_scheduler`):
//! - `window/N`: N one-shot jobs due at distinct instants spread evenly over a 2 s window that
//!   starts 1 s after registration ends (ferrojob: API jobs triggered with a delay; tcs:
//!   `Job::new_one_shot_async`).
//! - `fixed_rate/N`: N jobs with a 1 s period, observed for 10 s. ferrojob is run twice: with
//!   the jobs' phases spread over the period (`spread`: jobs created at different moments, the
//!   normal case) and all in phase (`burst`: N fires in the same millisecond).
//!
//! Per scenario: fired, expected, missed (triggers in the observation window that did not fire
//! by its end + 1 s), early (fires that ran *before* their due instant), lateness p50/p99/max
//! (µs; from the trigger's due instant to the moment the processor runs; negative = early), and
//! CPU seconds of the whole process during the scenario. Separately, `memory/N`: the heap bytes
//! per scheduled job, measured by a counting global allocator while N jobs are registered on an
//! idle scheduler. Rows go to
//! `target/bench-reports/embedded_fire.json`.
//!
//! `EMBEDDED_FIRE_SIZES=1000,10000` limits the sizes (default 1000,10000,100000);
//! `EMBEDDED_FIRE_SECS` sets the fixed-rate observation (default 10);
//! `EMBEDDED_FIRE_MEMORY_ONLY=1` runs only `memory/N` (seconds, even at 1,000,000 jobs).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ferrojob::clock::{Clock, SystemClock};
use ferrojob::embedded::{
    JobSpec, Processor, RunContext, Scheduler, SchedulerConfig, TriggerOptions,
};
use ferrojob::time_expression::{Lifecycle, TimeExpression, TimeExpressionType};
use ferrojob_benches::{percentile, Report, Row};

/// Counts the bytes currently allocated, to measure heap bytes per job.
struct Counting;

static ALLOCATED: AtomicUsize = AtomicUsize::new(0);

// SAFETY: delegates every call to the system allocator unchanged; the counter is a side effect
// that touches no allocation.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATED.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        ALLOCATED.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: `ptr` was allocated by `System` with `layout` (see `alloc`).
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATED.fetch_add(new_size, Ordering::Relaxed);
        ALLOCATED.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// User + system CPU seconds of this process so far (from /proc/self/stat; 10 ms resolution).
fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return f64::NAN;
    };
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let Some(rest) = stat.rfind(')').and_then(|i| stat.get(i + 2..)) else {
        return f64::NAN;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(f64::NAN)
    };
    (ticks(11) + ticks(12)) / 100.0
}

/// Lateness samples (µs) and counts, shared by the processors of one scenario.
#[derive(Default)]
struct Observed {
    lateness_us: Mutex<Vec<i64>>,
    /// Fires whose due instant lies in the observation window.
    in_window: AtomicU64,
}

impl Observed {
    fn record(&self, due_us: i64, now_us: i64, window_end_us: i64) {
        if due_us <= window_end_us {
            self.in_window.fetch_add(1, Ordering::Relaxed);
            if let Ok(mut l) = self.lateness_us.lock() {
                l.push(now_us - due_us);
            }
        }
    }
}

struct Outcome {
    expected: u64,
    fired: u64,
    lateness_us: Vec<i64>,
    cpu_s: f64,
    /// Seconds spent registering the jobs (before the observation starts).
    register_s: f64,
}

fn row(function: &str, param: String, mut o: Outcome) -> Row {
    o.lateness_us.sort_unstable();
    let p = |q| percentile(&o.lateness_us, q).unwrap_or(-1);
    Row::new(function, param)
        .with("expected", o.expected)
        .with("fired", o.fired)
        .with("missed", o.expected.saturating_sub(o.fired))
        .with("early", o.lateness_us.iter().filter(|l| **l < 0).count())
        .with("lateness_p50_us", p(0.5))
        .with("lateness_p99_us", p(0.99))
        .with("lateness_max_us", p(1.0))
        .with("cpu_s", (o.cpu_s * 100.0).round() / 100.0)
        .with("register_s", (o.register_s * 1000.0).round() / 1000.0)
}

fn now_us() -> i64 {
    SystemClock.now_us()
}

// ---------------------------------------------------------------------------------------------
// ferrojob

async fn ferrojob_window(n: usize) -> Outcome {
    let scheduler = Scheduler::with_clock(Arc::new(SystemClock), SchedulerConfig::default());
    let observed = Arc::new(Observed::default());
    let obs = Arc::clone(&observed);
    let processor: Arc<dyn Processor> = Arc::new(move |ctx: RunContext| {
        let now = ctx.clock().now_us();
        obs.record(ctx.scheduled_at() * 1000, now, i64::MAX);
        futures_ready()
    });
    let api = TimeExpression::parse(TimeExpressionType::Api, "", None).expect("api");
    let reg0 = now_us();
    let mut jobs = Vec::with_capacity(n);
    for i in 0..n {
        let id = scheduler
            .register_arc(
                JobSpec::new(format!("w{i}"), api.clone()),
                Arc::clone(&processor),
            )
            .expect("register");
        jobs.push(id);
    }
    scheduler.settle().await.expect("settle");
    let register_s = (now_us() - reg0) as f64 / 1e6;
    let cpu0 = cpu_seconds();
    let window_ms = 2_000u64;
    for (i, id) in jobs.iter().enumerate() {
        let delay = 1_000 + (i as u64 * window_ms) / n as u64;
        scheduler
            .trigger(*id, TriggerOptions::now().with_delay_ms(delay))
            .expect("trigger");
    }
    tokio::time::sleep(Duration::from_millis(1_000 + window_ms + 1_000)).await;
    let cpu = cpu_seconds() - cpu0;
    scheduler.shutdown().await;
    let lateness_us = std::mem::take(&mut *observed.lateness_us.lock().expect("lock"));
    Outcome {
        expected: n as u64,
        fired: observed.in_window.load(Ordering::Relaxed),
        lateness_us,
        cpu_s: cpu,
        register_s,
    }
}

fn futures_ready() -> std::future::Ready<ferrojob::embedded::ProcessResult> {
    std::future::ready(Ok(String::new()))
}

async fn ferrojob_fixed_rate(n: usize, secs: u64, spread: bool) -> Outcome {
    let scheduler = Scheduler::with_clock(Arc::new(SystemClock), SchedulerConfig::default());
    let observed = Arc::new(Observed::default());
    let start_ms = SystemClock.now_ms() + 2_000;
    let end_us = (start_ms + i64::try_from(secs).unwrap_or(10) * 1_000) * 1000;
    let obs = Arc::clone(&observed);
    let processor: Arc<dyn Processor> = Arc::new(move |ctx: RunContext| {
        let now = ctx.clock().now_us();
        obs.record(ctx.scheduled_at() * 1000, now, end_us);
        futures_ready()
    });
    let rate = TimeExpression::parse(TimeExpressionType::FixedRate, "1000", None).expect("rate");
    let reg0 = now_us();
    for i in 0..n {
        // The window opens at `start_ms`; each job's grid is offset by its phase.
        let phase = if spread {
            (i as i64 * 1_000) / n as i64
        } else {
            0
        };
        let spec = JobSpec::new(format!("r{i}"), rate.clone()).with_lifecycle(Lifecycle {
            start: Some(start_ms - 1_000 + phase),
            end: None,
        });
        scheduler
            .register_arc(spec, Arc::clone(&processor))
            .expect("register");
    }
    scheduler.settle().await.expect("settle");
    let register_s = (now_us() - reg0) as f64 / 1e6;
    let cpu0 = cpu_seconds();
    let wait_ms = (start_ms - SystemClock.now_ms()).max(0) as u64 + secs * 1_000 + 1_000;
    tokio::time::sleep(Duration::from_millis(wait_ms)).await;
    let cpu = cpu_seconds() - cpu0;
    scheduler.shutdown().await;
    let lateness_us = std::mem::take(&mut *observed.lateness_us.lock().expect("lock"));
    // Due instants in [start, end]: each job's grid point start-1000+phase+k·1000 for k ≥ 1.
    let expected = n as u64 * secs;
    Outcome {
        expected,
        fired: observed.in_window.load(Ordering::Relaxed).min(expected),
        lateness_us,
        cpu_s: cpu,
        register_s,
    }
}

/// Heap bytes per scheduled job: `n` fixed-rate jobs registered on an otherwise idle
/// scheduler, measured by the counting allocator once the driver has scheduled them all.
async fn ferrojob_memory(n: usize) -> f64 {
    let scheduler = Scheduler::with_clock(Arc::new(SystemClock), SchedulerConfig::default());
    let processor: Arc<dyn Processor> = Arc::new(|_ctx: RunContext| futures_ready());
    let rate = TimeExpression::parse(TimeExpressionType::FixedRate, "60000", None).expect("rate");
    // The names are built before the baseline and stay alive until after the count: each job
    // gets its own copy, allocated (and counted) during registration, and the caller's vector
    // is neither counted nor freed in between (freeing it would hide 24 bytes per job).
    let names: Vec<String> = (0..n).map(|i| format!("r{i}")).collect();
    scheduler.settle().await.expect("settle");
    let before = ALLOCATED.load(Ordering::SeqCst);
    for name in &names {
        let spec = JobSpec::new(name.as_str(), rate.clone());
        scheduler
            .register_arc(spec, Arc::clone(&processor))
            .expect("register");
    }
    scheduler.settle().await.expect("settle");
    let after = ALLOCATED.load(Ordering::SeqCst);
    drop(names);
    scheduler.shutdown().await;
    after.saturating_sub(before) as f64 / n as f64
}

async fn tcs_memory(n: usize) -> Option<f64> {
    use tokio_cron_scheduler::{Job, JobScheduler};
    let sched = JobScheduler::new().await.ok()?;
    // Like ferrojob's, the jobs themselves are built after the baseline and count.
    let before = ALLOCATED.load(Ordering::SeqCst);
    for _ in 0..n {
        let job = Job::new_repeated_async(Duration::from_secs(60), |_id, _l| Box::pin(async {}));
        sched.add(job.ok()?).await.ok()?;
    }
    let after = ALLOCATED.load(Ordering::SeqCst);
    let mut sched = sched;
    let _ = sched.shutdown().await;
    Some(after.saturating_sub(before) as f64 / n as f64)
}

// ---------------------------------------------------------------------------------------------
// tokio-cron-scheduler

async fn tcs_window(n: usize) -> Option<Outcome> {
    use tokio_cron_scheduler::{Job, JobScheduler};
    let sched = JobScheduler::new().await.ok()?;
    let observed = Arc::new(Observed::default());
    let window_ms = 2_000i64;
    // A one-shot job's delay is fixed when it is created, so the window starts after a lead
    // meant to cover creating and adding every job (1 s + 0.5 ms per job); when adding takes
    // longer, the fires come late and the lateness shows it.
    let reg_start = now_us();
    let lead_ms = 1_000 + (n as i64 / 2);
    let mut added = Vec::with_capacity(n);
    for i in 0..n {
        let delay_ms = lead_ms + (i as i64 * window_ms) / n as i64;
        let due = reg_start + delay_ms * 1000;
        let obs = Arc::clone(&observed);
        let job = Job::new_one_shot_async(
            Duration::from_millis(u64::try_from(delay_ms).unwrap_or(0)),
            move |_id, _l| {
                let obs = Arc::clone(&obs);
                Box::pin(async move {
                    obs.record(due, now_us(), i64::MAX);
                })
            },
        )
        .ok()?;
        added.push(job);
    }
    for job in added {
        sched.add(job).await.ok()?;
    }
    let registered = now_us();
    if registered > reg_start + lead_ms * 1000 {
        eprintln!(
            "tokio_cron_scheduler window/{n}: registration took {} ms, longer than the lead",
            (registered - reg_start) / 1000
        );
    }
    let cpu0 = cpu_seconds();
    sched.start().await.ok()?;
    let end = reg_start + (lead_ms + window_ms + 1_000) * 1000;
    let wait = (end - now_us()).max(0);
    tokio::time::sleep(Duration::from_micros(wait as u64)).await;
    let cpu = cpu_seconds() - cpu0;
    let mut sched = sched;
    let _ = sched.shutdown().await;
    let lateness_us = std::mem::take(&mut *observed.lateness_us.lock().ok()?);
    Some(Outcome {
        expected: n as u64,
        fired: observed.in_window.load(Ordering::Relaxed),
        lateness_us,
        cpu_s: cpu,
        register_s: (registered - reg_start) as f64 / 1e6,
    })
}

async fn tcs_fixed_rate(n: usize, secs: u64) -> Option<Outcome> {
    use tokio_cron_scheduler::{Job, JobScheduler};
    let sched = JobScheduler::new().await.ok()?;
    let observed = Arc::new(Observed::default());
    // Each job's grid is counted from its first fire (tcs gives no way to set a phase).
    let reg0 = now_us();
    let mut jobs = Vec::with_capacity(n);
    let end_us = Arc::new(AtomicI64::new(i64::MAX));
    for _ in 0..n {
        let obs = Arc::clone(&observed);
        let end = Arc::clone(&end_us);
        let first = Arc::new(AtomicI64::new(i64::MIN));
        let count = Arc::new(AtomicI64::new(0));
        let job = Job::new_repeated_async(Duration::from_secs(1), move |_id, _l| {
            let obs = Arc::clone(&obs);
            let now = now_us();
            let _ = first.compare_exchange(i64::MIN, now, Ordering::Relaxed, Ordering::Relaxed);
            let k = count.fetch_add(1, Ordering::Relaxed);
            let due = first.load(Ordering::Relaxed) + k * 1_000_000;
            let end = end.load(Ordering::Relaxed);
            Box::pin(async move {
                obs.record(due, now, end);
            })
        })
        .ok()?;
        jobs.push(job);
    }
    for job in jobs {
        sched.add(job).await.ok()?;
    }
    let register_s = (now_us() - reg0) as f64 / 1e6;
    let cpu0 = cpu_seconds();
    let start = now_us();
    end_us.store(
        start + i64::try_from(secs).unwrap_or(10) * 1_000_000,
        Ordering::Relaxed,
    );
    sched.start().await.ok()?;
    tokio::time::sleep(Duration::from_secs(secs + 1)).await;
    let cpu = cpu_seconds() - cpu0;
    let mut sched = sched;
    let _ = sched.shutdown().await;
    let lateness_us = std::mem::take(&mut *observed.lateness_us.lock().ok()?);
    let expected = n as u64 * secs;
    Some(Outcome {
        expected,
        fired: observed.in_window.load(Ordering::Relaxed).min(expected),
        lateness_us,
        cpu_s: cpu,
        register_s,
    })
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing: run tiny then.
    let benching = std::env::args().any(|a| a == "--bench");
    let mut sizes: Vec<usize> = std::env::var("EMBEDDED_FIRE_SIZES")
        .ok()
        .map(|s| s.split(',').filter_map(|x| x.trim().parse().ok()).collect())
        .unwrap_or_else(|| {
            if benching {
                vec![1_000, 10_000, 100_000]
            } else {
                vec![100]
            }
        });
    let secs: u64 = std::env::var("EMBEDDED_FIRE_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(if benching { 10 } else { 1 });
    // Both schedulers get every core: tokio-cron-scheduler a runtime with one worker per core,
    // ferrojob its driver thread plus a runtime with one worker fewer (its documented setup).
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let runtime = |workers: usize| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers.max(1))
            .enable_all()
            .build()
            .expect("runtime")
    };
    let ours = runtime(cores - 1);
    let theirs = runtime(cores);
    let mut report = Report::new("embedded_fire");
    for &n in &sizes {
        let bytes = ours.block_on(ferrojob_memory(n));
        report.push(
            Row::new("ferrojob", format!("memory/{n}")).with("heap_bytes_per_job", bytes.round()),
        );
        if let Some(bytes) = theirs.block_on(tcs_memory(n)) {
            report.push(
                Row::new("tokio_cron_scheduler", format!("memory/{n}"))
                    .with("heap_bytes_per_job", bytes.round()),
            );
        }
    }
    if std::env::var_os("EMBEDDED_FIRE_MEMORY_ONLY").is_some() {
        sizes.clear();
    }
    for &n in &sizes {
        let o = ours.block_on(ferrojob_window(n));
        report.push(row("ferrojob", format!("window/{n}"), o));
        match theirs.block_on(tcs_window(n)) {
            Some(o) => report.push(row("tokio_cron_scheduler", format!("window/{n}"), o)),
            None => eprintln!("tokio_cron_scheduler window/{n}: failed to run"),
        }
    }
    for &n in &sizes {
        let o = ours.block_on(ferrojob_fixed_rate(n, secs, true));
        report.push(row("ferrojob", format!("fixed_rate_spread/{n}"), o));
        let o = ours.block_on(ferrojob_fixed_rate(n, secs, false));
        report.push(row("ferrojob", format!("fixed_rate_burst/{n}"), o));
        match theirs.block_on(tcs_fixed_rate(n, secs)) {
            Some(o) => report.push(row("tokio_cron_scheduler", format!("fixed_rate/{n}"), o)),
            None => eprintln!("tokio_cron_scheduler fixed_rate/{n}: failed to run"),
        }
    }
    match report.write() {
        Ok(path) => println!("wrote {}", path.display()),
        Err(e) => eprintln!("could not write the report: {e}"),
    }
}
