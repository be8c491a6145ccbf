//! The block tier on foyer's hybrid cache: a memory tier in front of a
//! disk tier (foyer's block engine over files in one folder).

use std::collections::{HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use foyer::{
    BlockEngineConfig, DeviceBuilder, FsDeviceBuilder, HybridCache, HybridCacheBuilder,
    HybridCachePolicy, HybridCacheProperties, Location, RecoverMode,
};

use super::foyer_metrics::MetricsBridge;
use super::{BlockTier, Fetch, ServedFrom};
use crate::error::{CacheError, Result};
use crate::metrics as m;

#[derive(Debug, Clone)]
pub struct FoyerTierConfig {
    /// Memory tier capacity in bytes.
    pub memory: u64,
    /// Disk tier capacity in bytes; 0: memory only.
    pub disk: u64,
    /// Folder of the disk tier.
    pub dir: PathBuf,
    /// The largest block that will be kept, in bytes: the disk tier's
    /// engine blocks are sized from it, since an entry must fit one.
    pub block_size: u64,
}

pub struct FoyerTier {
    cache: HybridCache<String, Bytes>,
    disk: bool,
    memory_only: MemoryOnlyKeys,
}

/// Keys of recent memory-only blocks. foyer never writes an entry marked
/// `Location::InMem` to disk on eviction, but its flush on close writes
/// every entry in memory; these are removed before the close instead.
/// Bounded to what memory can hold: a key that falls out was evicted long
/// ago (at worst one block reaches the disk at shutdown).
struct MemoryOnlyKeys {
    keys: Mutex<(VecDeque<String>, HashSet<String>)>,
    cap: usize,
}

impl MemoryOnlyKeys {
    fn new(config: &FoyerTierConfig) -> MemoryOnlyKeys {
        let blocks = config.memory / config.block_size.max(1);
        MemoryOnlyKeys {
            keys: Mutex::default(),
            cap: usize::try_from(blocks).unwrap_or(usize::MAX).max(16),
        }
    }

    fn note(&self, key: &str) {
        let Ok(mut guard) = self.keys.lock() else {
            return;
        };
        let (order, set) = &mut *guard;
        if set.insert(key.to_string()) {
            order.push_back(key.to_string());
            while order.len() > self.cap {
                if let Some(old) = order.pop_front() {
                    set.remove(&old);
                }
            }
        }
    }

    fn take(&self) -> Vec<String> {
        self.keys
            .lock()
            .map(|mut guard| {
                guard.1.clear();
                guard.0.drain(..).collect()
            })
            .unwrap_or_default()
    }
}

impl FoyerTier {
    /// Opens the tiers. A disk tier that cannot be opened is left out (and
    /// logged): the tier then keeps blocks in memory only.
    pub async fn open(config: &FoyerTierConfig) -> Result<FoyerTier> {
        let want_disk = config.disk > 0;
        match build(config, want_disk).await {
            Ok(cache) => Ok(FoyerTier {
                cache,
                disk: want_disk,
                memory_only: MemoryOnlyKeys::new(config),
            }),
            Err(e) if want_disk => {
                metrics::counter!(m::CACHE_ERRORS, "tier" => "disk").increment(1);
                tracing::error!(dir = %config.dir.display(), error = %e, "disk cache tier unavailable; caching in memory only");
                let cache = build(config, false)
                    .await
                    .map_err(|e| CacheError::Tier(format!("cannot build the cache: {e}")))?;
                Ok(FoyerTier {
                    cache,
                    disk: false,
                    memory_only: MemoryOnlyKeys::new(config),
                })
            }
            Err(e) => Err(CacheError::Tier(format!("cannot build the cache: {e}"))),
        }
    }
}

async fn build(
    config: &FoyerTierConfig,
    with_disk: bool,
) -> std::result::Result<HybridCache<String, Bytes>, String> {
    let builder = HybridCacheBuilder::new()
        .with_name("ferry-blocks")
        .with_metrics_registry(Box::new(MetricsBridge))
        // Blocks go to disk when memory evicts them, and all of memory is
        // flushed on close: hot blocks cost no disk writes, and a restart
        // still finds everything that was cached. (Writing on insertion
        // doubled the CPU of a warm stream by writing every block while it
        // was being served.)
        .with_policy(HybridCachePolicy::WriteOnEviction)
        .with_flush_on_close(true)
        .memory(usize::try_from(config.memory).unwrap_or(usize::MAX))
        .with_shards(memory_shards(config))
        .with_weighter(|key: &String, value: &Bytes| key.len() + value.len())
        .storage();
    if !with_disk {
        return builder.build().await.map_err(|e| e.to_string());
    }
    let dir = &config.dir;
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let device = FsDeviceBuilder::new(dir)
        .with_capacity(usize::try_from(config.disk).unwrap_or(usize::MAX))
        .build()
        .map_err(|e| format!("{}: {e}", dir.display()))?;
    // An entry must fit one engine block; leave room for the key and
    // headers. Flush buffers hold a few blocks so bursts of evictions are
    // not dropped (drops are counted: CACHE_DISK_WRITES_DROPPED).
    let engine_block = usize::try_from(config.block_size.saturating_mul(2))
        .unwrap_or(usize::MAX)
        .max(16 << 20);
    let engine = BlockEngineConfig::new(device)
        .with_block_size(engine_block)
        .with_buffer_pool_size(engine_block * 4)
        .with_submit_queue_size_threshold(engine_block * 8);
    builder
        .with_engine_config(engine)
        .with_recover_mode(RecoverMode::Quiet)
        .build()
        .await
        .map_err(|e| e.to_string())
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

fn served_from(source: foyer::Source, fetched_here: bool) -> ServedFrom {
    match source {
        foyer::Source::Memory => ServedFrom::Memory,
        foyer::Source::Disk => ServedFrom::Disk,
        foyer::Source::Outer if fetched_here => ServedFrom::Fetched,
        foyer::Source::Outer => ServedFrom::Joined,
    }
}

#[async_trait]
impl BlockTier for FoyerTier {
    async fn get(&self, key: &str) -> Result<Option<(Bytes, ServedFrom)>> {
        match self.cache.get(key).await {
            Ok(entry) => Ok(entry.map(|e| (e.value().clone(), served_from(e.source(), false)))),
            Err(e) => Err(CacheError::Tier(e.to_string())),
        }
    }

    fn put(&self, key: &str, block: Bytes) {
        self.cache.insert(key.to_string(), block);
    }

    async fn get_or_fetch(&self, key: &str, fetch: Fetch) -> Result<(Bytes, ServedFrom)> {
        // foyer wraps the fetch's error; keep the original to pass through.
        let fetched = Arc::new(AtomicBool::new(false));
        let memory_only = Arc::new(AtomicBool::new(false));
        let fetch_error: Arc<Mutex<Option<CacheError>>> = Arc::default();
        let run = {
            let (fetched, fetch_error, memory_only) =
                (fetched.clone(), fetch_error.clone(), memory_only.clone());
            move || async move {
                fetched.store(true, Ordering::Relaxed);
                let found = fetch.await.map_err(|e| {
                    let message = e.to_string();
                    if let Ok(mut slot) = fetch_error.lock() {
                        *slot = Some(e);
                    }
                    CacheError::Tier(message)
                })?;
                memory_only.store(found.memory_only, Ordering::Relaxed);
                let location = if found.memory_only {
                    Location::InMem
                } else {
                    Location::Default
                };
                Ok::<_, CacheError>((
                    found.bytes,
                    HybridCacheProperties::default().with_location(location),
                ))
            }
        };
        match self.cache.get_or_fetch(key, run).await {
            Ok(entry) => {
                if memory_only.load(Ordering::Relaxed) {
                    self.memory_only.note(key);
                }
                Ok((
                    entry.value().clone(),
                    served_from(entry.source(), fetched.load(Ordering::Relaxed)),
                ))
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
        self.disk
    }

    async fn close(&self) -> Result<()> {
        for key in self.memory_only.take() {
            self.cache.memory().remove(&key);
        }
        self.cache
            .close()
            .await
            .map_err(|e| CacheError::Tier(e.to_string()))
    }
}
