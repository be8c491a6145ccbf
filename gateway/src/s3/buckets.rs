//! Bucket operations.

use ferry_meta::{BucketInfo, MetaError};
use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result};

use super::{FerryS3, acl};
use crate::error::{IntoS3Error, ResultExt};
use crate::time::timestamp;

fn to_s3(info: BucketInfo) -> Bucket {
    Bucket {
        name: Some(info.name),
        creation_date: Some(timestamp(info.created)),
        ..Bucket::default()
    }
}

pub(super) async fn list(
    s3: &FerryS3,
    req: S3Request<ListBucketsInput>,
) -> S3Result<S3Response<ListBucketsOutput>> {
    let credential = req
        .credentials
        .as_ref()
        .and_then(|c| s3.keyring.get(&c.access_key));
    let prefix = req.input.prefix.clone().unwrap_or_default();
    let buckets: Vec<Bucket> = s3
        .meta
        .list_buckets()
        .await
        .s3()?
        .into_iter()
        // A key limited to some buckets does not learn that others exist.
        .filter(|b| credential.is_some_and(|c| c.allows_bucket(&b.name)))
        .filter(|b| b.name.starts_with(&prefix))
        .map(to_s3)
        .collect();
    Ok(S3Response::new(ListBucketsOutput {
        buckets: Some(buckets),
        owner: Some(crate::s3::list::owner()),
        prefix: req.input.prefix,
        ..ListBucketsOutput::default()
    }))
}

pub(super) async fn create(
    s3: &FerryS3,
    req: S3Request<CreateBucketInput>,
) -> S3Result<S3Response<CreateBucketOutput>> {
    let input = req.input;
    let info = BucketInfo {
        acl: acl::canned(
            input.acl.as_ref().map(BucketCannedACL::as_str),
            &req.headers,
        )?,
        ..BucketInfo::new(&input.bucket)
    };
    match s3.meta.restore_bucket(&info).await {
        Ok(_) => {}
        // S3's legacy answer in us-east-1: creating a bucket you own again
        // succeeds (and changes nothing); other regions refuse it.
        Err(MetaError::BucketExists { .. }) if s3.region == "us-east-1" => {}
        Err(e) => return Err(e.into_s3()),
    }
    Ok(S3Response::new(CreateBucketOutput {
        location: Some(format!("/{}", input.bucket)),
    }))
}

pub(super) async fn head(
    s3: &FerryS3,
    req: S3Request<HeadBucketInput>,
) -> S3Result<S3Response<HeadBucketOutput>> {
    s3.meta.bucket(&req.input.bucket).await.s3()?;
    Ok(S3Response::new(HeadBucketOutput {
        bucket_region: Some(s3.region.clone()),
        ..HeadBucketOutput::default()
    }))
}

pub(super) async fn delete(
    s3: &FerryS3,
    req: S3Request<DeleteBucketInput>,
) -> S3Result<S3Response<DeleteBucketOutput>> {
    s3.meta.delete_bucket(&req.input.bucket).await.s3()?;
    Ok(S3Response::new(DeleteBucketOutput::default()))
}

pub(super) async fn location(
    s3: &FerryS3,
    req: S3Request<GetBucketLocationInput>,
) -> S3Result<S3Response<GetBucketLocationOutput>> {
    s3.meta.bucket(&req.input.bucket).await.s3()?;
    // S3 answers an empty constraint for us-east-1.
    let location_constraint =
        (s3.region != "us-east-1").then(|| BucketLocationConstraint::from(s3.region.clone()));
    Ok(S3Response::new(GetBucketLocationOutput {
        location_constraint,
    }))
}
