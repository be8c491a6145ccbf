//! The cluster's recent samples: a ring per node of the last quarter hour,
//! this node's own and those gathered from its peers.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use super::sample::Sample;

/// How far back the page looks.
pub const WINDOW: Duration = Duration::from_secs(15 * 60);

#[derive(Default)]
pub struct History {
    nodes: Mutex<BTreeMap<String, VecDeque<Sample>>>,
}

impl History {
    /// Adds samples of `node`, those newer than what it holds, in order;
    /// drops what fell out of the window.
    pub fn add(&self, node: &str, samples: Vec<Sample>, now_ms: i64) {
        let mut nodes = self.nodes.lock().unwrap_or_else(PoisonError::into_inner);
        let ring = nodes.entry(node.to_string()).or_default();
        for sample in samples {
            if ring.back().is_none_or(|last| sample.at_ms > last.at_ms) && sample.node == node {
                ring.push_back(sample);
            }
        }
        let oldest = now_ms - window_ms();
        for ring in nodes.values_mut() {
            while ring.front().is_some_and(|s| s.at_ms < oldest) {
                ring.pop_front();
            }
        }
        nodes.retain(|_, ring| !ring.is_empty());
    }

    /// When the newest sample of `node` was taken (0: none held).
    pub fn newest(&self, node: &str) -> i64 {
        let nodes = self.nodes.lock().unwrap_or_else(PoisonError::into_inner);
        nodes
            .get(node)
            .and_then(|ring| ring.back())
            .map_or(0, |s| s.at_ms)
    }

    /// `node`'s samples taken after `since_ms`.
    pub fn of_since(&self, node: &str, since_ms: i64) -> Vec<Sample> {
        let nodes = self.nodes.lock().unwrap_or_else(PoisonError::into_inner);
        nodes
            .get(node)
            .map(|ring| after(ring, since_ms))
            .unwrap_or_default()
    }

    /// Every node's samples taken after `since_ms`.
    pub fn since(&self, since_ms: i64) -> BTreeMap<String, Vec<Sample>> {
        let nodes = self.nodes.lock().unwrap_or_else(PoisonError::into_inner);
        nodes
            .iter()
            .map(|(node, ring)| (node.clone(), after(ring, since_ms)))
            .collect()
    }

    /// Each node's newest sample.
    pub fn latest(&self) -> BTreeMap<String, Sample> {
        let nodes = self.nodes.lock().unwrap_or_else(PoisonError::into_inner);
        nodes
            .iter()
            .filter_map(|(node, ring)| ring.back().map(|s| (node.clone(), s.clone())))
            .collect()
    }
}

fn window_ms() -> i64 {
    i64::try_from(WINDOW.as_millis()).unwrap_or(i64::MAX)
}

fn after(ring: &VecDeque<Sample>, since_ms: i64) -> Vec<Sample> {
    // Samples are in time order: skip to the first one after `since_ms`.
    let start = ring.partition_point(|s| s.at_ms <= since_ms);
    ring.range(start..).cloned().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(node: &str, at_ms: i64) -> Sample {
        Sample {
            node: node.into(),
            at_ms,
            ..Sample::default()
        }
    }

    #[test]
    fn keeps_new_samples_in_order_within_the_window() {
        let history = History::default();
        let now = 10 * window_ms();
        history.add(
            "a",
            vec![sample("a", now - 2000), sample("a", now - 1000)],
            now,
        );
        // Older or repeated samples, and another node's, are not added.
        history.add("a", vec![sample("a", now - 1500), sample("b", now)], now);
        assert_eq!(history.newest("a"), now - 1000);
        assert_eq!(history.of_since("a", now - 2000).len(), 1);
        assert_eq!(history.of_since("a", 0).len(), 2);
        assert!(history.of_since("b", 0).is_empty());
        // A quarter hour later both fell out, and the node is forgotten.
        history.add("c", vec![sample("c", now + window_ms())], now + window_ms());
        assert_eq!(history.newest("a"), 0);
        assert_eq!(history.latest().len(), 1);
    }
}
