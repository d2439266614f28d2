//! The workload: one app, FIXED_RATE jobs firing every second until the faults stop, API runs
//! of them spread over that time, API runs of MAP_REDUCE jobs (see `mapreduce.rs`), and API
//! runs of four-node workflows whose nodes run jobs of their own.

use serde_json::json;

use crate::model::ExecuteType;
use crate::server::core::workflow::initial_next;
use crate::workflow::WorkflowDef;

use super::*;

impl World {
    pub(super) fn setup_workload(&mut self) {
        // Jobs first known: about one per 600 instances, each firing every second.
        let jobs = (self.config.instances / 600).clamp(1, 20_000);
        let per_job = i64::try_from(self.config.instances / jobs).unwrap_or(i64::MAX);
        let end = START_MS + (per_job * 10 / 9).clamp(5, 3600) * 1000;
        let Some(s) = self.server.as_mut() else {
            return;
        };
        let now = self.now + self.clock_offset;
        let app = s
            .repo
            .create_app(&self.app_name, "sim-secret-sim-secret", now);
        let _ = s.store.write_pending();
        let _ = s.store.sync_pending();
        let app = match app.and_then(|c| c.wait()) {
            Ok(a) => a,
            Err(e) => {
                self.violation(format!("create app: {e}"));
                return;
            }
        };
        self.app = app.id;
        s.core.add_app(app);
        for i in 0..jobs {
            let mut rec = JobRecord::new(
                self.app,
                format!("job-{i}"),
                TimeExpressionType::FixedRate,
                "1000",
                "noop",
            );
            rec.instance_retries = 2;
            rec.timeout_ms = 60_000;
            // Firing stops with the faults: then every instance must finish.
            rec.lifecycle.end = Some(end);
            let first = now + 1000 + i64::try_from(i % 1000).unwrap_or(0);
            let Some(id) = self.create_job(rec, Some(first)) else {
                return;
            };
            self.jobs.push(id);
        }
        // MAP_REDUCE jobs, run by the API client (about one instance in a hundred).
        for k in 0..(jobs / 50).clamp(1, 200) {
            let mut rec = JobRecord::new(
                self.app,
                format!("mapreduce-{k}"),
                TimeExpressionType::Api,
                "",
                "sum",
            );
            rec.execute_type = ExecuteType::MapReduce;
            rec.instance_retries = 2;
            rec.timeout_ms = 60_000;
            let Some(id) = self.create_job(rec, None) else {
                return;
            };
            self.mr_jobs.push(id);
            self.checker.mapreduce_job(id, mapreduce::EXPECTED_RESULT);
        }
        self.setup_workflows();
        self.server_timer();
        // API runs: about one per nine fires, spread over the firing period.
        let runs = self.config.instances / 10;
        let span = self.duration_s() * 1000;
        for _ in 0..runs {
            let t = START_MS + self.rng.gen_range(0..span.max(1));
            let job = self.jobs[self.rng.gen_range(0..self.jobs.len())];
            self.at(t, Event::ApiRun(job));
            self.api_runs_pending += 1;
        }
        for _ in 0..self.config.instances / 100 {
            let t = START_MS + self.rng.gen_range(0..span.max(1));
            let job = self.mr_jobs[self.rng.gen_range(0..self.mr_jobs.len())];
            self.at(t, Event::ApiRun(job));
            self.api_runs_pending += 1;
        }
    }

    /// Creates job `rec` (first fire at `first`), as the API does before the event loop runs.
    fn create_job(&mut self, rec: JobRecord, first: Option<EpochMs>) -> Option<JobId> {
        let now = self.server_now();
        let s = self.server.as_mut()?;
        let created = s.repo.create_job(rec, first, now);
        let _ = s.store.write_pending();
        let _ = s.store.sync_pending();
        match created.and_then(|c| c.wait()) {
            Ok(saved) => {
                let id = saved.id;
                if let Err(e) = s.core.job_created(saved, &self.app_name, first) {
                    self.violation(format!("job: {e}"));
                }
                self.checker.job_created(id);
                Some(id)
            }
            Err(e) => {
                self.violation(format!("create job: {e}"));
                None
            }
        }
    }

    /// Workflows of four nodes (`1 → 2, 1 → 3, 2 → 4, 3 → 4`), each node a job of its own,
    /// run by the API client: about one job instance in ten runs a workflow node.
    fn setup_workflows(&mut self) {
        let workflows = (self.config.instances / 4_000).clamp(1, 500);
        let now = self.server_now();
        for k in 0..workflows {
            let mut nodes = Vec::new();
            for n in 1..=4u64 {
                let mut rec = JobRecord::new(
                    self.app,
                    format!("wf-{k}-node-{n}"),
                    TimeExpressionType::Workflow,
                    "",
                    "noop",
                );
                rec.instance_retries = 2;
                rec.timeout_ms = 60_000;
                let Some(id) = self.create_job(rec, None) else {
                    return;
                };
                nodes.push(json!({"id": n, "job_id": id.0}));
            }
            let def: WorkflowDef = match serde_json::from_value(json!({
                "name": format!("wf-{k}"),
                "time_expression_type": "API",
                "max_instances": 1000,
                "nodes": nodes,
                "edges": [{"from": 1, "to": 2}, {"from": 1, "to": 3},
                          {"from": 2, "to": 4}, {"from": 3, "to": 4}],
            })) {
                Ok(d) => d,
                Err(e) => {
                    self.violation(format!("workflow definition: {e}"));
                    return;
                }
            };
            let Some(s) = self.server.as_mut() else {
                return;
            };
            let dag = {
                let core = &s.core;
                match def.validate(|j| core.jobs.contains_key(&j), |_| false) {
                    Ok(d) => d,
                    Err(e) => {
                        self.violation(format!("workflow definition: {e}"));
                        return;
                    }
                }
            };
            let next = initial_next(&dag, now);
            let created = s.repo.create_workflow(self.app, dag.def(), next, now);
            let _ = s.store.write_pending();
            let _ = s.store.sync_pending();
            match created.and_then(|c| c.wait()) {
                Ok(rec) => {
                    let id = rec.id;
                    s.core.workflow_created(rec, dag, next);
                    self.workflows.push(id);
                }
                Err(e) => {
                    self.violation(format!("create workflow: {e}"));
                    return;
                }
            }
        }
        let runs = self.config.instances / 40;
        let span = self.duration_s() * 1000;
        for _ in 0..runs {
            let t = START_MS + self.rng.gen_range(0..span.max(1));
            let wf = self.workflows[self.rng.gen_range(0..self.workflows.len())];
            self.at(t, Event::WorkflowRun(wf));
            self.api_runs_pending += 1;
        }
    }
}
