//! The values that cross the `Meta` seam. They are plain data: no engine
//! type appears here.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Milliseconds since the Unix epoch.
pub type UnixMillis = i64;

/// A position in the change log. The first record is 1; 0 means "before
/// everything".
pub type Seq = u64;

pub fn now_millis() -> UnixMillis {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketInfo {
    pub name: String,
    pub created: UnixMillis,
    /// Who besides the owner may read the bucket's listing and objects.
    #[serde(default, skip_serializing_if = "CannedAcl::is_private")]
    pub acl: CannedAcl,
}

impl BucketInfo {
    /// A private bucket created now.
    pub fn new(name: &str) -> BucketInfo {
        BucketInfo {
            name: name.to_string(),
            created: now_millis(),
            acl: CannedAcl::Private,
        }
    }
}

/// A canned ACL. Ferry keeps the two that mean something for a gateway
/// whose callers all hold the owner's keys: `private` (only signed
/// requests) and `public-read` (anonymous reads too).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CannedAcl {
    #[default]
    Private,
    PublicRead,
}

impl CannedAcl {
    pub fn is_private(&self) -> bool {
        *self == CannedAcl::Private
    }
}

/// A file's attributes: everything HEAD and LIST need, and nothing that grows
/// with the object's size (the layout lives apart, see [`Layout`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Entry {
    /// Unique per committed version of a key; names its layout.
    pub id: String,
    pub size: u64,
    /// Without quotes: `<md5 hex>` or `<md5 of md5s>-N`.
    pub etag: String,
    pub last_modified: UnixMillis,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_encoding: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_disposition: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_language: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_control: Option<String>,
    /// The `Expires` header as the client sent it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub user_metadata: BTreeMap<String, String>,
    /// Whole-object checksums by algorithm (`CRC32`, `CRC32C`, `CRC64NVME`,
    /// `SHA1`, `SHA256`), base64 as S3 sends them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub checksums: BTreeMap<String, String>,
    /// Sizes of the parts a multipart upload was completed with, in order
    /// (GET and HEAD with `partNumber` serve one of them); empty for an
    /// object written in one piece.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parts: Vec<u64>,
    /// The object's own canned ACL (a public-read object in a private
    /// bucket may be read anonymously).
    #[serde(default, skip_serializing_if = "CannedAcl::is_private")]
    pub acl: CannedAcl,
    /// Set on entries an import made: the store whose object this is. An
    /// import changes only such entries of its own store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub imported_from: Option<String>,
}

/// Where one contiguous run of a file's bytes lives.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Segment {
    /// Logical store name; each region resolves it to its own stores.
    pub store: String,
    /// The blob's key inside that store.
    pub blob: String,
    /// Offset of this segment's first byte inside the blob.
    pub offset: u64,
    pub len: u64,
    /// The blob's version as the store knows it (an ETag for imported
    /// objects); empty for the volume's own blobs, whose keys are never reused.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub version: String,
}

/// A file's data: its segments in order. Their lengths sum to the entry's size.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Layout {
    pub segments: Vec<Segment>,
}

impl Layout {
    pub fn total_len(&self) -> u64 {
        self.segments.iter().map(|s| s.len).sum()
    }

    /// The distinct blobs this layout references, each once.
    pub fn blobs(&self) -> Vec<BlobRef> {
        let mut blobs: Vec<BlobRef> = self
            .segments
            .iter()
            .map(|s| BlobRef {
                store: s.store.clone(),
                blob: s.blob.clone(),
            })
            .collect();
        blobs.sort();
        blobs.dedup();
        blobs
    }
}

/// A blob by its store and key.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct BlobRef {
    pub store: String,
    pub blob: String,
}

/// A condition a put must satisfy, checked atomically with the write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Precondition {
    None,
    /// Only if the key has no entry (`If-None-Match: *`).
    IfAbsent,
    /// Only if the key has an entry (`If-Match: *`); `NoSuchKey` otherwise.
    IfExists,
    /// Only if the key's current entry has this ETag (unquoted);
    /// `NoSuchKey` when the key has no entry, as S3 answers.
    IfMatch(String),
    /// Unless the key's current entry has this ETag (unquoted); an absent
    /// key passes.
    IfNoneMatch(String),
}

/// Why a [`Precondition`] refused a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The condition needs an entry and there is none.
    NoKey,
    /// The entry there does not satisfy it.
    Failed,
}

impl Precondition {
    /// Checks the condition against the key's current entry, if any. The
    /// engines evaluate this inside the write's transaction (the Redis
    /// engine's scripts mirror it in Lua).
    pub fn check(&self, current: Option<&Entry>) -> std::result::Result<(), Refusal> {
        match (self, current) {
            (Precondition::None, _) => Ok(()),
            (Precondition::IfAbsent, None) => Ok(()),
            (Precondition::IfAbsent, Some(_)) => Err(Refusal::Failed),
            (Precondition::IfExists | Precondition::IfMatch(_), None) => Err(Refusal::NoKey),
            (Precondition::IfExists, Some(_)) => Ok(()),
            (Precondition::IfMatch(etag), Some(current)) if &current.etag == etag => Ok(()),
            (Precondition::IfMatch(_), Some(_)) => Err(Refusal::Failed),
            (Precondition::IfNoneMatch(etag), Some(current)) if &current.etag == etag => {
                Err(Refusal::Failed)
            }
            (Precondition::IfNoneMatch(_), _) => Ok(()),
        }
    }
}

/// What a successful put did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutOutcome {
    pub seq: Seq,
    /// The entry that was replaced, if any.
    pub replaced: Option<Entry>,
}

/// One listing request. Keys are compared as bytes (S3 order).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ListQuery {
    pub prefix: String,
    /// When set, keys whose remainder after `prefix` contains it are rolled
    /// up into one common prefix (up to and including the delimiter).
    pub delimiter: Option<String>,
    /// Return only keys (and common prefixes) strictly after this. If it
    /// falls inside a common prefix's group, that whole group is skipped,
    /// which is what continuing after a returned common prefix needs.
    pub start_after: Option<String>,
    /// At most this many keys plus common prefixes. Must be at least 1.
    pub max: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ListPage {
    /// Keys in byte order with their entries.
    pub entries: Vec<(String, Entry)>,
    /// Common prefixes in byte order.
    pub common_prefixes: Vec<String>,
    /// Whether more keys or prefixes follow.
    pub truncated: bool,
    /// When truncated: the last key or prefix returned, to pass as the next
    /// query's `start_after`.
    pub next_start_after: Option<String>,
}

/// A change-log record: one mutation of the namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    pub seq: Seq,
    pub at: UnixMillis,
    pub op: ChangeOp,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum ChangeOp {
    CreateBucket {
        bucket: String,
        #[serde(default, skip_serializing_if = "CannedAcl::is_private")]
        acl: CannedAcl,
    },
    DeleteBucket {
        bucket: String,
    },
    Put {
        bucket: String,
        key: String,
        entry: Box<Entry>,
        layout: Layout,
    },
    /// A tombstone.
    Delete {
        bucket: String,
        key: String,
    },
    SetBucketAcl {
        bucket: String,
        acl: CannedAcl,
    },
    /// The key's entry is unchanged but for its ACL.
    SetObjectAcl {
        bucket: String,
        key: String,
        acl: CannedAcl,
    },
}

/// A blob in the deletion queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueuedBlob {
    pub blob: BlobRef,
    /// When it was queued; the collector waits a grace period after this.
    pub queued_at: UnixMillis,
    /// References left when it was queued (0 for a dropped last reference or
    /// a blob that was never committed).
    pub refs_when_queued: u64,
}

/// A multipart upload in progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Upload {
    /// Unique and never reused; time-ordered, so sorting by id sorts by
    /// initiation.
    pub id: String,
    pub key: String,
    pub initiated: UnixMillis,
    /// The attributes the completed object will carry (content type, user
    /// metadata, ...); id, size and ETag are set on completion.
    pub template: Entry,
    /// The checksum algorithm the client asked for on creation, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum_algorithm: Option<String>,
}

/// One uploaded part: its own blob, or (for UploadPartCopy) segments of
/// another object's blobs, shared without copying.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Part {
    pub number: u32,
    /// MD5 hex of the part, unquoted.
    pub etag: String,
    pub size: u64,
    pub last_modified: UnixMillis,
    pub segments: Vec<Segment>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub checksums: BTreeMap<String, String>,
}

impl Part {
    /// The distinct blobs this part references.
    pub fn blobs(&self) -> Vec<BlobRef> {
        Layout {
            segments: self.segments.clone(),
        }
        .blobs()
    }
}

/// What a completed multipart upload answered, kept (until `keep_until`)
/// so that a retried CompleteMultipartUpload of the same parts gets the
/// same answer instead of `NoSuchUpload`: SDKs retry Complete after a
/// timeout, when the first attempt may well have committed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Completion {
    pub upload_id: String,
    pub key: String,
    /// The ETag of the object the upload became (unquoted).
    pub etag: String,
    /// The part numbers and part ETags it was completed with, in order.
    pub parts: Vec<(u32, String)>,
    /// The whole-object checksums answered (composite, `<b64>-N`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub checksums: BTreeMap<String, String>,
    pub keep_until: UnixMillis,
}

/// A page of multipart uploads of one bucket.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UploadQuery {
    pub prefix: String,
    /// Start after this key (and, with `upload_id_marker`, after that upload of it).
    pub key_marker: Option<String>,
    pub upload_id_marker: Option<String>,
    pub max: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UploadPage {
    /// By key, then by initiation.
    pub uploads: Vec<Upload>,
    pub truncated: bool,
}

/// A mirror region as its source knows it: how far it has applied the
/// change log and when it said so. The source keeps its log, and its
/// collector keeps deleted blobs, until every registered mirror is past
/// them (see `ferry_cache::region::mirrors`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MirrorRecord {
    /// The mirror region's name (`[region] name` there).
    pub name: String,
    /// The last sequence number the mirror reported applied.
    pub applied: Seq,
    /// When it last reported (source clock).
    pub last_seen: UnixMillis,
    /// Oldest first: by `acked` the mirror had applied every change the
    /// source made at or before `covered`. The collector counts a deleted
    /// blob's grace period from the first checkpoint covering its delete.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checkpoints: Vec<Checkpoint>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub covered: UnixMillis,
    pub acked: UnixMillis,
}

/// A blob a mirror still has to copy from the source region's store into
/// its own. `id` orders jobs oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicationJob {
    pub id: u64,
    pub blob: BlobRef,
}
