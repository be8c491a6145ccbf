//! The `ferry` command line. Every command's help ends with examples; the
//! exit codes are in `ferry --help` and [`crate::commands::exit`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

/// The version and the commit the binary was built from (see `build.rs`):
/// `0.1.0 (1a2b3c4d5e6f)`, `0.1.0 (1a2b3c4d5e6f-dirty)` or `0.1.0 (unknown)`.
pub const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (", env!("FERRY_GIT_HASH"), ")");

/// Ferry: an S3-compatible gateway that serves large model files from a
/// block cache in front of object storage.
#[derive(Debug, Parser)]
#[command(
    name = "ferry",
    version = VERSION,
    propagate_version = true,
    after_help = "\
Examples:
  ferry serve                                 # on embedded defaults, data in ./ferry-data
  ferry serve --config /etc/ferry/ferry.toml
  ferry config check /etc/ferry/ferry.toml
  ferry completions bash > /etc/bash_completion.d/ferry

Exit codes:
  0  success
  1  the command failed: the server could not start or stopped on an error,
     a node or store could not be reached, a node is unhealthy (health)
  2  usage or configuration error: bad arguments, or a config file or
     FERRY_* variable that does not validate
  3  the command ran and found problems: fsck found missing or orphaned
     blobs, a warm-up or an import had failures"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the S3 gateway.
    #[command(after_help = "\
Examples:
  ferry serve                                 # on embedded defaults, data in ./ferry-data
  ferry serve --config /etc/ferry/ferry.toml
  FERRY_LOG=debug ferry serve --listen 0.0.0.0:9000 --log-json")]
    Serve(ServeArgs),
    /// Work with configuration files.
    #[command(
        subcommand,
        after_help = "\
Examples:
  ferry config check /etc/ferry/ferry.toml"
    )]
    Config(ConfigCommand),
    /// Back up and restore the namespace.
    #[command(
        subcommand,
        after_help = "\
Examples:
  ferry meta dump --config ferry.toml -o namespace.jsonl
  ferry meta load --data-dir ./restored namespace.jsonl"
    )]
    Meta(MetaCommand),
    /// Check the namespace against the data stores: blobs that are missing,
    /// and blobs nothing references. Exits 3 when it finds any.
    #[command(after_help = "\
Examples:
  ferry fsck --config ferry.toml
  ferry fsck --config ferry.toml --repair --min-age 2h")]
    Fsck(FsckArgs),
    /// Live throughput by source, hit ratio, store and peer traffic and the
    /// busiest S3 operations of a node (or the whole cluster), a line per
    /// sample, from the node's status data.
    #[command(after_help = "\
Examples:
  ferry stats --admin http://node-1:9001
  ferry stats --cluster                           # summed over every member
  ferry stats --once --json | jq .hit_ratio")]
    Stats(StatsArgs),
    /// See and steer the cache cluster through a node's admin API.
    #[command(
        subcommand,
        after_help = "\
Examples:
  ferry cluster status --admin http://node-1:9001
  ferry cluster weight gpu-node-17 0          # drain it (FERRY_ADMIN_TOKEN set)"
    )]
    Cluster(ClusterCommand),
    /// Load every block under a prefix into its owners before a rollout.
    #[command(after_help = "\
Examples:
  ferry warmup models/llama --admin http://node-1:9001   # FERRY_ADMIN_TOKEN set
  ferry warmup models/llama --check")]
    Warmup(WarmupArgs),
    /// Manage what the cluster's caches hold.
    #[command(
        subcommand,
        after_help = "\
Examples:
  ferry cache evict models/llama-2 --admin http://node-1:9001   # FERRY_ADMIN_TOKEN set"
    )]
    Cache(CacheCommand),
    /// Adopt an existing bucket's objects by prefix, without copying them.
    #[command(after_help = "\
Examples:
  ferry import legacy/models/llama --to models/llama --admin http://node-1:9001
  ferry import legacy --to models --delete")]
    Import(ImportArgs),
    /// Ask a node's admin endpoint whether it is healthy: exit 0 when it
    /// answers /health with 200, 1 otherwise (the container's health check).
    #[command(after_help = "\
Examples:
  ferry health
  ferry health --admin http://10.0.0.17:9001 --timeout 2s")]
    Health(HealthArgs),
    /// Print a shell completion script to standard output.
    #[command(after_help = "\
Examples:
  ferry completions bash > /etc/bash_completion.d/ferry
  ferry completions zsh > \"${fpath[1]}/_ferry\"
  ferry completions fish > ~/.config/fish/completions/ferry.fish")]
    Completions {
        /// The shell to complete in.
        shell: clap_complete::Shell,
    },
    /// Print the version and the commit it was built from.
    #[command(after_help = "\
Examples:
  ferry version")]
    Version,
}

/// Where a volume is: the same options `serve` reads.
#[derive(Debug, Args)]
pub struct VolumeArgs {
    /// TOML configuration file.
    #[arg(long, short = 'c')]
    pub config: Option<PathBuf>,
    /// Data folder [default: ./ferry-data].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum MetaCommand {
    /// Write every bucket, object, layout, upload and part as JSON lines.
    #[command(after_help = "\
Examples:
  ferry meta dump --config ferry.toml -o namespace.jsonl
  ferry meta dump --data-dir /var/lib/ferry | gzip > namespace.jsonl.gz")]
    Dump {
        #[command(flatten)]
        volume: VolumeArgs,
        /// Output file [default: standard output].
        #[arg(long, short = 'o')]
        output: Option<PathBuf>,
    },
    /// Restore a dump into an empty namespace.
    #[command(after_help = "\
Examples:
  ferry meta load --data-dir ./restored namespace.jsonl
  ferry meta load --config ferry.toml namespace.jsonl")]
    Load {
        #[command(flatten)]
        volume: VolumeArgs,
        /// The dump to load.
        file: PathBuf,
    },
}

#[derive(Debug, Args)]
pub struct FsckArgs {
    #[command(flatten)]
    pub volume: VolumeArgs,
    /// Queue unreferenced blobs for the collector (it deletes them after the
    /// grace period, and never one that is referenced by then).
    #[arg(long)]
    pub repair: bool,
    /// Unreferenced blobs younger than this may belong to an upload that is
    /// committing; they are not reported as orphans.
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    pub min_age: std::time::Duration,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// TOML configuration file; without it Ferry runs on embedded defaults.
    #[arg(long, short = 'c')]
    pub config: Option<PathBuf>,
    /// Folder for embedded metadata, the local blob store and generated
    /// credentials [default: ./ferry-data].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Address of the S3 endpoint [default: 127.0.0.1:9000]; port 0 picks a free port.
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Address of the admin endpoint (/metrics, /health) [default: 127.0.0.1:9001].
    #[arg(long)]
    pub admin_listen: Option<SocketAddr>,
    /// Base domain for virtual-host style requests (`bucket.DOMAIN`);
    /// repeat for several. Path style always works.
    #[arg(long = "domain")]
    pub domains: Vec<String>,
    /// Log lines as JSON instead of text.
    #[arg(long)]
    pub log_json: bool,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate a configuration file and print what it resolves to; a
    /// mistake is shown at its line, and exits 2.
    #[command(after_help = "\
Examples:
  ferry config check /etc/ferry/ferry.toml")]
    Check {
        /// The file to check.
        file: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum CacheCommand {
    /// Drop every block of the objects under a prefix from every member's
    /// memory and disk (a retired model version); the removal survives
    /// restarts.
    #[command(after_help = "\
Examples:
  ferry cache evict models/llama-2 --admin http://node-1:9001   # FERRY_ADMIN_TOKEN set
  ferry cache evict models/llama-3/v1/ --concurrency 64")]
    Evict(EvictArgs),
    /// Keep the blocks of a prefix in the pinned share of every owner's
    /// disks, where unpinned blocks cannot evict them (a model version in
    /// service), then warm it there. Every member follows within seconds.
    #[command(after_help = "\
Examples:
  ferry cache pin models/llama-3-70b/ --admin http://node-1:9001   # FERRY_ADMIN_TOKEN set
  ferry cache pin models/llama-3-70b/ --no-warm")]
    Pin(PinArgs),
    /// Unpin a prefix: its blocks stay cached, and age out like others.
    #[command(after_help = "\
Examples:
  ferry cache unpin models/llama-3-70b/")]
    Unpin(UnpinArgs),
    /// List the pinned prefixes (from the config and set at run time).
    #[command(after_help = "\
Examples:
  ferry cache pins --admin http://node-1:9001")]
    Pins {
        #[command(flatten)]
        admin: AdminEndpoint,
    },
}

#[derive(Debug, Args)]
pub struct PinArgs {
    /// BUCKET or BUCKET/PREFIX to pin.
    pub target: String,
    /// Only pin: blocks move to the pinned share when next read whole.
    #[arg(long)]
    pub no_warm: bool,
    /// Blocks in flight at once during the warm-up (default 16).
    #[arg(long)]
    pub concurrency: Option<usize>,
    #[command(flatten)]
    pub admin: AdminEndpoint,
}

#[derive(Debug, Args)]
pub struct UnpinArgs {
    /// BUCKET or BUCKET/PREFIX to unpin, as it was pinned.
    pub target: String,
    #[command(flatten)]
    pub admin: AdminEndpoint,
}

#[derive(Debug, Args)]
pub struct EvictArgs {
    /// BUCKET or BUCKET/PREFIX to evict.
    pub target: String,
    /// Blocks in flight at once (default 16).
    #[arg(long)]
    pub concurrency: Option<usize>,
    #[command(flatten)]
    pub admin: AdminEndpoint,
}

#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Members with weights, expected shares, health and last heartbeat.
    #[command(after_help = "\
Examples:
  ferry cluster status --admin http://node-1:9001
  ferry cluster status --json | jq '.members[].id'")]
    Status {
        #[command(flatten)]
        admin: AdminEndpoint,
        /// Print the status as JSON, for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Set a node's weight at run time (kept in Redis, it wins over the
    /// node's configured weight until reset; 0 drains the node).
    #[command(after_help = "\
Examples:
  ferry cluster weight gpu-node-17 0 --admin http://node-1:9001   # FERRY_ADMIN_TOKEN set
  ferry cluster weight gpu-node-17 --reset")]
    Weight {
        /// The node's id.
        node: String,
        /// The new weight; omit with --reset.
        #[arg(required_unless_present = "reset")]
        weight: Option<u32>,
        /// Go back to the weight the node's config gives.
        #[arg(long, conflicts_with = "weight")]
        reset: bool,
        #[command(flatten)]
        admin: AdminEndpoint,
    },
}

#[derive(Debug, Args)]
pub struct StatsArgs {
    #[command(flatten)]
    pub admin: AdminEndpoint,
    /// Sum over every node of the cluster, not just this one.
    #[arg(long)]
    pub cluster: bool,
    /// Print one line and exit.
    #[arg(long)]
    pub once: bool,
    /// Print JSON (one object per line when live).
    #[arg(long)]
    pub json: bool,
    /// Seconds between looks at the node (a node samples every 5 s).
    #[arg(long, default_value_t = 5)]
    pub interval: u64,
}

#[derive(Debug, Args)]
pub struct AdminEndpoint {
    /// Any node's admin endpoint (https:// when the node has [tls]).
    #[arg(long, env = "FERRY_ADMIN_URL", default_value = "http://127.0.0.1:9001")]
    pub admin: String,
    /// PEM CA certificates to trust for an https:// endpoint, besides
    /// the system roots.
    #[arg(long, env = "FERRY_CA_FILE")]
    pub ca_file: Option<PathBuf>,
    /// The admin token ([admin] token of the nodes).
    #[arg(long, env = "FERRY_ADMIN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

#[derive(Debug, Args)]
pub struct WarmupArgs {
    /// BUCKET or BUCKET/PREFIX to warm.
    pub target: String,
    /// Report what share of the prefix's bytes is cached on its owners;
    /// load nothing.
    #[arg(long)]
    pub check: bool,
    /// Blocks in flight at once (default 16).
    #[arg(long)]
    pub concurrency: Option<usize>,
    /// Go on even when the prefix is larger than the cluster's tiers.
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub admin: AdminEndpoint,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// STORE or STORE/PREFIX: a `[stores.NAME]` (owned = false) of the node.
    pub source: String,
    /// BUCKET or BUCKET/PREFIX the objects' keys go under.
    #[arg(long)]
    pub to: String,
    /// Also remove entries this store's imports made whose object is gone.
    #[arg(long)]
    pub delete: bool,
    #[command(flatten)]
    pub admin: AdminEndpoint,
}

#[derive(Debug, Args)]
pub struct HealthArgs {
    /// The node's admin endpoint (https:// when the node has [tls]).
    #[arg(long, env = "FERRY_ADMIN_URL", default_value = "http://127.0.0.1:9001")]
    pub admin: String,
    /// PEM CA certificates to trust for an https:// endpoint, besides
    /// the system roots.
    #[arg(long, env = "FERRY_CA_FILE")]
    pub ca_file: Option<PathBuf>,
    /// Give up on an answer after this long.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
}
