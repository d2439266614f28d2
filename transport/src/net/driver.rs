//! The per-connection task: moves bytes between a `TcpStream` (plain or inside TLS) and the
//! connection core, and commands and messages between the core and its callers.
//!
//! Each loop turn: drain the core's events (hand messages to the incoming queue, complete
//! request waiters), take every queued byte from the core in one buffer, then wait for the
//! first of: the socket accepted some of that buffer (`write`, cancel-safe), bytes to read,
//! commands to encode (only while the core has room: that is the backpressure), or the core's
//! next deadline.
//!
//! Buffers start small and grow with use: the read buffer starts at 4 KiB and doubles each
//! time a read fills it, up to `NetConfig::read_buffer`, but only once the peer has
//! authenticated (a handshake needs a few hundred bytes); the write buffer holds what the
//! core queued and is released down to 64 KiB whenever the connection has nothing to send.

use std::collections::HashMap;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant as TokioInstant;

use super::handle::{Command, Incoming};
use super::{NetConfig, Stream};
use crate::connection::{Connection, Event, PeerInfo, RETAINED_SEND_CAPACITY};
use crate::error::{ConnectionError, RequestError};
use crate::message::{ErrorCode, Message};

type Waiter = oneshot::Sender<Result<Message, RequestError>>;

/// First size of a connection's read buffer, bytes.
const INITIAL_READ_BUFFER: usize = 4 * 1024;

/// The read buffer's next length after a read of `filled` bytes into `len` bytes: doubled
/// when the read filled it and the peer is authenticated, up to `cap`.
fn next_read_len(len: usize, filled: usize, cap: usize, established: bool) -> usize {
    if established && filled >= len && len < cap {
        len.saturating_mul(2).min(cap)
    } else {
        len
    }
}

fn now() -> std::time::Instant {
    TokioInstant::now().into_std()
}

/// Where a connection's outputs go.
pub(crate) struct DriverIo<'a> {
    pub commands: &'a mut mpsc::Receiver<Command>,
    pub incoming: &'a mpsc::Sender<Incoming>,
    /// Told once: established (with the peer) or failed before that.
    pub established: Option<oneshot::Sender<Result<PeerInfo, ConnectionError>>>,
    /// A command to apply before any from `commands`, once the connection can send.
    pub first: &'a mut Option<Command>,
}

/// How a driver run ended.
#[derive(Debug)]
pub(crate) struct DriverExit {
    pub error: ConnectionError,
    /// A caller asked for shutdown (or every handle is gone): do not reconnect.
    pub shutdown: bool,
}

/// Runs one connection to its end.
pub(crate) async fn drive(
    stream: Stream,
    conn: Connection,
    io: DriverIo<'_>,
    config: &NetConfig,
) -> DriverExit {
    match stream {
        Stream::Plain(tcp) => {
            let (rd, wr) = tcp.into_split();
            drive_halves(rd, wr, false, conn, io, config).await
        }
        Stream::Tls(tls) => {
            let (rd, wr) = tokio::io::split(*tls);
            drive_halves(rd, wr, true, conn, io, config).await
        }
    }
}

/// [`drive`] over the two halves of a stream. With `flush_writes`, a write that emptied the
/// buffer is followed by a flush: a TLS writer may keep encrypted records of it until then.
async fn drive_halves<R, W>(
    mut rd: R,
    mut wr: W,
    flush_writes: bool,
    mut conn: Connection,
    io: DriverIo<'_>,
    config: &NetConfig,
) -> DriverExit
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let DriverIo {
        commands,
        incoming,
        mut established,
        first,
    } = io;
    let mut unflushed = false;
    let read_cap = config.read_buffer.max(1024);
    let mut read_buf = vec![0u8; INITIAL_READ_BUFFER.min(read_cap)];
    let mut write_buf: Vec<u8> = Vec::new();
    let mut write_pos = 0usize;
    let mut waiters: HashMap<u64, Waiter> = HashMap::new();
    let mut shutdown_waiters: Vec<oneshot::Sender<()>> = Vec::new();
    let mut read_open = true;
    let mut shutdown = false;
    let mut closed: Option<ConnectionError> = None;
    let batch_limit = config.max_batch.max(1);
    // Grown on demand, to what this connection's bursts need (at most `max_batch` commands
    // of ~400 bytes): reserved up front, it took ~400 KiB for every connection, also for
    // those that never send a thing (every pre-authentication one).
    let mut batch: Vec<Command> = Vec::new();

    loop {
        while let Some(event) = conn.poll_event() {
            match event {
                Event::Established(info) => {
                    if let Some(tx) = established.take() {
                        let _ = tx.send(Ok(info));
                    }
                }
                Event::Message {
                    correlation,
                    message,
                } => {
                    // Waiting here stops reading: a slow consumer slows the peer down
                    // instead of growing memory. `try_send` first: the common case needs no
                    // await point.
                    let delivered = match incoming.try_send(Incoming {
                        correlation,
                        message,
                    }) {
                        Ok(()) => true,
                        Err(mpsc::error::TrySendError::Full(item)) => {
                            incoming.send(item).await.is_ok()
                        }
                        Err(mpsc::error::TrySendError::Closed(_)) => false,
                    };
                    if !delivered {
                        if let Some(c) = correlation {
                            // Counted as a reply the connection sends on its own, so a peer
                            // that floods requests without reading is cut off.
                            let _ = conn.refuse(
                                now(),
                                c,
                                ErrorCode::Internal,
                                "nobody handles incoming messages here",
                            );
                        }
                    }
                }
                Event::Response { request, result } => {
                    if let Some(w) = waiters.remove(&request) {
                        let _ = w.send(result);
                    }
                }
                Event::Closed(error) => closed = Some(error),
            }
        }

        if first.is_some() && !shutdown && conn.can_send() {
            if let Some(c) = first.take() {
                apply(
                    &mut conn,
                    now(),
                    c,
                    &mut waiters,
                    &mut shutdown_waiters,
                    &mut shutdown,
                );
            }
        }

        // Over TLS, the next bytes are taken once the last ones are flushed, so that
        // `handle_transmitted` always speaks of the bytes it was handed.
        if write_pos >= write_buf.len() && !unflushed {
            write_buf.clear();
            write_pos = 0;
            if conn.poll_transmit(now(), &mut write_buf) == 0
                && write_buf.capacity() > RETAINED_SEND_CAPACITY
            {
                // Nothing to send: release what a burst grew (the core does the same).
                write_buf = Vec::new();
            }
        }

        if let Some(error) = closed.take() {
            // Flush what is queued (the close frame last), bounded in time; not to a peer
            // known not to read.
            let rest = write_buf.get(write_pos..).unwrap_or_default();
            if !matches!(
                error,
                ConnectionError::PeerNotReading { .. } | ConnectionError::ControlQueueFull { .. }
            ) {
                let flush = async {
                    wr.write_all(rest).await?;
                    conn.handle_transmitted(now());
                    let mut tail = Vec::new();
                    conn.poll_transmit(now(), &mut tail);
                    wr.write_all(&tail).await?;
                    wr.shutdown().await
                };
                let _ = tokio::time::timeout(config.close_flush_timeout, flush).await;
            }
            conn.handle_transmitted(now());
            for (_, w) in waiters.drain() {
                let _ = w.send(Err(RequestError::ConnectionLost(error.to_string())));
            }
            if let Some(tx) = established.take() {
                let _ = tx.send(Err(error.clone()));
            }
            for w in shutdown_waiters {
                let _ = w.send(());
            }
            return DriverExit { error, shutdown };
        }

        let deadline = conn.poll_timeout().map(TokioInstant::from_std);
        let accept_commands = !shutdown && conn.can_send();
        let pending_write = write_buf.get(write_pos..).unwrap_or_default();

        tokio::select! {
            biased;
            out = write_or_flush(&mut wr, pending_write), if !pending_write.is_empty() || unflushed => {
                match out {
                    Out::Wrote(Ok(0)) => conn.handle_eof(now()),
                    Out::Wrote(Ok(n)) => {
                        write_pos = write_pos.saturating_add(n);
                        if write_pos >= write_buf.len() {
                            if flush_writes {
                                unflushed = true;
                            } else {
                                conn.handle_transmitted(now());
                            }
                        }
                    }
                    Out::Flushed(Ok(())) => {
                        unflushed = false;
                        conn.handle_transmitted(now());
                    }
                    Out::Wrote(Err(e)) | Out::Flushed(Err(e)) => {
                        closed = Some(ConnectionError::Io(format!("write: {e}")));
                    }
                }
            }
            read = rd.read(&mut read_buf), if read_open => {
                match read {
                    Ok(0) => {
                        read_open = false;
                        conn.handle_eof(now());
                    }
                    Ok(n) => {
                        conn.handle_input(now(), read_buf.get(..n).unwrap_or_default());
                        let len = next_read_len(read_buf.len(), n, read_cap, conn.is_established());
                        if len != read_buf.len() {
                            read_buf.resize(len, 0);
                        }
                    }
                    Err(e) => closed = Some(ConnectionError::Io(format!("read: {e}"))),
                }
            }
            received = commands.recv_many(&mut batch, batch_limit), if accept_commands => {
                let t = now();
                if received == 0 {
                    // Every handle is gone: nobody can send or wait any more.
                    shutdown = true;
                    conn.close(t, ErrorCode::ShuttingDown, "all handles dropped");
                }
                // Coalesce: everything taken goes into one buffer, hence one write. The core
                // may go over its soft limit by at most one batch.
                for c in batch.drain(..) {
                    apply(&mut conn, t, c, &mut waiters, &mut shutdown_waiters, &mut shutdown);
                }
            }
            _ = sleep_until(deadline), if deadline.is_some() => {
                conn.handle_timeout(now());
            }
        }
    }
}

enum Out {
    Wrote(std::io::Result<usize>),
    Flushed(std::io::Result<()>),
}

/// Writes `pending`, or flushes when nothing is pending. Cancel-safe, like `write` and
/// `flush`: a cancelled flush leaves its rest to the next one.
async fn write_or_flush<W: AsyncWrite + Unpin>(wr: &mut W, pending: &[u8]) -> Out {
    if pending.is_empty() {
        Out::Flushed(wr.flush().await)
    } else {
        Out::Wrote(wr.write(pending).await)
    }
}

async fn sleep_until(deadline: Option<TokioInstant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

fn apply(
    conn: &mut Connection,
    now: std::time::Instant,
    command: Command,
    waiters: &mut HashMap<u64, Waiter>,
    shutdown_waiters: &mut Vec<oneshot::Sender<()>>,
    shutdown: &mut bool,
) {
    match command {
        Command::Send(m) => {
            if let Err(e) = conn.send_accepted(now, &m) {
                tracing::warn!(error = %e, kind = %m.kind(), "message dropped");
            }
        }
        Command::SendBatch(ms) => {
            for m in &ms {
                if let Err(e) = conn.send_accepted(now, m) {
                    tracing::warn!(error = %e, kind = %m.kind(), "message dropped");
                }
            }
        }
        Command::Request {
            message,
            timeout,
            reply,
        } => match conn.request_accepted(now, &message, timeout) {
            Ok(id) => {
                waiters.insert(id, reply);
            }
            Err(e) => {
                let _ = reply.send(Err(RequestError::Send(e)));
            }
        },
        Command::Respond {
            correlation,
            message,
        } => {
            if let Err(e) = conn.respond(now, correlation, &message) {
                tracing::warn!(error = %e, correlation, "response dropped");
            }
        }
        Command::Shutdown(done) => {
            *shutdown = true;
            shutdown_waiters.push(done);
            conn.close(now, ErrorCode::ShuttingDown, "shutting down");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::next_read_len;

    #[test]
    fn the_read_buffer_grows_only_when_filled_and_only_after_authentication() {
        let cap = 64 * 1024;
        assert_eq!(next_read_len(4096, 4096, cap, false), 4096, "handshaking");
        assert_eq!(next_read_len(4096, 4095, cap, true), 4096, "not filled");
        assert_eq!(next_read_len(4096, 4096, cap, true), 8192);
        assert_eq!(next_read_len(48 * 1024, 48 * 1024, cap, true), cap);
        assert_eq!(next_read_len(cap, cap, cap, true), cap, "capped");
        let mut len = 4096;
        for _ in 0..10 {
            len = next_read_len(len, len, cap, true);
        }
        assert_eq!(len, cap);
    }
}
