//! The block tier on foyer's hybrid cache: whole blocks in memory, and on
//! disk (foyer's block engine over files in one folder) each block as
//! pages under keys of their own (see `pages`).
//!
//! - A block fetched from outside this node goes to memory and, unless the
//!   fetch says it is memory-only, its pages go to disk at once: the disk
//!   tier is written once per fetched block and never by reads, and a
//!   node killed without a clean stop loses nothing that had been flushed.
//! - `get` (the read path) of a block not in memory looks for the pages
//!   the range covers before joining a fetch of the block, loads them,
//!   keeps them in memory when the range is small (at most a page), and
//!   answers them as they are; `get_or_fetch` (prefetch, peers fetching a
//!   block, warm-up) puts every page together into one buffer and keeps
//!   the block in memory.
//! - Memory entries are never written to disk by foyer (`Location::InMem`):
//!   the pages are already there.
//! - A pinned block's pages go to its disk's pinned engine (see `disks`);
//!   reads look in both engines, and a pinned block found in the unpinned
//!   one when read whole moves over.

use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use ferry_config::DiskConfig;
use foyer::{
    HybridCache, HybridCacheBuilder, HybridCachePolicy, HybridCacheProperties, Load, Location,
};

use super::disks::{Disk, Disks, Engine};
use super::foyer_metrics::MetricsBridge;
use super::pages::{self, BlockPages, DiskPage};
use super::{BlockTier, Fetch, ServedFrom};
use crate::buffers::BlockBuffers;
use crate::error::{CacheError, Result};
use crate::metrics as m;

#[derive(Debug, Clone)]
pub struct FoyerTierConfig {
    /// Memory tier capacity in bytes.
    pub memory: u64,
    /// The disks of the disk tier; none: memory only.
    pub disks: Vec<DiskConfig>,
    /// The largest block that will be kept, in bytes.
    pub block_size: u64,
    /// Size of the pages blocks are kept in on disk, in bytes (0: the
    /// default).
    pub page_size: u64,
    /// The share of each disk kept for pinned blocks (0: no pinning).
    pub pin_share: f64,
}

pub struct FoyerTier {
    /// The memory tier (foyer's hybrid cache without storage: the disks
    /// are engines of their own).
    memory: HybridCache<String, Bytes>,
    disks: Arc<Disks>,
    page_size: u64,
    /// Buffers of blocks put together from their pages.
    buffers: Arc<BlockBuffers>,
}

/// Block buffers kept for blocks read from disk: as many as a few streams
/// have in flight.
const BUFFERS_KEPT: usize = 16;
/// Writes again of a block a warm-up keeps, before giving up on its disk.
const KEEP_ATTEMPTS: u32 = 3;

impl FoyerTier {
    /// Opens the tiers. A disk that cannot be opened is left out (and
    /// logged): the tier runs on the other disks, or from memory only.
    pub async fn open(config: &FoyerTierConfig) -> Result<FoyerTier> {
        let memory = HybridCacheBuilder::new()
            .with_name("ferry-blocks")
            .with_metrics_registry(Box::new(MetricsBridge))
            .with_policy(HybridCachePolicy::WriteOnInsertion)
            .memory(usize::try_from(config.memory).unwrap_or(usize::MAX))
            .with_shards(memory_shards(config))
            .with_weighter(|key: &String, value: &Bytes| key.len() + value.len())
            .storage()
            .build()
            .await
            .map_err(|e| CacheError::Tier(format!("cannot build the cache: {e}")))?;
        let disks = Disks::open(&config.disks, config.block_size, config.pin_share).await;
        if !config.disks.is_empty() && disks.is_empty() {
            metrics::counter!(m::CACHE_ERRORS, "tier" => "disk").increment(1);
            tracing::error!("no disk of the cache tier could be opened; caching in memory only");
        }
        Ok(FoyerTier {
            memory,
            disks: Arc::new(disks),
            page_size: page_size(config),
            buffers: BlockBuffers::new("disk", BUFFERS_KEPT),
        })
    }
}

/// foyer splits the memory tier into shards that evict on their own, so a
/// shard must hold many blocks: with its default of 8 shards, a 32 MiB tier
/// of 4 MiB blocks kept one block per shard and evicted blocks that fitted.
fn memory_shards(config: &FoyerTierConfig) -> usize {
    const BLOCKS_PER_SHARD: u64 = 32;
    let blocks = config.memory / config.block_size.max(1);
    usize::try_from(blocks / BLOCKS_PER_SHARD)
        .unwrap_or(usize::MAX)
        .clamp(1, 8)
}

/// The page size of the disk tier: the configured one, at most a block.
fn page_size(config: &FoyerTierConfig) -> u64 {
    let page = if config.page_size == 0 {
        pages::DEFAULT_PAGE_SIZE
    } else {
        config.page_size
    };
    page.clamp(4096, config.block_size.max(4096))
}

fn served_from(source: foyer::Source, fetched_here: bool) -> ServedFrom {
    match source {
        foyer::Source::Memory => ServedFrom::Memory,
        foyer::Source::Disk => ServedFrom::Disk,
        foyer::Source::Outer if fetched_here => ServedFrom::Fetched,
        foyer::Source::Outer => ServedFrom::Joined,
    }
}

/// Bytes `want` of a whole block held in memory (`None` when the block is
/// shorter than the range).
fn whole_block_part(block: &Bytes, want: &Range<u64>) -> Option<(Vec<Bytes>, ServedFrom)> {
    (block.len() as u64 >= want.end && want.start <= want.end).then(|| {
        (
            vec![block.slice(want.start as usize..want.end as usize)],
            ServedFrom::Memory,
        )
    })
}

/// Memory entries never leave memory for disk (their pages are written
/// by the tier itself).
fn in_memory() -> HybridCacheProperties {
    HybridCacheProperties::default().with_location(Location::InMem)
}

/// The disk side of the tier: pages of blocks, read and written through
/// the disks' storage engines, and kept in the memory tier when a range
/// read asks for it.
#[derive(Clone)]
struct Pages {
    memory: HybridCache<String, Bytes>,
    disks: Arc<Disks>,
    page_size: u64,
    buffers: Arc<BlockBuffers>,
}

impl Pages {
    fn of<'a>(&self, key: &'a str, len: u64) -> BlockPages<'a> {
        BlockPages {
            key,
            len,
            page_size: self.page_size,
        }
    }

    /// Bytes `want` of the block from its pages, and whether every page
    /// was in memory; `None` when one of the pages is missing (never
    /// written, evicted, or found damaged). With `keep`, pages read from
    /// disk are kept in memory: the pages a range read touches (a model's
    /// header, a hot tensor) are read from disk once, without the rest of
    /// their block.
    async fn read(
        &self,
        key: &str,
        len: u64,
        want: &Range<u64>,
        keep: bool,
    ) -> Result<Option<(Vec<Bytes>, ServedFrom)>> {
        let block = self.of(key, len);
        let cover = block.covering(want);
        // The block's disk, chosen once for all its pages; one set aside
        // answers nothing.
        let disk = self.disks.of_block(key).filter(|d| d.usable());
        let loads = cover
            .clone()
            .map(|index| self.page(&block, disk, index, keep));
        let mut found = Vec::with_capacity(usize::try_from(cover.end - cover.start).unwrap_or(0));
        let mut all_in_memory = true;
        for page in futures::future::try_join_all(loads).await? {
            match page {
                Some((page, in_memory)) => {
                    all_in_memory &= in_memory;
                    found.push(page);
                }
                None => return Ok(None),
            }
        }
        let source = if all_in_memory {
            ServedFrom::Memory
        } else {
            ServedFrom::Disk
        };
        Ok(Some((
            pages::pieces(&block, cover.start, &found, want),
            source,
        )))
    }

    /// `pieces` in one buffer (from the pool: no fresh pages to fault in).
    fn join(&self, mut pieces: Vec<Bytes>) -> Bytes {
        if pieces.len() == 1 {
            return pieces.pop().unwrap_or_default();
        }
        let mut joined = self.buffers.take(pieces.iter().map(Bytes::len).sum());
        for piece in &pieces {
            joined.extend_from_slice(piece);
        }
        joined.freeze()
    }

    /// Page `index` of `block` from memory, else from disk (then kept in
    /// memory with `keep`); and whether it was in memory.
    async fn page(
        &self,
        block: &BlockPages<'_>,
        disk: Option<&Disk>,
        index: u64,
        keep: bool,
    ) -> Result<Option<(Bytes, bool)>> {
        let key = block.key(index);
        if let Some(entry) = self.memory.memory().get(&key) {
            return Ok(Some((entry.value().clone(), true)));
        }
        let Some(disk) = disk else {
            return Ok(None);
        };
        let Some(page) = load(disk, block, index, &key).await? else {
            return Ok(None);
        };
        if keep {
            self.memory
                .insert_with_properties(key, page.clone(), in_memory());
        }
        Ok(Some((page, false)))
    }

    /// Writes the pages of `bytes` to disk, to the pinned share when
    /// `pinned` (best effort: foyer drops what its buffers cannot take, and
    /// counts it).
    fn write(&self, key: &str, bytes: &Bytes, pinned: bool) {
        let Some(disk) = self.disks.of_block(key).filter(|d| d.usable()) else {
            return;
        };
        if !disk.has_room() {
            metrics::counter!(m::CACHE_DISK_WRITES_DROPPED, "reason" => "disk_full").increment(1);
            return;
        }
        write_pages(
            disk.engine(pinned),
            &self.of(key, bytes.len() as u64),
            bytes,
        );
        if pinned && disk.pinned.is_some() {
            metrics::counter!(m::CACHE_BLOCKS_PINNED, "how" => "fetched").increment(1);
        }
    }

    /// Waits until everything written so far to the disk `key` belongs to
    /// is flushed (or dropped).
    async fn flushed(&self, key: &str) {
        let Some(disk) = self.disks.of_block(key).filter(|d| d.usable()) else {
            return;
        };
        for engine in disk.engines() {
            engine.storage().wait().await;
        }
    }

    /// Moves a block this disk holds unpinned into its pinned share (a
    /// prefix pinned after its blocks were cached): written there, then
    /// dropped from the unpinned engine.
    fn pin_in_place(&self, key: &str, bytes: &Bytes) {
        let Some(disk) = self.disks.of_block(key).filter(|d| d.usable()) else {
            return;
        };
        let Some(pinned) = &disk.pinned else {
            return;
        };
        if !disk.has_room() {
            return;
        }
        let block = self.of(key, bytes.len() as u64);
        if lists_block(pinned, &block) || !lists_block(&disk.cache, &block) {
            return;
        }
        write_pages(pinned, &block, bytes);
        for index in 0..block.count() {
            disk.cache.remove(&block.key(index));
        }
        metrics::counter!(m::CACHE_BLOCKS_PINNED, "how" => "moved").increment(1);
    }

    fn holds(&self, key: &str, len: u64) -> bool {
        let Some(disk) = self.disks.of_block(key).filter(|d| d.usable()) else {
            return false;
        };
        let block = self.of(key, len);
        (0..block.count()).all(|index| {
            let page = block.key(index);
            disk.engines()
                .any(|engine| engine.storage().may_contains(&page))
        })
    }

    fn holds_pinned(&self, key: &str, len: u64) -> bool {
        let Some(pinned) = self
            .disks
            .of_block(key)
            .filter(|d| d.usable())
            .and_then(|d| d.pinned.as_ref())
        else {
            return false;
        };
        lists_block(pinned, &self.of(key, len))
    }
}

/// Whether `engine`'s index lists every page of `block`.
fn lists_block(engine: &Engine, block: &BlockPages<'_>) -> bool {
    let storage = engine.storage();
    (0..block.count()).all(|index| storage.may_contains(&block.key(index)))
}

/// Writes `bytes` as the pages of `block` through `engine`'s storage
/// writer (disk only).
fn write_pages(engine: &Engine, block: &BlockPages<'_>, bytes: &Bytes) {
    for index in 0..block.count() {
        let span = block.span(index);
        let page = bytes.slice(span.start as usize..span.end as usize);
        if engine
            .storage_writer(block.key(index))
            .insert(DiskPage(page))
            .is_none()
        {
            metrics::counter!(m::CACHE_DISK_WRITES_DROPPED, "reason" => "not_admitted")
                .increment(1);
        }
    }
}

/// Page `index` of `block` (under `key`) from `disk` (whichever of its
/// engines lists it), checked to be as long as it must be; a read that
/// fails counts against the disk.
async fn load(disk: &Disk, block: &BlockPages<'_>, index: u64, key: &str) -> Result<Option<Bytes>> {
    let Some(storage) = disk
        .engines()
        .map(|engine| engine.storage())
        .find(|storage| storage.may_contains(key))
    else {
        return Ok(None);
    };
    // A fault a test injected fails the read as the device would.
    #[cfg(feature = "testing")]
    let loaded = match disk.injected_read_error() {
        Some(error) => Err(error),
        None => storage.load(key).await.map_err(|e| e.to_string()),
    };
    #[cfg(not(feature = "testing"))]
    let loaded = storage.load(key).await.map_err(|e| e.to_string());
    let page = match loaded {
        Ok(Load::Entry { value, .. }) => value.0,
        Ok(Load::Piece { piece, .. }) => piece.value().0.clone(),
        // Too busy to read now: a miss, not a loss.
        Ok(Load::Throttled) => return Ok(None),
        Ok(Load::Miss) => {
            // Listed but not readable: foyer found the entry damaged
            // (its checksum or header) and dropped it.
            lost_page("damaged");
            return Ok(None);
        }
        Err(error) => {
            metrics::counter!(m::CACHE_ERRORS, "tier" => "disk").increment(1);
            disk.failed("read", &error);
            return Err(CacheError::Tier(format!("reading a disk page: {error}")));
        }
    };
    let span = block.span(index);
    if page.len() as u64 != span.end - span.start {
        lost_page("wrong_length");
        return Ok(None);
    }
    Ok(Some(page))
}

fn lost_page(reason: &'static str) {
    metrics::counter!(m::CACHE_DISK_PAGES_LOST, "reason" => reason).increment(1);
}

/// Bytes the disk tier read and wrote since it opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DiskIo {
    pub read: u64,
    pub written: u64,
}

impl FoyerTier {
    /// What the disk tier read and wrote since it opened (zero without one).
    pub fn disk_io(&self) -> DiskIo {
        self.disk_io_by_disk()
            .into_iter()
            .fold(DiskIo::default(), |total, (_, io)| DiskIo {
                read: total.read + io.read,
                written: total.written + io.written,
            })
    }

    /// What the disk tier read and wrote, disk by disk (by folder).
    pub fn disk_io_by_disk(&self) -> Vec<(String, DiskIo)> {
        self.disks
            .iter()
            .map(|disk| {
                let io = disk.engines().fold(DiskIo::default(), |io, engine| {
                    let statistics = engine.storage().statistics();
                    DiskIo {
                        read: io.read + statistics.disk_read_bytes() as u64,
                        written: io.written + statistics.disk_write_bytes() as u64,
                    }
                });
                (disk.label.clone(), io)
            })
            .collect()
    }

    /// Makes every read of the disk whose folder is `dir` fail with
    /// `error` (`None`: read it again), as a failing device would, without
    /// touching the files: for tests of a disk failing under a running tier.
    #[cfg(feature = "testing")]
    pub fn inject_disk_read_error(&self, dir: &std::path::Path, error: Option<&str>) {
        let label = dir.display().to_string();
        for disk in self.disks.iter().filter(|d| d.label == label) {
            disk.inject_read_error(error.map(str::to_string));
        }
    }

    fn has_disks(&self) -> bool {
        !self.disks.is_empty()
    }

    fn pages(&self) -> Pages {
        Pages {
            memory: self.memory.clone(),
            disks: self.disks.clone(),
            page_size: self.page_size,
            buffers: self.buffers.clone(),
        }
    }
}

#[async_trait]
impl BlockTier for FoyerTier {
    async fn get(
        &self,
        key: &str,
        len: u64,
        want: Range<u64>,
    ) -> Result<Option<(Vec<Bytes>, ServedFrom)>> {
        // Where a block can be, cheapest first: whole in memory (a plain
        // lookup), then as pages (in memory, or on disk), and only then
        // through foyer's `get`, which also joins a fetch of the block
        // already running, so a read arriving while the block is
        // prefetched waits for it instead of reading the store a second
        // time. That join costs more than the lookups: a header read whose
        // pages are in memory never pays it.
        if let Some(entry) = self.memory.memory().get(key) {
            return Ok(whole_block_part(entry.value(), &want));
        }
        let mut disk_failure = None;
        if self.has_disks() && want.end <= len {
            // Small reads keep their pages in memory (a header, a hot
            // tensor read again and again); a large range is most of its
            // blocks, read once in a sweep, and keeping its pages would
            // only push others out.
            let keep = want.end - want.start <= self.page_size;
            match self.pages().read(key, len, &want, keep).await {
                Ok(Some(found)) => return Ok(Some(found)),
                Ok(None) => {}
                Err(e) => disk_failure = Some(e),
            }
        }
        let joined = self
            .memory
            .get(key)
            .await
            .map_err(|e| CacheError::Tier(e.to_string()))?;
        match (joined, disk_failure) {
            (Some(entry), _) => Ok(whole_block_part(entry.value(), &want)),
            (None, Some(failure)) => Err(failure),
            (None, None) => Ok(None),
        }
    }

    fn get_in_memory(&self, key: &str, want: Range<u64>) -> Option<Bytes> {
        let entry = self.memory.memory().get(key)?;
        let block = entry.value();
        let (start, end) = (
            usize::try_from(want.start).ok()?,
            usize::try_from(want.end).ok()?,
        );
        (start <= end && end <= block.len()).then(|| block.slice(start..end))
    }

    fn holds(&self, key: &str, len: u64) -> bool {
        self.memory.memory().contains(key) || self.on_disk(key, len)
    }

    fn on_disk(&self, key: &str, len: u64) -> bool {
        self.has_disks() && self.pages().holds(key, len)
    }

    async fn keep_on_disk(&self, key: &str, block: &Bytes, pinned: bool) -> bool {
        if !self.has_disks() {
            return false;
        }
        let Some(disk) = self.disks.of_block(key) else {
            return false;
        };
        let pages = self.pages();
        let len = block.len() as u64;
        pages.flushed(key).await;
        if pages.holds(key, len) {
            return true;
        }
        // Dropped on the way: written again, one block at a time per disk,
        // each flushed before the next.
        let _turn = disk.rewrites.lock().await;
        for _ in 0..KEEP_ATTEMPTS {
            metrics::counter!(m::CACHE_DISK_REWRITES).increment(1);
            pages.write(key, block, pinned);
            pages.flushed(key).await;
            if pages.holds(key, len) {
                return true;
            }
        }
        false
    }

    fn holds_pinned(&self, key: &str, len: u64) -> bool {
        self.has_disks() && self.pages().holds_pinned(key, len)
    }

    fn has_pinned_share(&self) -> bool {
        self.disks.iter().any(|disk| disk.pinned.is_some())
    }

    fn put(&self, key: &str, block: Bytes, pinned: bool) {
        if self.has_disks() {
            self.pages().write(key, &block, pinned);
        }
        self.memory
            .insert_with_properties(key.to_string(), block, in_memory());
    }

    fn forget_in_memory(&self, key: &str) {
        self.memory.memory().remove(key);
    }

    fn remove(&self, key: &str, len: u64) -> bool {
        let mut held = self.memory.memory().contains(key);
        self.memory.remove(key);
        let pages = self.pages();
        let block = pages.of(key, len);
        let disk = self.disks.of_block(key);
        for index in 0..block.count() {
            let page = block.key(index);
            held |= self.memory.memory().contains(&page);
            self.memory.remove(&page);
            for engine in disk.into_iter().flat_map(Disk::engines) {
                held |= engine.storage().may_contains(&page);
                // foyer writes a tombstone: the page stays gone after a
                // restart.
                engine.remove(&page);
            }
        }
        held
    }

    async fn get_or_fetch(
        &self,
        key: &str,
        len: u64,
        pinned: bool,
        fetch: Fetch,
    ) -> Result<(Bytes, ServedFrom)> {
        // foyer wraps the fetch's error; keep the original to pass through.
        let fetched = Arc::new(AtomicBool::new(false));
        let from_pages = Arc::new(AtomicBool::new(false));
        let fetch_error: Arc<Mutex<Option<CacheError>>> = Arc::default();
        let run = {
            let (fetched, from_pages, fetch_error) =
                (fetched.clone(), from_pages.clone(), fetch_error.clone());
            let pages = self.has_disks().then(|| self.pages());
            let key = key.to_string();
            move || async move {
                // On disk as pages: a hit, read whole and kept in memory
                // for the readers that follow.
                if let Some(pages) = &pages {
                    match pages.read(&key, len, &(0..len), false).await {
                        Ok(Some((pieces, _))) => {
                            from_pages.store(true, Ordering::Relaxed);
                            return Ok::<_, CacheError>((pages.join(pieces), in_memory()));
                        }
                        Ok(None) => {}
                        // A failing disk is a miss here: read from outside.
                        Err(e) => {
                            tracing::warn!(error = %e, "disk tier read failed; fetching the block")
                        }
                    }
                }
                fetched.store(true, Ordering::Relaxed);
                let found = fetch.await.map_err(|e| {
                    let message = e.to_string();
                    if let Ok(mut slot) = fetch_error.lock() {
                        *slot = Some(e);
                    }
                    CacheError::Tier(message)
                })?;
                if let Some(pages) = &pages
                    && !found.memory_only
                {
                    pages.write(&key, &found.bytes, pinned);
                }
                Ok((found.bytes, in_memory()))
            }
        };
        match self.memory.get_or_fetch(key, run).await {
            Ok(entry) => {
                let fetched = fetched.load(Ordering::Relaxed);
                let source = if from_pages.load(Ordering::Relaxed) {
                    ServedFrom::Disk
                } else {
                    served_from(entry.source(), fetched)
                };
                // A block cached before its prefix was pinned moves to the
                // pinned share the next time it is read whole (warm-up).
                if pinned && !fetched && self.has_disks() {
                    self.pages().pin_in_place(key, entry.value());
                }
                Ok((entry.value().clone(), source))
            }
            Err(e) => match fetch_error.lock().ok().and_then(|mut slot| slot.take()) {
                Some(fetch_failure) => Err(fetch_failure),
                None => Err(CacheError::Tier(e.to_string())),
            },
        }
    }

    fn keeps_blocks(&self) -> bool {
        true
    }

    fn has_disk(&self) -> bool {
        self.has_disks()
    }

    async fn close(&self) -> Result<()> {
        // Every engine of every disk: a pinned engine left open loses the
        // pages still in its buffers, and its flushes are cut off mid-way
        // when the process exits.
        for disk in self.disks.iter() {
            for engine in disk.engines() {
                engine
                    .close()
                    .await
                    .map_err(|e| CacheError::Tier(format!("{}: {e}", disk.label)))?;
            }
        }
        self.memory
            .close()
            .await
            .map_err(|e| CacheError::Tier(e.to_string()))
    }
}
