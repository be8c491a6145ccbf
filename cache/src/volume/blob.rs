//! Writing new blobs: immutable, under fresh keys that never repeat, and
//! durable before `finish` returns.

use bytes::{Bytes, BytesMut};
use ferry_meta::BlobRef;
use object_store::path::Path;
use object_store::{
    Attribute, Attributes, PutMultipartOptions, PutOptions, PutPayload, WriteMultipart,
};

use crate::error::{CacheError, Result};
use crate::store::StoreHandle;

/// Bodies up to this size go to the store in one PUT; larger ones are
/// uploaded in parts of this size (S3 needs at least 5 MiB per part).
const PART_SIZE: usize = 8 << 20;
/// Parts in flight per upload; with `PART_SIZE` this bounds an upload's
/// memory to about 40 MiB whatever the object's size.
const PARTS_IN_FLIGHT: usize = 4;

/// What a blob is for, attached to it where the store keeps attributes, so
/// a blob found without metadata can be traced to its object.
#[derive(Debug, Clone)]
pub struct BlobTags {
    pub bucket: String,
    pub key: String,
    pub entry_id: String,
}

/// Every blob the volume writes lives under this prefix of its store.
pub const BLOB_PREFIX: &str = "blobs";

/// A fresh, never-reused blob name, spread over 65,536 folders so no
/// directory of a file store grows too large.
pub fn fresh_blob_key() -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("{BLOB_PREFIX}/{}/{}/{}", &id[0..2], &id[2..4], id)
}

enum State {
    /// Below `PART_SIZE` so far: kept in memory, sent as one PUT if it ends here.
    Small(BytesMut),
    Parts(WriteMultipart),
}

/// An upload of one new blob.
pub struct BlobUpload {
    store: StoreHandle,
    blob: BlobRef,
    path: Path,
    attributes: Attributes,
    state: State,
}

impl BlobUpload {
    /// Starts an upload to `store` under a fresh key. Nothing is sent yet.
    pub fn begin(store: &StoreHandle, tags: &BlobTags) -> BlobUpload {
        let mut upload = BlobUpload::copy_of(store, &fresh_blob_key());
        if store.supports_attributes {
            upload.attributes.insert(
                Attribute::Metadata("ferry-bucket".into()),
                tags.bucket.clone().into(),
            );
            upload.attributes.insert(
                Attribute::Metadata("ferry-key".into()),
                encode_header(&tags.key).into(),
            );
            upload.attributes.insert(
                Attribute::Metadata("ferry-entry".into()),
                tags.entry_id.clone().into(),
            );
        }
        upload
    }

    /// Starts an upload of a copy of an existing blob under its own key
    /// (a mirror region's replica of the source's blob).
    pub fn copy_of(store: &StoreHandle, key: &str) -> BlobUpload {
        BlobUpload {
            store: store.clone(),
            blob: BlobRef {
                store: store.name.clone(),
                blob: key.to_string(),
            },
            path: Path::from(key),
            attributes: Attributes::new(),
            state: State::Small(BytesMut::new()),
        }
    }

    /// The blob this upload writes.
    pub fn blob(&self) -> &BlobRef {
        &self.blob
    }

    /// Appends `chunk`. Waits while too many parts are in flight, which
    /// passes backpressure to the client's connection.
    pub async fn write(&mut self, chunk: Bytes) -> Result<()> {
        match &mut self.state {
            State::Small(buffer) => {
                buffer.extend_from_slice(&chunk);
                if buffer.len() >= PART_SIZE {
                    let opts = PutMultipartOptions {
                        attributes: self.attributes.clone(),
                        ..PutMultipartOptions::default()
                    };
                    let upload = self
                        .store
                        .client
                        .put_multipart_opts(&self.path, opts)
                        .await
                        .map_err(|e| CacheError::store(&self.store.name, e))?;
                    let mut parts = WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
                    parts.put(std::mem::take(buffer).freeze());
                    self.state = State::Parts(parts);
                }
            }
            State::Parts(parts) => {
                parts
                    .wait_for_capacity(PARTS_IN_FLIGHT)
                    .await
                    .map_err(|e| CacheError::store(&self.store.name, e))?;
                parts.put(chunk);
            }
        }
        Ok(())
    }

    /// Completes the upload. When this returns the blob is durable.
    pub async fn finish(self) -> Result<BlobRef> {
        let name = self.store.name.clone();
        match self.state {
            State::Small(buffer) => {
                let opts = PutOptions {
                    attributes: self.attributes,
                    ..PutOptions::default()
                };
                self.store
                    .client
                    .put_opts(&self.path, PutPayload::from_bytes(buffer.freeze()), opts)
                    .await
                    .map_err(|e| CacheError::store(&name, e))?;
            }
            State::Parts(parts) => {
                parts
                    .finish()
                    .await
                    .map_err(|e| CacheError::store(&name, e))?;
            }
        }
        Ok(self.blob)
    }

    /// Abandons the upload, removing what was sent. Best effort: what it
    /// cannot remove stays unreferenced and is found by `fsck`.
    pub async fn abort(self) {
        if let State::Parts(parts) = self.state
            && let Err(e) = parts.abort().await
        {
            tracing::warn!(store = %self.store.name, blob = %self.blob.blob, error = %e, "could not abort upload");
        }
    }
}

/// Object keys may hold any UTF-8; header values may not. Percent-encode
/// everything outside printable ASCII (and '%').
fn encode_header(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if (0x20..0x7f).contains(&byte) && byte != b'%' {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blob_keys_are_fresh_and_sharded() {
        let a = fresh_blob_key();
        let b = fresh_blob_key();
        assert_ne!(a, b);
        let parts: Vec<&str> = a.split('/').collect();
        assert_eq!(parts.len(), 4);
        assert!(parts[3].starts_with(&format!("{}{}", parts[1], parts[2])));
    }

    #[test]
    fn header_encoding_keeps_ascii_and_escapes_the_rest() {
        assert_eq!(encode_header("a/b c"), "a/b c");
        assert_eq!(encode_header("\u{e9}%\n"), "%C3%A9%25%0A");
    }
}
