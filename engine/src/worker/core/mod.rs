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
//! - Fencing: a `ScheduleJob` or `StopInstance` stamped with an older epoch than the highest
//!   the worker has seen for its app comes from a server that lost the app, and is dropped.
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
//! - The transmit queue is bounded: a keepalive is skipped while its instance still has a
//!   report queued, a heartbeat while one is queued, and both, with queries, past
//!   [`TRANSMIT_SOFT_LIMIT`]; new instances are refused while [`MAX_INSTANCES`] are running or
//!   have a final report not yet handed to the connection. So the queue holds at most two
//!   reports per such instance, one heartbeat and `TRANSMIT_SOFT_LIMIT` answers. Query answers and heartbeats belong to one connection and
//!   are dropped when it ends; reports wait for the next one.

mod broadcast;
#[cfg(test)]
mod broadcast_tests;
#[cfg(test)]
mod connection_tests;
mod finished;
mod instance;
mod lifecycle;
mod link;
#[cfg(test)]
mod model;
mod reconnect;
mod seq;
mod slots;
#[cfg(test)]
pub(crate) mod tests;

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use ferrojob_transport::message::{
    ErrorCode, ErrorReply, InstanceStatus, InstanceStatusReply, LogLevel, Message, ScheduleJob,
    SystemMetrics,
};
use ferrojob_transport::BackoffConfig;

pub(crate) use finished::{Finished, FinishedCache};
pub(crate) use instance::{Outcome, ProcessorKind};
pub(crate) use reconnect::Retry;
pub use reconnect::{MAX_HANDOFF_DELAY, MAX_RECONNECT_DELAY};

use instance::{Counts, Instance, Phase};
use link::Link;
use reconnect::SplitMix64;
use slots::{Holder, JobSlots};

use super::processor::{ProcessResult, TaskResult};
pub(crate) use crate::time_expression::EpochMs;

/// Instances running on one worker, or finished with their final report still queued, at
/// most; more `ScheduleJob`s are ignored (the server re-dispatches them when their receive
/// timeout passes).
pub const MAX_INSTANCES: usize = 262_144;
/// Past this many queued control messages, keepalives and heartbeats are skipped and queries
/// refused.
pub const TRANSMIT_SOFT_LIMIT: usize = crate::worker::OUTBOUND_QUEUE;
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
    /// The timeout given to an instance whose job sets none, ms; 0 = none.
    pub default_instance_timeout_ms: u64,
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
    /// An attempt to reach a server failed; `retry` says how soon to try again.
    ConnectFailed { retry: Retry },
    /// The server connection ended; `retry` says how soon to try again.
    ConnectionLost { retry: Retry },
    /// The server dispatched an instance; `processor` is what is registered under its name.
    ScheduleJob {
        job: Box<ScheduleJob>,
        processor: ProcessorKind,
    },
    /// The server asked to stop an instance, at its fencing `epoch`.
    StopInstance { instance_id: u64, epoch: u64 },
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

/// The worker's sans-IO core (see the module doc for what it decides and its invariants).
///
/// Call order, by the one owner of `&mut self`: [`handle`](Self::handle)`(now, input)`; then
/// [`poll_effect`](Self::poll_effect) until `None`, carrying each out in order; then, whenever
/// the server connection has room, [`poll_transmit`](Self::poll_transmit) (before any log
/// batch); and [`poll_timeout`](Self::poll_timeout) / [`next_connect_at`](Self::next_connect_at)
/// for when to come back with [`Input::Timer`] or a connection attempt.
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
    /// Final reports in `transmits`.
    unsent_finals: usize,
    /// Per job: runs holding a slot plus peer tasks granted one (checks `slots`).
    held: HashMap<u64, u32>,
    link: Link,
    metrics: SystemMetrics,
    processor_trackers: u32,
    closing: bool,
    next_run: u64,
    next_generation: u64,
    /// The highest fencing epoch a server stamped on a `ScheduleJob` or `StopInstance` for
    /// this worker's app: one from an older epoch comes from a server that lost the app and
    /// is dropped.
    server_epoch: u64,
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
            handoff: reconnect::handoff_backoff(&config.backoff),
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
            unsent_finals: 0,
            held: HashMap::new(),
            link,
            processor_trackers: 0,
            closing: false,
            next_run: 0,
            next_generation: 0,
            server_epoch: 0,
        }
    }

    /// Whether a server message stamped with `epoch` is to be followed: not older than the
    /// highest epoch seen for the app (which it then becomes).
    fn current_epoch(&mut self, epoch: u64, what: &'static str, instance: u64) -> bool {
        if epoch < self.server_epoch {
            tracing::warn!(
                instance,
                epoch,
                current = self.server_epoch,
                "{what} from a server's older epoch dropped: that server no longer serves the app"
            );
            return false;
        }
        self.server_epoch = epoch;
        true
    }

    /// The highest fencing epoch seen from a server (0 with a single server).
    #[cfg(test)]
    pub(crate) fn server_epoch(&self) -> u64 {
        self.server_epoch
    }

    /// Feeds one input.
    pub(crate) fn handle(&mut self, now: EpochMs, input: Input) {
        match input {
            Input::Connected => self.on_connected(now),
            Input::ConnectFailed { retry } => self.schedule_reconnect(now, retry),
            Input::ConnectionLost { retry } => self.on_connection_lost(now, retry),
            Input::ScheduleJob { job, processor } => {
                if self.current_epoch(job.epoch, "ScheduleJob", job.instance_id) {
                    self.on_schedule(now, job, processor);
                }
            }
            Input::StopInstance { instance_id, epoch } => {
                if !self.current_epoch(epoch, "StopInstance", instance_id) {
                    return;
                }
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
                        self.unhold(p.job_id);
                        self.slots.release(p.job_id)
                    } else {
                        self.slots.withdraw(p.job_id, Holder::Peer { ticket });
                        Vec::new()
                    };
                    self.on_granted(granted);
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
            About::Reply => {}
            About::FinalReport => {
                debug_assert!(self.unsent_finals > 0);
                self.unsent_finals = self.unsent_finals.saturating_sub(1);
            }
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
        self.on_granted(granted);
    }

    fn hold(&mut self, job_id: u64) {
        *self.held.entry(job_id).or_default() += 1;
    }

    fn unhold(&mut self, job_id: u64) {
        if let Some(n) = self.held.get_mut(&job_id) {
            debug_assert!(*n > 0);
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.held.remove(&job_id);
            }
        }
    }

    /// Checks the invariants the module doc states (debug builds only).
    fn check_invariants(&self) {
        if !cfg!(debug_assertions) {
            return;
        }
        // Counted apart from `slots`, at each run and peer grant: O(jobs), not O(runs).
        for (job, n) in &self.held {
            debug_assert_eq!(self.slots.used(*job), *n, "slots in use of job {job}");
        }
        debug_assert!(self.finished.len() <= self.config.finished_cache.max(1));
        debug_assert!(self.instances.len() + self.unsent_finals <= MAX_INSTANCES);
        debug_assert!(self.transmits.len() <= 2 * MAX_INSTANCES + TRANSMIT_SOFT_LIMIT + 1);
        // Every running instance has its keepalive timer (and possibly a deadline).
        debug_assert!(self.timers.len() >= self.instances.len());
    }
}
