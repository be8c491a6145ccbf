//! Whole S3 requests through a node's S3 service, in process: the
//! preflight, both signature checks, s3s's parsing (ranges, conditional
//! headers, XML bodies, query arguments) and Ferry's handlers (listing
//! tokens and markers, multipart, copies, ACLs). Requests are signed or
//! not, path-style or virtual-host.
//!
//! Beyond "no panic": no answer is a 500 (bad input is the client's
//! error, and this node's store and metadata do not fail), and a GET
//! answered 200 or 206 carries exactly the bytes its Content-Length says.

#![no_main]

use std::sync::OnceLock;

use arbitrary::Arbitrary;
use ferry_fuzz::sigv4::{self, Key};
use ferry_fuzz::{open_node, read_body, runtime};
use ferry_gateway::http::Instrumented;
use libfuzzer_sys::fuzz_target;

const ACCESS: &str = "fuzz-access";
const SECRET: &str = "fuzz-secret-fuzz-secret";
const DOMAIN: &str = "s3.fuzz.test";
/// The largest answer read back: every seeded object fits well within.
const BODY_CAP: usize = 8 << 20;

struct Fixture {
    service: Instrumented,
    /// A multipart upload seeded in `public/mp`, for inputs to name.
    upload_id: String,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let node = open_node(&format!(
            "[[credentials]]\naccess_key = \"{ACCESS}\"\nsecret_key = \"{SECRET}\"\n\n\
             [server]\ndomains = [\"{DOMAIN}\"]\nmax_put_size = \"8MiB\"\n\n\
             [cache]\nmemory = \"16MiB\"\ndisk = \"0\"\nblock_size = \"1MiB\"\n"
        ));
        let service = ferry_gateway::http::service(node).expect("the S3 service builds");
        let fixture = Fixture {
            service,
            upload_id: String::new(),
        };
        seed(fixture)
    })
}

/// Buckets `public` (public-read) and `private`, a few objects across
/// blocks, and an unfinished multipart upload.
fn seed(mut fixture: Fixture) -> Fixture {
    let put = |path: &[&str], query: &[(&str, &str)], headers: &[(&str, &str)], body: Vec<u8>| {
        let (status, text) = send_signed(&fixture.service, "PUT", path, query, headers, body);
        assert!(status < 300, "seeding {path:?} {query:?}: {status} {text}");
        text
    };
    put(
        &["public"],
        &[],
        &[("x-amz-acl", "public-read")],
        Vec::new(),
    );
    put(&["private"], &[], &[], Vec::new());
    put(
        &["public", "small"],
        &[],
        &[("content-type", "text/plain")],
        b"0123456789".repeat(10),
    );
    put(
        &["public", "multi"],
        &[],
        &[("x-amz-meta-kind", "weights")],
        (0..2_621_440u32).map(|i| (i % 251) as u8).collect(),
    );
    put(&["public", "dir/a"], &[], &[], b"a".to_vec());
    put(&["public", "dir/b"], &[], &[], b"b".to_vec());
    put(&["private", "secret"], &[], &[], b"private bytes".to_vec());
    let (status, text) = send_signed(
        &fixture.service,
        "POST",
        &["public", "mp"],
        &[("uploads", "")],
        &[],
        Vec::new(),
    );
    assert_eq!(status, 200, "{text}");
    let upload_id = text
        .split("<UploadId>")
        .nth(1)
        .and_then(|rest| rest.split("</UploadId>").next())
        .expect("an upload id")
        .to_string();
    put(
        &["public", "mp"],
        &[("partNumber", "1"), ("uploadId", &upload_id)],
        &[],
        vec![7u8; 1024],
    );
    fixture.upload_id = upload_id;
    fixture
}

fn send_signed(
    service: &Instrumented,
    method: &str,
    path: &[&str],
    query: &[(&str, &str)],
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> (u16, String) {
    let pairs: Vec<(String, String)> = query
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect();
    let path = sigv4::path(path);
    let query = sigv4::query(&pairs);
    let mut request = http::Request::builder()
        .method(method)
        .uri(if query.is_empty() {
            path.clone()
        } else {
            format!("{path}?{query}")
        })
        .header("host", "localhost")
        .header("content-length", body.len().to_string());
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let key = Key {
        access: ACCESS,
        secret: SECRET,
    };
    for (name, value) in sigv4::header_auth(
        &key,
        method,
        "localhost",
        &path,
        &query,
        time::OffsetDateTime::now_utc(),
    ) {
        request = request.header(name, value);
    }
    let request = request
        .body(s3s::Body::from(bytes::Bytes::from(body)))
        .expect("a request");
    runtime().block_on(async {
        let response = service.serve(request).await.expect("an answer");
        let status = response.status().as_u16();
        let body = read_body(response.into_body(), BODY_CAP)
            .await
            .unwrap_or_default();
        (status, String::from_utf8_lossy(&body).into_owned())
    })
}

#[derive(Arbitrary, Debug)]
enum Method {
    Get,
    Head,
    Put,
    Post,
    Delete,
    Options,
    Other(String),
}

#[derive(Arbitrary, Debug)]
enum Bucket {
    Public,
    Private,
    Missing,
    Other(String),
}

#[derive(Arbitrary, Debug)]
enum ObjectKey {
    None,
    Small,
    Multi,
    Dir,
    Upload,
    Other(String),
}

#[derive(Arbitrary, Debug)]
enum Param {
    Uploads,
    UploadId,
    PartNumber,
    VersionId,
    ListType,
    ContinuationToken,
    StartAfter,
    Prefix,
    Delimiter,
    MaxKeys,
    Marker,
    Acl,
    Delete,
    Versioning,
    Versions,
    KeyMarker,
    VersionIdMarker,
    UploadIdMarker,
    PartNumberMarker,
    MaxParts,
    EncodingType,
    FetchOwner,
    Location,
    Tagging,
    ResponseContentType,
    Other(String),
}

impl Param {
    fn name(&self) -> &str {
        match self {
            Param::Uploads => "uploads",
            Param::UploadId => "uploadId",
            Param::PartNumber => "partNumber",
            Param::VersionId => "versionId",
            Param::ListType => "list-type",
            Param::ContinuationToken => "continuation-token",
            Param::StartAfter => "start-after",
            Param::Prefix => "prefix",
            Param::Delimiter => "delimiter",
            Param::MaxKeys => "max-keys",
            Param::Marker => "marker",
            Param::Acl => "acl",
            Param::Delete => "delete",
            Param::Versioning => "versioning",
            Param::Versions => "versions",
            Param::KeyMarker => "key-marker",
            Param::VersionIdMarker => "version-id-marker",
            Param::UploadIdMarker => "upload-id-marker",
            Param::PartNumberMarker => "part-number-marker",
            Param::MaxParts => "max-parts",
            Param::EncodingType => "encoding-type",
            Param::FetchOwner => "fetch-owner",
            Param::Location => "location",
            Param::Tagging => "tagging",
            Param::ResponseContentType => "response-content-type",
            Param::Other(name) => name,
        }
    }
}

#[derive(Arbitrary, Debug)]
enum Header {
    Range,
    IfMatch,
    IfNoneMatch,
    IfModifiedSince,
    IfUnmodifiedSince,
    ContentMd5,
    ContentType,
    ContentLength,
    ContentEncoding,
    TransferEncoding,
    Expect,
    Acl,
    CopySource,
    CopySourceRange,
    CopySourceIfMatch,
    MetadataDirective,
    Meta(String),
    ChecksumCrc32,
    ChecksumSha256,
    ChecksumAlgorithm,
    DecodedContentLength,
    ContentSha256,
    Authorization,
    AmzDate,
    Date,
    Other(String),
}

impl Header {
    fn name(&self) -> String {
        match self {
            Header::Range => "range".into(),
            Header::IfMatch => "if-match".into(),
            Header::IfNoneMatch => "if-none-match".into(),
            Header::IfModifiedSince => "if-modified-since".into(),
            Header::IfUnmodifiedSince => "if-unmodified-since".into(),
            Header::ContentMd5 => "content-md5".into(),
            Header::ContentType => "content-type".into(),
            Header::ContentLength => "content-length".into(),
            Header::ContentEncoding => "content-encoding".into(),
            Header::TransferEncoding => "transfer-encoding".into(),
            Header::Expect => "expect".into(),
            Header::Acl => "x-amz-acl".into(),
            Header::CopySource => "x-amz-copy-source".into(),
            Header::CopySourceRange => "x-amz-copy-source-range".into(),
            Header::CopySourceIfMatch => "x-amz-copy-source-if-match".into(),
            Header::MetadataDirective => "x-amz-metadata-directive".into(),
            Header::Meta(name) => format!("x-amz-meta-{name}"),
            Header::ChecksumCrc32 => "x-amz-checksum-crc32".into(),
            Header::ChecksumSha256 => "x-amz-checksum-sha256".into(),
            Header::ChecksumAlgorithm => "x-amz-sdk-checksum-algorithm".into(),
            Header::DecodedContentLength => "x-amz-decoded-content-length".into(),
            Header::ContentSha256 => "x-amz-content-sha256".into(),
            Header::Authorization => "authorization".into(),
            Header::AmzDate => "x-amz-date".into(),
            Header::Date => "date".into(),
            Header::Other(name) => name.clone(),
        }
    }
}

#[derive(Arbitrary, Debug)]
enum Auth {
    Anonymous,
    Signed,
    Presigned,
}

#[derive(Arbitrary, Debug)]
struct Input {
    method: Method,
    bucket: Bucket,
    key: ObjectKey,
    virtual_host: bool,
    params: Vec<(Param, String)>,
    headers: Vec<(Header, String)>,
    body: Vec<u8>,
    auth: Auth,
}

fuzz_target!(|input: Input| {
    let fixture = fixture();
    let method = match &input.method {
        Method::Get => "GET",
        Method::Head => "HEAD",
        Method::Put => "PUT",
        Method::Post => "POST",
        Method::Delete => "DELETE",
        Method::Options => "OPTIONS",
        Method::Other(other) => other.as_str(),
    };
    let Ok(method) = http::Method::from_bytes(method.as_bytes()) else {
        return;
    };
    let bucket = match &input.bucket {
        Bucket::Public => "public",
        Bucket::Private => "private",
        Bucket::Missing => "missing",
        Bucket::Other(name) => name.as_str(),
    };
    let key = match &input.key {
        ObjectKey::None => None,
        ObjectKey::Small => Some("small"),
        ObjectKey::Multi => Some("multi"),
        ObjectKey::Dir => Some("dir/a"),
        ObjectKey::Upload => Some("mp"),
        ObjectKey::Other(key) => Some(key.as_str()),
    };
    let pairs: Vec<(String, String)> = input
        .params
        .iter()
        .map(|(param, value)| {
            let value = match param {
                Param::UploadId if value.is_empty() => fixture.upload_id.clone(),
                _ => value.clone(),
            };
            (param.name().to_string(), value)
        })
        .collect();
    let (host, mut segments) = if input.virtual_host {
        (format!("{bucket}.{DOMAIN}"), Vec::new())
    } else {
        ("localhost".to_string(), vec![bucket])
    };
    segments.extend(key);
    let path = sigv4::path(&segments);
    let now = time::OffsetDateTime::now_utc();
    let key = Key {
        access: ACCESS,
        secret: SECRET,
    };
    let query = match input.auth {
        Auth::Presigned => sigv4::presigned_query(&key, method.as_str(), &host, &path, &pairs, now),
        _ => sigv4::query(&pairs),
    };
    let uri = if query.is_empty() {
        path.clone()
    } else {
        format!("{path}?{query}")
    };
    let mut request = http::Request::builder()
        .method(method.clone())
        .uri(&uri)
        .header("host", &host);
    for (header, value) in &input.headers {
        let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(header.name().as_bytes()),
            http::HeaderValue::from_str(value),
        ) else {
            continue;
        };
        request = request.header(name, value);
    }
    if let Auth::Signed = input.auth {
        for (name, value) in sigv4::header_auth(&key, method.as_str(), &host, &path, &query, now) {
            request = request.header(name, value);
        }
    }
    let Ok(request) = request.body(s3s::Body::from(bytes::Bytes::from(input.body))) else {
        return;
    };
    runtime().block_on(async {
        let Ok(response) = fixture.service.serve(request).await else {
            return;
        };
        let status = response.status().as_u16();
        let length = response
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        let body = read_body(response.into_body(), BODY_CAP).await;
        assert_ne!(
            status,
            500,
            "{method} {uri}: an internal error: {}",
            String::from_utf8_lossy(body.as_deref().unwrap_or_default())
        );
        if method == http::Method::GET
            && (status == 200 || status == 206)
            && let (Some(length), Some(body)) = (length, body.as_ref())
        {
            assert_eq!(
                body.len(),
                length,
                "{method} {uri}: the body is not its Content-Length"
            );
        }
    });
});
