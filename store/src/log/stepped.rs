//! The stepped writer: the [`Writer`] driven by calls on the caller's thread instead of a
//! thread of its own, so that a simulator decides when each batch is written and when it
//! becomes durable (see the `log` module docs for the call order).
//!
//! ```text
//!  submit ──► queued ──write_pending──► written ──sync_pending──► durable
//!             (memory)   (one write per   (in the page cache:      (fdatasync; under Sync
//!                         group, as the    survives a process       the callers are
//!                         thread forms     crash, not a power       acknowledged now)
//!                         them)            loss)
//! ```
//!
//! Under `Durability::Sync` a written group is held here, unpublished (readers do not see it
//! and its callers wait), until the fdatasync that covers it; under `Buffered` it is published
//! and acknowledged right after the write. A rotation fdatasyncs the segment it seals, so the
//! groups held then are published at that point.

use std::collections::VecDeque;

use crate::batch::Op;
use crate::error::StoreError;
use crate::log::writer::{Pending, Writer, Written};
use crate::log::Durability;
use crate::store::Completer;

pub(crate) struct Stepped {
    pub writer: Writer,
    /// Batches submitted and not yet written, oldest first.
    queued: VecDeque<Pending>,
    /// Encoded size of `queued`, in bytes (bounded by `max_group_bytes` plus one batch).
    queued_bytes: usize,
    /// Groups written and waiting for their fdatasync to be published (`Sync` only).
    written: Vec<Written>,
    /// Batches written since the last fdatasync, published or not.
    unsynced_batches: usize,
}

impl Stepped {
    pub(crate) fn new(writer: Writer) -> Stepped {
        Stepped {
            writer,
            queued: VecDeque::new(),
            queued_bytes: 0,
            written: Vec::new(),
            unsynced_batches: 0,
        }
    }

    pub(crate) fn queued_batches(&self) -> usize {
        self.queued.len()
    }

    pub(crate) fn unsynced_batches(&self) -> usize {
        self.unsynced_batches
    }

    /// Queues a batch. Once the queue holds `max_group_bytes` it is written (not synced) at
    /// once, as the writer thread would have: that bounds the queue.
    pub(crate) fn submit(&mut self, ops: Vec<Op>, done: Completer) {
        self.queued_bytes += ops.iter().map(Op::encoded_len).sum::<usize>();
        self.queued.push_back((ops, done));
        if self.queued_bytes >= self.writer.shared.options.max_group_bytes {
            // A failure has resolved the callers concerned; the next explicit call reports it.
            let _ = self.write_pending();
        }
    }

    /// Writes every queued batch, in groups of up to `max_group_bytes` as the writer thread
    /// forms them, one write each, without fdatasync. Returns the number of batches written;
    /// on failure every queued batch has been failed and the store is poisoned.
    pub(crate) fn write_pending(&mut self) -> Result<usize, StoreError> {
        let max = self.writer.shared.options.max_group_bytes;
        let mut batches = 0;
        let mut failed = None;
        while let Some(first) = self.queued.pop_front() {
            let mut bytes = first.0.iter().map(Op::encoded_len).sum::<usize>();
            let mut group = vec![first];
            while bytes < max {
                let Some(next) = self.queued.pop_front() else {
                    break;
                };
                bytes += next.0.iter().map(Op::encoded_len).sum::<usize>();
                group.push(next);
            }
            self.queued_bytes = self.queued_bytes.saturating_sub(bytes);
            let written = &mut self.written;
            let unsynced = &mut self.unsynced_batches;
            let result = self.writer.write_group(group, |w, rotated| {
                // The rotation's fdatasync covered every group written so far.
                match rotated {
                    Ok(()) => {
                        written.drain(..).for_each(|g| w.publish(g));
                        *unsynced = 0;
                    }
                    Err(e) => {
                        for g in written.drain(..) {
                            *unsynced = unsynced.saturating_sub(g.batches());
                            g.fail(e);
                        }
                    }
                }
            });
            match result {
                Ok(group) => {
                    batches += group.batches();
                    self.unsynced_batches += group.batches();
                    match self.writer.shared.options.durability {
                        Durability::Sync => self.written.push(group),
                        Durability::Buffered | Durability::Interval(_) => {
                            self.writer.publish(group)
                        }
                    }
                }
                Err(e) => {
                    failed.get_or_insert(e);
                }
            }
        }
        debug_assert!(self.queued.is_empty());
        self.queued_bytes = 0;
        match failed {
            Some(e) => Err(e),
            None => Ok(batches),
        }
    }

    /// Fdatasyncs what was written and publishes the groups it makes durable. Does not write
    /// queued batches. Returns the number of batches it made durable; on failure the groups
    /// waiting for it have been failed and the store is poisoned.
    pub(crate) fn sync_pending(&mut self) -> Result<usize, StoreError> {
        debug_assert!(self.written.is_empty() || self.writer.unsynced);
        let result = self.writer.sync();
        let batches = std::mem::take(&mut self.unsynced_batches);
        match result {
            Ok(()) => {
                for group in self.written.drain(..) {
                    self.writer.publish(group);
                }
                Ok(batches)
            }
            Err(e) => {
                for group in self.written.drain(..) {
                    group.fail(&e);
                }
                Err(e)
            }
        }
    }

    /// Writes and fdatasyncs everything queued: what `flush` and `close` do.
    pub(crate) fn flush(&mut self) -> Result<(), StoreError> {
        let written = self.write_pending();
        let synced = self.sync_pending();
        written.and(synced).map(|_| ())
    }
}
