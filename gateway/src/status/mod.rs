//! Seeing into the fleet: every few seconds a node samples its own
//! `/metrics` (what it served and from where, its stores, its S3
//! operations, its tiers, its long jobs) and, while its status is looked
//! at, gathers its peers' newest samples over the peer protocol, so the
//! status page of any node (`/status` on the admin port, with
//! `/status/data` as JSON) shows the whole cluster; viewing it asks no
//! one anything (at most one gathering per interval, however many look).
//! The page is
//! open: it names configuration (stores, imports, regions) but never a
//! bucket or a key. `ferry stats` reads the same JSON.

mod exposition;
mod history;
pub mod jobs;
mod page;
pub mod sample;
pub mod stats;
pub mod view;

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use ferry_cache::cluster::Cluster;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio_util::sync::CancellationToken;

pub use exposition::Exposition;
pub use page::routes;

use crate::metrics as gm;
use history::History;
use jobs::Jobs;
use sample::{Context, Sample, Sampler};

/// How often a node samples itself and gathers its peers' samples.
pub const INTERVAL: Duration = Duration::from_secs(5);

/// A node gathers its peers' samples only while its status was looked at
/// within this long: every node keeps its own quarter hour, so a page
/// opened later gets the whole window at its first gathering, and an
/// unwatched fleet of N nodes does not make N² requests every interval.
pub const WATCHED_FOR: Duration = Duration::from_secs(10 * 60);

/// A node's status: its samples and its peers', and its long jobs.
pub struct Status {
    node: String,
    history: History,
    pub jobs: Arc<Jobs>,
    sampler: Mutex<Sampler>,
    metrics: Option<PrometheusHandle>,
    cluster: Option<Arc<Cluster>>,
    memory_capacity: u64,
    /// When `/status/data` was last read (ms since the epoch; 0: never).
    viewed_ms: AtomicI64,
    /// Wakes the worker to gather when someone starts looking.
    look: tokio::sync::Notify,
}

impl Status {
    pub fn new(
        node: &str,
        metrics: Option<PrometheusHandle>,
        cluster: Option<Arc<Cluster>>,
        memory_capacity: u64,
    ) -> Status {
        Status {
            node: node.to_string(),
            history: History::default(),
            jobs: Arc::default(),
            sampler: Mutex::default(),
            metrics,
            cluster,
            memory_capacity,
            viewed_ms: AtomicI64::new(0),
            look: tokio::sync::Notify::new(),
        }
    }

    /// Notes that someone looks at this node's status.
    fn viewed(&self, now_ms: i64) {
        let was_watched = self.watched(now_ms);
        self.viewed_ms.store(now_ms, Ordering::Relaxed);
        if !was_watched {
            // The first look in a while: gather now, not at the next tick.
            self.look.notify_one();
        }
    }

    /// Whether someone looked at this node's status lately.
    fn watched(&self, now_ms: i64) -> bool {
        let window = i64::try_from(WATCHED_FOR.as_millis()).unwrap_or(i64::MAX);
        now_ms - self.viewed_ms.load(Ordering::Relaxed) < window
    }

    /// Takes this node's sample now and keeps it.
    pub fn sample(&self) -> Sample {
        self.publish_member_health();
        let now = ferry_meta::now_millis();
        let text = self.metrics.as_ref().map(gm::render).unwrap_or_default();
        let metrics = Exposition::parse(&text);
        let sample = self
            .sampler
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .sample(
                &metrics,
                Context {
                    node: &self.node,
                    at_ms: now,
                    memory_capacity: self.memory_capacity,
                    jobs: self.jobs.list(),
                },
            );
        self.history.add(&self.node, vec![sample.clone()], now);
        sample
    }

    /// The members this node sees, and which it routes around, as gauges
    /// (for alerts: a member routed around for minutes).
    fn publish_member_health(&self) {
        let Some(cluster) = &self.cluster else {
            return;
        };
        let view = cluster.node.membership.current();
        metrics::gauge!(gm::CLUSTER_MEMBERS).set(view.members.len() as f64);
        for member in &view.members {
            let down = member.id != self.node && cluster.node.client.is_down(&member.id);
            metrics::gauge!(gm::CLUSTER_MEMBER_DOWN, "node" => member.id.clone()).set(if down {
                1.0
            } else {
                0.0
            });
        }
    }

    /// This node's samples taken after `since_ms` (what a peer asks for).
    pub fn own_samples_since(&self, since_ms: i64) -> Vec<Sample> {
        self.history.of_since(&self.node, since_ms)
    }

    /// Asks every other member for the samples it took since the newest
    /// one held here. A member that does not answer keeps its last
    /// samples; the page shows how old they are.
    pub async fn gather(&self) {
        let Some(cluster) = &self.cluster else {
            return;
        };
        let view = cluster.node.membership.current();
        let asks = view
            .members
            .iter()
            .filter(|m| m.id != self.node)
            .map(|member| async move {
                let since = self.history.newest(&member.id);
                let answer = cluster.node.client.status_samples(member, since).await;
                (member.id.clone(), answer)
            });
        for (id, answer) in futures::future::join_all(asks).await {
            let parsed = answer.map_err(|e| format!("{e:?}")).and_then(|body| {
                serde_json::from_slice::<Vec<Sample>>(&body).map_err(|e| e.to_string())
            });
            match parsed {
                Ok(samples) => self.history.add(&id, samples, ferry_meta::now_millis()),
                Err(e) => tracing::debug!(peer = %id, error = %e, "status samples not gathered"),
            }
        }
    }

    /// Samples every [`INTERVAL`], and gathers while watched (and at once
    /// when someone starts looking), until `stop`.
    pub async fn run(&self, stop: CancellationToken) {
        let mut ticker = tokio::time::interval(INTERVAL);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = ticker.tick() => {
                    self.sample();
                }
                () = self.look.notified() => {}
            }
            if !self.watched(ferry_meta::now_millis()) {
                continue;
            }
            tokio::select! {
                () = stop.cancelled() => return,
                () = self.gather() => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_are_gathered_only_while_someone_looks() {
        let status = Status::new("n1", None, None, 0);
        let now = ferry_meta::now_millis();
        assert!(!status.watched(now), "never viewed");
        let view = status.view(0);
        assert!(status.watched(view.now_ms));
        let window = i64::try_from(WATCHED_FOR.as_millis()).unwrap_or(i64::MAX);
        assert!(!status.watched(view.now_ms + window));
        // The view of a node outside a cluster lists it, with its sample.
        status.sample();
        let view = status.view(0);
        assert_eq!(view.members.len(), 1);
        assert!(view.members[0].this);
        assert_eq!(view.samples["n1"].len(), 1);
    }
}
