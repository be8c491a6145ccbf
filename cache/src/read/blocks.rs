//! The block cache: every read of a file becomes reads of fixed-size blocks
//! of its blobs, served from one foyer hybrid cache (memory, then local
//! disk) and fetched from outside this node on a miss (a
//! [`BlockSource`]: the store, or the block's owner in a cluster).
//!
//! - A block's key is (store, blob, version, block size, index, length).
//!   Blobs never change, so a key never needs invalidation, and with the
//!   block size in it a changed setting can never serve wrong bytes from a
//!   recovered disk tier.
//! - Concurrent misses of one block share one store read (foyer's
//!   `get_or_fetch`), so a herd of readers costs one fetch per block.
//! - A streaming read keeps a window of blocks in flight ahead of the one
//!   being sent, which hides the store's per-request latency.
//! - A cache failure (disk full, I/O error, corrupt entry) is a miss: the
//!   block is read from the store, the failure counted and logged.
//! - Blocks move as `Bytes`: the response body holds slices of cached
//!   blocks, never copies. A read within one block memory holds whole is
//!   answered at once, without a task feeding its body.
//! - A cluster node keeps only the blocks it owns ([`BlockSource::keeps`]):
//!   for another's block it fetches just the bytes a read serves, and
//!   holds in memory only what it read ahead until a read takes it.
//! - A node whose cache is off runs this same path over a tier that keeps
//!   nothing ([`PassThroughTier`]): each read then fetches only the bytes
//!   it serves, with no readahead, so the store chain and the pins of
//!   imported objects hold on every node.

use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use ferry_config::DiskConfig;
use ferry_meta::{Layout, Segment};
use futures::FutureExt;
use futures::stream::{self, BoxStream, StreamExt};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::Instrument;

use crate::error::{CacheError, Result};
use crate::metrics as m;
use crate::pins::Pins;
use crate::read::direct::DirectReads;
use crate::read::handoff::{self, Holds};
use crate::read::readahead::Readahead;
use crate::source::{BlockAddr, BlockSource, whole};
use crate::store::admission::{self, ReadPriority};
use crate::tier::{BlockTier, FoyerTier, FoyerTierConfig, PassThroughTier, ServedFrom};

/// Sizes and places of the cache tiers.
#[derive(Debug, Clone)]
pub struct BlockCacheConfig {
    /// Memory tier capacity in bytes.
    pub memory: u64,
    /// The disks of the disk tier; none: no disk tier. With `memory` 0
    /// too, the cache is off: nothing is kept.
    pub disks: Vec<DiskConfig>,
    /// Size of the pages blocks are kept in on the disk tier, in bytes (0:
    /// the default), so a small read of a block on disk loads only the
    /// pages it covers.
    pub disk_page: u64,
    /// Block size in bytes.
    pub block_size: u64,
    /// Bytes a single streaming read keeps in flight ahead of the client.
    pub readahead: u64,
    /// Bytes of blocks all reads together may hold between fetching and
    /// sending (in flight, or waiting for a slow client). When it is spent,
    /// reads wait for their turn instead of growing memory.
    pub inflight: u64,
    /// Bytes of blocks one read may hold of `inflight`, so that a few
    /// slow or stalled clients cannot hold all of it.
    pub inflight_per_read: u64,
    /// How long a read waits for `inflight` before it fails with
    /// [`CacheError::Busy`] (SlowDown) instead of hanging.
    pub inflight_wait: Duration,
    /// How long a read's next block waits for its client to take the one
    /// before; then the read ends and releases what it holds (see
    /// `handoff`).
    pub send_timeout: Duration,
    /// The share of each disk kept for blocks of pinned prefixes (0: no
    /// pinning).
    pub pin_share: f64,
}

pub struct BlockCache {
    tier: Arc<dyn BlockTier>,
    /// Where a block neither tier holds comes from, for this node's reads.
    source: Arc<dyn BlockSource>,
    /// How this node loads a block it is to hold for others (peer
    /// requests): never through another peer's forwarding.
    pub(crate) owner_source: Arc<dyn BlockSource>,
    block_size: u64,
    window: usize,
    /// One permit per block held by a read between fetch and send.
    inflight: Arc<Semaphore>,
    /// Blocks one read may hold of `inflight`.
    per_read: usize,
    inflight_wait: Duration,
    send_timeout: Duration,
    readahead: Readahead,
    direct: DirectReads,
    /// Prefixes whose blocks are kept in the disks' pinned share.
    pins: Arc<Pins>,
    served: ServedCounts,
}

/// Blocks this node served, by where they came from (for `cluster status`).
#[derive(Default)]
struct ServedCounts {
    memory: AtomicU64,
    disk: AtomicU64,
    outside: AtomicU64,
}

/// How many blocks this node served from memory, from disk, and from
/// outside it (a peer or a store), since it started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HitCounts {
    pub memory: u64,
    pub disk: u64,
    pub outside: u64,
}

/// One block of one blob and the part of it a read needs.
#[derive(Debug, Clone)]
struct BlockRead {
    store: String,
    blob: String,
    version: String,
    index: u64,
    /// Bytes of the block (shorter than the block size at a segment's end).
    len: u64,
    /// The needed part, relative to the block's start.
    want: Range<u64>,
    /// Where the segment this block serves ends in the blob.
    segment_end: u64,
    /// Whether this is the block holding the file's first byte, where
    /// model files keep their header.
    file_head: bool,
    /// The file is under a pinned prefix.
    pinned: bool,
    /// This node keeps the block (see [`BlockSource::keeps`]; with the
    /// cache off it keeps none). One it does not keep is fetched as the
    /// part the read wants, unless it was read ahead.
    kept: bool,
    /// Readahead fetched the block (or is fetching it) for this read.
    prefetched: bool,
}

impl BlockRead {
    fn addr(&self, block_size: u64) -> BlockAddr {
        BlockAddr {
            store: self.store.clone(),
            blob: self.blob.clone(),
            version: self.version.clone(),
            block_size,
            index: self.index,
            len: self.len,
            pinned: self.pinned,
        }
    }

    /// Identifies the blob version for sequential-access tracking.
    fn stream_key(&self) -> String {
        format!("{}\u{0}{}\u{0}{}", self.store, self.blob, self.version)
    }
}

impl BlockCache {
    /// Opens foyer's memory and disk tiers over `source`, or with both
    /// sizes 0 a tier that keeps nothing. A disk tier that cannot be opened
    /// is left out (and logged): the cache then runs from memory.
    pub async fn open(
        config: &BlockCacheConfig,
        source: Arc<dyn BlockSource>,
    ) -> Result<BlockCache> {
        if config.memory == 0 && config.disks.is_empty() {
            return Ok(Self::with_tier(Arc::new(PassThroughTier), config, source));
        }
        let block_size = config.block_size.max(4096);
        // `memory` is one budget for cached blocks and blocks in flight:
        // blocks a slow client still holds may already be evicted, so the
        // cache gets what the in-flight budget leaves (at least half).
        let inflight = config.inflight.min(config.memory / 2);
        let tier = FoyerTier::open(&FoyerTierConfig {
            memory: config.memory - inflight,
            disks: config.disks.clone(),
            block_size,
            page_size: config.disk_page,
            pin_share: config.pin_share,
        })
        .await?;
        Ok(Self::with_tier(Arc::new(tier), config, source))
    }

    /// A block cache over any tier; `config`'s memory and disk sizes are
    /// the tier's business.
    pub fn with_tier(
        tier: Arc<dyn BlockTier>,
        config: &BlockCacheConfig,
        source: Arc<dyn BlockSource>,
    ) -> BlockCache {
        let block_size = config.block_size.max(4096);
        let keeps_blocks = tier.keeps_blocks();
        // A cache shares `memory` with blocks in flight (see `open`); with
        // nothing kept, the in-flight budget is all there is.
        let inflight = if keeps_blocks {
            config.inflight.min(config.memory / 2)
        } else {
            config.inflight
        };
        let window = usize::try_from((config.readahead / block_size).clamp(1, 256)).unwrap_or(1);
        // At least one full window, so a single read can always progress.
        let permits = usize::try_from(inflight / block_size)
            .unwrap_or(usize::MAX)
            .max(window);
        let per_read = usize::try_from(config.inflight_per_read / block_size)
            .unwrap_or(usize::MAX)
            .clamp(1, permits);
        BlockCache {
            tier,
            owner_source: source.clone(),
            source,
            block_size,
            window,
            inflight: Arc::new(Semaphore::new(permits)),
            per_read,
            inflight_wait: config.inflight_wait,
            send_timeout: config.send_timeout,
            readahead: Readahead::new(window as u64),
            direct: DirectReads::new(block_size),
            served: ServedCounts::default(),
            pins: Arc::default(),
        }
    }

    /// Keeps the blocks of objects under `pins` in the disks' pinned share.
    pub fn with_pins(mut self, pins: Arc<Pins>) -> BlockCache {
        self.pins = pins;
        self
    }

    /// The prefixes whose blocks are pinned.
    pub fn pins(&self) -> &Arc<Pins> {
        &self.pins
    }

    /// Loads blocks asked for by peers through `source` instead of this
    /// node's own source (a cluster node: the store, after handoff).
    pub fn with_owner_source(mut self, source: Arc<dyn BlockSource>) -> BlockCache {
        self.owner_source = source;
        self
    }

    pub(crate) fn tier(&self) -> &Arc<dyn BlockTier> {
        &self.tier
    }

    pub(crate) fn direct(&self) -> &DirectReads {
        &self.direct
    }

    pub fn hit_counts(&self) -> HitCounts {
        HitCounts {
            memory: self.served.memory.load(Ordering::Relaxed),
            disk: self.served.disk.load(Ordering::Relaxed),
            outside: self.served.outside.load(Ordering::Relaxed),
        }
    }

    /// Counts a block served from `source`.
    pub(crate) fn record(&self, source: ServedFrom, len: usize, started: Instant) {
        let counter = match source {
            ServedFrom::Memory => &self.served.memory,
            ServedFrom::Disk => &self.served.disk,
            ServedFrom::Fetched | ServedFrom::Joined => &self.served.outside,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        record(source, len, started);
    }

    pub fn block_size(&self) -> u64 {
        self.block_size
    }

    /// Whether this node keeps blocks at all (its cache is on): what
    /// warm-up needs.
    pub fn keeps_blocks(&self) -> bool {
        self.tier.keeps_blocks()
    }

    pub fn has_disk_tier(&self) -> bool {
        self.tier.has_disk()
    }

    /// Flushes and closes the tiers; call on shutdown.
    pub async fn close(&self) {
        if let Err(e) = self.tier.close().await {
            tracing::warn!(error = %e, "closing the block cache failed");
        }
    }

    /// The blocks covering bytes `range` of the file `layout` describes
    /// (`pinned`: a file under a pinned prefix).
    fn plan(&self, layout: &Layout, range: &Range<u64>, pinned: bool) -> Vec<BlockRead> {
        let bs = self.block_size;
        let mut out = Vec::new();
        let mut file_offset = 0u64;
        for segment in &layout.segments {
            let (seg_start, seg_end) = (file_offset, file_offset + segment.len);
            file_offset = seg_end;
            let start = range.start.max(seg_start);
            let end = range.end.min(seg_end);
            if start >= end {
                continue;
            }
            // In blob coordinates.
            let (blob_start, blob_end) = (
                segment.offset + start - seg_start,
                segment.offset + end - seg_start,
            );
            let segment_blob_end = segment.offset + segment.len;
            for index in blob_start / bs..=(blob_end - 1) / bs {
                let block_start = index * bs;
                let len = bs.min(segment_blob_end - block_start);
                let mut read = read_of(
                    segment,
                    index,
                    len,
                    blob_start.max(block_start) - block_start
                        ..blob_end.min(block_start + len) - block_start,
                );
                read.segment_end = segment_blob_end;
                read.file_head = seg_start == 0 && index == segment.offset / bs;
                read.pinned = pinned;
                read.kept = self.keeps_blocks() && self.source.keeps(&read.addr(bs));
                out.push(read);
            }
        }
        out
    }

    /// The addresses of every block of the file `layout` describes, in
    /// order (what warm-up loads); `pinned`: the file is under a pin.
    pub fn block_addrs(&self, layout: &Layout, pinned: bool) -> Vec<BlockAddr> {
        self.plan(layout, &(0..layout.total_len()), pinned)
            .iter()
            .map(|read| read.addr(self.block_size))
            .collect()
    }

    /// One whole block, from memory, disk or outside this node, kept by
    /// the tier (a block this node keeps, or one it reads ahead).
    async fn block(&self, read: &BlockRead) -> Result<Bytes> {
        let started = Instant::now();
        let addr = read.addr(self.block_size);
        let key = addr.cache_key();
        let range = whole(&addr);
        let fetch = {
            let (source, addr, range) = (self.source.clone(), addr.clone(), range.clone());
            // The tier may run the fetch in a task of its own: carry the
            // caller's priority into it.
            let priority = admission::current_priority();
            // And the caller's span: the fetch's peer and store reads are
            // its children in a trace.
            admission::with_priority(priority, async move { source.fetch(&addr, range).await })
                .instrument(tracing::Span::current())
                .boxed()
        };
        let (bytes, source) = match self
            .tier
            .get_or_fetch(&key, addr.len, addr.pinned, fetch)
            .await
        {
            Ok(found) => found,
            Err(CacheError::Tier(e)) => {
                // The cache itself failed: answer from outside.
                metrics::counter!(m::CACHE_ERRORS, "tier" => "hybrid").increment(1);
                tracing::warn!(error = %e, blob = %read.blob, block = read.index, "block cache failed; reading past it");
                let fetched = self.source.fetch(&addr, range).await?;
                (fetched.bytes, ServedFrom::Fetched)
            }
            Err(store_failure) => return Err(store_failure),
        };
        self.record(source, bytes.len(), started);
        Ok(bytes)
    }

    /// The bytes of a read within one block that memory holds whole (a
    /// model's header, a small read of a hot tensor), answered at once:
    /// no task feeds them to the client and they take no share of the
    /// in-flight budget, as the block is in memory already. (Should it be
    /// evicted while a slow client takes it, that client holds one block
    /// at most, until the connection's write timeout.)
    fn in_memory(&self, plan: &[BlockRead]) -> Option<Bytes> {
        let [read] = plan else { return None };
        if !read.kept {
            return None;
        }
        let started = Instant::now();
        let key = read.addr(self.block_size).cache_key();
        let part = self.tier.get_in_memory(&key, read.want.clone())?;
        self.record(ServedFrom::Memory, part.len(), started);
        Some(part)
    }

    /// The part of a block a read wants, fetched from outside this node
    /// and kept nowhere: a block this node does not keep and did not read
    /// ahead (see [`BlockSource::keeps`]), or any block with the cache off.
    async fn part(&self, read: &BlockRead) -> Result<Bytes> {
        let started = Instant::now();
        let fetched = self
            .source
            .fetch(&read.addr(self.block_size), read.want.clone())
            .await?;
        self.record(ServedFrom::Fetched, fetched.bytes.len(), started);
        Ok(fetched.bytes)
    }

    /// Drops from memory a block this node does not keep once a read has
    /// taken it (it was read ahead, or left from when this node owned
    /// it): memory holds such a block only until it is read.
    fn forget_unless_kept(&self, read: &BlockRead) {
        if !read.kept {
            self.tier
                .forget_in_memory(&read.addr(self.block_size).cache_key());
        }
    }

    /// The part of a block a read wants, if a tier holds it: from memory,
    /// or from the disk pages it covers, as the pieces the tier holds (no
    /// copy into one buffer).
    async fn held(&self, read: &BlockRead) -> Option<Vec<Bytes>> {
        if !self.keeps_blocks() {
            return None;
        }
        let started = Instant::now();
        let key = read.addr(self.block_size).cache_key();
        match self.tier.get(&key, read.len, read.want.clone()).await {
            Ok(Some((pieces, source))) => {
                self.record(source, pieces.iter().map(Bytes::len).sum(), started);
                Some(pieces)
            }
            Ok(None) => None,
            // A failing tier: the block path reads past it.
            Err(e) => {
                tracing::debug!(error = %e, blob = %read.blob, block = read.index, "reading a part from the tier failed");
                None
            }
        }
    }

    /// A small read of the file's first block that no tier holds: straight
    /// from the store while the block is left for a large read to fetch
    /// (see `direct.rs`). `None`: read the block instead.
    async fn small_read(self: &Arc<Self>, read: &BlockRead) -> Result<Option<Bytes>> {
        // Only the file's first block, where model files keep their header:
        // elsewhere small reads are random access, and fetching the block
        // on first touch serves the reads that follow. (Not a blob's first
        // block: every part of a multipart file is a blob of its own.)
        if !self.keeps_blocks()
            || !read.file_head
            || !self
                .direct
                .is_small(read.want.end - read.want.start, read.len)
        {
            return Ok(None);
        }
        let addr = read.addr(self.block_size);
        let key = addr.cache_key();
        let nth = match self.direct.admit(&key) {
            Some(nth) => nth,
            // Read directly often enough: fetch the block.
            None => return Ok(None),
        };
        let bytes = self.source.fetch(&addr, read.want.clone()).await?.bytes;
        metrics::counter!(m::CACHE_DIRECT_READS).increment(1);
        metrics::counter!(m::CACHE_BYTES_SERVED, "source" => "store").increment(bytes.len() as u64);
        // The first small read of a cold file prefetches the block, once
        // its own answer is in: the tensors after the header are in it.
        if nth == 1
            && let Some(permit) = self.try_inflight()
        {
            metrics::counter!(m::READAHEAD_ISSUED).increment(1);
            let block = BlockRead {
                want: 0..0,
                ..read.clone()
            };
            self.spawn_prefetch(block, permit);
        }
        Ok(Some(bytes))
    }

    /// Streams bytes `range` of the file `layout` describes, block by block,
    /// with up to the readahead window of blocks in flight. `pinned`: the
    /// file is under a pinned prefix (see [`Pins::covers`]).
    pub fn read_range(
        self: &Arc<Self>,
        layout: &Layout,
        range: Range<u64>,
        pinned: bool,
    ) -> Result<BoxStream<'static, Result<Bytes>>> {
        let size = layout.total_len();
        if range.start > range.end || range.end > size {
            return Err(CacheError::Range {
                start: range.start,
                end: range.end,
                size,
            });
        }
        let mut plan = self.plan(layout, &range, pinned);
        for read in &plan {
            self.source.check_store(&read.store)?;
        }
        if self.keeps_blocks() {
            self.read_ahead(&mut plan);
        }
        let cache = self.clone();
        // In a traced request each block's span is a child of the
        // request's, though the body is read after its handler returned.
        // Only trace export records the request's DEBUG span (the log
        // lines' span is INFO): untraced, blocks make no span and enter
        // none, so the hit path pays nothing for tracing.
        let request = tracing::Span::current();
        let traced = request
            .metadata()
            .is_some_and(|m| *m.level() == tracing::Level::DEBUG);
        if !traced && let Some(part) = self.in_memory(&plan) {
            return Ok(stream::once(async move { Ok(part) }).boxed());
        }
        // This read's allowance: released block by block as its client
        // takes them, so one read never holds more than `per_read`
        // blocks of the budget, however slowly its client reads.
        let allowance = Arc::new(Semaphore::new(self.per_read));
        let blocks = stream::iter(plan)
            // Permits are taken in stream order, so a read holds permits only
            // for its earliest blocks, which its client consumes next: reads
            // wait for each other but never deadlock.
            .then({
                let cache = cache.clone();
                move |read| {
                    let (cache, allowance) = (cache.clone(), allowance.clone());
                    async move {
                        let own = allowance.acquire_owned().await.map_err(|_| closing())?;
                        let shared = cache.wait_inflight().await?;
                        Ok::<_, CacheError>((read, (own, shared)))
                    }
                }
            })
            .map(move |admitted| {
                let cache = cache.clone();
                // Made within the request's span (not with it as an
                // explicit parent): the trace filter keeps a span only
                // inside a traced one.
                let span = if traced {
                    request.in_scope(|| {
                        tracing::debug_span!(
                            "block",
                            index = tracing::field::Empty,
                            from = tracing::field::Empty,
                        )
                    })
                } else {
                    tracing::Span::none()
                };
                let noted = span.clone();
                async move {
                    let (read, permits) = admitted?;
                    noted.record("index", read.index);
                    let holds: Holds = Box::new(permits);
                    if let Some(pieces) = cache.held(&read).await {
                        cache.forget_unless_kept(&read);
                        return Ok((pieces, holds));
                    }
                    if let Some(bytes) = cache.small_read(&read).await? {
                        return Ok((vec![bytes], holds));
                    }
                    if !read.kept && !read.prefetched {
                        return Ok((vec![cache.part(&read).await?], holds));
                    }
                    let block = cache.block(&read).await?;
                    cache.forget_unless_kept(&read);
                    let wanted = read.want.clone();
                    if (block.len() as u64) < wanted.end {
                        return Err(CacheError::Body(format!(
                            "block {} of {} is {} bytes, expected {}",
                            read.index,
                            read.blob,
                            block.len(),
                            read.len
                        )));
                    }
                    Ok((vec![slice(&block, &wanted)], holds))
                }
                .instrument(span)
            })
            .buffered(self.per_read.min(self.window).max(1))
            .flat_map(|block| stream::iter(pieces_of(block)))
            .boxed();
        // The permits are released when the client takes the block, or
        // when it stops taking them (see `handoff`).
        Ok(handoff::to_client(blocks, self.send_timeout))
    }

    /// A permit of the in-flight budget if one is free now (readahead
    /// and prefetches, which are skipped otherwise).
    fn try_inflight(&self) -> Option<InflightPermit> {
        let permit = self.inflight.clone().try_acquire_owned().ok()?;
        Some(InflightPermit::new(permit, self.block_size))
    }

    /// A permit of the in-flight budget, waited for at most
    /// `inflight_wait`.
    async fn wait_inflight(&self) -> Result<InflightPermit> {
        match tokio::time::timeout(self.inflight_wait, self.inflight.clone().acquire_owned()).await
        {
            Ok(Ok(permit)) => Ok(InflightPermit::new(permit, self.block_size)),
            Ok(Err(_)) => Err(closing()),
            Err(_) => {
                metrics::counter!(m::INFLIGHT_TIMEOUTS).increment(1);
                Err(CacheError::Busy {
                    waited: self.inflight_wait,
                })
            }
        }
    }
}

fn closing() -> CacheError {
    CacheError::Body("the block cache is closing".into())
}

/// A block's share of the in-flight budget, counted in the
/// `ferry_cache_inflight_bytes` gauge while it is held.
struct InflightPermit {
    _permit: OwnedSemaphorePermit,
    bytes: u64,
}

impl InflightPermit {
    fn new(permit: OwnedSemaphorePermit, bytes: u64) -> InflightPermit {
        metrics::gauge!(m::CACHE_INFLIGHT_BYTES).increment(bytes as f64);
        InflightPermit {
            _permit: permit,
            bytes,
        }
    }
}

impl Drop for InflightPermit {
    fn drop(&mut self) {
        metrics::gauge!(m::CACHE_INFLIGHT_BYTES).decrement(self.bytes as f64);
    }
}

impl BlockCache {
    /// Tells the sequential detector about this read and prefetches what
    /// it asks for, as far as the in-flight budget allows: under memory
    /// pressure readahead stops first, and its window shrinks.
    fn read_ahead(self: &Arc<Self>, plan: &mut [BlockRead]) {
        let mut i = 0;
        while i < plan.len() {
            // The run of blocks of one segment.
            let first = &plan[i];
            let mut j = i;
            while j + 1 < plan.len()
                && plan[j + 1].blob == first.blob
                && plan[j + 1].store == first.store
                && plan[j + 1].segment_end == first.segment_end
                && plan[j + 1].index == plan[j].index + 1
            {
                j += 1;
            }
            let key = first.stream_key();
            let end_block = first.segment_end.div_ceil(self.block_size);
            // Which blocks this node does not keep were read ahead for
            // this read: those it takes from memory (or joins the fetch
            // of), the others it fetches as the parts it wants.
            for read in plan[i..=j].iter_mut().filter(|read| !read.kept) {
                read.prefetched = self.readahead.is_unread(&key, read.index);
            }
            let first = &plan[i];
            let ahead = self
                .readahead
                .on_read(&key, first.index..plan[j].index + 1, end_block);
            for index in ahead.clone() {
                let read = BlockRead {
                    index,
                    len: self
                        .block_size
                        .min(first.segment_end - index * self.block_size),
                    want: 0..0,
                    ..first.clone()
                };
                // A block this node holds needs no prefetch: its read comes
                // from memory, or from its disk pages without a copy.
                if self
                    .tier
                    .holds(&read.addr(self.block_size).cache_key(), read.len)
                {
                    continue;
                }
                let Some(permit) = self.try_inflight() else {
                    metrics::counter!(m::READAHEAD_SKIPPED).increment(ahead.end - index);
                    self.readahead.back_off(&key, index..ahead.end);
                    break;
                };
                metrics::counter!(m::READAHEAD_ISSUED).increment(1);
                self.spawn_prefetch(read, permit);
            }
            i = j + 1;
        }
    }

    /// Fetches a block into the cache in the background, at readahead
    /// priority, holding `permit` of the in-flight budget until it is in.
    fn spawn_prefetch(self: &Arc<Self>, read: BlockRead, permit: InflightPermit) {
        let cache = self.clone();
        // In a trace, a child of the read that set it off.
        let span = tracing::debug_span!("prefetch", index = read.index);
        // Short-lived and bounded by the in-flight budget; a failure is
        // only a lost prefetch (the demand read will retry).
        tokio::spawn(admission::with_priority(
            ReadPriority::Readahead,
            async move {
                let _permit = permit;
                if let Err(e) = cache.block(&read).await {
                    tracing::debug!(error = %e, blob = %read.blob, block = read.index, "prefetch failed");
                }
            }
            .instrument(span),
        ));
    }
}

/// A block's pieces as items for the client, the block's holds going
/// with its last piece (released when the client takes it).
fn pieces_of(block: Result<(Vec<Bytes>, Holds)>) -> Vec<Result<(Bytes, Holds)>> {
    match block {
        Err(e) => vec![Err(e)],
        Ok((mut pieces, holds)) => {
            let last = pieces.pop();
            let mut items: Vec<_> = pieces
                .into_iter()
                .map(|piece| Ok((piece, Box::new(()) as Holds)))
                .collect();
            items.extend(last.map(|piece| Ok((piece, holds))));
            items
        }
    }
}

/// The part `want` of a block (checked to be within it).
fn slice(block: &Bytes, want: &Range<u64>) -> Bytes {
    let start = usize::try_from(want.start).unwrap_or(usize::MAX);
    let end = usize::try_from(want.end).unwrap_or(usize::MAX);
    block.slice(start..end)
}

/// Counts a block served from `source` in the metrics (and notes it on
/// the block's span, when traced).
fn record(source: ServedFrom, len: usize, started: Instant) {
    tracing::Span::current().record("from", source.label());
    match source {
        ServedFrom::Memory | ServedFrom::Disk => {
            metrics::counter!(m::CACHE_HITS, "tier" => source.label()).increment(1);
        }
        ServedFrom::Fetched => metrics::counter!(m::CACHE_MISSES).increment(1),
        ServedFrom::Joined => metrics::counter!(m::CACHE_SINGLE_FLIGHT_JOINS).increment(1),
    }
    metrics::counter!(m::CACHE_BYTES_SERVED, "source" => source.label()).increment(len as u64);
    metrics::histogram!(m::BLOCK_FETCH_SECONDS, "source" => source.label())
        .record(started.elapsed().as_secs_f64());
}

fn read_of(segment: &Segment, index: u64, len: u64, want: Range<u64>) -> BlockRead {
    BlockRead {
        store: segment.store.clone(),
        blob: segment.blob.clone(),
        version: segment.version.clone(),
        index,
        len,
        want,
        segment_end: segment.offset + segment.len,
        file_head: false,
        pinned: false,
        kept: true,
        prefetched: false,
    }
}
