//! The timer task: one [`TimerWheel`] of millisecond ticks on the server's [`Clock`], fed by
//! [`TimerCmd`]s over an unbounded channel. It owns the wheel (no lock), sleeps with
//! `Clock::sleep_until` until the earliest deadline or the next command, and hands each
//! expired event to `Runtime::on_timer`, which never waits (firing submits to the store and
//! spawns the rest). With a `VirtualClock` nothing fires until the test advances the clock.
//!
//! [`Clock`]: crate::clock::Clock

use std::sync::Arc;

use tokio::sync::mpsc;

use crate::time_expression::EpochMs;
use crate::wheel::{Expired, TimerWheel};

use super::state::{Runtime, TimerCmd, TimerEv};

fn tick(ms: EpochMs) -> u64 {
    u64::try_from(ms).unwrap_or(0)
}

pub(crate) async fn run(sh: Arc<Runtime>, mut rx: mpsc::UnboundedReceiver<TimerCmd>) {
    let mut wheel: TimerWheel<TimerEv> = TimerWheel::new(tick(sh.now()));
    let mut expired: Vec<Expired<TimerEv>> = Vec::new();
    loop {
        while let Ok(cmd) = rx.try_recv() {
            let TimerCmd::Arm(at, ev) = cmd;
            wheel.insert(tick(at), ev);
        }
        if sh.is_shutting_down() {
            return;
        }
        let now = sh.now();
        let now_tick = tick(now).max(wheel.now());
        wheel.drain_expired(now_tick, &mut expired);
        for e in expired.drain(..) {
            sh.on_timer(e.value, now);
        }
        if !rx.is_empty() {
            continue;
        }
        let sleep = wheel.next_expiration().map(|t| {
            let us = i64::try_from(t).unwrap_or(i64::MAX).saturating_mul(1000);
            sh.config.clock.sleep_until(us)
        });
        tokio::select! {
            cmd = rx.recv() => match cmd {
                Some(TimerCmd::Arm(at, ev)) => {
                    wheel.insert(tick(at), ev);
                }
                None => return,
            },
            () = async {
                match sleep {
                    Some(s) => s.await,
                    None => std::future::pending().await,
                }
            } => {}
        }
    }
}
