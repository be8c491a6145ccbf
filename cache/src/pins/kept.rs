//! Where the pins set at run time are kept: in the cluster's Redis, where
//! every member reads them (and a node that restarts or joins finds
//! them), or, on a node outside a Redis cluster, in a file beside its
//! disk tier, so they outlive a restart either way.

use std::path::PathBuf;

use crate::cluster::RedisMembership;
use crate::error::{CacheError, Result};

/// The file a node outside a Redis cluster keeps its run-time pins in.
pub const PIN_FILE: &str = "ferry-pins.json";

pub enum KeptPins {
    /// In the cluster's Redis (dynamic membership).
    Redis(RedisMembership),
    /// In a file (a node outside a cluster).
    File(PathBuf),
    /// Nowhere: a cluster with static membership has no shared place, and
    /// a node without a disk tier has nothing to pin. Pins come from the
    /// config only.
    Nowhere(&'static str),
}

impl KeptPins {
    /// The run-time pins as kept.
    pub async fn load(&self) -> Result<Vec<String>> {
        match self {
            KeptPins::Redis(redis) => redis.pins().await,
            KeptPins::File(path) => match std::fs::read(path) {
                Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                    CacheError::Tier(format!("{} is not a list of pins: {e}", path.display()))
                }),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
                Err(e) => Err(CacheError::Tier(format!("{}: {e}", path.display()))),
            },
            KeptPins::Nowhere(_) => Ok(Vec::new()),
        }
    }

    /// Pins `prefix` (or unpins it) and answers the run-time pins now.
    pub async fn set(&self, prefix: &str, pinned: bool) -> Result<Vec<String>> {
        match self {
            // Other members may have pinned meanwhile: read the set back.
            KeptPins::Redis(redis) => {
                redis.set_pin(prefix, pinned).await?;
                redis.pins().await
            }
            KeptPins::File(path) => {
                let mut pins = self.load().await?;
                pins.retain(|p| p != prefix);
                if pinned {
                    pins.push(prefix.to_string());
                }
                pins.sort();
                write_atomically(path, &pins)?;
                Ok(pins)
            }
            KeptPins::Nowhere(why) => Err(CacheError::Unsupported(why.to_string())),
        }
    }
}

/// Replaces the pin file whole (written beside it, then renamed), so a
/// crash leaves the old list or the new one.
fn write_atomically(path: &std::path::Path, pins: &[String]) -> Result<()> {
    let fail = |e: std::io::Error| CacheError::Tier(format!("{}: {e}", path.display()));
    let dir = path.parent().unwrap_or(std::path::Path::new("."));
    std::fs::create_dir_all(dir).map_err(fail)?;
    let mut file = tempfile::NamedTempFile::new_in(dir).map_err(fail)?;
    serde_json::to_writer(&mut file, pins).map_err(|e| fail(e.into()))?;
    file.as_file().sync_all().map_err(fail)?;
    file.persist(path).map_err(|e| fail(e.error))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn pins_kept_in_a_file_outlive_the_process() {
        let dir = tempfile::tempdir().expect("tempdir");
        let kept = KeptPins::File(dir.path().join(PIN_FILE));
        assert!(kept.load().await.expect("load").is_empty());
        kept.set("models/b/", true).await.expect("pin");
        kept.set("models/a/", true).await.expect("pin");
        kept.set("models/a/", true).await.expect("pinned twice");
        let again = KeptPins::File(dir.path().join(PIN_FILE));
        assert_eq!(
            again.load().await.expect("load"),
            vec!["models/a/", "models/b/"]
        );
        assert_eq!(
            again.set("models/b/", false).await.expect("unpin"),
            vec!["models/a/"]
        );
        std::fs::write(dir.path().join(PIN_FILE), b"not json").expect("write");
        assert!(
            again.load().await.is_err(),
            "a damaged pin file is an error, not no pins"
        );
    }
}
