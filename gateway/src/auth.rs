//! Who may do what: SigV4 secrets by access key, per-credential rules
//! (read-only keys, keys limited to some buckets), and anonymous reads of
//! what a canned `public-read` ACL opens.

use std::collections::HashMap;
use std::sync::Arc;

use ferry_cache::region::mirror::MirrorState;
use ferry_config::Credential;
use ferry_meta::{CannedAcl, Meta, MetaError};
use s3s::access::{S3Access, S3AccessContext};
use s3s::auth::{S3Auth, SecretKey};
use s3s::path::S3Path;
use s3s::{S3Result, s3_error};

use crate::error::IntoS3Error;

/// The credentials a gateway accepts, by access key, and the region
/// signatures must be scoped to.
#[derive(Clone, Default)]
pub struct Keyring {
    by_access_key: Arc<HashMap<String, Credential>>,
    region: Arc<str>,
}

impl Keyring {
    pub fn new(credentials: &[Credential], region: &str) -> Keyring {
        Keyring {
            by_access_key: Arc::new(
                credentials
                    .iter()
                    .map(|c| (c.access_key.clone(), c.clone()))
                    .collect(),
            ),
            region: region.into(),
        }
    }

    pub fn get(&self, access_key: &str) -> Option<&Credential> {
        self.by_access_key.get(access_key)
    }
}

#[async_trait::async_trait]
impl S3Auth for Keyring {
    async fn get_secret_key(&self, access_key: &str) -> S3Result<SecretKey> {
        match self.get(access_key) {
            Some(c) => Ok(SecretKey::from(c.secret_key.as_str())),
            None => Err(s3_error!(
                InvalidAccessKeyId,
                "The AWS Access Key Id you provided does not exist in our records."
            )),
        }
    }
}

/// Operations a read-only key may perform. Everything else changes state.
const READ_OPERATIONS: &[&str] = &[
    "GetObject",
    "HeadObject",
    "ListObjects",
    "ListObjectsV2",
    "ListObjectVersions",
    "ListBuckets",
    "HeadBucket",
    "GetBucketLocation",
    "GetBucketVersioning",
    "GetBucketAcl",
    "GetObjectAcl",
    "ListParts",
    "ListMultipartUploads",
    "GetObjectAttributes",
];

pub(crate) fn is_read_operation(name: &str) -> bool {
    READ_OPERATIONS.contains(&name)
}

/// The region of a SigV4 credential scope (`AK/date/region/s3/aws4_request`),
/// from the Authorization header or a presigned URL's X-Amz-Credential.
fn signed_region(headers: &http::HeaderMap, uri: &http::Uri) -> Option<String> {
    let scope = if let Some(auth) = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let rest = auth.strip_prefix("AWS4-HMAC-SHA256")?;
        let at = rest.find("Credential=")?;
        rest[at + "Credential=".len()..]
            .split([',', ' '])
            .next()?
            .to_string()
    } else {
        let query = uri.query()?;
        let raw = query
            .split('&')
            .find_map(|pair| pair.strip_prefix("X-Amz-Credential="))?;
        percent_encoding::percent_decode_str(raw)
            .decode_utf8()
            .ok()?
            .into_owned()
    };
    scope.split('/').nth(2).map(str::to_string)
}

/// Operations an anonymous request may make of a public-read bucket (or,
/// for the object reads, of a public-read object).
const ANONYMOUS_READS: &[&str] = &[
    "GetObject",
    "HeadObject",
    "ListObjects",
    "ListObjectsV2",
    "HeadBucket",
];

/// The access check: signed requests by their key's rules, anonymous ones
/// by the canned ACL of the bucket (or object) they read.
#[derive(Clone)]
pub struct Access {
    keyring: Keyring,
    meta: Arc<dyn Meta>,
    /// In a mirror region: this region's name and what it knows of its
    /// source; every write is refused.
    mirror: Option<(String, Arc<MirrorState>)>,
}

impl Access {
    pub fn new(keyring: Keyring, meta: Arc<dyn Meta>) -> Access {
        Access {
            keyring,
            meta,
            mirror: None,
        }
    }

    /// Refuses every write: this region is a mirror.
    pub fn read_only_mirror(mut self, region: &str, state: Arc<MirrorState>) -> Access {
        self.mirror = Some((region.to_string(), state));
        self
    }

    /// An anonymous request passes only as a read of a public-read bucket
    /// or object. A bucket that does not exist is NoSuchBucket, whatever
    /// the operation, as S3 answers (bucket names are global and public
    /// there); inside a bucket, a private or missing key is AccessDenied
    /// alike, so anonymous callers learn nothing about what a private
    /// bucket holds.
    async fn check_anonymous(&self, operation: &str, path: &S3Path) -> S3Result<()> {
        let denied = || {
            s3_error!(
                AccessDenied,
                "Anonymous access is not allowed here; sign the request"
            )
        };
        let (bucket, key) = match path {
            // Creating a bucket names one that does not exist yet.
            _ if operation == "CreateBucket" => return Err(denied()),
            S3Path::Root => return Err(denied()),
            S3Path::Bucket { bucket } => (bucket.as_ref(), None),
            S3Path::Object { bucket, key } => (bucket.as_ref(), Some(key.as_ref())),
        };
        let refused = |e: MetaError| match e {
            MetaError::Unavailable(_) | MetaError::Internal(_) => e.into_s3(),
            _ => denied(),
        };
        let info = match self.meta.bucket(bucket).await {
            Ok(info) => info,
            Err(e @ MetaError::NoSuchBucket { .. }) => return Err(e.into_s3()),
            Err(e) => return Err(refused(e)),
        };
        if !ANONYMOUS_READS.contains(&operation) {
            return Err(denied());
        }
        if info.acl == CannedAcl::PublicRead {
            return Ok(());
        }
        if let Some(key) = key
            && self.meta.head(bucket, key).await.map_err(refused)?.acl == CannedAcl::PublicRead
        {
            return Ok(());
        }
        Err(denied())
    }
}

#[async_trait::async_trait]
impl S3Access for Access {
    async fn check(&self, cx: &mut S3AccessContext<'_>) -> S3Result<()> {
        let operation = cx.s3_op().name().to_string();
        crate::http::note_operation(&operation);
        let Some(credentials) = cx.credentials() else {
            return self.check_anonymous(&operation, cx.s3_path()).await;
        };
        let Some(credential) = self.keyring.get(&credentials.access_key) else {
            return Err(s3_error!(InvalidAccessKeyId));
        };
        if let Some(region) = signed_region(cx.headers(), cx.uri())
            && region != *self.keyring.region
        {
            return Err(s3_error!(
                AuthorizationHeaderMalformed,
                "the region '{region}' is wrong; expecting '{}'",
                self.keyring.region
            ));
        }
        let bucket = match cx.s3_path() {
            S3Path::Root => None,
            S3Path::Bucket { bucket } | S3Path::Object { bucket, .. } => Some(bucket.as_ref()),
        };
        if let Some(bucket) = bucket
            && !credential.allows_bucket(bucket)
        {
            return Err(s3_error!(
                AccessDenied,
                "This key may not access bucket {bucket}"
            ));
        }
        if credential.read_only && !is_read_operation(&operation) {
            return Err(s3_error!(AccessDenied, "This key is read-only"));
        }
        if let Some((region, state)) = &self.mirror
            && !is_read_operation(&operation)
        {
            return Err(crate::error::read_only_mirror(region, &state.source()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn region_comes_from_the_header_or_the_presigned_query() {
        let mut headers = http::HeaderMap::new();
        headers.insert(
            http::header::AUTHORIZATION,
            "AWS4-HMAC-SHA256 Credential=AK/20261129/eu-west-1/s3/aws4_request, SignedHeaders=host, Signature=00"
                .parse()
                .expect("header"),
        );
        let uri: http::Uri = "/b/k".parse().expect("uri");
        assert_eq!(signed_region(&headers, &uri).as_deref(), Some("eu-west-1"));
        let presigned: http::Uri = "/b/k?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AK%2F20261129%2Fus-east-1%2Fs3%2Faws4_request"
            .parse()
            .expect("uri");
        assert_eq!(
            signed_region(&http::HeaderMap::new(), &presigned).as_deref(),
            Some("us-east-1")
        );
        assert_eq!(signed_region(&http::HeaderMap::new(), &uri), None);
    }
}
