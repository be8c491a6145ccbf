//! What each `ferry` subcommand does: logging, the runtime, and the exit
//! code (0 ok, 1 problems found, 2 cannot run).

use std::collections::HashMap;
use std::io::IsTerminal;
use std::process::ExitCode;

use ferry_config::{Config, Overrides};

use crate::cli::{Cli, Command, ConfigCommand, MetaCommand};
use crate::{cluster_cli, serve, tools};

fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("FERRY_LOG")
        // s3s logs every client error at ERROR; Ferry's own request line
        // already records them with their status.
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,s3s=off"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
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

/// Runs a one-shot tool: exit 0 when it succeeds with a clean result, 1 when
/// it finds problems, 2 when it cannot run.
fn run_tool(work: impl std::future::Future<Output = Result<bool, String>>) -> ExitCode {
    let Some(runtime) = runtime() else {
        return ExitCode::from(2);
    };
    match runtime.block_on(work) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

/// Runs the command `cli` names; the process's exit code.
pub fn run(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Config(ConfigCommand::Check { file }) => {
            match Config::load(Some(&file), &HashMap::new(), &Overrides::default()) {
                Ok(config) => {
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
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Meta(command) => {
            init_logging(false);
            let env = environment();
            run_tool(async move {
                match command {
                    MetaCommand::Dump { volume, output } => {
                        tools::dump(&volume, output.as_deref(), &env).await
                    }
                    MetaCommand::Load { volume, file } => tools::load(&volume, &file, &env).await,
                }
                .map(|()| true)
            })
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
        Command::Fsck(args) => {
            init_logging(false);
            let env = environment();
            run_tool(async move { tools::fsck(&args, &env).await })
        }
        Command::Serve(args) => {
            init_logging(args.log_json);
            let flags = Overrides {
                data_dir: args.data_dir,
                listen: args.listen,
                admin_listen: args.admin_listen,
                domains: args.domains,
            };
            let config = match Config::load(args.config.as_deref(), &environment(), &flags) {
                Ok(config) => config,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(2);
                }
            };
            let Some(runtime) = runtime() else {
                return ExitCode::FAILURE;
            };
            match runtime.block_on(serve::run(config)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
