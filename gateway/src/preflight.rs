//! What a request needs before s3s sees it, where s3s 0.14 would answer
//! otherwise than S3 or refuse what clients send:
//!
//! - a presigned URL whose `X-Amz-Expires` is negative or beyond a week:
//!   s3s cannot parse it and answers 400; S3 answers 403 AccessDenied;
//! - a PUT whose body has no Content-Length (`Transfer-Encoding: chunked`
//!   from `curl -T -` and streaming clients): s3s refuses it with
//!   MissingContentLength. Ferry reads such a body to its end first (see
//!   `spool`) and hands s3s the request with its length. Its signature is
//!   checked before a byte of the body is read, by Ferry's own verifier
//!   (`signature`): s3s would check it only after. An anonymous one is
//!   refused outright: no Ferry bucket takes anonymous writes (the only
//!   public ACL is public-read; see `auth::Access`), so its body would be
//!   read only to be refused;
//! - a SigV2-signed request: s3s compares SigV2 signatures in variable
//!   time, so Ferry's verifier, which compares in constant time, checks
//!   them first. (s3s 0.14 compares SigV4 signatures in constant time
//!   itself, so Ferry checks those only before spooling a body.)
//! - a browser-form upload (`POST` with `multipart/form-data`): s3s would
//!   read the whole form into memory (up to 5 GiB) before any access check.
//!   Ferry does not offer POST uploads, so it is refused before a byte of
//!   its body is read;
//! - SigV2 header authentication (`Authorization: AWS key:signature`): its
//!   signature covers the request's date, but s3s never checks that date,
//!   so a captured request (a PUT or DELETE too) could be replayed forever.
//!   The date must be within [`MAX_SKEW_SECS`] of the node's clock, as
//!   SigV4's is.

use hyper::body::Body as _;
use s3s::{S3Error, s3_error};

use crate::signature::{Head, MAX_SKEW_SECS, Scheme, Signer, Verifier};
use crate::spool::Spool;

/// SigV4's longest presigned validity: seven days.
const MAX_PRESIGNED_SECS: i64 = 7 * 24 * 3600;

/// What the preflight needs of the node.
pub(crate) struct Preflight {
    pub(crate) spool: Spool,
    pub(crate) verifier: Verifier,
}

/// The request as s3s should see it, or the error to answer instead.
pub(crate) async fn prepare(
    request: http::Request<s3s::Body>,
    preflight: &Preflight,
) -> Result<http::Request<s3s::Body>, S3Error> {
    presigned_expiry(request.uri())?;
    sigv2_date(request.headers())?;
    if is_form_upload(&request) {
        return Err(s3_error!(
            NotImplemented,
            "POST uploads (HTML forms) are not supported; upload with PUT"
        ));
    }
    let spooled = needs_length(&request);
    let head = Head::of(&request);
    if spooled || Scheme::of(&head).is_v2() {
        let signer = preflight
            .verifier
            .verify(&head, time::OffsetDateTime::now_utc())?;
        if spooled && signer == Signer::Anonymous {
            return Err(s3_error!(
                AccessDenied,
                "Anonymous uploads are not allowed; sign the request"
            ));
        }
    }
    if spooled {
        let slot = preflight.spool.admit()?;
        return preflight.spool.collect(request, slot).await;
    }
    Ok(request)
}

fn presigned_expiry(uri: &http::Uri) -> Result<(), S3Error> {
    let Some(query) = uri.query() else {
        return Ok(());
    };
    let Some(value) = query
        .split('&')
        .find_map(|pair| pair.strip_prefix("X-Amz-Expires="))
    else {
        return Ok(());
    };
    match value.parse::<i64>() {
        Ok(secs) if secs < 0 => Err(s3_error!(AccessDenied, "Request has expired")),
        Ok(secs) if secs > MAX_PRESIGNED_SECS => Err(s3_error!(
            AccessDenied,
            "X-Amz-Expires must be less than a week (in seconds) that is {MAX_PRESIGNED_SECS}"
        )),
        // Anything else is s3s's to check (and to refuse if malformed).
        _ => Ok(()),
    }
}

fn sigv2_date(headers: &http::HeaderMap) -> Result<(), S3Error> {
    let sigv2 = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("AWS "));
    if !sigv2 {
        return Ok(());
    }
    // x-amz-date, when sent, is the one signed in place of Date.
    let date = headers
        .get("x-amz-date")
        .or_else(|| headers.get(http::header::DATE))
        .and_then(|v| v.to_str().ok())
        .and_then(crate::time::parse_http_date);
    let Some(date) = date else {
        return Err(s3_error!(
            AccessDenied,
            "A SigV2-signed request must carry its date in Date or x-amz-date"
        ));
    };
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    if (now - crate::time::unix_seconds(&date)).abs() > MAX_SKEW_SECS {
        return Err(s3_error!(
            RequestTimeTooSkewed,
            "The difference between the request time and the server's time is too large"
        ));
    }
    Ok(())
}

/// A POST object upload: an HTML form (`multipart/form-data`). No other
/// S3 operation sends a form.
fn is_form_upload(request: &http::Request<s3s::Body>) -> bool {
    request.method() == http::Method::POST
        && request
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                v.trim_start()
                    .to_ascii_lowercase()
                    .starts_with("multipart/form-data")
            })
}

/// A PUT whose length is unknown until its body ends. aws-chunked bodies
/// declare their length in `x-amz-decoded-content-length` and need none.
fn needs_length(request: &http::Request<s3s::Body>) -> bool {
    request.method() == http::Method::PUT
        && !request.headers().contains_key(http::header::CONTENT_LENGTH)
        && !request
            .headers()
            .contains_key("x-amz-decoded-content-length")
        && request.body().size_hint().exact().is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(uri: &str) -> Option<String> {
        let uri: http::Uri = uri.parse().expect("uri");
        presigned_expiry(&uri)
            .err()
            .map(|e| e.code().as_str().to_string())
    }

    #[test]
    fn presigned_expiry_outside_a_week_is_access_denied() {
        assert_eq!(
            code("/b/k?X-Amz-Expires=-1000&X-Amz-Signature=x").as_deref(),
            Some("AccessDenied")
        );
        assert_eq!(
            code("/b/k?X-Amz-Expires=604801").as_deref(),
            Some("AccessDenied")
        );
        assert_eq!(code("/b/k?X-Amz-Expires=604800"), None);
        assert_eq!(code("/b/k?X-Amz-Expires=junk"), None);
        assert_eq!(code("/b/k"), None);
    }
}
