//! The embedded engine: one redb file, ACID transactions, no setup.
//!
//! Reads run on the calling task (a redb read transaction is a snapshot and
//! costs microseconds); writes run on the blocking pool because each commit
//! waits for an fsync.

mod tables;

use std::path::Path;
use std::sync::Arc;

use redb::{Database, ReadableDatabase, ReadableTable, WriteTransaction};
use serde::{Deserialize, Serialize};
use serde::de::DeserializeOwned;

use self::tables::*;
use crate::error::{MetaError, Result};
use crate::listing::{self, KeyScan};
use crate::types::*;
use crate::Meta;

/// Handle to a redb-backed namespace. Cheap to clone.
#[derive(Clone)]
pub struct EmbeddedMeta {
    db: Arc<Database>,
}

#[derive(Serialize, Deserialize)]
struct Lease {
    holder: String,
    expires: UnixMillis,
}

fn db_err(e: impl Into<redb::Error>) -> MetaError {
    MetaError::Internal(format!("redb: {}", e.into()))
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(value).map_err(MetaError::internal)
}

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| MetaError::Internal(format!("corrupt record: {e}")))
}

impl EmbeddedMeta {
    /// Opens (or creates) the namespace file at `path`.
    pub fn open(path: &Path) -> Result<EmbeddedMeta> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .map_err(|e| MetaError::Internal(format!("cannot create {}: {e}", parent.display())))?;
        }
        let db = Database::create(path).map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => MetaError::Internal(format!(
                "{} is already open in another ferry process",
                path.display()
            )),
            other => MetaError::Internal(format!("cannot open {}: {other}", path.display())),
        })?;
        let txn = db.begin_write().map_err(db_err)?;
        {
            // Creating every table up front lets read transactions open them
            // without a "table does not exist" case.
            txn.open_table(BUCKETS).map_err(db_err)?;
            txn.open_table(ENTRIES).map_err(db_err)?;
            txn.open_table(LAYOUTS).map_err(db_err)?;
            txn.open_table(BLOB_REFS).map_err(db_err)?;
            txn.open_table(DELETION_QUEUE).map_err(db_err)?;
            txn.open_table(QUEUED_AT).map_err(db_err)?;
            txn.open_table(CHANGES).map_err(db_err)?;
            txn.open_table(LEASES).map_err(db_err)?;
            let mut state = txn.open_table(STATE).map_err(db_err)?;
            let schema = state.get("schema").map_err(db_err)?.map(|v| v.value());
            match schema {
                None => {
                    state.insert("schema", SCHEMA_VERSION).map_err(db_err)?;
                }
                Some(SCHEMA_VERSION) => {}
                Some(other) => {
                    return Err(MetaError::Internal(format!(
                        "{} has metadata schema {other}; this ferry reads schema {SCHEMA_VERSION}",
                        path.display()
                    )));
                }
            }
        }
        txn.commit().map_err(db_err)?;
        Ok(EmbeddedMeta { db: Arc::new(db) })
    }

    /// Runs `f` in one write transaction on the blocking pool and commits
    /// it if `f` succeeds; an error aborts every change `f` made.
    async fn write<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&WriteTransaction) -> Result<T> + Send + 'static,
    {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || {
            let txn = db.begin_write().map_err(db_err)?;
            let out = f(&txn)?;
            txn.commit().map_err(db_err)?;
            Ok(out)
        })
        .await
        .map_err(|e| MetaError::Internal(format!("metadata task failed: {e}")))?
    }

    fn read_entry(&self, bucket: &str, key: &str) -> Result<Option<(Entry, redb::ReadTransaction)>> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let entries = txn.open_table(ENTRIES).map_err(db_err)?;
        match entries.get(entry_key(bucket, key.as_bytes()).as_slice()).map_err(db_err)? {
            Some(value) => {
                let entry = decode(value.value())?;
                drop(entries);
                Ok(Some((entry, txn)))
            }
            None => {
                let buckets = txn.open_table(BUCKETS).map_err(db_err)?;
                if buckets.get(bucket).map_err(db_err)?.is_none() {
                    return Err(MetaError::NoSuchBucket { bucket: bucket.into() });
                }
                Ok(None)
            }
        }
    }
}

fn append_change(txn: &WriteTransaction, op: ChangeOp) -> Result<Seq> {
    let mut state = txn.open_table(STATE).map_err(db_err)?;
    let seq = state.get("last_seq").map_err(db_err)?.map_or(0, |v| v.value()) + 1;
    state.insert("last_seq", seq).map_err(db_err)?;
    let change = Change {
        seq,
        at: now_millis(),
        op,
    };
    txn.open_table(CHANGES)
        .map_err(db_err)?
        .insert(seq, encode(&change)?.as_slice())
        .map_err(db_err)?;
    Ok(seq)
}

fn require_bucket(txn: &WriteTransaction, bucket: &str) -> Result<()> {
    let buckets = txn.open_table(BUCKETS).map_err(db_err)?;
    if buckets.get(bucket).map_err(db_err)?.is_none() {
        return Err(MetaError::NoSuchBucket { bucket: bucket.into() });
    }
    Ok(())
}

fn add_ref(txn: &WriteTransaction, blob: &BlobRef) -> Result<()> {
    let key = blob_key(blob);
    let mut refs = txn.open_table(BLOB_REFS).map_err(db_err)?;
    let count = refs.get(key.as_slice()).map_err(db_err)?.map_or(0, |v| v.value());
    refs.insert(key.as_slice(), count + 1).map_err(db_err)?;
    // A queued blob that is referenced again (a copy that read its layout
    // before the last reference went away) leaves the queue.
    let mut queued_at = txn.open_table(QUEUED_AT).map_err(db_err)?;
    if let Some(at) = queued_at.remove(key.as_slice()).map_err(db_err)?.map(|v| v.value()) {
        txn.open_table(DELETION_QUEUE)
            .map_err(db_err)?
            .remove(queue_key(at, blob).as_slice())
            .map_err(db_err)?;
    }
    Ok(())
}

fn queue_blob(txn: &WriteTransaction, blob: &BlobRef, refs_when_queued: u64) -> Result<()> {
    let key = blob_key(blob);
    let mut queued_at = txn.open_table(QUEUED_AT).map_err(db_err)?;
    if queued_at.get(key.as_slice()).map_err(db_err)?.is_some() {
        return Ok(());
    }
    let record = QueuedBlob {
        blob: blob.clone(),
        queued_at: now_millis(),
        refs_when_queued,
    };
    queued_at.insert(key.as_slice(), record.queued_at).map_err(db_err)?;
    txn.open_table(DELETION_QUEUE)
        .map_err(db_err)?
        .insert(queue_key(record.queued_at, blob).as_slice(), encode(&record)?.as_slice())
        .map_err(db_err)?;
    Ok(())
}

fn drop_ref(txn: &WriteTransaction, blob: &BlobRef) -> Result<()> {
    let key = blob_key(blob);
    let count = {
        let mut refs = txn.open_table(BLOB_REFS).map_err(db_err)?;
        let count = refs.get(key.as_slice()).map_err(db_err)?.map_or(0, |v| v.value());
        if count > 1 {
            refs.insert(key.as_slice(), count - 1).map_err(db_err)?;
        } else {
            refs.remove(key.as_slice()).map_err(db_err)?;
        }
        count.saturating_sub(1)
    };
    if count == 0 {
        queue_blob(txn, blob, 0)?;
    }
    Ok(())
}

/// Removes the entry stored under `ekey` (if any) with its layout, dropping
/// its blob references. Returns the removed entry.
fn remove_entry(txn: &WriteTransaction, ekey: &[u8]) -> Result<Option<Entry>> {
    let old: Option<Entry> = {
        let mut entries = txn.open_table(ENTRIES).map_err(db_err)?;
        let removed = entries.remove(ekey).map_err(db_err)?;
        match removed {
            Some(v) => Some(decode(v.value())?),
            None => None,
        }
    };
    let Some(old) = old else { return Ok(None) };
    let layout: Option<Layout> = {
        let mut layouts = txn.open_table(LAYOUTS).map_err(db_err)?;
        let removed = layouts.remove(old.id.as_str()).map_err(db_err)?;
        match removed {
            Some(v) => Some(decode(v.value())?),
            None => None,
        }
    };
    for blob in layout.unwrap_or_default().blobs() {
        drop_ref(txn, &blob)?;
    }
    Ok(Some(old))
}

struct RedbScan<'t, T: ReadableTable<&'static [u8], &'static [u8]>> {
    entries: &'t T,
    bucket: &'t str,
}

impl<T: ReadableTable<&'static [u8], &'static [u8]>> KeyScan for RedbScan<'_, T> {
    fn scan(&mut self, from: &[u8], limit: usize) -> Result<Vec<(String, Entry)>> {
        let start = entry_key(self.bucket, from);
        let end = bucket_end(self.bucket);
        let skip = self.bucket.len() + 1;
        let mut out = Vec::with_capacity(limit.min(1024));
        for item in self
            .entries
            .range(start.as_slice()..end.as_slice())
            .map_err(db_err)?
            .take(limit)
        {
            let (k, v) = item.map_err(db_err)?;
            let key = std::str::from_utf8(&k.value()[skip..])
                .map_err(|e| MetaError::Internal(format!("corrupt key: {e}")))?
                .to_string();
            out.push((key, decode(v.value())?));
        }
        Ok(out)
    }
}

#[async_trait::async_trait]
impl Meta for EmbeddedMeta {
    async fn create_bucket(&self, bucket: &str) -> Result<Seq> {
        let bucket = bucket.to_string();
        self.write(move |txn| {
            {
                let mut buckets = txn.open_table(BUCKETS).map_err(db_err)?;
                if buckets.get(bucket.as_str()).map_err(db_err)?.is_some() {
                    return Err(MetaError::BucketExists { bucket });
                }
                let info = BucketInfo {
                    name: bucket.clone(),
                    created: now_millis(),
                };
                buckets.insert(bucket.as_str(), encode(&info)?.as_slice()).map_err(db_err)?;
            }
            append_change(txn, ChangeOp::CreateBucket { bucket })
        })
        .await
    }

    async fn delete_bucket(&self, bucket: &str) -> Result<Seq> {
        let bucket = bucket.to_string();
        self.write(move |txn| {
            require_bucket(txn, &bucket)?;
            {
                let entries = txn.open_table(ENTRIES).map_err(db_err)?;
                let start = entry_key(&bucket, b"");
                let end = bucket_end(&bucket);
                if entries
                    .range(start.as_slice()..end.as_slice())
                    .map_err(db_err)?
                    .next()
                    .is_some()
                {
                    return Err(MetaError::BucketNotEmpty { bucket });
                }
            }
            txn.open_table(BUCKETS)
                .map_err(db_err)?
                .remove(bucket.as_str())
                .map_err(db_err)?;
            append_change(txn, ChangeOp::DeleteBucket { bucket })
        })
        .await
    }

    async fn bucket(&self, bucket: &str) -> Result<BucketInfo> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let buckets = txn.open_table(BUCKETS).map_err(db_err)?;
        match buckets.get(bucket).map_err(db_err)? {
            Some(v) => decode(v.value()),
            None => Err(MetaError::NoSuchBucket { bucket: bucket.into() }),
        }
    }

    async fn list_buckets(&self) -> Result<Vec<BucketInfo>> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let buckets = txn.open_table(BUCKETS).map_err(db_err)?;
        let mut out = Vec::new();
        for item in buckets.iter().map_err(db_err)? {
            let (_, v) = item.map_err(db_err)?;
            out.push(decode(v.value())?);
        }
        Ok(out)
    }

    async fn head(&self, bucket: &str, key: &str) -> Result<Entry> {
        match self.read_entry(bucket, key)? {
            Some((entry, _)) => Ok(entry),
            None => Err(MetaError::NoSuchKey {
                bucket: bucket.into(),
                key: key.into(),
            }),
        }
    }

    async fn get(&self, bucket: &str, key: &str) -> Result<(Entry, Layout)> {
        let Some((entry, txn)) = self.read_entry(bucket, key)? else {
            return Err(MetaError::NoSuchKey {
                bucket: bucket.into(),
                key: key.into(),
            });
        };
        // Same snapshot as the entry: the layout cannot have been replaced.
        let layouts = txn.open_table(LAYOUTS).map_err(db_err)?;
        let layout = match layouts.get(entry.id.as_str()).map_err(db_err)? {
            Some(v) => decode(v.value())?,
            None => {
                return Err(MetaError::Internal(format!(
                    "entry {} of {bucket}/{key} has no layout",
                    entry.id
                )));
            }
        };
        Ok((entry, layout))
    }

    async fn put(
        &self,
        bucket: &str,
        key: &str,
        entry: Entry,
        layout: Layout,
        condition: Precondition,
    ) -> Result<PutOutcome> {
        let bucket = bucket.to_string();
        let key = key.to_string();
        self.write(move |txn| {
            require_bucket(txn, &bucket)?;
            let ekey = entry_key(&bucket, key.as_bytes());
            let current: Option<Entry> = {
                let entries = txn.open_table(ENTRIES).map_err(db_err)?;
                let found = entries.get(ekey.as_slice()).map_err(db_err)?;
                match found {
                    Some(v) => Some(decode(v.value())?),
                    None => None,
                }
            };
            let holds = match (&condition, &current) {
                (Precondition::None, _) => true,
                (Precondition::IfAbsent, current) => current.is_none(),
                (Precondition::IfMatch(etag), Some(current)) => &current.etag == etag,
                (Precondition::IfMatch(_), None) => false,
            };
            if !holds {
                return Err(MetaError::PreconditionFailed { bucket, key });
            }
            // Add the new references before dropping the old ones, so a blob
            // shared by both never passes through the queue.
            for blob in layout.blobs() {
                add_ref(txn, &blob)?;
            }
            let replaced = remove_entry(txn, &ekey)?;
            txn.open_table(ENTRIES)
                .map_err(db_err)?
                .insert(ekey.as_slice(), encode(&entry)?.as_slice())
                .map_err(db_err)?;
            txn.open_table(LAYOUTS)
                .map_err(db_err)?
                .insert(entry.id.as_str(), encode(&layout)?.as_slice())
                .map_err(db_err)?;
            let seq = append_change(
                txn,
                ChangeOp::Put {
                    bucket,
                    key,
                    entry: Box::new(entry),
                    layout,
                },
            )?;
            Ok(PutOutcome { seq, replaced })
        })
        .await
    }

    async fn delete(&self, bucket: &str, key: &str) -> Result<Option<Entry>> {
        let bucket = bucket.to_string();
        let key = key.to_string();
        self.write(move |txn| {
            require_bucket(txn, &bucket)?;
            let removed = remove_entry(txn, &entry_key(&bucket, key.as_bytes()))?;
            if removed.is_some() {
                append_change(txn, ChangeOp::Delete { bucket, key })?;
            }
            Ok(removed)
        })
        .await
    }

    async fn list(&self, bucket: &str, query: &ListQuery) -> Result<ListPage> {
        let db = self.db.clone();
        let bucket = bucket.to_string();
        let query = query.clone();
        tokio::task::spawn_blocking(move || {
            let txn = db.begin_read().map_err(db_err)?;
            let buckets = txn.open_table(BUCKETS).map_err(db_err)?;
            if buckets.get(bucket.as_str()).map_err(db_err)?.is_none() {
                return Err(MetaError::NoSuchBucket { bucket });
            }
            let entries = txn.open_table(ENTRIES).map_err(db_err)?;
            let mut scan = RedbScan {
                entries: &entries,
                bucket: &bucket,
            };
            listing::list(&mut scan, &query)
        })
        .await
        .map_err(|e| MetaError::Internal(format!("metadata task failed: {e}")))?
    }

    async fn changes_since(&self, after: Seq, limit: usize) -> Result<Vec<Change>> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let changes = txn.open_table(CHANGES).map_err(db_err)?;
        let mut out = Vec::new();
        for item in changes.range(after.saturating_add(1)..).map_err(db_err)?.take(limit) {
            let (_, v) = item.map_err(db_err)?;
            out.push(decode(v.value())?);
        }
        Ok(out)
    }

    async fn last_seq(&self) -> Result<Seq> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let state = txn.open_table(STATE).map_err(db_err)?;
        Ok(state.get("last_seq").map_err(db_err)?.map_or(0, |v| v.value()))
    }

    async fn queue_uncommitted(&self, blobs: &[BlobRef]) -> Result<()> {
        let blobs = blobs.to_vec();
        self.write(move |txn| {
            for blob in &blobs {
                let refs = txn
                    .open_table(BLOB_REFS)
                    .map_err(db_err)?
                    .get(blob_key(blob).as_slice())
                    .map_err(db_err)?
                    .map_or(0, |v| v.value());
                if refs == 0 {
                    queue_blob(txn, blob, 0)?;
                }
            }
            Ok(())
        })
        .await
    }

    async fn due_deletions(&self, queued_before: UnixMillis, limit: usize) -> Result<Vec<QueuedBlob>> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let queue = txn.open_table(DELETION_QUEUE).map_err(db_err)?;
        let upper = queue_upper(queued_before);
        let mut out = Vec::new();
        for item in queue.range(..upper.as_slice()).map_err(db_err)?.take(limit) {
            let (_, v) = item.map_err(db_err)?;
            out.push(decode(v.value())?);
        }
        Ok(out)
    }

    async fn claim_deletion(&self, blob: &QueuedBlob) -> Result<bool> {
        let blob = blob.clone();
        self.write(move |txn| {
            let key = blob_key(&blob.blob);
            let mut queued_at = txn.open_table(QUEUED_AT).map_err(db_err)?;
            let current = queued_at.get(key.as_slice()).map_err(db_err)?.map(|v| v.value());
            if current != Some(blob.queued_at) {
                // Already claimed, or re-queued under a newer record.
                return Ok(false);
            }
            queued_at.remove(key.as_slice()).map_err(db_err)?;
            txn.open_table(DELETION_QUEUE)
                .map_err(db_err)?
                .remove(queue_key(blob.queued_at, &blob.blob).as_slice())
                .map_err(db_err)?;
            let refs = txn
                .open_table(BLOB_REFS)
                .map_err(db_err)?
                .get(key.as_slice())
                .map_err(db_err)?
                .map_or(0, |v| v.value());
            Ok(refs == 0)
        })
        .await
    }

    async fn blob_refs(&self, blob: &BlobRef) -> Result<u64> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let refs = txn.open_table(BLOB_REFS).map_err(db_err)?;
        Ok(refs
            .get(blob_key(blob).as_slice())
            .map_err(db_err)?
            .map_or(0, |v| v.value()))
    }

    async fn try_lease(&self, name: &str, holder: &str, ttl_ms: u64) -> Result<bool> {
        let name = name.to_string();
        let holder = holder.to_string();
        self.write(move |txn| {
            let mut leases = txn.open_table(LEASES).map_err(db_err)?;
            let now = now_millis();
            let current: Option<Lease> = match leases.get(name.as_str()).map_err(db_err)? {
                Some(v) => Some(decode(v.value())?),
                None => None,
            };
            if let Some(lease) = current
                && lease.holder != holder
                && lease.expires > now
            {
                return Ok(false);
            }
            let lease = Lease {
                holder,
                expires: now.saturating_add(i64::try_from(ttl_ms).unwrap_or(i64::MAX)),
            };
            leases.insert(name.as_str(), encode(&lease)?.as_slice()).map_err(db_err)?;
            Ok(true)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn engine() -> (tempfile::TempDir, EmbeddedMeta) {
        let dir = tempfile::tempdir().expect("tempdir");
        let meta = EmbeddedMeta::open(&dir.path().join("meta.redb")).expect("open");
        (dir, meta)
    }

    #[tokio::test]
    async fn conformance() {
        let (_dir, meta) = engine();
        crate::conformance::run_all(&meta).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn racing_creates_have_one_winner() {
        let (_dir, meta) = engine();
        crate::conformance::racing_creates(Arc::new(meta)).await;
    }

    #[test]
    fn namespace_matches_reference_model() {
        crate::conformance::model::check(|| {
            let (dir, meta) = engine();
            (Box::new(dir) as Box<dyn std::any::Any>, Arc::new(meta) as Arc<dyn Meta>)
        });
    }

    #[tokio::test]
    async fn reopening_keeps_everything() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("meta.redb");
        {
            let meta = EmbeddedMeta::open(&path).expect("open");
            meta.create_bucket("b").await.expect("create");
            crate::conformance::put_simple(&meta, "b", "k", "one").await;
        }
        let meta = EmbeddedMeta::open(&path).expect("reopen");
        assert_eq!(meta.head("b", "k").await.expect("head").etag, "one");
        assert_eq!(meta.last_seq().await.expect("seq"), 2);
    }

    #[tokio::test]
    async fn a_second_process_cannot_open_the_same_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("meta.redb");
        let _first = EmbeddedMeta::open(&path).expect("open");
        let second = EmbeddedMeta::open(&path);
        assert!(second.is_err());
    }
}
