//! The ownership machine, one scenario at a time (the default timings: lease 10 s, margin
//! 2 s, renew every 3 s, retry after 1 s, requests given up after 2 s).

use super::*;

fn sid(s: &str) -> ServerId {
    ServerId::new(s).unwrap()
}

fn ms(x: i64) -> MonoUs {
    MonoUs(x * 1000)
}

fn p(n: u16) -> PartitionId {
    PartitionId::new(n).unwrap()
}

fn machine() -> Ownership {
    Ownership::new(sid("me"), OwnershipConfig::default()).unwrap()
}

fn commands(m: &mut Ownership) -> Vec<Command> {
    std::iter::from_fn(|| m.poll_command()).collect()
}

fn events(m: &mut Ownership) -> Vec<Event> {
    std::iter::from_fn(|| m.poll_event()).collect()
}

/// The acquire sent for `part` among `cmds`.
fn acquire_of(cmds: &[Command], part: PartitionId) -> RequestId {
    cmds.iter()
        .find_map(|c| match c {
            Command::TryAcquire {
                request, partition, ..
            } if *partition == part => Some(*request),
            _ => None,
        })
        .unwrap()
}

fn renew_of(cmds: &[Command], part: PartitionId) -> RequestId {
    cmds.iter()
        .find_map(|c| match c {
            Command::Renew {
                request, partition, ..
            } if *partition == part => Some(*request),
            _ => None,
        })
        .unwrap()
}

/// A machine alone in the cluster that acquired partition 0 at epoch 7, sent at 0 ms and
/// granted at `granted_ms`.
fn holding(granted_ms: i64) -> Ownership {
    let mut m = machine();
    m.handle(ms(0), Input::Membership(vec![sid("me")]));
    let cmds = commands(&mut m);
    assert_eq!(cmds.len(), usize::from(PARTITION_COUNT));
    m.handle(
        ms(granted_ms),
        Input::Acquired {
            request: acquire_of(&cmds, p(0)),
            partition: p(0),
            epoch: Epoch(7),
        },
    );
    m
}

#[test]
fn timings_are_validated() {
    let ok = OwnershipConfig::default();
    assert_eq!(ok.validate(), Ok(()));
    let bad = [
        OwnershipConfig {
            safety_margin: ok.lease,
            ..ok
        },
        OwnershipConfig {
            renew_every: Duration::from_secs(8),
            ..ok
        },
        OwnershipConfig {
            lease: Duration::ZERO,
            ..ok
        },
        OwnershipConfig {
            request_timeout: Duration::ZERO,
            ..ok
        },
    ];
    for c in bad {
        assert!(Ownership::new(sid("me"), c).is_err(), "{c:?}");
    }
}

#[test]
fn acquires_only_preferred_partitions() {
    let mut m = machine();
    m.handle_timeout(ms(0));
    assert!(commands(&mut m).is_empty(), "no view, nothing to acquire");
    let live = vec![sid("me"), sid("other")];
    m.handle(ms(0), Input::Membership(live.clone()));
    let cmds = commands(&mut m);
    let mine: Vec<PartitionId> = PartitionId::all()
        .filter(|&q| preferred_owner(q, &live) == Some(&sid("me")))
        .collect();
    assert!(!mine.is_empty() && mine.len() < usize::from(PARTITION_COUNT));
    let asked: Vec<PartitionId> = cmds
        .iter()
        .map(|c| match c {
            Command::TryAcquire { partition, .. } => *partition,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(asked, mine);
    // One acquire in flight per partition.
    m.handle_timeout(ms(500));
    assert!(commands(&mut m).is_empty());
}

/// The deadline counts from the send, not from the answer.
#[test]
fn deadline_counts_from_the_send() {
    let mut m = holding(5_000);
    assert_eq!(
        events(&mut m),
        vec![Event::Acting {
            partition: p(0),
            epoch: Epoch(7),
        }]
    );
    assert_eq!(m.may_act(p(0), ms(7_999)), Some(Epoch(7)));
    assert_eq!(m.may_act(p(0), ms(8_000)), None);
    assert_eq!(m.may_act(p(1), ms(5_000)), None, "not granted");
}

/// An answer that comes after the acting window does not start acting.
#[test]
fn a_late_grant_does_not_act() {
    let mut m = holding(8_500);
    assert!(events(&mut m).is_empty());
    assert_eq!(m.may_act(p(0), ms(8_500)), None);
    // It renews at once, and acts from the renew's grant.
    let renew = renew_of(&commands(&mut m), p(0));
    m.handle(
        ms(8_600),
        Input::Renewed {
            request: renew,
            partition: p(0),
        },
    );
    assert_eq!(m.may_act(p(0), ms(16_499)), Some(Epoch(7)));
    assert_eq!(m.may_act(p(0), ms(16_500)), None);
}

#[test]
fn renews_extend_the_deadline_from_their_send() {
    let mut m = holding(100);
    let _ = events(&mut m);
    assert_eq!(
        m.poll_timeout(),
        Some(ms(2_000)),
        "partitions still acquiring"
    );
    m.handle_timeout(ms(2_999));
    assert!(!commands(&mut m)
        .iter()
        .any(|c| matches!(c, Command::Renew { .. })));
    m.handle_timeout(ms(3_000));
    let renew = renew_of(&commands(&mut m), p(0));
    m.handle(
        ms(3_400),
        Input::Renewed {
            request: renew,
            partition: p(0),
        },
    );
    assert!(events(&mut m).is_empty(), "already acting");
    assert_eq!(m.may_act(p(0), ms(10_999)), Some(Epoch(7)));
    assert_eq!(m.may_act(p(0), ms(11_000)), None);
    // The next renew is due 3 s after the last granted send.
    m.handle_timeout(ms(5_999));
    assert!(!commands(&mut m)
        .iter()
        .any(|c| matches!(c, Command::Renew { .. })));
    m.handle_timeout(ms(6_000));
    let _ = renew_of(&commands(&mut m), p(0));
}

/// A pause longer than the lease: the machine wakes past its deadline, stops, and learns
/// from the database whether the lease is still its own.
#[test]
fn a_pause_stops_acting_and_a_refused_renew_loses_the_lease() {
    let mut m = holding(100);
    let _ = (events(&mut m), commands(&mut m));
    m.handle_timeout(ms(30_000));
    assert_eq!(
        events(&mut m),
        vec![Event::Stop {
            partition: p(0),
            reason: StopReason::DeadlinePassed,
        }]
    );
    assert_eq!(m.may_act(p(0), ms(30_000)), None);
    let renew = renew_of(&commands(&mut m), p(0));
    m.handle(
        ms(30_010),
        Input::RenewRefused {
            request: renew,
            partition: p(0),
        },
    );
    assert_eq!(m.lost(), 1);
    assert!(events(&mut m).is_empty(), "already stopped");
    // Still the preferred owner: it asks again, and the database decides.
    let again = acquire_of(&commands(&mut m), p(0));
    m.handle(
        ms(30_020),
        Input::Acquired {
            request: again,
            partition: p(0),
            epoch: Epoch(9),
        },
    );
    assert_eq!(m.may_act(p(0), ms(30_020)), Some(Epoch(9)));
}

#[test]
fn a_refused_renew_stops_at_once() {
    let mut m = holding(100);
    let _ = (events(&mut m), commands(&mut m));
    m.handle_timeout(ms(3_000));
    let renew = renew_of(&commands(&mut m), p(0));
    m.handle(
        ms(3_010),
        Input::RenewRefused {
            request: renew,
            partition: p(0),
        },
    );
    assert_eq!(
        events(&mut m),
        vec![Event::Stop {
            partition: p(0),
            reason: StopReason::Lost,
        }]
    );
    assert_eq!(m.may_act(p(0), ms(3_010)), None);
}

/// A lost renew answer is given up on after the request timeout and sent again; a stale
/// answer to the first is ignored.
#[test]
fn unanswered_renews_are_sent_again() {
    let mut m = holding(100);
    let _ = (events(&mut m), commands(&mut m));
    m.handle_timeout(ms(3_000));
    let first = renew_of(&commands(&mut m), p(0));
    m.handle_timeout(ms(5_000));
    let second = renew_of(&commands(&mut m), p(0));
    assert_ne!(first, second);
    m.handle(
        ms(5_100),
        Input::Renewed {
            request: first,
            partition: p(0),
        },
    );
    assert_eq!(
        m.may_act(p(0), ms(8_000)),
        None,
        "the stale answer granted nothing"
    );
    m.handle(
        ms(5_100),
        Input::Renewed {
            request: second,
            partition: p(0),
        },
    );
    assert_eq!(m.may_act(p(0), ms(12_999)), Some(Epoch(7)));
}

/// An acquire whose answer was lost: the database holds the lease for this server, which
/// adopts it and acts only after a renew is granted.
#[test]
fn a_lost_grant_is_adopted_through_a_renew() {
    let mut m = machine();
    m.handle(ms(0), Input::Membership(vec![sid("me")]));
    let _ = commands(&mut m);
    m.handle_timeout(ms(2_000));
    let retry = acquire_of(&commands(&mut m), p(0));
    m.handle(
        ms(2_050),
        Input::AcquireRefused {
            request: retry,
            partition: p(0),
            owner: Some(sid("me")),
            epoch: Epoch(3),
        },
    );
    assert_eq!(m.may_act(p(0), ms(2_050)), None);
    let renew = renew_of(&commands(&mut m), p(0));
    m.handle(
        ms(2_100),
        Input::Renewed {
            request: renew,
            partition: p(0),
        },
    );
    assert_eq!(m.may_act(p(0), ms(2_100)), Some(Epoch(3)));
}

#[test]
fn a_refused_acquire_waits_before_asking_again() {
    let mut m = machine();
    m.handle(ms(0), Input::Membership(vec![sid("me")]));
    let first = acquire_of(&commands(&mut m), p(0));
    m.handle(
        ms(10),
        Input::AcquireRefused {
            request: first,
            partition: p(0),
            owner: Some(sid("old")),
            epoch: Epoch(4),
        },
    );
    m.handle_timeout(ms(1_009));
    assert!(!commands(&mut m)
        .iter()
        .any(|c| matches!(c, Command::TryAcquire { partition, .. } if *partition == p(0))));
    m.handle_timeout(ms(1_010));
    let _ = acquire_of(&commands(&mut m), p(0));
}

/// Drain: stop first, release only after the server confirmed it stopped.
#[test]
fn drain_releases_after_the_server_stopped() {
    // A partition the newcomer is preferred for.
    let live = vec![sid("me"), sid("new")];
    let moved = PartitionId::all()
        .find(|&q| preferred_owner(q, &live) == Some(&sid("new")))
        .unwrap();
    let mut m = machine();
    m.handle(ms(0), Input::Membership(vec![sid("me")]));
    let cmds = commands(&mut m);
    m.handle(
        ms(10),
        Input::Acquired {
            request: acquire_of(&cmds, moved),
            partition: moved,
            epoch: Epoch(2),
        },
    );
    let _ = events(&mut m);
    m.handle(ms(1_000), Input::Membership(live));
    assert_eq!(events(&mut m), vec![Event::Drain { partition: moved }]);
    assert_eq!(m.may_act(moved, ms(1_000)), None, "stops acting at once");
    assert!(
        !commands(&mut m)
            .iter()
            .any(|c| matches!(c, Command::Release { .. })),
        "not released before the server stopped"
    );
    m.handle(ms(1_200), Input::Stopped { partition: moved });
    assert_eq!(
        commands(&mut m),
        vec![Command::Release {
            partition: moved,
            epoch: Epoch(2),
        }]
    );
    assert_eq!(m.held(), 0);
}

#[test]
fn an_unconfirmed_drain_releases_at_the_deadline() {
    let mut m = holding(100);
    let _ = (events(&mut m), commands(&mut m));
    m.handle(ms(1_000), Input::Membership(vec![]));
    assert_eq!(events(&mut m), vec![Event::Drain { partition: p(0) }]);
    m.handle_timeout(ms(7_999));
    assert!(commands(&mut m).is_empty());
    m.handle_timeout(ms(8_000));
    assert_eq!(
        commands(&mut m),
        vec![Command::Release {
            partition: p(0),
            epoch: Epoch(7),
        }]
    );
}

/// A grant for a partition the view no longer prefers is given back unused.
#[test]
fn a_grant_after_the_view_moved_is_released() {
    let mut m = machine();
    m.handle(ms(0), Input::Membership(vec![sid("me")]));
    let cmds = commands(&mut m);
    m.handle(ms(5), Input::Membership(vec![]));
    m.handle(
        ms(10),
        Input::Acquired {
            request: acquire_of(&cmds, p(3)),
            partition: p(3),
            epoch: Epoch(1),
        },
    );
    assert!(events(&mut m).is_empty());
    assert_eq!(
        commands(&mut m),
        vec![Command::Release {
            partition: p(3),
            epoch: Epoch(1),
        }]
    );
}

#[test]
fn time_never_goes_back() {
    let mut m = holding(100);
    m.handle_timeout(ms(9_000));
    assert_eq!(
        m.may_act(p(0), ms(1_000)),
        None,
        "a smaller now is the latest seen"
    );
}

/// The server's state went stale (its writes lost their session): a held partition is
/// stopped and released, and acquired again at once after the release; a partition being
/// acquired is left alone, and the next grant acts under its new epoch.
#[test]
fn a_lost_state_gives_every_held_partition_up_and_acquires_it_again() {
    let mut m = holding(100);
    let _ = (events(&mut m), commands(&mut m));
    assert_eq!(m.may_act(p(0), ms(200)), Some(Epoch(7)));
    m.handle(ms(200), Input::StateLost);
    assert_eq!(
        events(&mut m),
        vec![Event::Stop {
            partition: p(0),
            reason: StopReason::StateLost,
        }]
    );
    assert_eq!(m.may_act(p(0), ms(200)), None);
    let cmds = commands(&mut m);
    let release = cmds.iter().position(|c| {
        *c == Command::Release {
            partition: p(0),
            epoch: Epoch(7),
        }
    });
    let again = cmds
        .iter()
        .position(|c| matches!(c, Command::TryAcquire { partition, .. } if *partition == p(0)));
    assert!(
        matches!((release, again), (Some(r), Some(a)) if r < a),
        "release, then acquire: {cmds:?}"
    );
    // The other partitions' acquires were in flight: nothing new for them.
    assert_eq!(cmds.len(), 2, "{cmds:?}");
    m.handle(
        ms(300),
        Input::Acquired {
            request: acquire_of(&cmds, p(0)),
            partition: p(0),
            epoch: Epoch(8),
        },
    );
    assert_eq!(
        events(&mut m),
        vec![Event::Acting {
            partition: p(0),
            epoch: Epoch(8),
        }]
    );
    assert_eq!(m.may_act(p(0), ms(300)), Some(Epoch(8)));
}
