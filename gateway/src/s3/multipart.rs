//! Multipart uploads. Each part is its own blob; completion commits an
//! entry whose segments are the parts' blobs, so no byte is copied.
//! UploadPartCopy shares the source's blobs the same way.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ferry_cache::BlobTags;
use ferry_meta::{Completion, Entry, Layout, MetaError, Part, Upload, UploadQuery, now_millis};
use s3s::crypto::{Checksum as _, Crc32, Crc32c, Crc64Nvme, Md5, Sha1, Sha256};
use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result, s3_error};

use super::checksums::{self, Claims, algorithm_named, checksum_fields};
use super::conditions::write_precondition;
use super::copy::resolve_source;
use super::ingest::{BodySpec, Ingested, forget, ingest};
use super::limits::{
    self, MAX_PART_NUMBER, MAX_PART_SIZE, MIN_PART_SIZE, check_part_size, check_upload_segments,
};
use super::list::{Encoder, delimiter, owner, page_size};
use super::names::check_key;
use super::put::{check_user_metadata, object_attributes};
use super::{FerryS3, acl};
use crate::error::{IntoS3Error, ResultExt};
use crate::time::timestamp;

fn part_number(n: i32) -> S3Result<u32> {
    if !(1..=MAX_PART_NUMBER).contains(&n) {
        return Err(s3_error!(
            InvalidArgument,
            "Part number must be an integer between 1 and {MAX_PART_NUMBER}, inclusive"
        ));
    }
    u32::try_from(n).map_err(|_| s3_error!(InvalidArgument, "bad part number"))
}

pub(super) async fn create(
    s3: &FerryS3,
    req: S3Request<CreateMultipartUploadInput>,
) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
    let input = req.input;
    check_key(&input.key)?;
    check_user_metadata(input.metadata.as_ref())?;
    let acl = acl::canned(
        input.acl.as_ref().map(ObjectCannedACL::as_str),
        &req.headers,
    )?;
    let checksum_algorithm = match &input.checksum_algorithm {
        Some(a) => Some(
            algorithm_named(a.as_str())
                .ok_or_else(|| {
                    s3_error!(InvalidRequest, "Unknown checksum algorithm {}", a.as_str())
                })?
                .to_string(),
        ),
        None => None,
    };
    let upload = Upload {
        id: uuid::Uuid::now_v7().simple().to_string(),
        key: input.key.clone(),
        initiated: now_millis(),
        template: Entry {
            acl,
            ..object_attributes!(input)
        },
        checksum_algorithm,
    };
    s3.meta
        .create_upload(&input.bucket, upload.clone())
        .await
        .s3()?;
    Ok(S3Response::new(CreateMultipartUploadOutput {
        bucket: Some(input.bucket),
        key: Some(input.key),
        upload_id: Some(upload.id),
        checksum_algorithm: input.checksum_algorithm,
        checksum_type: upload
            .checksum_algorithm
            .as_ref()
            .map(|_| ChecksumType::from_static(ChecksumType::COMPOSITE)),
        ..CreateMultipartUploadOutput::default()
    }))
}

pub(super) async fn upload_part(
    s3: &FerryS3,
    req: S3Request<UploadPartInput>,
) -> S3Result<S3Response<UploadPartOutput>> {
    let S3Request {
        input,
        headers,
        trailing_headers,
        ..
    } = req;
    let number = part_number(input.part_number)?;
    // Refuse early rather than after receiving gigabytes.
    s3.meta
        .upload(&input.bucket, &input.key, &input.upload_id)
        .await
        .s3()?;
    let claims = Claims::from_part(&input, &headers)?;
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
            max_size: MAX_PART_SIZE,
            tags: BlobTags {
                bucket: input.bucket.clone(),
                key: input.key.clone(),
                entry_id: format!("{}/{number}", input.upload_id),
            },
            always_blob: true,
        },
    )
    .await?;
    let Some(blob) = blob else {
        return Err(crate::error::internal("a part was received without a blob"));
    };
    let part = Part {
        number,
        etag: verified.md5_hex.clone(),
        size,
        last_modified: now_millis(),
        segments: vec![ferry_meta::Segment {
            store: blob.store.clone(),
            blob: blob.blob.clone(),
            offset: 0,
            len: size,
            version: String::new(),
        }],
        checksums: verified.checksums,
    };
    let checksums = checksums::to_dto(&part.checksums);
    if let Err(e) = s3
        .meta
        .put_part(&input.bucket, &input.key, &input.upload_id, part)
        .await
    {
        // Aborted or completed while the body arrived: the blob is ours to drop.
        forget(s3, &blob).await;
        return Err(e.into_s3());
    }
    Ok(S3Response::new(UploadPartOutput {
        e_tag: Some(ETag::Strong(verified.md5_hex)),
        checksum_crc32: checksums.checksum_crc32,
        checksum_crc32c: checksums.checksum_crc32c,
        checksum_crc64nvme: checksums.checksum_crc64nvme,
        checksum_sha1: checksums.checksum_sha1,
        checksum_sha256: checksums.checksum_sha256,
        ..UploadPartOutput::default()
    }))
}

/// `bytes=first-last` of x-amz-copy-source-range, inclusive.
fn copy_range(header: Option<&str>, size: u64) -> S3Result<std::ops::Range<u64>> {
    let Some(header) = header else {
        return Ok(0..size);
    };
    let invalid = || {
        s3_error!(
            InvalidArgument,
            "The x-amz-copy-source-range value must be of the form bytes=first-last"
        )
    };
    let spec = header.trim().strip_prefix("bytes=").ok_or_else(invalid)?;
    let (first, last) = spec.split_once('-').ok_or_else(invalid)?;
    let first: u64 = first.trim().parse().map_err(|_| invalid())?;
    let last: u64 = last.trim().parse().map_err(|_| invalid())?;
    if first > last {
        return Err(invalid());
    }
    if last >= size {
        return Err(s3_error!(
            InvalidRange,
            "The x-amz-copy-source-range {header} is outside an object of {size} bytes"
        ));
    }
    Ok(first..last + 1)
}

pub(super) async fn upload_part_copy(
    s3: &FerryS3,
    req: S3Request<UploadPartCopyInput>,
) -> S3Result<S3Response<UploadPartCopyOutput>> {
    let input = req.input;
    let number = part_number(input.part_number)?;
    s3.meta
        .upload(&input.bucket, &input.key, &input.upload_id)
        .await
        .s3()?;
    let (entry, layout) = resolve_source(
        s3,
        req.credentials.as_ref(),
        &input.copy_source,
        super::copy::SourceConditions {
            if_match: input.copy_source_if_match.as_ref(),
            if_none_match: input.copy_source_if_none_match.as_ref(),
            if_modified_since: input.copy_source_if_modified_since.as_ref(),
            if_unmodified_since: input.copy_source_if_unmodified_since.as_ref(),
        },
    )
    .await?;
    let range = copy_range(input.copy_source_range.as_deref(), entry.size)?;
    let size = range.end - range.start;
    check_part_size(size)?;
    let segments = ferry_cache::slice_layout(&layout, range.clone()).segments;
    // Checked against the parts stored now: concurrent copies into one
    // upload may pass together, and Complete checks the object again.
    let held = all_parts(s3, &input.bucket, &input.key, &input.upload_id)
        .await?
        .iter()
        .filter(|p| p.number != number)
        .map(|p| p.segments.len())
        .sum();
    check_upload_segments(held, segments.len())?;
    // The bytes are not read, so the part's ETag cannot be their MD5; it is
    // derived from the source's ETag and the range, which identifies the
    // same bytes just as well. Clients only echo it back on completion.
    let etag = hex::encode(Md5::checksum(
        format!("{}:{}-{}", entry.etag, range.start, range.end).as_bytes(),
    ));
    let part = Part {
        number,
        etag: etag.clone(),
        size,
        last_modified: now_millis(),
        segments,
        checksums: BTreeMap::new(),
    };
    let last_modified = part.last_modified;
    s3.meta
        .put_part(&input.bucket, &input.key, &input.upload_id, part)
        .await
        .s3()?;
    Ok(S3Response::new(UploadPartCopyOutput {
        copy_part_result: Some(CopyPartResult {
            e_tag: Some(ETag::Strong(etag)),
            last_modified: Some(timestamp(last_modified)),
            ..CopyPartResult::default()
        }),
        ..UploadPartCopyOutput::default()
    }))
}

/// Every part of an upload, ascending.
async fn all_parts(s3: &FerryS3, bucket: &str, key: &str, upload_id: &str) -> S3Result<Vec<Part>> {
    let mut parts = Vec::new();
    let mut after = 0;
    loop {
        let (page, truncated) = s3
            .meta
            .list_parts(bucket, key, upload_id, after, 1000)
            .await
            .s3()?;
        after = page.last().map_or(after, |p| p.number);
        parts.extend(page);
        if !truncated {
            return Ok(parts);
        }
    }
}

/// S3's composite checksum: the algorithm over the concatenated raw part
/// checksums, then `-N`.
fn composite_checksum(algorithm: &str, parts: &[&Part]) -> Option<String> {
    let mut raw = Vec::new();
    for part in parts {
        raw.extend(BASE64.decode(part.checksums.get(algorithm)?).ok()?);
    }
    let digest: Vec<u8> = match algorithm {
        "CRC32" => Crc32::checksum(&raw).to_vec(),
        "CRC32C" => Crc32c::checksum(&raw).to_vec(),
        "CRC64NVME" => Crc64Nvme::checksum(&raw).to_vec(),
        "SHA1" => Sha1::checksum(&raw).as_ref().to_vec(),
        "SHA256" => Sha256::checksum(&raw).as_ref().to_vec(),
        _ => return None,
    };
    Some(format!("{}-{}", BASE64.encode(digest), parts.len()))
}

pub(super) async fn complete(
    s3: &FerryS3,
    req: S3Request<CompleteMultipartUploadInput>,
) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
    let input = req.input;
    let requested = input
        .multipart_upload
        .and_then(|m| m.parts)
        .filter(|p| !p.is_empty())
        .ok_or_else(|| s3_error!(MalformedXML, "The request names no parts"))?;
    let (bucket, key, upload_id) = (&input.bucket, &input.key, &input.upload_id);
    let upload = match s3.meta.upload(bucket, key, upload_id).await {
        Ok(upload) => upload,
        Err(MetaError::NoSuchUpload { .. }) => {
            return retried(s3, bucket, key, upload_id, &requested).await;
        }
        Err(e) => return Err(e.into_s3()),
    };
    let condition = write_precondition(input.if_match.as_ref(), input.if_none_match.as_ref())?;
    let stored: BTreeMap<u32, Part> = match all_parts(s3, bucket, key, upload_id).await {
        Ok(parts) => parts.into_iter().map(|p| (p.number, p)).collect(),
        // Another Complete of this upload committed since we looked it up.
        Err(e) if *e.code() == s3s::S3ErrorCode::NoSuchUpload => {
            return retried(s3, bucket, key, upload_id, &requested).await;
        }
        Err(e) => return Err(e),
    };

    // Validate everything before anything is committed.
    let mut chosen: Vec<&Part> = Vec::with_capacity(requested.len());
    let mut previous = 0u32;
    for wanted in &requested {
        let number = part_number(wanted.part_number.unwrap_or(0))?;
        if number <= previous {
            return Err(s3_error!(
                InvalidPartOrder,
                "The list of parts was not in ascending order."
            ));
        }
        previous = number;
        let part = stored
            .get(&number)
            .ok_or_else(|| s3_error!(InvalidPart, "Part {number} has not been uploaded."))?;
        if let Some(etag) = &wanted.e_tag
            && etag.value().trim_matches('"') != part.etag
        {
            return Err(s3_error!(
                InvalidPart,
                "The ETag given for part {number} does not match the uploaded part."
            ));
        }
        for (algorithm, value) in checksum_fields!(wanted) {
            if let Some(value) = value
                && part.checksums.get(algorithm) != Some(value)
            {
                return Err(s3_error!(
                    InvalidPart,
                    "The {algorithm} checksum given for part {number} does not match the uploaded part."
                ));
            }
        }
        chosen.push(part);
    }
    for part in &chosen[..chosen.len() - 1] {
        if part.size < MIN_PART_SIZE {
            return Err(s3_error!(
                EntityTooSmall,
                "Part {} is {} bytes; every part but the last must be at least 5 MiB.",
                part.number,
                part.size
            ));
        }
    }

    let size: u64 = chosen.iter().map(|p| p.size).sum();
    let layout = Layout {
        segments: chosen
            .iter()
            .flat_map(|p| p.segments.iter().cloned())
            .collect(),
    };
    limits::check_object(size, layout.segments.len())?;

    let mut md5s = Vec::with_capacity(chosen.len() * 16);
    for part in &chosen {
        md5s.extend(hex::decode(&part.etag).map_err(crate::error::internal)?);
    }
    let etag = format!("{}-{}", hex::encode(Md5::checksum(&md5s)), chosen.len());
    let mut checksums = BTreeMap::new();
    if let Some(algorithm) = &upload.checksum_algorithm
        && let Some(value) = composite_checksum(algorithm, &chosen)
    {
        checksums.insert(algorithm.clone(), value);
    }
    let completion = Completion {
        upload_id: upload_id.clone(),
        key: key.clone(),
        etag: etag.clone(),
        parts: chosen.iter().map(|p| (p.number, p.etag.clone())).collect(),
        checksums: checksums.clone(),
        keep_until: now_millis()
            .saturating_add(i64::try_from(s3.completion_ttl.as_millis()).unwrap_or(i64::MAX)),
    };
    let entry = Entry {
        id: uuid::Uuid::now_v7().to_string(),
        size,
        etag,
        last_modified: now_millis(),
        checksums,
        parts: chosen.iter().map(|p| p.size).collect(),
        ..upload.template
    };
    match s3
        .meta
        .complete_upload(bucket, completion.clone(), entry, layout, condition)
        .await
    {
        Ok(_) => Ok(S3Response::new(completed(bucket, key, &completion))),
        // Another Complete of this upload committed first.
        Err(MetaError::NoSuchUpload { .. }) => {
            retried(s3, bucket, key, upload_id, &requested).await
        }
        Err(e) => Err(e.into_s3()),
    }
}

/// The answer to a Complete of an upload that is no longer in progress: if
/// it was completed with these parts (within the keep time), the same
/// answer as the first time, without evaluating any condition again or
/// committing anything; otherwise NoSuchUpload.
async fn retried(
    s3: &FerryS3,
    bucket: &str,
    key: &str,
    upload_id: &str,
    requested: &[CompletedPart],
) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
    let no_upload = || {
        MetaError::NoSuchUpload {
            bucket: bucket.into(),
            key: key.into(),
            upload_id: upload_id.into(),
        }
        .into_s3()
    };
    let Some(completion) = s3.meta.completion(bucket, key, upload_id).await.s3()? else {
        return Err(no_upload());
    };
    let same_parts = requested.len() == completion.parts.len()
        && requested
            .iter()
            .zip(&completion.parts)
            .all(|(wanted, (number, etag))| {
                wanted.part_number.and_then(|n| u32::try_from(n).ok()) == Some(*number)
                    && wanted
                        .e_tag
                        .as_ref()
                        .is_none_or(|e| e.value().trim_matches('"') == etag)
            });
    if !same_parts {
        return Err(no_upload());
    }
    tracing::info!(%bucket, %key, upload = %upload_id, "repeated CompleteMultipartUpload answered from its record");
    Ok(S3Response::new(completed(bucket, key, &completion)))
}

fn completed(bucket: &str, key: &str, completion: &Completion) -> CompleteMultipartUploadOutput {
    let dto = checksums::to_dto(&completion.checksums);
    CompleteMultipartUploadOutput {
        bucket: Some(bucket.to_string()),
        key: Some(key.to_string()),
        location: Some(format!("/{bucket}/{key}")),
        e_tag: Some(ETag::Strong(completion.etag.clone())),
        checksum_crc32: dto.checksum_crc32,
        checksum_crc32c: dto.checksum_crc32c,
        checksum_crc64nvme: dto.checksum_crc64nvme,
        checksum_sha1: dto.checksum_sha1,
        checksum_sha256: dto.checksum_sha256,
        checksum_type: (!completion.checksums.is_empty())
            .then(|| ChecksumType::from_static(ChecksumType::COMPOSITE)),
        ..CompleteMultipartUploadOutput::default()
    }
}

pub(super) async fn abort(
    s3: &FerryS3,
    req: S3Request<AbortMultipartUploadInput>,
) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
    let input = req.input;
    s3.meta
        .abort_upload(&input.bucket, &input.key, &input.upload_id)
        .await
        .s3()?;
    Ok(S3Response::new(AbortMultipartUploadOutput::default()))
}

pub(super) async fn list_parts(
    s3: &FerryS3,
    req: S3Request<ListPartsInput>,
) -> S3Result<S3Response<ListPartsOutput>> {
    let input = req.input;
    let max = page_size(input.max_parts)?;
    let upload = s3
        .meta
        .upload(&input.bucket, &input.key, &input.upload_id)
        .await
        .s3()?;
    let after = u32::try_from(input.part_number_marker.unwrap_or(0).max(0)).unwrap_or(0);
    let (parts, truncated) = if max == 0 {
        (Vec::new(), false)
    } else {
        s3.meta
            .list_parts(&input.bucket, &input.key, &input.upload_id, after, max)
            .await
            .s3()?
    };
    let next = parts
        .last()
        .map(|p| i32::try_from(p.number).unwrap_or(MAX_PART_NUMBER));
    let parts: Vec<s3s::dto::Part> = parts
        .into_iter()
        .map(|p| {
            let sums = checksums::to_dto(&p.checksums);
            s3s::dto::Part {
                part_number: i32::try_from(p.number).ok(),
                e_tag: Some(ETag::Strong(p.etag)),
                size: i64::try_from(p.size).ok(),
                last_modified: Some(timestamp(p.last_modified)),
                checksum_crc32: sums.checksum_crc32,
                checksum_crc32c: sums.checksum_crc32c,
                checksum_crc64nvme: sums.checksum_crc64nvme,
                checksum_sha1: sums.checksum_sha1,
                checksum_sha256: sums.checksum_sha256,
            }
        })
        .collect();
    Ok(S3Response::new(ListPartsOutput {
        bucket: Some(input.bucket),
        key: Some(input.key),
        upload_id: Some(input.upload_id),
        max_parts: Some(i32::try_from(max).unwrap_or(i32::MAX)),
        part_number_marker: input.part_number_marker,
        next_part_number_marker: if truncated { next } else { None },
        is_truncated: Some(truncated),
        parts: Some(parts),
        checksum_algorithm: upload.checksum_algorithm.map(ChecksumAlgorithm::from),
        owner: Some(owner()),
        initiator: Some(Initiator {
            display_name: Some("ferry".into()),
            id: Some("ferry".into()),
        }),
        storage_class: Some(StorageClass::from_static(StorageClass::STANDARD)),
        ..ListPartsOutput::default()
    }))
}

pub(super) async fn list_uploads(
    s3: &FerryS3,
    req: S3Request<ListMultipartUploadsInput>,
) -> S3Result<S3Response<ListMultipartUploadsOutput>> {
    let input = req.input;
    let encoder = Encoder::new(input.encoding_type.as_ref())?;
    let max = page_size(input.max_uploads)?;
    let result = if max == 0 {
        s3.meta.bucket(&input.bucket).await.s3()?;
        ferry_meta::UploadPage::default()
    } else {
        s3.meta
            .list_uploads(
                &input.bucket,
                &UploadQuery {
                    prefix: input.prefix.clone().unwrap_or_default(),
                    key_marker: input.key_marker.clone().filter(|k| !k.is_empty()),
                    upload_id_marker: input.upload_id_marker.clone().filter(|u| !u.is_empty()),
                    max,
                },
            )
            .await
            .s3()?
    };
    let last = result.uploads.last().map(|u| (u.key.clone(), u.id.clone()));
    let uploads: Vec<MultipartUpload> = result
        .uploads
        .into_iter()
        .map(|u| MultipartUpload {
            key: Some(encoder.name(u.key)),
            upload_id: Some(u.id),
            initiated: Some(timestamp(u.initiated)),
            checksum_algorithm: u.checksum_algorithm.map(ChecksumAlgorithm::from),
            owner: Some(owner()),
            initiator: Some(Initiator {
                display_name: Some("ferry".into()),
                id: Some("ferry".into()),
            }),
            storage_class: Some(StorageClass::from_static(StorageClass::STANDARD)),
            ..MultipartUpload::default()
        })
        .collect();
    let (next_key_marker, next_upload_id_marker) = match (result.truncated, last) {
        (true, Some((key, id))) => (Some(key), Some(id)),
        _ => (None, None),
    };
    Ok(S3Response::new(ListMultipartUploadsOutput {
        bucket: Some(input.bucket),
        prefix: encoder.opt(input.prefix),
        key_marker: encoder.opt(input.key_marker),
        upload_id_marker: input.upload_id_marker,
        max_uploads: Some(i32::try_from(max).unwrap_or(i32::MAX)),
        is_truncated: Some(result.truncated),
        next_key_marker: encoder.opt(next_key_marker),
        next_upload_id_marker,
        uploads: Some(uploads),
        delimiter: encoder.opt(delimiter(input.delimiter)),
        encoding_type: input.encoding_type,
        ..ListMultipartUploadsOutput::default()
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_ranges_are_inclusive_and_checked() {
        assert_eq!(copy_range(None, 10).ok(), Some(0..10));
        assert_eq!(copy_range(Some("bytes=2-5"), 10).ok(), Some(2..6));
        assert!(copy_range(Some("bytes=5-2"), 10).is_err());
        assert!(copy_range(Some("bytes=0-10"), 10).is_err());
        assert!(copy_range(Some("2-5"), 10).is_err());
    }

    #[test]
    fn part_numbers_are_one_to_ten_thousand() {
        assert!(part_number(0).is_err());
        assert!(part_number(1).is_ok());
        assert!(part_number(10_000).is_ok());
        assert!(part_number(10_001).is_err());
    }
}
