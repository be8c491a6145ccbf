//! CopyObject as a metadata operation: the destination shares the source's
//! segments (its blobs gain a reference), whatever the object's size.

use ferry_meta::{Entry, Layout, Precondition, now_millis};
use s3s::auth::Credentials;
use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result, s3_error};

use super::conditions::ReadConditions;
use super::names::check_key;
use super::put::{check_user_metadata, object_attributes};
use super::{FerryS3, acl};
use crate::error::ResultExt;
use crate::time::timestamp;

/// x-amz-copy-source-if-* headers.
pub(super) struct SourceConditions<'a> {
    pub if_match: Option<&'a ETagCondition>,
    pub if_none_match: Option<&'a ETagCondition>,
    pub if_modified_since: Option<&'a Timestamp>,
    pub if_unmodified_since: Option<&'a Timestamp>,
}

/// Looks up a copy source the caller may read, and checks its conditions.
/// Every failed copy-source condition is 412, as in S3.
pub(super) async fn resolve_source(
    s3: &FerryS3,
    credentials: Option<&Credentials>,
    source: &CopySource,
    conditions: SourceConditions<'_>,
) -> S3Result<(Entry, Layout)> {
    let (bucket, key, version) = match source {
        CopySource::Bucket {
            bucket,
            key,
            version_id,
        } => (bucket, key, version_id),
        _ => {
            return Err(s3_error!(
                NotImplemented,
                "Only bucket/key copy sources are supported"
            ));
        }
    };
    if let Some(version) = version
        && version.as_ref() != "null"
    {
        return Err(s3_error!(
            NoSuchVersion,
            "Ferry keeps one version of each object, named null"
        ));
    }
    check_key(key)?;
    // The access check saw only the destination bucket.
    let allowed = credentials
        .and_then(|c| s3.keyring.get(&c.access_key))
        .is_some_and(|c| c.allows_bucket(bucket));
    if !allowed {
        return Err(s3_error!(
            AccessDenied,
            "This key may not read bucket {bucket}"
        ));
    }
    let (entry, layout) = s3.meta.get(bucket, key).await.s3()?;
    ReadConditions {
        if_match: conditions.if_match,
        if_none_match: conditions.if_none_match,
        if_modified_since: conditions.if_modified_since,
        if_unmodified_since: conditions.if_unmodified_since,
    }
    .check(&entry)
    .map_err(|e| {
        if *e.code() == s3s::S3ErrorCode::NotModified {
            s3_error!(
                PreconditionFailed,
                "At least one of the pre-conditions you specified did not hold"
            )
        } else {
            e
        }
    })?;
    Ok((entry, layout))
}

fn replaces_metadata(directive: Option<&MetadataDirective>) -> S3Result<bool> {
    match directive.map(MetadataDirective::as_str) {
        None | Some(MetadataDirective::COPY) => Ok(false),
        Some(MetadataDirective::REPLACE) => Ok(true),
        Some(other) => Err(s3_error!(
            InvalidArgument,
            "Unknown metadata directive {other}"
        )),
    }
}

pub(super) async fn copy_object(
    s3: &FerryS3,
    req: S3Request<CopyObjectInput>,
) -> S3Result<S3Response<CopyObjectOutput>> {
    let credentials = req.credentials;
    let input = req.input;
    check_key(&input.key)?;
    // A copy never keeps the source's ACL: it gets the request's, as in S3.
    let acl = acl::canned(
        input.acl.as_ref().map(ObjectCannedACL::as_str),
        &req.headers,
    )?;
    let replace = replaces_metadata(input.metadata_directive.as_ref())?;
    if replace {
        check_user_metadata(input.metadata.as_ref())?;
    }
    s3.meta.bucket(&input.bucket).await.s3()?;
    let (source, layout) = resolve_source(
        s3,
        credentials.as_ref(),
        &input.copy_source,
        SourceConditions {
            if_match: input.copy_source_if_match.as_ref(),
            if_none_match: input.copy_source_if_none_match.as_ref(),
            if_modified_since: input.copy_source_if_modified_since.as_ref(),
            if_unmodified_since: input.copy_source_if_unmodified_since.as_ref(),
        },
    )
    .await?;
    // The copy shares the source's segments: an object made before the
    // limits (or imported) may not pass them on.
    super::limits::check_object(source.size, layout.segments.len())?;
    if let CopySource::Bucket { bucket, key, .. } = &input.copy_source
        && bucket.as_ref() == input.bucket
        && key.as_ref() == input.key
        && !replace
    {
        return Err(s3_error!(
            InvalidRequest,
            "This copy request is illegal because it is trying to copy an object to itself without changing the object's metadata, storage class, website redirect location or encryption attributes."
        ));
    }
    let mut entry = Entry {
        id: uuid::Uuid::now_v7().to_string(),
        last_modified: now_millis(),
        ..source
    };
    if replace {
        entry = Entry {
            id: entry.id,
            size: entry.size,
            etag: entry.etag,
            last_modified: entry.last_modified,
            checksums: entry.checksums,
            // The copy keeps the source's ETag, so it keeps its parts too.
            parts: entry.parts,
            ..object_attributes!(input)
        };
    }
    entry.acl = acl;
    let etag = entry.etag.clone();
    let last_modified = entry.last_modified;
    s3.meta
        .put(&input.bucket, &input.key, entry, layout, Precondition::None)
        .await
        .s3()?;
    Ok(S3Response::new(CopyObjectOutput {
        copy_object_result: Some(CopyObjectResult {
            e_tag: Some(ETag::Strong(etag)),
            last_modified: Some(timestamp(last_modified)),
            ..CopyObjectResult::default()
        }),
        ..CopyObjectOutput::default()
    }))
}
