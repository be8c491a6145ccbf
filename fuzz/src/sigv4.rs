//! The client's half of SigV4 for the fuzz targets: enough to sign the
//! requests they build (header or presigned query, unsigned payload), so
//! that fuzzed requests get past authentication to what lies behind it.

use hmac::{Hmac, KeyInit, Mac};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use time::macros::format_description;

pub const REGION: &str = "us-east-1";
pub const UNSIGNED: &str = "UNSIGNED-PAYLOAD";

/// What SigV4 leaves unencoded in a query name or value: the unreserved
/// characters.
const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// What SigV4 leaves unencoded in a path: the unreserved characters and
/// `/`, which SDKs never escape in a key.
const PATH_UNRESERVED: &AsciiSet = &UNRESERVED.remove(b'/');

pub fn encode(text: &str) -> String {
    utf8_percent_encode(text, UNRESERVED).to_string()
}

/// A path of `segments` (a bucket, a key), encoded as SDKs send it.
pub fn path(segments: &[&str]) -> String {
    let mut out = String::new();
    for segment in segments {
        out.push('/');
        out.push_str(&utf8_percent_encode(segment, PATH_UNRESERVED).to_string());
    }
    if out.is_empty() {
        out.push('/');
    }
    out
}

/// `pairs` encoded and sorted: the query as sent is already canonical.
pub fn query(pairs: &[(String, String)]) -> String {
    let mut encoded: Vec<(String, String)> = pairs
        .iter()
        .map(|(name, value)| (encode(name), encode(value)))
        .collect();
    encoded.sort();
    encoded
        .iter()
        .map(|(name, value)| format!("{name}={value}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// A header value as SigV4 signs it: trimmed, inner runs of spaces and
/// tabs made one space.
fn canonical_value(value: &str) -> String {
    value
        .split([' ', '\t'])
        .filter(|word| !word.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

fn hmac(key: &[u8], data: &str) -> Vec<u8> {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC takes any key");
    mac.update(data.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

pub struct Key<'a> {
    pub access: &'a str,
    pub secret: &'a str,
}

pub fn amz_date(now: OffsetDateTime) -> String {
    now.format(format_description!(
        "[year][month][day]T[hour][minute][second]Z"
    ))
    .expect("a date formats")
}

fn scope(now: OffsetDateTime) -> String {
    format!("{}/{REGION}/s3/aws4_request", &amz_date(now)[..8])
}

fn signature(key: &Key<'_>, now: OffsetDateTime, canonical_request: &str) -> String {
    let date = amz_date(now);
    let to_sign = format!(
        "AWS4-HMAC-SHA256\n{date}\n{}\n{}",
        scope(now),
        hex::encode(Sha256::digest(canonical_request.as_bytes()))
    );
    let mut signing = hmac(format!("AWS4{}", key.secret).as_bytes(), &date[..8]);
    for part in [REGION, "s3", "aws4_request"] {
        signing = hmac(&signing, part);
    }
    hex::encode(hmac(&signing, &to_sign))
}

/// The headers that sign a request in the Authorization header:
/// `(name, value)` to add, Authorization last.
pub fn header_auth(
    key: &Key<'_>,
    method: &str,
    host: &str,
    path: &str,
    query: &str,
    now: OffsetDateTime,
) -> Vec<(&'static str, String)> {
    let date = amz_date(now);
    let host = canonical_value(host);
    let canonical = format!(
        "{method}\n{path}\n{query}\nhost:{host}\nx-amz-content-sha256:{UNSIGNED}\nx-amz-date:{date}\n\nhost;x-amz-content-sha256;x-amz-date\n{UNSIGNED}"
    );
    let signature = signature(key, now, &canonical);
    vec![
        ("x-amz-content-sha256", UNSIGNED.to_string()),
        ("x-amz-date", date),
        (
            "authorization",
            format!(
                "AWS4-HMAC-SHA256 Credential={}/{},SignedHeaders=host;x-amz-content-sha256;x-amz-date,Signature={signature}",
                key.access,
                scope(now)
            ),
        ),
    ]
}

/// The query of a presigned URL: `pairs` with the signature's own.
pub fn presigned_query(
    key: &Key<'_>,
    method: &str,
    host: &str,
    path: &str,
    pairs: &[(String, String)],
    now: OffsetDateTime,
) -> String {
    let mut all = pairs.to_vec();
    all.extend([
        (
            "X-Amz-Algorithm".to_string(),
            "AWS4-HMAC-SHA256".to_string(),
        ),
        (
            "X-Amz-Credential".to_string(),
            format!("{}/{}", key.access, scope(now)),
        ),
        ("X-Amz-Date".to_string(), amz_date(now)),
        ("X-Amz-Expires".to_string(), "300".to_string()),
        ("X-Amz-SignedHeaders".to_string(), "host".to_string()),
    ]);
    let unsigned = query(&all);
    let host = canonical_value(host);
    let canonical = format!("{method}\n{path}\n{unsigned}\nhost:{host}\n\nhost\n{UNSIGNED}");
    let signature = signature(key, now, &canonical);
    format!("{unsigned}&X-Amz-Signature={signature}")
}
