//! The listener's two pools: connections still in their handshake, and authenticated ones.
//!
//! ```text
//!  accept ─▶ rate limit per source ─▶ pre-auth pool ──────────────▶ established pool
//!            (handshake_rate_per_min,  (max_handshaking)   proof     (max_connections)
//!             handshake_burst)          full: the oldest   checked,
//!            over: closed on arrival    member is closed   admitted  full: closed Overloaded,
//!                                                                    on arrival or instead of
//!                                                                    accepting the handshake
//! ```
//!
//! A handshaking connection never holds an established slot, so peers that never
//! authenticate cannot lock workers out; they compete only among themselves for the small
//! pre-auth pool. When that pool is full the *oldest* handshaking connection goes: a real
//! worker completes its handshake within a round trip, so to keep it out an attacker would
//! have to open `max_handshaking` connections within that round trip, which the per-source
//! rate limit forbids from any single address.
//!
//! The pool is a map under a `std` mutex, taken once when a connection is accepted, once when
//! it authenticates and once when it ends: never per message.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::AbortHandle;

use crate::connection::AdmissionControl;
use crate::metrics::TransportMetrics;

/// Connections in their handshake, oldest first (ids grow with time).
#[derive(Debug)]
pub(crate) struct PreAuthPool {
    capacity: usize,
    members: Mutex<BTreeMap<u64, AbortHandle>>,
}

impl PreAuthPool {
    pub(crate) fn new(capacity: usize) -> PreAuthPool {
        PreAuthPool {
            capacity: capacity.max(1),
            members: Mutex::new(BTreeMap::new()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<u64, AbortHandle>> {
        // The map stays consistent even if a holder panicked: every update is one call.
        self.members.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers the task of a new member under `id` (larger than every earlier id). When
    /// the pool is full, first aborts its oldest member and returns `true`. Aborting only
    /// schedules the task's cancellation: no connection state is dropped under the lock.
    pub(crate) fn admit(&self, id: u64, task: AbortHandle) -> bool {
        let mut members = self.lock();
        let mut evicted = false;
        if members.len() >= self.capacity {
            if let Some((_, oldest)) = members.pop_first() {
                oldest.abort();
                evicted = true;
            }
        }
        members.insert(id, task);
        debug_assert!(members.len() <= self.capacity);
        evicted
    }

    /// Removes `id`; `false` if it was not a member (any more).
    pub(crate) fn leave(&self, id: u64) -> bool {
        self.lock().remove(&id).is_some()
    }

    /// Members now.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }
}

/// One server connection's place in the pools: a pre-auth member until the connection core
/// asks to [`admit`](AdmissionControl::admit) its authenticated peer, then the holder of an
/// established slot until the core (and with it this) is dropped.
#[derive(Debug)]
pub(crate) struct Admission {
    pool: Arc<PreAuthPool>,
    id: u64,
    in_pool: bool,
    established: Arc<Semaphore>,
    slot: Option<OwnedSemaphorePermit>,
    metrics: Arc<TransportMetrics>,
}

impl Admission {
    /// A member of `pool` under `id`; its task must be registered with
    /// [`PreAuthPool::admit`] before it runs.
    pub(crate) fn new(
        pool: Arc<PreAuthPool>,
        id: u64,
        established: Arc<Semaphore>,
        metrics: Arc<TransportMetrics>,
    ) -> Admission {
        Admission {
            pool,
            id,
            in_pool: true,
            established,
            slot: None,
            metrics,
        }
    }
}

impl AdmissionControl for Admission {
    /// Leaves the pre-auth pool and takes an established slot. Refused when every slot is
    /// taken (counted in `connections_over_limit`), or when the listener evicted this
    /// connection from the pre-auth pool just now (already counted; its task is being
    /// aborted).
    fn admit(&mut self) -> Result<(), String> {
        let was_member = std::mem::replace(&mut self.in_pool, false) && self.pool.leave(self.id);
        if !was_member {
            return Err("too many connections awaiting authentication".into());
        }
        match Arc::clone(&self.established).try_acquire_owned() {
            Ok(slot) => {
                self.slot = Some(slot);
                Ok(())
            }
            Err(_) => {
                TransportMetrics::inc(&self.metrics.connections_over_limit);
                Err(FULL.into())
            }
        }
    }
}

/// What a peer refused for want of an established slot is told.
pub(crate) const FULL: &str = "the server has reached its connection limit: retry later";

impl Drop for Admission {
    fn drop(&mut self) {
        if self.in_pool {
            self.pool.leave(self.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metrics() -> Arc<TransportMetrics> {
        Arc::default()
    }

    fn parked() -> AbortHandle {
        tokio::spawn(std::future::pending::<()>()).abort_handle()
    }

    #[tokio::test]
    async fn a_full_pool_evicts_its_oldest_member() {
        let pool = Arc::new(PreAuthPool::new(2));
        let established = Arc::new(Semaphore::new(8));
        let first = parked();
        assert!(!pool.admit(1, first.clone()));
        assert!(!pool.admit(2, parked()));
        assert!(pool.admit(3, parked()), "third evicts");
        assert_eq!(pool.len(), 2);
        let mut evicted = Admission::new(Arc::clone(&pool), 1, Arc::clone(&established), metrics());
        assert!(evicted.admit().is_err(), "evicted");
        let mut kept = Admission::new(Arc::clone(&pool), 2, Arc::clone(&established), metrics());
        assert_eq!(kept.admit(), Ok(()));
        assert_eq!(pool.len(), 1);
        assert_eq!(established.available_permits(), 7);
        drop(kept);
        assert_eq!(established.available_permits(), 8);
        // A member that ends before authenticating leaves the pool.
        drop(Admission::new(Arc::clone(&pool), 3, established, metrics()));
        assert_eq!(pool.len(), 0);
    }

    #[tokio::test]
    async fn no_established_slot_means_refusal_and_the_pool_slot_is_freed() {
        let pool = Arc::new(PreAuthPool::new(4));
        let established = Arc::new(Semaphore::new(1));
        pool.admit(1, parked());
        pool.admit(2, parked());
        let mut a = Admission::new(Arc::clone(&pool), 1, Arc::clone(&established), metrics());
        let mut b = Admission::new(Arc::clone(&pool), 2, Arc::clone(&established), metrics());
        assert_eq!(a.admit(), Ok(()));
        assert_eq!(b.admit(), Err(FULL.to_owned()));
        assert_eq!(pool.len(), 0);
        assert_eq!(established.available_permits(), 0);
        assert_eq!(b.metrics.snapshot().connections_over_limit, 1);
    }
}
