//! The `ferry` command line.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Ferry: an S3-compatible gateway that serves large model files from a
/// block cache in front of object storage.
#[derive(Debug, Parser)]
#[command(name = "ferry", version, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the S3 gateway.
    Serve(ServeArgs),
    /// Work with configuration files.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Back up and restore the namespace.
    #[command(subcommand)]
    Meta(MetaCommand),
    /// Check the namespace against the data stores: blobs that are missing,
    /// and blobs nothing references.
    Fsck(FsckArgs),
    /// See and steer the cache cluster through a node's admin API.
    #[command(subcommand)]
    Cluster(ClusterCommand),
    /// Load every block under a prefix into its owners before a rollout.
    Warmup(WarmupArgs),
    /// Adopt an existing bucket's objects by prefix, without copying them.
    Import(ImportArgs),
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
    Dump {
        #[command(flatten)]
        volume: VolumeArgs,
        /// Output file [default: standard output].
        #[arg(long, short = 'o')]
        output: Option<PathBuf>,
    },
    /// Restore a dump into an empty namespace.
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
    /// Validate a configuration file and print what it resolves to.
    Check {
        /// The file to check.
        file: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Members with weights, expected shares, health and last heartbeat.
    Status {
        #[command(flatten)]
        admin: AdminEndpoint,
        /// Print the status as JSON, for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Set a node's weight at run time (kept in Redis, it wins over the
    /// node's configured weight until reset; 0 drains the node).
    Weight {
        /// The node's id.
        node: String,
        /// The new weight; omit with --reset.
        weight: Option<u32>,
        /// Go back to the weight the node's config gives.
        #[arg(long, conflicts_with = "weight")]
        reset: bool,
        #[command(flatten)]
        admin: AdminEndpoint,
    },
}

#[derive(Debug, Args)]
pub struct AdminEndpoint {
    /// Any node's admin endpoint.
    #[arg(long, default_value = "http://127.0.0.1:9001")]
    pub admin: String,
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
