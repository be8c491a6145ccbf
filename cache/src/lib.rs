//! Ferry's data path, one folder per capability:
//!
//! - [`read`]: the block read path. A GET's range becomes block reads
//!   ([`BlockCache`]), with readahead and direct header reads.
//! - [`tier`]: where blocks live on this node: foyer's memory + disk tiers,
//!   or a pass-through tier when the cache is off.
//! - [`pins`]: prefixes whose blocks unpinned ones cannot evict from disk.
//! - [`source`]: the seam "get a block from outside this node", with the
//!   store chain ([`ChainSource`]) as its store side.
//! - [`cluster`]: membership, owner choice, the peer protocol and client
//!   (the cluster's side of the seam), warm-up.
//! - [`region`]: the change feed, the mirror's follower and replication,
//!   import of existing buckets.
//! - [`store`]: the configured stores and their decorators, one concern
//!   each (admission, counting, latency; faults for tests behind the
//!   `testing` feature).
//! - [`volume`]: blob writes, the collector, fsck, metadata dumps.
//!
//! Dependencies point one way: `read` asks `tier` and `source`; `source`
//! reads `store`s (or, in a cluster, peers); nothing here knows S3.

pub mod buffers;
mod client_tls;
pub mod cluster;
mod error;
pub mod metrics;
pub mod pins;
pub mod read;
pub mod region;
pub mod source;
pub mod store;
pub mod tier;
pub mod volume;

pub use client_tls::{ClientTls, Trust};
pub use error::{CacheError, Result};
pub use read::{BlockCache, BlockCacheConfig, HitCounts, Layouts, slice_layout};
pub use source::{BlockAddr, BlockSource, ChainSource, FetchedBlock};
pub use store::{StoreCounters, StoreHandle, Stores, admission, check_ranged_reads};
pub use volume::{
    BlobTags, BlobUpload, CollectStats, Collector, DUMP_PREFIX, FsckReport, MissingBlob,
    dump_to_store, fresh_blob_key, fsck, run_scheduled_dumps,
};
