//! Model-based property test of the timing wheel against a `BTreeMap` keyed by
//! (firing tick, insertion sequence).
//!
//! The model states the wheel's contract in a few lines: a timer fires in tick
//! `max(deadline, now at insert)`; `poll(t)` returns the earliest firing timer if it fires at or
//! before `max(t, now)`, and then `now` becomes its firing tick; otherwise `now` becomes `t`.
//! Random sequences of inserts (near, far, past, same-tick bursts, beyond the 2^36-tick range,
//! across epoch boundaries, near `u64::MAX`), cancels and reschedules (live and stale keys) and
//! polls (small and huge steps, exactly to `next_expiration`) must give the same timers in the
//! same ticks in the same order. A second property runs timeout-like traffic where most timers
//! are cancelled soon after they are inserted.

use std::collections::{BTreeMap, HashMap};

use ferrojob::wheel::{Expired, TimerKey, TimerWheel, RANGE};
use proptest::prelude::*;

/// The reference: live timers by (firing tick, insertion sequence).
#[derive(Debug, Default)]
struct Model {
    now: u64,
    seq: u64,
    timers: BTreeMap<(u64, u64), (u64, u32)>, // -> (deadline, value)
    /// Where each key's timer is in `timers`, while it is live.
    live: HashMap<TimerKey, (u64, u64)>,
}

impl Model {
    fn insert(&mut self, key: TimerKey, deadline: u64, value: u32) {
        let slot = (deadline.max(self.now), self.seq);
        self.seq += 1;
        self.timers.insert(slot, (deadline, value));
        assert!(
            self.live.insert(key, slot).is_none(),
            "wheel reused a live key"
        );
    }

    fn cancel(&mut self, key: TimerKey) -> Option<u32> {
        let slot = self.live.remove(&key)?;
        self.timers.remove(&slot).map(|(_, value)| value)
    }

    fn poll(&mut self, now: u64) -> Option<(u64, u32)> {
        let now = now.max(self.now);
        let (&(tick, seq), _) = self
            .timers
            .iter()
            .next()
            .filter(|(&(tick, _), _)| tick <= now)
            .or_else(|| {
                self.now = now;
                None
            })?;
        self.now = tick;
        let (deadline, value) = self.timers.remove(&(tick, seq))?;
        self.live.retain(|_, slot| *slot != (tick, seq));
        Some((deadline, value))
    }

    fn earliest(&self) -> Option<u64> {
        self.timers.keys().next().map(|&(tick, _)| tick)
    }
}

/// Where a new deadline lies, relative to the current tick when the op runs.
#[derive(Clone, Debug)]
enum Deadline {
    /// `now + n`, n small: levels 0 and 1, and same-tick bursts.
    Near(u64),
    /// `now + n` anywhere in the levels.
    Within(u64),
    /// `now - n`: already due.
    Past(u64),
    /// Around the end of the levels' range.
    RangeEdge(i64),
    /// Far beyond the range.
    Far(u64),
    /// An absolute tick near `u64::MAX`.
    Max(u64),
    /// The same deadline as the n-th key issued (a burst in the same tick across time).
    SameAs(usize),
}

#[derive(Clone, Debug)]
enum Op {
    Insert(Deadline),
    /// Insert `count` timers with one deadline (a same-tick burst).
    Burst(Deadline, usize),
    /// Cancel the n-th key ever issued (live or stale).
    Cancel(usize),
    /// Cancel `count` consecutive keys from the n-th (forces slot queue compaction).
    CancelMany(usize, usize),
    /// Cancel `count` consecutive keys ending `back` keys before the newest: the timers that
    /// were just inserted, as when most timeouts are cancelled because the reply came.
    CancelRecent(usize, usize),
    /// Reschedule the n-th key ever issued.
    Reschedule(usize, Deadline),
    /// Poll once at `now + n`.
    Poll(u64),
    /// Poll `count` times at `now + n` (pops part of a ready queue, leaving the rest).
    PollMany(u64, usize),
    /// Drain everything due at `now + n`.
    Drain(u64),
    /// Drain everything due at `next_expiration()`.
    DrainToNext,
}

fn deadline() -> impl Strategy<Value = Deadline> {
    prop_oneof![
        4 => (0u64..70).prop_map(Deadline::Near),
        3 => (0u64..300_000).prop_map(Deadline::Within),
        1 => (0u64..(1 << 35)).prop_map(Deadline::Within),
        1 => (0u64..100).prop_map(Deadline::Past),
        1 => (-100i64..100).prop_map(Deadline::RangeEdge),
        1 => (0u64..(1 << 40)).prop_map(Deadline::Far),
        1 => (0u64..10).prop_map(Deadline::Max),
        2 => (0usize..64).prop_map(Deadline::SameAs),
    ]
}

fn step() -> impl Strategy<Value = u64> {
    prop_oneof![
        4 => 0u64..70,
        2 => 0u64..5_000,
        1 => 0u64..(1 << 24),
        1 => 0u64..(1 << 38),
        1 => Just(u64::MAX),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => deadline().prop_map(Op::Insert),
        2 => (0usize..64).prop_map(Op::Cancel),
        1 => (deadline(), 1usize..200).prop_map(|(d, count)| Op::Burst(d, count)),
        1 => ((0usize..64), 1usize..200).prop_map(|(n, count)| Op::CancelMany(n, count)),
        1 => ((0usize..64), deadline()).prop_map(|(n, d)| Op::Reschedule(n, d)),
        3 => step().prop_map(Op::Poll),
        2 => step().prop_map(Op::Drain),
        2 => Just(Op::DrainToNext),
    ]
}

/// Timeout traffic: bursts of timers into the same few slots (and the ready queue), most of
/// them cancelled soon after, partial pops of the ready queue while more is pushed behind, and
/// an occasional drain. Exercises tombstones, compaction on cancel and before a push, and a
/// ready queue that is popped and pushed without emptying.
fn cancel_heavy_op() -> impl Strategy<Value = Op> {
    let near = prop_oneof![
        3 => (0u64..70).prop_map(Deadline::Near),
        2 => (0u64..5_000).prop_map(Deadline::Within),
        2 => (0u64..3).prop_map(Deadline::Past),
        1 => (0usize..64).prop_map(Deadline::SameAs),
    ];
    prop_oneof![
        4 => (near, 1usize..300).prop_map(|(d, count)| Op::Burst(d, count)),
        1 => deadline().prop_map(Op::Insert),
        6 => ((0usize..300), 1usize..120).prop_map(|(back, count)| Op::CancelRecent(back, count)),
        1 => ((0usize..300), deadline()).prop_map(|(n, d)| Op::Reschedule(n, d)),
        3 => ((0u64..3), 1usize..300).prop_map(|(n, count)| Op::PollMany(n, count)),
        1 => (0u64..5_000).prop_map(Op::Drain),
        1 => Just(Op::DrainToNext),
    ]
}

fn start() -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(0u64),
        any::<u32>().prop_map(u64::from),
        (0u64..200).prop_map(|n| RANGE - n),
        (0u64..200).prop_map(|n| 3 * RANGE - n),
        (0u64..(1 << 20)).prop_map(|n| u64::MAX - (1 << 21) + n),
    ]
}

struct Harness {
    wheel: TimerWheel<u32>,
    model: Model,
    keys: Vec<TimerKey>,
    deadlines: Vec<u64>,
    next_value: u32,
    /// Whether the model's earliest timer may have been removed from a non-empty slot, after
    /// which `next_expiration` is allowed to be early.
    removed: bool,
}

impl Harness {
    fn new(start: u64) -> Self {
        Harness {
            wheel: TimerWheel::new(start),
            model: Model {
                now: start,
                ..Model::default()
            },
            keys: Vec::new(),
            deadlines: Vec::new(),
            next_value: 0,
            removed: false,
        }
    }

    fn resolve(&self, deadline: &Deadline) -> u64 {
        let now = self.wheel.now();
        match *deadline {
            Deadline::Near(n) | Deadline::Within(n) => now.saturating_add(n),
            Deadline::Past(n) => now.saturating_sub(n),
            Deadline::RangeEdge(n) => now.saturating_add(RANGE.saturating_add_signed(n)),
            Deadline::Far(n) => now.saturating_add(RANGE).saturating_add(n),
            Deadline::Max(n) => u64::MAX - n,
            Deadline::SameAs(i) => self.deadlines.get(i).copied().unwrap_or(now),
        }
    }

    fn key(&self, n: usize) -> Option<TimerKey> {
        if self.keys.is_empty() {
            None
        } else {
            Some(self.keys[n % self.keys.len()])
        }
    }

    fn insert(&mut self, deadline: u64) {
        let value = self.next_value;
        self.next_value += 1;
        let key = self.wheel.insert(deadline, value);
        self.model.insert(key, deadline, value);
        self.keys.push(key);
        self.deadlines.push(deadline);
        assert_eq!(self.wheel.get(key), Some(&value));
        assert_eq!(self.wheel.deadline(key), Some(deadline));
    }

    fn cancel(&mut self, n: usize) {
        if let Some(key) = self.key(n) {
            let got = self.wheel.cancel(key);
            let want = self.model.cancel(key);
            assert_eq!(got, want, "cancel({key:?})");
            self.removed |= got.is_some();
            assert_eq!(self.wheel.cancel(key), None, "second cancel of {key:?}");
        }
    }

    fn check_poll(&mut self, now: u64) -> Option<Expired<u32>> {
        let got = self.wheel.poll(now);
        let want = self.model.poll(now);
        assert_eq!(
            got.as_ref().map(|e| (e.deadline, e.value)),
            want,
            "poll({now}) differs from the model"
        );
        assert_eq!(self.wheel.now(), self.model.now, "now() after poll({now})");
        got
    }

    fn apply(&mut self, op: &Op) {
        match op {
            Op::Insert(d) => {
                let deadline = self.resolve(d);
                self.insert(deadline);
            }
            Op::Burst(d, count) => {
                let deadline = self.resolve(d);
                for _ in 0..*count {
                    self.insert(deadline);
                }
            }
            Op::Cancel(n) => self.cancel(*n),
            Op::CancelMany(n, count) => {
                for i in 0..*count {
                    self.cancel(n + i);
                }
            }
            Op::CancelRecent(back, count) => {
                let newest = self.keys.len().saturating_sub(1 + back);
                for n in newest.saturating_sub(*count)..=newest {
                    self.cancel(n);
                }
            }
            Op::Reschedule(n, d) => {
                if let Some(key) = self.key(*n) {
                    let deadline = self.resolve(d);
                    let was_live = self.model.cancel(key);
                    assert_eq!(self.wheel.reschedule(key, deadline), was_live.is_some());
                    if let Some(value) = was_live {
                        self.model.insert(key, deadline, value);
                        self.removed = true;
                        assert_eq!(self.wheel.deadline(key), Some(deadline));
                    }
                }
            }
            Op::Poll(n) => {
                let now = self.wheel.now().saturating_add(*n);
                self.check_poll(now);
            }
            Op::PollMany(n, count) => {
                let now = self.wheel.now().saturating_add(*n);
                for _ in 0..*count {
                    if self.check_poll(now).is_none() {
                        break;
                    }
                }
            }
            Op::Drain(n) => {
                let now = self.wheel.now().saturating_add(*n);
                self.drain(now);
            }
            Op::DrainToNext => {
                if let Some(next) = self.wheel.next_expiration() {
                    self.drain(next);
                }
            }
        }
        assert_eq!(
            self.wheel.len(),
            self.model.timers.len(),
            "len after {op:?}"
        );
        assert_eq!(self.wheel.is_empty(), self.model.timers.is_empty());
        // Every live key still reads its deadline and value, wherever its timer sits now
        // (a slot, the ready queue after a level-0 slot became it, or overflow).
        for (key, slot) in self.model.live.iter().take(32) {
            let (deadline, value) = self.model.timers[slot];
            assert_eq!(
                self.wheel.deadline(*key),
                Some(deadline),
                "deadline({key:?})"
            );
            assert_eq!(self.wheel.get(*key), Some(&value), "get({key:?})");
        }
        let next = self.wheel.next_expiration();
        match (next, self.model.earliest()) {
            (None, None) => {}
            (Some(next), Some(earliest)) => {
                assert!(
                    next <= earliest,
                    "next_expiration {next} after the earliest timer {earliest}"
                );
                assert!(
                    next >= self.wheel.now(),
                    "next_expiration {next} before now"
                );
                if !self.removed {
                    assert_eq!(next, earliest, "next_expiration is inexact with no cancel");
                }
            }
            (next, earliest) => panic!("next_expiration {next:?}, model earliest {earliest:?}"),
        }
    }

    fn drain(&mut self, now: u64) {
        let mut out = Vec::new();
        self.wheel.drain_expired(now, &mut out);
        let mut want = Vec::new();
        while let Some(expired) = self.model.poll(now) {
            want.push(expired);
        }
        let got: Vec<_> = out.iter().map(|e| (e.deadline, e.value)).collect();
        assert_eq!(got, want, "drain_expired({now})");
        assert_eq!(self.wheel.now(), self.model.now.max(now));
        // A drained key is stale.
        for expired in &out {
            assert_eq!(self.wheel.get(expired.key), None);
        }
        // Once the wheel is drained, `removed` no longer matters for exactness only if the
        // slots it touched are gone; stay conservative.
        if self.wheel.is_empty() {
            self.removed = false;
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn wheel_matches_model(start in start(), ops in proptest::collection::vec(op(), 1..120)) {
        let mut harness = Harness::new(start);
        for op in &ops {
            harness.apply(op);
        }
        // Finally everything fires, in model order.
        harness.drain(u64::MAX);
        prop_assert!(harness.wheel.is_empty());
    }

    #[test]
    fn wheel_matches_model_under_cancel_heavy_traffic(
        start in start(),
        ops in proptest::collection::vec(cancel_heavy_op(), 1..80),
    ) {
        let mut harness = Harness::new(start);
        for op in &ops {
            harness.apply(op);
        }
        harness.drain(u64::MAX);
        prop_assert!(harness.wheel.is_empty());
    }
}
