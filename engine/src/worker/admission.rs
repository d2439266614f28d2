//! What a worker agrees to run, and for whom: the checks between a message that asks for a
//! processor run and the run itself. Pure functions over what the message says and what the
//! worker has; no I/O.
//!
//! # From the server (`ScheduleJob`)
//!
//! A processor runs only if it is registered. The built-ins that act beyond the worker
//! (`shell`, `http`: [`DangerousBuiltin`]) are registered only when the operator allows them,
//! so a job naming a disabled one fails at once with [`ProcessorUnavailable::NotAllowed`],
//! which says how to enable it, as the instance's result.
//!
//! # From another worker (the listener: `StartTask`, `StartTasks`)
//!
//! Any holder of the app secret can open a connection to a worker's listener, and nothing on
//! it comes from the server: the instance header a TaskTracker sends is the `ScheduleJob` it
//! says the server gave it. So a ProcessorTracker runs a task only when the header is
//! consistent with a dispatch this worker is part of ([`check_peer_task`]):
//!
//! 1. the message fits the instance: `StartTask` only for a BROADCAST instance, `StartTasks`
//!    only for a MAP or MAP_REDUCE one;
//! 2. the processor is registered here with a kind that fits (a basic or broadcast processor
//!    for `StartTask`, a MAP/MAP_REDUCE one for `StartTasks`), so a processor the operator did
//!    not allow is refused to peers as it is to the server;
//! 3. the sender is the instance's TaskTracker: the `task_tracker_address` it names is the
//!    address it proved the secret under, and it is one of the instance's workers
//!    (`all_worker_addresses`: the server lists the TaskTracker first);
//! 4. this worker is one of the instance's workers (an empty list means the TaskTracker alone,
//!    as the TaskTracker reads it: only its own connection is accepted then);
//! 5. a connection carries one instance, as a TaskTracker opens one per instance (one per task
//!    attempt for BROADCAST): the first task message announces it, and a message for another
//!    instance closes the connection (which also bounds what one connection can hold); for
//!    MAP/MAP_REDUCE every later batch must carry the first one's header and TaskTracker, or
//!    its tasks fail ([`PeerTaskRefused::Changed`]).
//!
//! A refused task is not run; it fails with the refusal as its result, so a real TaskTracker
//! whose peer is misconfigured finishes the instance (FAILED, with the reason) instead of
//! waiting. These checks catch misrouted and inconsistent work and keep every disabled
//! processor disabled. They cannot tell a forged header from a real one: the server signs
//! nothing a peer could check, so a holder of the app secret who can reach the listener can
//! still run the processors this worker registered, with parameters of its choosing. That is
//! why the dangerous built-ins are opt-in, and why the listener should be reachable only by
//! the app's workers.

use ferrojob_transport::message::{ExecuteType, ScheduleJob};

use super::builtin::DangerousBuiltin;
use super::processor::Registered;

/// Why a worker has no processor to run under a name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProcessorUnavailable {
    /// A built-in that acts beyond the worker, not allowed by the operator.
    #[error(
        "processor {name:?} is disabled on worker {worker}: it runs what jobs name (commands, \
         URLs), so it is registered only when allowed; start the worker with \
         --allow-processor {name} (WorkerConfig::allow_processors) to enable it"
    )]
    NotAllowed {
        /// The processor name.
        name: String,
        /// The worker's address.
        worker: String,
    },
    /// No processor of that name.
    #[error("unknown processor {name:?} (this worker has: {known})")]
    Unknown {
        /// The processor name.
        name: String,
        /// The names this worker has, sorted, comma-separated.
        known: String,
    },
}

/// Why `name` is not among `registered` (the worker at `worker` has those names).
pub(crate) fn processor_unavailable<'a>(
    registered: impl Iterator<Item = &'a str>,
    name: &str,
    worker: &str,
) -> ProcessorUnavailable {
    if DangerousBuiltin::from_name(name).is_some() {
        return ProcessorUnavailable::NotAllowed {
            name: name.to_string(),
            worker: worker.to_string(),
        };
    }
    let mut known: Vec<&str> = registered.collect();
    known.sort_unstable();
    ProcessorUnavailable::Unknown {
        name: name.to_string(),
        known: known.join(", "),
    }
}

/// The peer message a task arrived in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PeerMessage {
    /// One BROADCAST task.
    StartTask,
    /// A batch of MAP/MAP_REDUCE tasks.
    StartTasks,
}

impl PeerMessage {
    fn name(self) -> &'static str {
        match self {
            PeerMessage::StartTask => "StartTask",
            PeerMessage::StartTasks => "StartTasks",
        }
    }

    fn fits(self, execute: &ExecuteType) -> bool {
        match self {
            PeerMessage::StartTask => matches!(execute, ExecuteType::Broadcast),
            PeerMessage::StartTasks => {
                matches!(execute, ExecuteType::Map | ExecuteType::MapReduce)
            }
        }
    }
}

/// Why a ProcessorTracker refuses a peer's task (the rules are in the module doc).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub(crate) enum PeerTaskRefused {
    /// Rule 1: the message does not fit the instance's execute type.
    #[error("refused: a {message} cannot carry a {execute:?} instance")]
    ExecuteType {
        /// `StartTask` or `StartTasks`.
        message: &'static str,
        /// The instance's execute type.
        execute: ExecuteType,
    },
    /// Rule 2: no such processor here.
    #[error("refused: {0}")]
    Processor(ProcessorUnavailable),
    /// Rule 2: the processor's kind does not fit the message.
    #[error("refused: processor {name:?} on {worker} cannot run the tasks of a {message}")]
    ProcessorKind {
        /// The processor name.
        name: String,
        /// This worker.
        worker: String,
        /// `StartTask` or `StartTasks`.
        message: &'static str,
    },
    /// Rule 3: the sender is not the TaskTracker the message names.
    #[error("refused: the TaskTracker named {named} is not the sender {sender}")]
    NotTheTracker {
        /// The message's `task_tracker_address`.
        named: String,
        /// The address the sender authenticated with.
        sender: String,
    },
    /// Rule 3: the TaskTracker is not one of the instance's workers.
    #[error("refused: the TaskTracker {tracker} is not one of instance {instance}'s workers")]
    TrackerNotListed {
        /// The TaskTracker.
        tracker: String,
        /// The instance.
        instance: u64,
    },
    /// Rule 4: this worker is not one of the instance's workers.
    #[error("refused: worker {worker} is not one of instance {instance}'s workers")]
    NotListed {
        /// This worker.
        worker: String,
        /// The instance.
        instance: u64,
    },
    /// Rule 5: a later batch of an announced instance carries another header.
    #[error("refused: instance {instance}'s header or TaskTracker changed since its first batch")]
    Changed {
        /// The instance.
        instance: u64,
    },
}

/// A peer's task, as [`check_peer_task`] sees it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PeerTask<'a> {
    /// This worker's address.
    pub own_address: &'a str,
    /// The address the sending worker proved the app secret under.
    pub sender: &'a str,
    /// The message the task came in.
    pub message: PeerMessage,
    /// The instance header.
    pub instance: &'a ScheduleJob,
    /// The message's `task_tracker_address`.
    pub task_tracker_address: &'a str,
}

/// Checks rules 1 to 4 of the module doc; `registered` is what this worker has under the
/// instance's processor name, `registered_names` every name it has.
pub(crate) fn check_peer_task<'a>(
    task: PeerTask<'_>,
    registered: Option<&Registered>,
    registered_names: impl Iterator<Item = &'a str>,
) -> Result<(), PeerTaskRefused> {
    let job = task.instance;
    if !task.message.fits(&job.execute_type) {
        return Err(PeerTaskRefused::ExecuteType {
            message: task.message.name(),
            execute: job.execute_type.clone(),
        });
    }
    let kind_fits = match registered {
        None => {
            return Err(PeerTaskRefused::Processor(processor_unavailable(
                registered_names,
                &job.processor_info,
                task.own_address,
            )))
        }
        Some(Registered::Basic(_) | Registered::Broadcast(_)) => {
            task.message == PeerMessage::StartTask
        }
        Some(Registered::Map { .. }) => task.message == PeerMessage::StartTasks,
    };
    if !kind_fits {
        return Err(PeerTaskRefused::ProcessorKind {
            name: job.processor_info.clone(),
            worker: task.own_address.to_string(),
            message: task.message.name(),
        });
    }
    if task.task_tracker_address != task.sender {
        return Err(PeerTaskRefused::NotTheTracker {
            named: task.task_tracker_address.to_string(),
            sender: task.sender.to_string(),
        });
    }
    let listed = |address: &str| {
        if job.all_worker_addresses.is_empty() {
            // The TaskTracker alone (see the module doc, rule 4).
            address == task.own_address && task.sender == task.own_address
        } else {
            job.all_worker_addresses.iter().any(|a| a == address)
        }
    };
    if !listed(task.sender) {
        return Err(PeerTaskRefused::TrackerNotListed {
            tracker: task.sender.to_string(),
            instance: job.instance_id,
        });
    }
    if !listed(task.own_address) {
        return Err(PeerTaskRefused::NotListed {
            worker: task.own_address.to_string(),
            instance: job.instance_id,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::worker::builtin::{NoopProcessor, SumMrProcessor};
    use crate::worker::processor::WithReduce;

    const OWN: &str = "10.0.0.1:7000";
    const TRACKER: &str = "10.0.0.2:7000";

    fn job(execute: ExecuteType, processor: &str, workers: &[&str]) -> ScheduleJob {
        let mut j = crate::worker::core::tests::job(7, 3);
        j.processor_info = processor.into();
        j.execute_type = execute;
        j.all_worker_addresses = workers.iter().map(|w| (*w).to_string()).collect();
        j
    }

    fn basic() -> Registered {
        Registered::Basic(Arc::new(NoopProcessor))
    }

    fn map() -> Registered {
        Registered::Map {
            processor: Arc::new(WithReduce(SumMrProcessor)),
            has_reduce: true,
        }
    }

    /// Runs the check for a task sent by `sender` naming `tracker`, against a worker that has
    /// `registered` under the job's processor name (and `noop`, `sum_mr` by name).
    fn check(
        message: PeerMessage,
        job: &ScheduleJob,
        sender: &str,
        tracker: &str,
        registered: Option<&Registered>,
    ) -> Result<(), PeerTaskRefused> {
        let task = PeerTask {
            own_address: OWN,
            sender,
            message,
            instance: job,
            task_tracker_address: tracker,
        };
        check_peer_task(task, registered, ["noop", "sum_mr"].into_iter())
    }

    #[test]
    fn a_consistent_dispatch_is_accepted() {
        let b = job(ExecuteType::Broadcast, "noop", &[TRACKER, OWN]);
        assert_eq!(
            check(PeerMessage::StartTask, &b, TRACKER, TRACKER, Some(&basic())),
            Ok(())
        );
        let m = job(ExecuteType::MapReduce, "sum_mr", &[TRACKER, OWN]);
        assert_eq!(
            check(PeerMessage::StartTasks, &m, TRACKER, TRACKER, Some(&map())),
            Ok(())
        );
        // A TaskTracker sends its own MAP tasks through its own listener.
        let own = job(ExecuteType::Map, "sum_mr", &[OWN, TRACKER]);
        assert_eq!(
            check(PeerMessage::StartTasks, &own, OWN, OWN, Some(&map())),
            Ok(())
        );
        let alone = job(ExecuteType::Map, "sum_mr", &[]);
        assert_eq!(
            check(PeerMessage::StartTasks, &alone, OWN, OWN, Some(&map())),
            Ok(())
        );
    }

    #[test]
    fn a_processor_not_registered_here_is_refused_and_a_disabled_one_says_how_to_enable_it() {
        let b = job(ExecuteType::Broadcast, "shell", &[TRACKER, OWN]);
        let err = check(PeerMessage::StartTask, &b, TRACKER, TRACKER, None).unwrap_err();
        assert!(
            matches!(
                &err,
                PeerTaskRefused::Processor(ProcessorUnavailable::NotAllowed { name, .. }) if name == "shell"
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains("--allow-processor shell"), "{err}");
        let b = job(ExecuteType::Broadcast, "mine", &[TRACKER, OWN]);
        let err = check(PeerMessage::StartTask, &b, TRACKER, TRACKER, None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "refused: unknown processor \"mine\" (this worker has: noop, sum_mr)"
        );
    }

    #[test]
    fn the_message_must_fit_the_execute_type_and_the_processor() {
        for execute in [ExecuteType::Standalone, ExecuteType::Map] {
            let j = job(execute, "noop", &[TRACKER, OWN]);
            assert!(matches!(
                check(PeerMessage::StartTask, &j, TRACKER, TRACKER, Some(&basic())),
                Err(PeerTaskRefused::ExecuteType { .. })
            ));
        }
        for execute in [ExecuteType::Standalone, ExecuteType::Broadcast] {
            let j = job(execute, "sum_mr", &[TRACKER, OWN]);
            assert!(matches!(
                check(PeerMessage::StartTasks, &j, TRACKER, TRACKER, Some(&map())),
                Err(PeerTaskRefused::ExecuteType { .. })
            ));
        }
        let b = job(ExecuteType::Broadcast, "sum_mr", &[TRACKER, OWN]);
        assert!(matches!(
            check(PeerMessage::StartTask, &b, TRACKER, TRACKER, Some(&map())),
            Err(PeerTaskRefused::ProcessorKind { .. })
        ));
        let m = job(ExecuteType::Map, "noop", &[TRACKER, OWN]);
        assert!(matches!(
            check(
                PeerMessage::StartTasks,
                &m,
                TRACKER,
                TRACKER,
                Some(&basic())
            ),
            Err(PeerTaskRefused::ProcessorKind { .. })
        ));
    }

    #[test]
    fn only_the_instances_tracker_may_send_and_only_to_its_workers() {
        let b = job(ExecuteType::Broadcast, "noop", &[TRACKER, OWN]);
        // The sender names another worker as the TaskTracker.
        assert!(matches!(
            check(
                PeerMessage::StartTask,
                &b,
                "10.0.0.9:7000",
                TRACKER,
                Some(&basic())
            ),
            Err(PeerTaskRefused::NotTheTracker { .. })
        ));
        // The sender is consistent but not one of the instance's workers.
        assert!(matches!(
            check(
                PeerMessage::StartTask,
                &b,
                "10.0.0.9:7000",
                "10.0.0.9:7000",
                Some(&basic())
            ),
            Err(PeerTaskRefused::TrackerNotListed { .. })
        ));
        // This worker is not one of the instance's workers.
        let elsewhere = job(ExecuteType::Broadcast, "noop", &[TRACKER, "10.0.0.3:7000"]);
        assert!(matches!(
            check(
                PeerMessage::StartTask,
                &elsewhere,
                TRACKER,
                TRACKER,
                Some(&basic())
            ),
            Err(PeerTaskRefused::NotListed { .. })
        ));
        // An empty list is the TaskTracker alone: no peer may send.
        let alone = job(ExecuteType::MapReduce, "sum_mr", &[]);
        assert!(matches!(
            check(
                PeerMessage::StartTasks,
                &alone,
                TRACKER,
                TRACKER,
                Some(&map())
            ),
            Err(PeerTaskRefused::TrackerNotListed { .. })
        ));
    }
}
