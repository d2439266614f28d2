//! [`Ownership`]: one server's view of which partitions it holds, which it should acquire or
//! release, and for which it may act right now — a sans-IO state machine.
//!
//! # Call order
//!
//! ```text
//!   handle(now, Input)        membership views and the answers to earlier commands
//!   handle_timeout(now)       when poll_timeout's instant has come
//!   poll_command()            lease commands to carry out against the database, in order
//!   poll_event()              acting / stop / drain notices for the rest of the server
//!   may_act(partition, now)   before every action for a partition: Some(epoch) or None
//! ```
//!
//! `now` is the server's monotonic clock ([`MonoUs`]); the machine reads no clock and does
//! no I/O, so tests drive several of them against a simulated database on virtual time
//! (`cluster/model.rs`).
//!
//! # A partition's states
//!
//! ```text
//!            preferred, retry due                  Acquired
//!   Idle ───────────────────────► Acquiring ─────────────────────► Held ──┐ Renew / Renewed
//!    ▲  ▲   refused, failed, no answer │                            │ ▲  ◄─┘
//!    │  └──────────────────────────────┘          another is preferred │ │
//!    │                                                              ▼ │ renew refused ──► Idle
//!    └──── Release ◄── Stopped, or deadline passed ◄──────────── Draining
//! ```
//!
//! [`Input::StateLost`] (the server's writes lost their session mid-transaction) takes every
//! held partition back to `Idle` through a stop and a release, due at once: it is acquired
//! again under a new epoch and loaded afresh.
//!
//! # The local deadline
//!
//! A partition is acted for only while `now < deadline`, where `deadline` is the instant the
//! granted acquire or renew was **sent**, plus the lease duration, minus
//! [`safety_margin`](OwnershipConfig::safety_margin). The database sets the expiry to its own
//! `now() + lease` when it *processes* the request, which is after the send, so:
//!
//! - message delays only make the deadline earlier than the expiry, never later;
//! - a pause of this process (a long GC, a stopped VM, swap) does not stop its monotonic
//!   clock, so it wakes past its deadline and acts no more (unless a renew it sent before the
//!   pause was granted: that renew's deadline counts from its own send);
//! - the clocks' rates differ: a local clock running slower than the database's by a fraction
//!   `ρ` reaches the deadline `ρ·lease` late. The margin must exceed that (a margin of a fifth
//!   of the lease covers any clock that is not broken);
//! - what the rule cannot cover is a suspend of the whole machine, which `CLOCK_MONOTONIC`
//!   does not count, and the gap between checking [`Ownership::may_act`] and the action it
//!   allowed. Both are why every write is fenced in the database and every message to a worker
//!   carries the epoch.
//!
//! Answers are matched to their request by [`RequestId`]; an answer to a request given up on
//! (no answer within [`request_timeout`](OwnershipConfig::request_timeout)) grants nothing
//! local: a lease granted that way is renewed first, and its deadline counts from that renew.
//!
//! # Drain
//!
//! When the membership view makes another live server the preferred owner of a held
//! partition, the machine stops acting for it at once and emits [`Event::Drain`]; the server
//! finishes or abandons the partition's work in flight and answers [`Input::Stopped`]; only
//! then is [`Command::Release`] emitted. If the answer does not come before the deadline, the
//! partition is released at the deadline (nothing acts for it past that anyway). The new
//! owner acquires the partition once the database shows it free or expired; nothing takes a
//! lease by force.

use std::collections::VecDeque;
use std::time::Duration;

use thiserror::Error;

use super::partition::{preferred_owner, PartitionId, PARTITION_COUNT};
use super::{Epoch, MonoUs, ServerId, MAX_SERVERS};

mod messages;
pub use messages::{Command, Event, Input, RequestId, StopReason};

/// Timings of the ownership machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OwnershipConfig {
    /// How long the database keeps a lease after granting or renewing it (default 10 s).
    pub lease: Duration,
    /// Taken off the lease for the local deadline: more than the lease times the largest
    /// rate difference between this server's clock and the database's (default 2 s).
    pub safety_margin: Duration,
    /// A held lease is renewed this long after the send of its last granted acquire or renew
    /// (default 3 s); below `lease - safety_margin`, so a renew is due before the deadline.
    pub renew_every: Duration,
    /// Wait before acquiring again after a refusal or a database error (default 1 s).
    pub retry_every: Duration,
    /// A command unanswered for this long is given up on, and may be sent again (default 2 s).
    pub request_timeout: Duration,
}

impl Default for OwnershipConfig {
    fn default() -> Self {
        OwnershipConfig {
            lease: Duration::from_secs(10),
            safety_margin: Duration::from_secs(2),
            renew_every: Duration::from_secs(3),
            retry_every: Duration::from_secs(1),
            request_timeout: Duration::from_secs(2),
        }
    }
}

/// Timings that cannot work together.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
#[error("invalid ownership timings: {0}")]
pub struct InvalidConfig(&'static str);

impl OwnershipConfig {
    /// Timings scaled to a lease of `lease` (the defaults are those of 10 s): the local
    /// deadline a fifth of the lease early, a renew every quarter lease, a command given up
    /// after a quarter lease, a refused acquire tried again after an eighth (at most 1 s).
    pub fn with_lease(lease: Duration) -> OwnershipConfig {
        OwnershipConfig {
            lease,
            safety_margin: lease / 5,
            renew_every: lease / 4,
            retry_every: (lease / 8).min(Duration::from_secs(1)),
            request_timeout: lease / 4,
        }
    }

    /// Checks that the timings leave room to renew before the deadline.
    pub fn validate(&self) -> Result<(), InvalidConfig> {
        if self.lease.is_zero() || self.retry_every.is_zero() || self.request_timeout.is_zero() {
            return Err(InvalidConfig(
                "lease, retry_every and request_timeout must be positive",
            ));
        }
        if self.safety_margin >= self.lease {
            return Err(InvalidConfig("safety_margin must be shorter than lease"));
        }
        if self.renew_every.is_zero() || self.renew_every >= self.lease - self.safety_margin {
            return Err(InvalidConfig(
                "renew_every must be positive and shorter than lease - safety_margin",
            ));
        }
        Ok(())
    }

    /// How long after a granted send the partition may be acted for.
    fn acting_window(&self) -> Duration {
        self.lease.saturating_sub(self.safety_margin)
    }
}

/// One partition, as this server sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Slot {
    /// Not held; acquire at or after `retry_at` if this server is the preferred owner.
    Idle { retry_at: MonoUs },
    /// A [`Command::TryAcquire`] sent at `sent` awaits its answer.
    Acquiring { request: RequestId, sent: MonoUs },
    /// Held at `epoch`; acted for while `now < deadline`.
    Held {
        epoch: Epoch,
        deadline: MonoUs,
        /// When the next renew is due.
        renew_at: MonoUs,
        /// The renew in flight and when it was sent.
        renewing: Option<(RequestId, MonoUs)>,
        /// Whether [`Event::Acting`] was emitted and no stop since.
        announced: bool,
    },
    /// Told to stop ([`Event::Drain`]); released on [`Input::Stopped`] or at `deadline`.
    Draining { epoch: Epoch, deadline: MonoUs },
}

/// Most commands or events queued: each partition queues at most two of each between polls
/// (a stop and a release, a drain and an acting notice).
const MAX_QUEUED: usize = 4 * PARTITION_COUNT as usize;

/// One server's ownership of partitions (see the module docs).
#[derive(Debug)]
pub struct Ownership {
    me: ServerId,
    config: OwnershipConfig,
    /// The live servers, sorted, without duplicates.
    live: Vec<ServerId>,
    /// Per partition, whether this server is its preferred owner among `live`.
    preferred: Vec<bool>,
    slots: Vec<Slot>,
    next_request: u64,
    /// The greatest `now` seen: time never goes back inside the machine.
    now: MonoUs,
    commands: VecDeque<Command>,
    events: VecDeque<Event>,
    /// Leases lost to a refused renew, since the start (a metric).
    lost: u64,
}

impl Ownership {
    /// A machine for server `me`, holding nothing, with an empty membership view.
    pub fn new(me: ServerId, config: OwnershipConfig) -> Result<Ownership, InvalidConfig> {
        config.validate()?;
        Ok(Ownership {
            me,
            config,
            live: Vec::new(),
            preferred: vec![false; usize::from(PARTITION_COUNT)],
            slots: vec![
                Slot::Idle {
                    retry_at: MonoUs::MIN
                };
                usize::from(PARTITION_COUNT)
            ],
            next_request: 1,
            now: MonoUs::MIN,
            commands: VecDeque::new(),
            events: VecDeque::new(),
            lost: 0,
        })
    }

    /// This server.
    pub fn me(&self) -> &ServerId {
        &self.me
    }

    /// The epoch to act with for `partition` at `now`, or `None` when this server must not
    /// act for it. Ask before every action.
    pub fn may_act(&self, partition: PartitionId, now: MonoUs) -> Option<Epoch> {
        match self.slots.get(partition.index()) {
            Some(Slot::Held {
                epoch, deadline, ..
            }) if now.max(self.now) < *deadline => Some(*epoch),
            _ => None,
        }
    }

    /// Partitions held (acted for or not: drains included), for metrics and status.
    pub fn held(&self) -> usize {
        self.slots
            .iter()
            .filter(|s| matches!(s, Slot::Held { .. } | Slot::Draining { .. }))
            .count()
    }

    /// Leases lost to a refused renew since the start.
    pub fn lost(&self) -> u64 {
        self.lost
    }

    /// The next lease command to carry out. Drain the commands and the events after every
    /// `handle` and `handle_timeout`: one call queues at most two per partition.
    pub fn poll_command(&mut self) -> Option<Command> {
        self.commands.pop_front()
    }

    /// The next notice for the server.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`handle_timeout`](Ownership::handle_timeout) is next due (`None`: only an input
    /// can change anything).
    pub fn poll_timeout(&self) -> Option<MonoUs> {
        let timeout = self.config.request_timeout;
        PartitionId::all()
            .zip(&self.slots)
            .filter_map(|(p, slot)| match *slot {
                Slot::Idle { retry_at } => self.preferred(p).then_some(retry_at),
                Slot::Acquiring { sent, .. } => Some(sent.plus(timeout)),
                Slot::Held {
                    deadline,
                    renew_at,
                    renewing,
                    announced,
                    ..
                } => {
                    let renew = match renewing {
                        Some((_, sent)) => sent.plus(timeout),
                        None => renew_at,
                    };
                    Some(if announced {
                        renew.min(deadline)
                    } else {
                        renew
                    })
                }
                Slot::Draining { deadline, .. } => Some(deadline),
            })
            .min()
    }

    /// Feeds one input at `now`.
    pub fn handle(&mut self, now: MonoUs, input: Input) {
        let now = self.advance(now);
        match input {
            Input::Membership(mut live) => {
                live.sort_unstable();
                live.dedup();
                live.truncate(MAX_SERVERS);
                self.live = live;
                self.preferred = PartitionId::all()
                    .map(|p| preferred_owner(p, &self.live) == Some(&self.me))
                    .collect();
                for p in PartitionId::all() {
                    if !self.preferred(p) {
                        self.drain(now, p);
                    }
                }
            }
            Input::Acquired {
                request,
                partition,
                epoch,
            } => self.on_acquired(now, request, partition, epoch),
            Input::AcquireRefused {
                request,
                partition,
                owner,
                epoch,
            } => {
                let ours = matches!(self.slot(partition),
                    Some(Slot::Acquiring { request: r, .. }) if r == request);
                if owner.as_ref() == Some(&self.me) {
                    // An earlier acquire was granted but its answer lost: adopt the lease.
                    self.adopt(now, partition, epoch);
                } else if ours {
                    self.set(
                        partition,
                        Slot::Idle {
                            retry_at: now.plus(self.config.retry_every),
                        },
                    );
                }
            }
            Input::Renewed { request, partition } => {
                if let Some(Slot::Held {
                    epoch,
                    deadline,
                    renewing: Some((r, sent)),
                    announced,
                    ..
                }) = self.slot(partition)
                {
                    if r == request {
                        let deadline = deadline.max(sent.plus(self.config.acting_window()));
                        self.set_held(now, partition, epoch, deadline, sent, announced);
                    }
                }
            }
            Input::RenewRefused { request, partition } => {
                if let Some(Slot::Held {
                    renewing: Some((r, _)),
                    announced,
                    ..
                }) = self.slot(partition)
                {
                    if r == request {
                        self.lost = self.lost.saturating_add(1);
                        if announced {
                            self.event(Event::Stop {
                                partition,
                                reason: StopReason::Lost,
                            });
                        }
                        self.set(partition, Slot::Idle { retry_at: now });
                    }
                }
            }
            Input::Failed { request, partition } => match self.slot(partition) {
                Some(Slot::Acquiring { request: r, .. }) if r == request => {
                    self.set(
                        partition,
                        Slot::Idle {
                            retry_at: now.plus(self.config.retry_every),
                        },
                    );
                }
                Some(Slot::Held {
                    epoch,
                    deadline,
                    renewing: Some((r, _)),
                    announced,
                    ..
                }) if r == request => {
                    self.set(
                        partition,
                        Slot::Held {
                            epoch,
                            deadline,
                            renew_at: now.plus(self.config.retry_every),
                            renewing: None,
                            announced,
                        },
                    );
                }
                _ => {}
            },
            Input::Stopped { partition } => {
                if let Some(Slot::Draining { epoch, .. }) = self.slot(partition) {
                    self.release(now, partition, epoch);
                }
            }
            Input::StateLost => {
                for p in PartitionId::all() {
                    if let Some(Slot::Held {
                        epoch, announced, ..
                    }) = self.slot(p)
                    {
                        if announced {
                            self.event(Event::Stop {
                                partition: p,
                                reason: StopReason::StateLost,
                            });
                        }
                        self.release(now, p, epoch);
                        // Acquired again at once (after the release: the commands go in
                        // order), under the next epoch.
                        self.set(p, Slot::Idle { retry_at: now });
                    }
                }
            }
        }
        self.step(now);
    }

    /// Handles whatever is due at `now`: deadlines, renews, retries, unanswered commands.
    pub fn handle_timeout(&mut self, now: MonoUs) {
        let now = self.advance(now);
        self.step(now);
    }

    fn advance(&mut self, now: MonoUs) -> MonoUs {
        self.now = self.now.max(now);
        self.now
    }

    fn slot(&self, p: PartitionId) -> Option<Slot> {
        self.slots.get(p.index()).copied()
    }

    fn set(&mut self, p: PartitionId, slot: Slot) {
        if let Some(s) = self.slots.get_mut(p.index()) {
            *s = slot;
        }
    }

    fn preferred(&self, p: PartitionId) -> bool {
        self.preferred.get(p.index()).copied().unwrap_or(false)
    }

    fn request(&mut self) -> RequestId {
        let r = RequestId(self.next_request);
        self.next_request = self.next_request.saturating_add(1);
        r
    }

    fn command(&mut self, c: Command) {
        debug_assert!(self.commands.len() < MAX_QUEUED, "commands not polled");
        self.commands.push_back(c);
    }

    fn event(&mut self, e: Event) {
        debug_assert!(self.events.len() < MAX_QUEUED, "events not polled");
        self.events.push_back(e);
    }

    /// Held at `epoch` with `deadline`, the last granted send at `sent`; announces acting when
    /// the deadline holds.
    fn set_held(
        &mut self,
        now: MonoUs,
        p: PartitionId,
        epoch: Epoch,
        deadline: MonoUs,
        sent: MonoUs,
        announced: bool,
    ) {
        debug_assert!(deadline <= sent.plus(self.config.acting_window()) || sent == MonoUs::MIN);
        let acting = now < deadline;
        if acting && !announced {
            self.event(Event::Acting {
                partition: p,
                epoch,
            });
        }
        self.set(
            p,
            Slot::Held {
                epoch,
                deadline,
                renew_at: sent.plus(self.config.renew_every),
                renewing: None,
                announced: announced || acting,
            },
        );
    }

    fn on_acquired(&mut self, now: MonoUs, request: RequestId, p: PartitionId, epoch: Epoch) {
        match self.slot(p) {
            Some(Slot::Acquiring { request: r, sent }) if r == request => {
                if self.preferred(p) {
                    let deadline = sent.plus(self.config.acting_window());
                    self.set_held(now, p, epoch, deadline, sent, false);
                } else {
                    // The view changed while asking: give it back unused.
                    self.release(now, p, epoch);
                }
            }
            // An answer to an acquire given up on: the lease is ours in the database.
            _ => self.adopt(now, p, epoch),
        }
    }

    /// A lease the database granted this server at `epoch` without a usable send instant:
    /// held but not acted for until a renew is granted; released if another is preferred.
    fn adopt(&mut self, now: MonoUs, p: PartitionId, epoch: Epoch) {
        // Held or draining already: the database keeps one lease per partition, so this
        // answer is an old one.
        if let Some(Slot::Idle { .. } | Slot::Acquiring { .. }) = self.slot(p) {
            if self.preferred(p) {
                self.set(
                    p,
                    Slot::Held {
                        epoch,
                        deadline: MonoUs::MIN,
                        renew_at: now,
                        renewing: None,
                        announced: false,
                    },
                );
            } else {
                self.release(now, p, epoch);
            }
        }
    }

    /// Starts draining `p` if it is held.
    fn drain(&mut self, now: MonoUs, p: PartitionId) {
        if let Some(Slot::Held {
            epoch,
            deadline,
            announced,
            ..
        }) = self.slot(p)
        {
            if announced && now < deadline {
                self.event(Event::Drain { partition: p });
                self.set(p, Slot::Draining { epoch, deadline });
            } else {
                if announced {
                    self.event(Event::Stop {
                        partition: p,
                        reason: StopReason::DeadlinePassed,
                    });
                }
                self.release(now, p, epoch);
            }
        }
    }

    fn release(&mut self, now: MonoUs, p: PartitionId, epoch: Epoch) {
        self.command(Command::Release {
            partition: p,
            epoch,
        });
        self.set(
            p,
            Slot::Idle {
                retry_at: now.plus(self.config.retry_every),
            },
        );
    }

    fn acquire(&mut self, now: MonoUs, p: PartitionId) {
        let request = self.request();
        self.command(Command::TryAcquire {
            request,
            partition: p,
            lease: self.config.lease,
        });
        self.set(p, Slot::Acquiring { request, sent: now });
    }

    /// Everything due at `now`, partition by partition.
    fn step(&mut self, now: MonoUs) {
        for p in PartitionId::all() {
            let Some(slot) = self.slot(p) else { continue };
            match slot {
                Slot::Idle { retry_at } => {
                    if self.preferred(p) && now >= retry_at {
                        self.acquire(now, p);
                    }
                }
                Slot::Acquiring { sent, .. } => {
                    // Unanswered: given up on, and asked again at once.
                    if now >= sent.plus(self.config.request_timeout) {
                        self.set(p, Slot::Idle { retry_at: now });
                        if self.preferred(p) {
                            self.acquire(now, p);
                        }
                    }
                }
                Slot::Held {
                    epoch,
                    deadline,
                    mut renew_at,
                    mut renewing,
                    mut announced,
                } => {
                    if announced && now >= deadline {
                        announced = false;
                        self.event(Event::Stop {
                            partition: p,
                            reason: StopReason::DeadlinePassed,
                        });
                    }
                    if let Some((_, sent)) = renewing {
                        if now >= sent.plus(self.config.request_timeout) {
                            renewing = None;
                            renew_at = now;
                        }
                    }
                    if renewing.is_none() && now >= renew_at {
                        let request = self.request();
                        self.command(Command::Renew {
                            request,
                            partition: p,
                            epoch,
                            lease: self.config.lease,
                        });
                        renewing = Some((request, now));
                    }
                    self.set(
                        p,
                        Slot::Held {
                            epoch,
                            deadline,
                            renew_at,
                            renewing,
                            announced,
                        },
                    );
                }
                Slot::Draining { epoch, deadline } => {
                    if now >= deadline {
                        self.release(now, p, epoch);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
