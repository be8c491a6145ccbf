//! The embedded engine: one redb file, ACID transactions, no setup.
//!
//! Reads run on the calling task (a redb read transaction is a snapshot and
//! costs microseconds); writes go to one writer thread that commits every
//! mutation waiting at the time in one transaction, so concurrent writers
//! share an fsync.

mod tables;
mod writer;

use std::path::Path;
use std::sync::Arc;

use redb::{Database, ReadableDatabase, ReadableTable, WriteTransaction};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use self::tables::*;
use crate::Meta;
use crate::error::{MetaError, Result};
use crate::listing::{self, KeyScan};
use crate::types::*;

/// Handle to a redb-backed namespace. Cheap to clone.
#[derive(Clone)]
pub struct EmbeddedMeta {
    db: Arc<Database>,
    writer: Arc<writer::GroupWriter>,
    /// Keys one listing call may read (see [`listing`]).
    list_read_budget: usize,
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
            std::fs::create_dir_all(parent).map_err(|e| {
                MetaError::Internal(format!("cannot create {}: {e}", parent.display()))
            })?;
        }
        let db = Database::create(path).map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => MetaError::Internal(format!(
                "{} is already open in another ferry process; stop `ferry serve` first, or use the Redis engine to work beside it",
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
            txn.open_table(UPLOADS).map_err(db_err)?;
            txn.open_table(PARTS).map_err(db_err)?;
            txn.open_table(COMPLETIONS).map_err(db_err)?;
            txn.open_table(COMPLETIONS_DUE).map_err(db_err)?;
            txn.open_table(MIRRORS).map_err(db_err)?;
            txn.open_table(REPLICATION).map_err(db_err)?;
            txn.open_table(REPLICATION_INDEX).map_err(db_err)?;
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
        let db = Arc::new(db);
        let writer = Arc::new(writer::GroupWriter::start(db.clone())?);
        Ok(EmbeddedMeta {
            db,
            writer,
            list_read_budget: listing::LIST_READ_BUDGET,
        })
    }

    /// The same namespace with listing calls that read at most `keys`
    /// keys each (at least 1); the default is [`crate::LIST_READ_BUDGET`].
    #[must_use]
    pub fn with_list_read_budget(mut self, keys: usize) -> EmbeddedMeta {
        self.list_read_budget = keys.max(1);
        self
    }

    /// Runs `f` in a write transaction (shared with concurrent writers, see
    /// `writer`) and returns once it is durable. `f` must refuse before its
    /// first write: an error after writes abandons the whole transaction.
    async fn write<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&WriteTransaction) -> Result<T> + Send + 'static,
    {
        self.writer.write(f).await
    }

    fn read_entry(
        &self,
        bucket: &str,
        key: &str,
    ) -> Result<Option<(Entry, redb::ReadTransaction)>> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let entries = txn.open_table(ENTRIES).map_err(db_err)?;
        match entries
            .get(entry_key(bucket, key.as_bytes()).as_slice())
            .map_err(db_err)?
        {
            Some(value) => {
                let entry = decode(value.value())?;
                drop(entries);
                Ok(Some((entry, txn)))
            }
            None => {
                let buckets = txn.open_table(BUCKETS).map_err(db_err)?;
                if buckets.get(bucket).map_err(db_err)?.is_none() {
                    return Err(MetaError::NoSuchBucket {
                        bucket: bucket.into(),
                    });
                }
                Ok(None)
            }
        }
    }
}

impl EmbeddedMeta {
    fn read_state(&self, name: &str) -> Result<Option<u64>> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let state = txn.open_table(STATE).map_err(db_err)?;
        Ok(state.get(name).map_err(db_err)?.map(|v| v.value()))
    }
}

fn append_change(txn: &WriteTransaction, op: ChangeOp) -> Result<Seq> {
    let mut state = txn.open_table(STATE).map_err(db_err)?;
    let seq = state
        .get("last_seq")
        .map_err(db_err)?
        .map_or(0, |v| v.value())
        + 1;
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
        return Err(MetaError::NoSuchBucket {
            bucket: bucket.into(),
        });
    }
    Ok(())
}

fn add_ref(txn: &WriteTransaction, blob: &BlobRef) -> Result<()> {
    let key = blob_key(blob);
    let mut refs = txn.open_table(BLOB_REFS).map_err(db_err)?;
    let count = refs
        .get(key.as_slice())
        .map_err(db_err)?
        .map_or(0, |v| v.value());
    refs.insert(key.as_slice(), count + 1).map_err(db_err)?;
    // A queued blob that is referenced again (a copy that read its layout
    // before the last reference went away) leaves the queue.
    let mut queued_at = txn.open_table(QUEUED_AT).map_err(db_err)?;
    if let Some(at) = queued_at
        .remove(key.as_slice())
        .map_err(db_err)?
        .map(|v| v.value())
    {
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
    queued_at
        .insert(key.as_slice(), record.queued_at)
        .map_err(db_err)?;
    txn.open_table(DELETION_QUEUE)
        .map_err(db_err)?
        .insert(
            queue_key(record.queued_at, blob).as_slice(),
            encode(&record)?.as_slice(),
        )
        .map_err(db_err)?;
    Ok(())
}

fn drop_ref(txn: &WriteTransaction, blob: &BlobRef) -> Result<()> {
    let key = blob_key(blob);
    let count = {
        let mut refs = txn.open_table(BLOB_REFS).map_err(db_err)?;
        let count = refs
            .get(key.as_slice())
            .map_err(db_err)?
            .map_or(0, |v| v.value());
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

/// Makes `entry` with `layout` the current version of `key` if `condition`
/// holds: the body of `put` and of `complete_upload`.
fn commit_entry(
    txn: &WriteTransaction,
    bucket: String,
    key: String,
    entry: Entry,
    layout: Layout,
    condition: &Precondition,
) -> Result<PutOutcome> {
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
    match condition.check(current.as_ref()) {
        Ok(()) => {}
        Err(Refusal::NoKey) => return Err(MetaError::NoSuchKey { bucket, key }),
        Err(Refusal::Failed) => return Err(MetaError::PreconditionFailed { bucket, key }),
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
}

/// Removes an upload and its part records, dropping each part's reference.
fn remove_upload(txn: &WriteTransaction, ukey: &[u8], upload_id: &str) -> Result<()> {
    txn.open_table(UPLOADS)
        .map_err(db_err)?
        .remove(ukey)
        .map_err(db_err)?;
    let parts: Vec<Part> = {
        let mut table = txn.open_table(PARTS).map_err(db_err)?;
        let start = part_key(upload_id, 0);
        let end = parts_end(upload_id);
        let mut removed = Vec::new();
        for item in table
            .extract_from_if(start.as_slice()..end.as_slice(), |_, _| true)
            .map_err(db_err)?
        {
            let (_, v) = item.map_err(db_err)?;
            removed.push(decode(v.value())?);
        }
        removed
    };
    for blob in parts.iter().flat_map(Part::blobs) {
        drop_ref(txn, &blob)?;
    }
    Ok(())
}

fn require_upload(
    txn: &WriteTransaction,
    bucket: &str,
    key: &str,
    upload_id: &str,
) -> Result<Vec<u8>> {
    let ukey = upload_key(bucket, key, upload_id);
    let uploads = txn.open_table(UPLOADS).map_err(db_err)?;
    if uploads.get(ukey.as_slice()).map_err(db_err)?.is_none() {
        drop(uploads);
        require_bucket(txn, bucket)?;
        return Err(MetaError::NoSuchUpload {
            bucket: bucket.into(),
            key: key.into(),
            upload_id: upload_id.into(),
        });
    }
    Ok(ukey)
}

/// Up to `limit` entry keys of `bucket` (as stored), first first.
fn bucket_keys(txn: &WriteTransaction, bucket: &str, limit: usize) -> Result<Vec<Vec<u8>>> {
    let entries = txn.open_table(ENTRIES).map_err(db_err)?;
    let start = entry_key(bucket, b"");
    let end = bucket_end(bucket);
    let mut out = Vec::new();
    for item in entries
        .range(start.as_slice()..end.as_slice())
        .map_err(db_err)?
        .take(limit)
    {
        let (k, _) = item.map_err(db_err)?;
        out.push(k.value().to_vec());
    }
    Ok(out)
}

/// Removes a bucket that holds no entries: aborts its uploads, logs it.
fn remove_bucket(txn: &WriteTransaction, bucket: String) -> Result<Seq> {
    let uploads: Vec<(Vec<u8>, String)> = {
        let table = txn.open_table(UPLOADS).map_err(db_err)?;
        let start = entry_key(&bucket, b"");
        let end = bucket_end(&bucket);
        let mut found = Vec::new();
        for item in table
            .range(start.as_slice()..end.as_slice())
            .map_err(db_err)?
        {
            let (k, v) = item.map_err(db_err)?;
            let upload: Upload = decode(v.value())?;
            found.push((k.value().to_vec(), upload.id));
        }
        found
    };
    for (ukey, upload_id) in uploads {
        remove_upload(txn, &ukey, &upload_id)?;
    }
    txn.open_table(BUCKETS)
        .map_err(db_err)?
        .remove(bucket.as_str())
        .map_err(db_err)?;
    append_change(txn, ChangeOp::DeleteBucket { bucket })
}

fn has_entry(txn: &WriteTransaction, bucket: &str, key: &str) -> Result<bool> {
    let entries = txn.open_table(ENTRIES).map_err(db_err)?;
    Ok(entries
        .get(entry_key(bucket, key.as_bytes()).as_slice())
        .map_err(db_err)?
        .is_some())
}

fn has_bucket(txn: &WriteTransaction, bucket: &str) -> Result<bool> {
    let buckets = txn.open_table(BUCKETS).map_err(db_err)?;
    Ok(buckets.get(bucket).map_err(db_err)?.is_some())
}

fn state_value(txn: &WriteTransaction, name: &str) -> Result<Option<u64>> {
    let state = txn.open_table(STATE).map_err(db_err)?;
    Ok(state.get(name).map_err(db_err)?.map(|v| v.value()))
}

fn set_state(txn: &WriteTransaction, name: &str, value: u64) -> Result<()> {
    txn.open_table(STATE)
        .map_err(db_err)?
        .insert(name, value)
        .map_err(db_err)?;
    Ok(())
}

/// Sets a bucket's ACL and logs it; `None` when the bucket is absent.
fn write_bucket_acl(txn: &WriteTransaction, bucket: String, acl: CannedAcl) -> Result<Option<Seq>> {
    {
        let mut buckets = txn.open_table(BUCKETS).map_err(db_err)?;
        let mut info: BucketInfo = match buckets.get(bucket.as_str()).map_err(db_err)? {
            Some(v) => decode(v.value())?,
            None => return Ok(None),
        };
        info.acl = acl;
        buckets
            .insert(bucket.as_str(), encode(&info)?.as_slice())
            .map_err(db_err)?;
    }
    append_change(txn, ChangeOp::SetBucketAcl { bucket, acl }).map(Some)
}

/// Sets an entry's ACL and logs it; `None` when the key is absent.
fn write_object_acl(
    txn: &WriteTransaction,
    bucket: String,
    key: String,
    acl: CannedAcl,
) -> Result<Option<Seq>> {
    let ekey = entry_key(&bucket, key.as_bytes());
    {
        let mut entries = txn.open_table(ENTRIES).map_err(db_err)?;
        let mut entry: Entry = match entries.get(ekey.as_slice()).map_err(db_err)? {
            Some(v) => decode(v.value())?,
            None => return Ok(None),
        };
        entry.acl = acl;
        entries
            .insert(ekey.as_slice(), encode(&entry)?.as_slice())
            .map_err(db_err)?;
    }
    append_change(txn, ChangeOp::SetObjectAcl { bucket, key, acl }).map(Some)
}

/// Applies a source region's change here (see [`Meta::apply`]): absent
/// buckets and keys make it a no-op, nothing refuses.
fn apply_op(txn: &WriteTransaction, at: UnixMillis, op: ChangeOp) -> Result<()> {
    match op {
        ChangeOp::CreateBucket { bucket, acl } => {
            if !has_bucket(txn, &bucket)? {
                let info = BucketInfo {
                    name: bucket.clone(),
                    created: at,
                    acl,
                };
                txn.open_table(BUCKETS)
                    .map_err(db_err)?
                    .insert(bucket.as_str(), encode(&info)?.as_slice())
                    .map_err(db_err)?;
                append_change(txn, ChangeOp::CreateBucket { bucket, acl })?;
            }
        }
        ChangeOp::DeleteBucket { bucket } => {
            if has_bucket(txn, &bucket)? {
                for ekey in bucket_keys(txn, &bucket, usize::MAX)? {
                    remove_entry(txn, &ekey)?;
                }
                remove_bucket(txn, bucket)?;
            }
        }
        ChangeOp::Put {
            bucket,
            key,
            entry,
            layout,
        } => {
            if has_bucket(txn, &bucket)? {
                commit_entry(txn, bucket, key, *entry, layout, &Precondition::None)?;
            }
        }
        ChangeOp::Delete { bucket, key } => {
            if has_bucket(txn, &bucket)?
                && remove_entry(txn, &entry_key(&bucket, key.as_bytes()))?.is_some()
            {
                append_change(txn, ChangeOp::Delete { bucket, key })?;
            }
        }
        ChangeOp::SetBucketAcl { bucket, acl } => {
            write_bucket_acl(txn, bucket, acl)?;
        }
        ChangeOp::SetObjectAcl { bucket, key, acl } => {
            write_object_acl(txn, bucket, key, acl)?;
        }
    }
    Ok(())
}

fn queue_jobs(txn: &WriteTransaction, blobs: &[BlobRef]) -> Result<()> {
    let mut next = state_value(txn, "replication_next")?.unwrap_or(1);
    {
        let mut index = txn.open_table(REPLICATION_INDEX).map_err(db_err)?;
        let mut jobs = txn.open_table(REPLICATION).map_err(db_err)?;
        for blob in blobs {
            let key = blob_key(blob);
            if index.get(key.as_slice()).map_err(db_err)?.is_some() {
                continue;
            }
            index.insert(key.as_slice(), next).map_err(db_err)?;
            jobs.insert(next, encode(blob)?.as_slice())
                .map_err(db_err)?;
            next += 1;
        }
    }
    set_state(txn, "replication_next", next)
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
    // ---- Namespace: buckets -------------------------------------------------

    async fn create_bucket(&self, bucket: &str) -> Result<Seq> {
        self.restore_bucket(&BucketInfo::new(bucket)).await
    }

    async fn restore_bucket(&self, info: &BucketInfo) -> Result<Seq> {
        let info = info.clone();
        self.write(move |txn| {
            let bucket = info.name.clone();
            {
                let mut buckets = txn.open_table(BUCKETS).map_err(db_err)?;
                if buckets.get(bucket.as_str()).map_err(db_err)?.is_some() {
                    return Err(MetaError::BucketExists { bucket });
                }
                buckets
                    .insert(bucket.as_str(), encode(&info)?.as_slice())
                    .map_err(db_err)?;
            }
            append_change(
                txn,
                ChangeOp::CreateBucket {
                    bucket,
                    acl: info.acl,
                },
            )
        })
        .await
    }

    async fn delete_bucket(&self, bucket: &str) -> Result<Seq> {
        let bucket = bucket.to_string();
        self.write(move |txn| {
            require_bucket(txn, &bucket)?;
            if !bucket_keys(txn, &bucket, 1)?.is_empty() {
                return Err(MetaError::BucketNotEmpty { bucket });
            }
            remove_bucket(txn, bucket)
        })
        .await
    }

    async fn bucket(&self, bucket: &str) -> Result<BucketInfo> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let buckets = txn.open_table(BUCKETS).map_err(db_err)?;
        match buckets.get(bucket).map_err(db_err)? {
            Some(v) => decode(v.value()),
            None => Err(MetaError::NoSuchBucket {
                bucket: bucket.into(),
            }),
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

    async fn set_bucket_acl(&self, bucket: &str, acl: CannedAcl) -> Result<Seq> {
        let bucket = bucket.to_string();
        self.write(move |txn| {
            require_bucket(txn, &bucket)?;
            write_bucket_acl(txn, bucket.clone(), acl)?.ok_or(MetaError::NoSuchBucket { bucket })
        })
        .await
    }

    // ---- Namespace: entries and listing -------------------------------------

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
        self.write(move |txn| commit_entry(txn, bucket, key, entry, layout, &condition))
            .await
    }

    async fn set_object_acl(&self, bucket: &str, key: &str, acl: CannedAcl) -> Result<Seq> {
        let (bucket, key) = (bucket.to_string(), key.to_string());
        self.write(move |txn| {
            require_bucket(txn, &bucket)?;
            if !has_entry(txn, &bucket, &key)? {
                return Err(MetaError::NoSuchKey { bucket, key });
            }
            write_object_acl(txn, bucket.clone(), key.clone(), acl)?
                .ok_or(MetaError::NoSuchKey { bucket, key })
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
        let budget = self.list_read_budget;
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
            listing::list(&mut scan, &query, budget)
        })
        .await
        .map_err(|e| MetaError::Internal(format!("metadata task failed: {e}")))?
    }

    // ---- Multipart uploads --------------------------------------------------

    async fn create_upload(&self, bucket: &str, upload: Upload) -> Result<()> {
        let bucket = bucket.to_string();
        self.write(move |txn| {
            require_bucket(txn, &bucket)?;
            let ukey = upload_key(&bucket, &upload.key, &upload.id);
            txn.open_table(UPLOADS)
                .map_err(db_err)?
                .insert(ukey.as_slice(), encode(&upload)?.as_slice())
                .map_err(db_err)?;
            Ok(())
        })
        .await
    }

    async fn upload(&self, bucket: &str, key: &str, upload_id: &str) -> Result<Upload> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let uploads = txn.open_table(UPLOADS).map_err(db_err)?;
        match uploads
            .get(upload_key(bucket, key, upload_id).as_slice())
            .map_err(db_err)?
        {
            Some(v) => decode(v.value()),
            None => {
                self.bucket(bucket).await?;
                Err(MetaError::NoSuchUpload {
                    bucket: bucket.into(),
                    key: key.into(),
                    upload_id: upload_id.into(),
                })
            }
        }
    }

    async fn put_part(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        part: Part,
    ) -> Result<Option<Part>> {
        let (bucket, key, upload_id) = (bucket.to_string(), key.to_string(), upload_id.to_string());
        self.write(move |txn| {
            require_upload(txn, &bucket, &key, &upload_id)?;
            for blob in part.blobs() {
                add_ref(txn, &blob)?;
            }
            let pkey = part_key(&upload_id, part.number);
            let replaced: Option<Part> = {
                let mut parts = txn.open_table(PARTS).map_err(db_err)?;
                let old = parts
                    .insert(pkey.as_slice(), encode(&part)?.as_slice())
                    .map_err(db_err)?;
                match old {
                    Some(v) => Some(decode(v.value())?),
                    None => None,
                }
            };
            for blob in replaced.iter().flat_map(Part::blobs) {
                drop_ref(txn, &blob)?;
            }
            Ok(replaced)
        })
        .await
    }

    async fn list_parts(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        after: u32,
        max: usize,
    ) -> Result<(Vec<Part>, bool)> {
        self.upload(bucket, key, upload_id).await?;
        let txn = self.db.begin_read().map_err(db_err)?;
        let parts = txn.open_table(PARTS).map_err(db_err)?;
        let start = part_key(upload_id, after.saturating_add(1));
        let end = parts_end(upload_id);
        let mut out = Vec::new();
        let mut truncated = false;
        if after == u32::MAX {
            return Ok((out, false));
        }
        for item in parts
            .range(start.as_slice()..end.as_slice())
            .map_err(db_err)?
        {
            let (_, v) = item.map_err(db_err)?;
            if out.len() == max {
                truncated = true;
                break;
            }
            out.push(decode(v.value())?);
        }
        Ok((out, truncated))
    }

    async fn list_uploads(&self, bucket: &str, query: &UploadQuery) -> Result<UploadPage> {
        self.bucket(bucket).await?;
        let txn = self.db.begin_read().map_err(db_err)?;
        let uploads = txn.open_table(UPLOADS).map_err(db_err)?;
        let start = match (&query.key_marker, &query.upload_id_marker) {
            (Some(key), Some(id)) => {
                let mut k = upload_key(bucket, key, id);
                k.push(0);
                k
            }
            (Some(key), None) => {
                let mut k = entry_key(bucket, key.as_bytes());
                k.push(0);
                k.push(0xFF);
                k
            }
            (None, _) => entry_key(bucket, query.prefix.as_bytes()),
        };
        let end = bucket_end(bucket);
        let mut page = UploadPage::default();
        for item in uploads
            .range(start.as_slice()..end.as_slice())
            .map_err(db_err)?
        {
            let (_, v) = item.map_err(db_err)?;
            let upload: Upload = decode(v.value())?;
            if !upload.key.starts_with(&query.prefix) {
                if upload.key.as_str() > query.prefix.as_str() {
                    break;
                }
                continue;
            }
            if page.uploads.len() == query.max {
                page.truncated = true;
                break;
            }
            page.uploads.push(upload);
        }
        Ok(page)
    }

    async fn complete_upload(
        &self,
        bucket: &str,
        completion: Completion,
        entry: Entry,
        layout: Layout,
        condition: Precondition,
    ) -> Result<PutOutcome> {
        let bucket = bucket.to_string();
        self.write(move |txn| {
            let (key, upload_id) = (completion.key.clone(), completion.upload_id.clone());
            let ukey = require_upload(txn, &bucket, &key, &upload_id)?;
            // The entry's references are added before the parts' are
            // dropped, so parts it uses never pass through the queue.
            let ckey = completion_key(&bucket, &upload_id);
            let outcome = commit_entry(txn, bucket, key, entry, layout, &condition)?;
            remove_upload(txn, &ukey, &upload_id)?;
            txn.open_table(COMPLETIONS)
                .map_err(db_err)?
                .insert(ckey.as_slice(), encode(&completion)?.as_slice())
                .map_err(db_err)?;
            txn.open_table(COMPLETIONS_DUE)
                .map_err(db_err)?
                .insert(due_key(completion.keep_until, &ckey).as_slice(), ())
                .map_err(db_err)?;
            Ok(outcome)
        })
        .await
    }

    async fn completion(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
    ) -> Result<Option<Completion>> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let table = txn.open_table(COMPLETIONS).map_err(db_err)?;
        let Some(value) = table
            .get(completion_key(bucket, upload_id).as_slice())
            .map_err(db_err)?
        else {
            return Ok(None);
        };
        let completion: Completion = decode(value.value())?;
        // Until the collector's next sweep, an expired record is not there.
        Ok((completion.key == key && completion.keep_until > now_millis()).then_some(completion))
    }

    async fn expire_completions(&self, before: UnixMillis, limit: usize) -> Result<usize> {
        self.write(move |txn| {
            let due: Vec<Vec<u8>> = {
                let table = txn.open_table(COMPLETIONS_DUE).map_err(db_err)?;
                let end = queue_upper(before);
                let mut found = Vec::new();
                for item in table.range(..end.as_slice()).map_err(db_err)?.take(limit) {
                    let (k, _) = item.map_err(db_err)?;
                    found.push(k.value().to_vec());
                }
                found
            };
            let mut due_table = txn.open_table(COMPLETIONS_DUE).map_err(db_err)?;
            let mut completions = txn.open_table(COMPLETIONS).map_err(db_err)?;
            for key in &due {
                due_table.remove(key.as_slice()).map_err(db_err)?;
                completions.remove(&key[8..]).map_err(db_err)?;
            }
            Ok(due.len())
        })
        .await
    }

    async fn abort_upload(&self, bucket: &str, key: &str, upload_id: &str) -> Result<()> {
        let (bucket, key, upload_id) = (bucket.to_string(), key.to_string(), upload_id.to_string());
        self.write(move |txn| {
            let ukey = require_upload(txn, &bucket, &key, &upload_id)?;
            remove_upload(txn, &ukey, &upload_id)
        })
        .await
    }

    async fn stale_uploads(
        &self,
        initiated_before: UnixMillis,
        limit: usize,
    ) -> Result<Vec<(String, Upload)>> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let uploads = txn.open_table(UPLOADS).map_err(db_err)?;
        let mut out = Vec::new();
        for item in uploads.iter().map_err(db_err)? {
            let (k, v) = item.map_err(db_err)?;
            let upload: Upload = decode(v.value())?;
            if upload.initiated > initiated_before {
                continue;
            }
            let raw = k.value();
            let end = raw.iter().position(|b| *b == 0).unwrap_or(raw.len());
            let bucket = String::from_utf8_lossy(&raw[..end]).into_owned();
            out.push((bucket, upload));
            if out.len() == limit {
                break;
            }
        }
        Ok(out)
    }

    // ---- Change log and feed ------------------------------------------------

    async fn changes_since(&self, after: Seq, limit: usize) -> Result<Vec<Change>> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let changes = txn.open_table(CHANGES).map_err(db_err)?;
        let mut out = Vec::new();
        for item in changes
            .range(after.saturating_add(1)..)
            .map_err(db_err)?
            .take(limit)
        {
            let (_, v) = item.map_err(db_err)?;
            out.push(decode(v.value())?);
        }
        Ok(out)
    }

    async fn last_seq(&self) -> Result<Seq> {
        self.read_state("last_seq").map(|v| v.unwrap_or(0))
    }

    async fn trim_changes(&self, through: Seq) -> Result<u64> {
        self.write(move |txn| {
            let floor = state_value(txn, "log_floor")?.unwrap_or(0);
            if through <= floor {
                return Ok(0);
            }
            let mut removed = 0;
            {
                let mut changes = txn.open_table(CHANGES).map_err(db_err)?;
                for item in changes
                    .extract_from_if(..=through, |_, _| true)
                    .map_err(db_err)?
                {
                    item.map_err(db_err)?;
                    removed += 1;
                }
            }
            set_state(txn, "log_floor", through)?;
            Ok(removed)
        })
        .await
    }

    async fn log_floor(&self) -> Result<Seq> {
        self.read_state("log_floor").map(|v| v.unwrap_or(0))
    }

    // ---- Replica: mirrors, applied position, replication jobs ---------------

    async fn put_mirror(&self, record: &MirrorRecord) -> Result<()> {
        let record = record.clone();
        self.write(move |txn| {
            txn.open_table(MIRRORS)
                .map_err(db_err)?
                .insert(record.name.as_str(), encode(&record)?.as_slice())
                .map_err(db_err)?;
            Ok(())
        })
        .await
    }

    async fn mirrors(&self) -> Result<Vec<MirrorRecord>> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let table = txn.open_table(MIRRORS).map_err(db_err)?;
        let mut out = Vec::new();
        for item in table.iter().map_err(db_err)? {
            let (_, v) = item.map_err(db_err)?;
            out.push(decode(v.value())?);
        }
        Ok(out)
    }

    async fn remove_mirror(&self, name: &str) -> Result<()> {
        let name = name.to_string();
        self.write(move |txn| {
            txn.open_table(MIRRORS)
                .map_err(db_err)?
                .remove(name.as_str())
                .map_err(db_err)?;
            Ok(())
        })
        .await
    }

    async fn replica_position(&self) -> Result<Option<Seq>> {
        self.read_state("replica_seq")
    }

    async fn apply(&self, change: Change, replicate: Vec<BlobRef>) -> Result<bool> {
        self.write(move |txn| {
            if state_value(txn, "replica_seq")?.is_some_and(|at| change.seq <= at) {
                return Ok(false);
            }
            apply_op(txn, change.at, change.op)?;
            set_state(txn, "replica_seq", change.seq)?;
            queue_jobs(txn, &replicate)?;
            Ok(true)
        })
        .await
    }

    async fn reset_replica(&self) -> Result<()> {
        // One transaction: there is no half-reset state to recover from.
        self.write(move |txn| {
            txn.open_table(STATE)
                .map_err(db_err)?
                .remove("replica_seq")
                .map_err(db_err)?;
            let buckets: Vec<String> = {
                let table = txn.open_table(BUCKETS).map_err(db_err)?;
                let mut names = Vec::new();
                for item in table.iter().map_err(db_err)? {
                    let (k, _) = item.map_err(db_err)?;
                    names.push(k.value().to_string());
                }
                names
            };
            for bucket in buckets {
                for ekey in bucket_keys(txn, &bucket, usize::MAX)? {
                    remove_entry(txn, &ekey)?;
                }
                remove_bucket(txn, bucket)?;
            }
            Ok(())
        })
        .await
    }

    async fn set_replica_position(&self, seq: Seq) -> Result<()> {
        self.write(move |txn| set_state(txn, "replica_seq", seq))
            .await
    }

    async fn queue_replication(&self, blobs: &[BlobRef]) -> Result<()> {
        let blobs = blobs.to_vec();
        self.write(move |txn| queue_jobs(txn, &blobs)).await
    }

    async fn replication_jobs(&self, after: u64, limit: usize) -> Result<Vec<ReplicationJob>> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let jobs = txn.open_table(REPLICATION).map_err(db_err)?;
        let mut out = Vec::new();
        for item in jobs
            .range(after.saturating_add(1)..)
            .map_err(db_err)?
            .take(limit)
        {
            let (id, v) = item.map_err(db_err)?;
            out.push(ReplicationJob {
                id: id.value(),
                blob: decode(v.value())?,
            });
        }
        Ok(out)
    }

    async fn finish_replication(&self, job: &ReplicationJob) -> Result<()> {
        let job = job.clone();
        self.write(move |txn| {
            let key = blob_key(&job.blob);
            let mut index = txn.open_table(REPLICATION_INDEX).map_err(db_err)?;
            if index
                .get(key.as_slice())
                .map_err(db_err)?
                .map(|v| v.value())
                == Some(job.id)
            {
                index.remove(key.as_slice()).map_err(db_err)?;
            }
            txn.open_table(REPLICATION)
                .map_err(db_err)?
                .remove(job.id)
                .map_err(db_err)?;
            Ok(())
        })
        .await
    }

    // ---- Blob references and the collector's deletion queue -----------------

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

    async fn due_deletions(
        &self,
        queued_before: UnixMillis,
        limit: usize,
    ) -> Result<Vec<QueuedBlob>> {
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
            let current = queued_at
                .get(key.as_slice())
                .map_err(db_err)?
                .map(|v| v.value());
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

    // ---- Leases -------------------------------------------------------------

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
            leases
                .insert(name.as_str(), encode(&lease)?.as_slice())
                .map_err(db_err)?;
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

    #[tokio::test]
    async fn listings_end_early_at_the_read_budget() {
        let (_dir, meta) = engine();
        crate::conformance::list_read_budget(&meta.with_list_read_budget(6), 6).await;
    }

    #[test]
    fn namespace_matches_reference_model_under_a_tiny_read_budget() {
        crate::conformance::model::check(|| {
            let (dir, meta) = engine();
            (
                Box::new(dir) as Box<dyn std::any::Any>,
                Arc::new(meta.with_list_read_budget(2)) as Arc<dyn Meta>,
            )
        });
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
            (
                Box::new(dir) as Box<dyn std::any::Any>,
                Arc::new(meta) as Arc<dyn Meta>,
            )
        });
    }

    #[tokio::test]
    async fn dump_and_load_round_trip_exactly() {
        let (_a, source) = engine();
        let (_b, target) = engine();
        crate::conformance::populate(&source).await;
        crate::conformance::dump_round_trip(&source, &target).await;
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
