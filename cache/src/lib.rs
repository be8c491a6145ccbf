//! Ferry's data path: the configured stores, writing immutable blobs,
//! reading byte ranges of a file from its layout, and collecting blobs
//! that nothing references any more.

mod blob;
mod blocks;
mod collector;
mod dumps;
mod error;
mod fsck;
mod instrumented;
pub mod metrics;
mod reader;
mod readahead;
mod stores;

pub use blob::{fresh_blob_key, BlobTags, BlobUpload};
pub use blocks::{BlockCache, BlockCacheConfig};
pub use collector::{CollectStats, Collector};
pub use dumps::{dump_to_store, run_scheduled as run_scheduled_dumps, DUMP_PREFIX};
pub use error::{CacheError, Result};
pub use fsck::{fsck, FsckReport, MissingBlob};
pub use instrumented::{InstrumentedStore, StoreCounters};
pub use reader::{read_range, slice_layout};
pub use stores::{StoreHandle, Stores};
