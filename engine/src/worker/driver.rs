//! The tokio side of the worker's core: feeds it inputs with the wall clock, carries out its
//! effects, and wakes it on its timers.
//!
//! ```text
//!  session reader / run tasks / peer tasks / metrics ──Shared::drive(input)──┐
//!                                                                          ▼
//!        one lock { core.handle(now, input); for effect in core.poll_effect(): carry out }
//!          StartRun       → spawn the run (instance::spawn_run) → drive(RunFinished)
//!          CancelInstance → fire the instance's token (its runs drop their futures)
//!          InstanceDone   → forget the instance's token and logger; wake shutdown
//!          PeerTask       → wake the peer task waiting for a slot
//!          Log            → the instance's log
//!        then: control messages queued → wake the session's writer (it polls transmits);
//!              next timeout changed    → wake the timer task (it feeds Input::Timer)
//! ```
//!
//! Effects are carried out under the lock, in the core's order, and none of them blocks:
//! runs are spawned, tokens fired, oneshots sent. So two callers can never reorder one
//! instance's effects. Nothing carried out here feeds the core again while the lock is held
//! (a spawned run reports from its own task), so the lock is never taken twice.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use super::core::{Effect, Transmit};
use super::core::{EpochMs, Input, WorkerCore};
use super::epoch_ms;
use super::instance::{self, InstanceInfo};
use super::logs::InstanceLogger;
use super::state::Shared;

/// What the driver keeps for one running instance.
#[derive(Debug)]
pub(crate) struct InstanceHandle {
    pub info: Arc<InstanceInfo>,
    /// Fired on stop, timeout, server loss or shutdown; every run's token is a child.
    pub cancel: CancellationToken,
    pub logger: InstanceLogger,
}

/// The core and the driver's per-instance state, behind one lock.
#[derive(Debug)]
pub(crate) struct Driven {
    pub core: WorkerCore,
    pub instances: HashMap<u64, InstanceHandle>,
    /// Peer tasks waiting for the core's answer to `Input::PeerTask`.
    pub peer_waiters: HashMap<u64, oneshot::Sender<bool>>,
}

impl Driven {
    pub(crate) fn new(core: WorkerCore) -> Self {
        Driven {
            core,
            instances: HashMap::new(),
            peer_waiters: HashMap::new(),
        }
    }
}

impl Shared {
    /// Feeds `input` to the core at the wall clock's now and carries out what follows.
    pub(crate) fn drive(self: &Arc<Self>, input: Input) {
        self.drive_at(epoch_ms(), input);
    }

    fn drive_at(self: &Arc<Self>, now: EpochMs, input: Input) {
        let mut d = self.driven.lock();
        let timeout_before = d.core.poll_timeout();
        d.core.handle(now, input);
        while let Some(effect) = d.core.poll_effect() {
            self.carry_out(&mut d, effect);
        }
        if d.core.transmits_queued() > 0 {
            self.transmit_ready.notify_one();
        }
        if d.core.poll_timeout() != timeout_before {
            self.timer_changed.notify_one();
        }
    }

    fn carry_out(self: &Arc<Self>, d: &mut Driven, effect: Effect) {
        match effect {
            Effect::StartRun(run) => {
                let id = run.job.instance_id;
                let handle = d.instances.entry(id).or_insert_with(|| InstanceHandle {
                    info: Arc::new(InstanceInfo::new((*run.job).clone())),
                    cancel: self.tasks_root.child_token(),
                    logger: self.logger(&run.job),
                });
                instance::spawn_run(self, handle, run);
            }
            Effect::CancelInstance { instance_id } => {
                if let Some(h) = d.instances.get(&instance_id) {
                    h.cancel.cancel();
                }
            }
            Effect::InstanceDone { instance_id } => {
                d.instances.remove(&instance_id);
                self.instance_done.notify_waiters();
            }
            Effect::PeerTask { ticket, granted } => {
                if let Some(tx) = d.peer_waiters.remove(&ticket) {
                    // The peer task may have given up meanwhile; its guard then tells the core.
                    let _ = tx.send(granted);
                }
            }
            Effect::Log {
                instance_id,
                level,
                line,
            } => match d.instances.get(&instance_id) {
                Some(h) => h.logger.log(level, line),
                None => self.default_logger(instance_id).log(level, line),
            },
        }
    }

    /// Up to `max` control messages for the server, in the core's order.
    pub(crate) fn take_transmits(&self, max: usize) -> Vec<Transmit> {
        let mut d = self.driven.lock();
        let mut out = Vec::new();
        while out.len() < max {
            match d.core.poll_transmit() {
                Some(t) => out.push(t),
                None => break,
            }
        }
        out
    }

    /// Instances running now.
    pub(crate) fn running(&self) -> usize {
        self.driven.lock().core.running()
    }

    /// Waits until the core grants a concurrency slot to a broadcast task another worker's
    /// TaskTracker asked for; `None` when refused (worker full or shutting down) or
    /// cancelled. The slot is held until the returned guard is dropped.
    pub(crate) async fn peer_slot(
        self: &Arc<Self>,
        job_id: u64,
        concurrency: u32,
        cancel: &CancellationToken,
    ) -> Option<PeerSlot> {
        let ticket = self.next_ticket.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.driven.lock().peer_waiters.insert(ticket, tx);
        // From here on the guard tells the core when the task is done or gave up.
        let guard = PeerSlot {
            shared: Arc::clone(self),
            ticket,
        };
        self.drive(Input::PeerTask {
            ticket,
            job_id,
            concurrency,
        });
        let granted = tokio::select! {
            g = rx => g.unwrap_or(false),
            () = cancel.cancelled() => false,
        };
        granted.then_some(guard)
    }
}

/// A concurrency slot held by a peer's broadcast task (or its place in the queue): given back
/// to the core on drop.
#[derive(Debug)]
pub(crate) struct PeerSlot {
    shared: Arc<Shared>,
    ticket: u64,
}

impl Drop for PeerSlot {
    fn drop(&mut self) {
        self.shared.driven.lock().peer_waiters.remove(&self.ticket);
        self.shared.drive(Input::PeerTaskDone {
            ticket: self.ticket,
        });
    }
}

/// How long until `at` by the wall clock (zero if past).
pub(crate) fn until(at: EpochMs) -> Duration {
    let ms = at.saturating_sub(epoch_ms()).max(0);
    Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

/// Feeds `Input::Timer` whenever the core's next timeout is reached, until `stop` fires.
pub(crate) async fn timers(shared: Arc<Shared>, stop: CancellationToken) {
    loop {
        let next = shared.driven.lock().core.poll_timeout();
        let due = async {
            match next {
                Some(at) => tokio::time::sleep(until(at)).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = due => shared.drive(Input::Timer),
            () = shared.timer_changed.notified() => {}
            () = stop.cancelled() => return,
        }
    }
}
