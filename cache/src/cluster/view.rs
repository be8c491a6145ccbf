//! Who is in the cluster: the current view of its serving members, and
//! the views before it, kept for the handoff time so a block's new owner
//! can ask its previous owner before the store.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::ring::{self, Candidate};
use crate::metrics as m;

/// A member as every node sees it (the heartbeat record).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub id: String,
    /// `host:port` of its peer endpoint.
    pub address: String,
    pub weight: u32,
    pub block_size: u64,
    pub protocol_min: u32,
    pub protocol_max: u32,
    /// Fingerprint of its store map (logical name -> concrete store).
    pub stores: String,
    /// When it last announced itself (ms since the epoch; 0 for static).
    #[serde(default)]
    pub heartbeat_ms: i64,
    /// New at every start of the node: a restarted node is a new
    /// incarnation, whose earlier failures are forgotten at once.
    #[serde(default)]
    pub incarnation: String,
    /// Bytes its tiers hold (memory + disk; 0: unknown).
    #[serde(default)]
    pub capacity: u64,
    /// Its peer endpoint speaks TLS. Carried in every heartbeat, so a
    /// cluster switched to TLS one node at a time keeps reaching each
    /// node the way it serves.
    #[serde(default)]
    pub tls: bool,
}

impl Member {
    /// The base URL of its peer endpoint.
    pub fn base_url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.address)
    }
}

/// The serving members at one moment, by id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct View {
    pub members: Vec<Member>,
}

impl View {
    pub fn new(mut members: Vec<Member>) -> View {
        members.sort_by(|a, b| a.id.cmp(&b.id));
        members.dedup_by(|a, b| a.id == b.id);
        View { members }
    }

    fn candidates(&self) -> Vec<Candidate<'_>> {
        self.members
            .iter()
            .map(|m| Candidate {
                id: &m.id,
                weight: m.weight,
            })
            .collect()
    }

    /// Members with weight, best first for `key`.
    pub fn ranked(&self, key: &[u8]) -> Vec<&Member> {
        ring::ranked(&self.candidates(), key)
            .into_iter()
            .filter_map(|id| self.get(id))
            .collect()
    }

    /// What the serving members' tiers hold together; 0 when any is
    /// unknown (static membership).
    pub fn capacity(&self) -> u64 {
        let serving = self.members.iter().filter(|m| m.weight > 0);
        if serving.clone().any(|m| m.capacity == 0) {
            return 0;
        }
        serving.map(|m| m.capacity).sum()
    }

    pub fn get(&self, id: &str) -> Option<&Member> {
        self.members.iter().find(|m| m.id == id)
    }

    /// Each member's expected share of the blocks (its weight over the
    /// total), by id.
    pub fn shares(&self) -> Vec<(String, f64)> {
        let total: u64 = self.members.iter().map(|m| u64::from(m.weight)).sum();
        self.members
            .iter()
            .map(|m| {
                let share = if total == 0 {
                    0.0
                } else {
                    f64::from(m.weight) / total as f64
                };
                (m.id.clone(), share)
            })
            .collect()
    }

    /// The same members with the same weights and addresses (heartbeat
    /// times aside).
    fn same_as(&self, other: &View) -> bool {
        self.members.len() == other.members.len()
            && self.members.iter().zip(&other.members).all(|(a, b)| {
                a.id == b.id
                    && a.weight == b.weight
                    && a.address == b.address
                    && a.incarnation == b.incarnation
            })
    }
}

/// At most this many earlier views are kept, however many changes the
/// handoff time sees (a rolling restart of a large cluster).
const MAX_PREVIOUS: usize = 16;

/// The current view and the earlier ones.
pub struct Membership {
    current: RwLock<Arc<View>>,
    previous: Mutex<VecDeque<(Arc<View>, Instant)>>,
    handoff: Duration,
}

impl Membership {
    pub fn new(initial: View, handoff: Duration) -> Membership {
        let membership = Membership {
            current: RwLock::new(Arc::new(initial)),
            previous: Mutex::new(VecDeque::new()),
            handoff,
        };
        membership.publish_shares();
        membership
    }

    pub fn current(&self) -> Arc<View> {
        match self.current.read() {
            Ok(view) => view.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Earlier views still within the handoff time, newest first.
    pub fn previous(&self) -> Vec<Arc<View>> {
        let Ok(mut previous) = self.previous.lock() else {
            return Vec::new();
        };
        let now = Instant::now();
        previous.retain(|(_, replaced)| now.duration_since(*replaced) < self.handoff);
        previous.iter().map(|(view, _)| view.clone()).collect()
    }

    /// Installs `next` if it differs from the current view (the current one
    /// becomes the newest earlier view). Returns the ids of members that
    /// joined or came back as a new incarnation (empty: nothing changed
    /// but perhaps weights).
    pub fn update(&self, next: View) -> Option<Vec<String>> {
        let Ok(mut current) = self.current.write() else {
            return None;
        };
        if current.same_as(&next) {
            // Keep heartbeat times fresh for `cluster status`.
            *current = Arc::new(next);
            return None;
        }
        let arrived: Vec<String> = next
            .members
            .iter()
            .filter(|m| {
                current
                    .get(&m.id)
                    .is_none_or(|old| old.incarnation != m.incarnation)
            })
            .map(|m| m.id.clone())
            .collect();
        let old = std::mem::replace(&mut *current, Arc::new(next));
        drop(current);
        if let Ok(mut previous) = self.previous.lock() {
            previous.push_front((old, Instant::now()));
            previous.truncate(MAX_PREVIOUS);
        }
        metrics::counter!(m::CLUSTER_MEMBERSHIP_CHANGES).increment(1);
        self.publish_shares();
        Some(arrived)
    }

    fn publish_shares(&self) {
        for (id, share) in self.current().shares() {
            metrics::gauge!(m::CLUSTER_EXPECTED_SHARE, "node" => id).set(share);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn member(id: &str, weight: u32) -> Member {
        Member {
            id: id.into(),
            address: format!("{id}:9002"),
            weight,
            block_size: 4 << 20,
            protocol_min: 1,
            protocol_max: 1,
            stores: "f".into(),
            heartbeat_ms: 0,
            incarnation: String::new(),
            capacity: 0,
            tls: false,
        }
    }

    #[test]
    fn earlier_views_are_kept_newest_first_and_only_on_change() {
        let membership =
            Membership::new(View::new(vec![member("a", 100)]), Duration::from_secs(60));
        assert_eq!(membership.update(View::new(vec![member("a", 100)])), None);
        assert!(membership.previous().is_empty());
        assert_eq!(
            membership.update(View::new(vec![member("a", 100), member("b", 100)])),
            Some(vec!["b".to_string()])
        );
        assert_eq!(
            membership.update(View::new(vec![member("a", 0), member("b", 100)])),
            Some(vec![])
        );
        let restarted = Member {
            incarnation: "2".into(),
            ..member("b", 100)
        };
        assert_eq!(
            membership.update(View::new(vec![member("a", 0), restarted])),
            Some(vec!["b".to_string()])
        );
        let previous = membership.previous();
        assert_eq!(previous.len(), 3);
        assert_eq!(previous[1].members.len(), 2, "newest first");
        assert_eq!(previous[2].members.len(), 1);
        assert_eq!(membership.current().get("a").map(|m| m.weight), Some(0));
    }

    #[test]
    fn earlier_views_expire_after_the_handoff_time() {
        let membership = Membership::new(View::new(vec![member("a", 1)]), Duration::ZERO);
        membership.update(View::new(vec![member("b", 1)]));
        assert!(membership.previous().is_empty());
    }

    #[test]
    fn shares_follow_weights() {
        let view = View::new(vec![member("a", 100), member("b", 300), member("c", 0)]);
        let shares: std::collections::HashMap<_, _> = view.shares().into_iter().collect();
        assert_eq!(shares["a"], 0.25);
        assert_eq!(shares["b"], 0.75);
        assert_eq!(shares["c"], 0.0);
    }
}
