//! Ferry's namespace.
//!
//! Buckets are top-level directories; under each, an ordered key space in
//! S3's byte order holds file entries. A file entry's attributes
//! ([`Entry`]) are stored apart from its data layout ([`Layout`]), so HEAD and
//! LIST never decode long layouts. Every mutation appends a [`Change`] in the
//! same transaction, and every dropped blob reference queues the blob for the
//! collector in that transaction too.
//!
//! The seam is the [`Meta`] trait; engines live behind it and are chosen with
//! [`open`]. No engine type crosses the seam.

pub mod dump;
mod embedded;
mod error;
mod listing;
mod redis;
mod types;

#[cfg(any(test, feature = "conformance"))]
pub mod conformance;

use std::sync::Arc;

pub use embedded::EmbeddedMeta;
pub use error::{MetaError, Result};
pub use listing::LIST_READ_BUDGET;
pub use redis::{Connection as RedisConnection, RedisMeta};
pub use types::*;

use ferry_config::MetaConfig;

/// The namespace seam. Every engine implements this contract:
///
/// - **Atomicity.** Each mutating call is one transaction: the entry (or
///   bucket) change, its change-log record, blob reference counts and any
///   deletion-queue records commit together or not at all.
/// - **Durability.** When a mutating call returns `Ok`, the change survives
///   a process crash.
/// - **Read-after-write.** Once a mutating call has returned, every later
///   call on any handle to the same namespace observes it.
/// - **Order.** Keys are compared as raw UTF-8 bytes (S3 order); listings
///   return keys and common prefixes merged in that order.
/// - **Blob references.** A blob named by any committed layout is never in a
///   state where [`Meta::claim_deletion`] would return it. When a mutation
///   drops the last reference to a blob, the blob is queued.
/// - **Errors.** `NoSuchBucket` for an absent bucket, `NoSuchKey` for an
///   absent key, `PreconditionFailed` for a failed condition,
///   `Unavailable` when the engine is unreachable (nothing was changed).
///
/// # Sections
///
/// The methods come in sections, marked in the trait and in the same order
/// in both engines' implementations:
///
/// - **Namespace: buckets** and **Namespace: entries and listing**: what
///   S3 calls on buckets and objects need. An entry (attributes) and its
///   layout are written together and read apart. Dumps ([`dump`]) go
///   through these too and have no methods of their own;
///   [`Meta::restore_bucket`] is how a dumped bucket comes back.
/// - **Multipart uploads**: uploads in progress and their parts, until
///   completed into an entry (leaving a completion record for a while) or
///   aborted. The collector aborts stale uploads and expires the records.
/// - **Change log and feed**: the log every mutation appends to. A source
///   region's feed serves it to mirrors and trims records every registered
///   mirror has applied.
/// - **Replica: mirrors, applied position, replication jobs**: at a
///   source, the registry of its mirror regions; in a mirror, the source
///   position applied so far, the replay of the source's changes, and the
///   jobs that copy their blobs.
/// - **Blob references and the collector's deletion queue**: a blob whose
///   last reference goes is queued, and the collector deletes it once its
///   claim shows it is still unreferenced.
/// - **Leases**: named locks that expire, so one node at a time runs the
///   collector, a mirror's follower or an import.
#[async_trait::async_trait]
pub trait Meta: Send + Sync + 'static {
    // ---- Namespace: buckets -------------------------------------------------

    /// Creates an empty bucket. `BucketExists` if it is already there.
    async fn create_bucket(&self, bucket: &str) -> Result<Seq>;
    /// Creates an empty bucket with the given attributes (creation time,
    /// ACL): what CreateBucket with an ACL needs, and loading a dump to
    /// give back exactly what was dumped. `BucketExists` if it is there.
    async fn restore_bucket(&self, info: &BucketInfo) -> Result<Seq>;
    /// Removes an empty bucket. `BucketNotEmpty` if any key remains;
    /// uploads still in progress are aborted with it.
    async fn delete_bucket(&self, bucket: &str) -> Result<Seq>;
    async fn bucket(&self, bucket: &str) -> Result<BucketInfo>;
    /// All buckets, by name.
    async fn list_buckets(&self) -> Result<Vec<BucketInfo>>;
    /// Sets a bucket's canned ACL (logged like every mutation).
    async fn set_bucket_acl(&self, bucket: &str, acl: CannedAcl) -> Result<Seq>;

    // ---- Namespace: entries and listing -------------------------------------

    /// The current entry of a key, without its layout.
    async fn head(&self, bucket: &str, key: &str) -> Result<Entry>;
    /// The current entry and its layout, read together.
    async fn get(&self, bucket: &str, key: &str) -> Result<(Entry, Layout)>;
    /// Commits `entry` with `layout` as the key's current version if
    /// `condition` holds. The replaced version's blobs lose a reference.
    /// `entry.id` must be fresh (never used before).
    async fn put(
        &self,
        bucket: &str,
        key: &str,
        entry: Entry,
        layout: Layout,
        condition: Precondition,
    ) -> Result<PutOutcome>;
    /// Sets the canned ACL of a key's current entry, changing nothing else
    /// (same entry id, same layout). `NoSuchKey` when the key is absent.
    async fn set_object_acl(&self, bucket: &str, key: &str, acl: CannedAcl) -> Result<Seq>;
    /// Removes a key. Returns the removed entry, or `None` (and changes
    /// nothing, logs nothing) when the key was absent.
    async fn delete(&self, bucket: &str, key: &str) -> Result<Option<Entry>>;
    /// One page of a bucket's keys; see [`ListQuery`]. Work is proportional
    /// to the page, not to the keys skipped under common prefixes.
    async fn list(&self, bucket: &str, query: &ListQuery) -> Result<ListPage>;

    // ---- Multipart uploads --------------------------------------------------

    /// Starts a multipart upload of `upload.key`.
    async fn create_upload(&self, bucket: &str, upload: Upload) -> Result<()>;
    /// An upload in progress; `NoSuchUpload` unless it exists for this key.
    async fn upload(&self, bucket: &str, key: &str, upload_id: &str) -> Result<Upload>;
    /// Records a part (its blob gains a reference). A part with the same
    /// number is replaced and returned; its blob loses its reference.
    /// `NoSuchUpload` when the upload is gone: the caller owns the blob then.
    async fn put_part(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        part: Part,
    ) -> Result<Option<Part>>;
    /// Parts numbered above `after`, ascending, at most `max`; and whether
    /// more follow.
    async fn list_parts(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        after: u32,
        max: usize,
    ) -> Result<(Vec<Part>, bool)>;
    /// Uploads in progress in a bucket, by key then initiation.
    async fn list_uploads(&self, bucket: &str, query: &UploadQuery) -> Result<UploadPage>;
    /// Commits `entry` with `layout` (built from this upload's parts) like
    /// [`Meta::put`] and ends the upload `completion.upload_id` of
    /// `completion.key` in the same transaction: parts the layout uses keep
    /// their blobs, the others are queued, and `completion` is kept until
    /// its `keep_until` for [`Meta::completion`].
    async fn complete_upload(
        &self,
        bucket: &str,
        completion: Completion,
        entry: Entry,
        layout: Layout,
        condition: Precondition,
    ) -> Result<PutOutcome>;
    /// The record of a completed upload of `key`, while it is kept
    /// (`None` once `keep_until` has passed, or if it never completed).
    async fn completion(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
    ) -> Result<Option<Completion>>;
    /// Drops completion records whose `keep_until` is at or before
    /// `before`, at most `limit`; returns how many. An engine that expires
    /// them by itself returns 0.
    async fn expire_completions(&self, before: UnixMillis, limit: usize) -> Result<usize>;
    /// Ends an upload without an object; every part's blob is queued.
    async fn abort_upload(&self, bucket: &str, key: &str, upload_id: &str) -> Result<()>;
    /// Uploads of any bucket initiated at or before `initiated_before`, at most `limit`.
    async fn stale_uploads(
        &self,
        initiated_before: UnixMillis,
        limit: usize,
    ) -> Result<Vec<(String, Upload)>>;

    // ---- Change log and feed ------------------------------------------------

    /// Change-log records with `seq > after`, oldest first, at most `limit`.
    async fn changes_since(&self, after: Seq, limit: usize) -> Result<Vec<Change>>;
    /// The newest sequence number (0 when nothing happened yet).
    async fn last_seq(&self) -> Result<Seq>;

    /// Removes change-log records with `seq <= through` and raises the
    /// log floor to `through` (never lowers it). Returns how many went.
    async fn trim_changes(&self, through: Seq) -> Result<u64>;
    /// Records at or below this sequence number have been trimmed (0 when
    /// nothing was). A reader whose position is below it has a gap.
    async fn log_floor(&self) -> Result<Seq>;

    // ---- Replica: mirrors, applied position, replication jobs ---------------

    /// Stores (or replaces) a mirror region's record at this source.
    async fn put_mirror(&self, record: &MirrorRecord) -> Result<()>;
    /// Every registered mirror, by name.
    async fn mirrors(&self) -> Result<Vec<MirrorRecord>>;
    /// Forgets a mirror (absent is fine).
    async fn remove_mirror(&self, name: &str) -> Result<()>;

    /// In a mirror region: the last source sequence number applied here,
    /// or `None` before the first resync has finished (or after
    /// [`Meta::reset_replica`]).
    async fn replica_position(&self) -> Result<Option<Seq>>;
    /// In a mirror region: applies the source's `change` as one
    /// transaction with the new applied position (`change.seq`) and the
    /// replication jobs of `replicate`. Idempotent by sequence number: a
    /// change at or below the position changes nothing and returns false.
    /// The source's entry ids are kept. Ops whose bucket or key is absent
    /// are no-ops (a resync's snapshot may be ahead of the log it
    /// replays); `DeleteBucket` removes whatever the bucket still holds.
    /// The change is appended to this namespace's own log too.
    async fn apply(&self, change: Change, replicate: Vec<BlobRef>) -> Result<bool>;
    /// In a mirror region: forgets the applied position first, then
    /// empties the namespace (buckets, entries, uploads; every referenced
    /// blob is queued for the collector, and leaves the queue again when a
    /// reloaded entry references it). A crash part-way leaves no position,
    /// so the next start resyncs again.
    async fn reset_replica(&self) -> Result<()>;
    /// In a mirror region: records the applied position (the end of a
    /// resync).
    async fn set_replica_position(&self, seq: Seq) -> Result<()>;
    /// Queues replication jobs (a blob already queued keeps its job).
    async fn queue_replication(&self, blobs: &[BlobRef]) -> Result<()>;
    /// Jobs with `id > after`, oldest first, at most `limit`.
    async fn replication_jobs(&self, after: u64, limit: usize) -> Result<Vec<ReplicationJob>>;
    /// Drops a finished (or pointless) job.
    async fn finish_replication(&self, job: &ReplicationJob) -> Result<()>;

    // ---- Blob references and the collector's deletion queue -----------------

    /// Queues blobs that were written but will never be committed (a failed
    /// upload), so the collector removes them after the grace period.
    async fn queue_uncommitted(&self, blobs: &[BlobRef]) -> Result<()>;
    /// Queued blobs whose `queued_at` is at or before `queued_before`, oldest
    /// first, at most `limit`.
    async fn due_deletions(
        &self,
        queued_before: UnixMillis,
        limit: usize,
    ) -> Result<Vec<QueuedBlob>>;
    /// Removes `blob` from the queue and returns true if no committed layout
    /// references it; the caller then deletes it from its store. Returns
    /// false (and drops the stale queue record) if it is referenced again.
    async fn claim_deletion(&self, blob: &QueuedBlob) -> Result<bool>;
    /// Current reference count of a blob (0 when unknown).
    async fn blob_refs(&self, blob: &BlobRef) -> Result<u64>;

    // ---- Leases -------------------------------------------------------------

    /// Takes or renews the lease `name` for `holder` until `ttl_ms` from
    /// now. True when `holder` now holds it; false when another live holder
    /// does.
    async fn try_lease(&self, name: &str, holder: &str, ttl_ms: u64) -> Result<bool>;
}

/// Opens the engine the config selects.
pub async fn open(config: &MetaConfig) -> Result<Arc<dyn Meta>> {
    match config {
        MetaConfig::Embedded { path } => Ok(Arc::new(EmbeddedMeta::open(path)?)),
        MetaConfig::Redis {
            url,
            prefix,
            allow_volatile,
            cluster: false,
        } => Ok(Arc::new(
            RedisMeta::open(url.expose(), prefix, *allow_volatile).await?,
        )),
        MetaConfig::Redis {
            url,
            prefix,
            allow_volatile,
            cluster: true,
        } => Ok(Arc::new(
            RedisMeta::open_cluster(url.expose(), prefix, *allow_volatile).await?,
        )),
    }
}
