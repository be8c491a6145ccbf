//! Import: adopting an existing bucket's objects by prefix without copying
//! a byte. Each listed object becomes an entry whose one segment is the
//! original object (store = the imported store, blob = its key, version =
//! its ETag), so its first read goes through the cache to that bucket,
//! pinned to that ETag (see `source::store`).
//!
//! Incremental: an entry whose source object has the same ETag and size is
//! left alone (a re-run with no change writes nothing); a changed object is
//! updated, a new one added. An import changes only entries it made from
//! this store: a key a user has written since is left alone and counted as
//! a conflict. `delete` then removes the entries of this store under the
//! target prefix whose source object is gone, checked one by one against
//! the source (listings promise no order, so no merge of the two). The
//! listing is streamed, so a large prefix is never held in memory.

use std::sync::Arc;

use ferry_meta::{Entry, Layout, ListQuery, Meta, MetaError, Precondition, Segment};
use futures::stream::{self, StreamExt};
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStoreExt};
use serde::Serialize;
use tokio::sync::mpsc;

use crate::store::Stores;

#[derive(Debug, Clone)]
pub struct ImportRequest {
    /// A configured store Ferry does not own.
    pub store: String,
    /// Prefix inside the store (a folder: `models/llama`), may be empty.
    pub source_prefix: String,
    pub bucket: String,
    /// Prefix of the keys made, may be empty.
    pub target_prefix: String,
    pub delete: bool,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct ImportTally {
    pub listed: u64,
    pub added: u64,
    pub updated: u64,
    pub unchanged: u64,
    pub deleted: u64,
    /// Keys a user wrote (or another import made) that this one left alone.
    pub conflicts: u64,
    /// Objects without an ETag, which cannot be pinned.
    pub refused: u64,
    pub failures: u64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum ImportEvent {
    Progress(ImportTally),
    Done(ImportTally),
    Refused { reason: String },
}

/// Objects worked on at once.
const CONCURRENCY: usize = 32;
/// Progress is reported every this many objects.
const REPORT_EVERY: u64 = 500;

enum Step {
    /// Deleted at the source between its listing and its HEAD.
    Gone,
    Added,
    Updated,
    Unchanged,
    Conflict,
    Refused,
    Failed,
}

fn target_key(request: &ImportRequest, location: &str) -> Option<String> {
    let rest = if request.source_prefix.is_empty() {
        location
    } else {
        location
            .strip_prefix(request.source_prefix.trim_end_matches('/'))?
            .trim_start_matches('/')
    };
    let prefix = request.target_prefix.as_str();
    Some(if prefix.is_empty() || prefix.ends_with('/') {
        format!("{prefix}{rest}")
    } else {
        format!("{prefix}/{rest}")
    })
}

/// The entry and layout an object becomes.
fn adopted(store: &str, object: &ObjectMeta, etag: &str) -> (Entry, Layout) {
    let entry = Entry {
        id: uuid::Uuid::now_v7().to_string(),
        size: object.size,
        etag: etag.trim_matches('"').to_string(),
        last_modified: object.last_modified.timestamp_millis(),
        content_type: Some("binary/octet-stream".to_string()),
        imported_from: Some(store.to_string()),
        ..Entry::default()
    };
    let layout = Layout {
        segments: vec![Segment {
            store: store.to_string(),
            blob: object.location.to_string(),
            offset: 0,
            len: object.size,
            version: etag.to_string(),
        }],
    };
    (entry, layout)
}

async fn adopt(
    meta: &dyn Meta,
    source: &dyn object_store::ObjectStore,
    request: &ImportRequest,
    object: ObjectMeta,
) -> Step {
    // Some servers (s3s-fs) list objects without their ETags; a HEAD has it.
    let object = if object.e_tag.as_deref().is_none_or(str::is_empty) {
        match source.head(&object.location).await {
            Ok(headed) => headed,
            Err(object_store::Error::NotFound { .. }) => return Step::Gone,
            Err(e) => {
                tracing::warn!(key = %object.location, error = %e, "import: HEAD for the ETag failed");
                return Step::Failed;
            }
        }
    } else {
        object
    };
    let Some(etag) = object.e_tag.clone().filter(|e| !e.is_empty()) else {
        return Step::Refused;
    };
    let Some(key) = target_key(request, object.location.as_ref()) else {
        return Step::Failed;
    };
    let current = match meta.head(&request.bucket, &key).await {
        Ok(entry) => Some(entry),
        Err(MetaError::NoSuchKey { .. }) => None,
        Err(e) => {
            tracing::warn!(%key, error = %e, "import: cannot read the current entry");
            return Step::Failed;
        }
    };
    let (condition, step) = match &current {
        None => (Precondition::IfAbsent, Step::Added),
        Some(entry) if entry.imported_from.as_deref() != Some(request.store.as_str()) => {
            return Step::Conflict;
        }
        Some(entry) if entry.etag == etag.trim_matches('"') && entry.size == object.size => {
            return Step::Unchanged;
        }
        Some(entry) => (Precondition::IfMatch(entry.etag.clone()), Step::Updated),
    };
    let (entry, layout) = adopted(&request.store, &object, &etag);
    match meta
        .put(&request.bucket, &key, entry, layout, condition)
        .await
    {
        Ok(_) => step,
        // Written by someone else meanwhile: theirs stands.
        Err(MetaError::PreconditionFailed { .. } | MetaError::NoSuchKey { .. }) => Step::Conflict,
        Err(e) => {
            tracing::warn!(%key, error = %e, "import: cannot commit an entry");
            Step::Failed
        }
    }
}

/// Runs one import, sending its progress to `events`.
pub async fn run(
    meta: Arc<dyn Meta>,
    stores: Stores,
    request: ImportRequest,
    events: mpsc::Sender<ImportEvent>,
) {
    let refuse = |reason: String| async {
        let _ = events.send(ImportEvent::Refused { reason }).await;
    };
    let store = match stores.get(&request.store) {
        Ok(store) => store.clone(),
        Err(e) => return refuse(e.to_string()).await,
    };
    if store.spec.owned {
        return refuse(format!(
            "store {:?} is owned by this volume; import adopts buckets Ferry only reads (owned = false)",
            request.store
        ))
        .await;
    }
    if let Err(e) = meta.bucket(&request.bucket).await {
        return refuse(e.to_string()).await;
    }
    let prefix = (!request.source_prefix.is_empty())
        .then(|| Path::from(request.source_prefix.trim_end_matches('/')));
    let listing = store.client.list(prefix.as_ref());
    let mut tally = ImportTally::default();
    let mut steps = listing
        .map(|object| {
            let (meta, request, client) = (meta.clone(), request.clone(), store.client.clone());
            async move {
                match object {
                    Ok(object) => adopt(meta.as_ref(), client.as_ref(), &request, object).await,
                    Err(e) => {
                        tracing::warn!(error = %e, "import: listing failed");
                        Step::Failed
                    }
                }
            }
        })
        .buffer_unordered(CONCURRENCY);
    while let Some(step) = steps.next().await {
        tally.listed += 1;
        match step {
            Step::Gone => {}
            Step::Added => tally.added += 1,
            Step::Updated => tally.updated += 1,
            Step::Unchanged => tally.unchanged += 1,
            Step::Conflict => tally.conflicts += 1,
            Step::Refused => tally.refused += 1,
            Step::Failed => tally.failures += 1,
        }
        if tally.listed.is_multiple_of(REPORT_EVERY)
            && events
                .send(ImportEvent::Progress(tally.clone()))
                .await
                .is_err()
        {
            return;
        }
    }
    drop(steps);
    if request.delete && tally.failures == 0 {
        match sweep(meta.as_ref(), &store, &request).await {
            Ok(deleted) => tally.deleted = deleted,
            Err(e) => {
                tracing::warn!(error = %e, "import: the delete sweep failed");
                tally.failures += 1;
            }
        }
    }
    let _ = events.send(ImportEvent::Done(tally)).await;
}

/// Deletes this store's imported entries under the target prefix whose
/// source object is gone.
async fn sweep(
    meta: &dyn Meta,
    store: &crate::store::StoreHandle,
    request: &ImportRequest,
) -> Result<u64, String> {
    let mut deleted = 0;
    let mut after = None;
    loop {
        let page = meta
            .list(
                &request.bucket,
                &ListQuery {
                    prefix: request.target_prefix.clone(),
                    delimiter: None,
                    start_after: after.clone(),
                    max: 1000,
                },
            )
            .await
            .map_err(|e| e.to_string())?;
        let ours: Vec<(String, Entry)> = page
            .entries
            .into_iter()
            .filter(|(_, e)| e.imported_from.as_deref() == Some(request.store.as_str()))
            .collect();
        let gone: Vec<String> = stream::iter(ours)
            .map(|(key, entry)| async move {
                let (_, layout) = meta.get(&request.bucket, &key).await.ok()?;
                let blob = layout.segments.first()?.blob.clone();
                match store.client.head(&Path::from(blob)).await {
                    Err(object_store::Error::NotFound { .. }) => Some((key, entry)),
                    _ => None,
                }
            })
            .buffer_unordered(CONCURRENCY)
            .filter_map(|found| async move { found.map(|(key, _)| key) })
            .collect()
            .await;
        for key in gone {
            // Still the entry this import made? (A user may have written
            // the key since it was listed.)
            let still_ours = meta
                .head(&request.bucket, &key)
                .await
                .ok()
                .is_some_and(|e| e.imported_from.as_deref() == Some(request.store.as_str()));
            if still_ours
                && meta
                    .delete(&request.bucket, &key)
                    .await
                    .map_err(|e| e.to_string())?
                    .is_some()
            {
                deleted += 1;
            }
        }
        if !page.truncated {
            return Ok(deleted);
        }
        after = page.next_start_after;
    }
}

/// Runs `schedule`'s import every `schedule.every` until `stop`, one node
/// at a time (a lease per schedule, held as `holder`); each run's summary
/// goes to the log and to metrics (`ferry_import_last{import,count}`).
pub async fn run_scheduled(
    meta: Arc<dyn Meta>,
    stores: Stores,
    schedule: ferry_config::ImportSchedule,
    holder: String,
    stop: tokio_util::sync::CancellationToken,
) {
    let lease = format!("import:{}", schedule.name);
    let ttl = u64::try_from(schedule.every.as_millis()).unwrap_or(u64::MAX);
    let mut ticker = tokio::time::interval(schedule.every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let name = schedule.name.clone();
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = ticker.tick() => {}
        }
        match meta.try_lease(&lease, &holder, ttl).await {
            Ok(true) => {}
            Ok(false) => continue,
            Err(e) => {
                tracing::warn!(import = %name, error = %e, "scheduled import: lease failed");
                continue;
            }
        }
        let request = ImportRequest {
            store: schedule.store.clone(),
            source_prefix: schedule.source_prefix.clone(),
            bucket: schedule.bucket.clone(),
            target_prefix: schedule.target_prefix.clone(),
            delete: schedule.delete,
        };
        let (events, mut received) = mpsc::channel(16);
        let job = tokio::spawn(run(meta.clone(), stores.clone(), request, events));
        let mut outcome = "failed";
        while let Some(event) = received.recv().await {
            match event {
                ImportEvent::Progress(_) => {}
                ImportEvent::Refused { reason } => {
                    tracing::warn!(import = %name, %reason, "scheduled import refused");
                    outcome = "refused";
                }
                ImportEvent::Done(tally) => {
                    outcome = if tally.failures == 0 { "ok" } else { "failed" };
                    tracing::info!(import = %name, ?tally, "scheduled import ran");
                    record(&name, &tally);
                }
            }
        }
        let _ = job.await;
        ::metrics::counter!(crate::metrics::IMPORT_RUNS, "import" => name.clone(), "outcome" => outcome)
            .increment(1);
        ::metrics::gauge!(crate::metrics::IMPORT_LAST_RUN, "import" => name.clone())
            .set(ferry_meta::now_millis() as f64 / 1000.0);
    }
}

fn record(name: &str, tally: &ImportTally) {
    for (count, value) in [
        ("listed", tally.listed),
        ("added", tally.added),
        ("updated", tally.updated),
        ("unchanged", tally.unchanged),
        ("deleted", tally.deleted),
        ("conflicts", tally.conflicts),
        ("refused", tally.refused),
        ("failures", tally.failures),
    ] {
        ::metrics::gauge!(crate::metrics::IMPORT_LAST, "import" => name.to_string(), "count" => count)
            .set(value as f64);
    }
}
