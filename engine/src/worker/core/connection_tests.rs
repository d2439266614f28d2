//! The core's side of the connection on virtual time: heartbeats, reconnect delays, losing
//! the server, status queries, and messages from an older server epoch.

use ferrojob_transport::message::{InstanceStatus, Message, TimeExpressionType};

use super::tests::*;
use super::*;

#[test]
fn heartbeats_go_first_on_each_connection_then_every_interval_one_at_a_time() {
    let mut h = Harness::new(config());
    h.schedule(job(1, 1), ProcessorKind::Basic);
    h.input(Input::ConnectionLost {
        retry: Retry::Backoff,
    });
    h.input(Input::Connected);
    let t = h.transmits();
    assert!(
        matches!(&t[0], Transmit::Send(Message::WorkerHeartbeat(hb))
            if hb.worker_address == OWN && hb.lightweight_task_trackers == 1
                && hb.tag.as_deref() == Some("blue")),
        "{t:?}"
    );
    assert!(matches!(
        &t[1],
        Transmit::Send(Message::ReportInstanceStatus(_))
    ));
    h.advance(1000);
    h.advance(1000);
    let t = h.transmits();
    assert_eq!(t.len(), 1, "never two heartbeats queued: {t:?}");
    h.advance(1000);
    assert_eq!(h.transmits().len(), 1);
}

#[test]
fn reconnect_delays_stay_under_a_second_with_the_default_backoff() {
    // The transport's default backoff grows to 30 s; a worker must come back within the
    // server's restart grace (3 s by default), so its own delay is capped.
    let mut h = Harness::new(config());
    h.input(Input::ConnectionLost {
        retry: Retry::Backoff,
    });
    let mut max = 0;
    for _ in 0..40 {
        let at = h.core.next_connect_at().unwrap();
        assert!(at >= h.now);
        max = max.max(at - h.now);
        h.now = at;
        h.input(Input::ConnectFailed {
            retry: Retry::Backoff,
        });
    }
    assert!(max <= 1000, "a reconnect waited {max} ms");
    assert!(max >= 500, "the backoff still grows to its cap: {max} ms");
    h.input(Input::Connected);
    assert_eq!(h.core.next_connect_at(), None);
}

#[test]
fn losing_the_server_stops_fixed_rate_work_only_after_server_lost_after() {
    let mut h = Harness::new(config());
    let mut fixed = job(1, 1);
    fixed.time_expression_type = TimeExpressionType::FixedRate;
    h.schedule(fixed, ProcessorKind::Basic);
    h.schedule(job(2, 2), ProcessorKind::Basic);
    h.reports();
    h.advance(5);
    h.input(Input::ConnectionLost {
        retry: Retry::Backoff,
    });
    h.advance(30_000);
    assert_eq!(
        h.core.running(),
        2,
        "lost for exactly server_lost_after: not yet"
    );
    h.advance(1);
    assert_eq!(h.core.running(), 1);
    let r: Vec<_> = h
        .reports()
        .into_iter()
        .filter(|r| r.status.is_final())
        .collect();
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].instance_id, 1);
    assert_eq!(
        r[0].result.as_deref(),
        Some("stopped: server unreachable for more than 30s (fixed rate/delay work stops)")
    );
}

#[test]
fn queries_answer_from_running_and_finished_and_die_with_their_connection() {
    let mut h = Harness::new(config());
    h.schedule(job(1, 1), ProcessorKind::Basic);
    h.reports();
    h.input(Input::QueryInstanceStatus {
        correlation: 7,
        instance_id: 1,
    });
    h.input(Input::QueryInstanceStatus {
        correlation: 8,
        instance_id: 2,
    });
    let t = h.transmits();
    assert!(
        matches!(&t[0], Transmit::Reply { correlation: 7, message: Message::InstanceStatusReply(r) }
        if r.status == InstanceStatus::Running && r.running_tasks == 1)
    );
    assert!(
        matches!(&t[1], Transmit::Reply { correlation: 8, message: Message::ErrorReply(e) }
        if e.code == ErrorCode::NotFound)
    );
    h.input(Input::QueryInstanceStatus {
        correlation: 9,
        instance_id: 1,
    });
    h.input(Input::ConnectionLost {
        retry: Retry::Backoff,
    });
    assert!(
        h.transmits().is_empty(),
        "an answer belongs to its connection"
    );
}

#[test]
fn messages_from_an_older_server_epoch_are_dropped() {
    let mut h = Harness::new(config());
    // The new owner (epoch 7) dispatches instance 1.
    let mut new = job(1, 1);
    new.epoch = 7;
    h.schedule(new, ProcessorKind::Basic);
    assert_eq!(h.runs().len(), 1);
    assert_eq!(h.core.server_epoch(), 7);
    // The former owner (epoch 6), paused, wakes up: its dispatch and its stop are dropped.
    let mut old = job(2, 2);
    old.epoch = 6;
    h.schedule(old, ProcessorKind::Basic);
    assert!(h.runs().is_empty(), "an older epoch's ScheduleJob ran");
    h.input(Input::StopInstance {
        instance_id: 1,
        epoch: 6,
    });
    assert_eq!(
        h.core.running(),
        1,
        "an older epoch's StopInstance stopped a run"
    );
    assert!(h
        .reports()
        .iter()
        .all(|r| r.status == InstanceStatus::Running && r.instance_id == 1));
    // The current epoch's stop is followed, and a later epoch becomes the current one.
    h.input(Input::StopInstance {
        instance_id: 1,
        epoch: 7,
    });
    assert_eq!(h.core.running(), 0);
    let mut later = job(3, 3);
    later.epoch = 9;
    h.schedule(later, ProcessorKind::Basic);
    assert_eq!(h.runs().len(), 1);
    assert_eq!(h.core.server_epoch(), 9);
}
