//! GetObject and HeadObject: conditionals, ranges, response overrides, and
//! a body streamed from the blobs without holding the object in memory.

use bytes::Bytes;
use ferry_meta::Entry;
use futures::stream::{self, BoxStream, StreamExt};
use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result, s3_error};
use tracing::Instrument;

use super::FerryS3;
use super::checksums;
use super::conditions::ReadConditions;
use super::names::check_key;
use super::put::DEFAULT_CONTENT_TYPE;
use crate::error::{IntoS3Error, ResultExt, invalid_part_number};
use crate::http::step_span;
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

impl Overrides {
    /// Each override must be sendable as a header: a query may carry bytes
    /// (a NUL, a line break) that no header can, and S3 refuses them.
    fn check(&self) -> S3Result<()> {
        let given = [
            ("response-content-type", &self.content_type),
            ("response-content-encoding", &self.content_encoding),
            ("response-content-disposition", &self.content_disposition),
            ("response-content-language", &self.content_language),
            ("response-cache-control", &self.cache_control),
        ];
        for (name, value) in given {
            if let Some(value) = value
                && http::HeaderValue::from_str(value).is_err()
            {
                return Err(s3_error!(
                    InvalidArgument,
                    "{name} is not a valid header value"
                ));
            }
        }
        Ok(())
    }
}

fn present(entry: &Entry, overrides: Overrides) -> Presented {
    Presented {
        content_type: overrides
            .content_type
            .or_else(|| entry.content_type.clone())
            .or_else(|| Some(DEFAULT_CONTENT_TYPE.to_string())),
        content_encoding: overrides
            .content_encoding
            .or_else(|| entry.content_encoding.clone()),
        content_disposition: overrides
            .content_disposition
            .or_else(|| entry.content_disposition.clone()),
        content_language: overrides
            .content_language
            .or_else(|| entry.content_language.clone()),
        cache_control: overrides
            .cache_control
            .or_else(|| entry.cache_control.clone()),
        expires: overrides
            .expires
            .or_else(|| entry.expires.as_deref().and_then(parse_http_date)),
    }
}

/// The byte range to serve and its Content-Range, or the whole object.
fn byte_range(
    range: Option<&Range>,
    part_number: Option<i32>,
    entry: &Entry,
) -> S3Result<(std::ops::Range<u64>, Option<String>)> {
    let size = entry.size;
    let r = match (range, part_number) {
        (None, None) => return Ok((0..size, None)),
        (Some(_), Some(_)) => {
            return Err(s3_error!(
                InvalidRequest,
                "Cannot specify both Range header and partNumber query parameter"
            ));
        }
        (Some(range), None) => range.check(size)?,
        (None, Some(n)) => part_range(entry, n)?,
    };
    if r.is_empty() {
        // Part 1 of an empty object: nothing to describe a range of.
        return Ok((r, None));
    }
    let header = format!("bytes {}-{}/{}", r.start, r.end - 1, size);
    Ok((r, Some(header)))
}

/// Bytes of part `n` (from 1): a part of a multipart upload, or the whole
/// of an object written in one piece, which is its only part.
fn part_range(entry: &Entry, n: i32) -> S3Result<std::ops::Range<u64>> {
    if !(1..=10_000).contains(&n) {
        return Err(s3_error!(
            InvalidArgument,
            "Part number must be an integer between 1 and 10000, inclusive"
        ));
    }
    let index = usize::try_from(n - 1).unwrap_or(usize::MAX);
    let sizes: &[u64] = if entry.parts.is_empty() {
        std::slice::from_ref(&entry.size)
    } else {
        &entry.parts
    };
    let Some(len) = sizes.get(index) else {
        return Err(invalid_part_number());
    };
    let start: u64 = sizes[..index].iter().sum();
    Ok(start..start + len)
}

/// What S3 sends as `x-amz-mp-parts-count`: the number of parts, for a
/// request naming a part of a multipart object.
fn parts_count(entry: &Entry, part_number: Option<i32>) -> Option<i32> {
    part_number?;
    (!entry.parts.is_empty()).then(|| i32::try_from(entry.parts.len()).unwrap_or(i32::MAX))
}

fn wants_checksum(mode: Option<&ChecksumMode>, whole: bool) -> bool {
    // S3 returns whole-object checksums only when asked, and never for a
    // part of the object.
    whole && mode.is_some_and(|m| m.as_str() == ChecksumMode::ENABLED)
}

fn metadata(entry: &Entry) -> Option<Metadata> {
    (!entry.user_metadata.is_empty()).then(|| entry.user_metadata.clone().into_iter().collect())
}

/// What GET and HEAD answer about an object, after conditionals, range
/// and overrides.
struct ObjectView {
    entry: Entry,
    range: std::ops::Range<u64>,
    content_range: Option<String>,
    parts_count: Option<i32>,
    checksum: Checksum,
    presented: Presented,
}

/// The part of a GET or HEAD request that shapes the answer.
struct ViewRequest<'a> {
    conditions: ReadConditions<'a>,
    range: Option<&'a Range>,
    part_number: Option<i32>,
    checksum_mode: Option<&'a ChecksumMode>,
    overrides: Overrides,
}

fn view(entry: Entry, request: ViewRequest<'_>) -> S3Result<ObjectView> {
    request.overrides.check()?;
    request.conditions.check(&entry)?;
    let (range, content_range) = byte_range(request.range, request.part_number, &entry)?;
    let parts_count = parts_count(&entry, request.part_number);
    let checksum = if wants_checksum(request.checksum_mode, content_range.is_none()) {
        checksums::to_dto(&entry.checksums)
    } else {
        Checksum::default()
    };
    let presented = present(&entry, request.overrides);
    Ok(ObjectView {
        entry,
        range,
        content_range,
        parts_count,
        checksum,
        presented,
    })
}

/// Builds GetObjectOutput or HeadObjectOutput from a view: the two carry
/// the same headers.
macro_rules! object_output {
    ($output:ident, $view:expr, $($extra:tt)*) => {{
        let v = $view;
        $output {
            content_length: i64::try_from(v.range.end - v.range.start).ok(),
            content_range: v.content_range,
            parts_count: v.parts_count,
            accept_ranges: Some("bytes".to_string()),
            e_tag: Some(ETag::Strong(v.entry.etag.clone())),
            last_modified: Some(timestamp(v.entry.last_modified)),
            metadata: metadata(&v.entry),
            content_type: v.presented.content_type,
            content_encoding: v.presented.content_encoding,
            content_disposition: v.presented.content_disposition,
            content_language: v.presented.content_language,
            cache_control: v.presented.cache_control,
            expires: v.presented.expires,
            checksum_crc32: v.checksum.checksum_crc32,
            checksum_crc32c: v.checksum.checksum_crc32c,
            checksum_crc64nvme: v.checksum.checksum_crc64nvme,
            checksum_sha1: v.checksum.checksum_sha1,
            checksum_sha256: v.checksum.checksum_sha256,
            $($extra)*
            ..$output::default()
        }
    }};
}

/// The request fields GET and HEAD share, taken from either input.
macro_rules! view_request {
    ($input:expr) => {
        ViewRequest {
            conditions: ReadConditions {
                if_match: $input.if_match.as_ref(),
                if_none_match: $input.if_none_match.as_ref(),
                if_modified_since: $input.if_modified_since.as_ref(),
                if_unmodified_since: $input.if_unmodified_since.as_ref(),
            },
            range: $input.range.as_ref(),
            part_number: $input.part_number,
            checksum_mode: $input.checksum_mode.as_ref(),
            overrides: Overrides {
                content_type: $input.response_content_type.clone(),
                content_encoding: $input.response_content_encoding.clone(),
                content_disposition: $input.response_content_disposition.clone(),
                content_language: $input.response_content_language.clone(),
                cache_control: $input.response_cache_control.clone(),
                expires: $input.response_expires.clone(),
            },
        }
    };
}

pub(super) async fn get_object(
    s3: &FerryS3,
    req: S3Request<GetObjectInput>,
) -> S3Result<S3Response<GetObjectOutput>> {
    let input = req.input;
    let signed = req.credentials.is_some();
    check_key(&input.key)?;
    let (entry, layout) = s3
        .layouts
        .current(s3.meta.as_ref(), &input.bucket, &input.key)
        .instrument(step_span(|| {
            tracing::debug_span!("meta", op = "entry and layout")
        }))
        .await
        .s3()?;
    let view = view(entry, view_request!(input))?;
    // Only imported entries are pinned to an object Ferry does not own, so
    // only they can turn out changed (and stale): the others skip both the
    // lookup and the watch on their body.
    let imported = view.entry.imported_from.is_some();
    if imported
        && s3.stale.is_stale(&view.entry.id)
        && let Some(segment) = layout.segments.first()
    {
        return Err(ferry_cache::CacheError::Changed {
            store: segment.store.clone(),
            blob: segment.blob.clone(),
        }
        .into_s3());
    }
    let pinned = s3.cache.pins().covers(&input.bucket, &input.key);
    if signed && let Some(warm) = &s3.warm_on_open {
        warm.on_read(
            &input.key,
            &view.entry.id,
            &layout,
            view.range.start,
            pinned,
        );
    }
    let body = s3
        .cache
        .read_range(&layout, view.range.clone(), pinned)
        .s3()?;
    let body = if imported {
        let (stale, id) = (s3.stale.clone(), view.entry.id.clone());
        body.inspect(move |chunk| {
            if let Err(ferry_cache::CacheError::Changed { .. }) = chunk {
                stale.mark(&id);
            }
        })
        .boxed()
    } else {
        body
    };
    let body = first_chunk_ready(body).await?;
    Ok(S3Response::new(object_output!(
        GetObjectOutput,
        view,
        body: Some(StreamingBlob::wrap(sync_wrapper::SyncStream::new(body))),
    )))
}

/// Waits for the body's first chunk before the status line goes out, so a
/// store that is down or a blob that is missing is answered with its S3
/// error (503, 500) instead of a 200 whose body breaks off. The first chunk
/// is also what the client waits for, so this adds nothing to its time to
/// first byte. A failure after it can only abort the connection.
async fn first_chunk_ready(
    mut body: BoxStream<'static, ferry_cache::Result<Bytes>>,
) -> S3Result<BoxStream<'static, ferry_cache::Result<Bytes>>> {
    match body.next().await {
        // A finished stream must not be polled again.
        None => Ok(stream::empty().boxed()),
        Some(Err(e)) => Err(e.into_s3()),
        Some(Ok(first)) => Ok(stream::once(async { Ok(first) }).chain(body).boxed()),
    }
}

pub(super) async fn head_object(
    s3: &FerryS3,
    req: S3Request<HeadObjectInput>,
) -> S3Result<S3Response<HeadObjectOutput>> {
    let input = req.input;
    check_key(&input.key)?;
    let entry = s3
        .meta
        .head(&input.bucket, &input.key)
        .instrument(step_span(|| tracing::debug_span!("meta", op = "head")))
        .await
        .s3()?;
    let view = view(entry, view_request!(input))?;
    // With a Content-Range this is answered 206 (see `http::partial_head`).
    Ok(S3Response::new(object_output!(HeadObjectOutput, view,)))
}
