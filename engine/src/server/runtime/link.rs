//! One worker's connection as the driver sees it: the transport's handle and a bounded
//! backlog that keeps the core's messages in decision order while the connection's own
//! queue is full.
//!
//! A step hands its messages over without waiting ([`WorkerLink::deliver`]). While the
//! transport queue has room a message goes straight in; once it is full, this and every later
//! message of the connection wait in the backlog, fed to the connection by one task in order,
//! so that a StopInstance is never overtaken by the next attempt's ScheduleJob. The backlog
//! holds at most [`BACKLOG_SCHEDULES`] ScheduleJobs: one past that is dropped and counted,
//! and the instance's receive timeout dispatches it again (the worker never confirmed it).
//! A StopInstance is never dropped; they are bounded by the instances the worker was given.

use std::collections::VecDeque;
use std::sync::Arc;

use ferrojob_transport::message::Message;
use ferrojob_transport::net::ConnectionHandle;
use parking_lot::Mutex;

/// ScheduleJobs a connection's backlog holds at most, beyond the transport's own queue.
pub(crate) const BACKLOG_SCHEDULES: usize = 1024;

/// Told the dispatch-ready time of each ScheduleJob sent from a backlog.
pub(crate) trait OnSent: Clone + Send + 'static {
    fn sent(&self, ready_us: i64);
}

impl<F: Fn(i64) + Clone + Send + 'static> OnSent for F {
    fn sent(&self, ready_us: i64) {
        self(ready_us)
    }
}

/// What became of a message handed to [`WorkerLink::deliver`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Delivery {
    /// In the connection's queue.
    Sent,
    /// In the backlog, behind a full connection queue.
    Backlogged,
    /// A ScheduleJob past the backlog's bound: not sent.
    Dropped,
    /// The connection is closed.
    Closed,
}

/// A message waiting in a backlog; `ready_us` (a ScheduleJob's) measures its dispatch
/// latency once the connection takes it.
#[derive(Debug)]
struct Waiting {
    message: Message,
    ready_us: Option<i64>,
}

#[derive(Debug, Default)]
struct Backlog {
    queue: VecDeque<Waiting>,
    schedules: usize,
    /// A task is feeding the queue to the connection.
    draining: bool,
}

/// A worker connection: its generation, its handle and its backlog. Cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct WorkerLink {
    pub(crate) gen: u64,
    pub(crate) handle: ConnectionHandle,
    backlog: Arc<Mutex<Backlog>>,
}

impl WorkerLink {
    pub(crate) fn new(gen: u64, handle: ConnectionHandle) -> Self {
        WorkerLink {
            gen,
            handle,
            backlog: Arc::default(),
        }
    }

    /// Messages waiting in the backlog.
    #[cfg(test)]
    fn backlogged(&self) -> usize {
        self.backlog.lock().queue.len()
    }

    /// Hands `message` to the connection without waiting. `ready_us` is a ScheduleJob's
    /// dispatch-ready time; `on_sent` is told it for a ScheduleJob that went out from the
    /// backlog (cloned only then).
    pub(crate) fn deliver(
        &self,
        message: Message,
        ready_us: Option<i64>,
        on_sent: &impl OnSent,
    ) -> Delivery {
        let schedule = matches!(message, Message::ScheduleJob(_));
        let mut b = self.backlog.lock();
        if !b.draining {
            return match self.handle.try_send_or_return(message) {
                Ok(()) => Delivery::Sent,
                Err(None) => Delivery::Closed,
                Err(Some(message)) => {
                    b.push(*message, ready_us, schedule);
                    b.draining = true;
                    drop(b);
                    tokio::spawn(drain(
                        self.handle.clone(),
                        Arc::clone(&self.backlog),
                        on_sent.clone(),
                    ));
                    Delivery::Backlogged
                }
            };
        }
        if schedule && b.schedules >= BACKLOG_SCHEDULES {
            return Delivery::Dropped;
        }
        b.push(message, ready_us, schedule);
        Delivery::Backlogged
    }
}

impl Backlog {
    fn push(&mut self, message: Message, ready_us: Option<i64>, schedule: bool) {
        self.schedules += usize::from(schedule);
        self.queue.push_back(Waiting { message, ready_us });
    }
}

/// Feeds the backlog to the connection in order, waiting for room; ends when it is empty or
/// the connection closed (what is left is dropped: the core hears of the close and
/// redispatches).
async fn drain(handle: ConnectionHandle, backlog: Arc<Mutex<Backlog>>, on_sent: impl OnSent) {
    loop {
        let next = {
            let mut b = backlog.lock();
            match b.queue.pop_front() {
                Some(w) => {
                    if matches!(w.message, Message::ScheduleJob(_)) {
                        b.schedules = b.schedules.saturating_sub(1);
                    }
                    w
                }
                None => {
                    b.draining = false;
                    return;
                }
            }
        };
        if handle.send(next.message).await.is_err() {
            let mut b = backlog.lock();
            b.queue.clear();
            b.schedules = 0;
            b.draining = false;
            return;
        }
        if let Some(ready) = next.ready_us {
            on_sent.sent(ready);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use ferrojob_transport::message::{samples, ScheduleJob, StopInstance};

    use super::*;

    fn schedule(id: u64) -> Message {
        Message::ScheduleJob(ScheduleJob {
            instance_id: id,
            ..samples::schedule_job()
        })
    }

    fn stop(id: u64) -> Message {
        Message::StopInstance(StopInstance {
            instance_id: id,
            epoch: 0,
        })
    }

    fn id_of(m: &Message) -> (bool, u64) {
        match m {
            Message::ScheduleJob(s) => (true, s.instance_id),
            Message::StopInstance(s) => (false, s.instance_id),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_full_connection_keeps_decision_order_bounds_schedules_and_never_drops_a_stop() {
        let (handle, mut peer) = ConnectionHandle::unconnected(2);
        let link = WorkerLink::new(1, handle);
        let sent = Arc::new(AtomicUsize::new(0));
        let counted = |sent: &Arc<AtomicUsize>| {
            let sent = Arc::clone(sent);
            move |_ready: i64| {
                sent.fetch_add(1, Ordering::Relaxed);
            }
        };
        let mut expected = Vec::new();
        // Two fit the connection's queue; the rest wait in the backlog up to its bound.
        for id in 0..(2 + BACKLOG_SCHEDULES as u64) {
            let d = link.deliver(schedule(id), Some(0), &counted(&sent));
            assert_eq!(
                d,
                if id < 2 {
                    Delivery::Sent
                } else {
                    Delivery::Backlogged
                }
            );
            expected.push((true, id));
        }
        // Past the bound a ScheduleJob is dropped, a StopInstance is not.
        assert_eq!(
            link.deliver(schedule(9_999), Some(0), &counted(&sent)),
            Delivery::Dropped
        );
        assert_eq!(
            link.deliver(stop(7), None, &counted(&sent)),
            Delivery::Backlogged
        );
        expected.push((false, 7));
        assert_eq!(link.backlogged(), BACKLOG_SCHEDULES + 1);
        // The peer reads: everything arrives in the order it was handed over.
        let mut got = Vec::new();
        while got.len() < expected.len() {
            let m = peer.recv().await.expect("open");
            got.push(id_of(&m));
        }
        assert_eq!(got, expected);
        // The backlog is empty again: the next message goes straight to the connection.
        tokio::task::yield_now().await;
        assert_eq!(link.backlogged(), 0);
        assert_eq!(sent.load(Ordering::Relaxed), BACKLOG_SCHEDULES);
        assert_eq!(
            link.deliver(schedule(1), Some(0), &counted(&sent)),
            Delivery::Sent
        );
        drop(peer);
        assert_eq!(
            link.deliver(stop(1), None, &counted(&sent)),
            Delivery::Closed
        );
    }

    #[tokio::test]
    async fn a_connection_closing_under_a_backlog_empties_it() {
        let (handle, peer) = ConnectionHandle::unconnected(1);
        let link = WorkerLink::new(1, handle);
        assert_eq!(link.deliver(schedule(1), Some(0), &|_| {}), Delivery::Sent);
        assert_eq!(
            link.deliver(schedule(2), Some(0), &|_| {}),
            Delivery::Backlogged
        );
        assert_eq!(link.deliver(stop(2), None, &|_| {}), Delivery::Backlogged);
        drop(peer);
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert_eq!(link.backlogged(), 0);
        assert_eq!(
            link.deliver(schedule(3), Some(0), &|_| {}),
            Delivery::Closed
        );
    }
}
