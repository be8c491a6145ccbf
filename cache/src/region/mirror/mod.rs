//! A mirror region: its own metadata follows the source region's change
//! log ([`follower`]), and a worker copies the blobs of applied entries
//! from the source's store into this region's ([`replicator`]). Until a
//! blob has arrived, reads find it through the store chain (the mirror's
//! store, then the source's).

mod follower;
mod replicator;

pub use follower::{FeedClient, Follower};
pub use replicator::Replicator;

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};

use ferry_meta::{BlobRef, ChangeOp, Layout, UnixMillis, now_millis};

use super::BucketPrefixes;
use crate::store::Stores;

/// Which blobs a mirror copies: those of objects under the configured
/// prefixes, in stores this region owns and that fall back to another
/// (the source's). Imported (not owned) stores are read where they are.
#[derive(Debug, Clone)]
pub struct ReplicationPolicy {
    /// Empty: every object.
    prefixes: BucketPrefixes,
    stores: BTreeSet<String>,
}

impl ReplicationPolicy {
    pub fn new(prefixes: &[String], stores: &Stores) -> ReplicationPolicy {
        ReplicationPolicy {
            prefixes: BucketPrefixes::new(prefixes),
            stores: stores
                .iter()
                .filter(|s| s.spec.owned && !s.spec.fallback.is_empty())
                .map(|s| s.name.clone())
                .collect(),
        }
    }

    /// The stores blobs are copied into.
    pub fn stores(&self) -> impl Iterator<Item = &str> {
        self.stores.iter().map(String::as_str)
    }

    pub fn blobs(&self, bucket: &str, key: &str, layout: &Layout) -> Vec<BlobRef> {
        let wanted = self.prefixes.is_empty() || self.prefixes.covers(bucket, key);
        if !wanted {
            return Vec::new();
        }
        layout
            .blobs()
            .into_iter()
            .filter(|b| self.stores.contains(&b.store))
            .collect()
    }

    pub fn blobs_of(&self, op: &ChangeOp) -> Vec<BlobRef> {
        match op {
            ChangeOp::Put {
                bucket,
                key,
                layout,
                ..
            } => self.blobs(bucket, key, layout),
            _ => Vec::new(),
        }
    }
}

/// What a mirror knows about itself, for `/health`, `/region/status` and
/// the error that refuses writes.
#[derive(Debug, Default)]
pub struct MirrorState {
    /// The source region's name, once it has answered.
    source: Mutex<Option<String>>,
    /// The follow URL (named until the source has answered).
    pub follow: String,
    position: AtomicU64,
    last_contact: AtomicI64,
    resyncing: AtomicBool,
    /// The source said this mirror is not (or no longer) registered.
    dropped: AtomicBool,
    last_error: Mutex<Option<String>>,
}

impl MirrorState {
    pub fn new(follow: &str) -> MirrorState {
        MirrorState {
            follow: follow.to_string(),
            ..MirrorState::default()
        }
    }

    /// The source region's name, or its URL until it has answered.
    pub fn source(&self) -> String {
        self.source
            .lock()
            .ok()
            .and_then(|s| s.clone())
            .unwrap_or_else(|| format!("at {}", self.follow))
    }

    pub(crate) fn contact(&self, source: &str) {
        if let Ok(mut s) = self.source.lock()
            && s.as_deref() != Some(source)
        {
            *s = Some(source.to_string());
        }
        self.last_contact.store(now_millis(), Ordering::Relaxed);
        if let Ok(mut e) = self.last_error.lock() {
            *e = None;
        }
    }

    pub(crate) fn set_position(&self, seq: u64) {
        self.position.store(seq, Ordering::Relaxed);
    }

    pub(crate) fn set_resyncing(&self, on: bool) {
        self.resyncing.store(on, Ordering::Relaxed);
        if !on {
            self.dropped.store(false, Ordering::Relaxed);
        }
    }

    pub(crate) fn set_dropped(&self) {
        self.dropped.store(true, Ordering::Relaxed);
    }

    pub(crate) fn set_error(&self, error: String) {
        if let Ok(mut e) = self.last_error.lock() {
            *e = Some(error);
        }
    }

    pub fn position(&self) -> u64 {
        self.position.load(Ordering::Relaxed)
    }

    pub fn last_contact(&self) -> Option<UnixMillis> {
        Some(self.last_contact.load(Ordering::Relaxed)).filter(|t| *t > 0)
    }

    pub fn resyncing(&self) -> bool {
        self.resyncing.load(Ordering::Relaxed)
    }

    pub fn dropped(&self) -> bool {
        self.dropped.load(Ordering::Relaxed)
    }

    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().ok().and_then(|e| e.clone())
    }

    /// Why this mirror is unhealthy, if it is: dropped by its source and
    /// not resynced yet, or out of touch for longer than `timeout_ms`.
    pub fn unhealthy(&self, now: UnixMillis, timeout_ms: i64) -> Option<String> {
        if self.dropped() {
            return Some(format!(
                "the source region {} dropped this mirror; resyncing",
                self.source()
            ));
        }
        match self.last_contact() {
            Some(at) if now - at > timeout_ms => Some(format!(
                "no answer from the source region {} for {} s",
                self.source(),
                (now - at) / 1000
            )),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_meta::Segment;

    fn stores(dir: &std::path::Path) -> Stores {
        let raw = ferry_config::RawConfig::from_toml(&format!(
            "[stores.data]\nurl = \"file://{0}/edge\"\nfallback = [\"central\"]\n\
             [stores.central]\nurl = \"file://{0}/central\"\nowned = false\n\
             [stores.imported]\nurl = \"file://{0}/imported\"\nowned = false\n\
             [stores.local]\nurl = \"file://{0}/local\"\n",
            dir.display()
        ))
        .expect("toml");
        let config = raw
            .build(&Default::default(), &ferry_config::Overrides::default())
            .expect("config");
        Stores::open(&config.stores).expect("stores")
    }

    fn layout(stores: &[&str]) -> Layout {
        Layout {
            segments: stores
                .iter()
                .map(|store| Segment {
                    store: (*store).to_string(),
                    blob: format!("blob-in-{store}"),
                    offset: 0,
                    len: 1,
                    version: String::new(),
                })
                .collect(),
        }
    }

    #[test]
    fn only_owned_stores_with_a_fallback_and_wanted_prefixes_are_copied() {
        let dir = tempfile::tempdir().expect("tempdir");
        let stores = stores(dir.path());
        let all = ReplicationPolicy::new(&[], &stores);
        assert_eq!(all.stores().collect::<Vec<_>>(), ["data"]);
        let names = |blobs: Vec<BlobRef>| blobs.into_iter().map(|b| b.store).collect::<Vec<_>>();
        let mixed = layout(&["data", "imported", "local", "central"]);
        assert_eq!(names(all.blobs("models", "any/key", &mixed)), ["data"]);

        let some = ReplicationPolicy::new(
            &["models/llama".to_string(), "weights".to_string()],
            &stores,
        );
        assert_eq!(
            names(some.blobs("models", "llama-3/w.bin", &mixed)),
            ["data"]
        );
        assert!(some.blobs("models", "mistral/w.bin", &mixed).is_empty());
        assert_eq!(names(some.blobs("weights", "x", &mixed)), ["data"]);
        assert!(some.blobs("other", "llama", &mixed).is_empty());
    }
}
