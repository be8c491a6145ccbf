//! PutObject: stream the body into a fresh blob while hashing it, verify
//! every digest the client sent, make the blob durable, then commit the
//! entry in one metadata transaction. A failure at any step leaves the old
//! object untouched and the new blob queued for collection.

use std::collections::BTreeMap;

use ferry_cache::{BlobTags, BlobUpload};
use ferry_meta::{now_millis, BlobRef, Entry, Layout, Segment};
use futures::StreamExt;
use s3s::dto::*;
use s3s::{s3_error, S3Error, S3Request, S3Response, S3Result};

use super::checksums::{self, BodyDigest, Claims};
use super::conditions::write_precondition;
use super::names::check_key;
use super::FerryS3;
use crate::error::{IntoS3Error, ResultExt};
use crate::metrics as m;

/// S3's default for objects stored without a Content-Type.
pub(crate) const DEFAULT_CONTENT_TYPE: &str = "binary/octet-stream";

/// `aws-chunked` describes the request's framing, not the object: it must
/// not be stored as the object's Content-Encoding.
fn object_content_encoding(header: Option<String>) -> Option<String> {
    let header = header?;
    let kept: Vec<&str> = header
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty() && !t.eq_ignore_ascii_case("aws-chunked"))
        .collect();
    (!kept.is_empty()).then(|| kept.join(","))
}

/// Abandons an upload that will not be committed.
async fn discard(upload: Option<BlobUpload>) {
    if let Some(upload) = upload {
        upload.abort().await;
    }
}

/// Queues a durable blob that could not be committed, so the collector
/// removes it after the grace period.
async fn forget(s3: &FerryS3, blob: &BlobRef) {
    if let Err(e) = s3.meta.queue_uncommitted(std::slice::from_ref(blob)).await {
        tracing::warn!(blob = %blob.blob, error = %e, "could not queue an uncommitted blob; fsck will find it");
    }
}

/// S3's limit on user metadata: keys and values together.
const MAX_USER_METADATA_BYTES: usize = 2048;

fn body_error(error: s3s::StdError) -> S3Error {
    let error = match error.downcast::<S3Error>() {
        Ok(e) => return *e,
        Err(other) => other,
    };
    // s3s's body decoders keep their error types private; their messages
    // name the failure.
    let text = error.to_string();
    if text.contains("Sha256Mismatch") {
        // Not among s3s's named codes; S3 answers it with 400.
        let mut e = S3Error::with_message(
            s3s::S3ErrorCode::Custom("XAmzContentSHA256Mismatch".into()),
            "The provided 'x-amz-content-sha256' header does not match what was computed.",
        );
        e.set_status_code(http::StatusCode::BAD_REQUEST);
        e
    } else if text.contains("SignatureMismatch") {
        s3_error!(SignatureDoesNotMatch, "A chunk signature of the body does not match")
    } else if text.contains("FormatError") || text.contains("TooLarge") || text.contains("TooMany") {
        s3_error!(InvalidRequest, "The aws-chunked body is malformed: {text}")
    } else {
        s3_error!(IncompleteBody, "The request body ended early or failed")
    }
}

fn check_user_metadata(metadata: Option<&Metadata>) -> S3Result<()> {
    let size: usize = metadata
        .map(|m| m.iter().map(|(k, v)| k.len() + v.len()).sum())
        .unwrap_or(0);
    if size > MAX_USER_METADATA_BYTES {
        return Err(s3_error!(
            MetadataTooLarge,
            "Your metadata headers are {size} bytes; the limit is {MAX_USER_METADATA_BYTES}"
        ));
    }
    Ok(())
}

pub(super) async fn put_object(s3: &FerryS3, req: S3Request<PutObjectInput>) -> S3Result<S3Response<PutObjectOutput>> {
    let S3Request {
        input,
        headers,
        trailing_headers,
        ..
    } = req;
    check_key(&input.key)?;
    check_user_metadata(input.metadata.as_ref())?;
    s3.meta.bucket(&input.bucket).await.s3()?;
    let condition = write_precondition(input.if_match.as_ref(), input.if_none_match.as_ref())?;
    if let Some(len) = input.content_length
        && u64::try_from(len).unwrap_or(u64::MAX) > s3.max_put_size
    {
        return Err(s3_error!(
            EntityTooLarge,
            "Your proposed upload exceeds the maximum allowed size of {} bytes",
            s3.max_put_size
        ));
    }
    let claims = Claims::from_put(&input, &headers)?;
    let entry_id = uuid::Uuid::now_v7().to_string();
    let store = s3.stores.get(&s3.data_store).s3()?;
    let tags = BlobTags {
        bucket: input.bucket.clone(),
        key: input.key.clone(),
        entry_id: entry_id.clone(),
    };

    let mut digest = BodyDigest::new(&claims);
    // The upload starts with the first byte: an empty object needs no blob.
    let mut upload: Option<BlobUpload> = None;
    if let Some(mut body) = input.body {
        while let Some(chunk) = body.next().await {
            let chunk = match chunk {
                Ok(chunk) => chunk,
                Err(e) => {
                    discard(upload).await;
                    return Err(body_error(e));
                }
            };
            if chunk.is_empty() {
                continue;
            }
            digest.update(&chunk);
            if digest.len > s3.max_put_size {
                discard(upload).await;
                return Err(s3_error!(
                    EntityTooLarge,
                    "Your upload exceeds the maximum allowed size of {} bytes",
                    s3.max_put_size
                ));
            }
            let writer = upload.get_or_insert_with(|| BlobUpload::begin(store, &tags));
            if let Err(e) = writer.write(chunk).await {
                discard(upload).await;
                return Err(e.into_s3());
            }
        }
    }
    let size = digest.len;
    if let Some(declared) = input.content_length
        && u64::try_from(declared).ok() != Some(size)
    {
        discard(upload).await;
        return Err(s3_error!(
            IncompleteBody,
            "You did not provide the number of bytes specified by the Content-Length HTTP header"
        ));
    }
    let trailers = trailing_headers.and_then(|t| t.take());
    let verified = match digest.verify(&claims, trailers.as_ref()) {
        Ok(v) => v,
        Err(e) => {
            discard(upload).await;
            return Err(e);
        }
    };

    // Durable before it is referenced.
    let blob = match upload {
        Some(upload) => Some(upload.finish().await.s3()?),
        None => None,
    };
    let layout = Layout {
        segments: blob
            .iter()
            .map(|b| Segment {
                store: b.store.clone(),
                blob: b.blob.clone(),
                offset: 0,
                len: size,
                version: String::new(),
            })
            .collect(),
    };
    let entry = Entry {
        id: entry_id,
        size,
        etag: verified.md5_hex.clone(),
        last_modified: now_millis(),
        content_type: Some(input.content_type.unwrap_or_else(|| DEFAULT_CONTENT_TYPE.to_string())),
        content_encoding: object_content_encoding(input.content_encoding),
        content_disposition: input.content_disposition,
        content_language: input.content_language,
        cache_control: input.cache_control,
        expires: input.expires.as_ref().and_then(crate::time::http_date),
        user_metadata: input.metadata.unwrap_or_default().into_iter().collect::<BTreeMap<_, _>>(),
        checksums: verified.checksums,
    };
    let checksums = checksums::to_dto(&entry.checksums);
    if let Err(e) = s3.meta.put(&input.bucket, &input.key, entry, layout, condition).await {
        if let Some(blob) = &blob {
            forget(s3, blob).await;
        }
        return Err(e.into_s3());
    }
    metrics::counter!(m::PUT_BYTES).increment(size);
    Ok(S3Response::new(PutObjectOutput {
        e_tag: Some(ETag::Strong(verified.md5_hex)),
        checksum_crc32: checksums.checksum_crc32,
        checksum_crc32c: checksums.checksum_crc32c,
        checksum_crc64nvme: checksums.checksum_crc64nvme,
        checksum_sha1: checksums.checksum_sha1,
        checksum_sha256: checksums.checksum_sha256,
        size: i64::try_from(size).ok(),
        ..PutObjectOutput::default()
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aws_chunked_is_not_an_object_encoding() {
        assert_eq!(object_content_encoding(Some("aws-chunked".into())), None);
        assert_eq!(object_content_encoding(Some("aws-chunked, gzip".into())), Some("gzip".into()));
        assert_eq!(object_content_encoding(Some("gzip".into())), Some("gzip".into()));
        assert_eq!(object_content_encoding(None), None);
    }
}
