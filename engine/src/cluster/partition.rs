//! Partitions: which partition an app belongs to, and which live server should own a
//! partition.
//!
//! # The hash
//!
//! Every server of a cluster must compute the same partition for an app and the same
//! preferred owner for a partition, whatever its version, platform or process, so the hash
//! is fixed here rather than taken from `std` (whose `SipHash` keys are random per process
//! and whose algorithm may change): **FNV-1a, 64 bits** (offset basis `0xcbf29ce484222325`,
//! prime `0x100000001b3`) over the bytes, followed by the **SplitMix64 finalizer** (Steele,
//! Lea and Flood, 2014), which spreads FNV's weak low bits over the whole word. Changing
//! either, or [`PARTITION_COUNT`], moves apps between partitions: it is a change of the
//! cluster's data layout, not a setting. A test pins values so that it cannot change by
//! accident.
//!
//! - `partition_of(app)` = `mix(fnv1a(app name as UTF-8)) % PARTITION_COUNT`.
//! - The rendezvous weight of server `s` for partition `p` = `mix(fnv1a(s ‖ 0xff ‖ p as 4
//!   little-endian bytes))` (`0xff` never occurs in a server id, so the split between id and
//!   partition is unambiguous).
//!
//! # Rendezvous hashing
//!
//! The preferred owner of a partition is the live server with the highest weight for it,
//! ties (which need a 64-bit collision) broken by the smaller id (Thaler and Ravishankar,
//! "Using name-based mappings to increase hit rates", 1998). Each partition ranks the servers
//! on its own, so there is nothing to re-hash when servers come and go: a server leaving
//! moves exactly the partitions it was preferred for (each to its runner-up), and a server
//! joining takes exactly the partitions for which it outranks the current winner, about
//! `1/n` of them with `n` servers after the join. The property tests below check both.

use std::fmt;

use super::ServerId;

/// Partitions in a cluster. Fixed: every server must agree on it, and changing it moves
/// apps between partitions.
pub const PARTITION_COUNT: u16 = 64;

/// One of the [`PARTITION_COUNT`] partitions: `0..PARTITION_COUNT`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PartitionId(u16);

impl PartitionId {
    /// Partition `n`, when `n < PARTITION_COUNT`.
    pub fn new(n: u16) -> Option<PartitionId> {
        (n < PARTITION_COUNT).then_some(PartitionId(n))
    }

    /// The partition's number, `0..PARTITION_COUNT`.
    pub fn get(self) -> u16 {
        self.0
    }

    /// The number as an index (into a table of `PARTITION_COUNT` entries).
    pub fn index(self) -> usize {
        usize::from(self.0)
    }

    /// Every partition, in order.
    pub fn all() -> impl Iterator<Item = PartitionId> {
        (0..PARTITION_COUNT).map(PartitionId)
    }
}

impl fmt::Display for PartitionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "partition {}", self.0)
    }
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// FNV-1a, 64 bits, continuing from `state`.
fn fnv1a(mut state: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        state ^= u64::from(b);
        state = state.wrapping_mul(FNV_PRIME);
    }
    state
}

/// The SplitMix64 finalizer: a bijection on `u64` whose every output bit depends on every
/// input bit.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The fixed 64-bit hash of `bytes` (see the module docs).
pub fn stable_hash(bytes: &[u8]) -> u64 {
    mix(fnv1a(FNV_OFFSET, bytes))
}

/// The partition of the app named `app_name`.
pub fn partition_of(app_name: &str) -> PartitionId {
    let n = stable_hash(app_name.as_bytes()) % u64::from(PARTITION_COUNT);
    // The remainder is below PARTITION_COUNT, a u16.
    PartitionId(u16::try_from(n).unwrap_or(0))
}

/// The rendezvous weight of `server` for `partition`.
pub fn weight(server: &ServerId, partition: PartitionId) -> u64 {
    let state = fnv1a(FNV_OFFSET, server.as_str().as_bytes());
    let state = fnv1a(state, &[0xff]);
    mix(fnv1a(state, &u32::from(partition.0).to_le_bytes()))
}

/// The server among `live` that should own `partition`: the highest weight, the smaller id
/// on a tie. `None` when `live` is empty. The order of `live` does not matter.
pub fn preferred_owner(partition: PartitionId, live: &[ServerId]) -> Option<&ServerId> {
    live.iter().max_by(|a, b| {
        weight(a, partition)
            .cmp(&weight(b, partition))
            .then_with(|| b.cmp(a))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    fn sid(s: &str) -> ServerId {
        ServerId::new(s).unwrap()
    }

    fn owners(live: &[ServerId]) -> Vec<ServerId> {
        PartitionId::all()
            .map(|p| preferred_owner(p, live).unwrap().clone())
            .collect()
    }

    /// The hash is part of the cluster's data layout: these values must never change.
    #[test]
    fn hash_values_are_pinned() {
        // FNV-1a's published test vectors, before the finalizer.
        assert_eq!(fnv1a(FNV_OFFSET, b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(FNV_OFFSET, b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(FNV_OFFSET, b"foobar"), 0x8594_4171_f739_67e8);
        let pinned: Vec<(&str, u16)> = ["", "a", "billing", "report-service", "应用"]
            .iter()
            .map(|name| (*name, partition_of(name).get()))
            .collect();
        assert_eq!(pinned, PINNED_PARTITIONS);
        let weights: Vec<u64> = [0, 1, 63]
            .iter()
            .map(|&p| weight(&sid("server-1"), PartitionId::new(p).unwrap()))
            .collect();
        assert_eq!(weights, PINNED_WEIGHTS);
    }

    // Cross-checked against an independent implementation (a few lines of Python).
    const PINNED_PARTITIONS: [(&str, u16); 5] = [
        ("", 27),
        ("a", 56),
        ("billing", 28),
        ("report-service", 40),
        ("应用", 35),
    ];
    const PINNED_WEIGHTS: [u64; 3] = [
        0xc8a6_e4f6_b5f5_406d,
        0x2d17_b785_528f_343d,
        0x2091_3ea2_6a9b_43ce,
    ];

    #[test]
    fn partition_ids_are_bounded() {
        assert_eq!(PartitionId::new(PARTITION_COUNT), None);
        assert_eq!(PartitionId::all().count(), usize::from(PARTITION_COUNT));
        assert_eq!(
            PartitionId::new(PARTITION_COUNT - 1).map(PartitionId::get),
            Some(PARTITION_COUNT - 1)
        );
        assert!(preferred_owner(PartitionId(0), &[]).is_none());
    }

    /// Apps spread over the partitions, and partitions over servers, about evenly.
    #[test]
    fn spread_is_even() {
        let mut per_partition = vec![0u32; usize::from(PARTITION_COUNT)];
        for i in 0..64_000 {
            per_partition[partition_of(&format!("app-{i}")).index()] += 1;
        }
        // 1000 expected per partition; the binomial standard deviation is about 31.
        assert!(
            per_partition.iter().all(|&n| (850..1150).contains(&n)),
            "{per_partition:?}"
        );
        let live: Vec<ServerId> = (0..4).map(|i| sid(&format!("server-{i}"))).collect();
        let owners = owners(&live);
        for s in &live {
            let n = owners.iter().filter(|o| *o == s).count();
            // 16 expected; binomial(64, 1/4) stays within 6..=26 with overwhelming odds, and
            // these names are fixed, so this cannot flake.
            assert!((6..=26).contains(&n), "{s}: {n}");
        }
    }

    /// Adding servers one by one moves, in total, about `sum 64/(k+1)` partitions.
    #[test]
    fn joins_move_about_one_nth() {
        let mut live = vec![sid("node-0")];
        let mut moved = 0usize;
        let mut expected = 0f64;
        for k in 1..32 {
            let before = owners(&live);
            live.push(sid(&format!("node-{k}")));
            let after = owners(&live);
            moved += before.iter().zip(&after).filter(|(a, b)| a != b).count();
            expected += f64::from(PARTITION_COUNT) / f64::from(k + 1);
        }
        let moved = moved as f64;
        assert!(
            moved > expected * 0.75 && moved < expected * 1.25,
            "moved {moved}, expected about {expected}"
        );
    }

    fn server_set() -> impl Strategy<Value = Vec<ServerId>> {
        proptest::collection::btree_set("[a-z0-9.-]{1,12}", 1..12)
            .prop_map(|set: BTreeSet<String>| set.iter().map(|s| sid(s)).collect())
    }

    proptest! {
        /// A server leaving moves exactly its own partitions.
        #[test]
        fn leaving_moves_only_its_partitions(live in server_set(), pick in any::<prop::sample::Index>()) {
            prop_assume!(live.len() >= 2);
            let gone = pick.index(live.len());
            let before = owners(&live);
            let mut rest = live.clone();
            let left = rest.remove(gone);
            let after = owners(&rest);
            for (b, a) in before.iter().zip(&after) {
                if *b == left {
                    prop_assert_ne!(a, &left);
                } else {
                    prop_assert_eq!(a, b);
                }
            }
        }

        /// A server joining takes partitions only for itself, and never more than it wins.
        #[test]
        fn joining_moves_only_to_the_newcomer(live in server_set(), new in "[A-Z]{1,8}") {
            let newcomer = sid(&new);
            let before = owners(&live);
            let mut grown = live.clone();
            grown.push(newcomer.clone());
            let after = owners(&grown);
            for (b, a) in before.iter().zip(&after) {
                prop_assert!(a == b || *a == newcomer, "{b} -> {a}");
            }
        }

        /// The order of the view does not matter.
        #[test]
        fn order_does_not_matter(live in server_set(), seed in any::<u64>()) {
            let mut shuffled = live.clone();
            shuffled.sort_by_key(|s| stable_hash(s.as_str().as_bytes()) ^ seed);
            prop_assert_eq!(owners(&live), owners(&shuffled));
        }
    }
}
