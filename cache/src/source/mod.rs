//! The seam "get a block from outside this node": what the block cache
//! calls on a miss of its tier. A node reads the block's store chain
//! ([`ChainSource`]: the store, then its fallbacks; a store without
//! fallbacks is a chain of one, read through [`store`]'s single step); a
//! cluster node asks the block's owner first (`cluster::PeerSource`). All
//! sit behind this one trait, so readahead, direct first-block reads and
//! warm-up take the same path as demand reads.

mod chain;
pub(crate) mod store;

use std::ops::Range;

use async_trait::async_trait;
use bytes::Bytes;

use crate::error::Result;

pub use chain::ChainSource;

/// A block by its full address: enough to load it on any node without a
/// metadata lookup. Blobs never change, so an address always names the
/// same bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BlockAddr {
    /// Logical store name.
    pub store: String,
    pub blob: String,
    /// The blob's version as its store knows it (empty for Ferry's own).
    pub version: String,
    pub block_size: u64,
    pub index: u64,
    /// Bytes of this block (shorter than `block_size` at a segment's end).
    pub len: u64,
    /// The block belongs to a pinned prefix: its owners keep it where
    /// unpinned blocks cannot evict it. Not part of the cache key.
    pub pinned: bool,
}

impl BlockAddr {
    /// The block's cache key: every field, so two addresses share a key
    /// only when they name the same bytes.
    pub fn cache_key(&self) -> String {
        format!(
            "{}\u{0}{}\u{0}{}\u{0}{}\u{0}{}\u{0}{}",
            self.store, self.blob, self.version, self.block_size, self.index, self.len
        )
    }

    /// Offset of the block's first byte in its blob.
    pub fn offset(&self) -> u64 {
        self.index * self.block_size
    }
}

/// Where a block comes from when neither tier of this node holds it.
///
/// Contract: `fetch` answers exactly the bytes `range` (relative to the
/// block's start, within `0..addr.len`) of the block, or an error; a short
/// or wrong answer from anywhere is an error, never returned bytes. A
/// store's own failure is passed on typed (`CacheError::Store`,
/// `MissingBlob`), so the caller can tell it from a failure of the path to
/// it. The read's priority travels in the task (see `admission`).
#[async_trait]
pub trait BlockSource: Send + Sync + 'static {
    async fn fetch(&self, addr: &BlockAddr, range: Range<u64>) -> Result<FetchedBlock>;

    /// Fails with `UnknownStore` unless this source can read `store`.
    fn check_store(&self, store: &str) -> Result<()>;

    /// Whether this node is where `addr`'s block is kept: true unless a
    /// cluster node does not own the block and a live peer does. A node
    /// that does not keep a block fetches only the bytes each read serves
    /// and holds in memory only what it read ahead and nobody read yet,
    /// so its memory stays for the blocks it owns.
    fn keeps(&self, _addr: &BlockAddr) -> bool {
        true
    }
}

/// What a fetch from outside this node brought, and where the tier may
/// keep it.
#[derive(Debug, Clone)]
pub struct FetchedBlock {
    pub bytes: Bytes,
    /// Keep it in memory only, never on disk: a block this node read from
    /// its owner in the cluster, so that each block's disk copies are on
    /// its owners and the cluster's capacity is the sum of the disks.
    pub memory_only: bool,
}

impl From<Bytes> for FetchedBlock {
    fn from(bytes: Bytes) -> FetchedBlock {
        FetchedBlock {
            bytes,
            memory_only: false,
        }
    }
}

/// The whole block: what a cache fill asks for.
pub fn whole(addr: &BlockAddr) -> Range<u64> {
    0..addr.len
}
