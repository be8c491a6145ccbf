//! `ferry-bench`: the benchmark client of benches/*.sh, kept out of the
//! production `ferry` binary.

mod reads;
mod s3ops;

use std::process::ExitCode;

use clap::{Args, Parser};

use crate::reads::ReadArgs;

/// Measurements against a running gateway (or any S3 endpoint or HTTP
/// URL), and fast population of a volume's namespace for them. Numbers go
/// to stdout as one JSON object per run, so scripts can compare endpoints
/// side by side (see benches/*.sh).
#[derive(Debug, Parser)]
#[command(name = "ferry-bench", version)]
enum Command {
    /// Fill a bucket with empty entries straight through the metadata engine.
    Populate(PopulateArgs),
    /// Time paging through a bucket, or walking it with delimiter listings.
    List {
        #[command(flatten)]
        endpoint: BenchEndpoint,
        /// Walk directory by directory with delimiter '/' instead of one flat listing.
        #[arg(long)]
        walk: bool,
    },
    /// HEAD and small-GET latency, one request at a time.
    Latency {
        #[command(flatten)]
        endpoint: BenchEndpoint,
        /// Object size in bytes.
        #[arg(long, default_value_t = 1024)]
        size: usize,
        #[arg(long, default_value_t = 2000)]
        count: u64,
    },
    /// PUT rate of small objects.
    Put {
        #[command(flatten)]
        endpoint: BenchEndpoint,
        /// Object size in bytes.
        #[arg(long, default_value_t = 4096)]
        size: usize,
        #[arg(long, default_value_t = 5000)]
        count: u64,
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
    },
    /// Read workloads of model loaders (whole-object stream, parallel and
    /// random ranges, HEAD, safetensors header, a herd of readers) against
    /// one S3 endpoint or plain HTTP URL.
    Read(Box<ReadArgs>),
}

#[derive(Debug, Args)]
pub struct PopulateArgs {
    #[command(flatten)]
    pub volume: ferry_gateway::cli::VolumeArgs,
    #[arg(long)]
    pub bucket: String,
    #[arg(long, default_value_t = 1_000_000)]
    pub keys: u64,
    /// `flat` (one directory) or `tree` (100 x 100 directories).
    #[arg(long, default_value = "flat", value_parser = ["flat", "tree"])]
    pub layout: String,
}

/// An S3 endpoint and bucket to measure.
#[derive(Debug, Args)]
pub struct BenchEndpoint {
    #[arg(long)]
    pub endpoint: String,
    #[arg(long)]
    pub bucket: String,
    #[arg(long, env = "AWS_ACCESS_KEY_ID")]
    pub access_key: String,
    #[arg(long, env = "AWS_SECRET_ACCESS_KEY", hide_env_values = true)]
    pub secret_key: String,
    #[arg(long, default_value = "us-east-1")]
    pub region: String,
}

fn main() -> ExitCode {
    let command = Command::parse();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("FERRY_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .try_init();
    let Some(runtime) = ferry_gateway::commands::runtime() else {
        return ExitCode::from(2);
    };
    let work = async move {
        match command {
            Command::Populate(args) => {
                let env = ferry_gateway::commands::environment();
                let meta = ferry_gateway::tools::open_volume_meta(&args.volume, &env).await?;
                s3ops::populate(meta, &args).await
            }
            Command::List { endpoint, walk } => s3ops::list(&endpoint, walk).await,
            Command::Latency {
                endpoint,
                size,
                count,
            } => s3ops::latency(&endpoint, size, count).await,
            Command::Put {
                endpoint,
                size,
                count,
                concurrency,
            } => s3ops::put(&endpoint, size, count, concurrency).await,
            Command::Read(args) => reads::read(&args).await,
        }
    };
    match runtime.block_on(work) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}
