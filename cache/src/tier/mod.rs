//! The cache seam: where blocks live between the stores and the clients.
//!
//! [`BlockCache`](crate::BlockCache) plans reads as blocks and asks a
//! [`BlockTier`] for each one. The tier keeps blocks, answers hits, and on
//! a miss runs the caller's fetch once however many callers wait for the
//! same block. Every implementation must pass [`conformance`].
//!
//! Contract:
//! - A key names immutable bytes: a tier never needs to invalidate, and
//!   must never answer a key with bytes put under another key.
//! - A tier that keeps nothing ([`PassThroughTier`], the cache turned off)
//!   says so in `keeps_blocks`: the block cache then asks the outside for
//!   only the bytes a read serves, and never reads ahead into it.
//! - `put` is best effort: a tier may drop a block (full buffers, eviction)
//!   and a later `get` is then a miss. A dropped or corrupt block is a miss,
//!   never wrong bytes and never an error the client sees.
//! - `get_or_fetch` passes a failed fetch's error through unchanged and
//!   keeps nothing for that key; a failure of the tier itself is
//!   [`CacheError::Tier`], which the caller answers from the store.

pub mod conformance;
mod disks;
mod foyer_metrics;
mod foyer_tier;
mod pages;
mod pass_through;

use std::ops::Range;

use async_trait::async_trait;
use bytes::Bytes;
use futures::future::BoxFuture;

#[cfg(doc)]
use crate::error::CacheError;
use crate::error::Result;
use crate::source::FetchedBlock;

pub use foyer_tier::{DiskIo, FoyerTier, FoyerTierConfig};
pub use pass_through::PassThroughTier;

/// Where the block a tier answered came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServedFrom {
    Memory,
    Disk,
    /// This caller's fetch ran.
    Fetched,
    /// Another caller's fetch of the same block ran; this one waited.
    Joined,
}

impl ServedFrom {
    /// The metric label of the source (`fetched` and `joined` are both reads
    /// of the store).
    pub fn label(self) -> &'static str {
        match self {
            ServedFrom::Memory => "memory",
            ServedFrom::Disk => "disk",
            ServedFrom::Fetched | ServedFrom::Joined => "store",
        }
    }
}

/// Reads a missing block (from outside this node); runs only on a miss.
pub type Fetch = BoxFuture<'static, Result<FetchedBlock>>;

#[async_trait]
pub trait BlockTier: Send + Sync + 'static {
    /// Bytes `want` of the block under `key` (`len` bytes long), if the
    /// tier holds them, in order, as the pieces the tier holds them in (a
    /// block read from disk pages comes as slices of its pages, never
    /// copied into one buffer). A tier that keeps blocks on disk in pages
    /// reads only the pages `want` covers, and keeps those in memory.
    async fn get(
        &self,
        key: &str,
        len: u64,
        want: Range<u64>,
    ) -> Result<Option<(Vec<Bytes>, ServedFrom)>>;

    /// Bytes `want` of the block under `key` if memory holds it whole: a
    /// plain lookup, with no wait (a read answered at once).
    fn get_in_memory(&self, _key: &str, _want: Range<u64>) -> Option<Bytes> {
        None
    }

    /// Whether the tier holds the whole block, as far as it can tell
    /// without reading it (a damaged page is found only when read).
    fn holds(&self, key: &str, len: u64) -> bool;

    /// Whether the tier holds the whole block where unpinned blocks cannot
    /// evict it (the pinned share of its disk).
    fn holds_pinned(&self, _key: &str, _len: u64) -> bool {
        false
    }

    /// Whether the tier has a pinned share at all (a disk tier with
    /// `pin_share` large enough for an engine of its own).
    fn has_pinned_share(&self) -> bool {
        false
    }

    /// Keeps `block` under `key`, if there is room; a `pinned` block where
    /// unpinned ones cannot evict it.
    fn put(&self, key: &str, block: Bytes, pinned: bool);

    /// Whether the whole block is on this node's disk, not only in memory.
    fn on_disk(&self, _key: &str, _len: u64) -> bool {
        false
    }

    /// Sees `block` (under `key`) onto disk: waits until what was written
    /// to its disk is flushed, and writes the block again when its pages
    /// were dropped on the way (the disk's write buffers were full), so a
    /// warm-up keeps what it loaded. Answers whether the disk holds it
    /// now; a tier without disks answers false at once.
    async fn keep_on_disk(&self, _key: &str, _block: &Bytes, _pinned: bool) -> bool {
        false
    }

    /// Drops the whole block under `key` from memory only (a block this
    /// node does not own, once its reader took it); its disk pages, if
    /// any, stay.
    fn forget_in_memory(&self, _key: &str) {}

    /// Drops the block under `key` (`len` bytes long) from every tier,
    /// for good (a disk tier records the removal so a restart does not
    /// bring it back); answers whether the tier held any of it.
    fn remove(&self, key: &str, len: u64) -> bool;

    /// The whole block under `key` (`len` bytes long), or on a miss the
    /// result of `fetch`, which is then kept (in memory only if the fetch
    /// says so). Concurrent callers for one key share one fetch. A
    /// `pinned` block is kept where unpinned ones cannot evict it, and one
    /// this node kept before its prefix was pinned moves there.
    async fn get_or_fetch(
        &self,
        key: &str,
        len: u64,
        pinned: bool,
        fetch: Fetch,
    ) -> Result<(Bytes, ServedFrom)>;

    /// Whether the tier keeps blocks at all; `false` for a tier that keeps
    /// nothing, whose `get_or_fetch` then only runs the fetch.
    fn keeps_blocks(&self) -> bool;

    /// Whether blocks outlive memory (and a restart).
    fn has_disk(&self) -> bool;

    /// Writes out what must survive a restart and stops; call on shutdown.
    async fn close(&self) -> Result<()>;
}
