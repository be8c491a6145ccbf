//! The S3 surface: one struct implementing `s3s::S3`. Each operation's
//! logic lives in the module for its resource; this file only routes.

mod acl;
mod buckets;
mod checksums;
mod conditions;
mod copy;
mod delete;
mod get;
mod ingest;
mod limits;
mod list;
mod multipart;
mod names;
mod put;
mod versions;

use std::sync::Arc;

use ferry_cache::{BlockCache, Layouts, Stores};
use ferry_meta::Meta;
use s3s::dto::*;
use s3s::{S3, S3Request, S3Response, S3Result};

use crate::auth::Keyring;
use crate::node::{Node, StartError};

/// Ferry's S3 service state. Cheap to clone.
#[derive(Clone)]
pub struct FerryS3 {
    pub(crate) meta: Arc<dyn Meta>,
    pub(crate) stores: Stores,
    /// Logical store new blobs are written to.
    pub(crate) data_store: String,
    pub(crate) keyring: Keyring,
    pub(crate) region: String,
    pub(crate) max_put_size: u64,
    /// The block cache every read goes through (one that keeps nothing
    /// when the cache is off).
    pub(crate) cache: Arc<BlockCache>,
    /// Decoded layouts of recently read entries.
    pub(crate) layouts: Layouts,
    /// How long a completed multipart upload is remembered, so a retried
    /// Complete gets the first answer (the upload expiry).
    pub(crate) completion_ttl: std::time::Duration,
    /// Warms objects whose keys match `[cache] warm_on_open` on their
    /// first read.
    pub(crate) warm_on_open: Option<Arc<ferry_cache::cluster::WarmOnOpen>>,
    /// Imported entries found changed at their source.
    pub(crate) stale: ferry_cache::region::StaleEntries,
}

impl FerryS3 {
    /// The S3 surface of `node`.
    pub fn new(node: &Node) -> Result<FerryS3, StartError> {
        let cluster = node.cluster.as_ref();
        Ok(FerryS3 {
            meta: node.meta.clone(),
            stores: node.stores.clone(),
            data_store: node.config.data_store.clone(),
            keyring: node.keyring.clone(),
            region: node.config.server.region.clone(),
            max_put_size: node.config.server.max_put_size,
            cache: node.cache.clone(),
            layouts: Layouts::default(),
            completion_ttl: node.config.volume.upload_expiry,
            stale: Default::default(),
            // Nothing to warm into a cache that keeps nothing.
            warm_on_open: if node.cache.keeps_blocks() {
                ferry_cache::cluster::WarmOnOpen::new(
                    &node.config.cache.warm_on_open,
                    node.cache.clone(),
                    cluster.map(|c| c.node.clone()),
                    cluster.and_then(|c| c.redis().cloned()),
                )?
            } else {
                None
            },
        })
    }
}

#[async_trait::async_trait]
impl S3 for FerryS3 {
    async fn list_buckets(
        &self,
        req: S3Request<ListBucketsInput>,
    ) -> S3Result<S3Response<ListBucketsOutput>> {
        buckets::list(self, req).await
    }

    async fn create_bucket(
        &self,
        req: S3Request<CreateBucketInput>,
    ) -> S3Result<S3Response<CreateBucketOutput>> {
        buckets::create(self, req).await
    }

    async fn head_bucket(
        &self,
        req: S3Request<HeadBucketInput>,
    ) -> S3Result<S3Response<HeadBucketOutput>> {
        buckets::head(self, req).await
    }

    async fn delete_bucket(
        &self,
        req: S3Request<DeleteBucketInput>,
    ) -> S3Result<S3Response<DeleteBucketOutput>> {
        buckets::delete(self, req).await
    }

    async fn get_bucket_location(
        &self,
        req: S3Request<GetBucketLocationInput>,
    ) -> S3Result<S3Response<GetBucketLocationOutput>> {
        buckets::location(self, req).await
    }

    async fn put_object(
        &self,
        req: S3Request<PutObjectInput>,
    ) -> S3Result<S3Response<PutObjectOutput>> {
        put::put_object(self, req).await
    }

    async fn get_object(
        &self,
        req: S3Request<GetObjectInput>,
    ) -> S3Result<S3Response<GetObjectOutput>> {
        get::get_object(self, req).await
    }

    async fn head_object(
        &self,
        req: S3Request<HeadObjectInput>,
    ) -> S3Result<S3Response<HeadObjectOutput>> {
        get::head_object(self, req).await
    }

    async fn delete_object(
        &self,
        req: S3Request<DeleteObjectInput>,
    ) -> S3Result<S3Response<DeleteObjectOutput>> {
        delete::delete_object(self, req).await
    }

    async fn delete_objects(
        &self,
        req: S3Request<DeleteObjectsInput>,
    ) -> S3Result<S3Response<DeleteObjectsOutput>> {
        delete::delete_objects(self, req).await
    }

    async fn list_objects_v2(
        &self,
        req: S3Request<ListObjectsV2Input>,
    ) -> S3Result<S3Response<ListObjectsV2Output>> {
        list::list_objects_v2(self, req).await
    }

    async fn list_objects(
        &self,
        req: S3Request<ListObjectsInput>,
    ) -> S3Result<S3Response<ListObjectsOutput>> {
        list::list_objects(self, req).await
    }

    async fn copy_object(
        &self,
        req: S3Request<CopyObjectInput>,
    ) -> S3Result<S3Response<CopyObjectOutput>> {
        copy::copy_object(self, req).await
    }

    async fn create_multipart_upload(
        &self,
        req: S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
        multipart::create(self, req).await
    }

    async fn upload_part(
        &self,
        req: S3Request<UploadPartInput>,
    ) -> S3Result<S3Response<UploadPartOutput>> {
        multipart::upload_part(self, req).await
    }

    async fn upload_part_copy(
        &self,
        req: S3Request<UploadPartCopyInput>,
    ) -> S3Result<S3Response<UploadPartCopyOutput>> {
        multipart::upload_part_copy(self, req).await
    }

    async fn complete_multipart_upload(
        &self,
        req: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        multipart::complete(self, req).await
    }

    async fn abort_multipart_upload(
        &self,
        req: S3Request<AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
        multipart::abort(self, req).await
    }

    async fn list_parts(
        &self,
        req: S3Request<ListPartsInput>,
    ) -> S3Result<S3Response<ListPartsOutput>> {
        multipart::list_parts(self, req).await
    }

    async fn list_multipart_uploads(
        &self,
        req: S3Request<ListMultipartUploadsInput>,
    ) -> S3Result<S3Response<ListMultipartUploadsOutput>> {
        multipart::list_uploads(self, req).await
    }

    async fn get_bucket_acl(
        &self,
        req: S3Request<GetBucketAclInput>,
    ) -> S3Result<S3Response<GetBucketAclOutput>> {
        acl::get_bucket_acl(self, req).await
    }

    async fn put_bucket_acl(
        &self,
        req: S3Request<PutBucketAclInput>,
    ) -> S3Result<S3Response<PutBucketAclOutput>> {
        acl::put_bucket_acl(self, req).await
    }

    async fn get_object_acl(
        &self,
        req: S3Request<GetObjectAclInput>,
    ) -> S3Result<S3Response<GetObjectAclOutput>> {
        acl::get_object_acl(self, req).await
    }

    async fn put_object_acl(
        &self,
        req: S3Request<PutObjectAclInput>,
    ) -> S3Result<S3Response<PutObjectAclOutput>> {
        acl::put_object_acl(self, req).await
    }

    async fn get_bucket_versioning(
        &self,
        req: S3Request<GetBucketVersioningInput>,
    ) -> S3Result<S3Response<GetBucketVersioningOutput>> {
        versions::get_bucket_versioning(self, req).await
    }

    async fn list_object_versions(
        &self,
        req: S3Request<ListObjectVersionsInput>,
    ) -> S3Result<S3Response<ListObjectVersionsOutput>> {
        versions::list_object_versions(self, req).await
    }
}
