//! A check at start that each S3 store answers ranged GETs with 206 and
//! just the range. Some S3 servers (rclone `serve s3`) answer 200 with the
//! whole object instead; Ferry reads every block by range, and object_store
//! refuses such answers, so every read of that store would fail. Rather
//! than serve 503s, Ferry refuses to start with an error that says why.
//! (It never yields wrong bytes either way: a 200 is never taken for a
//! range.)

use bytes::Bytes;
use futures::StreamExt;
use object_store::path::Path;
use object_store::{GetOptions, GetRange, ObjectStoreExt};

use crate::error::{CacheError, Result};
use crate::store::{StoreHandle, Stores};
use ferry_config::StoreKind;

const PROBE_PREFIX: &str = "ferry-probe";

/// Whether an error is object_store's refusal of a 200 to a ranged GET.
fn is_whole_object_answer(e: &object_store::Error) -> bool {
    e.to_string().contains("non-partial response")
}

fn refused(store: &StoreHandle) -> CacheError {
    CacheError::StoreConfig {
        store: store.name.clone(),
        reason: format!(
            "{} answers a ranged GET with 200 and the whole object instead of 206 and the range (rclone `serve s3` does this); Ferry reads every block by range and cannot use this store",
            store.spec.url
        ),
    }
}

/// Probes one store: a ranged GET of a probe object it writes (owned
/// stores) or of the first object it lists (stores Ferry only reads).
/// A store that cannot be reached now is not refused: reads will retry.
async fn probe(store: &StoreHandle) -> Result<()> {
    let client = &store.client;
    let (path, written) = if store.spec.owned {
        let path = Path::from(format!("{PROBE_PREFIX}/{}", uuid::Uuid::new_v4().simple()));
        if let Err(e) = client.put(&path, Bytes::from_static(b"ferry").into()).await {
            tracing::warn!(store = %store.name, error = %e, "cannot write the ranged-read probe; not checked");
            return Ok(());
        }
        (path, true)
    } else {
        match client.list(None).next().await {
            Some(Ok(meta)) if meta.size > 1 => (meta.location, false),
            Some(Err(e)) => {
                tracing::warn!(store = %store.name, error = %e, "cannot list the store for the ranged-read probe; not checked");
                return Ok(());
            }
            _ => return Ok(()),
        }
    };
    let options = GetOptions {
        range: Some(GetRange::Bounded(0..2)),
        ..GetOptions::default()
    };
    let answer = match client.get_opts(&path, options).await {
        Ok(result) => result.bytes().await.map(|b| b.len()),
        Err(e) => Err(e),
    };
    if written && let Err(e) = client.delete(&path).await {
        tracing::warn!(store = %store.name, error = %e, path = %path, "could not delete the ranged-read probe");
    }
    match answer {
        Ok(2) => Ok(()),
        Ok(n) => Err(CacheError::StoreConfig {
            store: store.name.clone(),
            reason: format!("a ranged GET of 2 bytes answered {n}"),
        }),
        Err(e) if is_whole_object_answer(&e) => Err(refused(store)),
        Err(e) => {
            tracing::warn!(store = %store.name, error = %e, "ranged-read probe failed; not checked");
            Ok(())
        }
    }
}

/// Probes every S3 store (local folders and memory always answer ranges).
pub async fn check_ranged_reads(stores: &Stores) -> Result<()> {
    for store in stores.iter() {
        if matches!(store.spec.kind, StoreKind::S3 { .. }) {
            probe(store).await?;
        }
    }
    Ok(())
}
