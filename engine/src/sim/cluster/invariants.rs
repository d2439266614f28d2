//! What the cluster simulation checks: after every event, who may act for which partition;
//! at the end, once the faults stopped, liveness and that nothing acknowledged was lost.

use super::*;

impl Cluster {
    /// After every event: who may act for what.
    pub(super) fn check(&mut self) {
        let mut found = Vec::new();
        {
            let db = self.db.lock();
            for p in PartitionId::all() {
                let mut actor: Option<usize> = None;
                for (s, v) in self.servers.iter().enumerate() {
                    if v.core.is_none() {
                        continue;
                    }
                    let Some(epoch) = v.own.may_act(p, self.mono(s)) else {
                        continue;
                    };
                    if !db.owns(s, p, epoch) {
                        let row = db.leases.get(p.index()).copied().unwrap_or_default();
                        found.push(format!(
                            "s{s} may act for {p} at {epoch}, the database has {row:?} (now {})",
                            db.now
                        ));
                    }
                    if let Some(other) = actor.replace(s) {
                        found.push(format!("s{other} and s{s} both act for {p}"));
                    }
                }
            }
            for (s, v) in self.servers.iter().enumerate() {
                let Some(core) = v.core.as_ref() else {
                    continue;
                };
                // Between the deadline and the membership task's timer (due at this very
                // instant, not yet run) the core still acts: the fence covers that gap.
                if v.paused(self.now) || v.own_timer_at.is_some_and(|t| t <= self.now) {
                    continue;
                }
                for a in &self.apps {
                    let Some(e) = core.epoch_of(a.id) else {
                        continue;
                    };
                    if v.own.may_act(a.partition, self.mono(s)) != Some(Epoch(e)) {
                        found.push(format!(
                            "the core of s{s} acts for {} ({}) at epoch {e} without the lease",
                            a.name, a.partition
                        ));
                    }
                }
            }
        }
        for f in found {
            self.violation(f);
        }
        let db_found: Vec<(EpochMs, String)> = std::mem::take(&mut self.db.lock().violations);
        for (t, what) in db_found {
            self.report.violations.push(Violation::new(t, what));
        }
    }

    /// At the end, once the faults stopped: liveness and nothing acknowledged lost.
    pub(super) fn finish(mut self) -> SimReport {
        let _ = self.store.write_pending();
        let _ = self.store.sync_pending();
        self.check();
        let (last_fire, fenced, takeovers, fires) = {
            let db = self.db.lock();
            (
                db.last_fire.clone(),
                db.fenced,
                db.takeovers,
                db.fire_count(),
            )
        };
        self.report.fenced_writes = fenced;
        self.report.takeovers = takeovers;
        let mut found = Vec::new();
        for a in &self.apps {
            let acting: Vec<usize> = (0..self.servers.len())
                .filter(|&s| {
                    let v = &self.servers[s];
                    v.core.as_ref().and_then(|c| c.epoch_of(a.id)).is_some()
                        && v.own.may_act(a.partition, self.mono(s)).is_some()
                })
                .collect();
            if acting.len() != 1 {
                found.push(format!(
                    "{} ({}) is acted for by {} servers at the end",
                    a.name,
                    a.partition,
                    acting.len()
                ));
            }
            for j in &a.jobs {
                let last = last_fire.get(j).copied().unwrap_or(i64::MIN);
                if last < self.now - LIVENESS_MS {
                    found.push(format!(
                        "{j} of {} has not fired since {} ms before the end",
                        a.name,
                        self.now.saturating_sub(last)
                    ));
                }
            }
        }
        let mut finished = 0;
        for &(id, app) in &self.acked {
            let rec = match self.shared.get_instance(id) {
                Ok(r) => r,
                Err(e) => {
                    found.push(format!("acknowledged run {id} lost: {e}"));
                    continue;
                }
            };
            if rec.status.is_final() {
                finished += 1;
                continue;
            }
            let Some(a) = self.apps.get(app) else {
                continue;
            };
            let pending = self.servers.iter().any(|v| {
                v.core
                    .as_ref()
                    .is_some_and(|c| c.epoch_of(a.id).is_some() && c.active.contains_key(&id))
            });
            if !pending {
                found.push(format!(
                    "acknowledged run {id} is {:?} and no server holds it",
                    rec.status
                ));
            }
        }
        self.report.instances = self.acked.len() as u64 + fires;
        self.report.finished = finished;
        for f in found {
            self.violation(f);
        }
        self.report
    }
}
