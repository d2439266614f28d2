//! Restart: workflows and their unfinished instances rebuilt from the store.

use std::collections::HashMap;
use std::sync::Arc;

use super::*;

/// A node end found at restart: (workflow instance, node, attempt, job instance, ok, result).
type Push = (
    WorkflowInstanceId,
    NodeId,
    u32,
    Option<u64>,
    bool,
    Option<String>,
);

/// What [`Core::recover_workflows`] leaves to [`Core::resume_workflows`].
#[derive(Debug)]
pub(crate) struct WfRecovery {
    replays: Vec<(WorkflowInstanceId, Vec<Action>)>,
    pushes: Vec<Push>,
}

impl Core {
    // ----- restart -----

    /// Rebuilds the workflows and their unfinished instances from the store (before the job
    /// instances are recovered, so that every node's job instance finds its link).
    pub(crate) fn recover_workflows(
        &mut self,
        loaded: &crate::server::LoadedState,
        wfs: Vec<LoadedWorkflow>,
        active: Vec<WfInstanceRecord>,
        now: EpochMs,
    ) -> WfRecovery {
        let ids: std::collections::HashSet<WorkflowId> = wfs.iter().map(|w| w.record.id).collect();
        let jobs: std::collections::HashSet<JobId> = loaded.jobs.iter().map(|j| j.job.id).collect();
        for lw in wfs {
            let id = lw.record.id;
            let dag = match lw.def.validate(|j| jobs.contains(&j), |w| ids.contains(&w)) {
                Ok(d) => Arc::new(d),
                Err(e) => {
                    tracing::error!(workflow = id.0, error = %e, "stored workflow no longer valid; not scheduled");
                    continue;
                }
            };
            let mut state = WfState::new(WfVersion {
                record: lw.record,
                dag,
            });
            let gen = self.load_gen();
            state.gen = gen;
            self.workflows.insert(id, state);
            if let Some(t) = lw.trigger.next_trigger {
                self.arm(
                    t,
                    TimerEv::Workflow {
                        wf: id,
                        gen,
                        due: t,
                    },
                );
            }
        }
        let mut dags: HashMap<(WorkflowId, u64), Arc<ValidDag>> = HashMap::new();
        let mut pushes: Vec<Push> = Vec::new();
        let mut replays = Vec::new();
        let active_ids: std::collections::HashSet<u64> = active.iter().map(|r| r.id.0).collect();
        for rec in active {
            let key = (rec.workflow_id, rec.version);
            let dag = match dags.get(&key) {
                Some(d) => Arc::clone(d),
                None => {
                    let cur = self
                        .workflow(rec.workflow_id)
                        .map(|w| w.cur())
                        .filter(|c| c.record.version == rec.version)
                        .map(|c| Arc::clone(&c.dag));
                    let d = match cur {
                        Some(d) => d,
                        None => match self
                            .repo
                            .workflow_def(rec.workflow_id, rec.version)
                            .map_err(|e| e.to_string())
                            .and_then(|d| d.validate(|_| true, |_| true).map_err(|e| e.to_string()))
                        {
                            Ok(d) => Arc::new(d),
                            Err(e) => {
                                tracing::error!(wf_instance = rec.id.0, error = %e, "workflow instance not restored");
                                continue;
                            }
                        },
                    };
                    dags.insert(key, Arc::clone(&d));
                    d
                }
            };
            let snap = match rec.snapshot() {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(wf_instance = rec.id.0, error = %e, "workflow instance not restored");
                    continue;
                }
            };
            let (machine, actions) = match WorkflowInstance::restore(dag, snap, now) {
                Ok(x) => x,
                Err(e) => {
                    tracing::error!(wf_instance = rec.id.0, error = %e, "workflow instance not restored");
                    continue;
                }
            };
            if let Some(wf) = self.workflows.get_mut(&rec.workflow_id) {
                wf.running += 1;
            }
            let id = rec.id;
            if machine.status() == WfStatus::Waiting {
                self.arm(
                    rec.delayed_until.unwrap_or(now).max(now),
                    TimerEv::WfStart(id),
                );
            }
            for n in machine
                .nodes()
                .iter()
                .filter(|n| n.status == NodeStatus::Running)
            {
                let Some(run) = rec.run_of(n.id) else {
                    pushes.push((
                        id,
                        n.id,
                        n.attempt,
                        None,
                        false,
                        Some("node run lost".to_owned()),
                    ));
                    continue;
                };
                if run.nested {
                    if active_ids.contains(&run.instance) {
                        continue;
                    }
                    match self
                        .repo
                        .get_wf_instance(WorkflowInstanceId(run.instance))
                        .and_then(|c| c.snapshot())
                    {
                        Ok(s) if s.status.is_finished() => {
                            let ok = s.status == WfStatus::Succeed;
                            let result = if ok {
                                serde_json::to_string(&s.context).ok()
                            } else {
                                Some(format!(
                                    "workflow instance {} {}",
                                    run.instance,
                                    s.status.as_str()
                                ))
                            };
                            pushes.push((id, n.id, n.attempt, Some(run.instance), ok, result));
                        }
                        Ok(_) => {}
                        Err(e) => pushes.push((
                            id,
                            n.id,
                            n.attempt,
                            Some(run.instance),
                            false,
                            Some(e.to_string()),
                        )),
                    }
                    continue;
                }
                let iid = InstanceId(run.instance);
                match self.repo.get_instance(iid) {
                    Ok(inst) if inst.status.is_final() => pushes.push((
                        id,
                        n.id,
                        n.attempt,
                        Some(run.instance),
                        inst.status == InstanceStatus::Succeed,
                        inst.result.clone(),
                    )),
                    Ok(_) => {
                        let link = self.repo.node_link(iid).ok().flatten();
                        let context = link.map_or_else(|| "{}".to_owned(), |l| l.context_json);
                        self.node_runs.insert(
                            iid,
                            NodeRun {
                                wf_instance: id,
                                node: n.id,
                                attempt: n.attempt,
                                context: Arc::from(context.as_str()),
                                trigger_key: Arc::from(node_trigger_key(&rec, n.id, n.attempt)),
                                created_at: None,
                                reported_us: None,
                                handoff_from_us: None,
                            },
                        );
                    }
                    Err(e) => pushes.push((id, n.id, n.attempt, None, false, Some(e.to_string()))),
                }
            }
            self.wf_active.insert(
                id,
                WfInst {
                    rec,
                    machine,
                    counted: true,
                },
            );
            if !actions.is_empty() {
                replays.push((id, actions));
            }
        }
        WfRecovery { replays, pushes }
    }

    /// Runs what [`recover_workflows`](Core::recover_workflows) found due, once the jobs
    /// and their instances are recovered too.
    pub(crate) fn resume_workflows(&mut self, r: WfRecovery, now: EpochMs) {
        let WfRecovery { replays, pushes } = r;
        for (id, actions) in replays {
            let t = self.with_wf(id, |core, w| {
                core.advance(w, actions, now, false, None, None)
            });
            if let Some(t) = t {
                self.emit_transition(t);
            }
        }
        for (wfi, node, attempt, inst, ok, result) in pushes {
            tracing::info!(
                wf_instance = wfi.0,
                node = node.0,
                "node finished while the server was down; pushed"
            );
            self.wf_node_done(wfi, node, attempt, inst, ok, result, None, now);
        }
    }
}
