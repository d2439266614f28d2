//! Per-app counts over trailing windows of up to a day: instances that reached a final status
//! and the lateness of scheduled fires, for `GET /v1/apps/{app}/stats` and the console's
//! overview.
//!
//! Each app has rings of fixed-size buckets, allocated once when the app first counts
//! something and dropped with the app:
//!
//! | ring | buckets | each holds | bytes |
//! |---|---|---|---|
//! | counts | [`DAY_MINUTES`] one-minute | finished, succeeded, failed, fires | 1440 × 20 = 28,800 |
//! | lateness by minute | [`HOUR_MINUTES`] one-minute | a lateness histogram and its max | 60 × 104 = 6,240 |
//! | lateness by hour | [`DAY_HOURS`] one-hour | the same | 25 × 104 = 2,600 |
//!
//! so about 37 KiB per app. A bucket carries the minute (or hour) it counts; a bucket found
//! holding an older one is reset before it counts, so recording is O(1) and allocates
//! nothing, and a read sums the buckets of its window (at most 1440).
//!
//! The lateness histogram has [`LATENESS_BOUNDS_MS`] bins (1-2-5 steps from 0 ms to 5000 s,
//! then everything later); a quantile is the upper bound of the bin it falls in, at most the
//! largest lateness of the window.
//!
//! The counts live in memory only: they start empty when the server starts, and a read says
//! from when they hold (`since`).

use std::collections::HashMap;

use crate::api::{AppStats, StatsWindow};
use crate::ids::AppId;
use crate::model::InstanceStatus;
use crate::time_expression::EpochMs;

/// Minutes in the longest window (a day).
pub(crate) const DAY_MINUTES: usize = 1440;
/// Minutes of the lateness kept by minute (the last hour).
pub(crate) const HOUR_MINUTES: usize = 60;
/// Hours of the lateness kept by hour: a day and the hour its window starts in.
pub(crate) const DAY_HOURS: usize = 25;

const MINUTE_MS: i64 = 60_000;

/// Upper bounds of the lateness histogram's bins, ms; one more bin holds what is later.
pub(crate) const LATENESS_BOUNDS_MS: [i64; 22] = [
    0, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000, 20_000, 50_000, 100_000,
    200_000, 500_000, 1_000_000, 2_000_000, 5_000_000,
];
const BINS: usize = LATENESS_BOUNDS_MS.len() + 1;

/// One minute's counts.
#[derive(Debug, Clone, Copy, Default)]
struct Counts {
    /// The minute counted (minutes since the epoch).
    minute: u32,
    finished: u32,
    succeeded: u32,
    failed: u32,
    fires: u32,
}

/// One minute's or hour's fire lateness.
#[derive(Debug, Clone, Copy)]
struct Lateness {
    /// The minute or hour counted (since the epoch).
    slot: u32,
    bins: [u32; BINS],
    max_ms: i64,
}

impl Lateness {
    const EMPTY: Lateness = Lateness {
        slot: 0,
        bins: [0; BINS],
        max_ms: 0,
    };

    fn observe(&mut self, ms: i64) {
        let bin = LATENESS_BOUNDS_MS.partition_point(|b| *b < ms);
        if let Some(n) = self.bins.get_mut(bin) {
            *n = n.saturating_add(1);
        }
        self.max_ms = self.max_ms.max(ms);
    }

    fn add(&mut self, other: &Lateness) {
        for (a, b) in self.bins.iter_mut().zip(other.bins.iter()) {
            *a = a.saturating_add(*b);
        }
        self.max_ms = self.max_ms.max(other.max_ms);
    }

    /// The `q`-th quantile (0 < q ≤ 1): the upper bound of its bin, at most the largest
    /// lateness seen; `None` without samples.
    fn quantile(&self, q: f64) -> Option<i64> {
        let total: u64 = self.bins.iter().map(|n| u64::from(*n)).sum();
        if total == 0 {
            return None;
        }
        // The rank of the sample the quantile names, 1-based (nearest rank).
        let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
        let mut seen = 0u64;
        for (i, n) in self.bins.iter().enumerate() {
            seen += u64::from(*n);
            if seen >= rank {
                let bound = LATENESS_BOUNDS_MS.get(i).copied().unwrap_or(i64::MAX);
                return Some(bound.min(self.max_ms));
            }
        }
        Some(self.max_ms)
    }
}

/// Slots of `width` ms since the epoch of `ms`, saturated into a `u32`.
fn slot_of(ms: EpochMs, width: i64) -> u32 {
    u32::try_from(ms.div_euclid(width).max(0)).unwrap_or(u32::MAX)
}

/// The bucket of `slot` in `ring`, reset first when it holds an older slot.
fn bucket<T: Copy>(
    ring: &mut [T],
    slot: u32,
    slot_of: impl Fn(&T) -> u32,
    empty: impl Fn(u32) -> T,
) -> Option<&mut T> {
    let len = ring.len();
    let b = ring.get_mut(usize::try_from(slot).ok()? % len)?;
    if slot_of(b) != slot {
        *b = empty(slot);
    }
    Some(b)
}

/// One app's rings (see the module docs).
#[derive(Debug)]
pub(crate) struct AppCounters {
    counts: Box<[Counts]>,
    by_minute: Box<[Lateness]>,
    by_hour: Box<[Lateness]>,
    /// The newest minute counted: a wall clock stepped back counts into it, never into a
    /// bucket a later lap of the ring already reused.
    newest: u32,
}

impl AppCounters {
    fn new() -> AppCounters {
        AppCounters {
            counts: vec![Counts::default(); DAY_MINUTES].into_boxed_slice(),
            by_minute: vec![Lateness::EMPTY; HOUR_MINUTES].into_boxed_slice(),
            by_hour: vec![Lateness::EMPTY; DAY_HOURS].into_boxed_slice(),
            newest: 0,
        }
    }

    /// The minute `now` counts in (never before the newest one counted).
    fn minute(&mut self, now: EpochMs) -> u32 {
        self.newest = self.newest.max(slot_of(now, MINUTE_MS));
        self.newest
    }

    fn counts_at(&mut self, minute: u32) -> Option<&mut Counts> {
        bucket(
            &mut self.counts,
            minute,
            |c| c.minute,
            |minute| Counts {
                minute,
                ..Counts::default()
            },
        )
    }

    fn finished(&mut self, status: InstanceStatus, now: EpochMs) {
        let minute = self.minute(now);
        if let Some(c) = self.counts_at(minute) {
            c.finished = c.finished.saturating_add(1);
            match status {
                InstanceStatus::Succeed => c.succeeded = c.succeeded.saturating_add(1),
                InstanceStatus::Failed => c.failed = c.failed.saturating_add(1),
                _ => {}
            }
        }
    }

    fn fired(&mut self, lateness_ms: i64, now: EpochMs) {
        let minute = self.minute(now);
        if let Some(c) = self.counts_at(minute) {
            c.fires = c.fires.saturating_add(1);
        }
        let empty = |slot| Lateness {
            slot,
            ..Lateness::EMPTY
        };
        let ms = lateness_ms.max(0);
        if let Some(l) = bucket(&mut self.by_minute, minute, |l| l.slot, empty) {
            l.observe(ms);
        }
        let hour = minute / 60;
        if let Some(l) = bucket(&mut self.by_hour, hour, |l| l.slot, empty) {
            l.observe(ms);
        }
    }

    /// The window of the last `minutes` one-minute buckets up to minute `now_minute`,
    /// counting from `since` at the earliest.
    fn window(&self, now_minute: u32, minutes: u32, since: EpochMs) -> StatsWindow {
        let first = first_minute(now_minute, minutes);
        let in_window = |m: u32| (first..=now_minute).contains(&m);
        let mut w = StatsWindow {
            from: window_start(now_minute, minutes, since),
            ..StatsWindow::default()
        };
        for c in self.counts.iter().filter(|c| in_window(c.minute)) {
            w.finished += u64::from(c.finished);
            w.succeeded += u64::from(c.succeeded);
            w.failed += u64::from(c.failed);
            w.fires += u64::from(c.fires);
        }
        let mut late = Lateness::EMPTY;
        if usize::try_from(minutes).is_ok_and(|m| m <= HOUR_MINUTES) {
            for l in self.by_minute.iter().filter(|l| in_window(l.slot)) {
                late.add(l);
            }
        } else {
            // Beyond the last hour, lateness is kept by hour: from the hour the window
            // starts in.
            let hours = (first / 60)..=(now_minute / 60);
            for l in self.by_hour.iter().filter(|l| hours.contains(&l.slot)) {
                late.add(l);
            }
        }
        w.lateness_p50_ms = late.quantile(0.5);
        w.lateness_p99_ms = late.quantile(0.99);
        w
    }
}

/// Every app's counters, and from when they count.
#[derive(Debug)]
pub(crate) struct Stats {
    /// When this server started counting (its start), epoch ms.
    since: EpochMs,
    apps: HashMap<AppId, AppCounters>,
}

impl Stats {
    pub(crate) fn new(since: EpochMs) -> Stats {
        Stats {
            since,
            apps: HashMap::new(),
        }
    }

    fn app(&mut self, app: AppId) -> &mut AppCounters {
        self.apps.entry(app).or_insert_with(AppCounters::new)
    }

    /// An instance of `app` reached final status `status` at `now`.
    pub(crate) fn finished(&mut self, app: AppId, status: InstanceStatus, now: EpochMs) {
        self.app(app).finished(status, now);
    }

    /// A scheduled fire of `app` created an instance at `now`, `lateness_ms` after its
    /// trigger time.
    pub(crate) fn fired(&mut self, app: AppId, lateness_ms: i64, now: EpochMs) {
        self.app(app).fired(lateness_ms, now);
    }

    /// Forgets `app` (deleted).
    pub(crate) fn remove(&mut self, app: AppId) {
        self.apps.remove(&app);
    }

    /// `app`'s counts at `now`.
    pub(crate) fn read(&self, app: AppId, now: EpochMs) -> AppStats {
        let counters = self.apps.get(&app);
        let minute = slot_of(now, MINUTE_MS).max(counters.map_or(0, |c| c.newest));
        let window = |minutes: u32| match counters {
            Some(c) => c.window(minute, minutes, self.since),
            None => StatsWindow {
                from: window_start(minute, minutes, self.since),
                ..StatsWindow::default()
            },
        };
        AppStats {
            as_of: now,
            since: self.since,
            last_5_minutes: window(5),
            last_hour: window(60),
            last_day: window(1440),
        }
    }
}

/// The first minute of the window of the last `minutes` (at least 1) up to `now_minute`.
fn first_minute(now_minute: u32, minutes: u32) -> u32 {
    now_minute.saturating_sub(minutes.saturating_sub(1))
}

/// Where that window's counts start, epoch ms: its first minute, or `since` when later.
fn window_start(now_minute: u32, minutes: u32, since: EpochMs) -> EpochMs {
    (i64::from(first_minute(now_minute, minutes)) * MINUTE_MS).max(since)
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: EpochMs = 1_767_225_600_000; // a whole hour

    #[test]
    fn a_quantile_is_its_bins_upper_bound_at_most_the_largest_seen() {
        let mut l = Lateness::EMPTY;
        assert_eq!(l.quantile(0.5), None);
        for ms in [0, 3, 3, 40, 7_000] {
            l.observe(ms);
        }
        assert_eq!(l.quantile(0.2), Some(0));
        assert_eq!(l.quantile(0.5), Some(5), "3 ms falls in the (2, 5] bin");
        assert_eq!(l.quantile(0.8), Some(50));
        assert_eq!(l.quantile(0.99), Some(7_000), "capped by the largest");
        let mut huge = Lateness::EMPTY;
        huge.observe(9_000_000_000);
        assert_eq!(
            huge.quantile(0.5),
            Some(9_000_000_000),
            "beyond the last bound"
        );
    }

    #[test]
    fn the_sizes_stated_in_the_module_docs_hold() {
        assert_eq!(std::mem::size_of::<Counts>(), 20);
        assert_eq!(std::mem::size_of::<Lateness>(), 104);
    }

    #[test]
    fn an_empty_app_reads_zeros_from_the_start() {
        let s = Stats::new(T0);
        let r = s.read(AppId(1), T0 + 90_000);
        assert_eq!(r.since, T0);
        assert_eq!(r.last_day.from, T0, "not before the counting started");
        assert_eq!(r.last_5_minutes.from, T0);
        assert_eq!(r.last_hour.finished, 0);
        assert_eq!(r.last_hour.lateness_p99_ms, None);
    }
}
