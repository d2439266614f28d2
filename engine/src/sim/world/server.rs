//! The server process in the world: starting it from the disk image, stepping its core, carrying
//! out its effects (sends, queries, retention), and the stepped store's write-and-sync rounds.

use super::*;

impl World {
    pub(super) fn start_server(&mut self) {
        let store = match LogStore::open_with(
            Arc::new(self.disk.clone()),
            DATA_DIR,
            store_options(self.config.instances),
        ) {
            Ok(s) => Arc::new(s),
            Err(e) => {
                self.report.violations.push(Violation::new(
                    self.now,
                    format!("the store does not open after a crash: {e}"),
                ));
                return;
            }
        };
        let dyn_store: Arc<dyn Store> = store.clone();
        let opened = Repo::open(dyn_store).and_then(|r| {
            let loaded = r.load()?;
            let wf = r.load_workflows()?;
            Ok((r, loaded, wf))
        });
        let (repo, loaded, (workflows, wf_active)) = match opened {
            Ok(x) => x,
            Err(e) => {
                self.report.violations.push(Violation::new(
                    self.now,
                    format!("the stored state does not load after a crash: {e}"),
                ));
                return;
            }
        };
        self.checker
            .after_restart(&repo, &loaded, self.now, &mut self.report.violations);
        let repo = Arc::new(repo);
        let registry = match WorkerRegistry::new(RegistryConfig {
            heartbeat_interval_ms: HEARTBEAT_MS,
            ..RegistryConfig::default()
        }) {
            Ok(r) => Arc::new(r),
            Err(e) => {
                self.report
                    .violations
                    .push(Violation::new(self.now, format!("registry: {e}")));
                return;
            }
        };
        let now = self.server_now();
        let mut core = Core::new(
            core_config(),
            Arc::clone(&repo),
            registry,
            Arc::new(Metrics::default()),
            SelectState::seeded(self.rng.gen()),
            now,
        );
        let mono = self.now;
        core.begin(now * 1000, mono * 1000);
        let wf = core.recover_workflows(&loaded, workflows, wf_active, now);
        core.recover(loaded, now);
        core.resume_workflows(wf, now);
        if let Some(app) = core.apps.values().next() {
            self.app = app.id;
        }
        self.server = Some(Server {
            core,
            repo,
            store,
            awaiting: VecDeque::new(),
            runs: VecDeque::new(),
            queries: HashMap::new(),
            wf_runs: VecDeque::new(),
            deletes: VecDeque::new(),
            timer_at: None,
        });
        self.drain_server();
    }

    pub(super) fn server_step(&mut self, f: impl FnOnce(&mut Core)) {
        let Some(s) = self.server.as_mut() else {
            return;
        };
        let now = self.now + self.clock_offset;
        let mono = self.now;
        s.core.begin(now * 1000, mono * 1000);
        f(&mut s.core);
        self.drain_server();
    }

    /// Carries out the server's effects until none are left, then re-arms its timer.
    pub(super) fn drain_server(&mut self) {
        loop {
            let Some(s) = self.server.as_mut() else {
                return;
            };
            if !s.core.has_effects() {
                break;
            }
            let effects = s.core.take_effects();
            for e in effects {
                self.server_effect(e);
            }
        }
        self.server_timer();
        self.arm_store_step();
    }

    pub(super) fn server_effect(&mut self, e: Effect) {
        let now = self.server_now();
        match e {
            Effect::Await(a) => {
                if let Some(s) = self.server.as_mut() {
                    s.awaiting.push_back(a);
                }
            }
            Effect::Send { app, worker, msg } => {
                let conn = self.server_conn(app, &worker);
                match msg {
                    Outgoing::Schedule { msg, since, .. } => {
                        let id = InstanceId(msg.instance_id);
                        self.trace(Some(id.0), || {
                            format!(
                                "server: ScheduleJob to {worker} (attempt {}, conn {conn:?})",
                                msg.report_seq_base >> 32
                            )
                        });
                        match conn {
                            Some(c) => self.send_to_worker(c, Message::ScheduleJob(*msg), None),
                            None => {
                                if let Some(s) = self.server.as_mut() {
                                    s.core.on_send_closed(id, since, now);
                                }
                            }
                        }
                    }
                    Outgoing::Stop(stop) => {
                        self.trace(Some(stop.instance_id), || {
                            format!("server: StopInstance to {worker} (conn {conn:?})")
                        });
                        if let Some(c) = conn {
                            self.send_to_worker(c, Message::StopInstance(stop), None);
                        }
                    }
                }
            }
            Effect::Query { app, worker, ids } => {
                let conn = self.server_conn(app, &worker);
                for id in ids {
                    match conn {
                        Some(c) => {
                            let corr = self.next_correlation;
                            self.next_correlation += 1;
                            if let Some(s) = self.server.as_mut() {
                                s.queries.insert(corr, (c, worker.clone(), id));
                            }
                            self.send_to_worker(
                                c,
                                Message::QueryInstanceStatus(QueryInstanceStatus {
                                    instance_id: id.0,
                                }),
                                Some(corr),
                            );
                        }
                        None => {
                            let app = self.app;
                            if let Some(s) = self.server.as_mut() {
                                s.core.on_query_answer(
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
            Effect::Prune(job) => self.prune(job),
            // Workflow instances are not deleted in the simulation: its checks follow every
            // node instance to the end of its workflow instance.
            Effect::PruneWorkflow(_) | Effect::Sweep { .. } | Effect::WakeAlarms => {}
        }
    }

    pub(super) fn server_timer(&mut self) {
        let Some(s) = self.server.as_mut() else {
            return;
        };
        let Some(next) = s.core.next_timer() else {
            return;
        };
        let next = i64::try_from(next).unwrap_or(i64::MAX) - self.clock_offset;
        if s.timer_at.is_some_and(|t| t <= next) {
            return;
        }
        s.timer_at = Some(next);
        self.at(next, Event::ServerTimer);
    }

    pub(super) fn arm_store_step(&mut self) {
        if self.store_step_armed {
            return;
        }
        let Some(s) = self.server.as_ref() else {
            return;
        };
        if s.awaiting.is_empty()
            && s.runs.is_empty()
            && s.wf_runs.is_empty()
            && s.deletes.is_empty()
            && s.store.queued_batches() == 0
        {
            return;
        }
        self.store_step_armed = true;
        let slow = self.config.faults && self.now < self.faults_until && self.rng.gen_ratio(1, 200);
        let delay = if slow {
            self.rng.gen_range(20..200)
        } else {
            FSYNC_MS
        };
        self.at(self.now + delay, Event::StoreStep);
    }

    /// The store writes and syncs what is queued; the acknowledged writes resume the core in
    /// submission order.
    pub(super) fn store_step(&mut self) {
        let Some(s) = self.server.as_mut() else {
            return;
        };
        if let Err(e) = s.store.write_pending().and_then(|_| s.store.sync_pending()) {
            self.report
                .violations
                .push(Violation::new(self.now, format!("store step failed: {e}")));
            return;
        }
        // The background compactor's round, when garbage warrants one (as on a real disk).
        if s.store.needs_compaction() {
            match s.store.compact() {
                Ok(_) => self.report.compactions += 1,
                Err(e) => self
                    .report
                    .violations
                    .push(Violation::new(self.now, format!("compaction failed: {e}"))),
            }
        }
        // The store's own checkpoint, once enough log was written since the last hint: a
        // restart replays only what follows it.
        if s.store.needs_checkpoint() {
            match s.store.checkpoint() {
                Ok(()) => self.report.checkpoints += 1,
                Err(e) => self
                    .report
                    .violations
                    .push(Violation::new(self.now, format!("checkpoint failed: {e}"))),
            }
        }
        let now = self.now + self.clock_offset;
        let mono = self.now;
        s.core.begin(now * 1000, mono * 1000);
        // Writes resolve in submission order: stop at the first one still pending.
        let (checker, violations) = (&mut self.checker, &mut self.report.violations);
        let (repo, world_now) = (&s.repo, self.now);
        resume_awaited(&mut s.core, &mut s.awaiting, now, |resumed| match resumed {
            Resumed::Created(Some(id)) => checker.instance_admitted(id),
            Resumed::Created(None) => {}
            Resumed::FinalAcknowledged(id) => {
                checker.final_acknowledged(repo, id, world_now, violations);
            }
        });
        while let Some((c, _)) = s.runs.front_mut() {
            let Poll::Ready(r) = poll_now(c) else { break };
            let Some((_, then)) = s.runs.pop_front() else {
                break;
            };
            match r {
                Ok(rec) => {
                    let id = rec.id;
                    s.core.after_create(rec, then, now);
                    self.checker.run_acknowledged(id);
                    self.report.runs_acknowledged += 1;
                }
                Err(_) => s.core.create_failed(then),
            }
        }
        while let Some((c, _, _)) = s.wf_runs.front_mut() {
            let Poll::Ready(r) = poll_now(c) else { break };
            let Some((_, pending, id)) = s.wf_runs.pop_front() else {
                break;
            };
            let ok = r.is_ok();
            s.core.complete(*pending, ok, now);
            if ok {
                self.checker.workflow_run_acknowledged(id);
                self.report.workflow_runs_acknowledged += 1;
            }
        }
        while let Some((c, _)) = s.deletes.front_mut() {
            let Poll::Ready(r) = poll_now(c) else { break };
            let Some((_, id)) = s.deletes.pop_front() else {
                break;
            };
            if r.is_ok() {
                self.checker.deleted(id);
            }
        }
        self.drain_server();
    }

    pub(super) fn api_run(&mut self, job: JobId) {
        let app = self.app;
        let now = self.server_now();
        let Some(s) = self.server.as_mut() else {
            // The server is down: the client's request fails, nothing is acknowledged.
            return;
        };
        let mono = self.now;
        s.core.begin(now * 1000, mono * 1000);
        match s.core.prepare_run(app, job, String::new(), 0, now) {
            Ok(pair) => s.runs.push_back(pair),
            Err(e) => {
                self.report
                    .violations
                    .push(Violation::new(self.now, format!("run refused: {e}")));
            }
        }
        self.drain_server();
    }

    pub(super) fn query_answered(&mut self, correlation: Option<u64>, answer: QueryAnswer) {
        let Some(corr) = correlation else { return };
        let app = self.app;
        let now = self.server_now();
        let Some(s) = self.server.as_mut() else {
            return;
        };
        let Some((_, worker, id)) = s.queries.remove(&corr) else {
            return;
        };
        self.server_step(|core| core.on_query_answer(app, &worker, id, answer, now));
    }

    /// Retention, as the runtime carries it out: the job's finished runs beyond the newest
    /// [`KEEP_FINISHED_RUNS`] that the core no longer holds are deleted.
    pub(super) fn prune(&mut self, job: JobId) {
        let Some(s) = self.server.as_mut() else {
            return;
        };
        let ids = match s
            .repo
            .finished_beyond(job, KEEP_FINISHED_RUNS, PRUNE_DELETE)
        {
            Ok(ids) => ids,
            Err(e) => {
                self.report.violations.push(Violation::new(
                    self.now,
                    format!("{job}: pruning failed: {e}"),
                ));
                return;
            }
        };
        for id in ids {
            let wf = match s.repo.node_link(id) {
                Ok(link) => link.map(|l| l.wf_instance),
                Err(_) => continue,
            };
            if !s.core.may_delete(id, wf) {
                continue;
            }
            let rec = match s.repo.get_instance(id) {
                Ok(r) => r,
                Err(e) => {
                    self.report.violations.push(Violation::new(
                        self.now,
                        format!("{id}: chosen by retention, unreadable: {e}"),
                    ));
                    continue;
                }
            };
            self.checker
                .deleting(&rec, self.now, &mut self.report.violations);
            match s.repo.delete_instance(id, false) {
                Ok(c) => s.deletes.push_back((c, id)),
                Err(e) => self.report.violations.push(Violation::new(
                    self.now,
                    format!("{id}: chosen by retention, not deleted: {e}"),
                )),
            }
        }
    }

    /// The API client runs workflow `wf`; the run is acknowledged once its first transition
    /// is durable (as the runtime answers).
    pub(super) fn workflow_run(&mut self, wf: WorkflowId) {
        let now = self.server_now();
        let Some(s) = self.server.as_mut() else {
            return;
        };
        let mono = self.now;
        s.core.begin(now * 1000, mono * 1000);
        match s
            .core
            .wf_create_instance(wf, serde_json::Map::new(), None, None, 0, now)
        {
            Ok((id, (commit, pending))) => s.wf_runs.push_back((commit, Box::new(pending), id)),
            Err(e) => self.report.violations.push(Violation::new(
                self.now,
                format!("{wf}: workflow run refused: {e}"),
            )),
        }
        self.drain_server();
    }
}
