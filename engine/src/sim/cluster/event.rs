//! The cluster's events and how each is handled: what reaches a paused server waits until
//! the pause ends; the rest goes to the server, glue, network, client or fault code.

use super::*;

/// One event of the cluster world.
#[derive(Debug)]
pub(super) enum Ev {
    /// Server `s`'s core timers are due.
    ServerTimer(usize),
    /// Server `s`'s ownership machine is due.
    OwnTimer(usize),
    /// A lease command reaches the database.
    ToDb {
        s: usize,
        life: u64,
        cmd: Command,
    },
    /// The database's answer reaches server `s`.
    FromDb {
        s: usize,
        life: u64,
        input: Input,
    },
    /// Server `s`'s membership task heartbeats.
    Heartbeat {
        s: usize,
        life: u64,
    },
    /// The heartbeat reaches the database.
    HeartbeatAtDb {
        s: usize,
        life: u64,
    },
    /// The live servers, as the database listed them, reach server `s`.
    View {
        s: usize,
        life: u64,
        live: Vec<ServerId>,
    },
    /// Server `s`'s loading thread loads partition `p` granted at `epoch`.
    Load {
        s: usize,
        life: u64,
        p: PartitionId,
        epoch: Epoch,
    },
    /// The shared store writes and syncs; acknowledged writes resume the cores.
    StoreStep,
    ToServer {
        conn: u64,
        msg: Message,
        correlation: Option<u64>,
    },
    ToWorker {
        conn: u64,
        msg: Message,
        correlation: Option<u64>,
    },
    /// Server `s` learns that connection `conn` of worker `worker` closed.
    ServerSeesCut {
        s: usize,
        life: u64,
        conn: u64,
        worker: usize,
        gen: u64,
    },
    WorkerTimer(usize),
    WorkerConnect(usize),
    RunDone {
        worker: usize,
        life: u64,
        run: wcore::RunId,
        success: bool,
    },
    /// The API client asks for a run of `job` of app `app` (its `attempt`th try).
    ApiRun {
        job: JobId,
        app: usize,
        attempt: u32,
    },
    Fault,
    /// Paused server `s` runs again.
    Resume(usize),
    /// Server `s` reaches the database again.
    Heal(usize),
    /// Crashed server `s` starts again.
    Restart(usize),
}

impl Cluster {
    /// Whether event `e` is for a paused server, and which: it waits until the pause ends.
    pub(super) fn target(&self, e: &Ev) -> Option<usize> {
        match e {
            Ev::ServerTimer(s) | Ev::OwnTimer(s) => Some(*s),
            Ev::FromDb { s, .. }
            | Ev::Heartbeat { s, .. }
            | Ev::View { s, .. }
            | Ev::Load { s, .. }
            | Ev::ServerSeesCut { s, .. } => Some(*s),
            Ev::ToServer { conn, .. } => self.conns.get(conn).map(|c| c.server),
            _ => None,
        }
    }

    pub(super) fn handle(&mut self, e: Ev) {
        if let Some(s) = self.target(&e) {
            if let Some(until) = self
                .servers
                .get(s)
                .filter(|v| v.paused(self.now))
                .map(|v| v.paused_until)
            {
                self.at(until, e);
                return;
            }
        }
        match e {
            Ev::ServerTimer(s) => {
                let due = self.servers[s].timer_at.is_some_and(|t| t <= self.now);
                if due {
                    self.servers[s].timer_at = None;
                    self.step(s, |core, now| core.on_timers(now));
                }
            }
            Ev::OwnTimer(s) => {
                let due = self.servers[s].own_timer_at.is_some_and(|t| t <= self.now);
                if due {
                    self.servers[s].own_timer_at = None;
                    self.own_step(s, |own, now| own.handle_timeout(now));
                }
            }
            Ev::ToDb { s, life, cmd } => self.at_db(s, life, cmd),
            Ev::FromDb { s, life, input } => {
                if self.servers[s].life == life && !self.db.lock().cut[s] {
                    self.own_step(s, |own, now| own.handle(now, input));
                }
            }
            Ev::Heartbeat { s, life } => {
                if self.servers[s].life != life || self.servers[s].core.is_none() {
                    return;
                }
                let t = self.now + self.db_latency();
                self.at(t, Ev::HeartbeatAtDb { s, life });
                self.at(self.now + HEARTBEAT_EVERY_MS, Ev::Heartbeat { s, life });
            }
            Ev::HeartbeatAtDb { s, life } => {
                let live = {
                    let mut db = self.db.lock();
                    if db.cut[s] {
                        return;
                    }
                    db.heartbeat(s, LEASE_MS, &self.ids)
                };
                let t = self.now + self.db_latency();
                self.at(t, Ev::View { s, life, live });
            }
            Ev::View { s, life, live } => {
                if self.servers[s].life == life && !self.db.lock().cut[s] {
                    self.own_step(s, |own, now| own.handle(now, Input::Membership(live)));
                }
            }
            Ev::Load { s, life, p, epoch } => self.load(s, life, p, epoch),
            Ev::StoreStep => {
                self.store_step_armed = false;
                self.store_step();
            }
            Ev::ToServer {
                conn,
                msg,
                correlation,
            } => self.deliver_to_server(conn, msg, correlation),
            Ev::ToWorker {
                conn,
                msg,
                correlation,
            } => self.deliver_to_worker(conn, msg, correlation),
            Ev::ServerSeesCut {
                s,
                life,
                conn,
                worker,
                gen,
            } => self.server_sees_cut(s, life, conn, worker, gen),
            Ev::WorkerTimer(i) => self.worker_timer(i),
            Ev::WorkerConnect(i) => self.worker_connect(i),
            Ev::RunDone {
                worker,
                life,
                run,
                success,
            } => {
                let Some(w) = self.workers.get_mut(worker) else {
                    return;
                };
                if !w.alive || w.life != life {
                    return;
                }
                let result = if success {
                    ProcessResult::ok("ok")
                } else {
                    ProcessResult::fail("simulated failure")
                };
                w.core
                    .handle(self.now, wcore::Input::RunFinished { run, result });
                self.drain_worker(worker);
            }
            Ev::ApiRun { job, app, attempt } => self.api_run(job, app, attempt),
            Ev::Fault => self.fault(),
            Ev::Resume(s) => self.resume(s),
            Ev::Heal(s) => {
                self.trace(|| format!("s{s} reaches the database again"));
                if let Some(c) = self.db.lock().cut.get_mut(s) {
                    *c = false;
                }
            }
            Ev::Restart(s) => self.start_server(s),
        }
    }
}
