//! What `/status/data` answers: the members as this node sees them, with
//! their shares and health, and every node's recent samples. The status
//! page and `ferry stats` read it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::Status;
use super::history::WINDOW;
use super::sample::{Sample, Tiers};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatusView {
    /// The node answering.
    pub node: String,
    pub now_ms: i64,
    pub interval_ms: u64,
    pub window_ms: u64,
    /// `None`: a node outside any cluster.
    pub cluster: Option<ClusterInfo>,
    pub members: Vec<MemberView>,
    /// Every node's samples taken after the `since` asked for.
    pub samples: BTreeMap<String, Vec<Sample>>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClusterInfo {
    pub replicas: usize,
    /// Membership by heartbeats in Redis (else a static list).
    pub dynamic: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MemberView {
    pub id: String,
    /// The node answering.
    pub this: bool,
    /// In the current view of the cluster (else: seen in the last quarter
    /// hour, gone since).
    pub member: bool,
    pub weight: Option<u32>,
    /// Its share of the blocks by weight, and its share of the bytes the
    /// members' tiers hold now.
    pub expected_share: Option<f64>,
    pub actual_share: Option<f64>,
    pub cached_bytes: u64,
    pub tiers: Option<Tiers>,
    /// Since its last heartbeat (`None`: static membership).
    pub heartbeat_age_ms: Option<i64>,
    /// This node routes around it now (it failed to answer).
    pub routed_around: bool,
    /// New at every restart.
    pub incarnation: String,
    /// Since its newest sample held here (`None`: none yet).
    pub sample_age_ms: Option<i64>,
}

impl Status {
    /// The view of the cluster with the samples taken after `since_ms`.
    pub fn view(&self, since_ms: i64) -> StatusView {
        let now = ferry_meta::now_millis();
        self.viewed(now);
        let latest = self.history.latest();
        let cached = |id: &str| {
            latest
                .get(id)
                .map_or(0, |s| s.tiers.memory_used + s.tiers.disk_used)
        };
        let mut members: Vec<MemberView> = Vec::new();
        let cluster = self.cluster.as_ref().map(|cluster| {
            let view = cluster.node.membership.current();
            let shares: BTreeMap<String, f64> = view.shares().into_iter().collect();
            for m in &view.members {
                members.push(MemberView {
                    id: m.id.clone(),
                    this: m.id == self.node,
                    member: true,
                    weight: Some(m.weight),
                    expected_share: shares.get(&m.id).copied(),
                    actual_share: None,
                    cached_bytes: cached(&m.id),
                    tiers: latest.get(&m.id).map(|s| s.tiers),
                    heartbeat_age_ms: (m.heartbeat_ms > 0).then(|| now - m.heartbeat_ms),
                    routed_around: m.id != self.node && cluster.node.client.is_down(&m.id),
                    incarnation: m.incarnation.clone(),
                    sample_age_ms: latest.get(&m.id).map(|s| now - s.at_ms),
                });
            }
            ClusterInfo {
                replicas: cluster.node.replicas,
                dynamic: cluster.redis().is_some(),
            }
        });
        // This node (a client-only node, or one outside a cluster), and
        // nodes seen in the window that left the view.
        for (id, sample) in &latest {
            if members.iter().any(|m| &m.id == id) {
                continue;
            }
            members.push(MemberView {
                id: id.clone(),
                this: *id == self.node,
                member: false,
                weight: None,
                expected_share: None,
                actual_share: None,
                cached_bytes: cached(id),
                tiers: Some(sample.tiers),
                heartbeat_age_ms: None,
                routed_around: false,
                incarnation: String::new(),
                sample_age_ms: Some(now - sample.at_ms),
            });
        }
        let held: u64 = members
            .iter()
            .filter(|m| m.member)
            .map(|m| m.cached_bytes)
            .sum();
        for m in members.iter_mut().filter(|m| m.member) {
            m.actual_share = (held > 0).then(|| m.cached_bytes as f64 / held as f64);
        }
        StatusView {
            node: self.node.clone(),
            now_ms: now,
            interval_ms: u64::try_from(super::INTERVAL.as_millis()).unwrap_or(5000),
            window_ms: u64::try_from(WINDOW.as_millis()).unwrap_or(0),
            cluster,
            members,
            samples: self.history.since(since_ms),
        }
    }
}
