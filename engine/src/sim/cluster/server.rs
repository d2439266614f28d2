//! A server process of the cluster: starting it with an empty core, stepping its core on its
//! own clocks, carrying out its effects, and the shared store's write-and-sync rounds that
//! resume every running server's acknowledged writes.

use super::*;

impl Cluster {
    /// Starts server `s`'s process: an empty core that acts for nothing yet, a fresh
    /// ownership machine, its membership heartbeats.
    pub(super) fn start_server(&mut self, s: usize) {
        let apps = match self.shared.list_apps() {
            Ok(a) => a,
            Err(e) => {
                self.violation(format!("s{s}: apps unreadable: {e}"));
                return;
            }
        };
        let registry = match WorkerRegistry::new(RegistryConfig {
            heartbeat_interval_ms: WORKER_HEARTBEAT_MS,
            ..RegistryConfig::default()
        }) {
            Ok(r) => Arc::new(r),
            Err(e) => {
                self.violation(format!("registry: {e}"));
                return;
            }
        };
        let wall = self.wall(s);
        let mono = self.mono(s);
        let select = SelectState::seeded(self.rng.gen());
        let v = &mut self.servers[s];
        let mut core = Core::new(
            core_config(),
            Arc::clone(&v.repo),
            registry,
            Arc::new(Metrics::default()),
            select,
            wall,
        );
        core.begin(wall * 1000, mono.0);
        core.start_partitioned(apps, wall);
        v.core = Some(core);
        let life = v.life;
        self.trace(|| format!("s{s} starts"));
        self.drain(s);
        self.at(self.now, Ev::Heartbeat { s, life });
    }

    /// Runs `f` as one step of server `s`'s core, then carries out its effects.
    pub(super) fn step(&mut self, s: usize, f: impl FnOnce(&mut Core, EpochMs)) {
        let wall = self.wall(s);
        let mono = self.mono(s);
        let Some(core) = self.servers.get_mut(s).and_then(|v| v.core.as_mut()) else {
            return;
        };
        core.begin(wall * 1000, mono.0);
        f(core, wall);
        self.drain(s);
    }

    /// Carries out server `s`'s effects until none are left; re-arms its timer.
    pub(super) fn drain(&mut self, s: usize) {
        loop {
            let Some(core) = self.servers[s].core.as_mut() else {
                return;
            };
            if !core.has_effects() {
                break;
            }
            for e in core.take_effects() {
                self.effect(s, e);
            }
        }
        let skew = self.servers[s].skew_ms;
        let next = self.servers[s]
            .core
            .as_ref()
            .and_then(|c| c.next_timer())
            .map(|n| i64::try_from(n).unwrap_or(i64::MAX) - skew);
        if let Some(next) = next {
            let v = &mut self.servers[s];
            if v.timer_at.is_none_or(|t| t > next) {
                v.timer_at = Some(next);
                self.at(next, Ev::ServerTimer(s));
            }
        }
        self.arm_store_step();
    }

    pub(super) fn effect(&mut self, s: usize, e: Effect) {
        let now = self.wall(s);
        match e {
            Effect::Await(a) => self.servers[s].awaiting.push_back(a),
            Effect::Send { app, worker, msg } => {
                let conn = self.conn_of(s, app, &worker);
                match msg {
                    Outgoing::Schedule { msg, since, .. } => match conn {
                        Some(c) => self.send_to_worker(c, Message::ScheduleJob(*msg), None),
                        None => {
                            if let Some(core) = self.servers[s].core.as_mut() {
                                core.on_send_closed(InstanceId(msg.instance_id), since, now);
                            }
                        }
                    },
                    Outgoing::Stop(stop) => {
                        if let Some(c) = conn {
                            self.send_to_worker(c, Message::StopInstance(stop), None);
                        }
                    }
                }
            }
            Effect::Query { app, worker, ids } => {
                let conn = self.conn_of(s, app, &worker);
                for id in ids {
                    match conn {
                        Some(c) => {
                            let corr = self.next_correlation;
                            self.next_correlation += 1;
                            self.servers[s]
                                .queries
                                .insert(corr, (c, worker.clone(), id, app));
                            self.send_to_worker(
                                c,
                                Message::QueryInstanceStatus(QueryInstanceStatus {
                                    instance_id: id.0,
                                }),
                                Some(corr),
                            );
                        }
                        None => {
                            if let Some(core) = self.servers[s].core.as_mut() {
                                core.on_query_answer(
                                    app,
                                    &worker,
                                    id,
                                    QueryAnswer::Unanswered,
                                    now,
                                );
                            }
                        }
                    }
                }
            }
            // Retention is not simulated in a cluster; alarms have no channel here.
            Effect::Prune(_)
            | Effect::PruneWorkflow(_)
            | Effect::Sweep { .. }
            | Effect::WakeAlarms => {}
        }
    }

    pub(super) fn arm_store_step(&mut self) {
        if self.store_step_armed {
            return;
        }
        let busy = self
            .servers
            .iter()
            .any(|v| !v.awaiting.is_empty() || !v.runs.is_empty())
            || self.store.queued_batches() > 0;
        if !busy {
            return;
        }
        self.store_step_armed = true;
        self.at(self.now + FSYNC_MS, Ev::StoreStep);
    }

    /// The shared store writes and syncs; every running server's acknowledged writes resume
    /// its core in submission order (a paused one's when it resumes).
    pub(super) fn store_step(&mut self) {
        if let Err(e) = self
            .store
            .write_pending()
            .and_then(|_| self.store.sync_pending())
        {
            self.violation(format!("store step failed: {e}"));
            return;
        }
        for s in 0..self.servers.len() {
            if !self.servers[s].paused(self.now) {
                self.resolve(s);
            }
        }
        self.arm_store_step();
    }

    pub(super) fn resolve(&mut self, s: usize) {
        let wall = self.wall(s);
        let mono = self.mono(s);
        let v = &mut self.servers[s];
        let Some(core) = v.core.as_mut() else {
            return;
        };
        core.begin(wall * 1000, mono.0);
        let mut retries = Vec::new();
        resume_awaited(core, &mut v.awaiting, wall, |_| {});
        while let Some((c, _, _, _)) = v.runs.front_mut() {
            let Poll::Ready(r) = poll_now(c) else { break };
            let Some((_, then, job, app)) = v.runs.pop_front() else {
                break;
            };
            match r {
                Ok(rec) => {
                    self.acked.push((rec.id, app));
                    self.report.runs_acknowledged += 1;
                    core.after_create(rec, then, wall);
                }
                Err(_) => {
                    // The client sees the failure and asks again.
                    core.create_failed(then);
                    retries.push((job, app));
                }
            }
        }
        for (job, app) in retries {
            let t = self.now + 100;
            self.at(
                t,
                Ev::ApiRun {
                    job,
                    app,
                    attempt: 1,
                },
            );
        }
        self.drain(s);
    }
}
