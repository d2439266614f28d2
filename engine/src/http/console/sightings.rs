//! Workers the console saw online and then no longer: how the workers page shows dead ones.
//!
//! The [`Api`](crate::api::Api) lists live workers only (the server drops a worker after
//! three missed heartbeats), so the console remembers, per app, the last report of each
//! worker it listed. A worker that was listed once and is missing from a later list is
//! *lost*: the page shows it with its last heartbeat (the server's instant, exact) and when
//! the console noticed (the first listing without it, so as late as the next page view or
//! refresh after its death). A lost worker that comes back is live again.
//!
//! Bounds: lost workers are forgotten [`KEEP_LOST_MS`] after they were noticed; the table
//! holds at most [`MAX_WORKERS`] workers over all apps, and when full drops the lost worker
//! with the oldest heartbeat (or, when none is lost, refuses to remember more: live workers
//! are always listed from the API anyway). Memory only: a restart forgets them all.
//!
//! Sans-clock: every call takes `now` (epoch ms).

use std::collections::HashMap;

use crate::api::WorkerInfo;
use crate::time_expression::EpochMs;

/// How long a lost worker stays on the page.
pub(crate) const KEEP_LOST_MS: i64 = 24 * 3600 * 1000;
/// Most workers remembered, over all apps.
pub(crate) const MAX_WORKERS: usize = 4096;

#[derive(Debug)]
struct Seen {
    info: WorkerInfo,
    /// When a listing first lacked it; `None` while it is live.
    lost_since: Option<EpochMs>,
}

/// A lost worker: its last report, and when the console noticed it gone.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Lost {
    pub(crate) info: WorkerInfo,
    pub(crate) noticed: EpochMs,
}

/// The table (see the module doc).
#[derive(Debug)]
pub(crate) struct Sightings {
    max: usize,
    apps: HashMap<u64, HashMap<String, Seen>>,
    len: usize,
}

impl Default for Sightings {
    fn default() -> Sightings {
        Sightings::with_capacity(MAX_WORKERS)
    }
}

impl Sightings {
    pub(crate) fn with_capacity(max: usize) -> Sightings {
        Sightings {
            max,
            apps: HashMap::new(),
            len: 0,
        }
    }

    /// Records `live`, the app's workers listed at `now`, and answers the app's lost
    /// workers, the most recent heartbeat first.
    pub(crate) fn observe(&mut self, app: u64, live: &[WorkerInfo], now: EpochMs) -> Vec<Lost> {
        let seen = self.apps.entry(app).or_default();
        let before = seen.len();
        seen.retain(|_, s| s.lost_since.is_none_or(|t| now - t <= KEEP_LOST_MS));
        for s in seen.values_mut() {
            if s.lost_since.is_none() && !live.iter().any(|w| w.address == s.info.address) {
                s.lost_since = Some(now);
            }
        }
        self.len -= before - seen.len();
        for w in live {
            let known = self.apps.get_mut(&app).and_then(|m| m.get_mut(&w.address));
            if let Some(s) = known {
                s.info = w.clone();
                s.lost_since = None;
                continue;
            }
            if self.len >= self.max {
                // Make room: the lost worker with the oldest heartbeat, in any app.
                let oldest = self
                    .apps
                    .iter()
                    .flat_map(|(a, m)| m.values().map(move |s| (*a, s)))
                    .filter(|(_, s)| s.lost_since.is_some())
                    .min_by_key(|(_, s)| s.info.last_heartbeat)
                    .map(|(a, s)| (a, s.info.address.clone()));
                let Some((a, address)) = oldest else { break };
                if let Some(m) = self.apps.get_mut(&a) {
                    m.remove(&address);
                    self.len -= 1;
                }
            }
            let seen = self.apps.entry(app).or_default();
            let seen_before = seen.len();
            seen.insert(
                w.address.clone(),
                Seen {
                    info: w.clone(),
                    lost_since: None,
                },
            );
            self.len += seen.len() - seen_before;
        }
        self.apps.retain(|_, m| !m.is_empty());
        let mut lost: Vec<Lost> = self
            .apps
            .get(&app)
            .into_iter()
            .flat_map(HashMap::values)
            .filter_map(|s| {
                Some(Lost {
                    info: s.info.clone(),
                    noticed: s.lost_since?,
                })
            })
            .collect();
        lost.sort_by(|a, b| {
            b.info
                .last_heartbeat
                .cmp(&a.info.last_heartbeat)
                .then_with(|| a.info.address.cmp(&b.info.address))
        });
        lost
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn worker(address: &str, heartbeat: EpochMs) -> WorkerInfo {
        WorkerInfo {
            address: address.into(),
            tags: vec![],
            version: "1".into(),
            health_score: 1.0,
            cpu_cores: 1.0,
            cpu_load: None,
            memory_used_gb: 0.0,
            memory_total_gb: 1.0,
            disk_used_gb: 0.0,
            disk_total_gb: 1.0,
            overloaded: false,
            last_heartbeat: heartbeat,
        }
    }

    fn addresses(lost: &[Lost]) -> Vec<&str> {
        lost.iter().map(|l| l.info.address.as_str()).collect()
    }

    #[test]
    fn a_worker_missing_from_a_later_listing_is_lost_until_it_comes_back() {
        let mut t = Sightings::default();
        let (a, b) = (worker("a:1", 100), worker("b:1", 100));
        assert!(t.observe(1, &[a.clone(), b.clone()], 1000).is_empty());
        let lost = t.observe(1, &[worker("b:1", 2000)], 5000);
        assert_eq!(
            lost,
            vec![Lost {
                info: a.clone(),
                noticed: 5000
            }]
        );
        // Noticed once: a later listing keeps the first instant.
        let both = t.observe(1, &[], 9000);
        assert_eq!(
            addresses(&both),
            vec!["b:1", "a:1"],
            "newest heartbeat first"
        );
        assert_eq!((both[0].noticed, both[1].noticed), (9000, 5000));
        // Another app sees none of it.
        assert!(t.observe(2, &[], 9000).is_empty());
        // Back: live again.
        assert_eq!(
            addresses(&t.observe(1, &[worker("a:1", 9500)], 9500)),
            vec!["b:1"]
        );
    }

    #[test]
    fn lost_workers_are_forgotten_after_the_keep_window() {
        let mut t = Sightings::default();
        t.observe(1, &[worker("a:1", 0)], 0);
        assert_eq!(t.observe(1, &[], 10).len(), 1);
        assert_eq!(t.observe(1, &[], 10 + KEEP_LOST_MS).len(), 1);
        assert!(t.observe(1, &[], 11 + KEEP_LOST_MS).is_empty());
        assert_eq!(t.len, 0);
        assert!(t.apps.is_empty());
    }

    #[test]
    fn the_table_is_bounded_and_drops_the_oldest_lost_worker_first() {
        let mut t = Sightings::with_capacity(3);
        t.observe(1, &[worker("old:1", 1), worker("new:1", 5)], 10);
        t.observe(1, &[], 20);
        t.observe(2, &[worker("x:1", 30), worker("y:1", 30)], 30);
        assert_eq!(t.len, 3);
        assert_eq!(addresses(&t.observe(1, &[], 40)), vec!["new:1"]);
        // Room for z is made by dropping the last lost worker.
        t.observe(
            2,
            &[worker("x:1", 50), worker("y:1", 50), worker("z:1", 50)],
            50,
        );
        assert!(t.observe(1, &[], 50).is_empty());
        assert_eq!(t.len, 3);
        // Full of live workers: a fourth is not remembered, nothing live is dropped.
        let four = ["x:1", "y:1", "z:1", "w:1"].map(|a| worker(a, 60));
        t.observe(2, &four, 60);
        assert_eq!(t.len, 3);
        let two = [worker("x:1", 70), worker("y:1", 70)];
        assert_eq!(addresses(&t.observe(2, &two, 70)), vec!["z:1"]);
    }
}
