//! Regions: how a logical store resolves to concrete stores here (the
//! store chain: a store, then its `fallback` list, with health-ranked,
//! hedged reads), the change feed a source region serves, the mirror that
//! follows it, and import of existing buckets.

mod chain;
pub mod feed;
pub mod import;
pub mod mirror;
mod stale;

pub use stale::StaleEntries;

pub use chain::ChainSource;
