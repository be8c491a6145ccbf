//! PutObject: receive the body into a fresh durable blob (see `ingest`),
//! then commit the entry in one metadata transaction. A failure at any step
//! leaves the old object untouched and the new blob queued for collection.

use ferry_cache::BlobTags;
use ferry_meta::{Entry, Layout, Segment, now_millis};
use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result, s3_error};

use super::checksums::{self, Claims};
use super::conditions::write_precondition;
use super::ingest::{BodySpec, Ingested, forget, ingest};
use super::names::check_key;
use super::{FerryS3, acl};
use crate::error::{IntoS3Error, ResultExt};
use crate::metrics as m;

/// S3's default for objects stored without a Content-Type.
pub(crate) const DEFAULT_CONTENT_TYPE: &str = "binary/octet-stream";

/// The attributes a client sets on an object (content type and the other
/// headers S3 stores, user metadata), taken from any input that carries
/// them: PutObject, CreateMultipartUpload, CopyObject with REPLACE.
/// Moves those fields out of `$input`.
macro_rules! object_attributes {
    ($input:expr) => {
        ferry_meta::Entry {
            content_type: Some(
                $input
                    .content_type
                    .unwrap_or_else(|| $crate::s3::put::DEFAULT_CONTENT_TYPE.to_string()),
            ),
            content_encoding: $crate::s3::put::object_content_encoding($input.content_encoding),
            content_disposition: $input.content_disposition,
            content_language: $input.content_language,
            cache_control: $input.cache_control,
            expires: $input.expires.as_ref().and_then($crate::time::http_date),
            user_metadata: $input.metadata.unwrap_or_default().into_iter().collect(),
            ..ferry_meta::Entry::default()
        }
    };
}
pub(super) use object_attributes;

/// `aws-chunked` describes the request's framing, not the object: it must
/// not be stored as the object's Content-Encoding.
pub(super) fn object_content_encoding(header: Option<String>) -> Option<String> {
    let header = header?;
    let kept: Vec<&str> = header
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty() && !t.eq_ignore_ascii_case("aws-chunked"))
        .collect();
    (!kept.is_empty()).then(|| kept.join(","))
}

/// S3's limit on user metadata: keys and values together.
const MAX_USER_METADATA_BYTES: usize = 2048;

pub(super) fn check_user_metadata(metadata: Option<&Metadata>) -> S3Result<()> {
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

pub(super) async fn put_object(
    s3: &FerryS3,
    req: S3Request<PutObjectInput>,
) -> S3Result<S3Response<PutObjectOutput>> {
    let S3Request {
        input,
        headers,
        trailing_headers,
        ..
    } = req;
    check_key(&input.key)?;
    check_user_metadata(input.metadata.as_ref())?;
    let acl = acl::canned(input.acl.as_ref().map(ObjectCannedACL::as_str), &headers)?;
    s3.meta.bucket(&input.bucket).await.s3()?;
    let condition = write_precondition(input.if_match.as_ref(), input.if_none_match.as_ref())?;
    let claims = Claims::from_put(&input, &headers)?;
    let entry_id = uuid::Uuid::now_v7().to_string();
    let Ingested {
        blob,
        size,
        verified,
    } = ingest(
        s3,
        input.body,
        trailing_headers,
        BodySpec {
            claims: &claims,
            declared: input.content_length,
            max_size: s3.max_put_size,
            tags: BlobTags {
                bucket: input.bucket.clone(),
                key: input.key.clone(),
                entry_id: entry_id.clone(),
            },
            always_blob: false,
        },
    )
    .await?;
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
        checksums: verified.checksums,
        acl,
        ..object_attributes!(input)
    };
    let checksums = checksums::to_dto(&entry.checksums);
    if let Err(e) = s3
        .meta
        .put(&input.bucket, &input.key, entry, layout, condition)
        .await
    {
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
        assert_eq!(
            object_content_encoding(Some("aws-chunked, gzip".into())),
            Some("gzip".into())
        );
        assert_eq!(
            object_content_encoding(Some("gzip".into())),
            Some("gzip".into())
        );
        assert_eq!(object_content_encoding(None), None);
    }
}
