//! The block tier conformance suite, run on each configuration of each
//! implementation: foyer with memory only, memory and disk, and a memory
//! tier too small for the data (so blocks live on disk); and the
//! pass-through tier of a node whose cache is off.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use ferry_cache::tier::{
    BlockTier, FoyerTier, FoyerTierConfig, PassThroughTier, ServedFrom, conformance,
};
use ferry_config::DiskConfig;
use futures::FutureExt;

const BLOCK: usize = 1 << 20;
const PAGE: u64 = 64 << 10;

fn foyer_config(dir: &Path, memory: u64, disk: u64) -> FoyerTierConfig {
    FoyerTierConfig {
        memory,
        disks: if disk == 0 {
            Vec::new()
        } else {
            vec![DiskConfig {
                dir: dir.to_path_buf(),
                capacity: disk,
            }]
        },
        block_size: BLOCK as u64,
        page_size: PAGE,
        pin_share: 0.1,
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
    tier.put("given", conformance::block_bytes(1, 4096), false);
    assert!(
        tier.get("given", 4096, 0..4096)
            .await
            .expect("get")
            .is_none()
    );
    let fetch = async { Ok(conformance::block_bytes(2, 4096).into()) }.boxed();
    tier.get_or_fetch("fetched", 4096, false, fetch)
        .await
        .expect("fetch");
    assert!(
        tier.get("fetched", 4096, 0..4096)
            .await
            .expect("get")
            .is_none()
    );
    assert!(!tier.holds("fetched", 4096));
}

/// A block on disk is kept as pages: a range read loads only the pages
/// it covers (foyer's own count of bytes read from the device says so),
/// answers exactly the range, and keeps only those pages in memory; a
/// whole-block read loads every page and keeps the block in memory for the
/// next reader.
#[tokio::test]
async fn foyer_disk_range_reads_load_only_their_pages() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = foyer_config(dir.path(), 64 << 20, 64 << 20);
    let block = conformance::block_bytes(42, BLOCK);
    let len = BLOCK as u64;
    {
        let tier = FoyerTier::open(&config).await.expect("open");
        tier.put("paged", block.clone(), false);
        tier.close().await.expect("close");
    }
    // Reopened: memory is empty, the block is on disk only.
    let tier = FoyerTier::open(&config).await.expect("reopen");
    assert!(tier.holds("paged", len), "every page is listed on disk");
    assert!(
        !tier.holds("paged", len + 1),
        "a block of another length is not"
    );
    for want in [0..100, 70_000..200_000, 327_679..327_681, len - 10..len] {
        let before = tier.disk_io().read;
        let (got, source) = tier
            .get("paged", len, want.clone())
            .await
            .expect("get")
            .expect("the range is on disk");
        let read = tier.disk_io().read - before;
        assert_eq!(source, ServedFrom::Disk, "{want:?}");
        assert!(
            got.concat() == block.slice(want.start as usize..want.end as usize),
            "{want:?}: wrong bytes"
        );
        let pages = want.end.div_ceil(PAGE) - want.start / PAGE;
        // Each page is read with its header, rounded up to 4 KiB.
        assert!(
            read <= pages * (PAGE + 8192),
            "{want:?}: {read} bytes read from disk for {pages} pages"
        );
    }
    let (_, source) = tier
        .get("paged", len, 0..100)
        .await
        .expect("get")
        .expect("hit");
    assert_eq!(
        source,
        ServedFrom::Memory,
        "a range read keeps the pages it read in memory"
    );
    let (_, source) = tier
        .get("paged", len, 500_000..500_100)
        .await
        .expect("get")
        .expect("hit");
    assert_eq!(source, ServedFrom::Disk, "but not the rest of their block");
    let refetch = async { panic!("a block on disk must not be fetched") }.boxed();
    let (got, source) = tier
        .get_or_fetch("paged", len, false, refetch)
        .await
        .expect("whole block");
    assert_eq!((got == block, source), (true, ServedFrom::Disk));
    let (_, source) = tier
        .get("paged", len, 0..100)
        .await
        .expect("get")
        .expect("hit");
    assert_eq!(
        source,
        ServedFrom::Memory,
        "a whole-block read keeps the block in memory"
    );
    tier.close().await.expect("close");
}

/// Reads from disk write nothing to it: the disk tier is written once per
/// fetched block, however often the block is read afterwards.
#[tokio::test]
async fn foyer_disk_hits_write_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Memory for about two blocks: most whole-block reads come from disk
    // and push other blocks out of memory.
    let tier = FoyerTier::open(&foyer_config(dir.path(), 2 * BLOCK as u64 + 4096, 64 << 20))
        .await
        .expect("open");
    let blocks: Vec<Bytes> = (0..8)
        .map(|i| conformance::block_bytes(900 + i, BLOCK))
        .collect();
    for (i, block) in blocks.iter().enumerate() {
        let fetched = block.clone();
        tier.get_or_fetch(
            &format!("churn{i}"),
            BLOCK as u64,
            false,
            async move { Ok(fetched.into()) }.boxed(),
        )
        .await
        .expect("fetch");
    }
    tier.close().await.expect("flush");
    let tier = FoyerTier::open(&foyer_config(dir.path(), 2 * BLOCK as u64 + 4096, 64 << 20))
        .await
        .expect("reopen");
    let written = tier.disk_io().written;
    let mut served = 0u64;
    for round in 0..3 {
        for (i, block) in blocks.iter().enumerate() {
            let key = format!("churn{i}");
            let refetch = async { panic!("a block on disk must not be fetched") }.boxed();
            let (got, _) = tier
                .get_or_fetch(&key, BLOCK as u64, false, refetch)
                .await
                .expect("read");
            assert!(got == *block, "round {round}, block {i}");
            let (got, _) = tier
                .get(&key, BLOCK as u64, 1000..300_000)
                .await
                .expect("get")
                .expect("hit");
            assert!(
                got.concat() == block.slice(1000..300_000),
                "round {round}, block {i}"
            );
            served += (BLOCK + 299_000) as u64;
        }
    }
    tier.close().await.expect("close");
    // Reads write nothing; closing may write one page of foyer's
    // tombstone log's bookkeeping. The bound: at most 0.01 bytes
    // written per byte served.
    let wrote = tier.disk_io().written - written;
    assert!(
        wrote <= 4096 && wrote * 100 <= served,
        "disk hits wrote {wrote} bytes to the disk tier for {served} served"
    );
}

/// A disk tier damaged under a running node (bytes flipped in its files,
/// then a file cut short) never serves a wrong byte: every read is the
/// block's bytes, from the tier or fetched again.
#[tokio::test]
async fn foyer_damage_under_a_running_tier_serves_no_wrong_byte() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = foyer_config(dir.path(), 2 * BLOCK as u64 + 4096, 64 << 20);
    let blocks: Vec<Bytes> = (0..8)
        .map(|i| conformance::block_bytes(700 + i, BLOCK))
        .collect();
    let tier = on_disk(&config, "hot", &blocks).await;
    let len = BLOCK as u64;
    let read_all = |round: &'static str| {
        let tier = &tier;
        let blocks = &blocks;
        async move {
            let mut from_tier = 0;
            for (i, block) in blocks.iter().enumerate() {
                let key = format!("hot{i}");
                for want in [0..len, 1000..300_000, len - 100..len] {
                    if let Ok(Some((pieces, _))) = tier.get(&key, len, want.clone()).await {
                        from_tier += 1;
                        assert!(
                            pieces.concat() == block[want.start as usize..want.end as usize],
                            "{round}: block {i} {want:?}: wrong bytes from the tier"
                        );
                    }
                }
                let again = block.clone();
                let (got, _) = tier
                    .get_or_fetch(&key, len, false, async move { Ok(again.into()) }.boxed())
                    .await
                    .expect("read");
                assert!(got == *block, "{round}: block {i}: wrong bytes");
            }
            from_tier
        }
    };
    assert!(read_all("intact").await > 0, "the blocks were on disk");
    conformance::damage_files(dir.path(), 64 << 10);
    read_all("flipped").await;
    for entry in walk(dir.path()) {
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(&entry)
            .expect("open a cache file");
        let size = file.metadata().expect("size").len();
        file.set_len(size / 3).expect("truncate");
    }
    read_all("truncated").await;
    tier.close().await.expect("close");
}

/// A tier over `config` whose memory is empty and whose disk holds
/// `blocks` under `NAME0`, `NAME1`, ...: they were put, the tier closed and
/// opened again.
async fn on_disk(config: &FoyerTierConfig, name: &str, blocks: &[Bytes]) -> FoyerTier {
    let tier = FoyerTier::open(config).await.expect("open");
    for (i, block) in blocks.iter().enumerate() {
        tier.put(&format!("{name}{i}"), block.clone(), false);
    }
    tier.close().await.expect("flush");
    FoyerTier::open(config).await.expect("reopen")
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

fn two_disks(root: &Path, small: u64, large: u64) -> FoyerTierConfig {
    FoyerTierConfig {
        memory: 2 * BLOCK as u64 + 4096,
        disks: vec![
            DiskConfig {
                dir: root.join("small"),
                capacity: small,
            },
            DiskConfig {
                dir: root.join("large"),
                capacity: large,
            },
        ],
        block_size: BLOCK as u64,
        page_size: PAGE,
        pin_share: 0.1,
    }
}

/// Blocks spread over the disks by capacity (1:3 here), each disk's pages
/// written by that disk only, and every block comes back from disk after
/// a restart.
#[tokio::test]
async fn foyer_blocks_spread_over_disks_by_capacity() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = two_disks(dir.path(), 64 << 20, 192 << 20);
    let blocks: Vec<Bytes> = (0..96)
        .map(|i| conformance::block_bytes(2000 + i, PAGE as usize))
        .collect();
    let tier = FoyerTier::open(&config).await.expect("open");
    assert!(tier.has_disk());
    for (i, block) in blocks.iter().enumerate() {
        tier.put(&format!("spread{i}"), block.clone(), false);
    }
    tier.close().await.expect("close");
    let written: Vec<(String, u64)> = tier
        .disk_io_by_disk()
        .into_iter()
        .map(|(disk, io)| (disk, io.written))
        .collect();
    let total: u64 = written.iter().map(|(_, w)| w).sum();
    let small = written
        .iter()
        .find(|(disk, _)| disk.ends_with("small"))
        .map_or(0, |(_, w)| *w);
    let share = small as f64 / total as f64;
    assert!(
        (0.1..=0.4).contains(&share),
        "the disk with a quarter of the capacity wrote {share:.2} of the bytes: {written:?}"
    );
    let tier = FoyerTier::open(&config).await.expect("reopen");
    for (i, block) in blocks.iter().enumerate() {
        let len = block.len() as u64;
        let (got, source) = tier
            .get(&format!("spread{i}"), len, 0..len)
            .await
            .expect("get")
            .unwrap_or_else(|| panic!("block {i} is on one of the disks"));
        assert!(got.concat() == *block, "block {i}");
        assert_eq!(source, ServedFrom::Disk, "block {i}");
    }
    tier.close().await.expect("close");
}

/// A disk that cannot be opened (its folder is a file) is left out: the
/// tier runs on the other, and blocks still reach disk.
#[tokio::test]
async fn foyer_a_disk_that_cannot_open_is_left_out() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("small"), b"not a folder").expect("write");
    let config = two_disks(dir.path(), 64 << 20, 64 << 20);
    let tier = FoyerTier::open(&config).await.expect("open");
    assert!(tier.has_disk(), "one disk opened");
    assert_eq!(tier.disk_io_by_disk().len(), 1);
    let block = conformance::block_bytes(3000, BLOCK);
    tier.put("survivor", block.clone(), false);
    tier.close().await.expect("close");
    let tier = FoyerTier::open(&config).await.expect("reopen");
    let (got, source) = tier
        .get("survivor", BLOCK as u64, 0..BLOCK as u64)
        .await
        .expect("get")
        .expect("on the disk that opened");
    assert!(got.concat() == block);
    assert_eq!(source, ServedFrom::Disk);
    tier.close().await.expect("close");
}

/// One of two disks loses its contents under a running tier (its files
/// cut to nothing): every read is still right, and the blocks of the
/// other disk are still disk hits.
#[tokio::test]
async fn foyer_a_broken_disk_loses_only_its_blocks() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = two_disks(dir.path(), 64 << 20, 64 << 20);
    let blocks: Vec<Bytes> = (0..32)
        .map(|i| conformance::block_bytes(4000 + i, PAGE as usize))
        .collect();
    let tier = on_disk(&config, "broken", &blocks).await;
    for file in walk(&dir.path().join("small")) {
        std::fs::OpenOptions::new()
            .write(true)
            .open(&file)
            .expect("open")
            .set_len(0)
            .expect("truncate");
    }
    let mut from_disk = 0;
    for (i, block) in blocks.iter().enumerate() {
        let key = format!("broken{i}");
        let len = block.len() as u64;
        if let Ok(Some((got, source))) = tier.get(&key, len, 0..len).await {
            assert!(
                got.concat() == *block,
                "block {i}: wrong bytes from the tier"
            );
            from_disk += usize::from(source == ServedFrom::Disk);
        }
        let again = block.clone();
        let (got, _) = tier
            .get_or_fetch(&key, len, false, async move { Ok(again.into()) }.boxed())
            .await
            .expect("read");
        assert!(got == *block, "block {i}: wrong bytes");
    }
    assert!(
        (4..32).contains(&from_disk),
        "the other disk's blocks are still hits, the broken disk's are not: {from_disk} of 32"
    );
    tier.close().await.expect("close");
}

/// A tier with a pinned share big enough for an engine of its own: 128
/// MiB of disk, half of it for pinned blocks, memory for two blocks.
fn pinning(dir: &Path) -> FoyerTierConfig {
    FoyerTierConfig {
        memory: 2 * BLOCK as u64 + 4096,
        pin_share: 0.5,
        ..foyer_config(dir, 0, 128 << 20)
    }
}

/// Puts `count` unpinned blocks named `name0..`, closing (flushing) the
/// tier every 16 so that foyer's buffers drop nothing, and answers the
/// tier opened again.
async fn sweep(config: &FoyerTierConfig, mut tier: FoyerTier, name: &str, count: u64) -> FoyerTier {
    for i in 0..count {
        tier.put(
            &format!("{name}{i}"),
            conformance::block_bytes(7000 + i, BLOCK),
            false,
        );
        if i % 16 == 15 {
            tier.close().await.expect("flush");
            tier = FoyerTier::open(config).await.expect("reopen");
        }
    }
    tier.close().await.expect("flush");
    FoyerTier::open(config).await.expect("reopen")
}

/// Pinned blocks stay on disk through a sweep of unpinned ones several
/// times the unpinned share, which evicts unpinned blocks cached before it.
#[tokio::test]
async fn foyer_pinned_blocks_outlive_a_sweep_of_unpinned_ones() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = pinning(dir.path());
    let tier = FoyerTier::open(&config).await.expect("open");
    let pinned: Vec<Bytes> = (0..8)
        .map(|i| conformance::block_bytes(5000 + i, BLOCK))
        .collect();
    let early: Vec<Bytes> = (0..8)
        .map(|i| conformance::block_bytes(6000 + i, BLOCK))
        .collect();
    for (i, block) in pinned.iter().enumerate() {
        tier.put(&format!("pinned{i}"), block.clone(), true);
    }
    for (i, block) in early.iter().enumerate() {
        tier.put(&format!("early{i}"), block.clone(), false);
    }
    tier.close().await.expect("flush");
    let tier = FoyerTier::open(&config).await.expect("reopen");
    for i in 0..8 {
        assert!(
            tier.holds_pinned(&format!("pinned{i}"), BLOCK as u64),
            "pinned block {i}"
        );
        assert!(
            !tier.holds_pinned(&format!("early{i}"), BLOCK as u64),
            "unpinned block {i}"
        );
    }
    // Three times the unpinned share.
    let tier = sweep(&config, tier, "sweep", 192).await;
    for (i, block) in pinned.iter().enumerate() {
        let (got, source) = tier
            .get(&format!("pinned{i}"), BLOCK as u64, 0..BLOCK as u64)
            .await
            .expect("get")
            .unwrap_or_else(|| panic!("pinned block {i} was evicted by unpinned ones"));
        assert!(got.concat() == *block, "pinned block {i}: wrong bytes");
        assert_eq!(source, ServedFrom::Disk);
    }
    let mut early_left = 0;
    for i in 0..8 {
        early_left += usize::from(tier.holds(&format!("early{i}"), BLOCK as u64));
    }
    assert_eq!(
        early_left, 0,
        "the sweep evicts unpinned blocks cached before it"
    );
    tier.close().await.expect("close");
}

/// A block cached before its prefix was pinned moves to the pinned share
/// when read whole as pinned (a warm-up after `ferry cache pin`).
#[tokio::test]
async fn foyer_a_block_cached_before_its_pin_moves_to_the_pinned_share() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = pinning(dir.path());
    let block = conformance::block_bytes(5100, BLOCK);
    let tier = on_disk(&config, "later", std::slice::from_ref(&block)).await;
    assert!(tier.holds("later0", BLOCK as u64) && !tier.holds_pinned("later0", BLOCK as u64));
    let unused = block.clone();
    let (got, source) = tier
        .get_or_fetch(
            "later0",
            BLOCK as u64,
            true,
            async move { Ok(unused.into()) }.boxed(),
        )
        .await
        .expect("read");
    assert!(got == block);
    assert_eq!(
        source,
        ServedFrom::Disk,
        "read from the unpinned share, not fetched"
    );
    tier.close().await.expect("flush");
    let tier = FoyerTier::open(&config).await.expect("reopen");
    assert!(
        tier.holds_pinned("later0", BLOCK as u64),
        "moved to the pinned share"
    );
    let tier = sweep(&config, tier, "sweep", 96).await;
    let (got, _) = tier
        .get("later0", BLOCK as u64, 0..BLOCK as u64)
        .await
        .expect("get")
        .expect("still on disk after the sweep");
    assert!(got.concat() == block);
    tier.close().await.expect("close");
}

/// A disk whose reads fail (as a dying device's would: every read an
/// I/O error) under a running tier: every read is still right, from
/// outside; the other disk's blocks are still disk hits; after three
/// failures the disk is set aside and not read at all.
#[tokio::test]
async fn foyer_a_disk_whose_reads_fail_loses_only_its_blocks() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = two_disks(dir.path(), 64 << 20, 64 << 20);
    let blocks: Vec<Bytes> = (0..32)
        .map(|i| conformance::block_bytes(4500 + i, PAGE as usize))
        .collect();
    let tier = on_disk(&config, "failing", &blocks).await;
    tier.inject_disk_read_error(
        &dir.path().join("small"),
        Some("Input/output error (os error 5)"),
    );
    let read_before = tier.disk_io_by_disk();
    let mut from_disk = 0;
    for (i, block) in blocks.iter().enumerate() {
        let key = format!("failing{i}");
        let len = block.len() as u64;
        let again = block.clone();
        let (got, source) = tier
            .get_or_fetch(&key, len, false, async move { Ok(again.into()) }.boxed())
            .await
            .expect("a failing disk is a miss, not an error");
        assert!(got == *block, "block {i}: wrong bytes");
        from_disk += usize::from(source == ServedFrom::Disk);
    }
    assert!(
        (4..32).contains(&from_disk),
        "the other disk's blocks are still disk hits, the failing disk's are not: {from_disk} of 32"
    );
    let read_after = tier.disk_io_by_disk();
    let large_read = |io: &[(String, ferry_cache::tier::DiskIo)]| {
        io.iter()
            .find(|(disk, _)| disk.ends_with("large"))
            .map_or(0, |(_, io)| io.read)
    };
    assert!(
        large_read(&read_after) > large_read(&read_before),
        "the healthy disk was read"
    );
    tier.close().await.expect("close");
}

/// A disk whose filesystem is full (a 24 MiB tmpfs under a tier told it
/// has 256 MiB): every read is right, writes pause instead of failing
/// inside foyer, and what reached the disk before it filled is still
/// served from it. Needs root to mount the tmpfs (as the test command
/// runs in CI).
#[tokio::test]
async fn foyer_a_full_disk_pauses_its_writes_and_keeps_serving() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mount = dir.path().join("small-fs");
    std::fs::create_dir_all(&mount).expect("mkdir");
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=24m", "tmpfs"])
        .arg(&mount)
        .status()
        .expect("run mount");
    assert!(mounted.success(), "mounting a 24 MiB tmpfs needs root");
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            // Lazy: foyer's threads may still hold its files open.
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(&self.0)
                .status();
        }
    }
    let _unmount = Unmount(mount.clone());
    let config = FoyerTierConfig {
        memory: 2 * BLOCK as u64 + 4096,
        ..foyer_config(&mount.join("cache"), 0, 256 << 20)
    };
    let mut tier = FoyerTier::open(&config).await.expect("open");
    let blocks: Vec<Bytes> = (0..64)
        .map(|i| conformance::block_bytes(8000 + i, BLOCK))
        .collect();
    for (i, block) in blocks.iter().enumerate() {
        tier.put(&format!("full{i}"), block.clone(), false);
        if i % 4 == 3 {
            tier.close().await.expect("close a tier on a full disk");
            tier = FoyerTier::open(&config).await.expect("reopen");
        }
    }
    tier.close().await.expect("close");
    let tier = FoyerTier::open(&config).await.expect("reopen");
    let mut from_disk = 0;
    for (i, block) in blocks.iter().enumerate() {
        let key = format!("full{i}");
        if let Some((got, _)) = tier
            .get(&key, BLOCK as u64, 0..BLOCK as u64)
            .await
            .expect("a full disk's reads do not fail")
        {
            assert!(
                got.concat() == *block,
                "block {i}: wrong bytes from a full disk"
            );
            from_disk += 1;
        }
    }
    assert!(
        (1..64).contains(&from_disk),
        "blocks written before the disk filled are served from it, the rest are misses: {from_disk} of 64"
    );
    tier.close().await.expect("close");
}

/// A burst of writes larger than a disk's flush buffers loses pages (foyer
/// drops what its buffers cannot take); a warm-up's `keep_on_disk` writes
/// such a block again until its disk holds it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foyer_keep_on_disk_survives_a_burst_larger_than_the_flush_buffers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tier = FoyerTier::open(&foyer_config(dir.path(), 4 * BLOCK as u64, 512 << 20))
        .await
        .expect("open");
    let blocks: Vec<Bytes> = (0..256u32)
        .map(|i| Bytes::from(vec![(i % 251) as u8; BLOCK]))
        .collect();
    for (i, block) in blocks.iter().enumerate() {
        tier.put(&format!("burst{i}"), block.clone(), false);
    }
    let tier = &tier;
    let kept = futures::future::join_all(blocks.iter().enumerate().map(|(i, block)| async move {
        let key = format!("burst{i}");
        tier.keep_on_disk(&key, block, false).await
    }))
    .await;
    assert!(kept.iter().all(|k| *k), "some block could not be kept");
    for (i, block) in blocks.iter().enumerate() {
        let key = format!("burst{i}");
        assert!(tier.on_disk(&key, BLOCK as u64), "{key} is not on disk");
        let (pieces, _) = tier
            .get(&key, BLOCK as u64, 0..BLOCK as u64)
            .await
            .expect("read")
            .expect("held");
        assert!(pieces.concat() == block.as_ref(), "{key} has other bytes");
    }
    tier.close().await.expect("close");
}
