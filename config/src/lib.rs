//! Ferry's configuration.
//!
//! One TOML file is parsed into [`RawConfig`] (unknown keys are errors), then
//! [`RawConfig::build`] applies `FERRY_*` overrides taken from an environment
//! map the caller passes in, fills defaults and validates, giving the typed
//! [`Config`]. Only the binary's `main` reads the process environment; this
//! crate never does, so every behaviour here is testable with a plain map.

mod cache;
mod cluster;
mod error;
mod imports;
mod location;
mod raw;
mod redis_url;
mod region;
mod server;
mod store;
mod telemetry;
mod tls;
mod volume;

pub use cache::{RawCache, RawDisk, RawPin, check_pin};
pub use cluster::{ClusterConfig, Membership, Peer, RawCluster, RawPeer};
pub use error::{ConfigError, Result};
pub use imports::{ImportSchedule, RawImport, split_path};
pub use location::{Excerpt, Line, Location};
pub use raw::{RawConfig, RawCredential, RawMeta};
pub use redis_url::RedisUrl;
pub use region::{RawRegion, RegionConfig};
pub use server::RawServer;
pub use store::{RawStore, Secret, StoreKind, StoreSpec};
pub use telemetry::{OtlpConfig, RawTelemetry, TelemetryConfig};
pub use tls::{RawTls, TlsConfig, TlsIdentity};
pub use volume::RawVolume;

/// Values given as command-line flags; they win over the file and `FERRY_*`.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub data_dir: Option<PathBuf>,
    pub listen: Option<SocketAddr>,
    pub admin_listen: Option<SocketAddr>,
    pub domains: Vec<String>,
}

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The name of the store that holds the volume's own blobs unless
/// `volume.data_store` names another.
pub const DEFAULT_DATA_STORE: &str = "data";

/// The validated configuration of one `ferry serve` process.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Folder for everything local: embedded metadata, the default blob
    /// store, generated credentials.
    pub data_dir: PathBuf,
    pub server: ServerConfig,
    pub meta: MetaConfig,
    /// Named stores by logical name.
    pub stores: BTreeMap<String, StoreSpec>,
    /// The store new blobs are written to; always a key of `stores`.
    pub data_store: String,
    /// `[volume]` except `data_store` (the field above).
    pub volume: VolumeConfig,
    pub cache: CacheConfig,
    /// Credentials from the file and the environment. Empty means the binary
    /// generates a pair on first start.
    pub credentials: Vec<Credential>,
    /// `None`: a single node.
    pub cluster: Option<ClusterConfig>,
    /// The admin API's token for mutating endpoints; `None`: they answer 401.
    pub admin_token: Option<String>,
    /// `None`: one region, no change feed.
    pub region: Option<RegionConfig>,
    /// Imports re-run on a schedule.
    pub imports: Vec<ImportSchedule>,
    pub tls: TlsConfig,
    /// Trace export; `otlp: None` exports nothing.
    pub telemetry: TelemetryConfig,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ServerConfig {
    /// S3 listener. Default `127.0.0.1:9000`.
    pub listen: SocketAddr,
    /// Admin listener (`/metrics`, `/health`). Default `127.0.0.1:9001`.
    pub admin_listen: SocketAddr,
    /// Region reported to clients and used in SigV4 scope. Default `us-east-1`.
    pub region: String,
    /// How long in-flight requests may run after a shutdown signal. Default 30 s.
    pub shutdown_grace: Duration,
    /// Largest single PutObject body. Default 5 GiB (S3's limit).
    pub max_put_size: u64,
    /// PUT bodies without a Content-Length (which are read to their end
    /// before they are stored) collected at once; more are refused with
    /// 503 SlowDown before their body is read. Default 8.
    pub max_spools: usize,
    /// Bytes those bodies may hold together, in memory and in the spool
    /// folder on the data volume; beyond it they are refused with 503
    /// SlowDown. Default 16 GiB.
    pub max_spool_bytes: u64,
    /// Base domains for virtual-host style addressing; empty: path style only.
    pub domains: Vec<String>,
    /// Timeouts and the connection cap of every listener.
    pub limits: ConnectionLimits,
}

/// What one connection may hold on any listener (S3, admin, peer).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ConnectionLimits {
    /// From accepting a connection (or the end of the previous request)
    /// to the last byte of a request's headers; also the TLS handshake.
    pub header_timeout: Duration,
    /// No byte read or written for this long ends the connection.
    pub idle_timeout: Duration,
    /// A write the client does not take for this long ends the connection
    /// (a client that stopped reading).
    pub write_timeout: Duration,
    /// Open connections per listener; more wait in the kernel's backlog.
    pub max_connections: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub enum MetaConfig {
    /// redb file; default `<data_dir>/meta.redb`.
    Embedded { path: PathBuf },
    /// `redis://` or `rediss://` URL (user, password and database in it;
    /// shown redacted).
    Redis {
        url: RedisUrl,
        /// Prefix of every key this volume writes.
        prefix: String,
        /// Accept a Redis without AOF persistence.
        allow_volatile: bool,
        /// `url` is a node of a Redis Cluster; every key of the volume goes
        /// in one hash slot (the prefix as a hash tag).
        cluster: bool,
    },
}

/// The block cache.
#[derive(Debug, Clone, PartialEq)]
pub struct CacheConfig {
    /// Memory tier in bytes; `None`: sized from the machine at start.
    pub memory: Option<u64>,
    /// Disk tier in bytes, over all its disks; 0: no disk tier.
    pub disk: u64,
    /// The disks of the disk tier (none: no disk tier).
    pub disks: Vec<DiskConfig>,
    pub block_size: u64,
    /// Pages of a block on the disk tier, in bytes. Default 512 KiB.
    pub disk_page: u64,
    pub readahead: u64,
    pub inflight: u64,
    /// Bytes of `inflight` one read may hold, so a few slow or stalled
    /// clients cannot hold all of it. Default 32 MiB.
    pub inflight_per_read: u64,
    /// How long a read waits for `inflight` before it is answered 503
    /// SlowDown. Default 10 s.
    pub inflight_wait: Duration,
    /// How long a GET waits for its client to take its next block; a
    /// client that takes nothing for this long loses its read (and the
    /// budget it held). Default 60 s.
    pub send_timeout: Duration,
    /// Key patterns whose objects warm on their first read.
    pub warm_on_open: Vec<String>,
    /// `BUCKET/PREFIX`es whose blocks are pinned on the disk tier.
    pub pins: Vec<String>,
    /// The share of each disk kept for pinned blocks (0: no pinning).
    pub pin_share: f64,
}

impl CacheConfig {
    /// A node's cluster weight when `cluster.weight` is not set: its disk
    /// tier's capacity in GiB (at least 1), so nodes with 8, 16 and 24 TB
    /// of disk hold 1:2:3 of the data; 100 for a node without a disk tier.
    pub fn default_cluster_weight(&self) -> u32 {
        if self.disk == 0 {
            return 100;
        }
        u32::try_from(self.disk >> 30).unwrap_or(u32::MAX).max(1)
    }
}

/// One disk of the disk tier: a folder and what the tier may use of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskConfig {
    pub dir: PathBuf,
    /// Bytes; more than 0.
    pub capacity: u64,
}

/// `[volume]`: how the collector deletes blobs and when uploads and
/// metadata dumps expire.
#[derive(Debug, Clone, PartialEq)]
pub struct VolumeConfig {
    /// A queued blob is deleted only after this long. It must exceed the
    /// longest request, so a reader that started before an overwrite can
    /// finish. Default 24 h.
    pub grace: Duration,
    /// How often the collector looks at the queue. Default 60 s.
    pub interval: Duration,
    /// How long the collector's lease lasts without renewal. Default 5 min.
    pub lease: Duration,
    /// Multipart uploads initiated longer ago than this are aborted. Default 7 days.
    pub upload_expiry: Duration,
    /// Interval of scheduled metadata dumps into the data store; `None`: off.
    pub dump_interval: Option<Duration>,
    /// How many scheduled dumps to keep. Default 7.
    pub dump_keep: usize,
}

#[derive(Clone, PartialEq)]
pub struct Credential {
    pub access_key: String,
    pub secret_key: String,
    /// `None`: every bucket. `Some(list)`: only these.
    pub buckets: Option<Vec<String>>,
    pub read_only: bool,
}

impl std::fmt::Debug for Credential {
    // The secret never reaches a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credential")
            .field("access_key", &self.access_key)
            .field("secret_key", &"<redacted>")
            .field("buckets", &self.buckets)
            .field("read_only", &self.read_only)
            .finish()
    }
}

impl Credential {
    /// Whether this credential may touch `bucket` at all.
    pub fn allows_bucket(&self, bucket: &str) -> bool {
        self.buckets
            .as_ref()
            .is_none_or(|list| list.iter().any(|b| b == bucket))
    }
}

impl Config {
    /// Reads `path` (or starts from defaults when `None`), applies `env`
    /// (`FERRY_*` variables) over it, then `flags` over both, and validates.
    pub fn load(
        path: Option<&Path>,
        env: &HashMap<String, String>,
        flags: &Overrides,
    ) -> Result<Config> {
        let Some(path) = path else {
            return RawConfig::default().build(env, flags);
        };
        let source = raw::read(path)?;
        let raw = RawConfig::parse(&source, path)?;
        raw.clone()
            .build(env, flags)
            .map_err(|problem| locate(problem, path, &source, raw))
    }
}

/// Shows a refused field at the file's line that sets it, when the file's
/// value is the one at fault: the file alone is refused for the same
/// reason. A value a `FERRY_*` variable or a flag set is not pointed at the
/// file's line it overrides.
fn locate(problem: ConfigError, path: &Path, source: &str, file_only: RawConfig) -> ConfigError {
    let ConfigError::Invalid { field, .. } = &problem else {
        return problem;
    };
    let from_file = match file_only.build(&HashMap::new(), &Overrides::default()) {
        Err(alone) => alone.to_string() == problem.to_string(),
        Ok(_) => false,
    };
    match Location::of_field(path, source, field) {
        Some(at) if from_file => ConfigError::InFile {
            at,
            problem: Box::new(problem),
        },
        _ => problem,
    }
}

#[cfg(test)]
mod tests;
