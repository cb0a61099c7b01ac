//! Where each feed should run: rendezvous (highest random weight) hashing
//! over the live replicas, with bounded loads.
//!
//! Every replica computes the same answer from the same feed names and
//! replica names, with no messages between them. Each feed ranks the
//! replicas by a hash of (feed, replica); feeds are then placed in name
//! order, each on the first replica of its ranking that has fewer than
//! `ceil(feeds / replicas)` feeds. So the spread is even (30 feeds on 3
//! replicas: 10 each), and when a replica comes or goes mostly the feeds
//! that ranked it first move. The answer is a hint: a feed runs where its
//! lease is held, and leases follow the hint (see `mod.rs`).
//!
//! The hash is FNV-1a with a final mix, written here so that it never
//! changes between builds or Rust versions (replicas of different builds
//! must agree).

use std::collections::BTreeMap;

/// FNV-1a over `feed`, a separator and `replica`, then splitmix64's finaliser.
pub(crate) fn weight(feed: &str, replica: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in feed.bytes().chain([0xff]).chain(replica.bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash ^= hash >> 30;
    hash = hash.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    hash ^= hash >> 27;
    hash = hash.wrapping_mul(0x94d0_49bb_1331_11eb);
    hash ^ (hash >> 31)
}

/// The replica each feed should run on. `replicas` must not be empty for
/// any feed to be placed; both lists may come in any order.
pub(crate) fn place<'a>(feeds: &[&'a str], replicas: &[&'a str]) -> BTreeMap<&'a str, &'a str> {
    let mut placement = BTreeMap::new();
    if replicas.is_empty() {
        return placement;
    }
    let capacity = feeds.len().div_ceil(replicas.len());
    let mut load: BTreeMap<&str, usize> = replicas.iter().map(|replica| (*replica, 0)).collect();
    let mut sorted: Vec<&str> = feeds.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    for feed in sorted {
        let mut ranking: Vec<&str> = replicas.to_vec();
        ranking
            .sort_unstable_by_key(|replica| (std::cmp::Reverse(weight(feed, replica)), *replica));
        let chosen = ranking
            .iter()
            .copied()
            .find(|replica| load.get(replica).is_some_and(|count| *count < capacity))
            .unwrap_or(ranking[0]);
        *load.entry(chosen).or_default() += 1;
        placement.insert(feed, chosen);
    }
    placement
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(prefix: &str, count: usize) -> Vec<String> {
        (0..count).map(|index| format!("{prefix}{index}")).collect()
    }

    fn counts<'a>(placement: &BTreeMap<&'a str, &'a str>) -> BTreeMap<&'a str, usize> {
        let mut counts = BTreeMap::new();
        for replica in placement.values() {
            *counts.entry(*replica).or_default() += 1;
        }
        counts
    }

    #[test]
    fn thirty_feeds_on_three_replicas_are_ten_each() {
        let feeds = names("feed-", 30);
        let feeds: Vec<&str> = feeds.iter().map(String::as_str).collect();
        let placement = place(&feeds, &["a", "b", "c"]);
        assert_eq!(placement.len(), 30);
        assert!(counts(&placement).values().all(|count| *count == 10), "{placement:?}");
    }

    #[test]
    fn the_order_of_the_lists_does_not_matter() {
        let feeds = names("f", 17);
        let mut feeds: Vec<&str> = feeds.iter().map(String::as_str).collect();
        let first = place(&feeds, &["x", "y", "z", "w"]).into_iter().collect::<Vec<_>>();
        feeds.reverse();
        let second = place(&feeds, &["w", "z", "x", "y"]).into_iter().collect::<Vec<_>>();
        assert_eq!(first, second);
    }

    #[test]
    fn a_replica_leaving_moves_few_feeds_of_the_others() {
        let feeds = names("feed-", 300);
        let feeds: Vec<&str> = feeds.iter().map(String::as_str).collect();
        let before = place(&feeds, &["a", "b", "c"]);
        let after = place(&feeds, &["a", "b"]);
        let moved_from_survivors = before
            .iter()
            .filter(|(feed, replica)| **replica != "c" && after[**feed] != **replica)
            .count();
        // Only c's 100 feeds must move; bounded loads move a few more, never most.
        assert!(moved_from_survivors < 60, "{moved_from_survivors} of the survivors' feeds moved");
        assert!(after.values().all(|replica| *replica != "c"));
    }

    #[test]
    fn no_replicas_places_nothing() {
        assert!(place(&["a"], &[]).is_empty());
    }

    /// `weight("stocks", "replica-1")` as first computed: a change of the hash fails here.
    const PINNED: u64 = 17_845_976_418_983_151_794;

    #[test]
    fn the_weight_is_stable() {
        // Replicas of different builds must agree: the hash is fixed.
        assert_eq!(weight("stocks", "replica-1"), weight("stocks", "replica-1"));
        assert_ne!(weight("stocks", "replica-1"), weight("stocks", "replica-2"));
        assert_eq!(weight("stocks", "replica-1"), PINNED);
    }
}
