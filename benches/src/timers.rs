//! The timer workloads shared by the `timer_wheel` bench (seconds) and the `timer_ops` example
//! (instructions under callgrind): four timer structures doing exactly the same work.
//!
//! - `ferrojob`: [`ferrojob::wheel::TimerWheel`], polled once per tick;
//! - `nexus_timer`: `nexus_timer::Wheel` (a hierarchical wheel that never cascades eagerly:
//!   entries move to finer levels only when a poll walks their slot), default configuration
//!   (1 ms tick, 64 slots, 8× per level, 7 levels), one slab chunk of `n` entries, drained
//!   with `poll_and_rebalance` (the poll its documentation recommends for steady polling);
//! - `delay_queue`: `tokio_util::time::DelayQueue` (a slab plus tokio's own 6-level wheel) on a
//!   current-thread runtime with paused time, the clock advanced 1 ms per tick with
//!   `tokio::time::advance` and drained with `poll_expired` until `Pending`;
//! - `binary_heap`: `std::collections::BinaryHeap<Reverse<(deadline, seq, id)>>` with lazy
//!   cancel (a tombstone bit per id, skipped when popped).
//!
//! Work: insert `n` timers with pseudo-random deadlines spread over 60 s of 1 ms ticks (the same
//! deadlines for all), cancel a [`Workload`]-given share of them (every tenth, or all but every
//! hundredth), then advance tick by tick to 60 000 and drain everything due at each tick.
//!
//! Every timer is cancellable until the workload decides: ferrojob and DelayQueue hand out a
//! key per timer anyway; nexus-timer hands out a move-only handle that must be consumed, so
//! the timers that are not cancelled have their handle `free`d (turned fire-and-forget) right
//! after the cancels. That pass is nexus-timer's price for cancellability and is counted
//! separately by the `timer_ops` example.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::hint::black_box;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use ferrojob::wheel::{TimerKey, TimerWheel};
use nexus_timer::{TimerHandle, Wheel};
use tokio_util::time::delay_queue::Key as DelayKey;
use tokio_util::time::DelayQueue;

/// 60 s of 1 ms ticks.
pub const SPAN_TICKS: u64 = 60_000;

/// Which timers a run cancels before they fire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Workload {
    /// Every tenth timer is cancelled (10 %); 90 % fire.
    Cancel10,
    /// All but every hundredth timer are cancelled (99 %), as with real timeout traffic where
    /// most timeouts are cancelled because the awaited thing happened.
    Cancel99,
}

impl Workload {
    /// Both workloads, in report order.
    pub const ALL: [Workload; 2] = [Workload::Cancel10, Workload::Cancel99];

    /// Whether timer `id` (its insertion index) is cancelled.
    pub fn is_cancelled(self, id: usize) -> bool {
        match self {
            Workload::Cancel10 => id.is_multiple_of(10),
            Workload::Cancel99 => !id.is_multiple_of(100),
        }
    }

    /// How many of `n` timers fire.
    pub fn expected_fired(self, n: usize) -> usize {
        match self {
            Workload::Cancel10 => n - n.div_ceil(10),
            Workload::Cancel99 => n.div_ceil(100),
        }
    }

    /// The report `param` of this workload at `n` timers: `n` for [`Workload::Cancel10`]
    /// (the historical rows), `cancel_99pct/n` for [`Workload::Cancel99`].
    pub fn param(self, n: usize) -> String {
        match self {
            Workload::Cancel10 => n.to_string(),
            Workload::Cancel99 => format!("cancel_99pct/{n}"),
        }
    }

    /// The ids (insertion indices) of the timers this workload cancels, among `n`.
    pub fn cancelled_ids(self, n: usize) -> Vec<usize> {
        (0..n).filter(|&id| self.is_cancelled(id)).collect()
    }

    /// The ids of the timers this workload lets fire, among `n`.
    pub fn kept_ids(self, n: usize) -> Vec<usize> {
        (0..n).filter(|&id| !self.is_cancelled(id)).collect()
    }

    /// Parses the name `timer_ops` takes on its command line (`cancel10`, `cancel99`).
    pub fn from_name(name: &str) -> Option<Workload> {
        match name {
            "cancel10" => Some(Workload::Cancel10),
            "cancel99" => Some(Workload::Cancel99),
            _ => None,
        }
    }
}

/// `n` deadlines in `1..=SPAN_TICKS`, deterministic (splitmix64), in insertion order.
pub fn deadlines(n: usize) -> Vec<u64> {
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

/// A timer structure driven through the three phases of a run. Each phase is its own call so
/// that the `timer_ops` example can count its instructions apart.
pub trait TimerOps {
    /// Human name, also the report's `function`.
    const NAME: &'static str;
    /// Inserts timer `id` with `deadline` (ticks) for every `(id, deadline)`.
    fn insert_all(&mut self, deadlines: &[u64]);
    /// Cancels the timers `ids` and returns how many it cancelled.
    fn cancel(&mut self, ids: &[usize]) -> usize;
    /// Releases whatever per-timer handle the structure needs released for the timers `ids`,
    /// which stay (nexus-timer's `free`); nothing for the others. Returns how many it released.
    fn release(&mut self, ids: &[usize]) -> usize;
    /// Advances tick by tick from 1 to [`SPAN_TICKS`], draining each tick; returns how many
    /// timers fired.
    fn drain(&mut self) -> usize;
}

/// The ids a run cancels and the ids it keeps, computed before the run so that neither a
/// timed nor a counted phase pays for choosing them.
#[derive(Clone, Debug)]
pub struct Plan {
    /// Ids cancelled, ascending.
    pub cancelled: Vec<usize>,
    /// Ids kept (they fire), ascending.
    pub kept: Vec<usize>,
}

impl Plan {
    /// The plan of `workload` over `n` timers.
    pub fn new(workload: Workload, n: usize) -> Self {
        Plan {
            cancelled: workload.cancelled_ids(n),
            kept: workload.kept_ids(n),
        }
    }
}

/// Runs the phases on `ops` and returns how many timers fired.
pub fn run<O: TimerOps>(mut ops: O, deadlines: &[u64], plan: &Plan) -> usize {
    ops.insert_all(deadlines);
    black_box(ops.cancel(&plan.cancelled));
    black_box(ops.release(&plan.kept));
    ops.drain()
}

// ---------------------------------------------------------------------------------------------

/// ferrojob's wheel and the keys it returned.
#[derive(Debug)]
pub struct Ferrojob {
    /// The wheel.
    pub wheel: TimerWheel<u32>,
    /// `keys[id]` is timer `id`'s key.
    pub keys: Vec<TimerKey>,
}

impl Ferrojob {
    /// An empty wheel at tick 0 with room for `n` timers.
    pub fn with_capacity(n: usize) -> Self {
        Ferrojob {
            wheel: TimerWheel::with_capacity(0, n),
            keys: Vec::with_capacity(n),
        }
    }
}

impl TimerOps for Ferrojob {
    const NAME: &'static str = "ferrojob";

    fn insert_all(&mut self, deadlines: &[u64]) {
        for (id, &deadline) in deadlines.iter().enumerate() {
            self.keys.push(self.wheel.insert(deadline, id as u32));
        }
    }

    fn cancel(&mut self, ids: &[usize]) -> usize {
        let mut cancelled = 0;
        for &id in ids {
            if let Some(&key) = self.keys.get(id) {
                cancelled += usize::from(black_box(self.wheel.cancel(key)).is_some());
            }
        }
        cancelled
    }

    fn release(&mut self, _: &[usize]) -> usize {
        0
    }

    fn drain(&mut self) -> usize {
        let mut fired = 0;
        for tick in 1..=SPAN_TICKS {
            while let Some(expired) = self.wheel.poll(tick) {
                black_box(expired);
                fired += 1;
            }
        }
        fired
    }
}

/// nexus-timer's wheel, its epoch, and the handles not yet consumed.
pub struct NexusTimer {
    /// The wheel.
    pub wheel: Wheel<u32>,
    epoch: Instant,
    /// `handles[id]` is timer `id`'s handle until it is cancelled or freed.
    pub handles: Vec<Option<TimerHandle<u32>>>,
    fired: Vec<u32>,
}

impl std::fmt::Debug for NexusTimer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NexusTimer")
            .field("len", &self.wheel.len())
            .finish()
    }
}

impl NexusTimer {
    /// An empty wheel whose tick 0 is now, with one slab chunk of `n` entries.
    pub fn with_capacity(n: usize) -> Self {
        let epoch = Instant::now();
        NexusTimer {
            wheel: Wheel::unbounded(n.max(1), epoch),
            epoch,
            handles: Vec::with_capacity(n),
            fired: Vec::with_capacity(1024),
        }
    }

    fn at(&self, tick: u64) -> Instant {
        self.epoch + Duration::from_millis(tick)
    }

    /// Consumes every remaining handle, so that dropping the wheel frees every entry.
    pub fn free_all(&mut self) {
        for handle in self.handles.iter_mut().filter_map(Option::take) {
            self.wheel.free(handle);
        }
    }
}

impl Drop for NexusTimer {
    fn drop(&mut self) {
        self.free_all();
    }
}

impl TimerOps for NexusTimer {
    const NAME: &'static str = "nexus_timer";

    fn insert_all(&mut self, deadlines: &[u64]) {
        for (id, &deadline) in deadlines.iter().enumerate() {
            let handle = self.wheel.schedule(self.at(deadline), id as u32);
            self.handles.push(Some(handle));
        }
    }

    fn cancel(&mut self, ids: &[usize]) -> usize {
        let mut cancelled = 0;
        for &id in ids {
            if let Some(handle) = self.handles.get_mut(id).and_then(Option::take) {
                cancelled += usize::from(black_box(self.wheel.cancel(handle)).is_some());
            }
        }
        cancelled
    }

    fn release(&mut self, ids: &[usize]) -> usize {
        let mut released = 0;
        for &id in ids {
            if let Some(handle) = self.handles.get_mut(id).and_then(Option::take) {
                self.wheel.free(handle);
                released += 1;
            }
        }
        released
    }

    fn drain(&mut self) -> usize {
        let mut fired = 0;
        for tick in 1..=SPAN_TICKS {
            let now = self.at(tick);
            self.fired.clear();
            fired += self.wheel.poll_and_rebalance(now, &mut self.fired);
            black_box(&self.fired);
        }
        fired
    }
}

/// `BinaryHeap<Reverse<(deadline, seq, id)>>` with a tombstone bit per id.
#[derive(Debug)]
pub struct Heap {
    /// The heap.
    pub heap: BinaryHeap<Reverse<(u64, u64, u32)>>,
    /// Bit `id` set: timer `id` is cancelled.
    pub tombstones: Vec<u64>,
}

impl Heap {
    /// An empty heap with room for `n` timers.
    pub fn with_capacity(n: usize) -> Self {
        Heap {
            heap: BinaryHeap::with_capacity(n),
            tombstones: vec![0u64; n.div_ceil(64)],
        }
    }
}

impl TimerOps for Heap {
    const NAME: &'static str = "binary_heap";

    fn insert_all(&mut self, deadlines: &[u64]) {
        for (id, &deadline) in deadlines.iter().enumerate() {
            // The sequence number keeps same-deadline timers in insertion order, as the wheel
            // does.
            self.heap.push(Reverse((deadline, id as u64, id as u32)));
        }
    }

    fn cancel(&mut self, ids: &[usize]) -> usize {
        let mut cancelled = 0;
        for &id in ids {
            if let Some(word) = self.tombstones.get_mut(id / 64) {
                *word |= 1 << (id % 64);
                cancelled += 1;
            }
        }
        cancelled
    }

    fn release(&mut self, _: &[usize]) -> usize {
        0
    }

    fn drain(&mut self) -> usize {
        let mut fired = 0;
        for tick in 1..=SPAN_TICKS {
            while let Some(&Reverse((deadline, _, id))) = self.heap.peek() {
                if deadline > tick {
                    break;
                }
                self.heap.pop();
                let word = self.tombstones.get(id as usize / 64).copied();
                if word.unwrap_or(0) & (1 << (id % 64)) != 0 {
                    continue;
                }
                black_box(id);
                fired += 1;
            }
        }
        fired
    }
}

/// A current-thread tokio runtime with paused time, for [`DelayQueueOps`].
///
/// # Panics
///
/// If the runtime cannot be built (no timer driver), which only a broken tokio does.
pub fn paused_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("tokio runtime")
}

/// `DelayQueue` and its keys; every method must run inside the paused runtime, which is why
/// it has its own (async) drain instead of implementing [`TimerOps`].
#[derive(Debug)]
pub struct DelayQueueOps {
    /// The queue.
    pub queue: DelayQueue<u32>,
    /// `keys[id]` is timer `id`'s key.
    pub keys: Vec<DelayKey>,
    start: tokio::time::Instant,
}

impl DelayQueueOps {
    /// An empty queue with room for `n` timers, whose tick 0 is the runtime's current instant.
    pub fn with_capacity(n: usize) -> Self {
        DelayQueueOps {
            queue: DelayQueue::with_capacity(n),
            keys: Vec::with_capacity(n),
            start: tokio::time::Instant::now(),
        }
    }

    /// Advances the paused clock tick by tick from 1 to [`SPAN_TICKS`], draining each tick
    /// with `poll_expired`; returns how many timers fired.
    pub async fn drain(&mut self) -> usize {
        let mut cx = Context::from_waker(Waker::noop());
        let mut fired = 0;
        for _ in 1..=SPAN_TICKS {
            tokio::time::advance(Duration::from_millis(1)).await;
            while let Poll::Ready(Some(expired)) = self.queue.poll_expired(&mut cx) {
                black_box(expired);
                fired += 1;
            }
        }
        fired
    }
}

impl DelayQueueOps {
    /// Inserts timer `id` at `deadline` ms after the queue's start for every `(id, deadline)`.
    pub fn insert_all(&mut self, deadlines: &[u64]) {
        for (id, &deadline) in deadlines.iter().enumerate() {
            let at = self.start + Duration::from_millis(deadline);
            self.keys.push(self.queue.insert_at(id as u32, at));
        }
    }

    /// Cancels the timers `ids` and returns how many it cancelled.
    pub fn cancel(&mut self, ids: &[usize]) -> usize {
        let mut cancelled = 0;
        for &id in ids {
            if let Some(key) = self.keys.get(id) {
                black_box(self.queue.remove(key));
                cancelled += 1;
            }
        }
        cancelled
    }
}

/// Runs the DelayQueue workload on `rt` (paused clock).
pub fn run_delay_queue(rt: &tokio::runtime::Runtime, deadlines: &[u64], plan: &Plan) -> usize {
    rt.block_on(async {
        let mut ops = DelayQueueOps::with_capacity(deadlines.len());
        ops.insert_all(deadlines);
        black_box(ops.cancel(&plan.cancelled));
        ops.drain().await
    })
}

/// The paused clock alone: 60 000 one-millisecond `advance` calls with an empty queue.
pub fn run_clock_only(rt: &tokio::runtime::Runtime) -> Duration {
    rt.block_on(async {
        let mut ops = DelayQueueOps::with_capacity(0);
        let started = Instant::now();
        black_box(ops.drain().await);
        started.elapsed()
    })
}
