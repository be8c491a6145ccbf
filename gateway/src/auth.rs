//! Who may do what: SigV4 secrets by access key, and per-credential rules
//! (read-only keys, keys limited to some buckets).

use std::collections::HashMap;
use std::sync::Arc;

use ferry_config::Credential;
use s3s::access::{S3Access, S3AccessContext};
use s3s::auth::{S3Auth, SecretKey};
use s3s::path::S3Path;
use s3s::{s3_error, S3Result};

/// The credentials a gateway accepts, by access key.
#[derive(Clone, Default)]
pub struct Keyring {
    by_access_key: Arc<HashMap<String, Credential>>,
}

impl Keyring {
    pub fn new(credentials: &[Credential]) -> Keyring {
        Keyring {
            by_access_key: Arc::new(
                credentials
                    .iter()
                    .map(|c| (c.access_key.clone(), c.clone()))
                    .collect(),
            ),
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
    "ListParts",
    "ListMultipartUploads",
    "GetObjectAttributes",
];

pub(crate) fn is_read_operation(name: &str) -> bool {
    READ_OPERATIONS.contains(&name)
}

#[async_trait::async_trait]
impl S3Access for Keyring {
    async fn check(&self, cx: &mut S3AccessContext<'_>) -> S3Result<()> {
        let operation = cx.s3_op().name().to_string();
        crate::http::note_operation(&operation);
        let Some(credentials) = cx.credentials() else {
            return Err(s3_error!(AccessDenied, "Anonymous access is not allowed; sign the request"));
        };
        let Some(credential) = self.get(&credentials.access_key) else {
            return Err(s3_error!(InvalidAccessKeyId));
        };
        let bucket = match cx.s3_path() {
            S3Path::Root => None,
            S3Path::Bucket { bucket } | S3Path::Object { bucket, .. } => Some(bucket.as_ref()),
        };
        if let Some(bucket) = bucket
            && !credential.allows_bucket(bucket)
        {
            return Err(s3_error!(AccessDenied, "This key may not access bucket {bucket}"));
        }
        if credential.read_only && !is_read_operation(&operation) {
            return Err(s3_error!(AccessDenied, "This key is read-only"));
        }
        Ok(())
    }
}
