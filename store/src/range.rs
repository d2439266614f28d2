//! [`KeyRange`]: which keys of a table a scan visits, and [`Scan`], a paging iterator.

use std::ops::{Bound, Range, RangeFrom, RangeFull, RangeInclusive, RangeTo};

use crate::error::StoreError;
use crate::store::{KeyValue, Store};

/// A range of keys, bytewise ordered: `start` and `end` bounds like `std::ops::RangeBounds`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRange {
    /// Lower bound.
    pub start: Bound<Vec<u8>>,
    /// Upper bound.
    pub end: Bound<Vec<u8>>,
}

impl KeyRange {
    /// Every key.
    pub fn all() -> Self {
        KeyRange {
            start: Bound::Unbounded,
            end: Bound::Unbounded,
        }
    }

    /// The keys between two bounds.
    pub fn new(start: Bound<&[u8]>, end: Bound<&[u8]>) -> Self {
        KeyRange {
            start: start.map(<[u8]>::to_vec),
            end: end.map(<[u8]>::to_vec),
        }
    }

    /// Every key starting with `prefix`.
    pub fn prefix(prefix: &[u8]) -> Self {
        KeyRange {
            start: Bound::Included(prefix.to_vec()),
            end: match prefix_successor(prefix) {
                Some(end) => Bound::Excluded(end),
                None => Bound::Unbounded,
            },
        }
    }

    /// True when `key` lies in the range.
    pub fn contains(&self, key: &[u8]) -> bool {
        let above = match &self.start {
            Bound::Included(s) => key >= s.as_slice(),
            Bound::Excluded(s) => key > s.as_slice(),
            Bound::Unbounded => true,
        };
        let below = match &self.end {
            Bound::Included(e) => key <= e.as_slice(),
            Bound::Excluded(e) => key < e.as_slice(),
            Bound::Unbounded => true,
        };
        above && below
    }

    /// True when no key can lie in the range (start after end, or an empty interval).
    ///
    /// `BTreeMap::range` panics on such ranges, so every store checks this first.
    pub fn is_empty(&self) -> bool {
        match (&self.start, &self.end) {
            (Bound::Unbounded, _) | (_, Bound::Unbounded) => false,
            (Bound::Included(s), Bound::Included(e)) => s > e,
            (Bound::Included(s), Bound::Excluded(e))
            | (Bound::Excluded(s), Bound::Included(e))
            | (Bound::Excluded(s), Bound::Excluded(e)) => s >= e,
        }
    }

    /// The bounds as borrowed slices, for `BTreeMap::range`.
    pub fn as_bounds(&self) -> (Bound<&[u8]>, Bound<&[u8]>) {
        (
            self.start.as_ref().map(Vec::as_slice),
            self.end.as_ref().map(Vec::as_slice),
        )
    }

    /// The part of this range strictly after `key` (for paging).
    pub fn after(&self, key: &[u8]) -> KeyRange {
        KeyRange {
            start: Bound::Excluded(key.to_vec()),
            end: self.end.clone(),
        }
    }
}

/// The smallest byte string greater than every string starting with `prefix`, or `None` when
/// there is none (`prefix` empty or all `0xFF`).
fn prefix_successor(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last != u8::MAX {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

impl From<RangeFull> for KeyRange {
    fn from(_: RangeFull) -> Self {
        KeyRange::all()
    }
}

impl<K: AsRef<[u8]>> From<Range<K>> for KeyRange {
    fn from(r: Range<K>) -> Self {
        KeyRange {
            start: Bound::Included(r.start.as_ref().to_vec()),
            end: Bound::Excluded(r.end.as_ref().to_vec()),
        }
    }
}

impl<K: AsRef<[u8]>> From<RangeInclusive<K>> for KeyRange {
    fn from(r: RangeInclusive<K>) -> Self {
        let (s, e) = r.into_inner();
        KeyRange {
            start: Bound::Included(s.as_ref().to_vec()),
            end: Bound::Included(e.as_ref().to_vec()),
        }
    }
}

impl<K: AsRef<[u8]>> From<RangeFrom<K>> for KeyRange {
    fn from(r: RangeFrom<K>) -> Self {
        KeyRange {
            start: Bound::Included(r.start.as_ref().to_vec()),
            end: Bound::Unbounded,
        }
    }
}

impl<K: AsRef<[u8]>> From<RangeTo<K>> for KeyRange {
    fn from(r: RangeTo<K>) -> Self {
        KeyRange {
            start: Bound::Unbounded,
            end: Bound::Excluded(r.end.as_ref().to_vec()),
        }
    }
}

/// Keys per page fetched by [`Scan`].
const SCAN_PAGE: usize = 256;

/// An iterator over a key range of a table, fetching [`Store::range`] pages of 256 entries.
///
/// Keys come in ascending order and each key at most once. The scan is not a snapshot: each
/// page is consistent, but a commit that lands between pages may or may not be seen.
#[derive(Debug)]
pub struct Scan<'a> {
    store: &'a dyn Store,
    table: String,
    range: Option<KeyRange>,
    page: std::vec::IntoIter<KeyValue>,
}

impl<'a> Scan<'a> {
    /// A scan of `range` in `table`.
    pub fn new(store: &'a dyn Store, table: &str, range: impl Into<KeyRange>) -> Self {
        Scan {
            store,
            table: table.to_owned(),
            range: Some(range.into()),
            page: Vec::new().into_iter(),
        }
    }
}

impl Iterator for Scan<'_> {
    type Item = Result<KeyValue, StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(kv) = self.page.next() {
            return Some(Ok(kv));
        }
        let range = self.range.take()?;
        match self.store.range(&self.table, &range, SCAN_PAGE) {
            Err(e) => Some(Err(e)),
            Ok(page) => {
                if page.len() == SCAN_PAGE {
                    if let Some((last, _)) = page.last() {
                        self.range = Some(range.after(last));
                    }
                }
                self.page = page.into_iter();
                self.page.next().map(Ok)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_ranges() {
        assert_eq!(prefix_successor(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_successor(b"a\xff"), Some(b"b".to_vec()));
        assert_eq!(prefix_successor(b"\xff\xff"), None);
        assert_eq!(prefix_successor(b""), None);
        let r = KeyRange::prefix(b"a\xff");
        assert!(r.contains(b"a\xff"));
        assert!(r.contains(b"a\xff\x00"));
        assert!(!r.contains(b"b"));
        assert!(!r.contains(b"a"));
    }

    #[test]
    fn empty_ranges() {
        assert!(KeyRange::from(b"b".as_slice()..b"a".as_slice()).is_empty());
        assert!(KeyRange::from(b"a".as_slice()..b"a".as_slice()).is_empty());
        assert!(!KeyRange::from(b"a".as_slice()..=b"a".as_slice()).is_empty());
        assert!(KeyRange::new(Bound::Excluded(b"a"), Bound::Included(b"a")).is_empty());
        assert!(!KeyRange::all().is_empty());
    }
}
