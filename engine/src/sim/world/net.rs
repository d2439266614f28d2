//! The network: per-connection FIFO delivery with latency, what reaches the server and the
//! workers, and connections cut with what was in flight — at once on both ends, or half-open:
//! the server keeps reading what the worker had sent, and writing into the void, until it
//! notices, while the worker may already be back on a new connection (so the server sees
//! the old connection's messages after the new one's).

use ferrojob_transport::message::ExecuteType as WireExecuteType;

use super::*;

impl World {
    pub(super) fn server_conn(&self, app: AppId, worker: &str) -> Option<u64> {
        if app != self.app {
            return None;
        }
        let i = self.worker_index(worker)?;
        let c = self.workers[i].server_conn?;
        self.conns
            .get(&c)
            .filter(|c| c.open || c.half_open)
            .map(|_| c)
    }

    pub(super) fn worker_index(&self, address: &str) -> Option<usize> {
        let n = address
            .strip_prefix('w')?
            .split(':')
            .next()?
            .parse::<usize>()
            .ok()?;
        (n < self.workers.len()).then_some(n)
    }

    pub(super) fn latency(&mut self) -> i64 {
        if self.config.faults && self.now < self.faults_until && self.rng.gen_ratio(1, 50) {
            self.rng.gen_range(50..2000)
        } else {
            self.rng.gen_range(0..3)
        }
    }

    pub(super) fn send_to_worker(&mut self, conn: u64, msg: Message, correlation: Option<u64>) {
        let lat = self.latency();
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        if !c.open {
            return;
        }
        let t = (self.now + lat).max(c.last_to_worker);
        c.last_to_worker = t;
        self.at(
            t,
            Event::ToWorker {
                conn,
                msg,
                correlation,
            },
        );
    }

    pub(super) fn send_to_server(&mut self, conn: u64, msg: Message, correlation: Option<u64>) {
        let lat = self.latency();
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        if !c.open {
            return;
        }
        let t = (self.now + lat).max(c.last_to_server);
        c.last_to_server = t;
        self.at(
            t,
            Event::ToServer {
                conn,
                msg,
                correlation,
            },
        );
    }

    pub(super) fn deliver_to_server(&mut self, conn: u64, msg: Message, correlation: Option<u64>) {
        let Some(c) = self.conns.get(&conn) else {
            return;
        };
        if !(c.open || c.half_open) || self.server.is_none() {
            return;
        }
        let worker = c.worker;
        let address = self.workers[worker].address.clone();
        let app = self.app;
        let app_name: Arc<str> = Arc::from(self.app_name.as_str());
        let now = self.server_now();
        match msg {
            Message::WorkerHeartbeat(hb) => {
                let status = WorkerStatus {
                    address: address.clone(),
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
                self.server_step(|core| core.on_heartbeat(&app_name, &status, metrics));
            }
            Message::ReportInstanceStatus(r) => {
                self.trace(Some(r.instance_id), || {
                    format!(
                        "server: report {:?} seq {:#x} from {address}",
                        r.status, r.report_seq
                    )
                });
                // Reorder and duplicate faults: a report delivered twice must change nothing
                // the second time.
                let dup = self.config.faults
                    && self.now < self.faults_until
                    && self.rng.gen_ratio(1, 100);
                self.server_step(|core| {
                    core.on_report(app, &address, &r, now);
                    if dup {
                        core.on_report(app, &address, &r, now);
                    }
                });
            }
            Message::InstanceStatusReply(rep) => {
                self.query_answered(
                    correlation,
                    QueryAnswer::Status(
                        crate::server::core::report::from_wire(&rep.status),
                        rep.result,
                    ),
                );
            }
            Message::ErrorReply(e) => {
                let answer = if e.code == ErrorCode::NotFound {
                    QueryAnswer::NotFound
                } else {
                    QueryAnswer::Unanswered
                };
                self.query_answered(correlation, answer);
            }
            _ => {}
        }
    }

    pub(super) fn deliver_to_worker(&mut self, conn: u64, msg: Message, correlation: Option<u64>) {
        let Some(c) = self.conns.get(&conn) else {
            return;
        };
        if !c.open {
            return;
        }
        let i = c.worker;
        let now = self.now;
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
        match &input {
            wcore::Input::ScheduleJob { job, .. } => self.trace(Some(job.instance_id), || {
                format!("worker {i}: ScheduleJob arrives")
            }),
            wcore::Input::StopInstance { instance_id, .. } => self
                .trace(Some(*instance_id), || {
                    format!("worker {i}: StopInstance arrives")
                }),
            _ => {}
        }
        let Some(w) = self.workers.get_mut(i) else {
            return;
        };
        if let wcore::Input::StopInstance { instance_id, .. } = &input {
            self.checker.stop_received(i, *instance_id);
        }
        w.core.handle(now, input);
        self.drain_worker(i);
    }

    /// Cuts connection `conn`: the worker learns it at once; the server at once too, or — a
    /// half-open connection, one time in three — only later, reading what was in flight
    /// from the worker meanwhile and writing into the void. What was in flight to the
    /// worker is lost.
    pub(super) fn cut(&mut self, conn: u64) {
        let half_open = self.config.faults
            && self.now < self.faults_until
            && self.server.is_some()
            && self.rng.gen_ratio(1, 3);
        let late = self.rng.gen_range(0..3000);
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        if !c.open {
            return;
        }
        c.open = false;
        c.half_open = half_open;
        let i = c.worker;
        let notice = (self.now + late).max(c.last_to_server + 1);
        self.trace(None, || {
            format!("fault: connection {conn} of worker {i} cut (half-open: {half_open})")
        });
        self.report.connections_cut += 1;
        if half_open {
            self.report.half_open += 1;
            self.at(notice, Event::ServerSeesCut(conn));
        } else {
            self.server_sees_cut(conn);
        }
        let w = &mut self.workers[i];
        if w.conn == Some(conn) {
            w.conn = None;
            if w.alive {
                let t = self.now;
                w.core.handle(
                    t,
                    wcore::Input::ConnectionLost {
                        retry: wcore::Retry::Backoff,
                    },
                );
                self.drain_worker(i);
            }
        }
    }

    /// The server learns that connection `conn` closed: its queries in flight are
    /// unanswered and the worker is disconnected (unless a newer connection replaced it).
    pub(super) fn server_sees_cut(&mut self, conn: u64) {
        let Some(c) = self.conns.remove(&conn) else {
            return;
        };
        let (i, gen) = (c.worker, c.gen);
        if self.workers[i].server_conn == Some(conn) {
            self.workers[i].server_conn = None;
        }
        let lost: Vec<(u64, String, InstanceId)> = match self.server.as_mut() {
            Some(s) => {
                let mut ks: Vec<u64> = s
                    .queries
                    .iter()
                    .filter(|(_, q)| q.0 == conn)
                    .map(|(k, _)| *k)
                    .collect();
                ks.sort_unstable();
                ks.into_iter()
                    .filter_map(|k| s.queries.remove(&k))
                    .collect()
            }
            None => Vec::new(),
        };
        let app = self.app;
        let app_name: Arc<str> = Arc::from(self.app_name.as_str());
        let address = self.workers[i].address.clone();
        let now = self.server_now();
        self.server_step(|core| {
            for (_, worker, id) in &lost {
                core.on_query_answer(app, worker, *id, QueryAnswer::Unanswered, now);
            }
            core.worker_disconnected(&app_name, app, &address, gen);
        });
    }
}
