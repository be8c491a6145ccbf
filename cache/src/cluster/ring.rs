//! Owner choice: weighted rendezvous (highest random weight) hashing.
//!
//! Each member scores each block key with `-weight / ln(h)`, `h` a hash of
//! (member, key) mapped into (0, 1); the R highest scores own the block.
//! This gives each member a share proportional to its weight, and changing
//! the members or one weight moves only the keys whose top R change: a key
//! never moves between two members whose scores did not change. Weight 0
//! owns nothing.

use xxhash_rust::xxh3::xxh3_64_with_seed;

/// A member as owner choice sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate<'a> {
    pub id: &'a str,
    pub weight: u32,
}

/// The score of `member` for `key`; higher wins.
pub fn score(member: &str, weight: u32, key: &[u8]) -> f64 {
    if weight == 0 {
        return f64::NEG_INFINITY;
    }
    // Seeding by the member's own hash makes (member, key) one hash input
    // without building a buffer for every score.
    let seed = xxh3_64_with_seed(member.as_bytes(), 0x6665_7272_7921);
    let h = xxh3_64_with_seed(key, seed);
    // Into (0, 1): never 0 (ln would be -inf) and never 1 (ln 0).
    let unit = (h as f64 + 0.5) / 18_446_744_073_709_551_616.0;
    -f64::from(weight) / unit.ln()
}

/// Members with weight above 0, best first for `key`: the first R are its
/// owners, and the rest are the order in which others stand in for them.
/// Ties (practically impossible) go to the smaller id.
pub fn ranked<'a>(members: &[Candidate<'a>], key: &[u8]) -> Vec<&'a str> {
    let mut scored: Vec<(f64, &'a str)> = members
        .iter()
        .filter(|m| m.weight > 0)
        .map(|m| (score(m.id, m.weight, key), m.id))
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(b.1)));
    scored.into_iter().map(|(_, id)| id).collect()
}

/// The `replicas` owners of `key`, best first (fewer if fewer members
/// have weight).
pub fn owners<'a>(members: &[Candidate<'a>], key: &[u8], replicas: usize) -> Vec<&'a str> {
    let mut all = ranked(members, key);
    all.truncate(replicas);
    all
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use proptest::prelude::*;

    use super::*;

    const KEYS: usize = 100_000;

    fn key(i: usize) -> Vec<u8> {
        format!(
            "data\u{0}blobs/{i:08}\u{0}\u{0}4194304\u{0}{}\u{0}4194304",
            i % 97
        )
        .into_bytes()
    }

    fn members<'a>(spec: &[(&'a str, u32)]) -> Vec<Candidate<'a>> {
        spec.iter()
            .map(|&(id, weight)| Candidate { id, weight })
            .collect()
    }

    fn shares(spec: &[(&str, u32)]) -> HashMap<String, f64> {
        let members = members(spec);
        let mut counts: HashMap<String, usize> = HashMap::new();
        for i in 0..KEYS {
            if let Some(owner) = owners(&members, &key(i), 1).first() {
                *counts.entry((*owner).to_string()).or_default() += 1;
            }
        }
        counts
            .into_iter()
            .map(|(id, n)| (id, n as f64 / KEYS as f64))
            .collect()
    }

    #[test]
    fn shares_follow_weights_100_200_300() {
        let got = shares(&[("a", 100), ("b", 200), ("c", 300)]);
        for (id, expected) in [("a", 1.0 / 6.0), ("b", 2.0 / 6.0), ("c", 3.0 / 6.0)] {
            let share = got.get(id).copied().unwrap_or(0.0);
            assert!(
                (share - expected).abs() <= 0.05 * expected,
                "{id}: share {share:.4}, expected {expected:.4} within 5%"
            );
        }
    }

    #[test]
    fn weight_zero_owns_nothing() {
        let got = shares(&[("a", 100), ("drained", 0), ("c", 100)]);
        assert!(!got.contains_key("drained"));
        let members = members(&[("a", 0), ("b", 0)]);
        assert!(owners(&members, b"k", 2).is_empty());
    }

    /// Owners of every key under two member lists.
    fn moves(before: &[(&str, u32)], after: &[(&str, u32)]) -> Vec<(String, String)> {
        let (b, a) = (members(before), members(after));
        (0..KEYS)
            .filter_map(|i| {
                let k = key(i);
                let old = owners(&b, &k, 1).first().map(|s| s.to_string())?;
                let new = owners(&a, &k, 1).first().map(|s| s.to_string())?;
                (old != new).then_some((old, new))
            })
            .collect()
    }

    #[test]
    fn adding_a_node_moves_keys_only_to_it() {
        let before = [("a", 100), ("b", 200), ("c", 300)];
        let after = [("a", 100), ("b", 200), ("c", 300), ("d", 200)];
        let moved = moves(&before, &after);
        assert!(
            moved.iter().all(|(_, to)| to == "d"),
            "a key moved between old nodes"
        );
        // d's expected share is 2/8.
        let share = moved.len() as f64 / KEYS as f64;
        assert!((share - 0.25).abs() < 0.0125, "d took {share:.4}");
    }

    #[test]
    fn removing_a_node_moves_only_its_keys() {
        let before = [("a", 100), ("b", 200), ("c", 300)];
        let after = [("a", 100), ("c", 300)];
        assert!(moves(&before, &after).iter().all(|(from, _)| from == "b"));
    }

    #[test]
    fn changing_one_weight_moves_keys_only_to_or_from_it() {
        let before = [("a", 100), ("b", 200), ("c", 300)];
        let up = [("a", 100), ("b", 400), ("c", 300)];
        assert!(moves(&before, &up).iter().all(|(_, to)| to == "b"));
        let down = [("a", 100), ("b", 50), ("c", 300)];
        assert!(moves(&before, &down).iter().all(|(from, _)| from == "b"));
        let drained = [("a", 100), ("b", 0), ("c", 300)];
        let moved = moves(&before, &drained);
        assert!(moved.iter().all(|(from, _)| from == "b"));
        assert!(!moved.is_empty());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn replicas_are_distinct_and_a_prefix_of_the_ranking(
            weights in proptest::collection::vec(0u32..500, 1..9),
            replicas in 1usize..5,
            k in any::<u64>(),
        ) {
            let ids: Vec<String> = (0..weights.len()).map(|i| format!("n{i}")).collect();
            let members: Vec<Candidate> = ids
                .iter()
                .zip(&weights)
                .map(|(id, &weight)| Candidate { id, weight })
                .collect();
            let key = k.to_be_bytes();
            let chosen = owners(&members, &key, replicas);
            let serving = weights.iter().filter(|&&w| w > 0).count();
            prop_assert_eq!(chosen.len(), replicas.min(serving));
            let mut unique = chosen.clone();
            unique.sort_unstable();
            unique.dedup();
            prop_assert_eq!(unique.len(), chosen.len());
            let ranking = ranked(&members, &key);
            prop_assert_eq!(&ranking[..chosen.len()], &chosen[..]);
            for id in &chosen {
                let w = members.iter().find(|m| m.id == *id).map(|m| m.weight);
                prop_assert!(w.is_some_and(|w| w > 0));
            }
        }

        #[test]
        fn a_key_never_moves_between_unchanged_members(
            weights in proptest::collection::vec(1u32..500, 2..7),
            changed in any::<prop::sample::Index>(),
            new_weight in 0u32..800,
            k in any::<u64>(),
        ) {
            let ids: Vec<String> = (0..weights.len()).map(|i| format!("n{i}")).collect();
            let at = changed.index(weights.len());
            let before: Vec<Candidate> = ids.iter().zip(&weights)
                .map(|(id, &weight)| Candidate { id, weight }).collect();
            let mut after = before.clone();
            after[at].weight = new_weight;
            let key = k.to_be_bytes();
            let old = owners(&before, &key, 1);
            let new = owners(&after, &key, 1);
            if old != new {
                let touched = ids[at].as_str();
                prop_assert!(old.first() == Some(&touched) || new.first() == Some(&touched));
            }
        }
    }
}
