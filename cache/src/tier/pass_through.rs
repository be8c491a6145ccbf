//! The tier of a node whose cache is off (`cache.memory = 0` and
//! `cache.disk = 0`): it keeps nothing, so every read is a fetch from
//! outside this node, through the same block read path (store chain,
//! pins of imported objects) as a node with a cache.

use std::ops::Range;

use async_trait::async_trait;
use bytes::Bytes;

use super::{BlockTier, Fetch, ServedFrom};
use crate::error::Result;

/// Keeps no block: every `get` is a miss, every `put` is dropped, and
/// `get_or_fetch` runs the caller's fetch and hands its bytes back.
///
/// Concurrent callers do not share a fetch: with nothing kept, a caller
/// asks only for the bytes it serves (see `BlockCache`), so two callers
/// rarely want the same bytes, and a shared fetch would have to read the
/// union of what they want.
#[derive(Debug, Default, Clone, Copy)]
pub struct PassThroughTier;

#[async_trait]
impl BlockTier for PassThroughTier {
    async fn get(
        &self,
        _key: &str,
        _len: u64,
        _want: Range<u64>,
    ) -> Result<Option<(Vec<Bytes>, ServedFrom)>> {
        Ok(None)
    }

    fn holds(&self, _key: &str, _len: u64) -> bool {
        false
    }

    fn put(&self, _key: &str, _block: Bytes, _pinned: bool) {}

    fn remove(&self, _key: &str, _len: u64) -> bool {
        false
    }

    async fn get_or_fetch(
        &self,
        _key: &str,
        _len: u64,
        _pinned: bool,
        fetch: Fetch,
    ) -> Result<(Bytes, ServedFrom)> {
        let fetched = fetch.await?;
        Ok((fetched.bytes, ServedFrom::Fetched))
    }

    fn keeps_blocks(&self) -> bool {
        false
    }

    fn has_disk(&self) -> bool {
        false
    }

    async fn close(&self) -> Result<()> {
        Ok(())
    }
}
