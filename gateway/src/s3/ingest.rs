//! Receiving an object or part body: stream it into a fresh blob while
//! hashing it, verify every digest the client sent, and make the blob
//! durable. Nothing is committed here; the caller commits the blob into
//! the namespace, or calls [`forget`] if it cannot.

use ferry_cache::{BlobTags, BlobUpload};
use ferry_meta::BlobRef;
use futures::StreamExt;
use s3s::dto::StreamingBlob;
use s3s::{S3Error, S3Result, TrailingHeaders, s3_error};

use super::FerryS3;
use super::checksums::{BodyDigest, Claims, Verified};
use crate::error::{IntoS3Error, ResultExt};

/// A received body.
pub struct Ingested {
    /// `None` for an empty body when no blob was required.
    pub blob: Option<BlobRef>,
    pub size: u64,
    pub verified: Verified,
}

/// What to expect of a body.
pub struct BodySpec<'a> {
    pub claims: &'a Claims,
    /// Content-Length as declared (decoded length for aws-chunked).
    pub declared: Option<i64>,
    pub max_size: u64,
    pub tags: BlobTags,
    /// Write a blob even for an empty body (a part needs one).
    pub always_blob: bool,
}

fn too_large(max: u64) -> S3Error {
    s3_error!(
        EntityTooLarge,
        "Your upload exceeds the maximum allowed size of {max} bytes"
    )
}

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
        s3_error!(
            SignatureDoesNotMatch,
            "A chunk signature of the body does not match"
        )
    } else if text.contains("FormatError") || text.contains("TooLarge") || text.contains("TooMany")
    {
        s3_error!(InvalidRequest, "The aws-chunked body is malformed: {text}")
    } else {
        s3_error!(IncompleteBody, "The request body ended early or failed")
    }
}

/// Abandons an upload that will not be committed.
async fn discard(upload: Option<BlobUpload>) {
    if let Some(upload) = upload {
        upload.abort().await;
    }
}

/// Queues a durable blob that could not be committed, so the collector
/// removes it after the grace period.
pub async fn forget(s3: &FerryS3, blob: &BlobRef) {
    if let Err(e) = s3.meta.queue_uncommitted(std::slice::from_ref(blob)).await {
        tracing::warn!(blob = %blob.blob, error = %e, "could not queue an uncommitted blob; fsck will find it");
    }
}

pub async fn ingest(
    s3: &FerryS3,
    body: Option<StreamingBlob>,
    trailing_headers: Option<TrailingHeaders>,
    spec: BodySpec<'_>,
) -> S3Result<Ingested> {
    if let Some(len) = spec.declared
        && u64::try_from(len).unwrap_or(u64::MAX) > spec.max_size
    {
        return Err(too_large(spec.max_size));
    }
    let store = s3.stores.get(&s3.data_store).s3()?;
    let mut digest = BodyDigest::new(spec.claims);
    let mut upload: Option<BlobUpload> = spec
        .always_blob
        .then(|| BlobUpload::begin(store, &spec.tags));
    if let Some(mut body) = body {
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
            if digest.len > spec.max_size {
                discard(upload).await;
                return Err(too_large(spec.max_size));
            }
            let writer = upload.get_or_insert_with(|| BlobUpload::begin(store, &spec.tags));
            if let Err(e) = writer.write(chunk).await {
                discard(upload).await;
                return Err(e.into_s3());
            }
        }
    }
    let size = digest.len;
    if let Some(declared) = spec.declared
        && u64::try_from(declared).ok() != Some(size)
    {
        discard(upload).await;
        return Err(s3_error!(
            IncompleteBody,
            "You did not provide the number of bytes specified by the Content-Length HTTP header"
        ));
    }
    let trailers = trailing_headers.and_then(|t| t.take());
    let verified = match digest.verify(spec.claims, trailers.as_ref()) {
        Ok(v) => v,
        Err(e) => {
            discard(upload).await;
            return Err(e);
        }
    };
    // Durable before anything may reference it.
    let blob = match upload {
        Some(upload) => Some(upload.finish().await.s3()?),
        None => None,
    };
    Ok(Ingested {
        blob,
        size,
        verified,
    })
}
