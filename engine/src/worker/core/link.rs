//! The server connection as the core sees it: connected or not, the reconnect backoff,
//! heartbeats, and the timers (instance deadlines and keepalives, heartbeats, server lost).

use ferrojob_transport::message::{InstanceStatus, WorkerHeartbeat};

use ferrojob_transport::Backoff;

use super::reconnect::{Retry, SplitMix64, MAX_HANDOFF_DELAY, MAX_RECONNECT_DELAY};
use super::{About, EpochMs, Outcome, TimerKey, Transmit, WorkerCore, TRANSMIT_SOFT_LIMIT};

/// The server connection as the core sees it.
#[derive(Debug)]
pub(super) struct Link {
    pub(super) connected: bool,
    /// Since when the server is unreachable (`None` while connected).
    pub(super) disconnected_since: Option<EpochMs>,
    /// When to try the server next (`None` while connected).
    pub(super) next_connect_at: Option<EpochMs>,
    /// Fixed rate/delay instances were stopped for this disconnection.
    pub(super) lost_applied: bool,
    pub(super) next_heartbeat: EpochMs,
    pub(super) backoff: Backoff,
    /// Between rounds over the servers while the app is handed over.
    pub(super) handoff: Backoff,
    pub(super) rng: SplitMix64,
}

impl WorkerCore {
    pub(super) fn on_connected(&mut self, now: EpochMs) {
        let link = &mut self.link;
        link.connected = true;
        link.disconnected_since = None;
        link.next_connect_at = None;
        link.lost_applied = false;
        link.backoff.reset();
        link.handoff.reset();
        link.next_heartbeat = now.saturating_add(self.config.heartbeat_interval_ms);
        // The heartbeat goes first: it tells the server who this worker is now.
        self.transmits.retain(|(_, a)| *a != About::Heartbeat);
        let hb = self.heartbeat(now);
        self.transmits
            .push_front((Transmit::Send(hb.into()), About::Heartbeat));
        self.heartbeat_queued = true;
    }

    pub(super) fn on_connection_lost(&mut self, now: EpochMs, retry: Retry) {
        if self.link.connected {
            self.link.connected = false;
            self.link.disconnected_since = Some(now);
        }
        // Heartbeats are stale by the next connection and answers belong to this one;
        // reports wait for the next connection.
        self.transmits
            .retain(|(_, a)| !matches!(a, About::Heartbeat | About::Reply));
        self.heartbeat_queued = false;
        self.schedule_reconnect(now, retry);
    }

    /// Sets when to try a server next; only [`Retry::Backoff`] and [`Retry::Handoff`] draw a
    /// delay (and advance their backoff).
    pub(super) fn schedule_reconnect(&mut self, now: EpochMs, retry: Retry) {
        if self.link.connected {
            debug_assert!(false, "reconnect scheduled while connected");
            return;
        }
        let delay = match retry {
            Retry::Now => std::time::Duration::ZERO,
            Retry::Backoff => {
                let unit = self.link.rng.unit();
                self.link.backoff.next_delay(unit)
            }
            Retry::Handoff => {
                let unit = self.link.rng.unit();
                let d = self.link.handoff.next_delay(unit);
                debug_assert!(d <= MAX_HANDOFF_DELAY);
                d
            }
        };
        debug_assert!(delay <= MAX_RECONNECT_DELAY);
        let ms = i64::try_from(delay.as_millis()).unwrap_or(i64::MAX);
        self.link.next_connect_at = Some(now.saturating_add(ms));
    }

    /// When fixed rate/delay instances are to be stopped, while disconnected.
    pub(super) fn server_lost_at(&self) -> Option<EpochMs> {
        if self.link.lost_applied {
            return None;
        }
        let since = self.link.disconnected_since?;
        let after = i64::try_from(self.config.server_lost_after.as_millis()).unwrap_or(i64::MAX);
        // Lost once the outage is *longer* than `server_lost_after`.
        Some(since.saturating_add(after).saturating_add(1))
    }

    pub(super) fn heartbeat(&self, now: EpochMs) -> WorkerHeartbeat {
        let heavy = self.instances.values().filter(|i| i.is_heavy()).count();
        let light = self.instances.len().saturating_sub(heavy);
        let max = self.config.max_running_instances;
        WorkerHeartbeat {
            worker_address: self.config.address.clone(),
            app_name: self.config.app.clone(),
            app_id: 0,
            heartbeat_time_ms: now,
            version: env!("CARGO_PKG_VERSION").to_string(),
            tag: self.config.tag.clone(),
            overloaded: max > 0 && self.instances.len() >= max,
            lightweight_task_trackers: u32::try_from(light).unwrap_or(u32::MAX),
            heavy_task_trackers: u32::try_from(heavy).unwrap_or(u32::MAX),
            processor_trackers: self.processor_trackers,
            metrics: self.metrics.clone(),
        }
    }

    pub(super) fn on_timer(&mut self, now: EpochMs) {
        while let Some(&(due, key)) = self.timers.first() {
            if due > now {
                break;
            }
            self.timers.remove(&(due, key));
            match key {
                TimerKey::Deadline(id) => {
                    let ms = self
                        .instances
                        .get(&id)
                        .map_or(0, |i| i.job.instance_timeout_ms);
                    self.finish(now, id, Outcome::TimedOut(ms));
                }
                TimerKey::Keepalive(id) => self.keepalive(now, id),
            }
        }
        if self.link.connected && self.link.next_heartbeat <= now {
            self.link.next_heartbeat = now.saturating_add(self.config.heartbeat_interval_ms);
            // A heartbeat still queued is as good as a new one: never two.
            if !self.heartbeat_queued && self.transmits.len() < TRANSMIT_SOFT_LIMIT {
                let hb = self.heartbeat(now);
                self.transmits
                    .push_back((Transmit::Send(hb.into()), About::Heartbeat));
                self.heartbeat_queued = true;
            }
        }
        if !self.link.connected && self.server_lost_at().is_some_and(|t| t <= now) {
            self.link.lost_applied = true;
            let fixed: Vec<u64> = self
                .instances
                .iter()
                .filter(|(_, i)| i.is_fixed())
                .map(|(id, _)| *id)
                .collect();
            for id in fixed {
                tracing::warn!(
                    instance = id,
                    "server unreachable too long: stopping fixed rate/delay instance"
                );
                self.finish(now, id, Outcome::ServerLost);
            }
        }
    }

    pub(super) fn keepalive(&mut self, now: EpochMs, id: u64) {
        let address = &self.config.address;
        let Some(i) = self.instances.get_mut(&id) else {
            return;
        };
        debug_assert!(
            !i.seq.is_finished(),
            "instance {id} running after its final report"
        );
        i.next_keepalive = now.saturating_add(i.keepalive_every);
        self.timers
            .insert((i.next_keepalive, TimerKey::Keepalive(id)));
        // A RUNNING report still queued says the same: skip rather than queue another.
        if i.unsent > 0 || self.transmits.len() >= TRANSMIT_SOFT_LIMIT {
            return;
        }
        if let Some(r) = i.report(now, address, InstanceStatus::Running, None) {
            i.unsent += 1;
            let about = About::Report {
                instance_id: id,
                generation: i.generation,
            };
            self.transmits.push_back((Transmit::Send(r.into()), about));
        }
    }
}
