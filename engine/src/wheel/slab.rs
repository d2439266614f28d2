//! The slab: every timer's entry in one `Vec`, free cells chained in a free list.
//!
//! Inserting reuses the most recently freed cell, so a wheel whose timer count is steady
//! allocates nothing per timer. Cells are addressed by `u32` index, which keeps entries small
//! and bounds the wheel at `u32::MAX - 1` live timers.
//!
//! Invariant: `free_head` chains exactly the vacant cells through their `pos` field;
//! `len` counts the occupied cells.

use std::mem::size_of;

use super::entry::{Entry, ListId};
use super::key::TimerKey;
use super::queue::NIL;

#[derive(Debug)]
pub(super) struct Slab<T> {
    entries: Vec<Entry<T>>,
    free_head: u32,
    len: usize,
}

impl<T> Slab<T> {
    pub(super) fn with_capacity(capacity: usize) -> Self {
        Slab {
            entries: Vec::with_capacity(capacity),
            free_head: NIL,
            len: 0,
        }
    }

    pub(super) fn len(&self) -> usize {
        self.len
    }

    pub(super) fn capacity(&self) -> usize {
        self.entries.capacity()
    }

    pub(super) fn reserve(&mut self, additional: usize) {
        let free = self.entries.len() - self.len;
        self.entries.reserve(additional.saturating_sub(free));
    }

    /// Bytes this slab holds on the heap (its whole capacity, used or not).
    pub(super) fn heap_bytes(&self) -> usize {
        self.entries.capacity() * size_of::<Entry<T>>()
    }

    pub(super) fn entries_mut(&mut self) -> &mut [Entry<T>] {
        &mut self.entries
    }

    #[inline]
    pub(super) fn entry(&self, idx: u32) -> &Entry<T> {
        &self.entries[idx as usize]
    }

    #[inline]
    pub(super) fn entry_mut(&mut self, idx: u32) -> &mut Entry<T> {
        &mut self.entries[idx as usize]
    }

    /// Stores a new, unlinked timer and returns its index and key.
    ///
    /// # Panics
    ///
    /// If `u32::MAX - 1` timers are already live (about 137 GB of entries for `T = u64`), like
    /// `Vec` panics on capacity overflow.
    #[inline]
    pub(super) fn insert(&mut self, value: T) -> (u32, TimerKey) {
        let idx = if self.free_head != NIL {
            let idx = self.free_head;
            let entry = &mut self.entries[idx as usize];
            self.free_head = entry.pos;
            entry.pos = NIL;
            idx
        } else {
            let idx = u32::try_from(self.entries.len())
                .ok()
                .filter(|&idx| idx != NIL)
                .unwrap_or_else(|| panic!("timer wheel is full: {} live timers", self.len));
            self.entries.push(Entry::vacant(NIL));
            idx
        };
        let entry = &mut self.entries[idx as usize];
        entry.value = Some(value);
        entry.list = ListId::Ready; // placeholder until the wheel links it
        self.len += 1;
        let key = TimerKey {
            index: idx,
            generation: entry.generation,
        };
        (idx, key)
    }

    /// The index of the live timer `key` names, or `None` for a stale or unknown key.
    #[inline]
    pub(super) fn lookup(&self, key: TimerKey) -> Option<u32> {
        let entry = self.entries.get(key.index as usize)?;
        (entry.generation == key.generation && entry.list != ListId::Vacant).then_some(key.index)
    }

    /// Frees the (already unlinked) entry at `idx` and returns its key and value.
    #[inline]
    pub(super) fn remove(&mut self, idx: u32) -> Option<(TimerKey, T)> {
        let free_head = self.free_head;
        let entry = self.entries.get_mut(idx as usize)?;
        let value = entry.value.take()?;
        let key = TimerKey {
            index: idx,
            generation: entry.generation,
        };
        entry.generation = entry.generation.wrapping_add(1);
        entry.list = ListId::Vacant;
        entry.pos = free_head;
        self.free_head = idx;
        self.len -= 1;
        Some((key, value))
    }
}
