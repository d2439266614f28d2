//! Unit tests: level boundaries, the 2^36 range and overflow, generation reuse, ordering.

use super::level::{level_for, slot_start};
use super::*;

/// Fires one timer inserted at `start` with `deadline` and checks it comes out in exactly
/// tick `deadline`: not one tick before, and `next_expiration` names that tick.
fn check_fires_exactly(start: u64, deadline: u64) {
    let mut wheel = TimerWheel::new(start);
    let key = wheel.insert(deadline, deadline);
    assert_eq!(
        wheel.next_expiration(),
        Some(deadline),
        "start {start} deadline {deadline}"
    );
    assert_eq!(
        wheel.poll(deadline - 1),
        None,
        "fired early: start {start} deadline {deadline}"
    );
    assert_eq!(wheel.now(), deadline - 1);
    assert_eq!(wheel.next_expiration(), Some(deadline));
    let expired = wheel.poll(deadline).expect("due");
    assert_eq!(
        (expired.key, expired.deadline, expired.value),
        (key, deadline, deadline)
    );
    assert_eq!(wheel.poll(deadline), None);
    assert!(wheel.is_empty());
}

#[test]
fn level_for_boundaries() {
    let check = |elapsed: u64, deadline: u64, level: Option<usize>| {
        assert_eq!(
            level_for(elapsed, deadline),
            level,
            "level_for({elapsed}, {deadline})"
        );
    };
    check(0, 1, Some(0));
    check(0, 63, Some(0));
    check(0, 64, Some(1));
    check(0, 4095, Some(1));
    check(0, 4096, Some(2));
    check(0, (1 << 18) - 1, Some(2));
    check(0, 1 << 18, Some(3));
    check(0, (1 << 24) - 1, Some(3));
    check(0, 1 << 24, Some(4));
    check(0, (1 << 30) - 1, Some(4));
    check(0, 1 << 30, Some(5));
    check(0, RANGE - 1, Some(5));
    check(0, RANGE, None);
    check(0, u64::MAX, None);
    // XOR selection: 63 -> 64 is one tick but crosses a level-1 slot boundary.
    check(63, 64, Some(1));
    check(64, 127, Some(0));
    // One tick across an epoch boundary is parked until the boundary.
    check(RANGE - 1, RANGE, None);
    check(RANGE, RANGE + 1, Some(0));
}

#[test]
fn slot_start_is_the_first_tick_of_the_slot() {
    assert_eq!(slot_start(0, 0, 5), 5);
    assert_eq!(slot_start(70, 0, 80 % 64), 80);
    assert_eq!(slot_start(0, 1, 1), 64);
    assert_eq!(slot_start(4096 + 3, 1, 2), 4096 + 128);
    assert_eq!(slot_start(0, 5, 63), 63 << 30);
    assert_eq!(slot_start(RANGE + 7, 5, 1), RANGE + (1 << 30));
}

#[test]
fn fires_exactly_at_level_boundaries() {
    let boundaries = [
        1,
        2,
        63,
        64,
        65,
        127,
        128,
        4095,
        4096,
        4097,
        (1 << 18) - 1,
        1 << 18,
        (1 << 18) + 1,
        (1 << 24) - 1,
        1 << 24,
        (1 << 30) - 1,
        1 << 30,
        (1 << 30) + 12345,
        RANGE - 1,
        RANGE,
        RANGE + 1,
    ];
    for start in [0, 1, 63, 64, 4095, 123_456_789, RANGE - 1, RANGE + 5] {
        for delta in boundaries {
            check_fires_exactly(start, start + delta);
        }
    }
}

#[test]
fn deadlines_beyond_two_years_wait_in_overflow_and_fire_exactly() {
    let three_years = 3 * 365 * 24 * 3600 * 1000;
    check_fires_exactly(0, three_years);
    check_fires_exactly(0, 5 * RANGE + 17);
    check_fires_exactly(RANGE - 10, RANGE + 10);
    check_fires_exactly(1, u64::MAX);
    check_fires_exactly(u64::MAX - 10, u64::MAX);
}

#[test]
fn overflow_timers_in_several_epochs_come_out_in_order() {
    let mut wheel = TimerWheel::new(0);
    let deadlines = [7 * RANGE + 1, 2 * RANGE, RANGE + 5, 2 * RANGE, 3, RANGE - 1];
    for (i, &deadline) in deadlines.iter().enumerate() {
        wheel.insert(deadline, i);
    }
    let mut out = Vec::new();
    wheel.drain_expired(u64::MAX, &mut out);
    let order: Vec<(u64, usize)> = out.iter().map(|e| (e.deadline, e.value)).collect();
    assert_eq!(
        order,
        [
            (3, 4),
            (RANGE - 1, 5),
            (RANGE + 5, 2),
            (2 * RANGE, 1),
            (2 * RANGE, 3),
            (7 * RANGE + 1, 0)
        ]
    );
    assert_eq!(wheel.now(), u64::MAX);
}

#[test]
fn stale_keys_never_touch_a_reused_entry() {
    let mut wheel = TimerWheel::new(0);
    let old = wheel.insert(10, "old");
    assert_eq!(wheel.cancel(old), Some("old"));
    let new = wheel.insert(20, "new");
    // The slab reused the cell: same index, new generation.
    assert_eq!(new.index, old.index);
    assert_ne!(new, old);
    assert_eq!(wheel.cancel(old), None);
    assert_eq!(wheel.get(old), None);
    assert_eq!(wheel.get_mut(old), None);
    assert_eq!(wheel.deadline(old), None);
    assert!(!wheel.reschedule(old, 5));
    assert_eq!(wheel.get(new), Some(&"new"));
    assert_eq!(wheel.len(), 1);
    // A key that fired is stale as well.
    let fired = wheel.poll(20).expect("due");
    assert_eq!(fired.key, new);
    assert_eq!(wheel.cancel(new), None);
    // A key from another wheel with an out-of-range index is unknown, not a panic.
    let bogus = TimerKey {
        index: 1_000_000,
        generation: 0,
    };
    assert_eq!(wheel.cancel(bogus), None);
}

#[test]
fn past_deadlines_are_due_immediately_after_earlier_due_timers() {
    let mut wheel = TimerWheel::new(100);
    wheel.insert(100, "now");
    wheel.insert(50, "past");
    wheel.insert(0, "long past");
    assert_eq!(wheel.next_expiration(), Some(100));
    let mut out = Vec::new();
    wheel.drain_expired(100, &mut out);
    let got: Vec<_> = out.iter().map(|e| (e.deadline, e.value)).collect();
    assert_eq!(got, [(100, "now"), (50, "past"), (0, "long past")]);
}

#[test]
fn same_tick_timers_keep_insertion_order_across_cascades() {
    // Timers for tick 5000 inserted at different times sit at level 2, then level 1, then
    // level 0; each cascade must keep them behind the ones inserted earlier.
    let mut wheel = TimerWheel::new(0);
    let mut value = 0;
    for now in [0, 10, 4000, 4095, 4096, 4900, 4990, 4999] {
        assert_eq!(wheel.poll(now), None);
        wheel.insert(5000, value);
        value += 1;
    }
    let mut out = Vec::new();
    out.extend(wheel.poll(5000));
    // Inserted in the firing tick itself: behind everything already due.
    wheel.insert(5000, value);
    value += 1;
    wheel.drain_expired(5000, &mut out);
    let got: Vec<_> = out.iter().map(|e| e.value).collect();
    assert_eq!(got, (0..value).collect::<Vec<_>>());
}

#[test]
fn poll_with_an_earlier_tick_is_poll_at_now() {
    let mut wheel = TimerWheel::new(1000);
    wheel.insert(1001, ());
    assert_eq!(wheel.poll(5), None);
    assert_eq!(wheel.now(), 1000);
    assert!(wheel.poll(1001).is_some());
}

#[test]
fn now_follows_the_returned_timer_during_a_far_jump() {
    let mut wheel = TimerWheel::new(0);
    wheel.insert(10, "a");
    wheel.insert(1_000_000, "c");
    let first = wheel.poll(2_000_000).expect("due");
    assert_eq!(first.value, "a");
    assert_eq!(wheel.now(), 10);
    // A timer inserted now for tick 500 fires before "c", in its own tick.
    wheel.insert(500, "b");
    assert_eq!(wheel.poll(2_000_000).map(|e| e.value), Some("b"));
    assert_eq!(wheel.now(), 500);
    assert_eq!(wheel.poll(2_000_000).map(|e| e.value), Some("c"));
    assert_eq!(wheel.poll(2_000_000), None);
    assert_eq!(wheel.now(), 2_000_000);
}

#[test]
fn next_expiration_after_cancel_is_early_never_late() {
    let mut wheel = TimerWheel::new(0);
    let first = wheel.insert(200, "first");
    wheel.insert(250, "second");
    assert_eq!(wheel.next_expiration(), Some(200));
    wheel.cancel(first);
    // Both were in level-1 slot 3; the slot's bound is stale but early.
    let next = wheel.next_expiration().expect("one timer left");
    assert!((192..=250).contains(&next), "{next}");
    assert_eq!(wheel.poll(next), None);
    assert_eq!(wheel.next_expiration(), Some(250));
    // Emptying a slot resets its bound.
    let mut wheel = TimerWheel::new(0);
    let only = wheel.insert(200, ());
    wheel.insert(10_000, ());
    wheel.cancel(only);
    assert_eq!(wheel.next_expiration(), Some(10_000));
}

#[test]
fn reschedule_keeps_the_key_and_moves_the_timer() {
    let mut wheel = TimerWheel::new(0);
    let a = wheel.insert(100, "a");
    let b = wheel.insert(100, "b");
    assert!(wheel.reschedule(a, 100)); // now behind "b"
    assert!(wheel.reschedule(b, RANGE * 2));
    assert_eq!(wheel.deadline(b), Some(RANGE * 2));
    assert_eq!(wheel.poll(100).map(|e| (e.key, e.value)), Some((a, "a")));
    assert_eq!(wheel.next_expiration(), Some(RANGE * 2));
    assert!(wheel.reschedule(b, 150));
    assert_eq!(
        wheel.poll(1_000).map(|e| (e.key, e.deadline)),
        Some((b, 150))
    );
}

#[test]
fn get_mut_changes_the_value() {
    let mut wheel = TimerWheel::new(0);
    let key = wheel.insert(3, 1);
    *wheel.get_mut(key).expect("live") += 41;
    assert_eq!(wheel.poll(3).map(|e| e.value), Some(42));
}

#[test]
fn steady_state_reuses_slab_cells() {
    let mut wheel = TimerWheel::with_capacity(0, 64);
    for tick in 0..10_000u64 {
        wheel.insert(tick + 50, tick);
        while wheel.poll(tick).is_some() {}
    }
    assert_eq!(wheel.len(), 50);
    assert_eq!(
        wheel.capacity(),
        64,
        "the slab grew although the timer count was steady"
    );
    assert!(wheel.heap_bytes() >= 64 * std::mem::size_of::<super::entry::Entry<u64>>());
}

#[test]
fn debug_does_not_need_debug_values() {
    struct Opaque;
    let mut wheel = TimerWheel::new(7);
    wheel.insert(100, Opaque);
    let text = format!("{wheel:?}");
    assert!(text.contains("now: 7") && text.contains("len: 1"), "{text}");
}

#[test]
fn entries_stay_small() {
    // Keeps the per-timer footprint in check: position, generation and a tag around `T`
    // (the deadline lives in the slot queue).
    assert!(std::mem::size_of::<super::entry::Entry<u32>>() <= 20);
    assert!(std::mem::size_of::<super::entry::Entry<u64>>() <= 32);
}

#[test]
fn cancelling_most_of_a_slot_compacts_it_and_keeps_order() {
    // 1000 timers in one level-1 slot; cancel 900 of them (forcing compactions that move
    // positions), then cancel a few survivors by key (their positions must have followed).
    let mut wheel = TimerWheel::new(0);
    let keys: Vec<_> = (0..1000u32).map(|i| (i, wheel.insert(100, i))).collect();
    for &(i, key) in &keys {
        if i % 10 != 3 {
            assert_eq!(wheel.cancel(key), Some(i));
        }
    }
    for &(i, key) in &keys {
        if i % 100 == 3 {
            assert_eq!(wheel.cancel(key), Some(i));
        }
    }
    let mut out = Vec::new();
    wheel.drain_expired(100, &mut out);
    let got: Vec<u32> = out.iter().map(|e| e.value).collect();
    let want: Vec<u32> = (0..1000).filter(|i| i % 10 == 3 && i % 100 != 3).collect();
    assert_eq!(got, want);
    assert!(wheel.is_empty());
}

#[test]
fn cancelling_from_the_ready_queue_works_after_a_level_zero_slot_became_it() {
    let mut wheel = TimerWheel::new(0);
    let keys: Vec<_> = (0..300u32).map(|i| wheel.insert(10, i)).collect();
    // The first poll at tick 10 turns level-0 slot 10 into the ready queue.
    assert_eq!(wheel.poll(10).map(|e| e.value), Some(0));
    for (i, key) in keys.iter().enumerate().skip(1) {
        if i % 3 != 0 {
            assert_eq!(wheel.cancel(*key), Some(i as u32));
        }
    }
    let mut out = Vec::new();
    wheel.drain_expired(10, &mut out);
    let got: Vec<u32> = out.iter().map(|e| e.value).collect();
    assert_eq!(got, (3..300).step_by(3).collect::<Vec<_>>());
}

#[test]
fn churn_in_one_slot_and_in_the_ready_queue_stays_bounded() {
    let mut wheel = TimerWheel::new(0);
    // A far slot that never fires while timers come and go in it.
    let mut far = wheel.insert(RANGE - 1, u64::MAX);
    for i in 0..100_000u64 {
        let key = wheel.insert(RANGE - 2, i);
        wheel.cancel(far);
        far = key;
    }
    // A ready queue that never empties: always one past-due timer behind the one polled.
    wheel.insert(0, 0);
    for i in 0..100_000u64 {
        wheel.insert(0, i);
        assert!(wheel.poll(0).is_some());
    }
    assert_eq!(wheel.len(), 2);
    assert!(
        wheel.heap_bytes() < 64 * 1024,
        "{} bytes for 2 timers",
        wheel.heap_bytes()
    );
}

#[test]
fn keys_round_trip_through_bits_and_stay_generation_checked() {
    let mut wheel = TimerWheel::new(0);
    let first = wheel.insert(5, "a");
    let bits = first.to_bits();
    assert_ne!(bits, TimerKey::NONE_BITS);
    assert_eq!(TimerKey::from_bits(bits), Some(first));
    assert_eq!(TimerKey::from_bits(TimerKey::NONE_BITS), None);
    assert_eq!(wheel.cancel(first), Some("a"));
    // The cell is reused by the next timer under a new generation: the old bits name nothing.
    let second = wheel.insert(5, "b");
    assert_eq!(second.index, first.index);
    let stale = TimerKey::from_bits(bits).unwrap();
    assert_eq!(wheel.cancel(stale), None);
    assert_eq!(wheel.get(second), Some(&"b"));
    // Bits naming a cell that does not exist are simply unknown.
    let unknown = TimerKey::from_bits(u64::from(u32::MAX - 1)).unwrap();
    assert_eq!(wheel.get(unknown), None);
}
