//! The [`Store`] trait both stores implement, and [`CommitHandle`], the completion of a commit.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use parking_lot::{Condvar, Mutex};

use crate::batch::Batch;
use crate::error::StoreError;
use crate::range::KeyRange;

/// A key and its value.
pub type KeyValue = (Vec<u8>, Vec<u8>);

/// Named tables of ordered byte keys to byte values, with atomic batches across tables.
///
/// Object safe, so the engine holds an `Arc<dyn Store>` and picks [`MemoryStore`] or
/// [`LogStore`] at start-up. Tables exist implicitly: reading an unknown table finds nothing,
/// the first put creates it.
///
/// Reads observe only committed batches (for a `LogStore` with `Durability::Sync`, only durable
/// ones) and never part of a batch.
///
/// [`MemoryStore`]: crate::MemoryStore
/// [`LogStore`]: crate::LogStore
pub trait Store: Send + Sync + fmt::Debug {
    /// The value of `key` in `table`, if any.
    fn get(&self, table: &str, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;

    /// Up to `limit` entries of `table` whose keys lie in `range`, in ascending key order.
    /// Page through larger ranges with [`KeyRange::after`] or use [`Scan`](crate::Scan).
    fn range(
        &self,
        table: &str,
        range: &KeyRange,
        limit: usize,
    ) -> Result<Vec<KeyValue>, StoreError>;

    /// Queues `batch` and returns at once; the handle completes when the batch is committed
    /// (durable as the store's durability setting promises). Use this from async code:
    /// `CommitHandle` is a `Future` and needs no runtime.
    fn submit(&self, batch: Batch) -> CommitHandle;

    /// Makes every acknowledged batch durable (an fdatasync), whatever the durability setting.
    fn flush(&self) -> Result<(), StoreError>;

    /// Number of keys in `table`.
    fn count(&self, table: &str) -> usize;

    /// Names of the tables that hold at least one key, sorted.
    fn tables(&self) -> Vec<String>;

    /// Commits `batch`, blocking until it is committed. Do not call it on an async runtime's
    /// worker thread; `submit(batch).await` instead.
    fn commit(&self, batch: Batch) -> Result<CommitInfo, StoreError> {
        self.submit(batch).wait()
    }

    /// Commits a single put.
    fn put(&self, table: &str, key: &[u8], value: &[u8]) -> Result<CommitInfo, StoreError> {
        self.commit(Batch::new().put(table.to_owned(), key, value))
    }

    /// Commits a single delete.
    fn delete(&self, table: &str, key: &[u8]) -> Result<CommitInfo, StoreError> {
        self.commit(Batch::new().delete(table.to_owned(), key))
    }

    /// Up to `limit` entries of `table` whose keys start with `prefix`, in key order.
    fn scan_prefix(
        &self,
        table: &str,
        prefix: &[u8],
        limit: usize,
    ) -> Result<Vec<KeyValue>, StoreError> {
        self.range(table, &KeyRange::prefix(prefix), limit)
    }
}

/// What a successful commit reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommitInfo {
    /// Sequence number of the batch's last record; sequence numbers grow by one per record
    /// across the store's life. For an empty batch, the last sequence number already used.
    pub last_seq: u64,
}

struct Slot {
    state: Mutex<SlotState>,
    ready: Condvar,
}

struct SlotState {
    result: Option<Result<CommitInfo, StoreError>>,
    waker: Option<Waker>,
    done: bool,
}

/// The pending outcome of a submitted batch: [`wait`](CommitHandle::wait) blocks for it, and
/// `.await` waits without blocking a thread (it is a plain `Future`, runtime-agnostic).
pub struct CommitHandle {
    slot: Arc<Slot>,
}

impl fmt::Debug for CommitHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let done = self.slot.state.lock().done;
        f.debug_struct("CommitHandle").field("done", &done).finish()
    }
}

impl CommitHandle {
    /// A handle and the completer that resolves it.
    pub(crate) fn pending() -> (CommitHandle, Completer) {
        let slot = Arc::new(Slot {
            state: Mutex::new(SlotState {
                result: None,
                waker: None,
                done: false,
            }),
            ready: Condvar::new(),
        });
        (
            CommitHandle { slot: slot.clone() },
            Completer { slot: Some(slot) },
        )
    }

    /// A handle that is already resolved.
    pub fn ready(result: Result<CommitInfo, StoreError>) -> CommitHandle {
        let (handle, completer) = CommitHandle::pending();
        completer.complete(result);
        handle
    }

    /// Blocks until the commit is resolved.
    pub fn wait(self) -> Result<CommitInfo, StoreError> {
        let mut state = self.slot.state.lock();
        loop {
            if let Some(result) = state.result.take() {
                return result;
            }
            if state.done {
                // Already taken by a poll: only reachable by waiting after a completed poll.
                return Err(StoreError::Closed {
                    dir: Default::default(),
                });
            }
            self.slot.ready.wait(&mut state);
        }
    }

    /// True once the outcome is known (`wait` will not block).
    pub fn is_done(&self) -> bool {
        self.slot.state.lock().done
    }
}

impl Future for CommitHandle {
    type Output = Result<CommitInfo, StoreError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.slot.state.lock();
        if let Some(result) = state.result.take() {
            return Poll::Ready(result);
        }
        if state.done {
            return Poll::Ready(Err(StoreError::Closed {
                dir: Default::default(),
            }));
        }
        state.waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

/// The writer's side of a [`CommitHandle`]. Dropping it unresolved resolves the handle with
/// [`StoreError::Closed`], so no caller waits forever on a writer that died.
pub(crate) struct Completer {
    slot: Option<Arc<Slot>>,
}

impl fmt::Debug for Completer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Completer")
    }
}

impl Completer {
    pub(crate) fn complete(mut self, result: Result<CommitInfo, StoreError>) {
        if let Some(slot) = self.slot.take() {
            resolve(&slot, result);
        }
    }
}

impl Drop for Completer {
    fn drop(&mut self) {
        if let Some(slot) = self.slot.take() {
            resolve(
                &slot,
                Err(StoreError::Closed {
                    dir: Default::default(),
                }),
            );
        }
    }
}

fn resolve(slot: &Slot, result: Result<CommitInfo, StoreError>) {
    let waker = {
        let mut state = slot.state.lock();
        state.result = Some(result);
        state.done = true;
        state.waker.take()
    };
    slot.ready.notify_all();
    if let Some(waker) = waker {
        waker.wake();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::Wake;

    struct Flag(std::sync::atomic::AtomicBool);
    impl Wake for Flag {
        fn wake(self: Arc<Self>) {
            self.0.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }

    #[test]
    fn handle_is_a_future_woken_on_completion() {
        let (mut handle, completer) = CommitHandle::pending();
        let flag = Arc::new(Flag(false.into()));
        let waker = Waker::from(flag.clone());
        let mut cx = Context::from_waker(&waker);
        assert!(Pin::new(&mut handle).poll(&mut cx).is_pending());
        completer.complete(Ok(CommitInfo { last_seq: 7 }));
        assert!(flag.0.load(std::sync::atomic::Ordering::SeqCst));
        match Pin::new(&mut handle).poll(&mut cx) {
            Poll::Ready(Ok(info)) => assert_eq!(info.last_seq, 7),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn dropped_completer_resolves_closed() {
        let (handle, completer) = CommitHandle::pending();
        drop(completer);
        assert!(matches!(handle.wait(), Err(StoreError::Closed { .. })));
    }
}
