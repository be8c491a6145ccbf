//! S3's limits on parts and objects, and Ferry's on layouts, in one place.
//!
//! Copies share segments instead of bytes, so without limits a key with
//! write access could grow one object's layout (and its logical size)
//! without bound from a few megabytes of data: UploadPartCopy of a
//! many-part object, repeated, completed, copied again. These checks keep
//! every layout, and every upload in progress, to what a multipart upload
//! of plain parts can produce: 10,000 parts of at most 5 GiB each, one
//! segment per part.

use s3s::{S3Result, s3_error};

/// Part numbers run from 1 to this (S3's limit).
pub(super) const MAX_PART_NUMBER: i32 = 10_000;
/// Every part of a completed upload but the last is at least this big (S3).
pub(super) const MIN_PART_SIZE: u64 = 5 << 20;
/// UploadPart bodies and UploadPartCopy ranges are at most this big (S3).
pub(super) const MAX_PART_SIZE: u64 = 5 << 30;
/// An object is at most this big, however it was made (S3's 5 TiB).
pub(super) const MAX_OBJECT_SIZE: u64 = 5 << 40;
/// A layout holds at most this many segments, and so do an upload's parts
/// together: one segment for each of S3's 10,000 parts. A copy keeps its
/// source's segments, so a copied range counts every segment it spans.
pub(super) const MAX_SEGMENTS: usize = 10_000;

/// An UploadPartCopy range of `size` bytes.
pub(super) fn check_part_size(size: u64) -> S3Result<()> {
    if size > MAX_PART_SIZE {
        return Err(s3_error!(
            EntityTooLarge,
            "The copied range is {size} bytes; a part is at most {MAX_PART_SIZE} bytes (5 GiB). \
             Copy a smaller x-amz-copy-source-range"
        ));
    }
    Ok(())
}

/// A part of `adding` segments joining parts that hold `held` segments
/// together (the part it replaces, if any, not counted).
pub(super) fn check_upload_segments(held: usize, adding: usize) -> S3Result<()> {
    let total = held.saturating_add(adding);
    if total > MAX_SEGMENTS {
        return Err(s3_error!(
            InvalidRequest,
            "This part spans {adding} segments of its source and the upload's other parts \
             {held}; an upload's parts may span at most {MAX_SEGMENTS} together. \
             Copy fewer or larger ranges, or upload the bytes"
        ));
    }
    Ok(())
}

/// An object of `size` bytes whose layout has `segments` segments, as
/// CompleteMultipartUpload or CopyObject would commit it.
pub(super) fn check_object(size: u64, segments: usize) -> S3Result<()> {
    if size > MAX_OBJECT_SIZE {
        return Err(s3_error!(
            EntityTooLarge,
            "The object would be {size} bytes; an object is at most {MAX_OBJECT_SIZE} bytes (5 TiB)"
        ));
    }
    if segments > MAX_SEGMENTS {
        return Err(s3_error!(
            InvalidRequest,
            "The object would span {segments} segments of other objects' data; \
             an object may span at most {MAX_SEGMENTS}"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(result: S3Result<()>) -> Option<String> {
        result.err().map(|e| e.code().as_str().to_string())
    }

    #[test]
    fn a_part_copy_is_at_most_five_gib() {
        assert_eq!(code(check_part_size(MAX_PART_SIZE)), None);
        assert_eq!(
            code(check_part_size(MAX_PART_SIZE + 1)).as_deref(),
            Some("EntityTooLarge")
        );
    }

    #[test]
    fn an_upload_spans_at_most_ten_thousand_segments() {
        assert_eq!(code(check_upload_segments(9_999, 1)), None);
        assert_eq!(
            code(check_upload_segments(9_999, 2)).as_deref(),
            Some("InvalidRequest")
        );
        assert_eq!(
            code(check_upload_segments(0, usize::MAX)).as_deref(),
            Some("InvalidRequest")
        );
    }

    #[test]
    fn an_object_is_at_most_five_tib_and_ten_thousand_segments() {
        assert_eq!(code(check_object(MAX_OBJECT_SIZE, MAX_SEGMENTS)), None);
        assert_eq!(
            code(check_object(MAX_OBJECT_SIZE + 1, 1)).as_deref(),
            Some("EntityTooLarge")
        );
        assert_eq!(
            code(check_object(1, MAX_SEGMENTS + 1)).as_deref(),
            Some("InvalidRequest")
        );
    }
}
