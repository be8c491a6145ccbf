//! Key names of the Redis engine and how composite members are encoded.
//!
//! Every key starts with `{prefix}:`, then a short tag naming its role, so
//! volumes with different prefixes share one Redis without meeting. On a
//! Redis Cluster the prefix is written in braces, `{ferry}:buckets`: a
//! hash tag, so every key of the volume lands in one hash slot and every
//! script may touch any of them. A standalone volume keeps the bare
//! prefix, so existing volumes keep their key names. Keys that
//! belong to one bucket end with `:{bucket}` after their tag; since tags
//! contain no `:`, two keys are equal only when tag and bucket are.
//!
//! Per volume:
//!
//! | key | type | content |
//! |---|---|---|
//! | `P:buckets` | hash | bucket name -> `BucketInfo` (JSON) |
//! | `P:seq` | string | the last change-log sequence number |
//! | `P:log` | zset | score seq, member the `Change` (JSON) |
//! | `P:floor` | string | the log floor: records at or below it were trimmed (absent: 0) |
//! | `P:layouts` | hash | entry id -> `Layout` (JSON) |
//! | `P:lblobs` | hash | entry id -> the layout's distinct blobs ([`blob_list`]) |
//! | `P:refs` | hash | blob ([`blob_field`]) -> reference count |
//! | `P:gcq` | zset | deletion queue: score queued_at (ms), member the blob |
//! | `P:ustale` | zset | score initiated (ms), member `bucket 0x00 key 0x00 upload id` |
//! | `P:lease:{name}` | string | the holder, with a `PX` expiry |
//! | `P:done:B:{upload id}` | string | `Completion` (JSON) of a completed upload, expiring at its `keep_until` |
//! | `P:mirrors` | hash | in a source region: mirror name -> `MirrorRecord` (JSON) |
//! | `P:replica` | string | in a mirror region: the last source seq applied (absent until a resync ends) |
//! | `P:repl` | zset | in a mirror region: replication jobs, score the job id, member the blob ([`blob_field`]) |
//! | `P:replnext` | string | the last replication job id handed out |
//!
//! Per bucket `B`:
//!
//! | key | type | content |
//! |---|---|---|
//! | `P:k:B` | zset | every object key, score 0, so `ZRANGEBYLEX` walks them in byte (S3) order |
//! | `P:e:B` | hash | object key -> `Entry` (JSON, attributes only) |
//! | `P:u:B` | zset | uploads in progress, score 0, member `key 0x00 upload id` |
//! | `P:uh:B` | hash | `key 0x00 upload id` -> `Upload` (JSON) |
//! | `P:p:B` | zset | parts, score 0, member [`part_member`] (ordered by number) |
//! | `P:ph:B` | hash | [`part_member`] -> `Part` (JSON) |
//! | `P:pb:B` | hash | [`part_member`] -> the part's blobs ([`blob_list`]) |
//!
//! Layouts live apart from entries: HEAD reads `P:e:B` only and LIST reads
//! `P:k:B` and `P:e:B` only, so a layout's size never slows them.

use crate::types::BlobRef;

#[derive(Debug, Clone)]
pub(super) struct Keys {
    prefix: String,
}

impl Keys {
    pub(super) fn new(prefix: &str) -> Keys {
        Keys {
            prefix: prefix.to_string(),
        }
    }

    /// The keys of a volume on a Redis Cluster: the prefix is a hash tag.
    pub(super) fn cluster(prefix: &str) -> Keys {
        Keys {
            prefix: format!("{{{prefix}}}"),
        }
    }

    fn global(&self, tag: &str) -> String {
        format!("{}:{tag}", self.prefix)
    }

    fn per_bucket(&self, tag: &str, bucket: &str) -> String {
        format!("{}:{tag}:{bucket}", self.prefix)
    }

    /// The pattern matching every key of this volume (for tools and tests).
    #[cfg(test)]
    pub(super) fn pattern(&self) -> String {
        // Escape glob characters so the pattern matches this prefix only.
        let mut out = String::with_capacity(self.prefix.len() + 2);
        for c in self.prefix.chars() {
            if matches!(c, '*' | '?' | '[' | ']' | '\\') {
                out.push('\\');
            }
            out.push(c);
        }
        out.push_str(":*");
        out
    }

    pub(super) fn buckets(&self) -> String {
        self.global("buckets")
    }
    pub(super) fn seq(&self) -> String {
        self.global("seq")
    }
    pub(super) fn log(&self) -> String {
        self.global("log")
    }
    pub(super) fn layouts(&self) -> String {
        self.global("layouts")
    }
    pub(super) fn layout_blobs(&self) -> String {
        self.global("lblobs")
    }
    pub(super) fn refs(&self) -> String {
        self.global("refs")
    }
    pub(super) fn queue(&self) -> String {
        self.global("gcq")
    }
    pub(super) fn stale(&self) -> String {
        self.global("ustale")
    }
    pub(super) fn floor(&self) -> String {
        self.global("floor")
    }
    pub(super) fn mirrors(&self) -> String {
        self.global("mirrors")
    }
    pub(super) fn replica(&self) -> String {
        self.global("replica")
    }
    pub(super) fn jobs(&self) -> String {
        self.global("repl")
    }
    pub(super) fn next_job(&self) -> String {
        self.global("replnext")
    }
    pub(super) fn lease(&self, name: &str) -> String {
        format!("{}:lease:{name}", self.prefix)
    }
    /// Bucket names contain no `:`, so the upload id starts after the
    /// bucket's name unambiguously.
    pub(super) fn completion(&self, bucket: &str, upload_id: &str) -> String {
        format!("{}:done:{bucket}:{upload_id}", self.prefix)
    }

    pub(super) fn keys(&self, bucket: &str) -> String {
        self.per_bucket("k", bucket)
    }
    pub(super) fn entries(&self, bucket: &str) -> String {
        self.per_bucket("e", bucket)
    }
    pub(super) fn uploads(&self, bucket: &str) -> String {
        self.per_bucket("u", bucket)
    }
    pub(super) fn upload_records(&self, bucket: &str) -> String {
        self.per_bucket("uh", bucket)
    }
    pub(super) fn parts(&self, bucket: &str) -> String {
        self.per_bucket("p", bucket)
    }
    pub(super) fn part_records(&self, bucket: &str) -> String {
        self.per_bucket("ph", bucket)
    }
    pub(super) fn part_blobs(&self, bucket: &str) -> String {
        self.per_bucket("pb", bucket)
    }
}

/// `store 0x00 blob`: a blob as a hash field or set member. Store names
/// never contain 0x00, so the first 0x00 splits it back.
pub(super) fn blob_field(blob: &BlobRef) -> Vec<u8> {
    let mut out = Vec::with_capacity(blob.store.len() + 1 + blob.blob.len());
    out.extend_from_slice(blob.store.as_bytes());
    out.push(0);
    out.extend_from_slice(blob.blob.as_bytes());
    out
}

pub(super) fn parse_blob_field(field: &[u8]) -> Option<BlobRef> {
    let at = field.iter().position(|b| *b == 0)?;
    Some(BlobRef {
        store: String::from_utf8(field[..at].to_vec()).ok()?,
        blob: String::from_utf8(field[at + 1..].to_vec()).ok()?,
    })
}

/// Distinct blobs as `<len>:<field>` repeated, which the scripts split
/// without a JSON parser (blob names may hold any byte).
pub(super) fn blob_list(blobs: &[BlobRef]) -> Vec<u8> {
    let mut out = Vec::new();
    for blob in blobs {
        let field = blob_field(blob);
        out.extend_from_slice(field.len().to_string().as_bytes());
        out.push(b':');
        out.extend_from_slice(&field);
    }
    out
}

/// `key 0x00 upload id`: an upload's member in its bucket, ordered by key
/// then id (ids are time-ordered, so by initiation).
pub(super) fn upload_member(key: &str, upload_id: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(key.len() + 1 + upload_id.len());
    out.extend_from_slice(key.as_bytes());
    out.push(0);
    out.extend_from_slice(upload_id.as_bytes());
    out
}

/// `bucket 0x00 key 0x00 upload id`: an upload's member in the stale index.
pub(super) fn stale_member(bucket: &str, key: &str, upload_id: &str) -> Vec<u8> {
    let mut out = bucket.as_bytes().to_vec();
    out.push(0);
    out.extend_from_slice(&upload_member(key, upload_id));
    out
}

/// Splits a stale-index member into bucket and (key, upload id) member.
pub(super) fn parse_stale_member(member: &[u8]) -> Option<(String, Vec<u8>)> {
    let at = member.iter().position(|b| *b == 0)?;
    let bucket = String::from_utf8(member[..at].to_vec()).ok()?;
    Some((bucket, member[at + 1..].to_vec()))
}

/// `upload id 0x00 number` with the number as ten decimal digits, so byte
/// order is numeric order.
pub(super) fn part_member(upload_id: &str, number: u32) -> Vec<u8> {
    let mut out = upload_id.as_bytes().to_vec();
    out.push(0);
    out.extend_from_slice(format!("{number:010}").as_bytes());
    out
}

/// The `ZRANGEBYLEX` bounds covering every part of `upload_id`.
pub(super) fn parts_range(upload_id: &str) -> (Vec<u8>, Vec<u8>) {
    let mut low = b"[".to_vec();
    low.extend_from_slice(upload_id.as_bytes());
    low.push(0);
    let mut high = b"(".to_vec();
    high.extend_from_slice(upload_id.as_bytes());
    high.push(1);
    (low, high)
}

/// An inclusive `ZRANGEBYLEX` bound.
pub(super) fn lex_from(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() + 1);
    out.push(b'[');
    out.extend_from_slice(bytes);
    out
}

/// The exclusive upper `ZRANGEBYLEX` bound of every member starting with
/// `prefix` (`+` when the prefix is empty). UTF-8 never holds 0xFF.
pub(super) fn lex_below_group(prefix: &[u8]) -> Vec<u8> {
    if prefix.is_empty() {
        return b"+".to_vec();
    }
    let mut out = Vec::with_capacity(prefix.len() + 2);
    out.push(b'(');
    out.extend_from_slice(prefix);
    out.push(0xFF);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blob_fields_round_trip() {
        let blob = BlobRef {
            store: "data".into(),
            blob: "a\u{0}b:c/d".into(),
        };
        assert_eq!(parse_blob_field(&blob_field(&blob)), Some(blob.clone()));
        assert_eq!(
            blob_list(std::slice::from_ref(&blob)),
            b"12:data\0a\0b:c/d".to_vec()
        );
    }

    #[test]
    fn part_members_sort_by_number() {
        assert!(part_member("u", 9) < part_member("u", 10));
        assert!(part_member("u", 10_000) < part_member("u", u32::MAX));
        let (low, high) = parts_range("u");
        assert!(low[1..] < part_member("u", 0)[..] && part_member("u", u32::MAX)[..] < high[1..]);
    }

    #[test]
    fn cluster_keys_share_one_hash_tag() {
        let keys = Keys::cluster("vol");
        assert_eq!(keys.buckets(), "{vol}:buckets");
        assert_eq!(keys.entries("b"), "{vol}:e:b");
        assert_eq!(keys.lease("gc"), "{vol}:lease:gc");
        assert_eq!(Keys::new("vol").buckets(), "vol:buckets");
    }

    #[test]
    fn patterns_escape_globs() {
        assert_eq!(Keys::new("a*b[1]").pattern(), "a\\*b\\[1\\]:*");
    }
}
