//! The one place where internal errors become S3 errors.
//!
//! Every variant of the lower crates' error types is matched here, so a new
//! variant cannot slip through unmapped. Whatever maps to `InternalError`
//! or `ServiceUnavailable` is logged with its cause; the client sees only
//! a generic message.

use ferry_cache::CacheError;
use ferry_meta::MetaError;
use s3s::{S3Error, S3ErrorCode};

/// Conversion into the S3 error a client sees.
pub(crate) trait IntoS3Error {
    fn into_s3(self) -> S3Error;
}

impl IntoS3Error for MetaError {
    fn into_s3(self) -> S3Error {
        match self {
            MetaError::NoSuchBucket { bucket } => S3Error::with_message(
                S3ErrorCode::NoSuchBucket,
                format!("The bucket {bucket} does not exist"),
            ),
            MetaError::BucketExists { bucket } => S3Error::with_message(
                S3ErrorCode::BucketAlreadyOwnedByYou,
                format!("The bucket {bucket} already exists and is yours"),
            ),
            MetaError::BucketNotEmpty { bucket } => S3Error::with_message(
                S3ErrorCode::BucketNotEmpty,
                format!("The bucket {bucket} is not empty"),
            ),
            MetaError::NoSuchKey { .. } => {
                S3Error::with_message(S3ErrorCode::NoSuchKey, "The specified key does not exist.")
            }
            MetaError::NoSuchUpload { .. } => S3Error::with_message(
                S3ErrorCode::NoSuchUpload,
                "The specified multipart upload does not exist. The upload ID may be invalid, or the upload may have been aborted or completed.",
            ),
            MetaError::PreconditionFailed { .. } => S3Error::with_message(
                S3ErrorCode::PreconditionFailed,
                "At least one of the pre-conditions you specified did not hold",
            ),
            MetaError::Unavailable(cause) => {
                tracing::warn!(%cause, "metadata engine unavailable");
                S3Error::with_message(
                    S3ErrorCode::ServiceUnavailable,
                    "The metadata service is unavailable; retry the request",
                )
            }
            MetaError::Internal(cause) => internal(cause),
        }
    }
}

impl IntoS3Error for CacheError {
    fn into_s3(self) -> S3Error {
        match self {
            CacheError::Meta(e) => e.into_s3(),
            CacheError::Range { .. } => S3Error::with_message(
                S3ErrorCode::InvalidRange,
                "The requested range is not satisfiable",
            ),
            CacheError::Changed { store, blob } => {
                tracing::warn!(%store, %blob, "an imported object changed at its source");
                let mut error = S3Error::with_message(
                    S3ErrorCode::Custom("ObjectChangedAtSource".into()),
                    "The object changed in its source bucket since it was imported; import it again",
                );
                error.set_status_code(http::StatusCode::CONFLICT);
                error
            }
            CacheError::Body(cause) => S3Error::with_message(
                S3ErrorCode::IncompleteBody,
                format!("The request body could not be read: {cause}"),
            ),
            CacheError::Store { store, source } => {
                tracing::warn!(%store, error = %source, "data store request failed");
                S3Error::with_message(
                    S3ErrorCode::ServiceUnavailable,
                    "The data store is unavailable; retry the request",
                )
            }
            CacheError::Busy { waited } => {
                tracing::warn!(?waited, "a read waited for the in-flight budget in vain");
                S3Error::with_message(
                    S3ErrorCode::SlowDown,
                    "This node is busy serving other reads; retry the request",
                )
            }
            // Only ever ends a body the client stopped reading: it aborts
            // the connection and reaches no one.
            CacheError::ClientStalled { .. } => S3Error::with_message(
                S3ErrorCode::RequestTimeout,
                "The client read nothing for too long",
            ),
            e @ (CacheError::UnknownStore(_)
            | CacheError::Feed(_)
            | CacheError::Cluster(_)
            | CacheError::Unsupported(_)
            | CacheError::StoreConfig { .. }
            | CacheError::MissingBlob { .. }
            | CacheError::Tier(_)) => internal(e),
        }
    }
}

/// An error the client cannot act on: logged in full, answered generically.
/// A `partNumber` beyond the object's parts. s3s has no code for it; S3
/// answers 416 with this code.
pub(crate) fn invalid_part_number() -> S3Error {
    let mut error = S3Error::with_message(
        S3ErrorCode::Custom("InvalidPartNumber".into()),
        "The requested partnumber is not satisfiable",
    );
    error.set_status_code(http::StatusCode::RANGE_NOT_SATISFIABLE);
    error
}

/// A write to a mirror region: its namespace follows the source's log,
/// so writes go to the source.
pub(crate) fn read_only_mirror(region: &str, source: &str) -> S3Error {
    S3Error::with_message(
        S3ErrorCode::MethodNotAllowed,
        format!(
            "This region ({region}) is a read-only mirror of the source region {source}; send writes there"
        ),
    )
}

pub(crate) fn internal(cause: impl std::fmt::Display) -> S3Error {
    tracing::error!(%cause, "internal error");
    S3Error::with_message(
        S3ErrorCode::InternalError,
        "We encountered an internal error. Please try again.",
    )
}

/// `result.s3()?` in handlers.
pub(crate) trait ResultExt<T> {
    fn s3(self) -> Result<T, S3Error>;
}

impl<T, E: IntoS3Error> ResultExt<T> for Result<T, E> {
    fn s3(self) -> Result<T, S3Error> {
        self.map_err(IntoS3Error::into_s3)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_errors_map_to_their_s3_codes() {
        let cases = [
            (
                MetaError::NoSuchBucket { bucket: "b".into() },
                S3ErrorCode::NoSuchBucket,
            ),
            (
                MetaError::BucketExists { bucket: "b".into() },
                S3ErrorCode::BucketAlreadyOwnedByYou,
            ),
            (
                MetaError::BucketNotEmpty { bucket: "b".into() },
                S3ErrorCode::BucketNotEmpty,
            ),
            (
                MetaError::NoSuchKey {
                    bucket: "b".into(),
                    key: "k".into(),
                },
                S3ErrorCode::NoSuchKey,
            ),
            (
                MetaError::PreconditionFailed {
                    bucket: "b".into(),
                    key: "k".into(),
                },
                S3ErrorCode::PreconditionFailed,
            ),
            (
                MetaError::Unavailable("down".into()),
                S3ErrorCode::ServiceUnavailable,
            ),
            (
                MetaError::Internal("corrupt".into()),
                S3ErrorCode::InternalError,
            ),
        ];
        for (error, code) in cases {
            assert_eq!(error.into_s3().code(), &code);
        }
    }

    #[test]
    fn internal_detail_never_reaches_the_client() {
        let err =
            MetaError::Internal("redb: page 7 checksum mismatch at /secret/path".into()).into_s3();
        assert!(!err.message().unwrap_or_default().contains("/secret/path"));
        let err = CacheError::MissingBlob {
            store: "data".into(),
            blob: "blobs/aa/bb/x".into(),
        }
        .into_s3();
        assert_eq!(err.code(), &S3ErrorCode::InternalError);
        assert!(!err.message().unwrap_or_default().contains("blobs/"));
    }

    #[test]
    fn a_read_that_waited_in_vain_for_the_budget_is_slow_down() {
        let err = CacheError::Busy {
            waited: std::time::Duration::from_secs(10),
        }
        .into_s3();
        assert_eq!(err.code(), &S3ErrorCode::SlowDown);
        assert_eq!(
            err.status_code(),
            Some(http::StatusCode::SERVICE_UNAVAILABLE)
        );
    }
}
