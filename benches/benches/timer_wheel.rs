//! Bench group `timer_wheel`: ferrojob's hierarchical timing wheel against the structures a
//! Rust scheduler would otherwise use, doing exactly the same work (`ferrojob_benches::timers`
//! describes the four and the work): `ferrojob`, `nexus_timer`, `delay_queue`, `binary_heap`.
//!
//! Two workloads, each at `n` = 100 000 and 1 000 000 timers: insert `n`, cancel every tenth
//! (param `n`) or all but every hundredth (param `cancel_99pct/n`; DelayQueue sits this one
//! out), then advance tick by tick to 60 000 and drain. Every run checks it fired exactly the
//! timers it did not cancel.
//!
//! Besides criterion's times, `target/bench-reports/timer_wheel.json` gets, per function and
//! param: `timers_per_s` (n / median iteration time), `heap_bytes_per_timer` (bytes the
//! structure holds after all inserts, counted by a global allocator wrapper, without the
//! caller's vector of keys or handles), and for `ferrojob` the ratios `speedup_vs_<peer>`
//! (from criterion's medians) and `speedup_vs_<peer>_interleaved` (median, and `_min`, over 5
//! rounds that run all of them one after another, so load drift on a shared machine hits all
//! alike). The `delay_queue` row also carries `clock_only_s`: the time the same 60 000
//! `advance` calls take with an empty queue, i.e. the share of its figure that is tokio's
//! paused clock rather than the queue.

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, SamplingMode, Throughput};
use ferrojob_benches::timers::{
    self, paused_runtime, run_clock_only, run_delay_queue, DelayQueueOps, Ferrojob, Heap,
    NexusTimer, Plan, TimerOps, Workload,
};
use ferrojob_benches::{Report, Row};

const SIZES: [usize; 2] = [100_000, 1_000_000];

// ---------------------------------------------------------------------------------------------
// Heap accounting: a pass-through allocator that counts live bytes while `COUNTING` is set.

struct CountingAlloc;

static COUNTING: AtomicBool = AtomicBool::new(false);
static LIVE_BYTES: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every method forwards to `System` with the caller's arguments unchanged, so it
// upholds `GlobalAlloc`'s contract exactly as `System` does; the counters only observe.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            LIVE_BYTES.fetch_add(layout.size(), Ordering::Relaxed);
        }
        // SAFETY: forwarded from our caller, who upholds `alloc`'s contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if COUNTING.load(Ordering::Relaxed) {
            LIVE_BYTES.fetch_sub(layout.size(), Ordering::Relaxed);
        }
        // SAFETY: forwarded from our caller: `ptr` came from this allocator (i.e. `System`)
        // with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            LIVE_BYTES.fetch_add(new_size, Ordering::Relaxed);
            LIVE_BYTES.fetch_sub(layout.size(), Ordering::Relaxed);
        }
        // SAFETY: forwarded from our caller, who upholds `realloc`'s contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

/// Heap bytes allocated (and not freed) while running `build`, which returns what it built
/// so that it is measured before being dropped.
fn heap_bytes_of<R>(build: impl FnOnce() -> R) -> (usize, R) {
    LIVE_BYTES.store(0, Ordering::Relaxed);
    COUNTING.store(true, Ordering::Relaxed);
    let built = build();
    COUNTING.store(false, Ordering::Relaxed);
    (LIVE_BYTES.load(Ordering::Relaxed), built)
}

// ---------------------------------------------------------------------------------------------

/// The implementations, in the order they run.
const FUNCTIONS: [&str; 4] = ["ferrojob", "nexus_timer", "delay_queue", "binary_heap"];

/// Whether `function` runs `workload` (DelayQueue only the historical 10 % one, to keep the
/// bench's running time in check).
fn runs(function: &str, workload: Workload) -> bool {
    function != "delay_queue" || workload == Workload::Cancel10
}

/// One iteration of `function` on `plan`; returns how many timers fired.
fn run_one(function: &str, rt: &tokio::runtime::Runtime, deadlines: &[u64], plan: &Plan) -> usize {
    let n = deadlines.len();
    match function {
        "ferrojob" => timers::run(Ferrojob::with_capacity(n), deadlines, plan),
        "nexus_timer" => timers::run(NexusTimer::with_capacity(n), deadlines, plan),
        "binary_heap" => timers::run(Heap::with_capacity(n), deadlines, plan),
        "delay_queue" => run_delay_queue(rt, deadlines, plan),
        _ => unreachable!("unknown function {function}"),
    }
}

/// Per-iteration times (seconds) by (function, param), collected from criterion's runs.
type Samples = BTreeMap<(&'static str, String), Vec<f64>>;

fn median(samples: &mut [f64]) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples.get(samples.len() / 2).copied().unwrap_or(f64::NAN)
}

/// A criterion `iter_custom` routine that runs `run` (checking it fired `expected` timers)
/// and records each iteration's time in `samples`.
fn timed<'a>(
    samples: &'a mut Samples,
    name: &'static str,
    param: String,
    expected: usize,
    mut run: impl FnMut() -> usize + 'a,
) -> impl FnMut(u64) -> Duration + 'a {
    let times = samples.entry((name, param)).or_default();
    move |iters| {
        let started = Instant::now();
        for _ in 0..iters {
            assert_eq!(run(), expected, "{name} fired the wrong number of timers");
        }
        let elapsed = started.elapsed();
        times.push(elapsed.as_secs_f64() / iters as f64);
        elapsed
    }
}

fn bench(c: &mut Criterion, samples: &mut Samples) {
    let mut group = c.benchmark_group("timer_wheel");
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    let rt = paused_runtime();
    for workload in Workload::ALL {
        for n in SIZES {
            let deadlines = timers::deadlines(n);
            let plan = Plan::new(workload, n);
            let param = workload.param(n);
            group.throughput(Throughput::Elements(n as u64));
            for function in FUNCTIONS.into_iter().filter(|f| runs(f, workload)) {
                let expected = workload.expected_fired(n);
                let run = || run_one(function, &rt, &deadlines, &plan);
                let mut routine = timed(samples, function, param.clone(), expected, run);
                group.bench_function(BenchmarkId::new(function, &param), |b| {
                    b.iter_custom(&mut routine)
                });
            }
        }
    }
    group.finish();
}

/// Rounds of one iteration per implementation, interleaved, for ratios that machine-load
/// drift during a run cannot skew (criterion measures them one after the other).
const INTERLEAVED_ROUNDS: usize = 5;

fn seconds(run: impl FnOnce() -> usize) -> f64 {
    let started = Instant::now();
    black_box(run());
    started.elapsed().as_secs_f64()
}

/// Median and minimum over interleaved rounds of (peer time / ferrojob time), per peer.
fn interleaved_speedups(
    rt: &tokio::runtime::Runtime,
    deadlines: &[u64],
    plan: &Plan,
    peers: &[&'static str],
) -> Vec<(&'static str, f64, f64)> {
    let mut ratios: Vec<Vec<f64>> = vec![Vec::new(); peers.len()];
    for _ in 0..INTERLEAVED_ROUNDS {
        let ours = seconds(|| run_one("ferrojob", rt, deadlines, plan));
        for (peer, ratios) in peers.iter().zip(&mut ratios) {
            ratios.push(seconds(|| run_one(peer, rt, deadlines, plan)) / ours);
        }
    }
    peers
        .iter()
        .zip(ratios)
        .map(|(peer, mut ratios)| {
            let min = ratios.iter().copied().fold(f64::INFINITY, f64::min);
            (*peer, median(&mut ratios), min)
        })
        .collect()
}

/// Heap bytes per timer of `function` after inserting `deadlines`, without the caller's
/// vector of keys or handles.
fn heap_bytes_per_timer(function: &str, rt: &tokio::runtime::Runtime, deadlines: &[u64]) -> f64 {
    let n = deadlines.len();
    let bytes = match function {
        "ferrojob" => {
            let (bytes, ops) = heap_bytes_of(|| {
                let mut ops = Ferrojob::with_capacity(n);
                ops.insert_all(deadlines);
                ops
            });
            bytes - ops.keys.capacity() * std::mem::size_of::<ferrojob::wheel::TimerKey>()
        }
        "nexus_timer" => {
            let (bytes, ops) = heap_bytes_of(|| {
                let mut ops = NexusTimer::with_capacity(n);
                ops.insert_all(deadlines);
                ops
            });
            bytes - ops.handles.capacity() * std::mem::size_of_val(&ops.handles[0])
        }
        "binary_heap" => {
            heap_bytes_of(|| {
                let mut ops = Heap::with_capacity(n);
                ops.insert_all(deadlines);
                ops
            })
            .0
        }
        "delay_queue" => rt.block_on(async {
            let (bytes, ops) = heap_bytes_of(|| {
                let mut ops = DelayQueueOps::with_capacity(n);
                ops.insert_all(deadlines);
                ops
            });
            bytes - ops.keys.capacity() * std::mem::size_of_val(&ops.keys[0])
        }),
        _ => unreachable!("unknown function {function}"),
    };
    bytes as f64 / n as f64
}

fn report(samples: &mut Samples) {
    let rt = paused_runtime();
    let mut report = Report::new("timer_wheel");
    for workload in Workload::ALL {
        for n in SIZES {
            let deadlines = timers::deadlines(n);
            let param = workload.param(n);
            let mut per_s = BTreeMap::new();
            for name in FUNCTIONS {
                if let Some(times) = samples.get_mut(&(name, param.clone())) {
                    if !times.is_empty() {
                        per_s.insert(name, n as f64 / median(times));
                    }
                }
            }
            let Some(&ours) = per_s.get("ferrojob") else {
                continue; // filtered out on the command line
            };

            let mut row = Row::new("ferrojob", &param)
                .with("timers_per_s", ours)
                .with(
                    "heap_bytes_per_timer",
                    heap_bytes_per_timer("ferrojob", &rt, &deadlines),
                );
            if workload == Workload::Cancel10 {
                let mut wheel = Ferrojob::with_capacity(n);
                wheel.insert_all(&deadlines);
                row = row.with(
                    "wheel_heap_bytes_per_timer",
                    wheel.wheel.heap_bytes() as f64 / n as f64,
                );
            }
            let peers: Vec<&'static str> = FUNCTIONS
                .into_iter()
                .filter(|f| *f != "ferrojob" && per_s.contains_key(f))
                .collect();
            for peer in &peers {
                row = row.with(&format!("speedup_vs_{peer}"), ours / per_s[peer]);
            }
            for (peer, med, min) in
                interleaved_speedups(&rt, &deadlines, &Plan::new(workload, n), &peers)
            {
                row = row
                    .with(&format!("speedup_vs_{peer}_interleaved"), med)
                    .with(&format!("speedup_vs_{peer}_interleaved_min"), min);
            }
            report.push(row);

            for peer in &peers {
                let mut row = Row::new(peer, &param)
                    .with("timers_per_s", per_s[peer])
                    .with(
                        "heap_bytes_per_timer",
                        heap_bytes_per_timer(peer, &rt, &deadlines),
                    );
                if *peer == "delay_queue" {
                    row = row.with("clock_only_s", run_clock_only(&rt).as_secs_f64());
                }
                report.push(row);
            }
        }
    }
    match report.write() {
        Ok(path) => println!("timer_wheel: wrote {}", path.display()),
        Err(err) => eprintln!("timer_wheel: could not write the report: {err}"),
    }
}

fn main() {
    let mut criterion = Criterion::default().configure_from_args();
    let mut samples = Samples::new();
    bench(&mut criterion, &mut samples);
    criterion.final_summary();
    report(&mut samples);
}
