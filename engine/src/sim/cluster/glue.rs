//! The membership task and the cluster glue of each server: its ownership machine's commands
//! go to the database, its events load a granted partition into the core (a few
//! milliseconds later) or stop acting for one.

use super::*;

impl Cluster {
    /// Runs `f` on server `s`'s ownership machine, then carries out its commands and events.
    pub(super) fn own_step(&mut self, s: usize, f: impl FnOnce(&mut Ownership, MonoUs)) {
        if self.servers[s].core.is_none() {
            return;
        }
        let mono = self.mono(s);
        f(&mut self.servers[s].own, mono);
        loop {
            let mut any = false;
            while let Some(cmd) = self.servers[s].own.poll_command() {
                any = true;
                let life = self.servers[s].life;
                let t = self.now + self.db_latency();
                self.at(t, Ev::ToDb { s, life, cmd });
            }
            while let Some(e) = self.servers[s].own.poll_event() {
                any = true;
                match e {
                    OwnEvent::Acting { partition, epoch } => {
                        self.trace(|| format!("s{s} acts for {partition} at {epoch}"));
                        if let Some(g) = self.servers[s].granted.get_mut(partition.index()) {
                            *g = Some(epoch);
                        }
                        let life = self.servers[s].life;
                        let t = self.now + self.rng.gen_range(1..5);
                        self.at(
                            t,
                            Ev::Load {
                                s,
                                life,
                                p: partition,
                                epoch,
                            },
                        );
                    }
                    OwnEvent::Stop { partition, reason } => {
                        self.trace(|| format!("s{s} stops acting for {partition}: {reason:?}"));
                        self.stop_partition(s, partition);
                    }
                    OwnEvent::Drain { partition } => {
                        self.trace(|| format!("s{s} drains {partition}"));
                        self.stop_partition(s, partition);
                        let mono = self.mono(s);
                        self.servers[s]
                            .own
                            .handle(mono, Input::Stopped { partition });
                    }
                }
            }
            if !any {
                break;
            }
        }
        if let Some(m) = self.servers[s].own.poll_timeout() {
            let t = self.world_at(s, m).max(self.now);
            let v = &mut self.servers[s];
            if v.own_timer_at.is_none_or(|a| a > t) {
                v.own_timer_at = Some(t);
                self.at(t, Ev::OwnTimer(s));
            }
        }
    }

    /// The glue's `stop`: the repository refuses the partition's writes, the core drops it,
    /// its workers' connections close.
    pub(super) fn stop_partition(&mut self, s: usize, p: PartitionId) {
        if let Some(g) = self.servers[s].granted.get_mut(p.index()) {
            *g = None;
        }
        self.db.lock().hold(s, p, None);
        self.step(s, |core, now| core.on_partition_lost(p, None, now));
        let mut closing: Vec<u64> = self
            .conns
            .iter()
            .filter(|(_, c)| {
                c.server == s
                    && self
                        .workers
                        .get(c.worker)
                        .and_then(|w| self.apps.get(w.app))
                        .is_some_and(|a| a.partition == p)
            })
            .map(|(k, _)| *k)
            .collect();
        closing.sort_unstable();
        for c in closing {
            self.cut(c);
        }
    }

    /// The glue's loading thread: the repository writes under the new epoch, the store is
    /// read, the core acts for the partition (if it is still granted).
    pub(super) fn load(&mut self, s: usize, life: u64, p: PartitionId, epoch: Epoch) {
        let v = &self.servers[s];
        if v.life != life || v.core.is_none() || v.granted.get(p.index()) != Some(&Some(epoch)) {
            return;
        }
        self.db.lock().hold(s, p, Some(epoch));
        let repo = Arc::clone(&self.servers[s].repo);
        let read = repo
            .load()
            .and_then(|l| repo.load_workflows().map(|w| (l, w)));
        match read {
            Ok((loaded, workflows)) => {
                self.step(s, |core, now| {
                    core.on_partition_loaded(p, epoch, loaded, workflows, now)
                });
            }
            Err(_) => {
                let t = self.now + RELOAD_AFTER_MS;
                self.at(t, Ev::Load { s, life, p, epoch });
            }
        }
    }

    /// A lease command reaches the database (unless server `s` is cut from it).
    pub(super) fn at_db(&mut self, s: usize, life: u64, cmd: Command) {
        let answer = {
            let mut db = self.db.lock();
            if db.cut[s] {
                return;
            }
            db.command(s, cmd, &self.ids)
        };
        if let Some(input) = answer {
            let t = self.now + self.db_latency();
            self.at(t, Ev::FromDb { s, life, input });
        }
    }
}
