//! The caller's side of a connection: a cloneable handle and the incoming-message queue.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::error::{RequestError, SendError};
use crate::message::Message;

/// A received message. With `correlation: Some(c)` the peer awaits an answer:
/// [`ConnectionHandle::respond`]`(c, ..)`.
#[derive(Debug, Clone, PartialEq)]
pub struct Incoming {
    /// The request's correlation, if the peer awaits an answer.
    pub correlation: Option<u64>,
    /// The message.
    pub message: Message,
}

#[derive(Debug)]
pub(crate) enum Command {
    Send(Message),
    SendBatch(Vec<Message>),
    Request {
        message: Message,
        timeout: Duration,
        reply: oneshot::Sender<Result<Message, RequestError>>,
    },
    Respond {
        correlation: u64,
        message: Message,
    },
    Shutdown(oneshot::Sender<()>),
}

/// Sends on one connection (or, for [`crate::net::ReconnectingClient`], on whichever
/// connection is current). Cheap to clone; all clones feed one bounded queue, so a slow peer
/// makes `send` wait (backpressure) and `try_send` fail with [`SendError::Full`].
#[derive(Debug, Clone)]
pub struct ConnectionHandle {
    pub(crate) tx: mpsc::Sender<Command>,
    pub(crate) peer: SocketAddr,
}

impl ConnectionHandle {
    /// The remote address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer
    }

    /// Whether the connection (or client) has stopped for good.
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }

    /// Queues a one-way message, waiting while the queue is full. Returns once the message is
    /// accepted (not delivered): accepted messages are flushed by a graceful shutdown.
    /// A message too large to encode is dropped by the driver and counted in `encode_errors`.
    pub async fn send(&self, message: impl Into<Message>) -> Result<(), SendError> {
        self.tx
            .send(Command::Send(message.into()))
            .await
            .map_err(|_| SendError::Closed)
    }

    /// Queues a one-way message without waiting; [`SendError::Full`] when the queue is full.
    pub fn try_send(&self, message: impl Into<Message>) -> Result<(), SendError> {
        self.tx
            .try_send(Command::Send(message.into()))
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => SendError::Full {
                    queued: self.tx.max_capacity(),
                    limit: self.tx.max_capacity(),
                },
                mpsc::error::TrySendError::Closed(_) => SendError::Closed,
            })
    }

    /// [`try_send`](Self::try_send) that hands the message back when the queue is full
    /// (`Err(Some(message))`), so that the caller can wait with
    /// [`send`](Self::send) without building it again; `Err(None)`: the connection is
    /// closed.
    pub fn try_send_or_return(&self, message: Message) -> Result<(), Option<Box<Message>>> {
        match self.tx.try_send(Command::Send(message)) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(Command::Send(m))) => Err(Some(Box::new(m))),
            Err(_) => Err(None),
        }
    }

    /// Queues many one-way messages as one command (cheaper per message than `send`).
    pub async fn send_batch(&self, messages: Vec<Message>) -> Result<(), SendError> {
        self.tx
            .send(Command::SendBatch(messages))
            .await
            .map_err(|_| SendError::Closed)
    }

    /// Sends a request and waits for its answer, at most `timeout` in total (queueing
    /// included). An [`crate::message::ErrorReply`] answer is `Err(RequestError::Remote)`.
    pub async fn request(
        &self,
        message: impl Into<Message>,
        timeout: Duration,
    ) -> Result<Message, RequestError> {
        let (reply, rx) = oneshot::channel();
        let command = Command::Request {
            message: message.into(),
            timeout,
            reply,
        };
        let exchange = async {
            self.tx
                .send(command)
                .await
                .map_err(|_| RequestError::Send(SendError::Closed))?;
            rx.await.map_err(|_| {
                RequestError::ConnectionLost("connection task ended before the response".into())
            })?
        };
        match tokio::time::timeout(timeout, exchange).await {
            Ok(result) => result,
            Err(_) => Err(RequestError::TimedOut { timeout }),
        }
    }

    /// Answers the request that arrived with `correlation`.
    pub async fn respond(
        &self,
        correlation: u64,
        message: impl Into<Message>,
    ) -> Result<(), SendError> {
        self.tx
            .send(Command::Respond {
                correlation,
                message: message.into(),
            })
            .await
            .map_err(|_| SendError::Closed)
    }

    /// Graceful shutdown: everything accepted before this call is written, then a close frame
    /// (`ShuttingDown`), then the socket is closed. Returns when that is done (or the
    /// connection was already gone).
    pub async fn shutdown(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Command::Shutdown(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }
}

/// Creates the command queue of one connection or client.
pub(crate) fn command_queue(
    capacity: usize,
    peer: SocketAddr,
) -> (ConnectionHandle, mpsc::Receiver<Command>) {
    let (tx, rx) = mpsc::channel(capacity.max(1));
    (ConnectionHandle { tx, peer }, rx)
}

/// The far end of [`ConnectionHandle::unconnected`]: what a connection would have written.
#[cfg(any(test, feature = "test-util"))]
#[derive(Debug)]
pub struct UnconnectedPeer {
    rx: mpsc::Receiver<Command>,
}

#[cfg(any(test, feature = "test-util"))]
impl ConnectionHandle {
    /// A handle with a queue of `capacity` commands and no connection behind it: a test
    /// takes what is queued from the returned [`UnconnectedPeer`], and dropping that closes
    /// the handle.
    pub fn unconnected(capacity: usize) -> (ConnectionHandle, UnconnectedPeer) {
        let peer = SocketAddr::from(([127, 0, 0, 1], 0));
        let (handle, rx) = command_queue(capacity, peer);
        (handle, UnconnectedPeer { rx })
    }
}

#[cfg(any(test, feature = "test-util"))]
impl UnconnectedPeer {
    /// The next message queued to be sent (batches one by one), or `None` once every handle
    /// is gone. Requests and answers count as their message; shutdowns are acknowledged.
    pub async fn recv(&mut self) -> Option<Message> {
        loop {
            match self.rx.recv().await? {
                Command::Send(m) | Command::Respond { message: m, .. } => return Some(m),
                Command::Request { message, .. } => return Some(message),
                Command::SendBatch(mut ms) => {
                    if !ms.is_empty() {
                        return Some(ms.remove(0));
                    }
                }
                Command::Shutdown(done) => {
                    let _ = done.send(());
                }
            }
        }
    }
}
