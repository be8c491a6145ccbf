//! `ferry bench`: measurements against a running gateway (or any S3
//! endpoint), and fast population of a volume's namespace for them.
//! Numbers go to stdout as one JSON object per run, so scripts can compare
//! endpoints side by side.

mod reads;
mod s3ops;

pub use reads::{ReadArgs, read};
pub use s3ops::{latency, list, populate, put};
