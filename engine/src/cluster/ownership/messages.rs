//! The ownership machine's inputs and outputs: closed sets, so that every caller handles
//! every case.

use std::time::Duration;

use crate::cluster::{Epoch, PartitionId, ServerId};

/// Identifies a command, so that its answer can be matched to it. Unique per machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RequestId(pub u64);

/// What the machine is told.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    /// The live servers as the database lists them now (this server included while its own
    /// heartbeat is current); order and duplicates do not matter, at most
    /// [`MAX_SERVERS`](crate::cluster::MAX_SERVERS) are kept. A view without this server drains every partition it holds: the others
    /// see it as gone and will take its partitions once the leases expire.
    Membership(Vec<ServerId>),
    /// [`Command::TryAcquire`] granted the lease at `epoch`.
    Acquired {
        /// The command answered.
        request: RequestId,
        /// Its partition.
        partition: PartitionId,
        /// The epoch the database granted.
        epoch: Epoch,
    },
    /// [`Command::TryAcquire`] was refused: `owner` holds an unexpired lease at `epoch`.
    AcquireRefused {
        /// The command answered.
        request: RequestId,
        /// Its partition.
        partition: PartitionId,
        /// The holder as the database last showed it: this server too, after an answer was
        /// lost; `None` when it was released meanwhile.
        owner: Option<ServerId>,
        /// The holder's epoch.
        epoch: Epoch,
    },
    /// [`Command::Renew`] extended the lease.
    Renewed {
        /// The command answered.
        request: RequestId,
        /// Its partition.
        partition: PartitionId,
    },
    /// [`Command::Renew`] was refused: the lease expired, or is another owner's or epoch's.
    RenewRefused {
        /// The command answered.
        request: RequestId,
        /// Its partition.
        partition: PartitionId,
    },
    /// The command could not be carried out (the database failed or did not answer).
    Failed {
        /// The command.
        request: RequestId,
        /// Its partition.
        partition: PartitionId,
    },
    /// The server stopped acting for a partition it was told to [`Event::Drain`].
    Stopped {
        /// The partition.
        partition: PartitionId,
    },
    /// The server's state of the partitions it holds may be ahead of the database (its
    /// writes' session failed mid-transaction): every held partition is stopped
    /// ([`StopReason::StateLost`]) and released, then acquired again under a new epoch, so
    /// that the server loads it afresh. Partitions draining or being acquired are not acted
    /// for, and are left as they are.
    StateLost,
}

/// A lease command for the database (`server::pg::lease`), to be answered with an [`Input`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[must_use]
pub enum Command {
    /// Acquire the partition's lease if it is free or expired; answer
    /// [`Input::Acquired`], [`Input::AcquireRefused`] or [`Input::Failed`].
    TryAcquire {
        /// To put in the answer.
        request: RequestId,
        /// The partition.
        partition: PartitionId,
        /// The lease to ask for.
        lease: Duration,
    },
    /// Extend the lease held at `epoch`; answer [`Input::Renewed`], [`Input::RenewRefused`] or
    /// [`Input::Failed`].
    Renew {
        /// To put in the answer.
        request: RequestId,
        /// The partition.
        partition: PartitionId,
        /// The epoch held.
        epoch: Epoch,
        /// The lease to ask for.
        lease: Duration,
    },
    /// Give the lease held at `epoch` up; no answer is needed.
    Release {
        /// The partition.
        partition: PartitionId,
        /// The epoch held.
        epoch: Epoch,
    },
}

impl Command {
    /// The answer for this command when it could not be carried out (the database failed
    /// or did not answer): [`Input::Failed`], or none for a release.
    pub fn failed(&self) -> Option<Input> {
        match *self {
            Command::TryAcquire {
                request, partition, ..
            }
            | Command::Renew {
                request, partition, ..
            } => Some(Input::Failed { request, partition }),
            Command::Release { .. } => None,
        }
    }
}

/// Why the server must stop acting for a partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// The local deadline passed without a granted renew.
    DeadlinePassed,
    /// The database refused a renew: the lease is gone.
    Lost,
    /// The server's state of the partition may be stale ([`Input::StateLost`]).
    StateLost,
}

/// A notice for the rest of the server.
#[derive(Clone, Debug, PartialEq, Eq)]
#[must_use]
pub enum Event {
    /// The server may act for `partition`, stamping `epoch` on its writes and messages,
    /// while [`Ownership::may_act`](super::Ownership::may_act) says so.
    Acting {
        /// The partition.
        partition: PartitionId,
        /// Its epoch.
        epoch: Epoch,
    },
    /// Stop acting for `partition`; no answer is needed.
    Stop {
        /// The partition.
        partition: PartitionId,
        /// Why.
        reason: StopReason,
    },
    /// Another server should own `partition`: stop acting for it, then answer
    /// [`Input::Stopped`].
    Drain {
        /// The partition.
        partition: PartitionId,
    },
}
