//! One read of one store: the single step of a store chain.

use std::ops::Range;

use bytes::Bytes;
use object_store::path::Path;
use object_store::{GetOptions, GetRange};

use crate::error::{CacheError, Result};
use crate::store::StoreHandle;

/// Bytes `range` of `blob` from its store; a short answer is a store
/// failure. In a store Ferry does not own, a `version` (the ETag an
/// import recorded) pins the read: it is sent as If-Match and the answer's
/// ETag is compared too, since some servers ignore If-Match; a changed
/// object is `Changed`, never bytes.
pub(crate) async fn read_exact(
    store: &StoreHandle,
    blob: &str,
    version: &str,
    range: Range<u64>,
) -> Result<Bytes> {
    let expected = range.end - range.start;
    // Only objects of stores Ferry does not own can change under it (its
    // own blobs never do); those carry the ETag they were imported with.
    let pinned = !version.is_empty() && !store.spec.owned;
    let options = GetOptions {
        range: Some(GetRange::Bounded(range.clone())),
        if_match: pinned.then(|| version.to_string()),
        ..GetOptions::default()
    };
    let changed = || CacheError::Changed {
        store: store.name.clone(),
        blob: blob.to_string(),
    };
    let result = match store.client.get_opts(&Path::from(blob), options).await {
        Ok(result) => result,
        Err(object_store::Error::Precondition { .. }) if pinned => return Err(changed()),
        Err(e) => return Err(CacheError::store(&store.name, e)),
    };
    let answered = result.meta.e_tag.as_deref().map(|e| e.trim_matches('"'));
    if pinned && answered.is_some_and(|e| e != version.trim_matches('"')) {
        return Err(changed());
    }
    let bytes = result
        .bytes()
        .await
        .map_err(|e| CacheError::store(&store.name, e))?;
    if bytes.len() as u64 != expected {
        return Err(CacheError::Store {
            store: store.name.clone(),
            source: object_store::Error::Generic {
                store: "ferry",
                source: format!(
                    "bytes {range:?} of {blob}: {} bytes, expected {expected}",
                    bytes.len()
                )
                .into(),
            },
        });
    }
    Ok(bytes)
}
