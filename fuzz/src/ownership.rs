//! Fuzz target `ownership`: arbitrary input sequences against one cluster ownership machine.
//!
//! The fuzzer plays the database and the rest of the server: it answers the machine's lease
//! commands in any order (grants at any epoch, refusals, failures, or no answer at all),
//! forges grants it never asked for, changes the membership view, confirms drains and moves
//! time. Invariants: no panic; the queues stay bounded; and the deadline
//! rule seen from outside — whenever the machine may act for a partition at an epoch, some
//! answer granted that epoch to a command the machine sent less than `lease - safety_margin`
//! ago.

use std::collections::HashMap;
use std::time::Duration;

use arbitrary::{Arbitrary, Unstructured};
use ferrojob::cluster::{
    Command, Epoch, Input, MonoUs, Ownership, OwnershipConfig, PartitionId, RequestId, ServerId,
    PARTITION_COUNT,
};

#[derive(Debug, Arbitrary)]
enum Op {
    /// Advance time by `tens` × 10 ms and handle timeouts.
    Advance { tens: u8 },
    /// A view of `me` and servers `s0..s7` picked by the bits of `mask`.
    View { me: bool, mask: u8 },
    /// Answer the `which`-th outstanding command.
    Answer { which: u8, answer: Answer },
    /// Grant every outstanding command (acquires at `epoch`).
    GrantAll { epoch: u8 },
    /// Confirm a drain of partition `partition`.
    Stopped { partition: u8 },
    /// An answer to a request the machine never sent.
    Forged {
        request: u64,
        partition: u8,
        epoch: u8,
    },
}

#[derive(Debug, Arbitrary)]
enum Answer {
    /// Grant (acquire at `epoch`, or renew).
    Grant {
        epoch: u8,
    },
    /// Refuse (held by this server or another, at `epoch`).
    Refuse {
        mine: bool,
        epoch: u8,
    },
    Fail,
    /// Drop the command without an answer.
    Drop,
}

/// A command sent, kept until answered or dropped.
struct Sent {
    command: Command,
    at: MonoUs,
}

/// Partition `n` modulo the partition count.
fn part(n: u8) -> Option<PartitionId> {
    PartitionId::new(u16::from(n) % PARTITION_COUNT)
}

/// Runs one input.
pub fn run(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let config = OwnershipConfig::default();
    let window = config.lease - config.safety_margin;
    let Ok(me) = ServerId::new("me") else {
        return;
    };
    let others: Vec<ServerId> = (0..8)
        .filter_map(|i| ServerId::new(&format!("s{i}")).ok())
        .collect();
    let Ok(mut m) = Ownership::new(me.clone(), config) else {
        return;
    };
    let mut now = MonoUs(0);
    let mut outstanding: Vec<Sent> = Vec::new();
    // Per partition and epoch: the latest send instant of a command granted at that epoch.
    let mut granted: HashMap<(PartitionId, Epoch), MonoUs> = HashMap::new();
    let mut steps = 0;
    while let Ok(op) = Op::arbitrary(&mut u) {
        steps += 1;
        if steps > 2_000 {
            break;
        }
        match op {
            Op::Advance { tens } => {
                now = now.plus(Duration::from_millis(10 * u64::from(tens)));
                m.handle_timeout(now);
            }
            Op::View { me: with_me, mask } => {
                let mut view: Vec<ServerId> = others
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| mask & (1 << i) != 0)
                    .map(|(_, s)| s.clone())
                    .collect();
                if with_me {
                    view.push(me.clone());
                }
                m.handle(now, Input::Membership(view));
            }
            Op::GrantAll { epoch } => {
                let mut later = Vec::new();
                for sent in std::mem::take(&mut outstanding) {
                    let answer = Answer::Grant { epoch };
                    if let Some(input) = answer_to(sent, answer, &me, &others, &mut granted) {
                        m.handle(now, input);
                        poll(&mut m, now, &mut later);
                    }
                }
                outstanding.extend(later);
            }
            Op::Answer { which, answer } => {
                if outstanding.is_empty() {
                    continue;
                }
                let sent = outstanding.remove(usize::from(which) % outstanding.len());
                if let Some(input) = answer_to(sent, answer, &me, &others, &mut granted) {
                    m.handle(now, input);
                }
            }
            Op::Stopped { partition } => {
                if let Some(partition) = part(partition) {
                    m.handle(now, Input::Stopped { partition });
                }
            }
            Op::Forged {
                request,
                partition,
                epoch,
            } => {
                // A grant the machine did not ask for (or gave up on): only a renew may make
                // it act, so nothing is recorded as granted here.
                if let Some(partition) = part(partition) {
                    m.handle(
                        now,
                        Input::Acquired {
                            request: RequestId(request | (1 << 63)),
                            partition,
                            epoch: Epoch(u64::from(epoch)),
                        },
                    );
                }
            }
        }
        let queued = poll(&mut m, now, &mut outstanding);
        assert!(
            queued <= 4 * usize::from(PARTITION_COUNT),
            "{queued} queued in one call"
        );
        // Commands never answered are forgotten, as a lost message is.
        if outstanding.len() > 4 * usize::from(PARTITION_COUNT) {
            outstanding.drain(..usize::from(PARTITION_COUNT));
        }
        for p in PartitionId::all() {
            if let Some(epoch) = m.may_act(p, now) {
                let at = granted.get(&(p, epoch));
                assert!(
                    at.is_some_and(|at| now < at.plus(window)),
                    "acts for {p} at {epoch} at {now:?}; last grant sent at {at:?}"
                );
            }
        }
    }
}

/// The input answering `sent` as `answer` says; records grants.
fn answer_to(
    sent: Sent,
    answer: Answer,
    me: &ServerId,
    others: &[ServerId],
    granted: &mut HashMap<(PartitionId, Epoch), MonoUs>,
) -> Option<Input> {
    match (sent.command, answer) {
        (_, Answer::Drop) | (Command::Release { .. }, _) => None,
        (
            Command::TryAcquire {
                request, partition, ..
            },
            Answer::Grant { epoch },
        ) => {
            let epoch = Epoch(u64::from(epoch));
            let at = granted.entry((partition, epoch)).or_insert(sent.at);
            *at = (*at).max(sent.at);
            Some(Input::Acquired {
                request,
                partition,
                epoch,
            })
        }
        (
            Command::Renew {
                request,
                partition,
                epoch,
                ..
            },
            Answer::Grant { .. },
        ) => {
            let at = granted.entry((partition, epoch)).or_insert(sent.at);
            *at = (*at).max(sent.at);
            Some(Input::Renewed { request, partition })
        }
        (
            Command::TryAcquire {
                request, partition, ..
            },
            Answer::Refuse { mine, epoch },
        ) => Some(Input::AcquireRefused {
            request,
            partition,
            owner: Some(if mine {
                me.clone()
            } else {
                others.first().cloned().unwrap_or_else(|| me.clone())
            }),
            epoch: Epoch(u64::from(epoch)),
        }),
        (
            Command::Renew {
                request, partition, ..
            },
            Answer::Refuse { .. },
        ) => Some(Input::RenewRefused { request, partition }),
        (
            Command::TryAcquire {
                request, partition, ..
            }
            | Command::Renew {
                request, partition, ..
            },
            Answer::Fail,
        ) => Some(Input::Failed { request, partition }),
    }
}

/// Takes every queued command (into `outstanding`, sent at `now`) and event; answers how
/// many there were.
fn poll(m: &mut Ownership, now: MonoUs, outstanding: &mut Vec<Sent>) -> usize {
    let mut queued = 0;
    while let Some(command) = m.poll_command() {
        queued += 1;
        outstanding.push(Sent { command, at: now });
    }
    while m.poll_event().is_some() {
        queued += 1;
    }
    queued
}
