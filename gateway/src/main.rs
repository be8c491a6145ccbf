//! The `ferry` binary: parse the command line, run the command.

use std::process::ExitCode;

use clap::Parser;
use ferry_gateway::cli::Cli;

/// jemalloc rather than the C library's malloc. A node's heap is mostly
/// blocks of a MiB or more, made on one thread and freed on another.
/// glibc serves those from per-thread arenas and hands memory back only
/// from the top of each, so a node's resident memory swung by a tenth
/// around its mean under a steady load (issue 20's soak). jemalloc keeps
/// freed extents for reuse and returns what stays unused after its decay
/// time (30 minutes: `.cargo/config.toml`), so under a steady load
/// resident memory settles at the load's high-water mark.
#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    ferry_gateway::commands::run(Cli::parse())
}
