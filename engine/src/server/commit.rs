//! [`Commit`]: a submitted write, resolved once it is durable.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use ferrojob_store::{CommitHandle, StoreError};

use super::error::RepoError;

/// A submitted write: resolves to its value once the write is durable (the log store
/// acknowledged its batch, or PostgreSQL committed the transaction that holds it).
#[derive(Debug)]
#[must_use = "a write is not acknowledged until its Commit is awaited or waited for"]
pub struct Commit<T> {
    value: Option<T>,
    ack: Ack,
}

/// How a [`Commit`] learns that its write is durable.
#[derive(Debug)]
enum Ack {
    /// The log store's handle.
    Store(CommitHandle),
    /// Another backend's writer: resolved once, with the backend's error as text.
    Channel(futures::channel::oneshot::Receiver<Result<(), RepoError>>),
}

/// The sending half of a [`Commit`] from a backend other than the log store: the backend
/// resolves it once the write is durable (or failed).
pub(crate) type Acknowledger = futures::channel::oneshot::Sender<Result<(), RepoError>>;

impl<T> Commit<T> {
    pub(super) fn of_store(value: T, handle: CommitHandle) -> Commit<T> {
        Commit {
            value: Some(value),
            ack: Ack::Store(handle),
        }
    }

    /// A commit resolved by the returned [`Acknowledger`]. A dropped acknowledger resolves it
    /// as failed (the writer is gone).
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    pub(crate) fn pending(value: T) -> (Commit<T>, Acknowledger) {
        let (tx, rx) = futures::channel::oneshot::channel();
        (
            Commit {
                value: Some(value),
                ack: Ack::Channel(rx),
            },
            tx,
        )
    }

    /// The value the write will have stored (ids assigned), before it is acknowledged.
    pub fn value(&self) -> Option<&T> {
        self.value.as_ref()
    }

    /// The same write, resolving to `()` once acknowledged.
    pub fn discard_value(self) -> Commit<()> {
        Commit {
            value: Some(()),
            ack: self.ack,
        }
    }

    /// Blocks until the write is durable. Not on an async runtime's worker thread: `.await`.
    pub fn wait(mut self) -> Result<T, RepoError> {
        match self.ack {
            Ack::Store(handle) => {
                handle.wait()?;
            }
            Ack::Channel(rx) => futures::executor::block_on(rx).unwrap_or_else(|_| Err(gone()))?,
        }
        self.value.take().ok_or_else(gone)
    }
}

/// The error of a commit whose writer went away or that was already resolved.
fn gone() -> RepoError {
    RepoError::Store(StoreError::Closed {
        dir: Default::default(),
    })
}

impl<T: Unpin> Future for Commit<T> {
    type Output = Result<T, RepoError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let done = match &mut this.ack {
            Ack::Store(handle) => match Pin::new(handle).poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(r) => r.map(drop).map_err(RepoError::from),
            },
            Ack::Channel(rx) => match Pin::new(rx).poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(r) => r.unwrap_or_else(|_| Err(gone())),
            },
        };
        Poll::Ready(done.and_then(|()| this.value.take().ok_or_else(gone)))
    }
}
