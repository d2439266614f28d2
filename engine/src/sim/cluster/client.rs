//! The API client: it asks the server it was last pointed at for a run, and on a refusal or
//! no answer asks the next server a little later.

use super::*;

impl Cluster {
    pub(super) fn api_run(&mut self, job: JobId, app: usize, attempt: u32) {
        if attempt > 200 || self.now >= self.end_at - CALM_MS / 2 {
            return;
        }
        let n = self.servers.len();
        let Some(a) = self.apps.get(app) else { return };
        let (app_id, s) = (a.id, a.hint);
        let reachable = self
            .servers
            .get(s)
            .is_some_and(|v| v.core.is_some() && !v.paused(self.now));
        let mut ok = false;
        if reachable {
            let wall = self.wall(s);
            let mono = self.mono(s);
            let v = &mut self.servers[s];
            if let Some(core) = v.core.as_mut() {
                core.begin(wall * 1000, mono.0);
                // A refusal (not the owner, the write refused) is answered as an error.
                if let Ok((c, then)) = core.prepare_run(app_id, job, String::new(), 0, wall) {
                    v.runs.push_back((c, then, job, app));
                    ok = true;
                }
            }
            self.drain(s);
        }
        if !ok {
            // Refused (not the owner, or the write was refused) or no answer: the client
            // asks the next server a little later.
            if let Some(a) = self.apps.get_mut(app) {
                a.hint = (s + 1) % n.max(1);
            }
            let t = self.now + if reachable { 20 } else { 300 };
            self.at(
                t,
                Ev::ApiRun {
                    job,
                    app,
                    attempt: attempt + 1,
                },
            );
        }
    }
}
