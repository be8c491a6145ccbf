//! The configuration as written: every field optional, unknown keys refused.
//!
//! [`RawConfig::build`] validates one section at a time. Sections with more
//! to check live in their own files (`server.rs`, `store.rs`, `volume.rs`,
//! `cache.rs`, `cluster.rs`, `region.rs`, `imports.rs`); `[meta]`,
//! `[[credentials]]` and `[admin]` are validated here.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::cache::RawCache;
use crate::cluster::RawCluster;
use crate::error::{ConfigError, Result};
use crate::imports::{self, RawImport};
use crate::location::Location;
use crate::region::{self as region_section, RawRegion};
use crate::server::RawServer;
use crate::store::{self, RawStore};
use crate::telemetry::RawTelemetry;
use crate::tls::RawTls;
use crate::volume::RawVolume;
use crate::{Config, Credential, MetaConfig, Overrides};

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
    pub volume: RawVolume,
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
    pub imports: Vec<RawImport>,
    /// `[tls]`; absent: plain HTTP on every listener.
    #[serde(default)]
    pub tls: RawTls,
    /// `[telemetry]`; absent: no trace export.
    #[serde(default)]
    pub telemetry: RawTelemetry,
}

/// The text of the config file at `path`.
pub(crate) fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })
}

impl RawConfig {
    pub fn from_file(path: &Path) -> Result<RawConfig> {
        Self::parse(&read(path)?, path)
    }

    pub fn from_toml(text: &str) -> Result<RawConfig> {
        Self::parse(text, Path::new("<inline>"))
    }

    /// Parses `text`, the contents of the file at `path` (named in errors).
    pub(crate) fn parse(text: &str, path: &Path) -> Result<RawConfig> {
        toml::from_str(text).map_err(|e| match e.span() {
            Some(span) => ConfigError::Parse {
                at: Location::at_span(path, text, span),
                message: e.message().trim_end().to_string(),
            },
            // Without a span the parser's own text names the key instead.
            None => ConfigError::Parse {
                at: Location::file(path),
                message: e.to_string().trim_end().to_string(),
            },
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
        if let Some(v) = get("FERRY_CACHE_DIR") {
            self.cache.dir = Some(PathBuf::from(v));
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
        if let Some(v) = get("FERRY_OTLP_ENDPOINT") {
            self.telemetry.otlp_endpoint = Some(v.clone());
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

    /// One section after another. A config with several mistakes reports
    /// the first in this order, the order it always had; later sections
    /// may depend on earlier ones (`[volume]` and `[[imports]]` on
    /// `[stores]`, imports on `[region]`).
    fn validate(self) -> Result<Config> {
        let data_dir = self.data_dir.unwrap_or_else(|| PathBuf::from("ferry-data"));
        let server = self.server.validate()?;
        let meta = self.meta.validate(&data_dir)?;
        let mut stores = store::validate(self.stores)?;
        let configured_stores: BTreeSet<String> = stores.keys().cloned().collect();
        let mirror = self.region.as_ref().is_some_and(|r| r.follow.is_some());
        let (data_store, volume) = self.volume.validate(&data_dir, &mut stores, mirror)?;
        let credentials = validate_credentials(self.credentials)?;
        let cache = self.cache.validate(&data_dir)?;
        let default_weight = cache.default_cluster_weight();
        let cluster = self
            .cluster
            .map(|c| c.validate(default_weight))
            .transpose()?;
        let region = self.region.map(RawRegion::validate).transpose()?;
        if let Some(region) = &region {
            region_section::check_stores(
                region,
                &stores,
                &data_store,
                &configured_stores,
                &volume,
            )?;
        }
        let imports = imports::validate(self.imports, &stores, region.as_ref())?;
        let admin_token = self.admin.validate()?;
        let tls = self.tls.validate()?;
        let telemetry = self.telemetry.validate()?;
        check_plain_listeners(&server, cluster.as_ref(), region.as_ref(), &tls)?;
        Ok(Config {
            cache,
            data_dir,
            server,
            meta,
            stores,
            data_store,
            volume,
            credentials,
            cluster,
            admin_token,
            region,
            imports,
            tls,
            telemetry,
        })
    }
}

/// The peer port and the change feed carry blocks and metadata between
/// machines: without TLS they may listen beyond loopback only where the
/// operator says the network is trusted. (The S3 and admin ports only
/// warn, at start.)
fn check_plain_listeners(
    server: &crate::ServerConfig,
    cluster: Option<&crate::ClusterConfig>,
    region: Option<&crate::RegionConfig>,
    tls: &crate::TlsConfig,
) -> Result<()> {
    if tls.enabled() {
        return Ok(());
    }
    if let Some(cluster) = cluster
        && cluster.serve
        && !cluster.peer_listen.ip().is_loopback()
        && !cluster.trusted_network
    {
        return Err(ConfigError::invalid(
            "cluster.peer_listen",
            format!(
                "{} is beyond loopback without TLS: set [tls] cert_file and key_file, or cluster.trusted_network = true if the network between the nodes is private",
                cluster.peer_listen
            ),
        ));
    }
    if let Some(region) = region
        && region.serves_feed()
        && !server.admin_listen.ip().is_loopback()
        && !region.trusted_network
    {
        return Err(ConfigError::invalid(
            "server.admin_listen",
            format!(
                "{} serves the change feed beyond loopback without TLS: set [tls] cert_file and key_file, or region.trusted_network = true if the network between the regions is private",
                server.admin_listen
            ),
        ));
    }
    Ok(())
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
    /// The engine's URL is a node of a Redis Cluster: every key of the
    /// volume is written under the prefix as a hash tag (`{ferry}:...`), so
    /// it all lives in one slot and every script runs there. Default false
    /// (standalone Redis keeps the bare prefix, as existing volumes have it).
    #[serde(default)]
    pub redis_cluster: bool,
}

impl RawMeta {
    fn validate(self, data_dir: &Path) -> Result<MetaConfig> {
        match self.engine.as_deref() {
            None | Some("embedded") if self.redis_cluster => Err(ConfigError::invalid(
                "meta.redis_cluster",
                "needs a redis:// or rediss:// engine",
            )),
            None | Some("embedded") => Ok(MetaConfig::Embedded {
                path: self.path.unwrap_or_else(|| data_dir.join("meta.redb")),
            }),
            Some(url) if url.starts_with("redis://") || url.starts_with("rediss://") => {
                let prefix = self.redis_prefix.unwrap_or_else(|| "ferry".to_string());
                if prefix.is_empty()
                    || prefix.contains(|c: char| c.is_whitespace() || c == '{' || c == '}')
                {
                    return Err(ConfigError::invalid(
                        "meta.redis_prefix",
                        format!("{prefix:?} must be non-empty, without spaces or braces"),
                    ));
                }
                Ok(MetaConfig::Redis {
                    url: url.into(),
                    prefix,
                    allow_volatile: self.allow_volatile_redis,
                    cluster: self.redis_cluster,
                })
            }
            Some(other) => Err(ConfigError::invalid(
                "meta.engine",
                format!(
                    "{other:?} is not an engine: use \"embedded\" or a redis:// or rediss:// URL"
                ),
            )),
        }
    }
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

/// `[[credentials]]`, and the pair from `FERRY_ACCESS_KEY` /
/// `FERRY_SECRET_KEY` appended to them.
fn validate_credentials(raw: Vec<RawCredential>) -> Result<Vec<Credential>> {
    let mut credentials: Vec<Credential> = Vec::new();
    for (i, raw) in raw.into_iter().enumerate() {
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
    Ok(credentials)
}

/// `[admin]`: the admin API's mutating endpoints (cluster weights).
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    /// Bearer token those endpoints require (or `FERRY_ADMIN_TOKEN`).
    /// Default none: they answer 401. `/health` and `/metrics` stay open.
    pub token: Option<String>,
}

impl RawAdmin {
    fn validate(self) -> Result<Option<String>> {
        let admin_token = self.token.filter(|t| !t.is_empty());
        if let Some(token) = &admin_token
            && token.len() < 16
        {
            return Err(ConfigError::invalid(
                "admin.token",
                "must be at least 16 characters",
            ));
        }
        Ok(admin_token)
    }
}

fn parse_env_duration(var: &str, value: &str) -> Result<Duration> {
    humantime::parse_duration(value).map_err(|e| ConfigError::Env {
        var: var.to_string(),
        reason: format!("{value:?} is not a duration like 30s or 24h: {e}"),
    })
}
