//! Ferry's own signature check (the preflight's): SigV4 in the header
//! and in a presigned query, SigV2 in the header and in a query, over
//! fuzzed heads. A request this target signs itself must pass; the same
//! request with its signature's bytes changed must not.

#![no_main]

use arbitrary::Arbitrary;
use ferry_config::Credential;
use ferry_fuzz::sigv4::{self, Key};
use ferry_fuzz::with_headers;
use libfuzzer_sys::fuzz_target;

const ACCESS: &str = "fuzz-access";
const SECRET: &str = "fuzz-secret-fuzz-secret";
const DOMAIN: &str = "s3.fuzz.test";

#[derive(Arbitrary, Debug)]
enum Form {
    /// The head as fuzzed, signature headers and all.
    Raw,
    /// Signed here in the Authorization header.
    Signed,
    /// Presigned here.
    Presigned,
}

#[derive(Arbitrary, Debug)]
struct Input {
    method: u8,
    segments: Vec<String>,
    params: Vec<(String, String)>,
    /// Appended to the query as it is, after the encoded parameters.
    raw_query: String,
    headers: Vec<(String, String)>,
    host: String,
    form: Form,
    /// Where to flip a bit of a signed request's signature, if anywhere.
    tamper: Option<u16>,
    /// Seconds the node's clock is off the signer's.
    skew: i32,
}

fuzz_target!(|input: Input| {
    let method = ["GET", "HEAD", "PUT", "POST", "DELETE"][usize::from(input.method % 5)];
    let segments: Vec<&str> = input.segments.iter().map(String::as_str).collect();
    let path = sigv4::path(&segments);
    let host = if input.host.is_empty() {
        "localhost"
    } else {
        input.host.as_str()
    };
    let now = time::OffsetDateTime::now_utc();
    let key = Key {
        access: ACCESS,
        secret: SECRET,
    };
    let signed = !matches!(input.form, Form::Raw);
    // A request signed here carries no other scheme's parameters (with a
    // `Signature` it would be a SigV2 request, as s3s reads it too).
    let params: Vec<(String, String)> = input
        .params
        .iter()
        .filter(|(name, _)| {
            !signed
                || !(name == "Signature" || name == "AWSAccessKeyId" || name.starts_with("X-Amz-"))
        })
        .cloned()
        .collect();
    let mut query = match input.form {
        Form::Presigned => sigv4::presigned_query(&key, method, host, &path, &params, now),
        _ => sigv4::query(&params),
    };
    if !signed && !input.raw_query.is_empty() {
        query = if query.is_empty() {
            input.raw_query.clone()
        } else {
            format!("{query}&{}", input.raw_query)
        };
    }
    let mut headers = Vec::new();
    if let Form::Signed = input.form {
        headers = sigv4::header_auth(&key, method, host, &path, &query, now)
            .into_iter()
            .map(|(name, value)| (name.to_string(), value))
            .collect();
    }
    let mut tampered = false;
    if signed && let Some(at) = input.tamper {
        tampered = tamper(&mut query, &mut headers, usize::from(at));
    }
    if !signed {
        headers.extend(input.headers.iter().cloned());
    }
    let uri = if query.is_empty() {
        path.clone()
    } else {
        format!("{path}?{query}")
    };
    let request = http::Request::builder()
        .method(method)
        .uri(&uri)
        .header("host", host);
    let Some(request) = with_headers(request, &headers) else {
        return;
    };
    let Ok(request) = request.body(()) else {
        return;
    };
    let credential = Credential {
        access_key: ACCESS.into(),
        secret_key: SECRET.into(),
        buckets: None,
        read_only: false,
    };
    let skew = time::Duration::seconds(i64::from(input.skew % 300));
    let verdict =
        ferry_gateway::fuzzing::verify_signature(&request, &credential, DOMAIN, now + skew);
    if signed && !tampered {
        assert_eq!(
            verdict,
            Ok(Some(ACCESS.to_string())),
            "{method} {uri} host {host:?} {headers:?}: signed here, refused"
        );
    }
    if tampered {
        assert!(
            verdict.is_err(),
            "{method} {uri} {headers:?}: a changed signature passed"
        );
    }
});

/// Changes one hex digit of the signature (in the Authorization header or
/// the query), chosen by `at`; whether one was changed.
fn tamper(query: &mut String, headers: &mut [(String, String)], at: usize) -> bool {
    let target = match headers.iter_mut().find(|(name, _)| name == "authorization") {
        Some((_, value)) => value,
        None => query,
    };
    let Some(start) = target.find("Signature=").map(|i| i + "Signature=".len()) else {
        return false;
    };
    let digits = target[start..]
        .chars()
        .take_while(char::is_ascii_hexdigit)
        .count();
    if digits == 0 {
        return false;
    }
    let i = start + at % digits;
    let old = target.as_bytes()[i];
    let new = if old == b'0' { '1' } else { '0' };
    target.replace_range(i..=i, &new.to_string());
    true
}
