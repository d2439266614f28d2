//! The workers: their processes (started, restarted), connecting, and carrying out what their
//! cores ask for (processor runs, transmits, timers).

use super::*;

impl World {
    pub(super) fn spawn_worker(&mut self, i: usize) {
        let address = format!("w{i}:7000");
        let core = self.worker_core(&address);
        let w = Worker {
            address,
            core,
            life: 0,
            alive: true,
            conn: None,
            server_conn: None,
            timer_at: None,
            connect_at: None,
        };
        if i < self.workers.len() {
            let life = self.workers[i].life + 1;
            self.workers[i] = w;
            self.workers[i].life = life;
        } else {
            self.workers.push(w);
        }
        let t = self.now + self.rng.gen_range(0..50);
        self.at(t, Event::WorkerConnect(i));
        self.workers[i].connect_at = Some(t);
    }

    pub(super) fn worker_core(&mut self, address: &str) -> wcore::WorkerCore {
        let config = wcore::CoreConfig {
            address: address.to_owned(),
            app: self.app_name.clone(),
            tag: None,
            heartbeat_interval_ms: i64::try_from(HEARTBEAT_MS).unwrap_or(1000),
            keepalive_interval_ms: 10_000,
            server_lost_after: Duration::from_secs(3600),
            max_running_instances: 0,
            finished_cache: 10_000,
            default_instance_timeout_ms: 0,
            backoff: BackoffConfig::default(),
            seed: self.rng.gen(),
            metrics: SystemMetrics {
                cpu_cores: 4,
                cpu_load: 0.5,
                memory_used_bytes: 1 << 30,
                memory_max_bytes: 8 << 30,
                disk_used_bytes: 10 << 30,
                disk_total_bytes: 100 << 30,
                score: 0,
            },
        };
        wcore::WorkerCore::new(config, self.now)
    }

    pub(super) fn worker_connect(&mut self, i: usize) {
        let Some(w) = self.workers.get_mut(i) else {
            return;
        };
        if !w.alive || w.conn.is_some() || w.connect_at.is_none_or(|t| t > self.now) {
            return;
        }
        w.connect_at = None;
        if self.server.is_none() {
            w.core.handle(
                self.now,
                wcore::Input::ConnectFailed {
                    retry: wcore::Retry::Backoff,
                },
            );
            self.drain_worker(i);
            return;
        }
        let id = self.next_conn;
        self.next_conn += 1;
        let gen = id;
        self.conns.insert(
            id,
            Conn {
                worker: i,
                gen,
                open: true,
                half_open: false,
                last_to_server: self.now,
                last_to_worker: self.now,
            },
        );
        let address = self.workers[i].address.clone();
        self.trace(None, || format!("worker {i} connects (conn {id})"));
        self.workers[i].conn = Some(id);
        self.workers[i].server_conn = Some(id);
        let app = self.app;
        // The server files the connection first (as the runtime does), then the worker
        // learns that it is up.
        let mut replaced = None;
        self.server_step(|core| replaced = core.worker_connected(app, &address, gen));
        if let Some(old) = replaced {
            // The runtime closes a replaced connection: nothing more is read from it.
            if self.conns.get(&old).is_some_and(|c| c.half_open) {
                self.conns.remove(&old);
            }
        }
        let now = self.now;
        self.workers[i].core.handle(now, wcore::Input::Connected);
        self.drain_worker(i);
    }

    /// Carries out a worker's effects and transmits, and re-arms its timers.
    pub(super) fn drain_worker(&mut self, i: usize) {
        loop {
            let Some(w) = self.workers.get_mut(i) else {
                return;
            };
            let Some(e) = w.core.poll_effect() else { break };
            match e {
                wcore::Effect::StartRun(run) if matches!(run.kind, wcore::RunKind::Map { .. }) => {
                    let instance = run.job.instance_id;
                    self.trace(Some(instance), || {
                        format!("worker {i}: map run {} starts", run.id.0)
                    });
                    let workers = &self.workers;
                    let connected =
                        |w: usize| workers.get(w).is_some_and(|w| w.alive && w.conn.is_some());
                    self.checker.run_started(
                        i,
                        run.id,
                        instance,
                        connected,
                        self.now,
                        &mut self.report.violations,
                    );
                    self.mr_start(i, run.id, instance);
                }
                wcore::Effect::StartRun(run) => {
                    let life = w.life;
                    let instance = run.job.instance_id;
                    let long = self.rng.gen_ratio(1, 20);
                    let d = if long {
                        self.rng.gen_range(1000..20_000)
                    } else {
                        self.rng.gen_range(5..500)
                    };
                    let success = self.rng.gen_ratio(9, 10);
                    self.trace(Some(instance), || {
                        format!("worker {i}: run {} starts ({d} ms)", run.id.0)
                    });
                    let workers = &self.workers;
                    let connected =
                        |w: usize| workers.get(w).is_some_and(|w| w.alive && w.conn.is_some());
                    self.checker.run_started(
                        i,
                        run.id,
                        instance,
                        connected,
                        self.now,
                        &mut self.report.violations,
                    );
                    self.at(
                        self.now + d,
                        Event::RunDone {
                            worker: i,
                            life,
                            run: run.id,
                            success,
                        },
                    );
                }
                wcore::Effect::CancelInstance { instance_id } => {
                    self.checker.stop_received(i, instance_id);
                    self.mr_cancelled(i, instance_id);
                }
                wcore::Effect::InstanceDone { .. }
                | wcore::Effect::PeerTask { .. }
                | wcore::Effect::Log { .. } => {}
            }
        }
        let conn = self.workers[i].conn;
        loop {
            let Some(w) = self.workers.get_mut(i) else {
                return;
            };
            if conn.is_none() || !w.core.is_connected() {
                break;
            }
            let Some(t) = w.core.poll_transmit() else {
                break;
            };
            let Some(c) = conn else { break };
            match t {
                wcore::Transmit::Send(m) => self.send_to_server(c, m, None),
                wcore::Transmit::Reply {
                    correlation,
                    message,
                } => self.send_to_server(c, message, Some(correlation)),
            }
        }
        let w = &mut self.workers[i];
        if let Some(t) = w.core.poll_timeout() {
            if w.timer_at.is_none_or(|a| a > t) {
                w.timer_at = Some(t);
                self.at(t, Event::WorkerTimer(i));
            }
        }
        let w = &mut self.workers[i];
        if w.conn.is_none() {
            if let Some(t) = w.core.next_connect_at() {
                if w.connect_at.is_none_or(|a| a > t) {
                    w.connect_at = Some(t);
                    self.at(t, Event::WorkerConnect(i));
                }
            }
        }
    }
}
