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
