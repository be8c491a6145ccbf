pub type Result<T, E = MetaError> = std::result::Result<T, E>;

/// What a metadata operation can fail with. The variants carry meaning the
/// gateway maps to S3 codes; engine-specific failures arrive as
/// `Unavailable` (retry later) or `Internal` (a bug or corruption).
#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    #[error("bucket {bucket:?} does not exist")]
    NoSuchBucket { bucket: String },
    #[error("bucket {bucket:?} already exists")]
    BucketExists { bucket: String },
    #[error("bucket {bucket:?} is not empty")]
    BucketNotEmpty { bucket: String },
    #[error("key {key:?} does not exist in bucket {bucket:?}")]
    NoSuchKey { bucket: String, key: String },
    /// The multipart upload does not exist (never did, completed or aborted).
    #[error("no upload {upload_id:?} for {bucket:?}/{key:?}")]
    NoSuchUpload {
        bucket: String,
        key: String,
        upload_id: String,
    },
    /// A conditional put whose condition did not hold.
    #[error("precondition failed for {bucket:?}/{key:?}")]
    PreconditionFailed { bucket: String, key: String },
    /// The engine cannot be reached now (connection lost, timeout); the same
    /// request may succeed later. Nothing was changed.
    #[error("metadata engine unavailable: {0}")]
    Unavailable(String),
    /// A stored record could not be decoded, or the engine failed in a way a
    /// retry will not fix.
    #[error("metadata engine error: {0}")]
    Internal(String),
}

impl MetaError {
    pub(crate) fn internal(e: impl std::fmt::Display) -> Self {
        MetaError::Internal(e.to_string())
    }
}
