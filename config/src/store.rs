//! `[stores.NAME]`: named data stores as configured, before any
//! connection is made.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytesize::ByteSize;
use serde::Deserialize;

use crate::error::{ConfigError, Result};

/// The lowest `max_bytes_per_sec` accepted: below it a store could not
/// serve a block in reasonable time, and the value is most likely a size
/// written without its unit.
const MIN_BYTES_PER_SEC: u64 = 64 << 10;
/// Retries of a failed store request, as object_store's default.
const DEFAULT_MAX_RETRIES: usize = 10;
/// How long a store request may keep retrying before failing.
const DEFAULT_RETRY_TIMEOUT: Duration = Duration::from_secs(30);

/// `[stores.NAME]` as written.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStore {
    /// `file:///abs/path`, `memory://`, `s3://bucket/prefix`,
    /// `gs://bucket/prefix`, `az://container/prefix`.
    pub url: String,
    /// S3-compatible endpoint, e.g. `http://127.0.0.1:9000`.
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    /// Allow plain-HTTP endpoints. Default false.
    pub allow_http: Option<bool>,
    /// Whether this volume owns the blobs in this store and may delete them.
    /// Default true; set false for an imported bucket.
    pub owned: Option<bool>,
    /// Latency added to every request, to measure Ferry against a distant
    /// store on one machine. Default none.
    #[serde(default, with = "humantime_serde")]
    pub simulated_latency: Option<Duration>,
    /// Reads in flight against this store at most (0: no cap). Default 256.
    pub max_requests: Option<usize>,
    /// Bytes per second read from this store at most, e.g. `"200MiB"`,
    /// with a burst of one second's worth; demand reads go before
    /// readahead, readahead before warm-up. `0` or absent: no limit.
    pub max_bytes_per_sec: Option<ByteSize>,
    /// Retries of a failed request (5xx, throttling, connection errors),
    /// with exponential backoff. Default 10; 0 disables retries.
    pub max_retries: Option<usize>,
    /// How long a request keeps retrying before its failure is answered
    /// (503 to the client). Default 30s: a client gives up long before
    /// object_store's own 3 minutes, and a failure it sees can be retried.
    #[serde(default, with = "humantime_serde")]
    pub retry_timeout: Option<Duration>,
    /// Further object_store options passed through as key/value pairs
    /// (e.g. `timeout = "30s"`, `connect_timeout = "5s"`).
    #[serde(default)]
    pub options: BTreeMap<String, String>,
    /// Stores to read from, in order, when this one lacks a blob, fails
    /// or is slow (a mirror region's chain: its own bucket, then the
    /// source region's). Default none.
    #[serde(default)]
    pub fallback: Vec<String>,
    /// With a fallback: how long one read here may take before the chain
    /// moves on. Default `3s`.
    #[serde(default, with = "humantime_serde")]
    pub attempt_timeout: Option<Duration>,
    /// With a fallback: hedge a demand read to the next store when this
    /// one is slower than its recent p95. Default true.
    pub hedge: Option<bool>,
}

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

/// Validates every `[stores.NAME]`, then the fallback chains between them.
pub(crate) fn validate(raw: BTreeMap<String, RawStore>) -> Result<BTreeMap<String, StoreSpec>> {
    let mut stores = BTreeMap::new();
    for (name, raw) in raw {
        let spec = StoreSpec::from_raw(&name, raw)?;
        stores.insert(name, spec);
    }
    for (name, spec) in &stores {
        for (i, next) in spec.fallback.iter().enumerate() {
            let field = format!("stores.{name}.fallback[{i}]");
            if next == name {
                return Err(ConfigError::invalid(
                    field,
                    "a store cannot fall back to itself",
                ));
            }
            if !stores.contains_key(next) {
                return Err(ConfigError::invalid(
                    field,
                    format!("no store named {next:?} under [stores]"),
                ));
            }
            if spec.fallback[..i].contains(next) {
                return Err(ConfigError::invalid(
                    field,
                    format!("{next:?} is listed twice"),
                ));
            }
        }
        if spec.attempt_timeout.is_zero() {
            return Err(ConfigError::invalid(
                format!("stores.{name}.attempt_timeout"),
                "must be greater than 0",
            ));
        }
    }
    Ok(stores)
}
