//! The `ferry` binary: parse the command line, run the command.

use std::process::ExitCode;

use clap::Parser;
use ferry_gateway::cli::Cli;

fn main() -> ExitCode {
    ferry_gateway::commands::run(Cli::parse())
}
