//! An instance from `ScheduleJob` to its final report: acceptance, its work by execute type,
//! concurrency slots, runs and their results, retries (STANDALONE), and the end.

use std::sync::Arc;

use ferrojob_transport::message::{
    ExecuteType, InstanceStatus, LogLevel, ProcessorType, ScheduleJob,
};

use super::instance::{Counts, Instance, Phase, TaskState};
use super::seq::ReportSeq;
use super::slots::Holder;
use super::{
    About, Effect, EpochMs, Finished, Outcome, ProcessResult, ProcessorKind, Run, RunId, RunKind,
    RunRec, RunWhat, TimerKey, Transmit, WorkerCore, MAP_PROGRESS_EVERY_MS,
    MAX_CACHED_RESULT_BYTES, MAX_INSTANCES, MAX_RESULT_BYTES,
};
use crate::worker::logs::truncate_at_char_boundary;

impl WorkerCore {
    pub(super) fn on_schedule(
        &mut self,
        now: EpochMs,
        mut job: Box<ScheduleJob>,
        processor: ProcessorKind,
    ) {
        let id = job.instance_id;
        if job.instance_timeout_ms == 0 {
            // Everything downstream (the deadline here, the processors' own timeouts, the
            // peers running its tasks) sees the default as the job's own.
            job.instance_timeout_ms = self.config.default_instance_timeout_ms;
        }
        if self.closing {
            tracing::warn!(instance = id, "worker shutting down: ScheduleJob ignored");
            return;
        }
        if let Some(running) = self.instances.get(&id) {
            if job.report_seq_base <= running.job.report_seq_base {
                // A re-sent ScheduleJob for the attempt already running here: it keeps
                // reporting; a second run would break the sequence.
                tracing::debug!(instance = id, "instance already running here: ignored");
                return;
            }
            // A later attempt of an instance this worker still runs: the server gave up on
            // the old one (it never saw it confirmed) and picked this worker again. The old
            // attempt ends here (its runs are cancelled and keep their slots until they have
            // unwound, so the two never run at once) and the new one starts.
            tracing::info!(
                instance = id,
                "a later attempt supersedes the one running here"
            );
            self.finish(now, id, Outcome::Stopped);
        }
        if self.instances.len() + self.unsent_finals >= MAX_INSTANCES {
            tracing::warn!(
                instance = id,
                running = self.instances.len(),
                queued = self.transmits.len(),
                "worker full: ScheduleJob ignored"
            );
            return;
        }
        self.finished.remove(id);
        let deadline = (job.instance_timeout_ms > 0)
            .then(|| i64::try_from(job.instance_timeout_ms).ok())
            .flatten()
            .and_then(|ms| now.checked_add(ms));
        let is_map = matches!(job.execute_type, ExecuteType::Map | ExecuteType::MapReduce);
        let mut keepalive_every = self.config.keepalive_interval_ms.clamp(1, 86_400_000);
        if is_map {
            keepalive_every = keepalive_every.min(MAP_PROGRESS_EVERY_MS);
        }
        self.next_generation += 1;
        let mut instance = Instance {
            seq: ReportSeq::new(job.report_seq_base),
            job: Arc::new(*job),
            generation: self.next_generation,
            processor,
            start_time_ms: now,
            deadline,
            keepalive_every,
            next_keepalive: now.saturating_add(keepalive_every),
            counts: Counts::default(),
            phase: Phase::WaitingSlot,
            unsent: 0,
            live_runs: 0,
        };
        if let Some(r) = instance.report(now, &self.config.address, InstanceStatus::Running, None) {
            instance.unsent += 1;
            let about = About::Report {
                instance_id: id,
                generation: instance.generation,
            };
            self.transmits.push_back((Transmit::Send(r.into()), about));
        }
        if let Some(d) = deadline {
            self.timers.insert((d, TimerKey::Deadline(id)));
        }
        self.timers
            .insert((instance.next_keepalive, TimerKey::Keepalive(id)));
        self.instances.insert(id, instance);
        self.start_work(now, id);
    }

    /// Starts an accepted instance's work by execute type.
    pub(super) fn start_work(&mut self, now: EpochMs, id: u64) {
        let Some(i) = self.instances.get_mut(&id) else {
            return;
        };
        let job = Arc::clone(&i.job);
        if job.processor_type == ProcessorType::External {
            return self.fail(
                now,
                id,
                "external processors are not supported by this worker".into(),
            );
        }
        if let ProcessorKind::Missing(why) = &i.processor {
            let why = why.clone();
            return self.fail(now, id, why);
        }
        match (&job.execute_type, i.processor.clone()) {
            (ExecuteType::Map | ExecuteType::MapReduce, ProcessorKind::Map { has_reduce }) => {
                i.phase = Phase::Map;
                self.start_run(id, None, RunWhat::Map, RunKind::Map { has_reduce });
            }
            (ExecuteType::Map | ExecuteType::MapReduce, _) => self.fail(
                now,
                id,
                format!(
                    "processor {:?} is not a MAP/MAP_REDUCE processor (register it with map or map_reduce)",
                    job.processor_info
                ),
            ),
            (ExecuteType::Broadcast, ProcessorKind::Broadcast) => {
                i.phase = Phase::BroadcastPre;
                self.start_run(id, None, RunWhat::Pre, RunKind::BroadcastPre);
            }
            (ExecuteType::Broadcast, _) => self.start_broadcast_tasks(id),
            _ => {
                i.counts.total = 1;
                i.phase = Phase::WaitingSlot;
                let granted =
                    self.slots
                        .acquire(job.job_id, job.concurrency, Holder::Standalone { instance_id: id });
                self.on_granted(granted);
            }
        }
    }

    pub(super) fn on_granted(&mut self, granted: Vec<Holder>) {
        for holder in granted {
            match holder {
                Holder::Standalone { instance_id } => {
                    let Some(i) = self.instances.get_mut(&instance_id) else {
                        debug_assert!(false, "slot granted to a gone instance");
                        continue;
                    };
                    let job_id = i.job.job_id;
                    i.phase = Phase::Standalone;
                    self.start_run(
                        instance_id,
                        Some(job_id),
                        RunWhat::Standalone { attempt: 1 },
                        RunKind::Standalone { attempt: 1 },
                    );
                }
                Holder::BroadcastTask { instance_id, index } => {
                    let Some(i) = self.instances.get_mut(&instance_id) else {
                        debug_assert!(false, "slot granted to a gone instance");
                        continue;
                    };
                    let job_id = i.job.job_id;
                    let Phase::BroadcastTasks { tasks, .. } = &mut i.phase else {
                        continue;
                    };
                    let Some(task) = tasks.get_mut(index) else {
                        continue;
                    };
                    task.state = TaskState::Running;
                    let kind = RunKind::BroadcastTask {
                        index,
                        address: task.address.clone(),
                        retry: task.retry,
                        local: true,
                    };
                    self.start_run(instance_id, Some(job_id), RunWhat::Task { index }, kind);
                }
                Holder::Peer { ticket } => {
                    if let Some(p) = self.peers.get_mut(&ticket) {
                        p.granted = true;
                        let job_id = p.job_id;
                        self.hold(job_id);
                        self.effects.push_back(Effect::PeerTask {
                            ticket,
                            granted: true,
                        });
                    }
                }
            }
        }
    }

    pub(super) fn start_run(&mut self, id: u64, slot: Option<u64>, what: RunWhat, kind: RunKind) {
        let Some(i) = self.instances.get_mut(&id) else {
            debug_assert!(slot.is_none(), "a slot granted to a gone instance");
            return;
        };
        self.next_run += 1;
        let run = RunId(self.next_run);
        i.live_runs += 1;
        self.runs.insert(
            run,
            RunRec {
                instance_id: id,
                generation: i.generation,
                slot,
                kind: what,
            },
        );
        self.effects.push_back(Effect::StartRun(Run {
            id: run,
            job: Arc::clone(&i.job),
            kind,
        }));
        if let Some(job_id) = slot {
            self.hold(job_id);
        }
    }

    pub(super) fn on_run_finished(&mut self, now: EpochMs, run: RunId, result: ProcessResult) {
        let Some(rec) = self.runs.remove(&run) else {
            debug_assert!(false, "finish of an unknown run");
            return;
        };
        if let Some(job_id) = rec.slot {
            self.unhold(job_id);
        }
        let current = self
            .instances
            .get_mut(&rec.instance_id)
            .filter(|i| i.generation == rec.generation);
        let Some(i) = current else {
            // The instance ended (stopped, timed out) while this run unwound: only its slot
            // is left to give back.
            if let Some(job_id) = rec.slot {
                let granted = self.slots.release(job_id);
                self.on_granted(granted);
            }
            return;
        };
        debug_assert!(i.live_runs > 0);
        i.live_runs = i.live_runs.saturating_sub(1);
        let id = rec.instance_id;
        match rec.kind {
            RunWhat::Standalone { attempt } => {
                let retries = i.job.task_retry_num;
                if !result.success && attempt <= retries {
                    // The slot stays with the instance for the next attempt.
                    self.effects.push_back(Effect::Log {
                        instance_id: id,
                        level: LogLevel::Warn,
                        line: format!(
                            "attempt {attempt} failed: {}; retrying ({} of {retries} retries left)",
                            result.message,
                            retries + 1 - attempt
                        ),
                    });
                    let next = attempt + 1;
                    self.start_run(
                        id,
                        rec.slot,
                        RunWhat::Standalone { attempt: next },
                        RunKind::Standalone { attempt: next },
                    );
                    return;
                }
                if result.success {
                    i.counts.succeeded = 1;
                } else {
                    i.counts.failed = 1;
                }
                self.release_slot(rec.slot);
                self.finish(now, id, done(result));
            }
            RunWhat::Pre => {
                if result.success {
                    self.start_broadcast_tasks(id);
                } else {
                    let message = format!("pre_process failed: {}", result.message);
                    self.fail(now, id, message);
                }
            }
            RunWhat::Task { index } => self.on_task_finished(now, rec.slot, id, index, result),
            RunWhat::Post | RunWhat::Map => self.finish(now, id, done(result)),
        }
    }

    pub(super) fn release_slot(&mut self, slot: Option<u64>) {
        if let Some(job_id) = slot {
            let granted = self.slots.release(job_id);
            self.on_granted(granted);
        }
    }

    pub(super) fn fail(&mut self, now: EpochMs, id: u64, message: String) {
        self.finish(
            now,
            id,
            Outcome::Done {
                success: false,
                message,
            },
        );
    }

    /// Ends an instance: cancels what still runs, queues its final report (the last one),
    /// remembers it as finished and forgets it as running.
    pub(super) fn finish(&mut self, now: EpochMs, id: u64, outcome: Outcome) {
        let Some(mut i) = self.instances.remove(&id) else {
            return;
        };
        if let Some(d) = i.deadline {
            self.timers.remove(&(d, TimerKey::Deadline(id)));
        }
        self.timers
            .remove(&(i.next_keepalive, TimerKey::Keepalive(id)));
        // Waiters leave their queues; runs are cancelled and give their slots back when they
        // have finished unwinding.
        let (job_id, slot_waiters) = (i.job.job_id, waiting_holders(id, &i.phase));
        for holder in slot_waiters {
            self.slots.withdraw(job_id, holder);
        }
        if i.live_runs > 0 {
            self.effects
                .push_back(Effect::CancelInstance { instance_id: id });
        }
        let (status, mut message) = match outcome {
            Outcome::Done {
                success: true,
                message,
            } => (InstanceStatus::Succeed, message),
            Outcome::Done { message, .. } => (InstanceStatus::Failed, message),
            Outcome::Stopped => (InstanceStatus::Stopped, "stopped by request".to_string()),
            Outcome::TimedOut(ms) => (InstanceStatus::Failed, format!("timed out after {ms} ms")),
            Outcome::ServerLost => (
                InstanceStatus::Failed,
                format!(
                    "stopped: server unreachable for more than {:?} (fixed rate/delay work stops)",
                    self.config.server_lost_after
                ),
            ),
            Outcome::Shutdown => (InstanceStatus::Failed, "worker shut down".to_string()),
        };
        truncate_at_char_boundary(&mut message, MAX_RESULT_BYTES);
        if status != InstanceStatus::Succeed {
            self.effects.push_back(Effect::Log {
                instance_id: id,
                level: LogLevel::Warn,
                line: format!("instance ended {status:?}: {message}"),
            });
        }
        let report = i.report(
            now,
            &self.config.address,
            status.clone(),
            Some(message.clone()),
        );
        debug_assert!(report.is_some(), "an instance ends once");
        debug_assert!(i.seq.is_finished());
        if let Some(r) = report {
            self.transmits
                .push_back((Transmit::Send(r.into()), About::FinalReport));
            self.unsent_finals += 1;
        }
        truncate_at_char_boundary(&mut message, MAX_CACHED_RESULT_BYTES);
        self.finished.insert(
            id,
            Finished {
                status,
                result: Some(message),
                start_time_ms: i.start_time_ms,
                counts: (i.counts.total, i.counts.succeeded, i.counts.failed),
            },
        );
        self.effects
            .push_back(Effect::InstanceDone { instance_id: id });
    }
}

/// The slot waiters of an instance in `phase`.
fn waiting_holders(id: u64, phase: &Phase) -> Vec<Holder> {
    match phase {
        Phase::WaitingSlot => vec![Holder::Standalone { instance_id: id }],
        Phase::BroadcastTasks { tasks, .. } => tasks
            .iter()
            .enumerate()
            .filter(|(_, t)| t.local && t.state == TaskState::WaitingSlot)
            .map(|(index, _)| Holder::BroadcastTask {
                instance_id: id,
                index,
            })
            .collect(),
        _ => Vec::new(),
    }
}

pub(super) fn done(r: ProcessResult) -> Outcome {
    Outcome::Done {
        success: r.success,
        message: r.message,
    }
}
