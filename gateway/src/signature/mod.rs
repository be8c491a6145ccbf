//! Ferry's own check of a request's signature, from its head alone.
//!
//! s3s checks signatures too, but in two places that is not enough:
//!
//! - a PUT without a Content-Length must be read to its end before s3s
//!   sees it (see `preflight`), so s3s would check its signature only after
//!   a stranger's body had been spooled;
//! - s3s 0.14 compares SigV2 signatures with `!=`, which returns at the
//!   first differing byte: its timing tells a forger how much of a guess
//!   was right.
//!
//! So the preflight runs this check first, and s3s's runs after it only on
//! requests this one let through. Every scheme clients use is covered:
//! SigV4 in the Authorization header (any `x-amz-content-sha256`, the
//! streaming ones included: what they sign at the start is the seed
//! signature over the head) and in a presigned query, and SigV2 in the
//! header and in a presigned query. Signatures are compared in constant
//! time (`hmac`'s `verify_slice`).
//!
//! The canonical forms follow AWS's documentation and agree with s3s's on
//! what clients send, so a request one accepts the other accepts too.

mod v2;
mod v4;

use http::{HeaderMap, Method, Uri, Version};
use s3s::{S3Error, S3ErrorCode, s3_error};
use time::OffsetDateTime;

use crate::auth::Keyring;
use crate::host::VirtualHosts;

/// How far a signed request's date may be from this node's clock:
/// fifteen minutes, as S3.
pub(crate) const MAX_SKEW_SECS: i64 = 15 * 60;

/// The secret of an access key, or InvalidAccessKeyId.
type SecretOf<'a> = dyn Fn(&str) -> Result<String, S3Error> + 'a;

/// The parts of a request a signature covers, bodies aside.
pub(crate) struct Head<'a> {
    pub method: &'a Method,
    pub uri: &'a Uri,
    pub headers: &'a HeaderMap,
    pub version: Version,
}

impl<'a> Head<'a> {
    pub fn of<B>(request: &'a http::Request<B>) -> Head<'a> {
        Head {
            method: request.method(),
            uri: request.uri(),
            headers: request.headers(),
            version: request.version(),
        }
    }

    /// The value of header `name` when it is sent exactly once (and is
    /// text), as signers read it.
    fn unique_header(&self, name: &str) -> Option<&'a str> {
        let mut values = self.headers.get_all(name).iter();
        let first = values.next()?;
        if values.next().is_some() {
            return None;
        }
        std::str::from_utf8(first.as_bytes()).ok()
    }

    /// Every text value of header `name`, in the order sent.
    fn header_values(&self, name: &str) -> Vec<&'a str> {
        self.headers
            .get_all(name)
            .iter()
            .filter_map(|v| std::str::from_utf8(v.as_bytes()).ok())
            .collect()
    }

    /// The Host header, or HTTP/2's `:authority`, which replaces it.
    fn host(&self) -> Option<&'a str> {
        self.unique_header("host").or_else(|| {
            (self.version >= Version::HTTP_2)
                .then(|| self.uri.authority().map(|a| a.as_str()))
                .flatten()
        })
    }
}

/// The query string's pairs, decoded as a form (`+` is a space), in the
/// order sent.
fn query_pairs(uri: &Uri) -> Vec<(String, String)> {
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(&s.replace('+', " "))
            .decode_utf8_lossy()
            .into_owned()
    };
    uri.query()
        .unwrap_or_default()
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| match pair.split_once('=') {
            Some((name, value)) => (decode(name), decode(value)),
            None => (decode(pair), String::new()),
        })
        .collect()
}

/// The value of query parameter `name` when it is given exactly once.
fn unique<'q>(query: &'q [(String, String)], name: &str) -> Option<&'q str> {
    let mut found = query.iter().filter(|(n, _)| n == name);
    let (_, value) = found.next()?;
    found.next().is_none().then_some(value.as_str())
}

/// How a request says who sent it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scheme {
    /// Nothing: an anonymous request.
    Anonymous,
    /// `Authorization: AWS key:signature`.
    V2Header,
    /// `?AWSAccessKeyId=..&Expires=..&Signature=..`.
    V2Query,
    /// `Authorization: AWS4-HMAC-SHA256 Credential=..`.
    V4Header,
    /// `?X-Amz-Algorithm=AWS4-HMAC-SHA256&..&X-Amz-Signature=..`.
    V4Query,
    /// An Authorization header of no scheme Ferry knows.
    Unknown,
}

impl Scheme {
    pub fn of(head: &Head<'_>) -> Scheme {
        let query = head.uri.query().unwrap_or_default();
        let has_param = |name: &str| {
            query
                .split('&')
                .any(|pair| pair.split('=').next() == Some(name))
        };
        // In s3s's order: a query signature before the header.
        if has_param("Signature") {
            return Scheme::V2Query;
        }
        if has_param("X-Amz-Signature") {
            return Scheme::V4Query;
        }
        match head.headers.get(http::header::AUTHORIZATION) {
            None => Scheme::Anonymous,
            Some(value) => {
                let value = value.to_str().unwrap_or_default();
                if value.starts_with("AWS4-HMAC-SHA256") {
                    Scheme::V4Header
                } else if value.starts_with("AWS ") && value.contains(':') {
                    Scheme::V2Header
                } else {
                    Scheme::Unknown
                }
            }
        }
    }

    pub fn is_v2(self) -> bool {
        matches!(self, Scheme::V2Header | Scheme::V2Query)
    }
}

/// Who a verified request comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Signer {
    Anonymous,
    Key(String),
}

/// Checks signatures against the node's credentials.
#[derive(Clone)]
pub(crate) struct Verifier {
    keyring: Keyring,
    /// Set when virtual-host addressing is on: SigV2 signs the bucket a
    /// Host header names.
    hosts: Option<VirtualHosts>,
}

impl Verifier {
    pub fn new(keyring: Keyring, hosts: Option<VirtualHosts>) -> Verifier {
        Verifier { keyring, hosts }
    }

    /// Who signed `head`, or why the signature does not hold, as of `now`.
    pub fn verify(&self, head: &Head<'_>, now: OffsetDateTime) -> Result<Signer, S3Error> {
        let scheme = Scheme::of(head);
        let signer = match scheme {
            Scheme::Anonymous => return Ok(Signer::Anonymous),
            Scheme::Unknown => {
                return Err(s3_error!(
                    AuthorizationHeaderMalformed,
                    "The authorization header is not one Ferry knows (AWS4-HMAC-SHA256 or AWS)"
                ));
            }
            Scheme::V4Header => v4::verify_header(head, &self.keys(), now)?,
            Scheme::V4Query => v4::verify_query(head, &self.keys(), now)?,
            Scheme::V2Header | Scheme::V2Query => {
                let bucket = self.virtual_host_bucket(head);
                v2::verify(head, scheme, bucket.as_deref(), &self.keys(), now)?
            }
        };
        Ok(Signer::Key(signer))
    }

    fn keys(&self) -> impl Fn(&str) -> Result<String, S3Error> + '_ {
        |access_key| {
            self.keyring
                .get(access_key)
                .map(|c| c.secret_key.clone())
                .ok_or_else(|| {
                    s3_error!(
                        InvalidAccessKeyId,
                        "The AWS Access Key Id you provided does not exist in our records."
                    )
                })
        }
    }

    /// The bucket a virtual-host request names in its Host (an address
    /// never names one), as s3s resolves it.
    fn virtual_host_bucket(&self, head: &Head<'_>) -> Option<String> {
        let hosts = self.hosts.as_ref()?;
        let host = head.host()?;
        let is_address = host.parse::<std::net::SocketAddr>().is_ok()
            || host.parse::<std::net::IpAddr>().is_ok();
        if is_address {
            return None;
        }
        hosts.bucket_of(host).map(|b| b.to_ascii_lowercase())
    }
}

fn mismatch() -> S3Error {
    s3_error!(
        SignatureDoesNotMatch,
        "The request signature we calculated does not match the signature you provided. Check your key and signing method."
    )
}

fn expired() -> S3Error {
    s3_error!(AccessDenied, "Request has expired")
}

fn skewed() -> S3Error {
    S3Error::with_message(
        S3ErrorCode::RequestTimeTooSkewed,
        "The difference between the request time and the server's time is too large",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemes_are_told_apart_by_header_and_query() {
        let scheme = |uri: &str, auth: Option<&str>| {
            let mut request = http::Request::builder().uri(uri);
            if let Some(auth) = auth {
                request = request.header("authorization", auth);
            }
            let request = request.body(()).expect("request");
            Scheme::of(&Head::of(&request))
        };
        assert_eq!(scheme("/b/k", None), Scheme::Anonymous);
        assert_eq!(
            scheme("/b/k", Some("AWS AK:c2lnbmF0dXJl")),
            Scheme::V2Header
        );
        assert_eq!(
            scheme("/b/k", Some("AWS4-HMAC-SHA256 Credential=AK/2013")),
            Scheme::V4Header
        );
        assert_eq!(scheme("/b/k", Some("Bearer x")), Scheme::Unknown);
        assert_eq!(
            scheme("/b/k?AWSAccessKeyId=AK&Expires=1&Signature=x", None),
            Scheme::V2Query
        );
        assert_eq!(
            scheme("/b/k?X-Amz-Signature=00&X-Amz-Date=x", None),
            Scheme::V4Query
        );
    }

    #[test]
    fn query_pairs_decode_as_a_form() {
        let uri: Uri = "/b?uploads&a=x%2By+z&empty=".parse().expect("uri");
        assert_eq!(
            query_pairs(&uri),
            vec![
                ("uploads".to_string(), String::new()),
                ("a".to_string(), "x+y z".to_string()),
                ("empty".to_string(), String::new()),
            ]
        );
    }
}
