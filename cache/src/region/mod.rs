//! Regions: how a logical store resolves to concrete stores here. For now
//! the store chain (a store, then its `fallback` list) with health-ranked,
//! hedged reads; mirrors and import will live beside it.

mod chain;
pub mod import;

pub use chain::ChainSource;
