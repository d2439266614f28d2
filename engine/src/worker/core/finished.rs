//! The recently finished instances, remembered for `QueryInstanceStatus`.

use std::collections::{HashMap, VecDeque};

use ferrojob_transport::message::InstanceStatus;

/// What the worker remembers of a finished instance.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Finished {
    pub status: InstanceStatus,
    pub result: Option<String>,
    pub start_time_ms: i64,
    /// `(total, succeeded, failed)` tasks.
    pub counts: (u64, u64, u64),
}

/// The last `capacity` finished instances (FIFO eviction).
#[derive(Debug)]
pub(crate) struct FinishedCache {
    capacity: usize,
    map: HashMap<u64, Finished>,
    order: VecDeque<u64>,
}

impl FinishedCache {
    /// A cache of at most `capacity` (at least 1) instances.
    pub(crate) fn new(capacity: usize) -> Self {
        FinishedCache {
            capacity: capacity.max(1),
            map: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    pub(crate) fn insert(&mut self, id: u64, f: Finished) {
        if self.map.insert(id, f).is_none() {
            self.order.push_back(id);
        }
        while self.map.len() > self.capacity {
            match self.order.pop_front() {
                Some(old) => {
                    self.map.remove(&old);
                }
                None => break,
            }
        }
        debug_assert!(self.map.len() <= self.capacity);
        debug_assert_eq!(self.map.len(), self.order.len());
    }

    pub(crate) fn get(&self, id: u64) -> Option<&Finished> {
        self.map.get(&id)
    }

    /// Forgets `id` (it runs again).
    pub(crate) fn remove(&mut self, id: u64) {
        if self.map.remove(&id).is_some() {
            self.order.retain(|x| *x != id);
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn done(result: &str) -> Finished {
        Finished {
            status: InstanceStatus::Succeed,
            result: Some(result.into()),
            start_time_ms: 0,
            counts: (1, 1, 0),
        }
    }

    #[test]
    fn keeps_the_last_capacity_entries() {
        let mut c = FinishedCache::new(3);
        for id in 1..=5 {
            c.insert(id, done(&id.to_string()));
        }
        assert!(c.get(1).is_none() && c.get(2).is_none());
        assert_eq!(c.get(5).unwrap().result.as_deref(), Some("5"));
        // A re-run forgets its entry; its next finish is the newest.
        c.remove(3);
        assert!(c.get(3).is_none());
        c.insert(6, done("6"));
        c.insert(3, done("3 again"));
        assert!(c.get(4).is_none());
        assert_eq!(c.get(3).unwrap().result.as_deref(), Some("3 again"));
        assert!(c.get(5).is_some() && c.get(6).is_some());
        assert_eq!(c.map.len(), 3);
        assert_eq!(c.order.len(), 3);
    }
}
