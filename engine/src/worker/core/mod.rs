//! The worker's core: a sans-IO state machine that owns what a worker decides about the
//! instances it is the TaskTracker of, and about its server connection.
//!
//! It reads no clock, spawns nothing, holds no lock and sends nothing: time comes in as an
//! argument, processor runs and messages go out as values. The tokio layer (`driver`,
//! `session`, `instance`) turns sockets, timers and finished processor futures into
//! [`Input`]s and carries out what the core asks. The same core runs under a simulator on
//! virtual time.
//!
//! # Call order
//! The driver, holding the only `&mut WorkerCore`:
//! 1. [`WorkerCore::handle`]`(now, input)` for each input (a message from the server, a run
//!    finished, the connection came up or went down, [`Input::Timer`] once
//!    [`poll_timeout`](WorkerCore::poll_timeout) is reached, ...);
//! 2. [`WorkerCore::poll_effect`] until `None`, carrying out each [`Effect`] in order (start or
//!    cancel processor runs, answer a peer's slot request, write an instance log line);
//! 3. [`WorkerCore::poll_transmit`] whenever the server connection can take a message: control
//!    messages (reports, heartbeats, query answers) in the order the core queued them. Log
//!    batches are the driver's and go out only when this returns `None`;
//! 4. [`WorkerCore::poll_timeout`] for when to feed [`Input::Timer`] next, and
//!    [`WorkerCore::next_connect_at`] for when to try the server next while disconnected.
//!
//! # What it decides
//! - Accepting a `ScheduleJob` (duplicates of a running instance, and all instances once
//!   shutting down or at [`MAX_INSTANCES`], are ignored), its RUNNING report, its keepalives
//!   (RUNNING again every `keepalive_interval`, at least every second for MAP), its timeout,
//!   `StopInstance`, and its one final report.
//! - STANDALONE: attempts `1..=task_retry_num + 1`, holding one concurrency slot.
//! - BROADCAST on its TaskTracker: `pre_process`, one task per worker (its own address runs
//!   here and takes a slot; others are remote attempts), each with its retries, then
//!   `post_process` or the default summary.
//! - MAP/MAP_REDUCE: one run for the whole instance (the `task_tracker` driver over
//!   [`TaskTrackerCore`](crate::mapreduce::TaskTrackerCore)); it feeds progress back.
//! - Per-job concurrency slots ([`slots`]), also for broadcast tasks other workers ask for.
//! - `QueryInstanceStatus` from the running set and the finished cache (bounded, FIFO).
//! - Heartbeats (every `heartbeat_interval` while connected, and first on each connection),
//!   the reconnect backoff (capped at [`MAX_RECONNECT_DELAY`]) and PowerJob's rule that
//!   fixed rate/delay instances stop once the server is lost for longer than
//!   `server_lost_after`.
//!
//! # Invariants
//! - Per instance dispatch, reports are numbered from `report_seq_base + 1`, strictly
//!   increasing, and exactly one final report is queued, last: the instance leaves the
//!   running set in the same step that queues it.
//! - A job's slots in use equal its runs holding one plus the peer tasks granted one; a slot
//!   is released when its run *finishes* (not when its instance is cancelled), so a processor
//!   still unwinding from a stop keeps counting against the limit.
//! - The transmit queue is bounded: keepalives and heartbeats are skipped (never queued twice
//!   for one instance or one connection), new instances and queries are refused past
//!   [`TRANSMIT_SOFT_LIMIT`], so above it there are only final reports, at most one per
//!   instance that was running ([`MAX_INSTANCES`]). Query answers and heartbeats belong to one
//!   connection and are dropped when it ends; reports wait for the next one.

mod finished;
mod instance;
mod reconnect;
mod seq;
mod slots;
#[cfg(test)]
mod tests;

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use ferrojob_transport::message::{
    ErrorCode, ErrorReply, ExecuteType, InstanceStatus, InstanceStatusReply, LogLevel, Message,
    ProcessorType, ScheduleJob, SystemMetrics, WorkerHeartbeat,
};
use ferrojob_transport::{Backoff, BackoffConfig};

pub(crate) use finished::{Finished, FinishedCache};
pub(crate) use instance::{Outcome, ProcessorKind};
pub use reconnect::MAX_RECONNECT_DELAY;

use instance::{BroadcastTask, Counts, Instance, Phase, TaskState};
use reconnect::SplitMix64;
use slots::{Holder, JobSlots};

use super::logs::truncate_at_char_boundary;
use super::processor::{summarise, ProcessResult, TaskResult};
pub(crate) use crate::time_expression::EpochMs;

/// Instances running on one worker at most; more `ScheduleJob`s are ignored (the server
/// re-dispatches them when their receive timeout passes).
pub const MAX_INSTANCES: usize = 65_536;
/// Past this many queued control messages, keepalives and heartbeats are skipped and new
/// instances and queries refused.
pub const TRANSMIT_SOFT_LIMIT: usize = 65_536;
/// Peer tasks (broadcast tasks of other TaskTrackers) waiting for or holding a slot at most.
pub const MAX_PEER_TASKS: usize = 65_536;
/// Result texts are cut to this many bytes (the server caps them again).
pub(crate) const MAX_RESULT_BYTES: usize = 64 * 1024;
/// Results kept in the finished cache are cut to this many bytes, so that the cache's
/// entries stay small whatever processors return (10 000 entries: at most ~40 MiB).
pub(crate) const MAX_CACHED_RESULT_BYTES: usize = 4 * 1024;
/// A MAP/MAP_REDUCE instance reports its task counts at least this often (milliseconds).
pub(crate) const MAP_PROGRESS_EVERY_MS: i64 = 1000;

/// The core's settings.
#[derive(Debug, Clone)]
pub(crate) struct CoreConfig {
    /// `host:port` the worker is known by (reports' `source_address`, heartbeats).
    pub address: String,
    pub app: String,
    /// The first tag, carried by heartbeats.
    pub tag: Option<String>,
    /// Milliseconds, at least 10.
    pub heartbeat_interval_ms: i64,
    /// Milliseconds, 1 ..= one day.
    pub keepalive_interval_ms: i64,
    pub server_lost_after: Duration,
    /// Instances running at once before heartbeats say `overloaded`; 0 = no limit.
    pub max_running_instances: usize,
    pub finished_cache: usize,
    /// The configured reconnect backoff (capped at [`MAX_RECONNECT_DELAY`]).
    pub backoff: BackoffConfig,
    /// Seeds the backoff's jitter.
    pub seed: u64,
    /// The health measurements until the first [`Input::Metrics`].
    pub metrics: SystemMetrics,
}

/// Identifies one processor run the core asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct RunId(pub u64);

/// What the core is told.
#[derive(Debug)]
pub(crate) enum Input {
    /// The server connection is up (handshake done).
    Connected,
    /// An attempt to reach the server failed.
    ConnectFailed,
    /// The server connection ended.
    ConnectionLost,
    /// The server dispatched an instance; `processor` is what is registered under its name.
    ScheduleJob {
        job: Box<ScheduleJob>,
        processor: ProcessorKind,
    },
    /// The server asked to stop an instance.
    StopInstance { instance_id: u64 },
    /// The server asked about an instance; answer with `correlation`.
    QueryInstanceStatus { correlation: u64, instance_id: u64 },
    /// A run the core started has returned (or was cancelled: its result is then ignored).
    RunFinished { run: RunId, result: ProcessResult },
    /// A MAP/MAP_REDUCE instance's task counts.
    Progress {
        instance_id: u64,
        total: u64,
        succeeded: u64,
        failed: u64,
    },
    /// Another worker's TaskTracker asks this worker to run a broadcast task of `job_id`:
    /// answered by [`Effect::PeerTask`] once a slot is free. `ticket` is the driver's,
    /// unique among live peer tasks.
    PeerTask {
        ticket: u64,
        job_id: u64,
        concurrency: u32,
    },
    /// A peer task finished or was abandoned (granted or not).
    PeerTaskDone { ticket: u64 },
    /// Fresh health measurements and the broadcast/MAP tasks this worker runs for
    /// TaskTrackers, for the next heartbeats.
    Metrics {
        metrics: SystemMetrics,
        processor_trackers: u32,
    },
    /// [`WorkerCore::poll_timeout`] was reached.
    Timer,
    /// The worker shuts down: running instances fail ("worker shut down"), new ones are
    /// refused.
    Shutdown,
}

/// What a run executes.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum RunKind {
    /// Attempt `attempt` (from 1) of a STANDALONE instance's only task, `"0"`.
    Standalone { attempt: u32 },
    /// A BROADCAST instance's `pre_process`.
    BroadcastPre,
    /// Broadcast task `index` (its `task_id`) on the worker at `address`: here when `local`
    /// (a concurrency slot is held), else a remote attempt through that worker's listener.
    /// `retry` counts from 0.
    BroadcastTask {
        index: usize,
        address: String,
        retry: u32,
        local: bool,
    },
    /// A BROADCAST instance's `post_process` over every task's result, in task order.
    BroadcastPost { results: Vec<TaskResult> },
    /// A whole MAP/MAP_REDUCE instance on its TaskTracker.
    Map { has_reduce: bool },
}

/// A processor run to start.
#[derive(Debug)]
pub(crate) struct Run {
    pub id: RunId,
    pub job: Arc<ScheduleJob>,
    pub kind: RunKind,
}

/// What the core asks the driver to do (besides transmitting).
#[must_use]
#[derive(Debug)]
pub(crate) enum Effect {
    /// Start a run; feed [`Input::RunFinished`] when it returns.
    StartRun(Run),
    /// Cancel every run of the instance (fire its token, drop its futures); each still ends
    /// with [`Input::RunFinished`].
    CancelInstance { instance_id: u64 },
    /// The instance left the running set: forget what the driver keeps for it.
    InstanceDone { instance_id: u64 },
    /// Answer to [`Input::PeerTask`]: run it now (`granted`), or refuse it (worker full or
    /// shutting down).
    PeerTask { ticket: u64, granted: bool },
    /// Write a line to an instance's log.
    Log {
        instance_id: u64,
        level: LogLevel,
        line: String,
    },
}

/// A control message for the server.
#[must_use]
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Transmit {
    /// A one-way message (report, heartbeat).
    Send(Message),
    /// The answer to the request that came with `correlation`.
    Reply { correlation: u64, message: Message },
}

/// What a queued transmit is, for the bookkeeping when it leaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum About {
    Heartbeat,
    Reply,
    /// A RUNNING report of a running instance.
    Report {
        instance_id: u64,
        generation: u64,
    },
    /// A final report (its instance has left the running set).
    FinalReport,
}

/// A run the core started.
#[derive(Debug)]
struct RunRec {
    instance_id: u64,
    generation: u64,
    /// The job whose slot the run holds, if it holds one.
    slot: Option<u64>,
    kind: RunWhat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RunWhat {
    Standalone { attempt: u32 },
    Pre,
    Task { index: usize },
    Post,
    Map,
}

/// A timer entry: `(due, what)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum TimerKey {
    Deadline(u64),
    Keepalive(u64),
}

/// A peer task waiting for or holding a slot.
#[derive(Debug)]
struct PeerRec {
    job_id: u64,
    granted: bool,
}

/// The server connection as the core sees it.
#[derive(Debug)]
struct Link {
    connected: bool,
    /// Since when the server is unreachable (`None` while connected).
    disconnected_since: Option<EpochMs>,
    /// When to try the server next (`None` while connected).
    next_connect_at: Option<EpochMs>,
    /// Fixed rate/delay instances were stopped for this disconnection.
    lost_applied: bool,
    next_heartbeat: EpochMs,
    backoff: Backoff,
    rng: SplitMix64,
}

/// The worker's sans-IO core; see the module doc for the call order and invariants.
#[derive(Debug)]
pub(crate) struct WorkerCore {
    config: CoreConfig,
    instances: HashMap<u64, Instance>,
    finished: FinishedCache,
    slots: JobSlots,
    runs: HashMap<RunId, RunRec>,
    peers: HashMap<u64, PeerRec>,
    timers: BTreeSet<(EpochMs, TimerKey)>,
    effects: VecDeque<Effect>,
    transmits: VecDeque<(Transmit, About)>,
    heartbeat_queued: bool,
    link: Link,
    metrics: SystemMetrics,
    processor_trackers: u32,
    closing: bool,
    next_run: u64,
    next_generation: u64,
}

impl WorkerCore {
    /// A core at `now`: disconnected, to connect at once.
    pub(crate) fn new(config: CoreConfig, now: EpochMs) -> Self {
        let link = Link {
            connected: false,
            disconnected_since: Some(now),
            next_connect_at: Some(now),
            lost_applied: false,
            next_heartbeat: now,
            backoff: reconnect::reconnect_backoff(&config.backoff),
            rng: SplitMix64::new(config.seed),
        };
        WorkerCore {
            finished: FinishedCache::new(config.finished_cache),
            metrics: config.metrics.clone(),
            config,
            instances: HashMap::new(),
            slots: JobSlots::default(),
            runs: HashMap::new(),
            peers: HashMap::new(),
            timers: BTreeSet::new(),
            effects: VecDeque::new(),
            transmits: VecDeque::new(),
            heartbeat_queued: false,
            link,
            processor_trackers: 0,
            closing: false,
            next_run: 0,
            next_generation: 0,
        }
    }

    /// Feeds one input.
    pub(crate) fn handle(&mut self, now: EpochMs, input: Input) {
        match input {
            Input::Connected => self.on_connected(now),
            Input::ConnectFailed => self.schedule_reconnect(now),
            Input::ConnectionLost => self.on_connection_lost(now),
            Input::ScheduleJob { job, processor } => self.on_schedule(now, job, processor),
            Input::StopInstance { instance_id } => {
                if self.instances.contains_key(&instance_id) {
                    self.finish(now, instance_id, Outcome::Stopped);
                } else {
                    tracing::debug!(instance = instance_id, "stop for an unknown instance");
                }
            }
            Input::QueryInstanceStatus {
                correlation,
                instance_id,
            } => self.on_query(correlation, instance_id),
            Input::RunFinished { run, result } => self.on_run_finished(now, run, result),
            Input::Progress {
                instance_id,
                total,
                succeeded,
                failed,
            } => {
                if let Some(i) = self.instances.get_mut(&instance_id) {
                    if matches!(i.phase, Phase::Map) {
                        i.counts = Counts {
                            total,
                            succeeded,
                            failed,
                        };
                    }
                }
            }
            Input::PeerTask {
                ticket,
                job_id,
                concurrency,
            } => self.on_peer_task(ticket, job_id, concurrency),
            Input::PeerTaskDone { ticket } => {
                if let Some(p) = self.peers.remove(&ticket) {
                    let granted = if p.granted {
                        self.slots.release(p.job_id)
                    } else {
                        self.slots.withdraw(p.job_id, Holder::Peer { ticket });
                        Vec::new()
                    };
                    self.on_granted(now, granted);
                }
            }
            Input::Metrics {
                metrics,
                processor_trackers,
            } => {
                self.metrics = metrics;
                self.processor_trackers = processor_trackers;
            }
            Input::Timer => self.on_timer(now),
            Input::Shutdown => {
                self.closing = true;
                let ids: Vec<u64> = self.instances.keys().copied().collect();
                for id in ids {
                    self.finish(now, id, Outcome::Shutdown);
                }
                let waiting: Vec<u64> = self
                    .peers
                    .iter()
                    .filter(|(_, p)| !p.granted)
                    .map(|(t, _)| *t)
                    .collect();
                for ticket in waiting {
                    if let Some(p) = self.peers.remove(&ticket) {
                        self.slots.withdraw(p.job_id, Holder::Peer { ticket });
                    }
                    self.effects.push_back(Effect::PeerTask {
                        ticket,
                        granted: false,
                    });
                }
            }
        }
        self.check_invariants();
    }

    /// The next thing to do, in order.
    pub(crate) fn poll_effect(&mut self) -> Option<Effect> {
        self.effects.pop_front()
    }

    /// The next control message for the server, in order.
    pub(crate) fn poll_transmit(&mut self) -> Option<Transmit> {
        let (t, about) = self.transmits.pop_front()?;
        match about {
            About::Heartbeat => self.heartbeat_queued = false,
            About::Reply | About::FinalReport => {}
            About::Report {
                instance_id,
                generation,
            } => {
                if let Some(i) = self.instances.get_mut(&instance_id) {
                    if i.generation == generation {
                        debug_assert!(i.unsent > 0);
                        i.unsent = i.unsent.saturating_sub(1);
                    }
                }
            }
        }
        Some(t)
    }

    /// Control messages queued.
    pub(crate) fn transmits_queued(&self) -> usize {
        self.transmits.len()
    }

    /// When to feed [`Input::Timer`] next.
    pub(crate) fn poll_timeout(&self) -> Option<EpochMs> {
        let mut next = self.timers.first().map(|(t, _)| *t);
        let mut consider = |t: EpochMs| next = Some(next.map_or(t, |n: EpochMs| n.min(t)));
        if self.link.connected {
            consider(self.link.next_heartbeat);
        } else if let Some(lost) = self.server_lost_at() {
            consider(lost);
        }
        next
    }

    /// When to try to reach the server next; `None` while connected.
    pub(crate) fn next_connect_at(&self) -> Option<EpochMs> {
        self.link.next_connect_at
    }

    pub(crate) fn is_connected(&self) -> bool {
        self.link.connected
    }

    /// Instances running now (as their TaskTracker).
    pub(crate) fn running(&self) -> usize {
        self.instances.len()
    }

    /// The latest health measurements.
    pub(crate) fn metrics(&self) -> &SystemMetrics {
        &self.metrics
    }

    /// The answer to `QueryInstanceStatus`, if this worker knows the instance.
    pub(crate) fn instance_status(&self, instance_id: u64) -> Option<InstanceStatusReply> {
        if let Some(i) = self.instances.get(&instance_id) {
            return Some(InstanceStatusReply {
                instance_id,
                status: InstanceStatus::Running,
                result: None,
                total_tasks: i.counts.total,
                succeeded_tasks: i.counts.succeeded,
                failed_tasks: i.counts.failed,
                running_tasks: i.counts.running(),
                start_time_ms: i.start_time_ms,
            });
        }
        self.finished.get(instance_id).map(|f| InstanceStatusReply {
            instance_id,
            status: f.status.clone(),
            result: f.result.clone(),
            total_tasks: f.counts.0,
            succeeded_tasks: f.counts.1,
            failed_tasks: f.counts.2,
            running_tasks: 0,
            start_time_ms: f.start_time_ms,
        })
    }

    // ---- the connection -------------------------------------------------------------------

    fn on_connected(&mut self, now: EpochMs) {
        let link = &mut self.link;
        link.connected = true;
        link.disconnected_since = None;
        link.next_connect_at = None;
        link.lost_applied = false;
        link.backoff.reset();
        link.next_heartbeat = now.saturating_add(self.config.heartbeat_interval_ms);
        // The heartbeat goes first: it tells the server who this worker is now.
        self.transmits.retain(|(_, a)| *a != About::Heartbeat);
        let hb = self.heartbeat(now);
        self.transmits
            .push_front((Transmit::Send(hb.into()), About::Heartbeat));
        self.heartbeat_queued = true;
    }

    fn on_connection_lost(&mut self, now: EpochMs) {
        if self.link.connected {
            self.link.connected = false;
            self.link.disconnected_since = Some(now);
        }
        // Heartbeats are stale by the next connection and answers belong to this one;
        // reports wait for the next connection.
        self.transmits
            .retain(|(_, a)| !matches!(a, About::Heartbeat | About::Reply));
        self.heartbeat_queued = false;
        self.schedule_reconnect(now);
    }

    fn schedule_reconnect(&mut self, now: EpochMs) {
        if self.link.connected {
            debug_assert!(false, "reconnect scheduled while connected");
            return;
        }
        let unit = self.link.rng.unit();
        let delay = self.link.backoff.next_delay(unit);
        debug_assert!(delay <= MAX_RECONNECT_DELAY);
        let ms = i64::try_from(delay.as_millis()).unwrap_or(i64::MAX);
        self.link.next_connect_at = Some(now.saturating_add(ms));
    }

    /// When fixed rate/delay instances are to be stopped, while disconnected.
    fn server_lost_at(&self) -> Option<EpochMs> {
        if self.link.lost_applied {
            return None;
        }
        let since = self.link.disconnected_since?;
        let after = i64::try_from(self.config.server_lost_after.as_millis()).unwrap_or(i64::MAX);
        // Lost once the outage is *longer* than `server_lost_after`.
        Some(since.saturating_add(after).saturating_add(1))
    }

    fn heartbeat(&self, now: EpochMs) -> WorkerHeartbeat {
        let heavy = self.instances.values().filter(|i| i.is_heavy()).count();
        let light = self.instances.len().saturating_sub(heavy);
        let max = self.config.max_running_instances;
        WorkerHeartbeat {
            worker_address: self.config.address.clone(),
            app_name: self.config.app.clone(),
            app_id: 0,
            heartbeat_time_ms: now,
            version: env!("CARGO_PKG_VERSION").to_string(),
            tag: self.config.tag.clone(),
            overloaded: max > 0 && self.instances.len() >= max,
            lightweight_task_trackers: u32::try_from(light).unwrap_or(u32::MAX),
            heavy_task_trackers: u32::try_from(heavy).unwrap_or(u32::MAX),
            processor_trackers: self.processor_trackers,
            metrics: self.metrics.clone(),
        }
    }

    // ---- timers ---------------------------------------------------------------------------

    fn on_timer(&mut self, now: EpochMs) {
        while let Some(&(due, key)) = self.timers.first() {
            if due > now {
                break;
            }
            self.timers.remove(&(due, key));
            match key {
                TimerKey::Deadline(id) => {
                    let ms = self
                        .instances
                        .get(&id)
                        .map_or(0, |i| i.job.instance_timeout_ms);
                    self.finish(now, id, Outcome::TimedOut(ms));
                }
                TimerKey::Keepalive(id) => self.keepalive(now, id),
            }
        }
        if self.link.connected && self.link.next_heartbeat <= now {
            self.link.next_heartbeat = now.saturating_add(self.config.heartbeat_interval_ms);
            // A heartbeat still queued is as good as a new one: never two.
            if !self.heartbeat_queued && self.transmits.len() < TRANSMIT_SOFT_LIMIT {
                let hb = self.heartbeat(now);
                self.transmits
                    .push_back((Transmit::Send(hb.into()), About::Heartbeat));
                self.heartbeat_queued = true;
            }
        }
        if !self.link.connected && self.server_lost_at().is_some_and(|t| t <= now) {
            self.link.lost_applied = true;
            let fixed: Vec<u64> = self
                .instances
                .iter()
                .filter(|(_, i)| i.is_fixed())
                .map(|(id, _)| *id)
                .collect();
            for id in fixed {
                tracing::warn!(
                    instance = id,
                    "server unreachable too long: stopping fixed rate/delay instance"
                );
                self.finish(now, id, Outcome::ServerLost);
            }
        }
    }

    fn keepalive(&mut self, now: EpochMs, id: u64) {
        let address = &self.config.address;
        let Some(i) = self.instances.get_mut(&id) else {
            return;
        };
        i.next_keepalive = now.saturating_add(i.keepalive_every);
        self.timers
            .insert((i.next_keepalive, TimerKey::Keepalive(id)));
        // A RUNNING report still queued says the same: skip rather than queue another.
        if i.unsent > 0 || self.transmits.len() >= TRANSMIT_SOFT_LIMIT {
            return;
        }
        if let Some(r) = i.report(now, address, InstanceStatus::Running, None) {
            i.unsent += 1;
            let about = About::Report {
                instance_id: id,
                generation: i.generation,
            };
            self.transmits.push_back((Transmit::Send(r.into()), about));
        }
    }

    // ---- instances ------------------------------------------------------------------------

    fn on_schedule(&mut self, now: EpochMs, job: Box<ScheduleJob>, processor: ProcessorKind) {
        let id = job.instance_id;
        if self.closing {
            tracing::warn!(instance = id, "worker shutting down: ScheduleJob ignored");
            return;
        }
        if self.instances.contains_key(&id) {
            // A re-sent ScheduleJob for an instance already running here: the running
            // attempt keeps reporting; a second one would break the sequence.
            tracing::debug!(instance = id, "instance already running here: ignored");
            return;
        }
        if self.instances.len() >= MAX_INSTANCES || self.transmits.len() >= TRANSMIT_SOFT_LIMIT {
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
            seq: seq::ReportSeq::new(job.report_seq_base),
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
    fn start_work(&mut self, now: EpochMs, id: u64) {
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
            (ExecuteType::Broadcast, _) => self.start_broadcast_tasks(now, id),
            _ => {
                i.counts.total = 1;
                i.phase = Phase::WaitingSlot;
                let granted =
                    self.slots
                        .acquire(job.job_id, job.concurrency, Holder::Standalone { instance_id: id });
                self.on_granted(now, granted);
            }
        }
    }

    fn start_broadcast_tasks(&mut self, now: EpochMs, id: u64) {
        let own = self.config.address.clone();
        let Some(i) = self.instances.get_mut(&id) else {
            return;
        };
        let mut addresses = i.job.all_worker_addresses.clone();
        if addresses.is_empty() {
            addresses.push(own.clone());
        }
        i.counts.total = addresses.len() as u64;
        let tasks: Vec<BroadcastTask> = addresses
            .into_iter()
            .map(|address| BroadcastTask {
                local: address == own,
                address,
                retry: 0,
                state: TaskState::WaitingSlot,
            })
            .collect();
        let n = tasks.len();
        i.phase = Phase::BroadcastTasks {
            tasks,
            results: vec![None; n],
        };
        for index in 0..n {
            self.start_broadcast_attempt(now, id, index);
        }
    }

    /// Starts (or queues for a slot) the next attempt of broadcast task `index`.
    fn start_broadcast_attempt(&mut self, now: EpochMs, id: u64, index: usize) {
        let Some(i) = self.instances.get_mut(&id) else {
            return;
        };
        let (job_id, concurrency) = (i.job.job_id, i.job.concurrency);
        let Phase::BroadcastTasks { tasks, .. } = &mut i.phase else {
            return;
        };
        let Some(task) = tasks.get_mut(index) else {
            return;
        };
        if task.local {
            task.state = TaskState::WaitingSlot;
            let holder = Holder::BroadcastTask {
                instance_id: id,
                index,
            };
            let granted = self.slots.acquire(job_id, concurrency, holder);
            self.on_granted(now, granted);
        } else {
            task.state = TaskState::Running;
            let kind = RunKind::BroadcastTask {
                index,
                address: task.address.clone(),
                retry: task.retry,
                local: false,
            };
            self.start_run(id, None, RunWhat::Task { index }, kind);
        }
    }

    /// Starts what the holders granted a slot were waiting to run.
    fn on_granted(&mut self, _now: EpochMs, granted: Vec<Holder>) {
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
                        self.effects.push_back(Effect::PeerTask {
                            ticket,
                            granted: true,
                        });
                    }
                }
            }
        }
    }

    fn start_run(&mut self, id: u64, slot: Option<u64>, what: RunWhat, kind: RunKind) {
        let Some(i) = self.instances.get_mut(&id) else {
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
    }

    fn on_run_finished(&mut self, now: EpochMs, run: RunId, result: ProcessResult) {
        let Some(rec) = self.runs.remove(&run) else {
            debug_assert!(false, "finish of an unknown run");
            return;
        };
        let current = self
            .instances
            .get_mut(&rec.instance_id)
            .filter(|i| i.generation == rec.generation);
        let Some(i) = current else {
            // The instance ended (stopped, timed out) while this run unwound: only its slot
            // is left to give back.
            if let Some(job_id) = rec.slot {
                let granted = self.slots.release(job_id);
                self.on_granted(now, granted);
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
                self.release_slot(now, rec.slot);
                self.finish(now, id, done(result));
            }
            RunWhat::Pre => {
                if result.success {
                    self.start_broadcast_tasks(now, id);
                } else {
                    let message = format!("pre_process failed: {}", result.message);
                    self.fail(now, id, message);
                }
            }
            RunWhat::Task { index } => self.on_task_finished(now, rec.slot, id, index, result),
            RunWhat::Post | RunWhat::Map => self.finish(now, id, done(result)),
        }
    }

    fn on_task_finished(
        &mut self,
        now: EpochMs,
        slot: Option<u64>,
        id: u64,
        index: usize,
        result: ProcessResult,
    ) {
        self.release_slot(now, slot);
        let Some(i) = self.instances.get_mut(&id) else {
            return;
        };
        let retries = i.job.task_retry_num;
        let Phase::BroadcastTasks { tasks, results } = &mut i.phase else {
            debug_assert!(false, "a broadcast task outside the task phase");
            return;
        };
        let Some(task) = tasks.get_mut(index) else {
            return;
        };
        if !result.success && task.retry < retries {
            self.effects.push_back(Effect::Log {
                instance_id: id,
                level: LogLevel::Warn,
                line: format!(
                    "broadcast task {index} on {} failed (retry {} of {retries}): {}",
                    task.address, task.retry, result.message
                ),
            });
            task.retry += 1;
            self.start_broadcast_attempt(now, id, index);
            return;
        }
        task.state = TaskState::Done;
        if result.success {
            i.counts.succeeded += 1;
        } else {
            i.counts.failed += 1;
        }
        if let Some(r) = results.get_mut(index) {
            *r = Some(TaskResult {
                worker: task.address.clone(),
                task_id: index.to_string(),
                success: result.success,
                message: result.message,
            });
        }
        if tasks.iter().any(|t| t.state != TaskState::Done) {
            return;
        }
        let results: Vec<TaskResult> = std::mem::take(results).into_iter().flatten().collect();
        if i.processor == ProcessorKind::Broadcast {
            i.phase = Phase::BroadcastPost;
            self.start_run(id, None, RunWhat::Post, RunKind::BroadcastPost { results });
        } else {
            let summary = summarise(&results);
            self.finish(now, id, done(summary));
        }
    }

    fn release_slot(&mut self, now: EpochMs, slot: Option<u64>) {
        if let Some(job_id) = slot {
            let granted = self.slots.release(job_id);
            self.on_granted(now, granted);
        }
    }

    fn fail(&mut self, now: EpochMs, id: u64, message: String) {
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
    fn finish(&mut self, now: EpochMs, id: u64, outcome: Outcome) {
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

    // ---- queries and peers ----------------------------------------------------------------

    fn on_query(&mut self, correlation: u64, instance_id: u64) {
        if self.transmits.len() >= TRANSMIT_SOFT_LIMIT {
            tracing::warn!(instance = instance_id, "control queue full: query dropped");
            return;
        }
        let message: Message = match self.instance_status(instance_id) {
            Some(reply) => reply.into(),
            None => ErrorReply {
                code: ErrorCode::NotFound,
                message: format!("instance {instance_id} unknown to this worker"),
            }
            .into(),
        };
        self.transmits.push_back((
            Transmit::Reply {
                correlation,
                message,
            },
            About::Reply,
        ));
    }

    fn on_peer_task(&mut self, ticket: u64, job_id: u64, concurrency: u32) {
        if self.closing || self.peers.len() >= MAX_PEER_TASKS || self.peers.contains_key(&ticket) {
            self.effects.push_back(Effect::PeerTask {
                ticket,
                granted: false,
            });
            return;
        }
        self.peers.insert(
            ticket,
            PeerRec {
                job_id,
                granted: false,
            },
        );
        let granted = self
            .slots
            .acquire(job_id, concurrency, Holder::Peer { ticket });
        self.on_granted(0, granted);
    }

    /// Checks the invariants the module doc states (debug builds only).
    fn check_invariants(&self) {
        if !cfg!(debug_assertions) {
            return;
        }
        let mut held: HashMap<u64, u32> = HashMap::new();
        for r in self.runs.values() {
            if let Some(job) = r.slot {
                *held.entry(job).or_default() += 1;
            }
        }
        for p in self.peers.values().filter(|p| p.granted) {
            *held.entry(p.job_id).or_default() += 1;
        }
        for (job, n) in &held {
            debug_assert_eq!(self.slots.used(*job), *n, "slots in use of job {job}");
        }
        debug_assert!(self.finished.len() <= self.config.finished_cache.max(1));
        debug_assert!(self.instances.len() <= MAX_INSTANCES);
        debug_assert!(self.transmits.len() <= TRANSMIT_SOFT_LIMIT + 2 * MAX_INSTANCES + 1);
        for (id, i) in &self.instances {
            debug_assert!(
                !i.seq.is_finished(),
                "instance {id} running after its final report"
            );
            debug_assert!(self
                .timers
                .contains(&(i.next_keepalive, TimerKey::Keepalive(*id))));
        }
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

fn done(r: ProcessResult) -> Outcome {
    Outcome::Done {
        success: r.success,
        message: r.message,
    }
}
