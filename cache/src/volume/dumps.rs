//! Scheduled metadata dumps into the volume's data store, so the map from
//! names to blobs survives the loss of the metadata engine.

use std::io::{BufWriter, Read};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use ferry_meta::{Meta, dump};
use futures::StreamExt;
use object_store::path::Path;
use object_store::{ObjectStoreExt, WriteMultipart};

use crate::error::{CacheError, Result};
use crate::store::StoreHandle;

/// Dumps live under this prefix of the data store, outside `blobs/`.
pub const DUMP_PREFIX: &str = "ferry-dumps";

/// Writes one dump to `store` as `ferry-dumps/meta-<UTC time>.jsonl`, then
/// removes all but the newest `keep`. Returns the dump's path.
pub async fn dump_to_store(
    meta: Arc<dyn Meta>,
    store: &StoreHandle,
    scratch: &std::path::Path,
    keep: usize,
) -> Result<String> {
    // Stage on local disk: a dump of millions of objects never sits in memory.
    let staging = tempfile::NamedTempFile::new_in(scratch).map_err(|e| {
        CacheError::Body(format!("cannot stage a dump in {}: {e}", scratch.display()))
    })?;
    {
        let mut out = BufWriter::new(staging.as_file());
        dump::dump(meta.as_ref(), &mut out, &mut |_| {}).await?;
    }
    let stamp = time_stamp();
    let key = format!("{DUMP_PREFIX}/meta-{stamp}.jsonl");
    let path = Path::from(key.as_str());
    let upload = store
        .client
        .put_multipart(&path)
        .await
        .map_err(|e| CacheError::store(&store.name, e))?;
    let mut writer = WriteMultipart::new_with_chunk_size(upload, 8 << 20);
    let mut file = staging
        .reopen()
        .map_err(|e| CacheError::Body(e.to_string()))?;
    let mut buffer = vec![0u8; 4 << 20];
    loop {
        let n = file
            .read(&mut buffer)
            .map_err(|e| CacheError::Body(e.to_string()))?;
        if n == 0 {
            break;
        }
        writer
            .wait_for_capacity(4)
            .await
            .map_err(|e| CacheError::store(&store.name, e))?;
        writer.put(Bytes::copy_from_slice(&buffer[..n]));
    }
    writer
        .finish()
        .await
        .map_err(|e| CacheError::store(&store.name, e))?;

    let mut existing: Vec<String> = store
        .client
        .list(Some(&Path::from(DUMP_PREFIX)))
        .filter_map(|item| async move { item.ok().map(|m| m.location.to_string()) })
        .collect()
        .await;
    existing.sort();
    let excess = existing.len().saturating_sub(keep);
    for old in &existing[..excess] {
        if let Err(e) = store.client.delete(&Path::from(old.as_str())).await {
            tracing::warn!(dump = %old, error = %e, "could not remove an old dump");
        }
    }
    Ok(key)
}

/// `YYYYMMDDTHHMMSSZ`: sorts by time as text.
fn time_stamp() -> String {
    let format = time::macros::format_description!("[year][month][day]T[hour][minute][second]Z");
    time::OffsetDateTime::now_utc()
        .format(&format)
        .unwrap_or_else(|_| "00000000T000000Z".to_string())
}

/// Dumps every `interval` until `shutdown` resolves.
pub async fn run_scheduled(
    meta: Arc<dyn Meta>,
    store: StoreHandle,
    scratch: std::path::PathBuf,
    interval: Duration,
    keep: usize,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await; // the first tick is immediate; dump after one interval
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => return,
            _ = ticker.tick() => {
                match dump_to_store(meta.clone(), &store, &scratch, keep).await {
                    Ok(key) => tracing::info!(dump = %key, store = %store.name, "metadata dump written"),
                    Err(e) => tracing::warn!(error = %e, "scheduled metadata dump failed"),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_stamps_sort_as_text() {
        let stamp = time_stamp();
        assert_eq!(stamp.len(), 16);
        assert!(
            stamp.ends_with('Z') && stamp.as_bytes()[8] == b'T',
            "{stamp}"
        );
    }
}
