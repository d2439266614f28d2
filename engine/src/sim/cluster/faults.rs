//! The cluster's faults: server pauses longer than a lease, cuts from the database, server
//! crashes and restarts with an empty memory, and cut worker connections.

use super::*;

impl Cluster {
    pub(super) fn fault(&mut self) {
        if self.now >= self.faults_until {
            return;
        }
        let n = self.servers.len();
        let s = self.rng.gen_range(0..n);
        let roll = self.rng.gen_range(0..100);
        match roll {
            0..=34 => {
                // A pause longer than a lease: a long GC, a stopped VM.
                let v = &self.servers[s];
                if v.core.is_some() && !v.paused(self.now) {
                    let d = self.rng.gen_range(LEASE_MS + LEASE_MS / 5..3 * LEASE_MS);
                    self.trace(|| format!("fault: s{s} pauses for {d} ms"));
                    self.report.pauses += 1;
                    self.servers[s].paused_until = self.now + d;
                    self.at(self.now + d, Ev::Resume(s));
                }
            }
            35..=64 => {
                // Cut from the database for a while.
                let cut = self.db.lock().cut[s];
                if !cut {
                    let d = self.rng.gen_range(LEASE_MS / 2..3 * LEASE_MS);
                    self.trace(|| format!("fault: s{s} cut from the database for {d} ms"));
                    self.report.db_cuts += 1;
                    self.db.lock().cut[s] = true;
                    self.at(self.now + d, Ev::Heal(s));
                }
            }
            65..=79 => self.crash(s),
            _ => {
                let mut open: Vec<u64> = self.conns.keys().copied().collect();
                open.sort_unstable();
                if !open.is_empty() {
                    let c = open[self.rng.gen_range(0..open.len())];
                    self.report.connections_cut += 1;
                    self.cut(c);
                }
            }
        }
        let next = self.now + self.rng.gen_range(1000..4000);
        self.at(next, Ev::Fault);
    }

    /// Paused server `s` runs again: its due core timers and its ownership machine's
    /// deadline are both due; either may run first.
    pub(super) fn resume(&mut self, s: usize) {
        if self.servers[s].core.is_none() {
            return;
        }
        let core_first = self.rng.gen_ratio(1, 2);
        self.trace(|| format!("s{s} resumes (core first: {core_first})"));
        if core_first {
            self.step(s, |core, now| core.on_timers(now));
        }
        self.own_step(s, |own, now| own.handle_timeout(now));
        self.resolve(s);
        self.step(s, |core, now| core.on_timers(now));
    }

    pub(super) fn crash(&mut self, s: usize) {
        let limit = self
            .config
            .max_server_crashes
            .is_some_and(|m| self.report.server_crashes >= m);
        if limit || self.servers[s].core.is_none() {
            return;
        }
        self.trace(|| format!("fault: s{s} crashes"));
        self.report.server_crashes += 1;
        let Ok(own) = Ownership::new(self.servers[s].id.clone(), ownership_config()) else {
            return;
        };
        let v = &mut self.servers[s];
        v.core = None;
        v.life += 1;
        v.own = own;
        v.awaiting.clear();
        v.runs.clear();
        v.queries.clear();
        v.timer_at = None;
        v.own_timer_at = None;
        v.granted = [None; PARTITION_COUNT as usize];
        v.paused_until = self.now;
        self.db.lock().forget(s);
        let mut closing: Vec<u64> = self
            .conns
            .iter()
            .filter(|(_, c)| c.server == s)
            .map(|(k, _)| *k)
            .collect();
        closing.sort_unstable();
        for c in closing {
            self.cut(c);
        }
        let back = self.now + self.rng.gen_range(500..4000);
        self.at(back, Ev::Restart(s));
    }
}
