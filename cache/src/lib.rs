//! Ferry's data path: the configured stores, writing immutable blobs,
//! reading byte ranges of a file from its layout, and collecting blobs
//! that nothing references any more.

pub mod admission;
mod blob;
mod blocks;
pub mod cluster;
mod collector;
mod direct;
mod dumps;
mod error;
mod fsck;
mod instrumented;
mod layouts;
pub mod metrics;
mod readahead;
pub mod region;
mod slice;
pub mod source;
mod store_probe;
mod stores;
pub mod tier;

pub use blob::{BlobTags, BlobUpload, fresh_blob_key};
pub use blocks::{BlockCache, BlockCacheConfig, HitCounts};
pub use collector::{CollectStats, Collector};
pub use dumps::{DUMP_PREFIX, dump_to_store, run_scheduled as run_scheduled_dumps};
pub use error::{CacheError, Result};
pub use fsck::{FsckReport, MissingBlob, fsck};
pub use instrumented::{Faults, InstrumentedStore, StoreCounters};
pub use layouts::Layouts;
pub use slice::slice_layout;
pub use source::{BlockAddr, BlockSource, FetchedBlock};
pub use store_probe::check_ranged_reads;
pub use stores::{StoreHandle, Stores};
