//! GetObject and HeadObject: conditionals, ranges, response overrides, and
//! a body streamed from the blobs without holding the object in memory.

use ferry_meta::Entry;
use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result};

use super::checksums;
use super::conditions::ReadConditions;
use super::names::check_key;
use super::put::DEFAULT_CONTENT_TYPE;
use super::FerryS3;
use crate::error::ResultExt;
use crate::time::{parse_http_date, timestamp};

/// The headers describing an object, after response-* overrides.
struct Presented {
    content_type: Option<String>,
    content_encoding: Option<String>,
    content_disposition: Option<String>,
    content_language: Option<String>,
    cache_control: Option<String>,
    expires: Option<Timestamp>,
}

struct Overrides {
    content_type: Option<String>,
    content_encoding: Option<String>,
    content_disposition: Option<String>,
    content_language: Option<String>,
    cache_control: Option<String>,
    expires: Option<Timestamp>,
}

fn present(entry: &Entry, overrides: Overrides) -> Presented {
    Presented {
        content_type: overrides
            .content_type
            .or_else(|| entry.content_type.clone())
            .or_else(|| Some(DEFAULT_CONTENT_TYPE.to_string())),
        content_encoding: overrides.content_encoding.or_else(|| entry.content_encoding.clone()),
        content_disposition: overrides.content_disposition.or_else(|| entry.content_disposition.clone()),
        content_language: overrides.content_language.or_else(|| entry.content_language.clone()),
        cache_control: overrides.cache_control.or_else(|| entry.cache_control.clone()),
        expires: overrides
            .expires
            .or_else(|| entry.expires.as_deref().and_then(parse_http_date)),
    }
}

/// The byte range to serve and its Content-Range, or the whole object.
fn byte_range(range: Option<&Range>, size: u64) -> S3Result<(std::ops::Range<u64>, Option<String>)> {
    match range {
        None => Ok((0..size, None)),
        Some(range) => {
            let r = range.check(size)?;
            let header = format!("bytes {}-{}/{}", r.start, r.end.saturating_sub(1), size);
            Ok((r, Some(header)))
        }
    }
}

fn wants_checksum(mode: Option<&ChecksumMode>, whole: bool) -> bool {
    // S3 returns whole-object checksums only when asked, and never for a
    // part of the object.
    whole && mode.is_some_and(|m| m.as_str() == ChecksumMode::ENABLED)
}

fn metadata(entry: &Entry) -> Option<Metadata> {
    (!entry.user_metadata.is_empty()).then(|| entry.user_metadata.clone().into_iter().collect())
}

pub(super) async fn get_object(s3: &FerryS3, req: S3Request<GetObjectInput>) -> S3Result<S3Response<GetObjectOutput>> {
    let input = req.input;
    check_key(&input.key)?;
    let (entry, layout) = s3.meta.get(&input.bucket, &input.key).await.s3()?;
    ReadConditions {
        if_match: input.if_match.as_ref(),
        if_none_match: input.if_none_match.as_ref(),
        if_modified_since: input.if_modified_since.as_ref(),
        if_unmodified_since: input.if_unmodified_since.as_ref(),
    }
    .check(&entry)?;
    let (range, content_range) = byte_range(input.range.as_ref(), entry.size)?;
    let length = range.end - range.start;
    let whole = content_range.is_none();
    let body = match &s3.cache {
        Some(cache) => cache.read_range(&s3.stores, &layout, range),
        None => ferry_cache::read_range(&s3.stores, &layout, range),
    }
    .s3()?;
    let checksum = if wants_checksum(input.checksum_mode.as_ref(), whole) {
        checksums::to_dto(&entry.checksums)
    } else {
        Checksum::default()
    };
    let presented = present(
        &entry,
        Overrides {
            content_type: input.response_content_type,
            content_encoding: input.response_content_encoding,
            content_disposition: input.response_content_disposition,
            content_language: input.response_content_language,
            cache_control: input.response_cache_control,
            expires: input.response_expires,
        },
    );
    Ok(S3Response::new(GetObjectOutput {
        body: Some(StreamingBlob::wrap(sync_wrapper::SyncStream::new(body))),
        content_length: i64::try_from(length).ok(),
        content_range,
        accept_ranges: Some("bytes".to_string()),
        e_tag: Some(ETag::Strong(entry.etag.clone())),
        last_modified: Some(timestamp(entry.last_modified)),
        metadata: metadata(&entry),
        content_type: presented.content_type,
        content_encoding: presented.content_encoding,
        content_disposition: presented.content_disposition,
        content_language: presented.content_language,
        cache_control: presented.cache_control,
        expires: presented.expires,
        checksum_crc32: checksum.checksum_crc32,
        checksum_crc32c: checksum.checksum_crc32c,
        checksum_crc64nvme: checksum.checksum_crc64nvme,
        checksum_sha1: checksum.checksum_sha1,
        checksum_sha256: checksum.checksum_sha256,
        ..GetObjectOutput::default()
    }))
}

pub(super) async fn head_object(s3: &FerryS3, req: S3Request<HeadObjectInput>) -> S3Result<S3Response<HeadObjectOutput>> {
    let input = req.input;
    check_key(&input.key)?;
    let entry = s3.meta.head(&input.bucket, &input.key).await.s3()?;
    ReadConditions {
        if_match: input.if_match.as_ref(),
        if_none_match: input.if_none_match.as_ref(),
        if_modified_since: input.if_modified_since.as_ref(),
        if_unmodified_since: input.if_unmodified_since.as_ref(),
    }
    .check(&entry)?;
    let (range, content_range) = byte_range(input.range.as_ref(), entry.size)?;
    let whole = content_range.is_none();
    let checksum = if wants_checksum(input.checksum_mode.as_ref(), whole) {
        checksums::to_dto(&entry.checksums)
    } else {
        Checksum::default()
    };
    let presented = present(
        &entry,
        Overrides {
            content_type: input.response_content_type,
            content_encoding: input.response_content_encoding,
            content_disposition: input.response_content_disposition,
            content_language: input.response_content_language,
            cache_control: input.response_cache_control,
            expires: input.response_expires,
        },
    );
    Ok(S3Response::new(HeadObjectOutput {
        content_length: i64::try_from(range.end - range.start).ok(),
        content_range,
        accept_ranges: Some("bytes".to_string()),
        e_tag: Some(ETag::Strong(entry.etag.clone())),
        last_modified: Some(timestamp(entry.last_modified)),
        metadata: metadata(&entry),
        content_type: presented.content_type,
        content_encoding: presented.content_encoding,
        content_disposition: presented.content_disposition,
        content_language: presented.content_language,
        cache_control: presented.cache_control,
        expires: presented.expires,
        checksum_crc32: checksum.checksum_crc32,
        checksum_crc32c: checksum.checksum_crc32c,
        checksum_crc64nvme: checksum.checksum_crc64nvme,
        checksum_sha1: checksum.checksum_sha1,
        checksum_sha256: checksum.checksum_sha256,
        ..HeadObjectOutput::default()
    }))
}
