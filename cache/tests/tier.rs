//! The block tier conformance suite, run on each configuration of each
//! implementation: foyer with memory only, memory and disk, and a memory
//! tier too small for the data (so blocks live on disk); and the
//! pass-through tier of a node whose cache is off.

use std::path::Path;
use std::sync::Arc;

use ferry_cache::tier::{BlockTier, FoyerTier, FoyerTierConfig, PassThroughTier, conformance};
use futures::FutureExt;

const BLOCK: usize = 1 << 20;

fn foyer_config(dir: &Path, memory: u64, disk: u64) -> FoyerTierConfig {
    FoyerTierConfig {
        memory,
        disk,
        dir: dir.to_path_buf(),
        block_size: BLOCK as u64,
    }
}

async fn open(config: FoyerTierConfig) -> Arc<dyn BlockTier> {
    Arc::new(FoyerTier::open(&config).await.expect("open the tier"))
}

#[tokio::test]
async fn foyer_memory_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tier = open(foyer_config(dir.path(), 64 << 20, 0)).await;
    assert!(!tier.has_disk());
    conformance::run_keeping_tier(&tier, BLOCK).await;
}

#[tokio::test]
async fn foyer_small_memory_keeps_what_fits() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Eight blocks and a little room for keys: a gateway with a small
    // `cache.memory`.
    let tier = open(foyer_config(dir.path(), 8 * BLOCK as u64 + 8192, 0)).await;
    conformance::keeps_what_fits_in_memory(tier.as_ref(), BLOCK, 7).await;
}

#[tokio::test]
async fn foyer_memory_and_disk() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = foyer_config(dir.path(), 64 << 20, 128 << 20);
    let tier = open(config.clone()).await;
    assert!(tier.has_disk());
    conformance::run_keeping_tier(&tier, BLOCK).await;
    tier.close().await.expect("close");
    drop(tier);
    let reopen = move || open(config.clone()).boxed();
    conformance::blocks_survive_a_restart(&reopen, BLOCK).await;
    conformance::memory_only_blocks_stay_off_disk(&reopen, BLOCK).await;
}

#[tokio::test]
async fn foyer_mostly_disk() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Memory for about four blocks; the checks use more.
    let tier = open(foyer_config(dir.path(), 4 * BLOCK as u64 + 4096, 128 << 20)).await;
    conformance::run_keeping_tier(&tier, BLOCK).await;
    conformance::evicted_blocks_come_back_from_disk(tier.as_ref(), BLOCK, 12).await;
}

#[tokio::test]
async fn foyer_damaged_disk() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = foyer_config(dir.path(), 64 << 20, 64 << 20);
    let folder = dir.path().to_path_buf();
    let reopen = move || open(config.clone()).boxed();
    conformance::corrupt_blocks_are_misses(&reopen, &folder, BLOCK).await;
}

#[tokio::test]
async fn pass_through_keeps_nothing() {
    let tier: Arc<dyn BlockTier> = Arc::new(PassThroughTier);
    assert!(!tier.keeps_blocks() && !tier.has_disk());
    conformance::run_every_tier(&tier, BLOCK).await;
    // What it is given or fetches, it does not keep.
    tier.put("given", conformance::block_bytes(1, 4096));
    assert!(tier.get("given").await.expect("get").is_none());
    let fetch = async { Ok(conformance::block_bytes(2, 4096).into()) }.boxed();
    tier.get_or_fetch("fetched", fetch).await.expect("fetch");
    assert!(tier.get("fetched").await.expect("get").is_none());
}
