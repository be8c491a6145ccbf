//! Ferry's gateway: the node's composition and its servers.
//!
//! - [`node`]: the parts a node is made of, opened from the configuration.
//! - [`serve`]: `ferry serve`: the node's workers ([`workers`]) and its
//!   servers, with one stop signal.
//! - The servers: the S3 surface ([`s3`], served by [`http`] with [`auth`]
//!   and the request preflight), the admin API ([`admin`], with the change
//!   feed of a source region in `feed`), and the peer endpoint ([`peer`]).
//! - The CLI ([`cli`], [`commands`]) and its tools (import, warm-up,
//!   cluster status, fsck, dumps). The benchmark client is a crate of its
//!   own, `benches/ferry-bench`.

pub mod admin;
mod allocator;
pub mod auth;
pub mod cli;
mod cluster_cli;
pub mod commands;
mod credentials;
mod error;
mod feed;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
mod host;
pub mod http;
pub mod listen;
mod metrics;
pub mod node;
pub mod peer;
mod pins;
mod preflight;
pub mod s3;
pub mod serve;
mod signature;
mod spool;
pub mod status;
pub mod supervisor;
pub mod telemetry;
mod time;
pub mod tools;
pub mod workers;
