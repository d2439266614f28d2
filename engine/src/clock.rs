//! Time as an input: the [`Clock`] trait, the real [`SystemClock`] and the [`VirtualClock`]
//! that tests advance by hand.
//!
//! Nothing in the engine reads the system time directly; whatever needs "now" or needs to wait
//! asks a `Clock`. Two kinds of waiting exist, because the scheduler has two kinds of waiters:
//!
//! * the scheduler's **driver thread** blocks in [`Clock::park`] until a deadline passes or it is
//!   [`Parker::unpark`]ed (a command arrived). The system clock parks on a condition variable
//!   with a timeout, which the kernel serves with a high-resolution timer (tens of microseconds of
//!   slack), rather than on tokio's timer, which rounds every deadline up to the next millisecond;
//! * **runs** (processors, their timeouts and retry backoffs) are async and use
//!   [`Clock::sleep_until`].
//!
//! The virtual clock never moves by itself: [`VirtualClock::advance`] moves it, wakes every parked
//! driver and completes every sleep that has come due, so tests are deterministic and instant.

#![forbid(unsafe_code)]
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::time_expression::EpochMs;

/// Microseconds since the Unix epoch, UTC.
pub type EpochUs = i64;

/// A boxed future that completes when a sleep is over.
pub type Sleep = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// A source of wall-clock time and of ways to wait for it.
///
/// Implementations must be monotonic enough for scheduling: a clock that steps backwards (the
/// system clock under an NTP step) only delays fires until it catches up again; the scheduler
/// never fires a trigger twice because of it.
pub trait Clock: Send + Sync + fmt::Debug + 'static {
    /// Now, in microseconds since the Unix epoch.
    fn now_us(&self) -> EpochUs;

    /// Now, in milliseconds since the Unix epoch (rounded down).
    fn now_ms(&self) -> EpochMs {
        self.now_us().div_euclid(1000)
    }

    /// Elapsed time, in microseconds, on a clock that never jumps: what durations between
    /// two events (a worker's missed heartbeats) are measured with. By default the wall
    /// clock itself (a virtual clock only moves when told to).
    fn monotonic_us(&self) -> EpochUs {
        self.now_us()
    }

    /// Blocks the calling thread until the clock reaches `deadline_us` (`None`: no deadline) or
    /// `parker` is unparked ([`Parker::unpark`]), whichever comes first. May return early (spuriously); callers
    /// re-check the time and their inputs in a loop.
    fn park(&self, parker: &Parker, deadline_us: Option<EpochUs>);

    /// A future that completes once the clock reaches `deadline_us`.
    fn sleep_until(&self, deadline_us: EpochUs) -> Sleep;
}

/// The operating system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_us(&self) -> EpochUs {
        match SystemTime::now().duration_since(UNIX_EPOCH) {
            Ok(d) => i64::try_from(d.as_micros()).unwrap_or(i64::MAX),
            // A clock set before 1970: report the (negative) distance.
            Err(e) => i64::try_from(e.duration().as_micros()).map_or(i64::MIN, |us| -us),
        }
    }

    /// The process's monotonic clock (`Instant`), anchored at the wall clock of its first
    /// use: a step of the system clock (NTP) does not move it.
    fn monotonic_us(&self) -> EpochUs {
        static ANCHOR: std::sync::OnceLock<(std::time::Instant, EpochUs)> =
            std::sync::OnceLock::new();
        let (at, wall) = *ANCHOR.get_or_init(|| (std::time::Instant::now(), self.now_us()));
        let since = i64::try_from(at.elapsed().as_micros()).unwrap_or(i64::MAX);
        wall.saturating_add(since)
    }

    fn park(&self, parker: &Parker, deadline_us: Option<EpochUs>) {
        let timeout = deadline_us.map(|d| {
            let us = d.saturating_sub(self.now_us()).max(0);
            Duration::from_micros(u64::try_from(us).unwrap_or(0))
        });
        parker.wait(timeout);
    }

    fn sleep_until(&self, deadline_us: EpochUs) -> Sleep {
        let us = deadline_us.saturating_sub(self.now_us()).max(0);
        let d = Duration::from_micros(u64::try_from(us).unwrap_or(0));
        Box::pin(tokio::time::sleep(d))
    }
}

/// A clock that only moves when told to. Clones share the same time.
#[derive(Clone)]
pub struct VirtualClock {
    inner: Arc<VirtualInner>,
}

struct VirtualInner {
    now_tx: tokio::sync::watch::Sender<EpochUs>,
    /// Parkers that have parked on this clock at least once; woken on every advance.
    parkers: Mutex<Vec<Parker>>,
}

impl fmt::Debug for VirtualClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VirtualClock")
            .field("now_us", &*self.inner.now_tx.borrow())
            .finish()
    }
}

impl VirtualClock {
    /// A virtual clock that reads `start_ms` (milliseconds since the Unix epoch).
    pub fn new(start_ms: EpochMs) -> Self {
        let (now_tx, _) = tokio::sync::watch::channel(start_ms.saturating_mul(1000));
        VirtualClock {
            inner: Arc::new(VirtualInner {
                now_tx,
                parkers: Mutex::new(Vec::new()),
            }),
        }
    }

    /// Moves the clock forward by `ms` milliseconds and wakes everything that waits on it.
    pub fn advance(&self, ms: u64) {
        self.advance_us(ms.saturating_mul(1000));
    }

    /// Moves the clock forward by `us` microseconds and wakes everything that waits on it.
    pub fn advance_us(&self, us: u64) {
        let step = i64::try_from(us).unwrap_or(i64::MAX);
        self.inner
            .now_tx
            .send_modify(|now| *now = now.saturating_add(step));
        for parker in lock(&self.inner.parkers).iter() {
            parker.unpark();
        }
    }

    /// Sets the clock to `ms` milliseconds since the epoch if that is later than now.
    pub fn advance_to(&self, ms: EpochMs) {
        let target = ms.saturating_mul(1000);
        let now = *self.inner.now_tx.borrow();
        if target > now {
            self.advance_us(u64::try_from(target - now).unwrap_or(0));
        }
    }
}

impl Clock for VirtualClock {
    fn now_us(&self) -> EpochUs {
        *self.inner.now_tx.borrow()
    }

    fn park(&self, parker: &Parker, deadline_us: Option<EpochUs>) {
        {
            let mut parkers = lock(&self.inner.parkers);
            if !parkers.iter().any(|p| p.same_as(parker)) {
                parkers.push(parker.clone());
            }
        }
        if deadline_us.is_some_and(|d| self.now_us() >= d) {
            return;
        }
        // No timeout: virtual time moves only through `advance`, which unparks us.
        parker.wait(None);
    }

    fn sleep_until(&self, deadline_us: EpochUs) -> Sleep {
        let mut rx = self.inner.now_tx.subscribe();
        Box::pin(async move {
            // The sender lives as long as the clock; if every clone is gone, time has stopped
            // and the sleep can never end, so park the future forever like an unfired timer.
            if rx.wait_for(|now| *now >= deadline_us).await.is_err() {
                std::future::pending::<()>().await;
            }
        })
    }
}

/// A one-permit thread parker: [`Parker::wait`] blocks until [`Parker::unpark`] was called
/// (before or during the wait) or the timeout passes. Cheap to clone; clones share the permit.
#[derive(Clone, Default)]
pub struct Parker {
    inner: Arc<(Mutex<bool>, Condvar)>,
}

impl fmt::Debug for Parker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Parker").finish_non_exhaustive()
    }
}

impl Parker {
    /// A parker without a permit.
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes the next (or the current) `wait` return.
    pub fn unpark(&self) {
        let (flag, cv) = &*self.inner;
        *lock(flag) = true;
        cv.notify_one();
    }

    /// Waits for a permit or the timeout, then consumes the permit if there is one.
    pub fn wait(&self, timeout: Option<Duration>) {
        let (flag, cv) = &*self.inner;
        let mut permit = lock(flag);
        if !*permit {
            permit = match timeout {
                Some(t) if t.is_zero() => permit,
                Some(t) => {
                    cv.wait_timeout(permit, t)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0
                }
                None => cv.wait(permit).unwrap_or_else(PoisonError::into_inner),
            };
        }
        *permit = false;
    }

    fn same_as(&self, other: &Parker) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }
}

/// Locks a mutex, ignoring poisoning: every critical section here leaves the data consistent.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn virtual_clock_moves_only_when_advanced() {
        let c = VirtualClock::new(1_000);
        assert_eq!(c.now_ms(), 1_000);
        assert_eq!(c.now_us(), 1_000_000);
        c.advance(5);
        assert_eq!(c.now_ms(), 1_005);
        c.advance_to(1_003);
        assert_eq!(c.now_ms(), 1_005, "advance_to never moves backwards");
        c.advance_to(2_000);
        assert_eq!(c.now_ms(), 2_000);
    }

    #[test]
    fn parker_permit_is_kept_until_waited() {
        let p = Parker::new();
        p.unpark();
        // Returns at once: the permit was set before the wait.
        p.wait(None);
        // The permit was consumed: a zero timeout returns without one.
        p.wait(Some(Duration::ZERO));
    }

    #[test]
    fn virtual_park_wakes_on_advance() {
        let c = VirtualClock::new(0);
        let p = Parker::new();
        let c2 = c.clone();
        let p2 = p.clone();
        let t = std::thread::spawn(move || {
            c2.park(&p2, Some(10_000));
            c2.now_ms()
        });
        // Wait until the thread registered its parker, then advance past its deadline.
        while lock(&c.inner.parkers).is_empty() {
            std::thread::yield_now();
        }
        c.advance(10);
        assert_eq!(t.join().expect("park thread"), 10);
    }

    #[tokio::test]
    async fn virtual_sleep_completes_when_due() {
        let c = VirtualClock::new(0);
        let mut s = c.sleep_until(5_000);
        assert!(futures::poll!(&mut s).is_pending());
        c.advance(4);
        assert!(futures::poll!(&mut s).is_pending());
        c.advance(1);
        s.await;
    }
}
