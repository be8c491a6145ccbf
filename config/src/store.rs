//! Named data stores as configured, before any connection is made.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{ConfigError, Result};
use crate::raw::RawStore;

/// The lowest `max_bytes_per_sec` accepted: below it a store could not
/// serve a block in reasonable time, and the value is most likely a size
/// written without its unit.
const MIN_BYTES_PER_SEC: u64 = 64 << 10;
/// Retries of a failed store request, as object_store's default.
const DEFAULT_MAX_RETRIES: usize = 10;
/// How long a store request may keep retrying before failing.
const DEFAULT_RETRY_TIMEOUT: Duration = Duration::from_secs(30);

/// Which object_store backend a URL selects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreKind {
    /// `file:///abs/path`
    File { root: PathBuf },
    /// `memory://`: lost on restart; for tests and experiments.
    Memory,
    /// `s3://bucket/prefix`
    S3 { bucket: String },
    /// `gs://bucket/prefix`
    Gcs { bucket: String },
    /// `az://container/prefix`
    Azure { container: String },
}

/// A secret string that never shows in `Debug` output or logs.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// A validated store entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreSpec {
    pub name: String,
    pub url: String,
    pub kind: StoreKind,
    /// Key prefix inside the bucket (no leading or trailing `/`), may be empty.
    pub prefix: String,
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<Secret>,
    pub allow_http: bool,
    /// Whether the volume may delete blobs here.
    pub owned: bool,
    /// Added to every request; simulates a distant object store in
    /// benchmarks. Zero in production.
    pub simulated_latency: Duration,
    /// Reads in flight against this store at most; 0 means no cap.
    pub max_requests: usize,
    /// Bytes per second read from this store at most; `None`: no limit.
    pub max_bytes_per_sec: Option<u64>,
    /// Retries of a failed request, and how long retrying may take.
    pub max_retries: usize,
    pub retry_timeout: Duration,
    pub options: BTreeMap<String, String>,
    /// The stores a read falls back to, in order, when this one lacks the
    /// blob, fails or is slow (its chain is itself, then these).
    pub fallback: Vec<String>,
    /// With a fallback: how long one read of this store may take before
    /// the chain counts it failed and moves on (its own retries included).
    pub attempt_timeout: Duration,
    /// With a fallback: whether slow demand reads are hedged to the next
    /// store.
    pub hedge: bool,
}

/// Long enough for a block from a distant store with a retry or two, short
/// enough that a dead store costs a reader a few seconds, not a 503.
const DEFAULT_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(3);

impl StoreSpec {
    /// What the store is, without credentials or tuning: two specs with
    /// the same identity name the same bytes.
    pub fn identity(&self) -> String {
        format!("{}|{}", self.url, self.endpoint.as_deref().unwrap_or(""))
    }

    pub(crate) fn local_default(root: &Path) -> StoreSpec {
        StoreSpec {
            name: crate::DEFAULT_DATA_STORE.to_string(),
            url: format!("file://{}", root.display()),
            kind: StoreKind::File {
                root: root.to_path_buf(),
            },
            prefix: String::new(),
            endpoint: None,
            region: None,
            access_key_id: None,
            secret_access_key: None,
            allow_http: false,
            owned: true,
            simulated_latency: Duration::ZERO,
            max_requests: 256,
            max_bytes_per_sec: None,
            max_retries: DEFAULT_MAX_RETRIES,
            retry_timeout: DEFAULT_RETRY_TIMEOUT,
            options: BTreeMap::new(),
            fallback: Vec::new(),
            attempt_timeout: DEFAULT_ATTEMPT_TIMEOUT,
            hedge: true,
        }
    }

    pub(crate) fn from_raw(name: &str, raw: RawStore) -> Result<StoreSpec> {
        let field = |f: &str| format!("stores.{name}.{f}");
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_".contains(c))
        {
            return Err(ConfigError::invalid(
                format!("stores.{name}"),
                "a store name is letters, digits, '-' and '_'",
            ));
        }
        let (scheme, rest) = raw.url.split_once("://").ok_or_else(|| {
            ConfigError::invalid(
                field("url"),
                format!(
                    "{:?} has no scheme; use file://, memory://, s3://, gs:// or az://",
                    raw.url
                ),
            )
        })?;
        let (kind, prefix) = match scheme {
            "file" => {
                let root = PathBuf::from(rest);
                if !root.is_absolute() {
                    return Err(ConfigError::invalid(
                        field("url"),
                        format!(
                            "{:?}: a file store needs an absolute path (file:///path)",
                            raw.url
                        ),
                    ));
                }
                (StoreKind::File { root }, String::new())
            }
            "memory" => (StoreKind::Memory, String::new()),
            "s3" | "s3a" | "gs" | "az" | "azure" => {
                let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
                if bucket.is_empty() {
                    return Err(ConfigError::invalid(
                        field("url"),
                        format!("{:?} names no bucket", raw.url),
                    ));
                }
                let bucket = bucket.to_string();
                let kind = match scheme {
                    "s3" | "s3a" => StoreKind::S3 { bucket },
                    "gs" => StoreKind::Gcs { bucket },
                    _ => StoreKind::Azure { container: bucket },
                };
                (kind, prefix.trim_matches('/').to_string())
            }
            other => {
                return Err(ConfigError::invalid(
                    field("url"),
                    format!(
                        "unknown scheme {other:?}; use file://, memory://, s3://, gs:// or az://"
                    ),
                ));
            }
        };
        if let Some(endpoint) = &raw.endpoint
            && !(endpoint.starts_with("http://") || endpoint.starts_with("https://"))
        {
            return Err(ConfigError::invalid(
                field("endpoint"),
                format!("{endpoint:?} must start with http:// or https://"),
            ));
        }
        if raw.access_key_id.is_some() != raw.secret_access_key.is_some() {
            return Err(ConfigError::invalid(
                field("secret_access_key"),
                "access_key_id and secret_access_key are given together or not at all",
            ));
        }
        let max_bytes_per_sec = raw
            .max_bytes_per_sec
            .map(|rate| rate.as_u64())
            .filter(|&rate| rate > 0);
        if let Some(rate) = max_bytes_per_sec
            && rate < MIN_BYTES_PER_SEC
        {
            return Err(ConfigError::invalid(
                field("max_bytes_per_sec"),
                format!(
                    "{rate} bytes per second is too low to serve a read; a bare number is bytes: \
                     write a size like \"200MiB\", or 0 for no limit (at least 64KiB)"
                ),
            ));
        }
        let retry_timeout = raw.retry_timeout.unwrap_or(DEFAULT_RETRY_TIMEOUT);
        if retry_timeout.is_zero() {
            return Err(ConfigError::invalid(
                field("retry_timeout"),
                "must be longer than zero (set max_retries = 0 to disable retries)",
            ));
        }
        let allow_http = raw.allow_http.unwrap_or_else(|| {
            raw.endpoint
                .as_deref()
                .is_some_and(|e| e.starts_with("http://"))
        });
        Ok(StoreSpec {
            name: name.to_string(),
            url: raw.url,
            kind,
            prefix,
            endpoint: raw.endpoint,
            region: raw.region,
            access_key_id: raw.access_key_id,
            secret_access_key: raw.secret_access_key.map(Secret),
            allow_http,
            owned: raw.owned.unwrap_or(true),
            simulated_latency: raw.simulated_latency.unwrap_or_default(),
            max_requests: raw.max_requests.unwrap_or(256),
            max_bytes_per_sec,
            max_retries: raw.max_retries.unwrap_or(DEFAULT_MAX_RETRIES),
            retry_timeout,
            options: raw.options,
            fallback: raw.fallback,
            attempt_timeout: raw.attempt_timeout.unwrap_or(DEFAULT_ATTEMPT_TIMEOUT),
            hedge: raw.hedge.unwrap_or(true),
        })
    }
}
