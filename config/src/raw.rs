//! The configuration as written: every field optional, unknown keys refused.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytesize::ByteSize;
use serde::Deserialize;

use crate::cluster::RawCluster;
use crate::error::{ConfigError, Result};
use crate::region::RawRegion;
use crate::store::StoreSpec;
use crate::{
    CacheConfig, Config, Credential, DEFAULT_DATA_STORE, GcConfig, MetaConfig, Overrides,
    ServerConfig,
};

/// A whole `ferry.toml`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// Default `./ferry-data`.
    pub data_dir: Option<PathBuf>,
    #[serde(default)]
    pub server: RawServer,
    #[serde(default)]
    pub meta: RawMeta,
    /// `[stores.NAME]` tables.
    #[serde(default)]
    pub stores: BTreeMap<String, RawStore>,
    #[serde(default)]
    pub volume: RawGc,
    #[serde(default)]
    pub cache: RawCache,
    /// `[[credentials]]` entries.
    #[serde(default)]
    pub credentials: Vec<RawCredential>,
    /// `[cluster]`; absent: a single node.
    pub cluster: Option<RawCluster>,
    #[serde(default)]
    pub admin: RawAdmin,
    /// `[region]`; absent: one region, no change feed.
    pub region: Option<RawRegion>,
    /// `[[imports]]`: imports re-run on a schedule.
    #[serde(default)]
    pub imports: Vec<crate::imports::RawImport>,
}

/// `[admin]`: the admin API's mutating endpoints (cluster weights).
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    /// Bearer token those endpoints require (or `FERRY_ADMIN_TOKEN`).
    /// Default none: they answer 401. `/health` and `/metrics` stay open.
    pub token: Option<String>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    /// Default `127.0.0.1:9000`.
    pub listen: Option<String>,
    /// Default `127.0.0.1:9001`.
    pub admin_listen: Option<String>,
    /// Default `us-east-1`.
    pub region: Option<String>,
    /// Default `30s`.
    #[serde(default, with = "humantime_serde")]
    pub shutdown_grace: Option<Duration>,
    /// Default `5GiB`.
    pub max_put_size: Option<ByteSize>,
    /// Base domains for virtual-host style requests (`bucket.<domain>`).
    /// Default none: path style only.
    #[serde(default)]
    pub domains: Vec<String>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMeta {
    /// `embedded` (default) or a `redis://` / `rediss://` URL.
    pub engine: Option<String>,
    /// redb file for the embedded engine. Default `<data_dir>/meta.redb`.
    pub path: Option<PathBuf>,
    /// Prefix of every Redis key, so several volumes share one Redis.
    /// Default `ferry`.
    pub redis_prefix: Option<String>,
    /// Run on a Redis without AOF persistence, accepting that metadata may
    /// be lost. Default false: such a Redis is refused at start.
    #[serde(default)]
    pub allow_volatile_redis: bool,
}

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

/// `[cache]`: the block cache in front of the stores.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCache {
    /// Memory tier. Default: a quarter of the machine's memory, at most 8 GiB.
    pub memory: Option<ByteSize>,
    /// Disk tier; `0` turns it off. Default `10GiB`.
    pub disk: Option<ByteSize>,
    /// Folder of the disk tier. Default `<data_dir>/cache`.
    pub dir: Option<PathBuf>,
    /// Block size, 1 MiB to 64 MiB. Default `4MiB`.
    pub block_size: Option<ByteSize>,
    /// Bytes one streaming read keeps in flight ahead of the client.
    /// Default `64MiB`.
    pub readahead: Option<ByteSize>,
    /// Bytes of blocks all reads together may hold between fetch and send;
    /// when spent, reads wait. Part of `memory`, at most half of it.
    /// Default `256MiB`.
    pub inflight: Option<ByteSize>,
    /// Key patterns (`*` any characters, `?` one) under which the first
    /// read of an object's first block warms the whole object into the
    /// cluster in the background, once per object version. Default none.
    #[serde(default)]
    pub warm_on_open: Vec<String>,
}

/// `[volume]`: where blobs go and how they are collected.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGc {
    /// Store for new blobs. Default `data`, which, when not configured, is
    /// `file://<data_dir>/blobs`.
    pub data_store: Option<String>,
    /// Default `24h`.
    #[serde(default, with = "humantime_serde")]
    pub gc_grace: Option<Duration>,
    /// Default `60s`.
    #[serde(default, with = "humantime_serde")]
    pub gc_interval: Option<Duration>,
    /// Default `5m`.
    #[serde(default, with = "humantime_serde")]
    pub gc_lease: Option<Duration>,
    /// Multipart uploads older than this are aborted. Default `7d`.
    #[serde(default, with = "humantime_serde")]
    pub upload_expiry: Option<Duration>,
    /// How often a metadata dump is written into the data store; absent
    /// means never. Example `6h`.
    #[serde(default, with = "humantime_serde")]
    pub dump_interval: Option<Duration>,
    /// Scheduled dumps kept in the data store. Default 7.
    pub dump_keep: Option<usize>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCredential {
    pub access_key: String,
    pub secret_key: String,
    /// Only these buckets; absent means all.
    pub buckets: Option<Vec<String>>,
    /// Default false.
    #[serde(default)]
    pub read_only: bool,
}

impl RawConfig {
    pub fn from_file(path: &Path) -> Result<RawConfig> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_toml(&text).map_err(|e| match e {
            ConfigError::Parse { message, .. } => ConfigError::Parse {
                path: path.to_path_buf(),
                message,
            },
            other => other,
        })
    }

    pub fn from_toml(text: &str) -> Result<RawConfig> {
        toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: PathBuf::from("<inline>"),
            message: e.to_string().trim_end().to_string(),
        })
    }

    /// Applies `FERRY_*` variables from `env`, then `flags`, then validates.
    pub fn build(mut self, env: &HashMap<String, String>, flags: &Overrides) -> Result<Config> {
        self.apply_env(env)?;
        if let Some(dir) = &flags.data_dir {
            self.data_dir = Some(dir.clone());
        }
        if let Some(addr) = flags.listen {
            self.server.listen = Some(addr.to_string());
        }
        if let Some(addr) = flags.admin_listen {
            self.server.admin_listen = Some(addr.to_string());
        }
        if !flags.domains.is_empty() {
            self.server.domains = flags.domains.clone();
        }
        self.validate()
    }

    fn apply_env(&mut self, env: &HashMap<String, String>) -> Result<()> {
        let get = |name: &str| env.get(name).filter(|v| !v.is_empty());
        if let Some(v) = get("FERRY_DATA_DIR") {
            self.data_dir = Some(PathBuf::from(v));
        }
        if let Some(v) = get("FERRY_LISTEN") {
            self.server.listen = Some(v.clone());
        }
        if let Some(v) = get("FERRY_ADMIN_LISTEN") {
            self.server.admin_listen = Some(v.clone());
        }
        if let Some(v) = get("FERRY_REGION") {
            self.server.region = Some(v.clone());
        }
        if let Some(v) = get("FERRY_DOMAIN") {
            self.server.domains = v
                .split(',')
                .map(|d| d.trim().to_string())
                .filter(|d| !d.is_empty())
                .collect();
        }
        if let Some(v) = get("FERRY_META") {
            self.meta.engine = Some(v.clone());
        }
        if let Some(v) = get("FERRY_GC_GRACE") {
            self.volume.gc_grace = Some(parse_env_duration("FERRY_GC_GRACE", v)?);
        }
        if let Some(v) = get("FERRY_GC_INTERVAL") {
            self.volume.gc_interval = Some(parse_env_duration("FERRY_GC_INTERVAL", v)?);
        }
        if let Some(cluster) = &mut self.cluster {
            cluster.apply_env(env);
        }
        if let Some(region) = &mut self.region {
            region.apply_env(env);
        }
        if let Some(v) = get("FERRY_ADMIN_TOKEN") {
            self.admin.token = Some(v.clone());
        }
        if let Some(v) = get("FERRY_UPLOAD_EXPIRY") {
            self.volume.upload_expiry = Some(parse_env_duration("FERRY_UPLOAD_EXPIRY", v)?);
        }
        match (get("FERRY_ACCESS_KEY"), get("FERRY_SECRET_KEY")) {
            (Some(access_key), Some(secret_key)) => self.credentials.push(RawCredential {
                access_key: access_key.clone(),
                secret_key: secret_key.clone(),
                buckets: None,
                read_only: false,
            }),
            (None, None) => {}
            (Some(_), None) => {
                return Err(ConfigError::Env {
                    var: "FERRY_SECRET_KEY".into(),
                    reason: "must be set when FERRY_ACCESS_KEY is".into(),
                });
            }
            (None, Some(_)) => {
                return Err(ConfigError::Env {
                    var: "FERRY_ACCESS_KEY".into(),
                    reason: "must be set when FERRY_SECRET_KEY is".into(),
                });
            }
        }
        Ok(())
    }

    fn validate(self) -> Result<Config> {
        let data_dir = self.data_dir.unwrap_or_else(|| PathBuf::from("ferry-data"));
        let server = ServerConfig {
            listen: parse_addr(
                "server.listen",
                self.server.listen.as_deref(),
                "127.0.0.1:9000",
            )?,
            admin_listen: parse_addr(
                "server.admin_listen",
                self.server.admin_listen.as_deref(),
                "127.0.0.1:9001",
            )?,
            region: match self.server.region {
                Some(r)
                    if r.is_empty()
                        || !r.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') =>
                {
                    return Err(ConfigError::invalid(
                        "server.region",
                        format!("{r:?} is not a region name (letters, digits and '-')"),
                    ));
                }
                Some(r) => r,
                None => "us-east-1".to_string(),
            },
            shutdown_grace: self
                .server
                .shutdown_grace
                .unwrap_or(Duration::from_secs(30)),
            domains: self.server.domains.clone(),
            max_put_size: self.server.max_put_size.map_or(5 << 30, |s| s.as_u64()),
        };
        for (i, domain) in server.domains.iter().enumerate() {
            let valid = !domain.is_empty()
                && domain.split('.').all(|label| {
                    !label.is_empty()
                        && label.len() <= 63
                        && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                });
            if !valid {
                return Err(ConfigError::invalid(
                    format!("server.domains[{i}]"),
                    format!("{domain:?} is not a DNS name like s3.example.com"),
                ));
            }
        }
        if server.max_put_size == 0 {
            return Err(ConfigError::invalid(
                "server.max_put_size",
                "must be greater than 0",
            ));
        }

        let meta = match self.meta.engine.as_deref() {
            None | Some("embedded") => MetaConfig::Embedded {
                path: self.meta.path.unwrap_or_else(|| data_dir.join("meta.redb")),
            },
            Some(url) if url.starts_with("redis://") || url.starts_with("rediss://") => {
                let prefix = self
                    .meta
                    .redis_prefix
                    .unwrap_or_else(|| "ferry".to_string());
                if prefix.is_empty()
                    || prefix.contains(|c: char| c.is_whitespace() || c == '{' || c == '}')
                {
                    return Err(ConfigError::invalid(
                        "meta.redis_prefix",
                        format!("{prefix:?} must be non-empty, without spaces or braces"),
                    ));
                }
                MetaConfig::Redis {
                    url: url.to_string(),
                    prefix,
                    allow_volatile: self.meta.allow_volatile_redis,
                }
            }
            Some(other) => {
                return Err(ConfigError::invalid(
                    "meta.engine",
                    format!(
                        "{other:?} is not an engine: use \"embedded\" or a redis:// or rediss:// URL"
                    ),
                ));
            }
        };

        let mut stores = BTreeMap::new();
        for (name, raw) in self.stores {
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
        let data_store = self
            .volume
            .data_store
            .unwrap_or_else(|| DEFAULT_DATA_STORE.to_string());
        if !stores.contains_key(&data_store) {
            if data_store != DEFAULT_DATA_STORE {
                return Err(ConfigError::invalid(
                    "volume.data_store",
                    format!("no store named {data_store:?} under [stores]"),
                ));
            }
            stores.insert(
                data_store.clone(),
                StoreSpec::local_default(&data_dir.join("blobs")),
            );
        }
        if stores.get(&data_store).is_some_and(|s| !s.owned) {
            return Err(ConfigError::invalid(
                "volume.data_store",
                format!(
                    "store {data_store:?} has owned = false; new blobs must go to a store the volume owns"
                ),
            ));
        }

        let gc = GcConfig {
            grace: self
                .volume
                .gc_grace
                .unwrap_or(Duration::from_secs(24 * 3600)),
            interval: self.volume.gc_interval.unwrap_or(Duration::from_secs(60)),
            lease: self.volume.gc_lease.unwrap_or(Duration::from_secs(300)),
            upload_expiry: self
                .volume
                .upload_expiry
                .unwrap_or(Duration::from_secs(7 * 24 * 3600)),
            dump_interval: self.volume.dump_interval,
            dump_keep: self.volume.dump_keep.unwrap_or(7),
        };
        if gc.dump_keep == 0 {
            return Err(ConfigError::invalid(
                "volume.dump_keep",
                "must keep at least one dump",
            ));
        }
        for (field, value) in [
            ("volume.gc_grace", gc.grace),
            ("volume.gc_interval", gc.interval),
            ("volume.gc_lease", gc.lease),
            ("volume.upload_expiry", gc.upload_expiry),
            (
                "volume.dump_interval",
                gc.dump_interval.unwrap_or(Duration::from_secs(1)),
            ),
        ] {
            if value.is_zero() {
                return Err(ConfigError::invalid(field, "must be greater than 0"));
            }
        }

        let mut credentials: Vec<Credential> = Vec::new();
        for (i, raw) in self.credentials.into_iter().enumerate() {
            let field = |f: &str| format!("credentials[{i}].{f}");
            if raw.access_key.len() < 3
                || raw.access_key.len() > 128
                || !raw
                    .access_key
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            {
                return Err(ConfigError::invalid(
                    field("access_key"),
                    "must be 3 to 128 characters of letters, digits, '-', '_' or '.'",
                ));
            }
            if raw.secret_key.len() < 8
                || raw
                    .secret_key
                    .chars()
                    .any(|c| c.is_whitespace() || c.is_control())
            {
                return Err(ConfigError::invalid(
                    field("secret_key"),
                    "must be at least 8 characters without spaces",
                ));
            }
            if credentials.iter().any(|c| c.access_key == raw.access_key) {
                return Err(ConfigError::invalid(
                    field("access_key"),
                    format!("{:?} is listed twice", raw.access_key),
                ));
            }
            if let Some(list) = &raw.buckets
                && list.is_empty()
            {
                return Err(ConfigError::invalid(
                    field("buckets"),
                    "an empty list allows nothing; omit the field to allow every bucket",
                ));
            }
            credentials.push(Credential {
                access_key: raw.access_key,
                secret_key: raw.secret_key,
                buckets: raw.buckets,
                read_only: raw.read_only,
            });
        }

        let block_size = self.cache.block_size.map_or(4 << 20, |b| b.as_u64());
        if !((1 << 20)..=(64 << 20)).contains(&block_size) {
            return Err(ConfigError::invalid(
                "cache.block_size",
                "must be between 1MiB and 64MiB",
            ));
        }
        let readahead = self.cache.readahead.map_or(64 << 20, |b| b.as_u64());
        if readahead > (1 << 30) {
            return Err(ConfigError::invalid(
                "cache.readahead",
                "must be at most 1GiB",
            ));
        }
        let cache = CacheConfig {
            memory: self.cache.memory.map(|b| b.as_u64()),
            disk: self.cache.disk.map_or(10 << 30, |b| b.as_u64()),
            dir: self.cache.dir.unwrap_or_else(|| data_dir.join("cache")),
            block_size,
            readahead,
            inflight: self.cache.inflight.map_or(256 << 20, |b| b.as_u64()),
            warm_on_open: self.cache.warm_on_open.clone(),
        };
        for (i, pattern) in cache.warm_on_open.iter().enumerate() {
            if let Err(e) = globset::Glob::new(pattern) {
                return Err(ConfigError::invalid(
                    format!("cache.warm_on_open[{i}]"),
                    format!("{pattern:?} is not a key pattern: {e}"),
                ));
            }
        }

        let cluster = self.cluster.map(RawCluster::validate).transpose()?;
        let region = self.region.map(RawRegion::validate).transpose()?;
        let imports = crate::imports::validate(self.imports, &stores)?;
        if !imports.is_empty() && region.as_ref().is_some_and(|r| r.follow.is_some()) {
            return Err(ConfigError::invalid(
                "imports",
                "a mirror region (region.follow) takes its namespace from the source; schedule imports in the source region",
            ));
        }
        let admin_token = self.admin.token.filter(|t| !t.is_empty());
        if let Some(token) = &admin_token
            && token.len() < 16
        {
            return Err(ConfigError::invalid(
                "admin.token",
                "must be at least 16 characters",
            ));
        }
        Ok(Config {
            cache,
            data_dir,
            server,
            meta,
            stores,
            data_store,
            gc,
            credentials,
            cluster,
            admin_token,
            region,
            imports,
        })
    }
}

fn parse_addr(field: &str, value: Option<&str>, default: &str) -> Result<SocketAddr> {
    let text = value.unwrap_or(default);
    text.parse().map_err(|_| {
        ConfigError::invalid(
            field,
            format!("{text:?} is not a socket address like 127.0.0.1:9000 or [::]:9000"),
        )
    })
}

fn parse_env_duration(var: &str, value: &str) -> Result<Duration> {
    humantime::parse_duration(value).map_err(|e| ConfigError::Env {
        var: var.to_string(),
        reason: format!("{value:?} is not a duration like 30s or 24h: {e}"),
    })
}
