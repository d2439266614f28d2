//! [`IdSet`]: a set of instance ids as a bitmap. The server hands out instance ids from a
//! counter (in blocks, so a restart leaves a gap of at most a block), so the ids a run deletes
//! are dense: a bit per id up to the largest costs an eighth of a byte per instance, where a
//! hash set costs ~16 bytes — the difference between megabytes and gigabytes over ten million
//! instances. Ids beyond [`DENSE_LIMIT`] (never handed out by a simulated server) go to an
//! ordinary set, so a stray id costs no huge bitmap.

use std::collections::BTreeSet;

use crate::ids::InstanceId;

/// Ids below this are kept as bits (at most 128 MiB of bitmap, reached only if the server
/// handed out a billion ids).
const DENSE_LIMIT: u64 = 1 << 30;

/// A set of instance ids (see the module docs).
#[derive(Debug, Default)]
pub(super) struct IdSet {
    words: Vec<u64>,
    sparse: BTreeSet<u64>,
    len: u64,
}

impl IdSet {
    /// Adds `id`; true if it was not there.
    pub(super) fn insert(&mut self, id: InstanceId) -> bool {
        let added = match Self::slot(id) {
            Some((word, bit)) => {
                if self.words.len() <= word {
                    self.words.resize(word + 1, 0);
                }
                match self.words.get_mut(word) {
                    Some(w) if *w & bit == 0 => {
                        *w |= bit;
                        true
                    }
                    _ => false,
                }
            }
            None => self.sparse.insert(id.0),
        };
        if added {
            self.len += 1;
        }
        added
    }

    /// Whether `id` is in the set.
    pub(super) fn contains(&self, id: &InstanceId) -> bool {
        match Self::slot(*id) {
            Some((word, bit)) => self.words.get(word).is_some_and(|w| w & bit != 0),
            None => self.sparse.contains(&id.0),
        }
    }

    /// Ids in the set.
    pub(super) fn len(&self) -> u64 {
        self.len
    }

    /// The word and the bit of `id`, if it is kept as a bit.
    fn slot(id: InstanceId) -> Option<(usize, u64)> {
        if id.0 >= DENSE_LIMIT {
            return None;
        }
        let word = usize::try_from(id.0 / 64).ok()?;
        Some((word, 1u64 << (id.0 % 64)))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn it_answers_as_a_hash_set_does() {
        let mut set = IdSet::default();
        let mut model = HashSet::new();
        let ids = [
            0,
            1,
            63,
            64,
            65,
            1_000_003,
            5,
            64,
            0,
            1 << 20,
            DENSE_LIMIT,
            u64::MAX,
        ];
        for id in ids {
            assert_eq!(set.insert(InstanceId(id)), model.insert(id), "{id}");
            assert_eq!(set.len(), model.len() as u64);
        }
        for id in ids
            .iter()
            .copied()
            .chain([2, 62, 66, 1_000_002, DENSE_LIMIT + 1])
        {
            assert_eq!(set.contains(&InstanceId(id)), model.contains(&id), "{id}");
        }
    }
}
