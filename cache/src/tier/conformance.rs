//! The conformance suite of the [`BlockTier`] seam, called from each
//! implementation's tests: [`run_every_tier`] is the contract every tier
//! keeps, the pass-through tier of a node without a cache included;
//! [`run_keeping_tier`] adds what a tier that keeps blocks must do. Every
//! check uses keys of its own, so they can share one tier.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use futures::FutureExt;

use super::{BlockTier, Fetch, ServedFrom};
use crate::error::CacheError;
use crate::source::FetchedBlock;

/// The contract of every tier, whether it keeps blocks or not.
pub async fn run_every_tier(tier: &Arc<dyn BlockTier>, block_size: usize) {
    an_unknown_key_is_a_miss(tier.as_ref()).await;
    a_fetch_answers_its_bytes(tier.as_ref(), block_size).await;
    a_failed_fetch_passes_through_and_keeps_nothing(tier.as_ref()).await;
    concurrent_callers_all_get_the_bytes(tier).await;
    tier.close().await.expect("close");
}

/// Every check that needs no restart, for a tier that keeps blocks.
pub async fn run_keeping_tier(tier: &Arc<dyn BlockTier>, block_size: usize) {
    assert!(tier.keeps_blocks());
    an_unknown_key_is_a_miss(tier.as_ref()).await;
    a_fetch_answers_its_bytes(tier.as_ref(), block_size).await;
    a_failed_fetch_passes_through_and_keeps_nothing(tier.as_ref()).await;
    concurrent_callers_all_get_the_bytes(tier).await;
    a_miss_then_a_put_then_a_hit(tier.as_ref()).await;
    a_fetch_runs_once_and_its_block_is_kept(tier.as_ref()).await;
    concurrent_misses_share_one_fetch(tier).await;
    keys_never_alias(tier.as_ref()).await;
    full_blocks_round_trip(tier.as_ref(), block_size).await;
    a_block_in_memory_is_answered_at_once_until_forgotten(tier.as_ref(), block_size).await;
}

/// Distinct bytes for each (seed, length).
pub fn block_bytes(seed: u64, len: usize) -> Bytes {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn fresh_key(name: &str) -> String {
    format!("conformance\0{name}\0{}", uuid::Uuid::new_v4())
}

/// A fetch returning `bytes` that counts its runs in `runs`.
fn counting_fetch(bytes: Bytes, runs: &Arc<AtomicUsize>) -> Fetch {
    let runs = runs.clone();
    async move {
        runs.fetch_add(1, Ordering::SeqCst);
        Ok(bytes.into())
    }
    .boxed()
}

fn failing_fetch() -> Fetch {
    async { Err(CacheError::Body("the store is gone".into())) }.boxed()
}

/// The whole block under `key`, if the tier holds it.
async fn whole(tier: &dyn BlockTier, key: &str, len: usize) -> Option<(Bytes, ServedFrom)> {
    let len = len as u64;
    tier.get(key, len, 0..len)
        .await
        .expect("get")
        .map(|(pieces, source)| (Bytes::from(pieces.concat()), source))
}

fn is_hit(source: ServedFrom) -> bool {
    matches!(source, ServedFrom::Memory | ServedFrom::Disk)
}

pub async fn an_unknown_key_is_a_miss(tier: &dyn BlockTier) {
    let key = fresh_key("unknown");
    assert!(
        whole(tier, &key, 1000).await.is_none(),
        "an unknown key is a miss"
    );
}

/// A miss runs the fetch and answers exactly its bytes, up to a full
/// block, as this caller's fetch.
pub async fn a_fetch_answers_its_bytes(tier: &dyn BlockTier, block_size: usize) {
    for (seed, len) in [(700u64, 1usize), (701, 4096), (702, block_size)] {
        let key = fresh_key("answer");
        let runs = Arc::new(AtomicUsize::new(0));
        let block = block_bytes(seed, len);
        let (got, source) = tier
            .get_or_fetch(
                &key,
                len as u64,
                false,
                counting_fetch(block.clone(), &runs),
            )
            .await
            .expect("fetch");
        assert!(got == block, "{len} bytes: the fetch's bytes come back");
        assert_eq!(source, ServedFrom::Fetched, "{len} bytes");
        assert_eq!(runs.load(Ordering::SeqCst), 1, "{len} bytes");
    }
}

/// Callers that arrive together for one key all get its bytes, whether
/// the tier lets them share a fetch or runs one each.
pub async fn concurrent_callers_all_get_the_bytes(tier: &Arc<dyn BlockTier>) {
    let key = fresh_key("together");
    let block = block_bytes(5, 200_000);
    let runs = Arc::new(AtomicUsize::new(0));
    let callers: Vec<_> = (0..16)
        .map(|_| {
            let (tier, key, block, runs) = (tier.clone(), key.clone(), block.clone(), runs.clone());
            tokio::spawn(async move {
                let len = block.len() as u64;
                tier.get_or_fetch(&key, len, false, counting_fetch(block, &runs))
                    .await
            })
        })
        .collect();
    for caller in callers {
        let (got, _) = caller.await.expect("join").expect("get_or_fetch");
        assert!(got == block, "every caller gets the block's bytes");
    }
    let runs = runs.load(Ordering::SeqCst);
    assert!((1..=16).contains(&runs), "{runs} fetches for 16 callers");
}

pub async fn a_miss_then_a_put_then_a_hit(tier: &dyn BlockTier) {
    let key = fresh_key("put");
    assert!(
        whole(tier, &key, 10_000).await.is_none(),
        "an unknown key is a miss"
    );
    let block = block_bytes(1, 10_000);
    tier.put(&key, block.clone(), false);
    let (got, source) = whole(tier, &key, 10_000)
        .await
        .expect("a put block is a hit");
    assert_eq!(got, block);
    assert!(is_hit(source), "{source:?}");
}

pub async fn a_fetch_runs_once_and_its_block_is_kept(tier: &dyn BlockTier) {
    let key = fresh_key("fetch");
    let block = block_bytes(2, 70_000);
    let runs = Arc::new(AtomicUsize::new(0));
    let (got, source) = tier
        .get_or_fetch(&key, 70_000, false, counting_fetch(block.clone(), &runs))
        .await
        .expect("fetch");
    assert_eq!((got, source), (block.clone(), ServedFrom::Fetched));
    let (got, source) = tier
        .get_or_fetch(&key, 70_000, false, counting_fetch(block.clone(), &runs))
        .await
        .expect("hit");
    assert_eq!(got, block);
    assert!(is_hit(source), "a fetched block is kept: {source:?}");
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    let (got, _) = whole(tier, &key, 70_000).await.expect("kept");
    assert_eq!(got, block);
}

/// However the callers interleave, one fetch runs and all get its bytes:
/// those that came while it ran joined it, later ones hit.
pub async fn concurrent_misses_share_one_fetch(tier: &Arc<dyn BlockTier>) {
    let key = fresh_key("herd");
    let block = block_bytes(3, 300_000);
    let runs = Arc::new(AtomicUsize::new(0));
    let callers: Vec<_> = (0..32)
        .map(|_| {
            let (tier, key, block, runs) = (tier.clone(), key.clone(), block.clone(), runs.clone());
            tokio::spawn(async move {
                let fetch = counting_fetch(block, &runs);
                tier.get_or_fetch(&key, 300_000, false, fetch).await
            })
        })
        .collect();
    let mut fetched = 0;
    for caller in callers {
        let (got, source) = caller.await.expect("join").expect("get_or_fetch");
        assert_eq!(got, block);
        fetched += usize::from(source == ServedFrom::Fetched);
    }
    assert_eq!(runs.load(Ordering::SeqCst), 1, "one fetch for 32 callers");
    assert_eq!(fetched, 1, "exactly one caller reports the fetch");
}

pub async fn a_failed_fetch_passes_through_and_keeps_nothing(tier: &dyn BlockTier) {
    let key = fresh_key("failure");
    match tier.get_or_fetch(&key, 1000, false, failing_fetch()).await {
        Err(CacheError::Body(message)) => assert_eq!(message, "the store is gone"),
        other => panic!("the fetch's own error must come back, got {other:?}"),
    }
    assert!(whole(tier, &key, 1000).await.is_none(), "nothing kept");
    let runs = Arc::new(AtomicUsize::new(0));
    let block = block_bytes(4, 1000);
    let (got, source) = tier
        .get_or_fetch(&key, 1000, false, counting_fetch(block.clone(), &runs))
        .await
        .expect("retry");
    assert_eq!(
        (got, source),
        (block, ServedFrom::Fetched),
        "a later read fetches again"
    );
}

/// Keys that differ only in their last field (as block size, index or
/// length do) hold their own bytes.
pub async fn keys_never_alias(tier: &dyn BlockTier) {
    let base = fresh_key("alias");
    let keys: Vec<String> = ["", "1", "2", "\u{0}", "10", "01"]
        .iter()
        .map(|suffix| format!("{base}{suffix}"))
        .collect();
    for (i, key) in keys.iter().enumerate() {
        tier.put(key, block_bytes(100 + i as u64, 4096 + i), false);
    }
    for (i, key) in keys.iter().enumerate() {
        let (got, _) = whole(tier, key, 4096 + i).await.expect("kept");
        assert_eq!(got, block_bytes(100 + i as u64, 4096 + i), "key {i}");
    }
}

/// Blocks of the configured size, the largest the tier must keep.
pub async fn full_blocks_round_trip(tier: &dyn BlockTier, block_size: usize) {
    let base = fresh_key("full");
    for i in 0..3u64 {
        tier.put(
            &format!("{base}{i}"),
            block_bytes(200 + i, block_size),
            false,
        );
    }
    for i in 0..3u64 {
        let (got, _) = whole(tier, &format!("{base}{i}"), block_size)
            .await
            .expect("a full block is kept");
        assert!(got == block_bytes(200 + i, block_size), "block {i} differs");
    }
}

/// A memory tier sized for `fits` blocks keeps that many: nothing is
/// evicted while there is room.
pub async fn keeps_what_fits_in_memory(tier: &dyn BlockTier, block_size: usize, fits: u64) {
    let base = fresh_key("fits");
    for i in 0..fits {
        tier.put(
            &format!("{base}{i}"),
            block_bytes(600 + i, block_size),
            false,
        );
    }
    for i in 0..fits {
        let (got, source) = whole(tier, &format!("{base}{i}"), block_size)
            .await
            .unwrap_or_else(|| panic!("block {i} of {fits} was evicted although it fitted"));
        assert!(got == block_bytes(600 + i, block_size), "block {i} differs");
        assert_eq!(source, ServedFrom::Memory, "block {i}");
    }
}

/// For a tier with a disk smaller memory than `count` blocks: blocks
/// evicted from memory are served from disk, byte for byte.
pub async fn evicted_blocks_come_back_from_disk(
    tier: &dyn BlockTier,
    block_size: usize,
    count: u64,
) {
    assert!(tier.has_disk());
    let base = fresh_key("evicted");
    for i in 0..count {
        tier.put(
            &format!("{base}{i}"),
            block_bytes(300 + i, block_size),
            false,
        );
    }
    let mut from_disk = 0;
    for i in 0..count {
        let (got, source) = whole(tier, &format!("{base}{i}"), block_size)
            .await
            .expect("an evicted block is on disk");
        assert!(got == block_bytes(300 + i, block_size), "block {i} differs");
        from_disk += usize::from(source == ServedFrom::Disk);
    }
    assert!(
        from_disk > 0,
        "memory cannot hold {count} blocks, so some came from disk"
    );
}

/// Opens a tier over the same folder again.
pub type Reopen<'a> =
    &'a (dyn Fn() -> futures::future::BoxFuture<'static, Arc<dyn BlockTier>> + Sync);

/// Blocks put before a graceful close are hits after reopening.
pub async fn blocks_survive_a_restart(open: Reopen<'_>, block_size: usize) {
    let keys: Vec<String> = (0..4)
        .map(|i| format!("{}{i}", fresh_key("restart")))
        .collect();
    let tier = open().await;
    for (i, key) in keys.iter().enumerate() {
        tier.put(key, block_bytes(400 + i as u64, block_size), false);
    }
    tier.close().await.expect("close");
    drop(tier);
    let tier = open().await;
    for (i, key) in keys.iter().enumerate() {
        let (got, source) = whole(tier.as_ref(), key, block_size)
            .await
            .expect("a block put before the restart is a hit");
        assert!(
            got == block_bytes(400 + i as u64, block_size),
            "block {i} differs"
        );
        assert_eq!(source, ServedFrom::Disk);
    }
    tier.close().await.expect("close");
}

/// A block just fetched is in memory whole: `get_in_memory` answers any
/// part of it (nothing past its end), until `forget_in_memory` drops it;
/// a memory-only block is then gone from the tier.
pub async fn a_block_in_memory_is_answered_at_once_until_forgotten(
    tier: &dyn BlockTier,
    block_size: usize,
) {
    let key = fresh_key("at-once");
    let bytes = block_bytes(650, block_size);
    let fetched = bytes.clone();
    let fetch: Fetch = async move {
        Ok(FetchedBlock {
            bytes: fetched,
            memory_only: true,
        })
    }
    .boxed();
    tier.get_or_fetch(&key, block_size as u64, false, fetch)
        .await
        .expect("fetch");
    let len = block_size as u64;
    assert_eq!(
        tier.get_in_memory(&key, 3..len / 2),
        Some(bytes.slice(3..block_size / 2))
    );
    assert_eq!(tier.get_in_memory(&key, 0..len), Some(bytes.clone()));
    assert_eq!(tier.get_in_memory(&key, 0..len + 1), None, "past its end");
    assert_eq!(tier.get_in_memory(&fresh_key("never"), 0..1), None);
    tier.forget_in_memory(&key);
    assert_eq!(tier.get_in_memory(&key, 0..len), None, "forgotten");
    assert!(
        whole(tier, &key, block_size).await.is_none(),
        "a forgotten memory-only block is gone"
    );
}

/// A fetch that says `memory_only` is served like any other, but never
/// reaches the disk: it is gone after a restart, while a block fetched
/// beside it the normal way is still there.
pub async fn memory_only_blocks_stay_off_disk(open: Reopen<'_>, block_size: usize) {
    let (kept, memory) = (fresh_key("kept"), fresh_key("memory-only"));
    let tier = open().await;
    let fetch = |seed: u64, memory_only: bool| -> Fetch {
        async move {
            Ok(FetchedBlock {
                bytes: block_bytes(seed, block_size),
                memory_only,
            })
        }
        .boxed()
    };
    let (got, source) = tier
        .get_or_fetch(&memory, block_size as u64, false, fetch(600, true))
        .await
        .expect("memory-only fetch");
    assert_eq!(
        (got, source),
        (block_bytes(600, block_size), ServedFrom::Fetched)
    );
    assert!(
        whole(tier.as_ref(), &memory, block_size).await.is_some(),
        "a memory-only block is still a hit"
    );
    tier.get_or_fetch(&kept, block_size as u64, false, fetch(601, false))
        .await
        .expect("fetch");
    tier.close().await.expect("close");
    drop(tier);
    let tier = open().await;
    assert!(
        whole(tier.as_ref(), &kept, block_size).await.is_some(),
        "the block fetched normally survives the restart"
    );
    assert!(
        whole(tier.as_ref(), &memory, block_size).await.is_none(),
        "a memory-only block must not be written to disk"
    );
    tier.close().await.expect("close");
}

/// Damaged bytes on disk are misses, never wrong bytes: blocks are put,
/// the tier closed, every file under `dir` damaged at regular offsets, and
/// the tier reopened.
pub async fn corrupt_blocks_are_misses(open: Reopen<'_>, dir: &Path, block_size: usize) {
    let keys: Vec<String> = (0..6)
        .map(|i| format!("{}{i}", fresh_key("corrupt")))
        .collect();
    let tier = open().await;
    for (i, key) in keys.iter().enumerate() {
        tier.put(key, block_bytes(500 + i as u64, block_size), false);
    }
    tier.close().await.expect("close");
    drop(tier);
    damage_files(dir, (block_size / 4).max(4096));
    let tier = open().await;
    assert!(
        tier.has_disk(),
        "damaged entries must not take the whole disk tier down"
    );
    let mut misses = 0;
    for (i, key) in keys.iter().enumerate() {
        let expected = block_bytes(500 + i as u64, block_size);
        match tier.get(key, block_size as u64, 0..block_size as u64).await {
            Ok(Some((got, _))) => assert!(
                got.concat() == expected,
                "block {i}: damaged bytes were served"
            ),
            Ok(None) | Err(CacheError::Tier(_)) => misses += 1,
            Err(other) => panic!("block {i}: {other}"),
        }
        // Whatever the tier found, a read still gets the right bytes.
        let refetch = {
            let expected = expected.clone();
            async move { Ok(expected.into()) }.boxed()
        };
        match tier
            .get_or_fetch(key, block_size as u64, false, refetch)
            .await
        {
            Ok((got, _)) => assert!(got == expected, "block {i}: wrong bytes after damage"),
            Err(CacheError::Tier(_)) => {}
            Err(other) => panic!("block {i}: {other}"),
        }
    }
    assert!(
        misses > 0,
        "the damage reached no block: the check proves nothing"
    );
    tier.close().await.expect("close");
}

/// Flips bytes every `stride` bytes of every file under `dir`.
pub fn damage_files(dir: &Path, stride: usize) {
    let entries = std::fs::read_dir(dir).expect("read the cache folder");
    for entry in entries {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            damage_files(&path, stride);
            continue;
        }
        let mut bytes = std::fs::read(&path).expect("read a cache file");
        let (mut at, len) = (stride / 2, bytes.len());
        while at < len {
            for b in &mut bytes[at..(at + 64).min(len)] {
                *b ^= 0x5A;
            }
            at += stride;
        }
        std::fs::write(&path, bytes).expect("write a cache file");
    }
}
