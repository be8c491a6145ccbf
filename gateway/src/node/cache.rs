//! This node's block cache: foyer's tiers sized from `[cache]`, or a
//! tier that keeps nothing when both sizes are 0, over the node's source.

use std::sync::Arc;

use ferry_cache::pins::Pins;
use ferry_cache::{BlockCache, BlockCacheConfig, BlockSource};
use ferry_config::Config;

use super::StartError;

/// A quarter of the machine's memory, at most 8 GiB (1 GiB if unknown).
pub(crate) fn default_memory_tier() -> u64 {
    let total = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                .map(|kib| kib * 1024)
        });
    total.map_or(1 << 30, |bytes| (bytes / 4).min(8 << 30))
}

/// What this node's tiers hold together (memory and disk): its capacity as
/// the cluster and warm on arrival count it.
pub(crate) fn tier_capacity(config: &Config) -> u64 {
    config
        .cache
        .memory
        .unwrap_or_else(default_memory_tier)
        .saturating_add(config.cache.disk)
}

/// The sources a node's block cache reads through: its own reads, and
/// the loads it makes for peers.
pub(crate) struct Sources {
    pub own: Arc<dyn BlockSource>,
    pub owner: Arc<dyn BlockSource>,
}

pub(crate) async fn open(
    config: &Config,
    sources: Sources,
    pins: Arc<Pins>,
) -> Result<Arc<BlockCache>, StartError> {
    let memory = config.cache.memory.unwrap_or_else(default_memory_tier);
    let off = memory == 0 && config.cache.disk == 0;
    if off && config.cluster.is_some() {
        return Err(StartError::Config(
            "cache.memory and cache.disk are both 0, but a cluster node needs a block cache".into(),
        ));
    }
    let cache = BlockCache::open(
        &BlockCacheConfig {
            memory,
            disks: config.cache.disks.clone(),
            block_size: config.cache.block_size,
            disk_page: config.cache.disk_page,
            readahead: config.cache.readahead,
            inflight: config.cache.inflight,
            inflight_per_read: config.cache.inflight_per_read,
            inflight_wait: config.cache.inflight_wait,
            send_timeout: config.cache.send_timeout,
            pin_share: config.cache.pin_share,
        },
        sources.own,
    )
    .await?
    .with_owner_source(sources.owner)
    .with_pins(pins);
    if off {
        tracing::info!("block cache off: every read goes to the stores");
        return Ok(Arc::new(cache));
    }
    tracing::info!(
        memory_mib = memory >> 20,
        disk_mib = if cache.has_disk_tier() {
            config.cache.disk >> 20
        } else {
            0
        },
        disks = config.cache.disks.len(),
        block_kib = config.cache.block_size >> 10,
        readahead_mib = config.cache.readahead >> 20,
        "block cache"
    );
    Ok(Arc::new(cache))
}
