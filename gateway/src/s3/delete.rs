//! DeleteObject and DeleteObjects. Deleting an absent key succeeds, as in S3.

use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result, s3_error};

use super::FerryS3;
use super::names::check_key;
use crate::error::{IntoS3Error, ResultExt};

/// S3's limit on keys per DeleteObjects request.
const MAX_KEYS_PER_DELETE: usize = 1000;

pub(super) async fn delete_object(
    s3: &FerryS3,
    req: S3Request<DeleteObjectInput>,
) -> S3Result<S3Response<DeleteObjectOutput>> {
    check_key(&req.input.key)?;
    s3.meta
        .delete(&req.input.bucket, &req.input.key)
        .await
        .s3()?;
    Ok(S3Response::new(DeleteObjectOutput::default()))
}

pub(super) async fn delete_objects(
    s3: &FerryS3,
    req: S3Request<DeleteObjectsInput>,
) -> S3Result<S3Response<DeleteObjectsOutput>> {
    let input = req.input;
    if input.delete.objects.len() > MAX_KEYS_PER_DELETE {
        return Err(s3_error!(
            MalformedXML,
            "A DeleteObjects request may name at most {MAX_KEYS_PER_DELETE} keys"
        ));
    }
    s3.meta.bucket(&input.bucket).await.s3()?;
    let quiet = input.delete.quiet.unwrap_or(false);
    let mut deleted = Vec::new();
    let mut errors = Vec::new();
    for object in input.delete.objects {
        let outcome = match check_key(&object.key) {
            Ok(()) => s3
                .meta
                .delete(&input.bucket, &object.key)
                .await
                .map_err(IntoS3Error::into_s3),
            Err(e) => Err(e),
        };
        match outcome {
            Ok(_) => {
                if !quiet {
                    deleted.push(DeletedObject {
                        key: Some(object.key),
                        version_id: object.version_id,
                        ..DeletedObject::default()
                    });
                }
            }
            Err(e) => errors.push(Error {
                code: Some(e.code().as_str().to_string()),
                key: Some(object.key),
                message: e.message().map(str::to_string),
                version_id: object.version_id,
            }),
        }
    }
    Ok(S3Response::new(DeleteObjectsOutput {
        deleted: Some(deleted),
        errors: (!errors.is_empty()).then_some(errors),
        ..DeleteObjectsOutput::default()
    }))
}
