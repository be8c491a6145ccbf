//! Pinned prefixes: the blocks of objects under them live in the pinned
//! share of each disk, where unpinned blocks cannot evict them (a model
//! version in service, kept through sweeps of other data).
//!
//! A pin is `BUCKET` or `BUCKET/PREFIX`. Pins come from the config
//! (`[[cache.pin]]`) and from the admin API at run time; run-time pins are
//! kept where every member reads them (`kept`). Whether a read is pinned
//! is decided where its object is known (a GET, a warm-up) and travels
//! with the block's address to its owners.

pub mod kept;

use std::sync::RwLock;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::Serialize;

use crate::metrics as m;

pub use kept::KeptPins;

/// The pins of this node.
#[derive(Debug, Default)]
pub struct Pins {
    configured: Vec<String>,
    runtime: RwLock<Vec<String>>,
    /// Whether any pin exists: most nodes have none, and a GET then pays
    /// one load to know it.
    any: AtomicBool,
}

/// A pin as the admin API lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Pin {
    pub prefix: String,
    /// `config` or `runtime`.
    pub source: &'static str,
}

impl Pins {
    pub fn new(configured: Vec<String>) -> Pins {
        let pins = Pins {
            any: AtomicBool::new(!configured.is_empty()),
            configured,
            runtime: RwLock::default(),
        };
        pins.report();
        pins
    }

    /// Whether the object `key` of `bucket` is under a pin.
    pub fn covers(&self, bucket: &str, key: &str) -> bool {
        if !self.any.load(Ordering::Relaxed) {
            return false;
        }
        let under = |pin: &String| pin_covers(pin, bucket, key);
        self.configured.iter().any(under)
            || self
                .runtime
                .read()
                .map(|runtime| runtime.iter().any(under))
                .unwrap_or(false)
    }

    /// Replaces the run-time pins (as read from where they are kept).
    pub fn set_runtime(&self, mut pins: Vec<String>) {
        pins.sort();
        pins.dedup();
        let Ok(mut runtime) = self.runtime.write() else {
            return;
        };
        if *runtime == pins {
            return;
        }
        tracing::info!(pins = ?pins, "run-time pins changed");
        *runtime = pins;
        self.any.store(
            !self.configured.is_empty() || !runtime.is_empty(),
            Ordering::Relaxed,
        );
        drop(runtime);
        self.report();
    }

    /// Every pin, the configured ones first.
    pub fn list(&self) -> Vec<Pin> {
        let runtime = self.runtime.read().map(|r| r.clone()).unwrap_or_default();
        self.configured
            .iter()
            .map(|p| Pin {
                prefix: p.clone(),
                source: "config",
            })
            .chain(runtime.into_iter().map(|prefix| Pin {
                prefix,
                source: "runtime",
            }))
            .collect()
    }

    fn report(&self) {
        let runtime = self.runtime.read().map(|r| r.len()).unwrap_or(0);
        metrics::gauge!(m::CACHE_PINS, "source" => "config").set(self.configured.len() as f64);
        metrics::gauge!(m::CACHE_PINS, "source" => "runtime").set(runtime as f64);
    }
}

/// Whether `pin` (`BUCKET` or `BUCKET/PREFIX`) covers `key` of `bucket`.
fn pin_covers(pin: &str, bucket: &str, key: &str) -> bool {
    match pin.strip_prefix(bucket) {
        Some("") => true,
        Some(rest) => rest
            .strip_prefix('/')
            .is_some_and(|prefix| key.starts_with(prefix)),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pin_covers_its_bucket_or_the_keys_under_its_prefix() {
        assert!(pin_covers("models", "models", "any/key"));
        assert!(pin_covers(
            "models/llama-3/",
            "models",
            "llama-3/model.safetensors"
        ));
        assert!(pin_covers("models/llama", "models", "llama-3/x"));
        assert!(!pin_covers("models/llama-3/", "models", "llama-2/x"));
        assert!(!pin_covers("models/llama-3/", "models2", "llama-3/x"));
        assert!(
            !pin_covers("models", "models2", "x"),
            "a bucket pin is not a prefix of bucket names"
        );
        assert!(!pin_covers("mod", "models", "x"));
    }

    #[test]
    fn run_time_pins_join_and_leave_the_configured_ones() {
        let pins = Pins::new(vec!["models/a/".into()]);
        assert!(pins.covers("models", "a/1"));
        assert!(!pins.covers("models", "b/1"));
        pins.set_runtime(vec!["models/b/".into(), "models/b/".into()]);
        assert!(pins.covers("models", "b/1"));
        assert_eq!(pins.list().len(), 2, "{:?}", pins.list());
        pins.set_runtime(Vec::new());
        assert!(!pins.covers("models", "b/1"));
        assert!(pins.covers("models", "a/1"), "configured pins stay");
        let none = Pins::new(Vec::new());
        assert!(!none.covers("models", "a/1"));
    }
}
