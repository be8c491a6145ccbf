//! AWS Signature Version 4: the canonical request, the string to sign and
//! the derived signing key, for the Authorization header and for
//! presigned URLs.

use hmac::{Hmac, KeyInit, Mac};
use s3s::{S3Error, s3_error};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use super::{Head, MAX_SKEW_SECS, SecretOf, expired, mismatch, query_pairs, skewed, unique};

const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// What presigned URLs sign in place of a payload hash.
const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";

/// `AK/20130524/us-east-1/s3/aws4_request`.
struct Scope<'a> {
    access_key: &'a str,
    date: &'a str,
    region: &'a str,
    service: &'a str,
}

impl<'a> Scope<'a> {
    fn parse(text: &'a str) -> Option<Scope<'a>> {
        // The access key may not contain '/', the rest are fixed fields.
        let mut fields = text.split('/');
        let scope = Scope {
            access_key: fields.next()?,
            date: fields.next()?,
            region: fields.next()?,
            service: fields.next()?,
        };
        (fields.next() == Some("aws4_request") && fields.next().is_none()).then_some(scope)
    }

    fn line(&self) -> String {
        format!(
            "{}/{}/{}/aws4_request",
            self.date, self.region, self.service
        )
    }
}

/// The Authorization header's fields.
struct Authorization<'a> {
    scope: Scope<'a>,
    signed_headers: &'a str,
    signature: &'a str,
}

fn parse_authorization(value: &str) -> Option<Authorization<'_>> {
    let rest = value.strip_prefix(ALGORITHM)?;
    if !rest.starts_with(char::is_whitespace) {
        return None;
    }
    let (mut credential, mut signed_headers, mut signature) = (None, None, None);
    for field in rest.split(',') {
        let (name, value) = field.trim().split_once('=')?;
        match name {
            "Credential" => credential = Some(value),
            "SignedHeaders" => signed_headers = Some(value),
            "Signature" => signature = Some(value),
            _ => return None,
        }
    }
    Some(Authorization {
        scope: Scope::parse(credential?)?,
        signed_headers: signed_headers?,
        signature: signature?,
    })
}

/// `20130524T000000Z`.
fn parse_amz_date(text: &str) -> Option<OffsetDateTime> {
    let format = time::macros::format_description!("[year][month][day]T[hour][minute][second]Z");
    time::PrimitiveDateTime::parse(text, &format)
        .ok()
        .map(|t| t.assume_utc())
}

/// Appends `input` percent-encoded as SigV4 wants: every byte but
/// `A-Z a-z 0-9 - _ . ~` as `%XX` (upper case), and `/` too unless it
/// separates path segments.
fn uri_encode(out: &mut String, input: &str, keep_slash: bool) {
    for &byte in input.as_bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(char::from(byte));
            }
            b'/' if keep_slash => out.push('/'),
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
}

/// A path some clients sign as sent instead of encoded: it holds bytes
/// outside what SigV4 leaves unencoded (`=` or `$` sent raw). s3s tries
/// such a path both ways; so does Ferry.
fn may_be_signed_raw(path: &str) -> bool {
    path.bytes()
        .any(|b| !(b.is_ascii_alphanumeric() || b"-_.~/%".contains(&b)))
}

/// The request as SigV4 canonicalises it.
struct Canonical<'a> {
    head: &'a Head<'a>,
    /// Query pairs, decoded, without the signature of a presigned URL.
    query: Vec<(String, String)>,
    /// Signed header names, lower case.
    signed_headers: Vec<&'a str>,
    payload: &'a str,
}

impl Canonical<'_> {
    /// The canonical request with `uri` as its canonical URI.
    fn request(&self, uri: &str) -> String {
        let mut out = String::with_capacity(512);
        out.push_str(self.head.method.as_str());
        out.push('\n');
        out.push_str(uri);
        out.push('\n');
        let mut query: Vec<(String, String)> = self
            .query
            .iter()
            .map(|(name, value)| {
                let (mut n, mut v) = (String::new(), String::new());
                uri_encode(&mut n, name, false);
                uri_encode(&mut v, value, false);
                (n, v)
            })
            .collect();
        // Stable: a repeated name keeps its values in the order sent.
        query.sort_by(|a, b| a.0.cmp(&b.0));
        let query: Vec<String> = query.into_iter().map(|(n, v)| format!("{n}={v}")).collect();
        out.push_str(&query.join("&"));
        out.push('\n');
        // Headers a signer listed but the request lacks are left out of
        // both lists (as s3s does); the signature then tells.
        let mut present = Vec::new();
        for &name in &self.signed_headers {
            let mut values = self.head.header_values(name);
            if values.is_empty() && name == "host" {
                values.extend(self.head.host());
            }
            if values.is_empty() || name == "authorization" {
                continue;
            }
            let values: Vec<String> = values
                .iter()
                .map(|v| v.split_whitespace().collect::<Vec<_>>().join(" "))
                .collect();
            out.push_str(name);
            out.push(':');
            out.push_str(&values.join(","));
            out.push('\n');
            present.push(name);
        }
        out.push('\n');
        out.push_str(&present.join(";"));
        out.push('\n');
        out.push_str(self.payload);
        out
    }

    /// The canonical URIs a signer may have used: the path encoded once
    /// (what AWS specifies), and for some paths the path as sent.
    fn uris(&self) -> Result<Vec<String>, S3Error> {
        let raw = self.head.uri.path();
        let decoded = percent_encoding::percent_decode_str(raw)
            .decode_utf8()
            .map_err(|_| s3_error!(InvalidURI, "The path is not valid percent-encoded UTF-8"))?;
        let mut encoded = String::with_capacity(raw.len());
        uri_encode(&mut encoded, &decoded, true);
        let mut uris = vec![encoded];
        if may_be_signed_raw(raw) {
            uris.push(raw.to_string());
        }
        Ok(uris)
    }
}

fn hmac(key: &[u8], data: &str) -> Hmac<Sha256> {
    // HMAC takes keys of any length.
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
    mac.update(data.as_bytes());
    mac
}

/// The MAC the signature is computed with: keyed by the secret, the
/// scope's date, region and service.
fn signing_mac(secret: &str, scope: &Scope<'_>) -> Hmac<Sha256> {
    let mut key = hmac(format!("AWS4{secret}").as_bytes(), scope.date)
        .finalize()
        .into_bytes();
    for part in [scope.region, scope.service, "aws4_request"] {
        key = hmac(&key, part).finalize().into_bytes();
    }
    <Hmac<Sha256> as KeyInit>::new_from_slice(&key)
        .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"))
}

fn string_to_sign(amz_date: &str, scope: &Scope<'_>, canonical_request: &str) -> String {
    format!(
        "{ALGORITHM}\n{amz_date}\n{}\n{}",
        scope.line(),
        hex::encode(Sha256::digest(canonical_request.as_bytes()))
    )
}

/// Whether `signature` (hex) signs `canonical` for one of its canonical
/// URIs; compared in constant time.
fn signs(
    canonical: &Canonical<'_>,
    amz_date: &str,
    scope: &Scope<'_>,
    secret: &str,
    signature: &str,
) -> Result<bool, S3Error> {
    let Ok(given) = hex::decode(signature) else {
        return Ok(false);
    };
    for uri in canonical.uris()? {
        let mut mac = signing_mac(secret, scope);
        mac.update(string_to_sign(amz_date, scope, &canonical.request(&uri)).as_bytes());
        if mac.verify_slice(&given).is_ok() {
            return Ok(true);
        }
    }
    Ok(false)
}

fn signed_header_names(list: &str) -> Vec<&str> {
    let mut names: Vec<&str> = list.split(';').filter(|n| !n.is_empty()).collect();
    names.sort_unstable();
    names.dedup();
    names
}

/// Ferry serves S3 only (s3s would also take STS, which Ferry has none of).
fn check_service(scope: &Scope<'_>) -> Result<(), S3Error> {
    if scope.service == "s3" {
        Ok(())
    } else {
        Err(s3_error!(
            AuthorizationHeaderMalformed,
            "The credential scope names service '{}'; expecting 's3'",
            scope.service
        ))
    }
}

/// SigV4 in the Authorization header; returns the access key.
pub(super) fn verify_header(
    head: &Head<'_>,
    secret_of: &SecretOf<'_>,
    now: OffsetDateTime,
) -> Result<String, S3Error> {
    let malformed = || {
        s3_error!(
            AuthorizationHeaderMalformed,
            "The authorization header is malformed"
        )
    };
    let value = head.unique_header("authorization").ok_or_else(malformed)?;
    let auth = parse_authorization(value).ok_or_else(malformed)?;
    check_service(&auth.scope)?;
    let amz_date_text = head.unique_header("x-amz-date").ok_or_else(|| {
        s3_error!(
            AccessDenied,
            "AWS authentication requires a valid x-amz-date header"
        )
    })?;
    let amz_date = parse_amz_date(amz_date_text).ok_or_else(|| {
        s3_error!(
            AccessDenied,
            "AWS authentication requires a valid x-amz-date header"
        )
    })?;
    if !amz_date_text.starts_with(auth.scope.date) || auth.scope.date.len() != 8 {
        return Err(mismatch());
    }
    if (now - amz_date).whole_seconds().abs() > MAX_SKEW_SECS {
        return Err(skewed());
    }
    // The payload hash the client signed: a hex SHA-256, UNSIGNED-PAYLOAD
    // or a STREAMING-* marker, which is the seed of a chunked body.
    let payload = head.unique_header("x-amz-content-sha256").ok_or_else(|| {
        s3_error!(
            InvalidRequest,
            "Missing required header for this request: x-amz-content-sha256"
        )
    })?;
    let secret = secret_of(auth.scope.access_key)?;
    let canonical = Canonical {
        head,
        query: query_pairs(head.uri),
        signed_headers: signed_header_names(auth.signed_headers),
        payload,
    };
    if !signs(
        &canonical,
        amz_date_text,
        &auth.scope,
        &secret,
        auth.signature,
    )? {
        return Err(mismatch());
    }
    Ok(auth.scope.access_key.to_string())
}

/// SigV4 in a presigned URL's query; returns the access key.
pub(super) fn verify_query(
    head: &Head<'_>,
    secret_of: &SecretOf<'_>,
    now: OffsetDateTime,
) -> Result<String, S3Error> {
    let query = query_pairs(head.uri);
    let malformed = || {
        s3_error!(
            AuthorizationQueryParametersError,
            "Query-string authentication version 4 requires the X-Amz-Algorithm, X-Amz-Credential, X-Amz-Signature, X-Amz-Date, X-Amz-SignedHeaders, and X-Amz-Expires parameters."
        )
    };
    let field = |name: &str| unique(&query, name).ok_or_else(malformed);
    if field("X-Amz-Algorithm")? != ALGORITHM {
        return Err(malformed());
    }
    let scope = Scope::parse(field("X-Amz-Credential")?).ok_or_else(malformed)?;
    check_service(&scope)?;
    let amz_date_text = field("X-Amz-Date")?;
    let amz_date = parse_amz_date(amz_date_text).ok_or_else(malformed)?;
    let expires: i64 = field("X-Amz-Expires")?.parse().map_err(|_| malformed())?;
    let signed_headers = field("X-Amz-SignedHeaders")?;
    let signature = field("X-Amz-Signature")?;
    if !amz_date_text.starts_with(scope.date) || scope.date.len() != 8 {
        return Err(mismatch());
    }
    let age = (now - amz_date).whole_seconds();
    if age < -MAX_SKEW_SECS {
        return Err(skewed());
    }
    if age > expires {
        return Err(expired());
    }
    let secret = secret_of(scope.access_key)?;
    let canonical = Canonical {
        head,
        query: query
            .iter()
            .filter(|(name, _)| name != "X-Amz-Signature")
            .cloned()
            .collect(),
        signed_headers: signed_header_names(signed_headers),
        payload: UNSIGNED_PAYLOAD,
    };
    if !signs(&canonical, amz_date_text, &scope, &secret, signature)? {
        return Err(mismatch());
    }
    Ok(scope.access_key.to_string())
}

#[cfg(test)]
mod tests {
    //! The examples of AWS's SigV4 documentation for S3, whose
    //! signatures AWS publishes: GetObject with a Range, two bucket GETs
    //! with query strings (sig-v4-header-based-auth.html), a presigned
    //! GET (sigv4-query-string-auth.html) and the seed of a chunked
    //! upload (sigv4-streaming.html).

    use super::*;

    const ACCESS_KEY: &str = "AKIAIOSFODNN7EXAMPLE";
    const SECRET_KEY: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
    const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn at(text: &str) -> OffsetDateTime {
        parse_amz_date(text).expect("date")
    }

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

    fn header_auth(signed_headers: &str, signature: &str) -> String {
        format!(
            "AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/20130524/us-east-1/s3/aws4_request,SignedHeaders={signed_headers},Signature={signature}"
        )
    }

    fn check(request: &http::Request<()>, now: &str) -> Result<String, String> {
        verify_header(&Head::of(request), &secret_of, at(now))
            .map_err(|e| e.code().as_str().to_string())
    }

    #[test]
    fn aws_get_object_example() {
        let auth = header_auth(
            "host;range;x-amz-content-sha256;x-amz-date",
            "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41",
        );
        let headers = [
            ("host", "examplebucket.s3.amazonaws.com"),
            ("range", "bytes=0-9"),
            ("x-amz-content-sha256", EMPTY_SHA256),
            ("x-amz-date", "20130524T000000Z"),
            ("authorization", auth.as_str()),
        ];
        let good = request("GET", "/test.txt", &headers);
        assert_eq!(check(&good, "20130524T000500Z"), Ok(ACCESS_KEY.to_string()));
        // Anything signed, changed, fails.
        let mut other_range = headers;
        other_range[1].1 = "bytes=0-10";
        assert_eq!(
            check(
                &request("GET", "/test.txt", &other_range),
                "20130524T000000Z"
            ),
            Err("SignatureDoesNotMatch".to_string())
        );
        assert_eq!(
            check(&request("GET", "/test.tx", &headers), "20130524T000000Z"),
            Err("SignatureDoesNotMatch".to_string())
        );
        // Too far from the node's clock.
        assert_eq!(
            check(&good, "20130524T001600Z"),
            Err("RequestTimeTooSkewed".to_string())
        );
    }

    #[test]
    fn a_signature_wrong_in_its_last_digit_is_refused() {
        let auth = header_auth(
            "host;range;x-amz-content-sha256;x-amz-date",
            "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb42",
        );
        let r = request(
            "GET",
            "/test.txt",
            &[
                ("host", "examplebucket.s3.amazonaws.com"),
                ("range", "bytes=0-9"),
                ("x-amz-content-sha256", EMPTY_SHA256),
                ("x-amz-date", "20130524T000000Z"),
                ("authorization", auth.as_str()),
            ],
        );
        assert_eq!(
            check(&r, "20130524T000000Z"),
            Err("SignatureDoesNotMatch".to_string())
        );
    }

    #[test]
    fn aws_query_string_examples() {
        for (uri, signature) in [
            (
                "/?lifecycle",
                "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543",
            ),
            (
                "/?max-keys=2&prefix=J",
                "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7",
            ),
        ] {
            let auth = header_auth("host;x-amz-content-sha256;x-amz-date", signature);
            let r = request(
                "GET",
                uri,
                &[
                    ("host", "examplebucket.s3.amazonaws.com"),
                    ("x-amz-date", "20130524T000000Z"),
                    ("x-amz-content-sha256", EMPTY_SHA256),
                    ("authorization", auth.as_str()),
                ],
            );
            assert_eq!(
                check(&r, "20130524T000000Z"),
                Ok(ACCESS_KEY.to_string()),
                "{uri}"
            );
        }
    }

    #[test]
    fn aws_streaming_seed_signature_example() {
        let auth = header_auth(
            "content-encoding;content-length;host;x-amz-content-sha256;x-amz-date;x-amz-decoded-content-length;x-amz-storage-class",
            "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9",
        );
        let r = request(
            "PUT",
            "/examplebucket/chunkObject.txt",
            &[
                ("host", "s3.amazonaws.com"),
                ("x-amz-date", "20130524T000000Z"),
                ("x-amz-storage-class", "REDUCED_REDUNDANCY"),
                ("content-encoding", "aws-chunked"),
                ("x-amz-decoded-content-length", "66560"),
                ("content-length", "66824"),
                ("x-amz-content-sha256", "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"),
                ("authorization", auth.as_str()),
            ],
        );
        assert_eq!(check(&r, "20130524T000000Z"), Ok(ACCESS_KEY.to_string()));
    }

    #[test]
    fn aws_presigned_url_example() {
        let uri = "/test.txt?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host&X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404";
        let r = request("GET", uri, &[("host", "examplebucket.s3.amazonaws.com")]);
        let check = |now: &str| {
            verify_query(&Head::of(&r), &secret_of, at(now))
                .map_err(|e| e.code().as_str().to_string())
        };
        assert_eq!(check("20130524T120000Z"), Ok(ACCESS_KEY.to_string()));
        assert_eq!(check("20130525T000001Z"), Err("AccessDenied".to_string()));
        assert_eq!(
            check("20130523T000000Z"),
            Err("RequestTimeTooSkewed".to_string())
        );
        let tampered = request(
            "GET",
            &uri.replace("test.txt", "test.txu"),
            &[("host", "examplebucket.s3.amazonaws.com")],
        );
        assert_eq!(
            verify_query(&Head::of(&tampered), &secret_of, at("20130524T000000Z"))
                .map_err(|e| e.code().as_str().to_string()),
            Err("SignatureDoesNotMatch".to_string())
        );
    }

    #[test]
    fn an_unknown_key_is_invalid_access_key_id() {
        let auth = header_auth("host", "00").replace(ACCESS_KEY, "SOMEONE");
        let r = request(
            "GET",
            "/b/k",
            &[
                ("host", "h"),
                ("x-amz-date", "20130524T000000Z"),
                ("x-amz-content-sha256", "UNSIGNED-PAYLOAD"),
                ("authorization", auth.as_str()),
            ],
        );
        assert_eq!(
            check(&r, "20130524T000000Z"),
            Err("InvalidAccessKeyId".to_string())
        );
    }

    #[test]
    fn uri_encoding_keeps_only_unreserved_bytes() {
        let mut out = String::new();
        uri_encode(&mut out, "a b/ü+~=", true);
        assert_eq!(out, "a%20b/%C3%BC%2B~%3D");
        let mut out = String::new();
        uri_encode(&mut out, "x/y", false);
        assert_eq!(out, "x%2Fy");
    }
}
