//! A property test of the core against a model: random sequences of dispatches, stops, run
//! results, timer advances, connection drops, queries and peer tasks; after every step the
//! concurrency limits hold, and every report read is checked (seqs strictly increase from the
//! dispatch's base, nothing follows a final report, a stop ends in STOPPED); at the end every
//! accepted dispatch has exactly one final report and every slot is back.

use std::collections::HashMap;

use ferrojob_transport::message::{ExecuteType, InstanceStatus, Message, TimeExpressionType};
use proptest::prelude::*;

use super::tests::{config, job, Harness, OWN};
use super::*;

#[derive(Debug, Clone)]
enum Op {
    Schedule {
        instance: u64,
        job: u64,
        retries: u32,
        timeout_ms: u64,
        broadcast: bool,
        fixed: bool,
    },
    Stop(u64),
    Finish {
        pick: usize,
        success: bool,
    },
    Advance(i64),
    Drain(usize),
    Lose,
    Connect,
    Query(u64),
    Peer {
        job: u64,
    },
    PeerDone {
        pick: usize,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0u64..6, 0u64..3, 0u32..3, prop_oneof![Just(0u64), 1u64..5000], any::<bool>(), any::<bool>())
            .prop_map(|(instance, job, retries, timeout_ms, broadcast, fixed)| Op::Schedule {
                instance, job, retries, timeout_ms, broadcast, fixed
            }),
        1 => (0u64..6).prop_map(Op::Stop),
        5 => (any::<usize>(), any::<bool>()).prop_map(|(pick, success)| Op::Finish { pick, success }),
        2 => (1i64..40_000).prop_map(Op::Advance),
        2 => (0usize..8).prop_map(Op::Drain),
        1 => Just(Op::Lose),
        1 => Just(Op::Connect),
        1 => (0u64..6).prop_map(Op::Query),
        1 => (0u64..3).prop_map(|job| Op::Peer { job }),
        1 => any::<usize>().prop_map(|pick| Op::PeerDone { pick }),
    ]
}

/// The concurrency of job `j` in the property test.
fn concurrency(j: u64) -> u32 {
    u32::try_from(j).unwrap() + 1
}

/// What the model knows of one dispatch of an instance.
#[derive(Debug)]
struct Dispatch {
    base: u64,
    last_seq: u64,
    finals: u32,
    stop_expected: bool,
}

#[derive(Default)]
struct Model {
    /// Per instance: its dispatches, latest last.
    dispatches: HashMap<u64, Vec<Dispatch>>,
    next_base: HashMap<u64, u64>,
    /// Live runs: (job, holds a slot).
    runs: Vec<(RunId, u64, bool)>,
    peers: Vec<(u64, u64, bool)>,
    next_ticket: u64,
}

impl Model {
    fn observe(&mut self, h: &mut Harness, max: usize) {
        for _ in 0..max {
            let Some(t) = h.core.poll_transmit() else {
                return;
            };
            if let Transmit::Send(Message::ReportInstanceStatus(r)) = t {
                let ds = self
                    .dispatches
                    .get_mut(&r.instance_id)
                    .expect("a report of an unknown instance");
                let d = ds
                    .iter_mut()
                    .rev()
                    .find(|d| r.report_seq > d.base)
                    .expect("a report below every base");
                assert!(
                    r.report_seq > d.last_seq,
                    "seq not increasing: {r:?} after {d:?}"
                );
                assert_eq!(d.finals, 0, "a report after the final one: {r:?}");
                d.last_seq = r.report_seq;
                if r.status.is_final() {
                    d.finals += 1;
                    if d.stop_expected {
                        assert_eq!(r.status, InstanceStatus::Stopped, "{r:?}");
                    }
                }
            }
        }
    }

    fn absorb_effects(&mut self, h: &mut Harness) {
        for e in h.take_effects() {
            match e {
                Effect::StartRun(run) => {
                    let slot = matches!(
                        run.kind,
                        RunKind::Standalone { .. } | RunKind::BroadcastTask { local: true, .. }
                    );
                    self.runs.push((run.id, run.job.job_id, slot));
                }
                Effect::PeerTask { ticket, granted } => {
                    if let Some(p) = self.peers.iter_mut().find(|p| p.0 == ticket) {
                        p.2 = granted;
                    }
                    if !granted {
                        self.peers.retain(|p| p.0 != ticket);
                    }
                }
                _ => {}
            }
        }
        for j in 0..3 {
            let held = self.runs.iter().filter(|r| r.1 == j && r.2).count()
                + self.peers.iter().filter(|p| p.1 == j && p.2).count();
            assert!(
                held <= concurrency(j) as usize,
                "job {j}: {held} runs at once"
            );
        }
    }
}

fn run_model(ops: Vec<Op>) {
    let mut h = Harness::new(config());
    let mut m = Model::default();
    for op in ops {
        match op {
            Op::Schedule {
                instance,
                job: j,
                retries,
                timeout_ms,
                broadcast,
                fixed,
            } => {
                let base = *m
                    .next_base
                    .entry(instance)
                    .and_modify(|b| *b += 1000)
                    .or_insert(0);
                let mut sj = job(instance, j);
                sj.report_seq_base = base;
                sj.concurrency = concurrency(j);
                sj.task_retry_num = retries;
                sj.instance_timeout_ms = timeout_ms;
                if fixed {
                    sj.time_expression_type = TimeExpressionType::FixedDelay;
                }
                let kind = if broadcast {
                    sj.execute_type = ExecuteType::Broadcast;
                    sj.all_worker_addresses = vec![OWN.into(), "10.0.0.2:7000".into()];
                    ProcessorKind::Broadcast
                } else {
                    ProcessorKind::Basic
                };
                let was_running = h.core.instances.contains_key(&instance);
                if was_running {
                    // Bases only grow here: a later attempt supersedes the running one, which
                    // ends STOPPED.
                    if let Some(d) = m.dispatches.get_mut(&instance).and_then(|d| d.last_mut()) {
                        d.stop_expected = true;
                    }
                }
                h.schedule(sj, kind);
                if h.core.instances.contains_key(&instance) {
                    m.dispatches.entry(instance).or_default().push(Dispatch {
                        base,
                        last_seq: base,
                        finals: 0,
                        stop_expected: false,
                    });
                }
            }
            Op::Stop(instance) => {
                if h.core.instances.contains_key(&instance) {
                    if let Some(d) = m.dispatches.get_mut(&instance).and_then(|d| d.last_mut()) {
                        d.stop_expected = true;
                    }
                }
                h.input(Input::StopInstance {
                    instance_id: instance,
                    epoch: 0,
                });
            }
            Op::Finish { pick, success } => {
                if !m.runs.is_empty() {
                    let (run, _, _) = m.runs.remove(pick % m.runs.len());
                    h.finish(
                        run,
                        ProcessResult {
                            success,
                            message: String::new(),
                        },
                    );
                }
            }
            Op::Advance(ms) => h.advance(ms),
            Op::Drain(n) => m.observe(&mut h, n),
            Op::Lose => h.input(Input::ConnectionLost {
                retry: Retry::Backoff,
            }),
            Op::Connect => {
                if !h.core.is_connected() {
                    h.input(Input::Connected);
                }
            }
            Op::Query(instance) => h.input(Input::QueryInstanceStatus {
                correlation: instance,
                instance_id: instance,
            }),
            Op::Peer { job: j } => {
                m.next_ticket += 1;
                m.peers.push((m.next_ticket, j, false));
                h.input(Input::PeerTask {
                    ticket: m.next_ticket,
                    job_id: j,
                    concurrency: concurrency(j),
                });
            }
            Op::PeerDone { pick } => {
                if !m.peers.is_empty() {
                    let (ticket, _, _) = m.peers.remove(pick % m.peers.len());
                    h.input(Input::PeerTaskDone { ticket });
                }
            }
        }
        m.absorb_effects(&mut h);
    }
    // Shut down, let every run unwind, and read everything.
    h.input(Input::Shutdown);
    m.absorb_effects(&mut h);
    for (run, _, _) in std::mem::take(&mut m.runs) {
        h.finish(run, ProcessResult::fail("cancelled"));
    }
    for (ticket, _, _) in std::mem::take(&mut m.peers) {
        h.input(Input::PeerTaskDone { ticket });
    }
    m.absorb_effects(&mut h);
    m.observe(&mut h, usize::MAX);
    assert_eq!(h.core.running(), 0);
    assert!(h.core.runs.is_empty());
    assert_eq!(h.core.slots.jobs(), 0, "every slot given back");
    for (instance, ds) in &m.dispatches {
        for d in ds {
            assert_eq!(d.finals, 1, "instance {instance}: {d:?}");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn reports_slots_and_finals_hold_against_the_model(ops in proptest::collection::vec(op(), 1..120)) {
        run_model(ops);
    }
}
