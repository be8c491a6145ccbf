//! Versioning as S3 shows an unversioned bucket: GetBucketVersioning has no
//! status, and ListObjectVersions lists each object as its one current
//! version, `null`, so tools that clean up by versions work unchanged.

use ferry_meta::ListQuery;
use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result};

use super::FerryS3;
use super::list::{Encoder, delimiter, owner, page_size, run};
use crate::error::ResultExt;
use crate::time::timestamp;

pub(super) async fn get_bucket_versioning(
    s3: &FerryS3,
    req: S3Request<GetBucketVersioningInput>,
) -> S3Result<S3Response<GetBucketVersioningOutput>> {
    s3.meta.bucket(&req.input.bucket).await.s3()?;
    Ok(S3Response::new(GetBucketVersioningOutput::default()))
}

pub(super) async fn list_object_versions(
    s3: &FerryS3,
    req: S3Request<ListObjectVersionsInput>,
) -> S3Result<S3Response<ListObjectVersionsOutput>> {
    let input = req.input;
    let encoder = Encoder::new(input.encoding_type.as_ref())?;
    let max = page_size(input.max_keys)?;
    let page = run(
        s3,
        &input.bucket,
        ListQuery {
            prefix: input.prefix.clone().unwrap_or_default(),
            delimiter: delimiter(input.delimiter.clone()),
            start_after: input.key_marker.clone().filter(|k| !k.is_empty()),
            max,
        },
    )
    .await?;
    let versions: Vec<ObjectVersion> = page
        .entries
        .into_iter()
        .map(|(key, entry)| ObjectVersion {
            key: Some(encoder.name(key)),
            version_id: Some("null".to_string()),
            is_latest: Some(true),
            e_tag: Some(ETag::Strong(entry.etag)),
            size: i64::try_from(entry.size).ok(),
            last_modified: Some(timestamp(entry.last_modified)),
            owner: Some(owner()),
            storage_class: Some(ObjectVersionStorageClass::from_static(
                ObjectVersionStorageClass::STANDARD,
            )),
            ..ObjectVersion::default()
        })
        .collect();
    let common_prefixes: Vec<CommonPrefix> = page
        .common_prefixes
        .into_iter()
        .map(|p| CommonPrefix {
            prefix: Some(encoder.name(p)),
        })
        .collect();
    let next = page.next_start_after.filter(|_| page.truncated);
    Ok(S3Response::new(ListObjectVersionsOutput {
        name: Some(input.bucket),
        prefix: encoder.opt(input.prefix),
        delimiter: encoder.opt(delimiter(input.delimiter)),
        key_marker: encoder.opt(input.key_marker),
        version_id_marker: input.version_id_marker,
        max_keys: Some(i32::try_from(max).unwrap_or(i32::MAX)),
        is_truncated: Some(page.truncated),
        next_version_id_marker: next.as_ref().map(|_| "null".to_string()),
        next_key_marker: encoder.opt(next),
        versions: Some(versions),
        common_prefixes: Some(common_prefixes),
        encoding_type: input.encoding_type,
        ..ListObjectVersionsOutput::default()
    }))
}
