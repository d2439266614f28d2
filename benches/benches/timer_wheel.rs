//! Bench group `timer_wheel`: ferrojob's hierarchical timing wheel against the two structures
//! a Rust scheduler would otherwise use, doing exactly the same work:
//!
//! - `ferrojob`: [`ferrojob::wheel::TimerWheel`], polled once per tick;
//! - `delay_queue`: `tokio_util::time::DelayQueue` (a slab plus tokio's own 6-level wheel) on a
//!   current-thread runtime with paused time, the clock advanced 1 ms per tick with
//!   `tokio::time::advance` and drained with `poll_expired` until `Pending`;
//! - `binary_heap`: `std::collections::BinaryHeap<Reverse<(deadline, seq, id)>>` with lazy
//!   cancel (a tombstone bit per id, skipped when popped).
//!
//! Work per iteration, parameter `n` = number of timers (100 000 and 1 000 000): insert `n`
//! timers with pseudo-random deadlines spread over 60 s of 1 ms ticks (the same deadlines for
//! all three), cancel every tenth (10 %), then advance tick by tick to 60 000 and drain
//! everything due at each tick. Every run checks it fired exactly the `0.9 n` live timers.
//!
//! Besides criterion's times, `target/bench-reports/timer_wheel.json` gets, per function and
//! `n`: `timers_per_s` (n / median iteration time), `heap_bytes_per_timer` (bytes the
//! structure holds after all inserts, counted by a global allocator wrapper), and for
//! `ferrojob` the ratios `speedup_vs_delay_queue` and `speedup_vs_binary_heap` (from criterion's
//! medians) and `speedup_vs_*_interleaved` (median, and `_min`, over 5 rounds that run the three
//! one after another, so load drift on a shared machine hits all three alike). The `delay_queue`
//! row also carries `clock_only_s`: the time the same 60 000 `advance` calls take with an empty
//! queue, i.e. the share of its figure that is tokio's paused clock rather than the queue.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, SamplingMode, Throughput};
use ferrojob::wheel::TimerWheel;
use ferrojob_benches::{Report, Row};
use tokio_util::time::DelayQueue;

/// 60 s of 1 ms ticks.
const SPAN_TICKS: u64 = 60_000;
/// Every `CANCEL_EVERY`-th timer is cancelled (10 %).
const CANCEL_EVERY: usize = 10;
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
// The workload.

/// `n` deadlines in `1..=SPAN_TICKS`, deterministic (splitmix64), in insertion order.
fn deadlines(n: usize) -> Vec<u64> {
    let mut state = 0x9E37_79B9_7F4A_7C15_u64;
    (0..n)
        .map(|_| {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            1 + z % SPAN_TICKS
        })
        .collect()
}

fn expected_fired(n: usize) -> usize {
    n - n.div_ceil(CANCEL_EVERY)
}

// ---------------------------------------------------------------------------------------------
// The three implementations, each doing insert all / cancel 10 % / tick-by-tick drain.

fn build_wheel(deadlines: &[u64]) -> (TimerWheel<u32>, Vec<ferrojob::wheel::TimerKey>) {
    let mut wheel = TimerWheel::with_capacity(0, deadlines.len());
    let mut keys = Vec::with_capacity(deadlines.len());
    for (id, &deadline) in deadlines.iter().enumerate() {
        keys.push(wheel.insert(deadline, id as u32));
    }
    (wheel, keys)
}

fn run_wheel(deadlines: &[u64]) -> usize {
    let (mut wheel, keys) = build_wheel(deadlines);
    for key in keys.iter().step_by(CANCEL_EVERY) {
        black_box(wheel.cancel(*key));
    }
    let mut fired = 0;
    for tick in 1..=SPAN_TICKS {
        while let Some(expired) = wheel.poll(tick) {
            black_box(expired);
            fired += 1;
        }
    }
    fired
}

type Heap = BinaryHeap<Reverse<(u64, u64, u32)>>;

fn build_heap(deadlines: &[u64]) -> (Heap, Vec<u64>) {
    let mut heap = BinaryHeap::with_capacity(deadlines.len());
    let tombstones = vec![0u64; deadlines.len().div_ceil(64)];
    for (id, &deadline) in deadlines.iter().enumerate() {
        // The sequence number keeps same-deadline timers in insertion order, as the wheel does.
        heap.push(Reverse((deadline, id as u64, id as u32)));
    }
    (heap, tombstones)
}

fn run_heap(deadlines: &[u64]) -> usize {
    let (mut heap, mut tombstones) = build_heap(deadlines);
    for id in (0..deadlines.len()).step_by(CANCEL_EVERY) {
        tombstones[id / 64] |= 1 << (id % 64);
    }
    let mut fired = 0;
    for tick in 1..=SPAN_TICKS {
        while let Some(&Reverse((deadline, _, id))) = heap.peek() {
            if deadline > tick {
                break;
            }
            heap.pop();
            if tombstones[id as usize / 64] & (1 << (id % 64)) != 0 {
                continue;
            }
            black_box(id);
            fired += 1;
        }
    }
    fired
}

fn paused_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("tokio runtime")
}

fn build_delay_queue(
    deadlines: &[u64],
) -> (DelayQueue<u32>, Vec<tokio_util::time::delay_queue::Key>) {
    let start = tokio::time::Instant::now();
    let mut queue = DelayQueue::with_capacity(deadlines.len());
    let mut keys = Vec::with_capacity(deadlines.len());
    for (id, &deadline) in deadlines.iter().enumerate() {
        keys.push(queue.insert_at(id as u32, start + Duration::from_millis(deadline)));
    }
    (queue, keys)
}

/// Runs on `rt` (paused clock). The queue's clock origin is the runtime's current instant, so
/// deadline `d` is exactly `d` ms after it, as for the other two.
fn run_delay_queue(rt: &tokio::runtime::Runtime, deadlines: &[u64]) -> usize {
    rt.block_on(async {
        let (mut queue, keys) = build_delay_queue(deadlines);
        for key in keys.iter().step_by(CANCEL_EVERY) {
            black_box(queue.remove(key));
        }
        let mut cx = Context::from_waker(Waker::noop());
        let mut fired = 0;
        for _ in 1..=SPAN_TICKS {
            tokio::time::advance(Duration::from_millis(1)).await;
            while let Poll::Ready(Some(expired)) = queue.poll_expired(&mut cx) {
                black_box(expired);
                fired += 1;
            }
        }
        fired
    })
}

/// The paused clock alone: 60 000 one-millisecond `advance` calls with an empty queue.
fn run_clock_only(rt: &tokio::runtime::Runtime) -> Duration {
    rt.block_on(async {
        let mut queue: DelayQueue<u32> = DelayQueue::new();
        let mut cx = Context::from_waker(Waker::noop());
        let started = Instant::now();
        for _ in 1..=SPAN_TICKS {
            tokio::time::advance(Duration::from_millis(1)).await;
            while let Poll::Ready(Some(expired)) = queue.poll_expired(&mut cx) {
                black_box(expired);
            }
        }
        started.elapsed()
    })
}

// ---------------------------------------------------------------------------------------------

/// Per-iteration times (seconds) by (function, n), collected from criterion's runs.
type Samples = BTreeMap<(&'static str, usize), Vec<f64>>;

fn median(samples: &mut [f64]) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples.get(samples.len() / 2).copied().unwrap_or(f64::NAN)
}

/// A criterion `iter_custom` routine that runs `run` (checking it fired the `0.9 n` live
/// timers) and records each iteration's time in `samples`.
fn timed<'a>(
    samples: &'a mut Samples,
    name: &'static str,
    n: usize,
    mut run: impl FnMut() -> usize + 'a,
) -> impl FnMut(u64) -> Duration + 'a {
    let expected = expected_fired(n);
    let times = samples.entry((name, n)).or_default();
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
    for n in SIZES {
        let deadlines = deadlines(n);
        group.throughput(Throughput::Elements(n as u64));

        let run = || run_wheel(&deadlines);
        let mut routine = timed(samples, "ferrojob", n, run);
        group.bench_function(BenchmarkId::new("ferrojob", n), |b| {
            b.iter_custom(&mut routine)
        });
        drop(routine);

        let run = || run_delay_queue(&rt, &deadlines);
        let mut routine = timed(samples, "delay_queue", n, run);
        group.bench_function(BenchmarkId::new("delay_queue", n), |b| {
            b.iter_custom(&mut routine)
        });
        drop(routine);

        let run = || run_heap(&deadlines);
        let mut routine = timed(samples, "binary_heap", n, run);
        group.bench_function(BenchmarkId::new("binary_heap", n), |b| {
            b.iter_custom(&mut routine)
        });
        drop(routine);
    }
    group.finish();
}

/// Rounds of one iteration per implementation, interleaved, for ratios that machine-load
/// drift during a run cannot skew (criterion measures the three one after the other).
const INTERLEAVED_ROUNDS: usize = 5;

fn seconds(run: impl FnOnce() -> usize) -> f64 {
    let started = Instant::now();
    black_box(run());
    started.elapsed().as_secs_f64()
}

/// Median and minimum over interleaved rounds of (peer time / ferrojob time), for
/// `delay_queue` and `binary_heap`.
fn interleaved_speedups(rt: &tokio::runtime::Runtime, deadlines: &[u64]) -> [(f64, f64); 2] {
    let mut vs_delay_queue = Vec::new();
    let mut vs_binary_heap = Vec::new();
    for _ in 0..INTERLEAVED_ROUNDS {
        let ours = seconds(|| run_wheel(deadlines));
        vs_delay_queue.push(seconds(|| run_delay_queue(rt, deadlines)) / ours);
        vs_binary_heap.push(seconds(|| run_heap(deadlines)) / ours);
    }
    [vs_delay_queue, vs_binary_heap].map(|mut ratios| {
        let min = ratios.iter().copied().fold(f64::INFINITY, f64::min);
        (median(&mut ratios), min)
    })
}

fn report(samples: &mut Samples) {
    let rt = paused_runtime();
    let mut report = Report::new("timer_wheel");
    for n in SIZES {
        let deadlines = deadlines(n);
        let mut per_s = BTreeMap::new();
        for name in ["ferrojob", "delay_queue", "binary_heap"] {
            if let Some(times) = samples.get_mut(&(name, n)) {
                if !times.is_empty() {
                    per_s.insert(name, n as f64 / median(times));
                }
            }
        }
        let Some(&ours) = per_s.get("ferrojob") else {
            continue; // filtered out on the command line
        };

        let (bytes, (wheel, keys)) = heap_bytes_of(|| build_wheel(&deadlines));
        let keys_bytes = keys.capacity() * std::mem::size_of_val(&keys[0]);
        let mut row = Row::new("ferrojob", n)
            .with("timers_per_s", ours)
            .with(
                "heap_bytes_per_timer",
                (bytes - keys_bytes) as f64 / n as f64,
            )
            .with(
                "wheel_heap_bytes_per_timer",
                wheel.heap_bytes() as f64 / n as f64,
            );
        if let Some(theirs) = per_s.get("delay_queue") {
            row = row.with("speedup_vs_delay_queue", ours / theirs);
        }
        if let Some(theirs) = per_s.get("binary_heap") {
            row = row.with("speedup_vs_binary_heap", ours / theirs);
        }
        if per_s.len() == 3 {
            let [(dq, dq_min), (heap, heap_min)] = interleaved_speedups(&rt, &deadlines);
            row = row
                .with("speedup_vs_delay_queue_interleaved", dq)
                .with("speedup_vs_delay_queue_interleaved_min", dq_min)
                .with("speedup_vs_binary_heap_interleaved", heap)
                .with("speedup_vs_binary_heap_interleaved_min", heap_min);
        }
        report.push(row);
        drop((wheel, keys));

        if let Some(&theirs) = per_s.get("delay_queue") {
            let (bytes, keys_bytes) = rt.block_on(async {
                let (bytes, (queue, keys)) = heap_bytes_of(|| build_delay_queue(&deadlines));
                let keys_bytes = keys.capacity() * std::mem::size_of_val(&keys[0]);
                drop((queue, keys));
                (bytes, keys_bytes)
            });
            report.push(
                Row::new("delay_queue", n)
                    .with("timers_per_s", theirs)
                    .with(
                        "heap_bytes_per_timer",
                        (bytes - keys_bytes) as f64 / n as f64,
                    )
                    .with("clock_only_s", run_clock_only(&rt).as_secs_f64()),
            );
        }
        if let Some(&theirs) = per_s.get("binary_heap") {
            let (bytes, built) = heap_bytes_of(|| build_heap(&deadlines));
            drop(built);
            report.push(
                Row::new("binary_heap", n)
                    .with("timers_per_s", theirs)
                    .with("heap_bytes_per_timer", bytes as f64 / n as f64),
            );
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
