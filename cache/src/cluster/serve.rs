//! Answering a peer: the block from this node's tiers, or loaded once
//! (single-flight with this node's own readers) through the block cache's
//! owner source. Nothing here asks another peer on the asker's behalf but
//! the owner source's one handoff ask.

use std::ops::Range;
use std::time::Instant;

use bytes::Bytes;
use futures::FutureExt;

use super::wire::Verb;
use crate::error::{CacheError, Result};
use crate::metrics as m;
use crate::read::blocks::BlockCache;
use crate::source::{BlockAddr, whole};
use crate::store::admission;

/// What a peer request got.
#[derive(Debug)]
pub enum Served {
    /// The bytes asked for; `hit` when this node held the block already.
    Bytes { bytes: Bytes, hit: bool },
    /// A prefetch's, probe's or eviction's answer: whether the block was
    /// here already (a prefetch that had to load it answers `false`), and
    /// whether in the pinned share of its disk.
    Cached { cached: bool, pinned: bool },
    /// A tiers-only get of a block this node does not hold.
    NotCached,
}

impl BlockCache {
    /// Answers a peer's `verb` for bytes `range` of `addr`. `keep_on_disk`
    /// says whether this node is one of the block's owners (otherwise what
    /// it loads stays in memory).
    pub async fn serve_peer(
        &self,
        addr: &BlockAddr,
        range: Range<u64>,
        verb: Verb,
        tiers_only: bool,
        keep_on_disk: bool,
    ) -> Result<Served> {
        let key = addr.cache_key();
        let started = Instant::now();
        if verb == Verb::Evict {
            let held = self.tier().remove(&key, addr.len);
            metrics::counter!(m::PEER_SERVED, "verb" => verb.as_str(), "outcome" => if held { "evicted" } else { "not_cached" })
                .increment(1);
            return Ok(Served::Cached {
                cached: held,
                pinned: false,
            });
        }
        // A failed tier is a miss here too. Probes and prefetches only ask
        // whether the block is here; a GET reads just the range it wants.
        let held = match verb {
            Verb::Get => self
                .tier()
                .get(&key, addr.len, range.clone())
                .await
                .unwrap_or_default(),
            _ => None,
        };
        if let Some((part, source)) = &held {
            self.record(*source, part.iter().map(Bytes::len).sum(), started);
        }
        let holds = held.is_some() || (verb != Verb::Get && self.tier().holds(&key, addr.len));
        // A pinned block is where it belongs once in the pinned share; a
        // prefetch of one cached elsewhere reads it whole, which moves it.
        let pinned = addr.pinned && holds && self.tier().holds_pinned(&key, addr.len);
        // An owner's prefetch (a warm-up) keeps the block on disk: one
        // held only in memory is not warm yet.
        let lasting = verb != Verb::Prefetch
            || !keep_on_disk
            || !self.tier().has_disk()
            || self.tier().on_disk(&key, addr.len);
        let outcome = |o: &'static str| {
            metrics::counter!(m::PEER_SERVED, "verb" => verb.as_str(), "outcome" => o).increment(1);
        };
        match (verb, held) {
            (Verb::Probe, _) => {
                outcome(if holds { "hit" } else { "not_cached" });
                Ok(Served::Cached {
                    cached: holds,
                    pinned,
                })
            }
            (Verb::Prefetch, _)
                if holds
                    && lasting
                    && (pinned || !addr.pinned || !self.tier().has_pinned_share()) =>
            {
                outcome("hit");
                Ok(Served::Cached {
                    cached: true,
                    pinned,
                })
            }
            (Verb::Get, Some((part, _))) => {
                outcome("hit");
                Ok(Served::Bytes {
                    bytes: one_piece(part),
                    hit: true,
                })
            }
            (Verb::Get, _) if tiers_only => {
                outcome("not_cached");
                Ok(Served::NotCached)
            }
            (verb, _) => {
                // A small read of a cold block (a loader's header) is
                // answered with its range, as this node's own are, until
                // the block is worth fetching whole.
                let small = verb == Verb::Get && (range.start > 0 || range.end < addr.len);
                if small
                    && self.direct().is_small(range.end - range.start, addr.len)
                    && self.direct().admit(&key).is_some()
                {
                    let bytes = self.owner_source.fetch(addr, range).await?.bytes;
                    outcome("loaded");
                    return Ok(Served::Bytes { bytes, hit: false });
                }
                let fetch = {
                    let (source, addr) = (self.owner_source.clone(), addr.clone());
                    let priority = admission::current_priority();
                    admission::with_priority(priority, async move {
                        let mut found = source.fetch(&addr, whole(&addr)).await?;
                        found.memory_only = !keep_on_disk;
                        Ok(found)
                    })
                    .boxed()
                };
                let block = match self
                    .tier()
                    .get_or_fetch(&key, addr.len, addr.pinned, fetch)
                    .await
                {
                    Ok((block, source)) => {
                        self.record(source, block.len(), started);
                        block
                    }
                    // The tier itself failed: answer past it.
                    Err(CacheError::Tier(e)) => {
                        metrics::counter!(m::CACHE_ERRORS, "tier" => "hybrid").increment(1);
                        tracing::warn!(error = %e, blob = %addr.blob, "block cache failed serving a peer");
                        self.owner_source.fetch(addr, whole(addr)).await?.bytes
                    }
                    Err(e) => return Err(e),
                };
                if (block.len() as u64) < range.end {
                    return Err(CacheError::Body(format!(
                        "block {} of {} is {} bytes, expected {}",
                        addr.index,
                        addr.blob,
                        block.len(),
                        addr.len
                    )));
                }
                outcome("loaded");
                if verb == Verb::Prefetch {
                    if keep_on_disk
                        && self.tier().has_disk()
                        && !self.tier().keep_on_disk(&key, &block, addr.pinned).await
                    {
                        tracing::warn!(blob = %addr.blob, block = addr.index, "a warm-up's block could not be kept on disk");
                    }
                    // Whether it went to the pinned share, a probe tells
                    // (foyer lists pages once they are flushed).
                    return Ok(Served::Cached {
                        cached: holds,
                        pinned: false,
                    });
                }
                Ok(Served::Bytes {
                    bytes: slice(&block, &range),
                    hit: false,
                })
            }
        }
    }
}

/// An answer's body in one buffer: the pieces a tier held it in, joined
/// (a block from disk pages; a block in memory is one piece already).
fn one_piece(mut pieces: Vec<Bytes>) -> Bytes {
    if pieces.len() == 1 {
        return pieces.pop().unwrap_or_default();
    }
    Bytes::from(pieces.concat())
}

/// The part `range` of a block checked to hold it.
fn slice(block: &Bytes, range: &Range<u64>) -> Bytes {
    let start = usize::try_from(range.start).unwrap_or(usize::MAX);
    let end = usize::try_from(range.end).unwrap_or(usize::MAX);
    block.slice(start..end)
}
