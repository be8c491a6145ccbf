//! AWS Signature Version 2 (legacy S3 signing): HMAC-SHA1 over a string
//! made of the method, a few headers, the `x-amz-*` headers and the
//! resource, in the Authorization header or a presigned query.

use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use s3s::{S3Error, s3_error};
use sha1::Sha1;
use time::OffsetDateTime;

use super::{Head, Scheme, SecretOf, expired, mismatch, query_pairs, unique};

/// The query parameters that name a sub-resource and so are signed, in
/// the (sorted) order they are signed in.
const SUBRESOURCES: &[&str] = &[
    "accelerate",
    "acl",
    "analytics",
    "cors",
    "defaultObjectAcl",
    "delete",
    "inventory",
    "lifecycle",
    "location",
    "logging",
    "metrics",
    "notification",
    "object-lock",
    "partNumber",
    "policy",
    "replication",
    "requestPayment",
    "response-cache-control",
    "response-content-disposition",
    "response-content-encoding",
    "response-content-language",
    "response-content-type",
    "response-expires",
    "restore",
    "select",
    "select-type",
    "storageClass",
    "tagging",
    "torrent",
    "uploadId",
    "uploads",
    "versionId",
    "versioning",
    "versions",
    "website",
];

/// The string SigV2 signs. `date` is the Date line: the Date header (or
/// nothing when x-amz-date is signed instead), or a presigned URL's
/// Expires.
fn string_to_sign(
    head: &Head<'_>,
    date: &str,
    query: &[(String, String)],
    virtual_host_bucket: Option<&str>,
) -> String {
    let mut out = String::with_capacity(256);
    out.push_str(head.method.as_str());
    out.push('\n');
    out.push_str(head.unique_header("content-md5").unwrap_or_default());
    out.push('\n');
    out.push_str(head.unique_header("content-type").unwrap_or_default());
    out.push('\n');
    out.push_str(date);
    out.push('\n');
    let mut amz: Vec<&str> = head
        .headers
        .keys()
        .map(http::HeaderName::as_str)
        .filter(|name| name.starts_with("x-amz-"))
        .collect();
    amz.sort_unstable();
    for name in amz {
        let values: Vec<&str> = head.header_values(name).iter().map(|v| v.trim()).collect();
        if values.is_empty() {
            continue;
        }
        out.push_str(name);
        out.push(':');
        out.push_str(&values.join(","));
        out.push('\n');
    }
    if let Some(bucket) = virtual_host_bucket {
        out.push('/');
        out.push_str(bucket);
    }
    out.push_str(head.uri.path());
    let mut separator = '?';
    for name in SUBRESOURCES {
        if let Some(value) = unique(query, name) {
            out.push(separator);
            separator = '&';
            out.push_str(name);
            if !value.is_empty() {
                out.push('=');
                out.push_str(value);
            }
        }
    }
    out
}

/// Whether `signature` (base64) is the HMAC-SHA1 of `text` under
/// `secret`; compared in constant time.
fn signs(secret: &str, text: &str, signature: &str) -> bool {
    let Ok(given) = base64::engine::general_purpose::STANDARD.decode(signature) else {
        return false;
    };
    let mut mac = <Hmac<Sha1> as KeyInit>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
    mac.update(text.as_bytes());
    mac.verify_slice(&given).is_ok()
}

/// SigV2 in the header or the query (`scheme`); returns the access key.
/// The header's date is checked against the clock by the preflight
/// before this runs.
pub(super) fn verify(
    head: &Head<'_>,
    scheme: Scheme,
    virtual_host_bucket: Option<&str>,
    secret_of: &SecretOf<'_>,
    now: OffsetDateTime,
) -> Result<String, S3Error> {
    let query = query_pairs(head.uri);
    let (access_key, signature, date) = if scheme == Scheme::V2Query {
        let malformed = || {
            s3_error!(
                AuthorizationQueryParametersError,
                "Query-string authentication requires the Signature, Expires and AWSAccessKeyId parameters"
            )
        };
        let field = |name: &str| unique(&query, name).ok_or_else(malformed);
        let expires = field("Expires")?;
        let expires_at: i64 = expires
            .parse()
            .ok()
            .filter(|t| *t >= 0)
            .ok_or_else(malformed)?;
        if now.unix_timestamp() > expires_at {
            return Err(expired());
        }
        // Clients escape the signature's `+`, `/` and `=`; some twice.
        let signature = percent_encoding::percent_decode_str(field("Signature")?)
            .decode_utf8_lossy()
            .into_owned();
        (
            field("AWSAccessKeyId")?.to_string(),
            signature,
            expires.to_string(),
        )
    } else {
        let malformed = || {
            s3_error!(
                AuthorizationHeaderMalformed,
                "The authorization header is malformed"
            )
        };
        let value = head.unique_header("authorization").ok_or_else(malformed)?;
        let (access_key, signature) = value
            .strip_prefix("AWS ")
            .and_then(|v| v.split_once(':'))
            .ok_or_else(malformed)?;
        let date = if head.unique_header("x-amz-date").is_some() {
            ""
        } else {
            head.unique_header("date").unwrap_or_default()
        };
        (
            access_key.to_string(),
            signature.to_string(),
            date.to_string(),
        )
    };
    let secret = secret_of(&access_key)?;
    let text = string_to_sign(head, &date, &query, virtual_host_bucket);
    if !signs(&secret, &text, &signature) {
        return Err(mismatch());
    }
    Ok(access_key)
}

#[cfg(test)]
mod tests {
    //! The examples of AWS's SigV2 documentation (RESTAuthentication.html).

    use super::*;

    const ACCESS_KEY: &str = "AKIAIOSFODNN7EXAMPLE";
    const SECRET_KEY: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";

    fn secret_of(key: &str) -> Result<String, S3Error> {
        if key == ACCESS_KEY {
            Ok(SECRET_KEY.to_string())
        } else {
            Err(s3_error!(InvalidAccessKeyId))
        }
    }

    fn request(method: &str, uri: &str, headers: &[(&str, &str)]) -> http::Request<()> {
        let mut builder = http::Request::builder().method(method).uri(uri);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(()).expect("request")
    }

    fn check(r: &http::Request<()>, bucket: Option<&str>) -> Result<String, String> {
        let head = Head::of(r);
        verify(
            &head,
            Scheme::of(&head),
            bucket,
            &secret_of,
            OffsetDateTime::from_unix_timestamp(1_175_000_000).expect("time"),
        )
        .map_err(|e| e.code().as_str().to_string())
    }

    #[test]
    fn aws_get_object_example_and_a_same_length_forgery() {
        let good = request(
            "GET",
            "/photos/puppy.jpg",
            &[
                ("date", "Tue, 27 Mar 2007 19:36:42 +0000"),
                (
                    "authorization",
                    "AWS AKIAIOSFODNN7EXAMPLE:qgk2+6Sv9/oM7G3qLEjTH1a1l1g=",
                ),
            ],
        );
        assert_eq!(
            check(&good, Some("awsexamplebucket1")),
            Ok(ACCESS_KEY.to_string())
        );
        // The bucket is signed: path style does not match this signature.
        assert_eq!(check(&good, None), Err("SignatureDoesNotMatch".to_string()));
        let forged = request(
            "GET",
            "/photos/puppy.jpg",
            &[
                ("date", "Tue, 27 Mar 2007 19:36:42 +0000"),
                (
                    "authorization",
                    "AWS AKIAIOSFODNN7EXAMPLE:qgk2+6Sv9/oM7G3qLEjTH1a1l1h=",
                ),
            ],
        );
        assert_eq!(
            check(&forged, Some("awsexamplebucket1")),
            Err("SignatureDoesNotMatch".to_string())
        );
    }

    #[test]
    fn amz_headers_and_subresources_are_signed() {
        let to_sign = string_to_sign(
            &Head::of(&request(
                "PUT",
                "/db-backup.dat.gz?uploads&ignored=1&versionId=v1",
                &[
                    ("content-md5", "4gJE4saaMU4BqNR0kLY+lw=="),
                    ("content-type", "application/x-download"),
                    ("x-amz-meta-reviewedby", "joe@example.com"),
                    ("x-amz-meta-reviewedby", " jane@example.com "),
                    ("x-amz-acl", "public-read"),
                ],
            )),
            "Tue, 27 Mar 2007 21:06:08 +0000",
            &query_pairs(&"/x?uploads&ignored=1&versionId=v1".parse().expect("uri")),
            Some("static.example.com"),
        );
        assert_eq!(
            to_sign,
            "PUT\n4gJE4saaMU4BqNR0kLY+lw==\napplication/x-download\nTue, 27 Mar 2007 21:06:08 +0000\n\
             x-amz-acl:public-read\nx-amz-meta-reviewedby:joe@example.com,jane@example.com\n\
             /static.example.com/db-backup.dat.gz?uploads&versionId=v1"
        );
    }

    #[test]
    fn aws_presigned_example_and_expiry() {
        let r = request(
            "GET",
            "/photos/puppy.jpg?AWSAccessKeyId=AKIAIOSFODNN7EXAMPLE&Signature=1No4mq5ETf02z8aet9voy6gui6E%3D&Expires=1175139620",
            &[],
        );
        assert_eq!(
            check(&r, Some("awsexamplebucket1")),
            Ok(ACCESS_KEY.to_string())
        );
        let head = Head::of(&r);
        let late = OffsetDateTime::from_unix_timestamp(1_175_139_621).expect("time");
        assert_eq!(
            verify(
                &head,
                Scheme::V2Query,
                Some("awsexamplebucket1"),
                &secret_of,
                late
            )
            .map_err(|e| e.code().as_str().to_string()),
            Err("AccessDenied".to_string())
        );
    }
}
