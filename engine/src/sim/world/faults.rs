//! The fault schedule: connections cut, workers crashing, the server crashing with the disk
//! image a power loss or a process crash leaves, and clock jumps.

use super::*;

impl World {
    pub(super) fn fault(&mut self) {
        if self.now >= self.faults_until {
            return;
        }
        let roll = self.rng.gen_range(0..100);
        match roll {
            0..=39 => {
                // Cut a random open connection.
                let mut open: Vec<u64> = self
                    .conns
                    .iter()
                    .filter(|(_, c)| c.open)
                    .map(|(k, _)| *k)
                    .collect();
                open.sort_unstable();
                if !open.is_empty() {
                    let c = open[self.rng.gen_range(0..open.len())];
                    self.cut(c);
                }
            }
            40..=69 => {
                // A worker process crashes; it comes back later as a new process.
                let i = self.rng.gen_range(0..self.workers.len().max(1));
                if self.workers.get(i).is_some_and(|w| w.alive) {
                    self.report.worker_crashes += 1;
                    self.trace(None, || format!("fault: worker {i} crashes"));
                    if let Some(c) = self.workers[i].conn {
                        self.cut(c);
                    }
                    self.workers[i].alive = false;
                    self.checker.worker_crashed(i);
                    self.mr_worker_crashed(i);
                    let back = self.now + self.rng.gen_range(500..8000);
                    self.at(back, Event::WorkerRestart(i));
                }
            }
            70..=84 => self.crash_server(),
            _ => {
                // The server's clock jumps forward.
                let from = self.server_now();
                self.clock_offset += self.rng.gen_range(100..5000);
                self.checker.clock_jumped(from, self.server_now());
                self.trace(None, || {
                    format!("fault: server clock jumps to +{} ms", self.clock_offset)
                });
                self.report.clock_jumps += 1;
                self.server_timer();
            }
        }
        let next = self.now + self.rng.gen_range(500..5000);
        self.at(next, Event::Fault);
    }

    pub(super) fn crash_server(&mut self) {
        if self
            .config
            .max_server_crashes
            .is_some_and(|m| self.report.server_crashes >= m)
        {
            return;
        }
        let Some(s) = self.server.take() else { return };
        self.report.server_crashes += 1;
        let at = self.server_now();
        self.checker.server_down(at);
        self.trace(None, || "fault: server crashes".into());
        // The disk as the crash leaves it: power loss (unsynced writes gone, or torn), or a
        // process crash (everything written stays).
        let image = match self.rng.gen_range(0..3) {
            0 => self.disk.crash(),
            1 => {
                let mut rng = StdRng::seed_from_u64(self.rng.gen());
                self.disk.crash_torn(|_p: &Path, unsynced| {
                    let n = if unsynced == 0 {
                        0
                    } else {
                        rng.gen_range(0..=unsynced)
                    };
                    if rng.gen_ratio(1, 2) {
                        Tear::Prefix(n)
                    } else {
                        Tear::ZeroFilled(n)
                    }
                })
            }
            _ => {
                let _ = s.store.write_pending();
                self.disk.process_crash()
            }
        };
        drop(s);
        self.disk = image;
        // Every connection ends with the process.
        self.conns.retain(|_, c| !c.half_open);
        for w in &mut self.workers {
            w.server_conn = None;
        }
        let mut open: Vec<u64> = self
            .conns
            .iter()
            .filter(|(_, c)| c.open)
            .map(|(k, _)| *k)
            .collect();
        open.sort_unstable();
        for c in open {
            if let Some(conn) = self.conns.remove(&c) {
                let i = conn.worker;
                let w = &mut self.workers[i];
                if w.conn == Some(c) {
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
        }
        self.store_step_armed = false;
        let back = self.now + self.rng.gen_range(100..3000);
        self.at(back, Event::ServerRestart);
    }
}
