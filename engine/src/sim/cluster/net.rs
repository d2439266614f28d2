//! The workers of the cluster's apps and their connections: a worker connects to the server
//! it was last pointed at and follows a refusal ("not served here; server X holds it") to
//! the server named, or to the next one when none is named. Per-connection FIFO delivery
//! with a small latency; a cut closes both ends at once and loses what was in flight.

use ferrojob_transport::message::ExecuteType as WireExecuteType;

use super::*;

impl Cluster {
    pub(super) fn spawn_worker(&mut self, app: usize, restart: Option<usize>) {
        let i = restart.unwrap_or(self.workers.len());
        let address = format!("w{i}:7000");
        let Some(app_name) = self.apps.get(app).map(|a| a.name.to_string()) else {
            return;
        };
        let config = wcore::CoreConfig {
            address: address.clone(),
            app: app_name,
            tag: None,
            heartbeat_interval_ms: i64::try_from(WORKER_HEARTBEAT_MS).unwrap_or(1000),
            keepalive_interval_ms: 10_000,
            server_lost_after: Duration::from_secs(3600),
            max_running_instances: 0,
            finished_cache: 10_000,
            default_instance_timeout_ms: 0,
            backoff: BackoffConfig {
                base: Duration::from_millis(50),
                max: Duration::from_secs(1),
                jitter: 0.5,
            },
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
        let hint = self.rng.gen_range(0..self.servers.len());
        let w = Wk {
            app,
            address,
            core: wcore::WorkerCore::new(config, self.now),
            life: 0,
            alive: true,
            conn: None,
            timer_at: None,
            connect_at: None,
            hint,
        };
        match self.workers.get_mut(i) {
            Some(slot) => {
                let life = slot.life + 1;
                *slot = w;
                slot.life = life;
            }
            None => self.workers.push(w),
        }
        let t = self.now + self.rng.gen_range(0..50);
        self.workers[i].connect_at = Some(t);
        self.at(t, Ev::WorkerConnect(i));
    }

    /// Server `s`'s connection to `app`'s worker `address`.
    pub(super) fn conn_of(&self, s: usize, app: AppId, address: &str) -> Option<u64> {
        let i = self.worker_index(address)?;
        let w = self.workers.get(i)?;
        if self.apps.get(w.app).map(|a| a.id) != Some(app) {
            return None;
        }
        let c = w.conn?;
        self.conns.get(&c).filter(|c| c.server == s).map(|_| c)
    }

    fn worker_index(&self, address: &str) -> Option<usize> {
        let n = address
            .strip_prefix('w')?
            .split(':')
            .next()?
            .parse::<usize>()
            .ok()?;
        (n < self.workers.len()).then_some(n)
    }

    pub(super) fn worker_connect(&mut self, i: usize) {
        let Some(w) = self.workers.get_mut(i) else {
            return;
        };
        if !w.alive || w.conn.is_some() || w.connect_at.is_none_or(|t| t > self.now) {
            return;
        }
        w.connect_at = None;
        let s = w.hint;
        let app = w.app;
        let n = self.servers.len();
        let Some((app_id, app_name)) = self.apps.get(app).map(|a| (a.id, Arc::clone(&a.name)))
        else {
            return;
        };
        // A paused server does not answer the handshake; a down one refuses it.
        let answer = match self.servers.get(s) {
            Some(v) if !v.paused(self.now) => v.core.as_ref().map(|c| c.serves(&app_name)),
            _ => None,
        };
        match answer {
            Some(Ok(())) => {}
            refused => {
                let next = match refused {
                    Some(Err(NotServed::OwnedBy(owner))) => self
                        .ids
                        .iter()
                        .position(|id| id.as_str() == owner)
                        .unwrap_or((s + 1) % n),
                    _ => (s + 1) % n,
                };
                let w = &mut self.workers[i];
                w.hint = next;
                w.core.handle(
                    self.now,
                    wcore::Input::ConnectFailed {
                        retry: wcore::Retry::Backoff,
                    },
                );
                self.drain_worker(i);
                return;
            }
        }
        let id = self.next_conn;
        self.next_conn += 1;
        self.conns.insert(
            id,
            Conn {
                worker: i,
                server: s,
                gen: id,
                last_to_server: self.now,
                last_to_worker: self.now,
            },
        );
        self.trace(|| format!("worker {i} connects to s{s} (conn {id})"));
        self.workers[i].conn = Some(id);
        let address = self.workers[i].address.clone();
        self.step(s, |core, _| {
            let _ = core.worker_connected(app_id, &address, id);
        });
        let now = self.now;
        self.workers[i].core.handle(now, wcore::Input::Connected);
        self.drain_worker(i);
    }

    pub(super) fn worker_timer(&mut self, i: usize) {
        let Some(w) = self.workers.get_mut(i) else {
            return;
        };
        if w.timer_at.is_none_or(|t| t > self.now) {
            return;
        }
        w.timer_at = None;
        let mut metrics = w.core.metrics().clone();
        metrics.cpu_load = w.core.running() as f64 / 4.0;
        w.core.handle(
            self.now,
            wcore::Input::Metrics {
                metrics,
                processor_trackers: 0,
            },
        );
        w.core.handle(self.now, wcore::Input::Timer);
        self.drain_worker(i);
    }

    /// Carries out a worker's effects and transmits, and re-arms its timers.
    pub(super) fn drain_worker(&mut self, i: usize) {
        loop {
            let Some(w) = self.workers.get_mut(i) else {
                return;
            };
            let Some(e) = w.core.poll_effect() else { break };
            if let wcore::Effect::StartRun(run) = e {
                let life = w.life;
                let d = if self.rng.gen_ratio(1, 20) {
                    self.rng.gen_range(1000..10_000)
                } else {
                    self.rng.gen_range(5..500)
                };
                let success = self.rng.gen_ratio(9, 10);
                self.at(
                    self.now + d,
                    Ev::RunDone {
                        worker: i,
                        life,
                        run: run.id,
                        success,
                    },
                );
            }
        }
        let conn = self.workers[i].conn;
        while let Some(c) = conn {
            let w = &mut self.workers[i];
            if !w.core.is_connected() {
                break;
            }
            let Some(t) = w.core.poll_transmit() else {
                break;
            };
            match t {
                wcore::Transmit::Send(m) => self.send(c, m, None, true),
                wcore::Transmit::Reply {
                    correlation,
                    message,
                } => self.send(c, message, Some(correlation), true),
            }
        }
        let w = &mut self.workers[i];
        if let Some(t) = w.core.poll_timeout() {
            if w.timer_at.is_none_or(|a| a > t) {
                w.timer_at = Some(t);
                self.at(t, Ev::WorkerTimer(i));
            }
        }
        let w = &mut self.workers[i];
        if w.conn.is_none() {
            if let Some(t) = w.core.next_connect_at() {
                if w.connect_at.is_none_or(|a| a > t) {
                    w.connect_at = Some(t);
                    self.at(t, Ev::WorkerConnect(i));
                }
            }
        }
    }

    pub(super) fn send_to_worker(&mut self, conn: u64, msg: Message, correlation: Option<u64>) {
        self.send(conn, msg, correlation, false);
    }

    fn send(&mut self, conn: u64, msg: Message, correlation: Option<u64>, to_server: bool) {
        let lat = self.rng.gen_range(0..3);
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        let last = if to_server {
            &mut c.last_to_server
        } else {
            &mut c.last_to_worker
        };
        let t = (self.now + lat).max(*last);
        *last = t;
        let e = if to_server {
            Ev::ToServer {
                conn,
                msg,
                correlation,
            }
        } else {
            Ev::ToWorker {
                conn,
                msg,
                correlation,
            }
        };
        self.at(t, e);
    }

    pub(super) fn deliver_to_server(&mut self, conn: u64, msg: Message, correlation: Option<u64>) {
        let Some(c) = self.conns.get(&conn) else {
            return;
        };
        let (s, i) = (c.server, c.worker);
        let Some(w) = self.workers.get(i) else { return };
        let address = w.address.clone();
        let Some((app, app_name)) = self.apps.get(w.app).map(|a| (a.id, Arc::clone(&a.name)))
        else {
            return;
        };
        match msg {
            Message::WorkerHeartbeat(hb) => {
                let status = WorkerStatus {
                    address,
                    tags: Vec::new(),
                    version: hb.version.clone(),
                    overloaded: hb.overloaded,
                    trackers: TrackerCounts {
                        lightweight_task_trackers: hb.lightweight_task_trackers,
                        heavy_task_trackers: hb.heavy_task_trackers,
                        processor_trackers: hb.processor_trackers,
                    },
                };
                let metrics = WorkerMetrics::from(&hb.metrics);
                self.step(s, |core, _| core.on_heartbeat(&app_name, &status, metrics));
            }
            Message::ReportInstanceStatus(r) => {
                self.step(s, |core, now| core.on_report(app, &address, &r, now));
            }
            Message::InstanceStatusReply(rep) => self.query_answered(
                s,
                correlation,
                QueryAnswer::Status(
                    crate::server::core::report::from_wire(&rep.status),
                    rep.result,
                ),
            ),
            Message::ErrorReply(e) => {
                let answer = if e.code == ErrorCode::NotFound {
                    QueryAnswer::NotFound
                } else {
                    QueryAnswer::Unanswered
                };
                self.query_answered(s, correlation, answer);
            }
            _ => {}
        }
    }

    fn query_answered(&mut self, s: usize, correlation: Option<u64>, answer: QueryAnswer) {
        let Some(corr) = correlation else { return };
        let Some((_, worker, id, app)) = self.servers[s].queries.remove(&corr) else {
            return;
        };
        self.step(s, |core, now| {
            core.on_query_answer(app, &worker, id, answer, now)
        });
    }

    pub(super) fn deliver_to_worker(&mut self, conn: u64, msg: Message, correlation: Option<u64>) {
        let Some(i) = self.conns.get(&conn).map(|c| c.worker) else {
            return;
        };
        let Some(w) = self.workers.get_mut(i) else {
            return;
        };
        if !w.alive {
            return;
        }
        let input = match msg {
            Message::ScheduleJob(job) => {
                let processor = if job.execute_type == WireExecuteType::MapReduce {
                    wcore::ProcessorKind::Map { has_reduce: true }
                } else {
                    wcore::ProcessorKind::Basic
                };
                wcore::Input::ScheduleJob {
                    job: Box::new(job),
                    processor,
                }
            }
            Message::StopInstance(s) => wcore::Input::StopInstance {
                instance_id: s.instance_id,
                epoch: s.epoch,
            },
            Message::QueryInstanceStatus(q) => match correlation {
                Some(correlation) => wcore::Input::QueryInstanceStatus {
                    correlation,
                    instance_id: q.instance_id,
                },
                None => return,
            },
            _ => return,
        };
        w.core.handle(self.now, input);
        self.drain_worker(i);
    }

    /// Cuts connection `conn` at both ends: what was in flight is lost, the server's queries
    /// on it are unanswered.
    pub(super) fn cut(&mut self, conn: u64) {
        let Some(c) = self.conns.remove(&conn) else {
            return;
        };
        let (s, i, gen) = (c.server, c.worker, c.gen);
        self.trace(|| format!("connection {conn} of worker {i} to s{s} closes"));
        if let Some(w) = self.workers.get_mut(i) {
            if w.conn == Some(conn) {
                w.conn = None;
                if w.alive {
                    w.core.handle(
                        self.now,
                        wcore::Input::ConnectionLost {
                            retry: wcore::Retry::Backoff,
                        },
                    );
                    self.drain_worker(i);
                }
            }
        }
        let life = self.servers.get(s).map_or(0, |v| v.life);
        self.at(
            self.now,
            Ev::ServerSeesCut {
                s,
                life,
                conn,
                worker: i,
                gen,
            },
        );
    }

    /// Server `s` learns that connection `conn` closed: its queries on it are unanswered and
    /// the worker is disconnected (unless a newer connection replaced it).
    pub(super) fn server_sees_cut(&mut self, s: usize, life: u64, conn: u64, i: usize, gen: u64) {
        let Some(v) = self.servers.get_mut(s) else {
            return;
        };
        if v.life != life {
            return;
        }
        let ks: Vec<u64> = v
            .queries
            .iter()
            .filter(|(_, q)| q.0 == conn)
            .map(|(k, _)| *k)
            .collect();
        let lost: Vec<(u64, String, InstanceId, AppId)> = ks
            .into_iter()
            .filter_map(|k| v.queries.remove(&k))
            .collect();
        let Some(w) = self.workers.get(i) else { return };
        let address = w.address.clone();
        let Some((app, app_name)) = self.apps.get(w.app).map(|a| (a.id, Arc::clone(&a.name)))
        else {
            return;
        };
        self.step(s, |core, now| {
            for (_, worker, id, app) in &lost {
                core.on_query_answer(*app, worker, *id, QueryAnswer::Unanswered, now);
            }
            core.worker_disconnected(&app_name, app, &address, gen);
        });
    }
}
