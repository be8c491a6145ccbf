//! redb tables of the embedded engine and how their keys are encoded.
//!
//! Values are JSON so a dump or a debugger can read them; keys are raw
//! bytes so redb's byte order is S3's key order.

use redb::TableDefinition;

use crate::types::BlobRef;

/// Bumped whenever a table's layout changes; `open` refuses other versions.
pub(super) const SCHEMA_VERSION: u64 = 1;

/// bucket name -> `BucketInfo`
pub(super) const BUCKETS: TableDefinition<&str, &[u8]> = TableDefinition::new("buckets");
/// `bucket 0x00 key` -> `Entry` (attributes only)
pub(super) const ENTRIES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("entries");
/// entry id -> `Layout`
pub(super) const LAYOUTS: TableDefinition<&str, &[u8]> = TableDefinition::new("layouts");
/// `store 0x00 blob` -> number of committed layouts naming the blob
pub(super) const BLOB_REFS: TableDefinition<&[u8], u64> = TableDefinition::new("blob_refs");
/// `queued_at (u64 BE) store 0x00 blob` -> `QueuedBlob`
pub(super) const DELETION_QUEUE: TableDefinition<&[u8], &[u8]> =
    TableDefinition::new("deletion_queue");
/// `store 0x00 blob` -> queued_at, to find a blob's queue record
pub(super) const QUEUED_AT: TableDefinition<&[u8], i64> = TableDefinition::new("queued_at");
/// `bucket 0x00 key 0x00 upload id` -> `Upload`
pub(super) const UPLOADS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("uploads");
/// `upload id 0x00 part number (u32 BE)` -> `Part`
pub(super) const PARTS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("parts");
/// `bucket 0x00 upload id` -> `Completion` of a completed upload
pub(super) const COMPLETIONS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("completions");
/// `keep_until (u64 BE) bucket 0x00 upload id` -> (), to expire completions
pub(super) const COMPLETIONS_DUE: TableDefinition<&[u8], ()> =
    TableDefinition::new("completions_due");
/// seq -> `Change`
pub(super) const CHANGES: TableDefinition<u64, &[u8]> = TableDefinition::new("changes");
/// lease name -> `Lease`
pub(super) const LEASES: TableDefinition<&str, &[u8]> = TableDefinition::new("leases");
/// mirror name -> `MirrorRecord` (in a source region)
pub(super) const MIRRORS: TableDefinition<&str, &[u8]> = TableDefinition::new("mirrors");
/// job id -> `BlobRef` (in a mirror region)
pub(super) const REPLICATION: TableDefinition<u64, &[u8]> = TableDefinition::new("replication");
/// `store 0x00 blob` -> job id, so a blob has one job
pub(super) const REPLICATION_INDEX: TableDefinition<&[u8], u64> =
    TableDefinition::new("replication_index");
/// "schema", "last_seq", "log_floor", "replica_seq" (absent until a
/// mirror's first resync ends), "replication_next"
pub(super) const STATE: TableDefinition<&str, u64> = TableDefinition::new("state");

/// Bucket names never contain 0x00, so it separates bucket from key and
/// keeps every key of a bucket contiguous and in byte order.
pub(super) fn entry_key(bucket: &str, key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bucket.len() + 1 + key.len());
    out.extend_from_slice(bucket.as_bytes());
    out.push(0);
    out.extend_from_slice(key);
    out
}

/// The first entry key after every key of `bucket`.
pub(super) fn bucket_end(bucket: &str) -> Vec<u8> {
    let mut out = bucket.as_bytes().to_vec();
    out.push(1);
    out
}

pub(super) fn blob_key(blob: &BlobRef) -> Vec<u8> {
    let mut out = Vec::with_capacity(blob.store.len() + 1 + blob.blob.len());
    out.extend_from_slice(blob.store.as_bytes());
    out.push(0);
    out.extend_from_slice(blob.blob.as_bytes());
    out
}

pub(super) fn queue_key(queued_at: i64, blob: &BlobRef) -> Vec<u8> {
    due_key(queued_at, &blob_key(blob))
}

pub(super) fn queue_upper(queued_before: i64) -> Vec<u8> {
    // Every key whose timestamp is <= queued_before sorts below this.
    u64::try_from(queued_before.saturating_add(1).max(0))
        .unwrap_or(0)
        .to_be_bytes()
        .to_vec()
}

pub(super) fn upload_key(bucket: &str, key: &str, upload_id: &str) -> Vec<u8> {
    let mut out = entry_key(bucket, key.as_bytes());
    out.push(0);
    out.extend_from_slice(upload_id.as_bytes());
    out
}

pub(super) fn part_key(upload_id: &str, number: u32) -> Vec<u8> {
    let mut out = upload_id.as_bytes().to_vec();
    out.push(0);
    out.extend_from_slice(&number.to_be_bytes());
    out
}

/// Every part key of `upload_id` sorts below this.
pub(super) fn parts_end(upload_id: &str) -> Vec<u8> {
    let mut out = upload_id.as_bytes().to_vec();
    out.push(1);
    out
}

pub(super) fn completion_key(bucket: &str, upload_id: &str) -> Vec<u8> {
    entry_key(bucket, upload_id.as_bytes())
}

/// A time-ordered key: `at` (u64 BE, as in the deletion queue) then `rest`.
pub(super) fn due_key(at: i64, rest: &[u8]) -> Vec<u8> {
    let mut out = u64::try_from(at.max(0)).unwrap_or(0).to_be_bytes().to_vec();
    out.extend_from_slice(rest);
    out
}
