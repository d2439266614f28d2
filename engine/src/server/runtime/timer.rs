//! The timer task: it sleeps with `Clock::sleep_until` until the earliest armed event of the
//! runtime's [`TimerWheel`] (one tick per millisecond on the server's [`Clock`]), or until
//! `Runtime::arm` wakes it for an earlier one, and hands each expired event to
//! `Runtime::on_timer`, which never waits (firing submits to the store and spawns the rest).
//! With a `VirtualClock` nothing fires until the test advances the clock.
//!
//! [`Clock`]: crate::clock::Clock
//! [`TimerWheel`]: crate::wheel::TimerWheel

use std::sync::Arc;

use crate::time_expression::EpochMs;
use crate::wheel::Expired;

use super::state::{Runtime, TimerEv};

fn tick(ms: EpochMs) -> u64 {
    u64::try_from(ms).unwrap_or(0)
}

pub(crate) async fn run(sh: Arc<Runtime>) {
    let mut expired: Vec<Expired<TimerEv>> = Vec::new();
    loop {
        if sh.is_shutting_down() {
            return;
        }
        let now = sh.now();
        {
            let mut t = sh.timers.lock();
            let now_tick = tick(now).max(t.wheel.now());
            t.wheel.drain_expired(now_tick, &mut expired);
        }
        for e in expired.drain(..) {
            sh.on_timer(e.value, now);
        }
        // Under the lock that `arm` takes: an event armed after this reads the new bound and
        // wakes the task if it is earlier (the wake-up is kept until the task waits).
        let next = {
            let mut t = sh.timers.lock();
            let next = t.wheel.next_expiration();
            t.sleeping_until = next.unwrap_or(u64::MAX);
            next
        };
        if next.is_some_and(|n| n <= tick(sh.now())) {
            continue;
        }
        let sleep = next.map(|t| {
            let us = i64::try_from(t).unwrap_or(i64::MAX).saturating_mul(1000);
            sh.config.clock.sleep_until(us)
        });
        tokio::select! {
            () = sh.timer_wake.notified() => {}
            () = async {
                match sleep {
                    Some(s) => s.await,
                    None => std::future::pending().await,
                }
            } => {}
        }
    }
}
