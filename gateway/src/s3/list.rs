//! ListObjectsV2 and ListObjects (V1), served from metadata only.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ferry_meta::{Entry, ListPage, ListQuery};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result, s3_error};

use super::FerryS3;
use crate::error::ResultExt;
use crate::time::timestamp;

/// S3 never returns more than this many keys per page.
const MAX_KEYS: i32 = 1000;

/// `encoding-type=url` escapes everything but unreserved characters and '/'.
const URL_ENCODE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b'/');

pub(crate) fn owner() -> Owner {
    Owner {
        display_name: Some("ferry".to_string()),
        id: Some("ferry".to_string()),
    }
}

/// A requested page size, capped at S3's 1,000 (also for parts and uploads).
pub(super) fn page_size(max_keys: Option<i32>) -> S3Result<usize> {
    match max_keys {
        None => Ok(MAX_KEYS as usize),
        Some(n) if n < 0 => Err(s3_error!(InvalidArgument, "max-keys must not be negative")),
        Some(n) => Ok(usize::try_from(n.min(MAX_KEYS)).unwrap_or(0)),
    }
}

/// Applies `encoding-type` to a name that goes back to the client: every
/// listing (objects V1 and V2, versions, uploads) encodes the keys and the
/// echoed prefix, delimiter and markers the same way, so a client that
/// asked for `url` can decode all of them (boto3 decodes with
/// `unquote_plus`, so a literal `+` must travel as `%2B`).
pub(super) struct Encoder {
    url: bool,
}

impl Encoder {
    pub(super) fn new(encoding: Option<&EncodingType>) -> S3Result<Encoder> {
        match encoding.map(EncodingType::as_str) {
            None => Ok(Encoder { url: false }),
            Some(EncodingType::URL) => Ok(Encoder { url: true }),
            Some(other) => Err(s3_error!(
                InvalidArgument,
                "Invalid Encoding Method specified in Request: {other}"
            )),
        }
    }

    pub(super) fn name(&self, value: String) -> String {
        if self.url {
            utf8_percent_encode(&value, URL_ENCODE).to_string()
        } else {
            value
        }
    }

    pub(super) fn opt(&self, value: Option<String>) -> Option<String> {
        value.map(|v| self.name(v))
    }
}

fn object(encoder: &Encoder, key: String, entry: Entry, with_owner: bool) -> Object {
    Object {
        key: Some(encoder.name(key)),
        size: i64::try_from(entry.size).ok(),
        e_tag: Some(ETag::Strong(entry.etag)),
        last_modified: Some(timestamp(entry.last_modified)),
        storage_class: Some(ObjectStorageClass::from_static(
            ObjectStorageClass::STANDARD,
        )),
        owner: with_owner.then(owner),
        ..Object::default()
    }
}

fn prefixes(encoder: &Encoder, page: &mut ListPage) -> Vec<CommonPrefix> {
    std::mem::take(&mut page.common_prefixes)
        .into_iter()
        .map(|p| CommonPrefix {
            prefix: Some(encoder.name(p)),
        })
        .collect()
}

/// Runs one listing; `max == 0` answers an empty, complete page as S3 does.
pub(super) async fn run(s3: &FerryS3, bucket: &str, query: ListQuery) -> S3Result<ListPage> {
    if query.max == 0 {
        s3.meta.bucket(bucket).await.s3()?;
        return Ok(ListPage::default());
    }
    s3.meta.list(bucket, &query).await.s3()
}

/// One page, in the shape both ListObjects versions answer with.
struct Listing {
    contents: Vec<Object>,
    common_prefixes: Vec<CommonPrefix>,
    truncated: bool,
    next_start_after: Option<String>,
}

async fn listing(
    s3: &FerryS3,
    bucket: &str,
    query: ListQuery,
    encoder: &Encoder,
    with_owner: bool,
) -> S3Result<Listing> {
    let mut page = run(s3, bucket, query).await?;
    let common_prefixes = prefixes(encoder, &mut page);
    let contents = page
        .entries
        .into_iter()
        .map(|(key, entry)| object(encoder, key, entry, with_owner))
        .collect();
    Ok(Listing {
        contents,
        common_prefixes,
        truncated: page.truncated,
        next_start_after: page.next_start_after,
    })
}

fn decode_token(token: &str) -> S3Result<String> {
    URL_SAFE_NO_PAD
        .decode(token)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .ok_or_else(|| {
            s3_error!(
                InvalidArgument,
                "The continuation token provided is incorrect"
            )
        })
}

fn encode_token(start_after: &str) -> String {
    URL_SAFE_NO_PAD.encode(start_after)
}

/// An empty delimiter is no delimiter: not applied, and not echoed back
/// (S3 omits the element).
pub(super) fn delimiter(value: Option<String>) -> Option<String> {
    value.filter(|d| !d.is_empty())
}

pub(super) async fn list_objects_v2(
    s3: &FerryS3,
    req: S3Request<ListObjectsV2Input>,
) -> S3Result<S3Response<ListObjectsV2Output>> {
    let input = req.input;
    let encoder = Encoder::new(input.encoding_type.as_ref())?;
    let max = page_size(input.max_keys)?;
    let start_after = match &input.continuation_token {
        Some(token) => Some(decode_token(token)?),
        None => input.start_after.clone(),
    };
    let page = listing(
        s3,
        &input.bucket,
        ListQuery {
            prefix: input.prefix.clone().unwrap_or_default(),
            delimiter: delimiter(input.delimiter.clone()),
            start_after,
            max,
        },
        &encoder,
        input.fetch_owner.unwrap_or(false),
    )
    .await?;
    let key_count = page.contents.len() + page.common_prefixes.len();
    Ok(S3Response::new(ListObjectsV2Output {
        name: Some(input.bucket),
        prefix: Some(encoder.name(input.prefix.unwrap_or_default())),
        delimiter: encoder.opt(delimiter(input.delimiter)),
        start_after: encoder.opt(input.start_after),
        max_keys: Some(i32::try_from(max).unwrap_or(MAX_KEYS)),
        key_count: Some(i32::try_from(key_count).unwrap_or(i32::MAX)),
        is_truncated: Some(page.truncated),
        continuation_token: input.continuation_token,
        next_continuation_token: page.next_start_after.as_deref().map(encode_token),
        contents: Some(page.contents),
        common_prefixes: Some(page.common_prefixes),
        encoding_type: input.encoding_type,
        ..ListObjectsV2Output::default()
    }))
}

pub(super) async fn list_objects(
    s3: &FerryS3,
    req: S3Request<ListObjectsInput>,
) -> S3Result<S3Response<ListObjectsOutput>> {
    let input = req.input;
    let encoder = Encoder::new(input.encoding_type.as_ref())?;
    let max = page_size(input.max_keys)?;
    let page = listing(
        s3,
        &input.bucket,
        ListQuery {
            prefix: input.prefix.clone().unwrap_or_default(),
            delimiter: delimiter(input.delimiter.clone()),
            start_after: input.marker.clone().filter(|m| !m.is_empty()),
            max,
        },
        &encoder,
        true,
    )
    .await?;
    Ok(S3Response::new(ListObjectsOutput {
        name: Some(input.bucket),
        prefix: Some(encoder.name(input.prefix.unwrap_or_default())),
        delimiter: encoder.opt(delimiter(input.delimiter)),
        marker: Some(encoder.name(input.marker.unwrap_or_default())),
        max_keys: Some(i32::try_from(max).unwrap_or(MAX_KEYS)),
        is_truncated: Some(page.truncated),
        // S3 sends NextMarker only with a delimiter; sending it always is
        // allowed and saves clients from guessing.
        next_marker: encoder.opt(page.next_start_after),
        contents: Some(page.contents),
        common_prefixes: Some(page.common_prefixes),
        encoding_type: input.encoding_type,
        ..ListObjectsOutput::default()
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_encoding_keeps_slashes_and_unreserved() {
        let encoder = Encoder { url: true };
        assert_eq!(
            encoder.name("a b/c+d%e\u{e9}~".into()),
            "a%20b/c%2Bd%25e%C3%A9~"
        );
    }

    #[test]
    fn tokens_round_trip_and_garbage_is_refused() {
        let token = encode_token("dir/\u{65e5}\u{672c}");
        assert_eq!(
            decode_token(&token).ok().as_deref(),
            Some("dir/\u{65e5}\u{672c}")
        );
        assert!(decode_token("!!!").is_err());
    }

    #[test]
    fn max_keys_is_capped_and_checked() {
        assert_eq!(page_size(None).ok(), Some(1000));
        assert_eq!(page_size(Some(5000)).ok(), Some(1000));
        assert_eq!(page_size(Some(0)).ok(), Some(0));
        assert!(page_size(Some(-1)).is_err());
    }
}
