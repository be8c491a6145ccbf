//! Checking the metadata against the stores: blobs that committed layouts
//! (and upload parts) name but that are missing, and blobs in owned stores
//! that nothing names. Repair only queues orphans for the collector, which
//! re-checks references before deleting: fsck never deletes a referenced blob.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use ferry_meta::{BlobRef, ListQuery, Meta, MetaError, UploadQuery};
use futures::StreamExt;
use object_store::ObjectStoreExt;
use object_store::path::Path;

use crate::error::{CacheError, Result};
use crate::store::Stores;
use crate::volume::blob::BLOB_PREFIX;

/// A blob a layout names that its store does not have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingBlob {
    pub bucket: String,
    /// The object key, or `upload <id> part <n>` for an upload's part.
    pub key: String,
    pub blob: BlobRef,
}

#[derive(Debug, Default, Clone)]
pub struct FsckReport {
    pub objects: u64,
    pub referenced_blobs: u64,
    pub stored_blobs: u64,
    pub missing: Vec<MissingBlob>,
    /// Unreferenced blobs older than the minimum age.
    pub orphans: Vec<BlobRef>,
    /// Unreferenced blobs too young to judge (an upload may be committing them).
    pub young_unreferenced: u64,
    /// Whether orphans were queued for the collector.
    pub repaired: bool,
}

impl FsckReport {
    pub fn is_clean(&self) -> bool {
        self.missing.is_empty() && self.orphans.is_empty()
    }
}

/// Every blob the namespace references, with one object naming each.
async fn referenced(
    meta: &dyn Meta,
    report: &mut FsckReport,
) -> Result<Vec<(String, String, BlobRef)>> {
    let mut out = Vec::new();
    for bucket in meta.list_buckets().await? {
        let mut start_after = None;
        loop {
            let page = meta
                .list(
                    &bucket.name,
                    &ListQuery {
                        start_after: start_after.clone(),
                        max: 1000,
                        ..ListQuery::default()
                    },
                )
                .await?;
            for (key, _) in page.entries {
                let layout = match meta.get(&bucket.name, &key).await {
                    Ok((_, layout)) => layout,
                    Err(MetaError::NoSuchKey { .. }) => continue,
                    Err(e) => return Err(e.into()),
                };
                report.objects += 1;
                for blob in layout.blobs() {
                    out.push((bucket.name.clone(), key.clone(), blob));
                }
            }
            if !page.truncated {
                break;
            }
            start_after = page.next_start_after;
        }
        let page = meta
            .list_uploads(
                &bucket.name,
                &UploadQuery {
                    max: usize::MAX,
                    ..UploadQuery::default()
                },
            )
            .await?;
        for upload in page.uploads {
            let (parts, _) = match meta
                .list_parts(&bucket.name, &upload.key, &upload.id, 0, usize::MAX)
                .await
            {
                Ok(found) => found,
                Err(MetaError::NoSuchUpload { .. }) => continue,
                Err(e) => return Err(e.into()),
            };
            for part in parts {
                for blob in part.blobs() {
                    out.push((
                        bucket.name.clone(),
                        format!("upload {} part {}", upload.id, part.number),
                        blob,
                    ));
                }
            }
        }
    }
    Ok(out)
}

/// Checks the namespace against the stores. With `repair`, orphans older
/// than `min_orphan_age` are queued for deletion.
pub async fn fsck(
    meta: Arc<dyn Meta>,
    stores: &Stores,
    repair: bool,
    min_orphan_age: Duration,
) -> Result<FsckReport> {
    let mut report = FsckReport::default();
    let started = std::time::SystemTime::now();
    let named = referenced(meta.as_ref(), &mut report).await?;
    let mut known: BTreeSet<BlobRef> = BTreeSet::new();
    for (bucket, key, blob) in named {
        if !known.insert(blob.clone()) {
            continue;
        }
        let store = stores.get(&blob.store)?;
        match store.client.head(&Path::from(blob.blob.as_str())).await {
            Ok(_) => {}
            Err(object_store::Error::NotFound { .. }) => {
                report.missing.push(MissingBlob { bucket, key, blob })
            }
            Err(e) => return Err(CacheError::store(&blob.store, e)),
        }
    }
    report.referenced_blobs = known.len() as u64;

    let cutoff = started - min_orphan_age;
    for store in stores.iter().filter(|s| s.spec.owned) {
        let mut listing = store.client.list(Some(&Path::from(BLOB_PREFIX)));
        while let Some(item) = listing.next().await {
            let object = item.map_err(|e| CacheError::store(&store.name, e))?;
            report.stored_blobs += 1;
            let blob = BlobRef {
                store: store.name.clone(),
                blob: object.location.to_string(),
            };
            if known.contains(&blob) {
                continue;
            }
            let modified: std::time::SystemTime = object.last_modified.into();
            if modified > cutoff {
                report.young_unreferenced += 1;
            } else {
                report.orphans.push(blob);
            }
        }
    }
    if repair && !report.orphans.is_empty() {
        for chunk in report.orphans.chunks(256) {
            meta.queue_uncommitted(chunk).await?;
        }
        report.repaired = true;
    }
    Ok(report)
}
