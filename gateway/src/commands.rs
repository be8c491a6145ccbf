//! What each `ferry` subcommand does: logging, the runtime, and the exit
//! code ([`Outcome`]).

use std::collections::HashMap;
use std::path::Path;
use std::process::ExitCode;

use clap::CommandFactory;
use ferry_config::{Config, Overrides};

use crate::cli::{CacheCommand, Cli, Command, ConfigCommand, MetaCommand, VERSION, VolumeArgs};
use crate::{cluster_cli, serve, telemetry, tools};

/// How a command ended. The numbers are the process's exit code, listed in
/// `ferry --help` and the README: scripts and container health checks
/// rely on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success = 0,
    /// It could not do its work: a server that could not start or stopped
    /// on an error, a node or store out of reach, an unhealthy node.
    Failed = 1,
    /// Bad arguments (clap exits 2 for them too) or a configuration that
    /// does not validate: nothing was attempted.
    Usage = 2,
    /// It ran to the end and found problems: fsck's missing or orphaned
    /// blobs, a warm-up's or an import's failures.
    Problems = 3,
}

impl From<Outcome> for ExitCode {
    fn from(outcome: Outcome) -> ExitCode {
        ExitCode::from(outcome as u8)
    }
}

/// Logs on stderr, for the commands that export no traces.
fn init_logging(json: bool) {
    // Its handle exports nothing: nothing to shut down.
    let _ = telemetry::init(json, &environment(), None, "");
}

/// The only place that reads the process environment.
pub fn environment() -> HashMap<String, String> {
    let mut env: HashMap<String, String> = std::env::vars()
        .filter(|(k, _)| k.starts_with("FERRY_") || k == "HOSTNAME")
        .collect();
    // The default cluster node id.
    if !env.contains_key("HOSTNAME")
        && let Ok(name) = std::fs::read_to_string("/proc/sys/kernel/hostname")
    {
        env.insert("HOSTNAME".into(), name.trim().to_string());
    }
    env
}

/// The multi-threaded runtime a command runs on, with rustls's crypto
/// provider chosen once (TLS to cloud stores and Redis goes through it);
/// `None` after saying why it cannot start.
pub fn runtime() -> Option<tokio::runtime::Runtime> {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => Some(runtime),
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            None
        }
    }
}

/// Runs a one-shot tool: `Ok(true)` when it succeeds with a clean result,
/// `Ok(false)` when it found problems, an error when it could not do its work.
fn run_tool(work: impl std::future::Future<Output = Result<bool, String>>) -> Outcome {
    let Some(runtime) = runtime() else {
        return Outcome::Failed;
    };
    match runtime.block_on(work) {
        Ok(true) => Outcome::Success,
        Ok(false) => Outcome::Problems,
        Err(e) => {
            eprintln!("error: {e}");
            Outcome::Failed
        }
    }
}

/// The configuration `path` (or the defaults), `env` and `flags` give;
/// `None` after printing why it does not validate.
fn load_config(
    path: Option<&Path>,
    env: &HashMap<String, String>,
    flags: &Overrides,
) -> Option<Config> {
    match Config::load(path, env, flags) {
        Ok(config) => Some(config),
        Err(e) => {
            eprintln!("error: {e}");
            None
        }
    }
}

/// The configuration of the volume a tool's arguments name.
fn volume_config(volume: &VolumeArgs, env: &HashMap<String, String>) -> Option<Config> {
    let flags = Overrides {
        data_dir: volume.data_dir.clone(),
        ..Overrides::default()
    };
    load_config(volume.config.as_deref(), env, &flags)
}

/// Runs the command `cli` names; the process's exit code.
pub fn run(cli: Cli) -> ExitCode {
    run_command(cli.command).into()
}

fn run_command(command: Command) -> Outcome {
    match command {
        Command::Config(ConfigCommand::Check { file }) => {
            // The environment `serve` would see: a file that leaves its
            // secrets to FERRY_* variables (a container's config) is
            // checked as it will run.
            let Some(config) = load_config(Some(&file), &environment(), &Overrides::default())
            else {
                return Outcome::Usage;
            };
            println!("{}: ok", file.display());
            println!("  s3 listen:   {}", config.server.listen);
            println!("  admin:       {}", config.server.admin_listen);
            println!("  metadata:    {:?}", config.meta);
            println!(
                "  data store:  {} ({})",
                config.data_store, config.stores[&config.data_store].url
            );
            println!(
                "  stores:      {}",
                config.stores.keys().cloned().collect::<Vec<_>>().join(", ")
            );
            println!("  credentials: {}", config.credentials.len());
            Outcome::Success
        }
        Command::Meta(command) => {
            init_logging(false);
            let env = environment();
            let volume = match &command {
                MetaCommand::Dump { volume, .. } | MetaCommand::Load { volume, .. } => volume,
            };
            let Some(config) = volume_config(volume, &env) else {
                return Outcome::Usage;
            };
            run_tool(async move {
                match command {
                    MetaCommand::Dump { output, .. } => {
                        tools::dump(&config, output.as_deref()).await
                    }
                    MetaCommand::Load { file, .. } => tools::load(&config, &file).await,
                }
                .map(|()| true)
            })
        }
        Command::Stats(args) => {
            init_logging(false);
            run_tool(crate::status::stats::run(args))
        }
        Command::Cluster(command) => {
            init_logging(false);
            run_tool(cluster_cli::run(command))
        }
        Command::Warmup(args) => {
            init_logging(false);
            run_tool(cluster_cli::warmup(args))
        }
        Command::Import(args) => {
            init_logging(false);
            run_tool(cluster_cli::import(args))
        }
        Command::Cache(CacheCommand::Evict(args)) => {
            init_logging(false);
            run_tool(cluster_cli::evict(args))
        }
        Command::Cache(CacheCommand::Pin(args)) => {
            init_logging(false);
            run_tool(cluster_cli::pin(args))
        }
        Command::Cache(CacheCommand::Unpin(args)) => {
            init_logging(false);
            run_tool(cluster_cli::unpin(args))
        }
        Command::Cache(CacheCommand::Pins { admin }) => {
            init_logging(false);
            run_tool(cluster_cli::pins(admin))
        }
        Command::Fsck(args) => {
            init_logging(false);
            let Some(config) = volume_config(&args.volume, &environment()) else {
                return Outcome::Usage;
            };
            run_tool(async move { tools::fsck(&config, &args).await })
        }
        Command::Health(args) => {
            // A container runtime reads any exit but 0 as unhealthy, and
            // 1 is the code it documents for that.
            match run_tool(cluster_cli::health(args)) {
                Outcome::Success => Outcome::Success,
                _ => Outcome::Failed,
            }
        }
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "ferry", &mut std::io::stdout());
            Outcome::Success
        }
        Command::Version => {
            println!("ferry {VERSION}");
            Outcome::Success
        }
        Command::Serve(args) => {
            let env = environment();
            let flags = Overrides {
                data_dir: args.data_dir,
                listen: args.listen,
                admin_listen: args.admin_listen,
                domains: args.domains,
            };
            let Some(config) = load_config(args.config.as_deref(), &env, &flags) else {
                return Outcome::Usage;
            };
            // Spans name the node: its cluster id, else the host.
            let node = config
                .cluster
                .as_ref()
                .map(|c| c.node_id.clone())
                .or_else(|| env.get("HOSTNAME").cloned())
                .unwrap_or_default();
            let telemetry =
                telemetry::init(args.log_json, &env, config.telemetry.otlp.as_ref(), &node);
            let Some(runtime) = runtime() else {
                return Outcome::Failed;
            };
            let outcome = match runtime.block_on(serve::run(config)) {
                Ok(()) => Outcome::Success,
                Err(e) => {
                    eprintln!("error: {e}");
                    Outcome::Failed
                }
            };
            // The export's last batch goes out from its own thread, after
            // the node stopped.
            drop(runtime);
            telemetry.shutdown();
            outcome
        }
    }
}
