//! The block cache: byte-exact reads for any range, one store read per block
//! under a herd, a disk tier that survives a restart, cache failures that
//! are misses, and store failures that reach the reader.

use std::sync::Arc;

use bytes::Bytes;
use ferry_cache::ChainSource;
use ferry_cache::store::{Counted, Faulty, decorate};
use ferry_cache::{BlockCache, BlockCacheConfig, BlockSource, StoreCounters, StoreHandle, Stores};
use ferry_config::StoreSpec;
use ferry_meta::{Layout, Segment};
use futures::StreamExt;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use proptest::prelude::*;

const MIB: u64 = 1 << 20;

fn spec(root: &std::path::Path) -> StoreSpec {
    let raw = ferry_config::RawConfig::from_toml(&format!(
        "[stores.data]\nurl = \"file://{}\"\n",
        root.display()
    ))
    .expect("toml");
    let config = raw
        .build(&Default::default(), &ferry_config::Overrides::default())
        .expect("config");
    config.stores["data"].clone()
}

/// A file store wrapped to count reads (and optionally fail them).
fn counted_stores(root: &std::path::Path, fail_after: Option<u64>) -> (Stores, Arc<StoreCounters>) {
    std::fs::create_dir_all(root).expect("mkdir");
    let local: Arc<dyn ObjectStore> = Arc::new(LocalFileSystem::new_with_prefix(root).expect("fs"));
    let faulty = decorate(
        local,
        Faulty {
            fail_after,
            ..Faulty::default()
        },
    );
    let counted = Counted::new("data");
    let counters = counted.counters();
    let handle = StoreHandle {
        name: "data".into(),
        spec: spec(root),
        client: decorate(faulty, counted),
        supports_attributes: false,
    };
    (Stores::from_handles([handle]), counters)
}

/// A file that is the whole of one blob in the `data` store.
fn whole_blob(blob: &str, len: u64) -> Layout {
    Layout {
        segments: vec![Segment {
            store: "data".into(),
            blob: blob.into(),
            offset: 0,
            len,
            version: String::new(),
        }],
    }
}

fn pattern(seed: u64, len: u64) -> Vec<u8> {
    (0..len)
        .map(|i| ((i * 7919 + seed * 31) % 251) as u8)
        .collect()
}

async fn write_blob(root: &std::path::Path, name: &str, body: &[u8]) {
    std::fs::create_dir_all(root).expect("mkdir");
    let local = LocalFileSystem::new_with_prefix(root).expect("fs");
    local
        .put(&Path::from(name), Bytes::copy_from_slice(body).into())
        .await
        .expect("put");
}

fn config(dir: &std::path::Path, block_size: u64, memory: u64, disk: u64) -> BlockCacheConfig {
    BlockCacheConfig {
        memory,
        disks: if disk == 0 {
            Vec::new()
        } else {
            vec![ferry_config::DiskConfig {
                dir: dir.join("cache"),
                capacity: disk,
            }]
        },
        block_size,
        disk_page: 0,
        readahead: 8 * block_size,
        inflight: 16 * block_size,
        inflight_per_read: 8 * block_size,
        inflight_wait: std::time::Duration::from_secs(60),
        send_timeout: std::time::Duration::from_secs(60),
        pin_share: 0.1,
    }
}

/// The store source every node reads through: the store's chain (here a
/// chain of one).
fn store_source(stores: &Stores) -> Arc<dyn BlockSource> {
    Arc::new(ChainSource::new(stores.clone()))
}

/// A block cache of `config` over `stores`' chain.
async fn open_cache(config: &BlockCacheConfig, stores: &Stores) -> Arc<BlockCache> {
    Arc::new(
        BlockCache::open(config, store_source(stores))
            .await
            .expect("cache"),
    )
}

async fn read(
    cache: &Arc<BlockCache>,
    layout: &Layout,
    range: std::ops::Range<u64>,
) -> Result<Vec<u8>, String> {
    let mut stream = cache
        .read_range(layout, range, false)
        .map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        out.extend_from_slice(&chunk.map_err(|e| e.to_string())?);
    }
    Ok(out)
}

/// A file of three segments over two blobs: part of blob a, all of blob b,
/// then another part of blob a (what copies and multipart produce).
async fn three_segment_file(root: &std::path::Path) -> (Layout, Vec<u8>) {
    let a = pattern(1, 700_000);
    let b = pattern(2, 300_001);
    write_blob(root, "blobs/a", &a).await;
    write_blob(root, "blobs/b", &b).await;
    let seg = |blob: &str, offset: u64, len: u64| Segment {
        store: "data".into(),
        blob: blob.into(),
        offset,
        len,
        version: String::new(),
    };
    let layout = Layout {
        segments: vec![
            seg("blobs/a", 100_000, 500_000),
            seg("blobs/b", 0, 300_001),
            seg("blobs/a", 5, 70_000),
        ],
    };
    let mut expected = a[100_000..600_000].to_vec();
    expected.extend_from_slice(&b);
    expected.extend_from_slice(&a[5..70_005]);
    (layout, expected)
}

#[test]
fn any_range_reads_the_same_bytes_as_the_source() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let (stores, _) = counted_stores(&dir.path().join("store"), None);
    let (layout, expected, cache) = runtime.block_on(async {
        let (layout, expected) = three_segment_file(&dir.path().join("store")).await;
        // 64 KiB blocks so ranges cross many block and segment boundaries.
        let cache = open_cache(&config(dir.path(), 65_536, 64 * MIB, 0), &stores).await;
        (layout, expected, cache)
    });
    let size = expected.len() as u64;
    proptest!(ProptestConfig::with_cases(200), |(start in 0..size, len in 0..300_000u64)| {
        let end = (start + len).min(size);
        let got = runtime.block_on(read(&cache, &layout, start..end)).expect("read");
        prop_assert!(got == expected[start as usize..end as usize], "range {}..{}", start, end);
    });
    let whole = runtime
        .block_on(read(&cache, &layout, 0..size))
        .expect("read");
    assert!(whole == expected);
    assert!(
        runtime
            .block_on(read(&cache, &layout, 0..size + 1))
            .is_err(),
        "out of range"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_herd_of_cold_readers_reads_each_block_from_the_store_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("store");
    let (stores, counters) = counted_stores(&root, None);
    let (size, block) = (256 * MIB, 4 * MIB);
    let body = Arc::new(pattern(3, size));
    write_blob(&root, "blobs/model", &body).await;
    let layout = whole_blob("blobs/model", size);
    let cache = open_cache(&config(dir.path(), block, 512 * MIB, 0), &stores).await;
    let barrier = Arc::new(tokio::sync::Barrier::new(64));
    let mut readers = Vec::new();
    for _ in 0..64 {
        let (cache, layout, barrier, body) =
            (cache.clone(), layout.clone(), barrier.clone(), body.clone());
        readers.push(tokio::spawn(async move {
            barrier.wait().await;
            // Compared as it streams: 64 copies of the object would not fit.
            let mut stream = cache.read_range(&layout, 0..size, false).expect("read");
            let mut at = 0usize;
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.expect("chunk");
                assert!(
                    chunk[..] == body[at..at + chunk.len()],
                    "bytes at {at} differ"
                );
                at += chunk.len();
            }
            assert_eq!(at as u64, size);
        }));
    }
    for reader in readers {
        reader.await.expect("reader");
    }
    assert_eq!(counters.gets(), size / block, "one store read per block");
    assert_eq!(counters.bytes(), size, "store bytes = object size");
}

#[tokio::test]
async fn the_disk_tier_survives_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("store");
    let (layout, expected) = three_segment_file(&root).await;
    let size = expected.len() as u64;
    {
        let (stores, counters) = counted_stores(&root, None);
        let cache = open_cache(&config(dir.path(), MIB, 64 * MIB, 256 * MIB), &stores).await;
        assert!(cache.has_disk_tier());
        assert!(read(&cache, &layout, 0..size).await.expect("read") == expected);
        assert!(counters.gets() > 0);
        cache.close().await;
    }
    // After a restart every block is a hit: the store is not asked at all.
    let (stores, counters) = counted_stores(&root, None);
    let cache = open_cache(&config(dir.path(), MIB, 64 * MIB, 256 * MIB), &stores).await;
    assert!(read(&cache, &layout, 0..size).await.expect("read") == expected);
    assert_eq!(
        counters.gets(),
        0,
        "blocks came from the recovered disk tier"
    );

    // A different block size never reuses those blocks.
    let (stores, counters) = counted_stores(&root, None);
    cache.close().await;
    drop(cache);
    let cache = open_cache(&config(dir.path(), 2 * MIB, 64 * MIB, 256 * MIB), &stores).await;
    assert!(read(&cache, &layout, 0..size).await.expect("read") == expected);
    assert!(
        counters.gets() > 0,
        "a changed block size is a miss, never wrong bytes"
    );
}

#[tokio::test]
async fn a_broken_disk_directory_is_a_miss_not_a_failed_read() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("store");
    let (layout, expected) = three_segment_file(&root).await;
    // The cache folder is a regular file: the disk tier cannot open.
    std::fs::write(dir.path().join("cache"), b"not a directory").expect("block the path");
    let (stores, counters) = counted_stores(&root, None);
    let cache = Arc::new(
        BlockCache::open(
            &config(dir.path(), MIB, 64 * MIB, 256 * MIB),
            store_source(&stores),
        )
        .await
        .expect("cache opens anyway"),
    );
    assert!(!cache.has_disk_tier());
    let size = expected.len() as u64;
    assert!(read(&cache, &layout, 0..size).await.expect("read") == expected);
    assert!(counters.gets() > 0);
}

#[tokio::test]
async fn a_store_failing_mid_stream_fails_the_read() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("store");
    let (layout, _) = three_segment_file(&root).await;
    let (stores, _) = counted_stores(&root, Some(100_000));
    let cache = open_cache(&config(dir.path(), MIB, 64 * MIB, 0), &stores).await;
    let err = read(&cache, &layout, 0..layout.total_len())
        .await
        .expect_err("must fail");
    assert!(err.contains("injected") || err.contains("failed"), "{err}");
}

#[tokio::test]
async fn blocks_are_keyed_by_version() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("store");
    write_blob(&root, "imported/model.bin", &pattern(4, 100_000)).await;
    let (stores, counters) = counted_stores(&root, None);
    let cache = open_cache(&config(dir.path(), MIB, 64 * MIB, 0), &stores).await;
    let layout = |version: &str| Layout {
        segments: vec![Segment {
            store: "data".into(),
            blob: "imported/model.bin".into(),
            offset: 0,
            len: 100_000,
            version: version.into(),
        }],
    };
    read(&cache, &layout("etag-1"), 0..100_000)
        .await
        .expect("read");
    read(&cache, &layout("etag-1"), 0..100_000)
        .await
        .expect("read");
    assert_eq!(counters.gets(), 1);
    // The imported object changed: a new version is a new block.
    write_blob(&root, "imported/model.bin", &pattern(5, 100_000)).await;
    let got = read(&cache, &layout("etag-2"), 0..100_000)
        .await
        .expect("read");
    assert_eq!(counters.gets(), 2);
    assert!(got == pattern(5, 100_000));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sequential_ranged_reads_prefetch_the_next_blocks() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("store");
    // Four blocks: after the prefetch there is nothing left to read ahead,
    // so the store count below is exact.
    let size = 4 * MIB;
    let body = pattern(6, size);
    write_blob(&root, "blobs/seq", &body).await;
    let (stores, counters) = counted_stores(&root, None);
    let layout = whole_blob("blobs/seq", size);
    let cache = open_cache(&config(dir.path(), MIB, 64 * MIB, 0), &stores).await;
    // Two ranged reads in a row, as a loader issues them.
    assert!(read(&cache, &layout, 0..MIB).await.expect("read") == body[..MIB as usize]);
    assert!(
        read(&cache, &layout, MIB..2 * MIB).await.expect("read")
            == body[MIB as usize..2 * MIB as usize]
    );
    // The second read was sequential: blocks 2 and 3 are fetched ahead.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while counters.gets() < 4 {
        assert!(
            std::time::Instant::now() < deadline,
            "no prefetch happened: {} reads",
            counters.gets()
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    // Reading them now costs the store nothing more.
    let before = counters.gets();
    assert!(
        read(&cache, &layout, 2 * MIB..3 * MIB).await.expect("read")
            == body[2 * MIB as usize..3 * MIB as usize]
    );
    assert_eq!(counters.gets() - before, 0, "block 2 came from the cache");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_read_of_a_cold_first_block_reads_its_range_and_prefetches_the_block() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("store");
    // One-block blobs: no readahead can add store reads to the counts.
    let (model, herd) = (pattern(9, MIB), pattern(10, MIB));
    write_blob(&root, "blobs/model", &model).await;
    write_blob(&root, "blobs/herd", &herd).await;
    let (stores, counters) = counted_stores(&root, None);
    let cache = open_cache(&config(dir.path(), MIB, 64 * MIB, 0), &stores).await;
    // A loader's first read: 8 bytes. Only they leave the store; then the
    // block is prefetched for what follows.
    let layout = whole_blob("blobs/model", MIB);
    assert!(read(&cache, &layout, 0..8).await.expect("read") == model[..8]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    // A read is counted when it starts and its bytes as they arrive: wait
    // for the prefetch's bytes, not just its start.
    while counters.bytes() < 8 + MIB {
        assert!(
            std::time::Instant::now() < deadline,
            "the block was not prefetched"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    assert_eq!((counters.gets(), counters.bytes()), (2, 8 + MIB));
    // The header and the first tensor are then hits.
    assert!(read(&cache, &layout, 8..5000).await.expect("read") == model[8..5000]);
    assert!(read(&cache, &layout, 100..MIB).await.expect("read") == model[100..]);
    assert_eq!(counters.gets(), 2, "a cached block is a hit");

    // Elsewhere in a blob a small read is random access: its block is
    // fetched on first touch.
    let two = pattern(11, 2 * MIB);
    write_blob(&root, "blobs/two", &two).await;
    let layout = whole_blob("blobs/two", 2 * MIB);
    let at = (MIB + 10) as usize;
    assert!(
        read(&cache, &layout, MIB + 10..MIB + 20)
            .await
            .expect("read")
            == two[at..at + 10]
    );
    assert_eq!((counters.gets(), counters.bytes()), (3, 8 + 2 * MIB));
    // So is the first block of a later part of a multipart file: each part
    // is a blob of its own, but only the file's first block holds a header.
    let parts = Layout {
        segments: ["blobs/model", "blobs/part2"]
            .iter()
            .map(|blob| Segment {
                store: "data".into(),
                blob: (*blob).into(),
                offset: 0,
                len: MIB,
                version: String::new(),
            })
            .collect(),
    };
    let part2 = pattern(12, MIB);
    write_blob(&root, "blobs/part2", &part2).await;
    assert!(
        read(&cache, &parts, MIB + 10..MIB + 20)
            .await
            .expect("read")
            == part2[10..20]
    );
    assert_eq!((counters.gets(), counters.bytes()), (4, 8 + 3 * MIB));

    // A herd of small readers of one cold block: a few direct reads, then
    // one fetch of the block, whatever the interleaving.
    let layout = whole_blob("blobs/herd", MIB);
    let herd = Arc::new(herd);
    let barrier = Arc::new(tokio::sync::Barrier::new(64));
    let mut readers = Vec::new();
    for i in 0..64u64 {
        let (cache, layout, barrier, herd) =
            (cache.clone(), layout.clone(), barrier.clone(), herd.clone());
        let range = i * 100..i * 100 + 50;
        readers.push(tokio::spawn(async move {
            barrier.wait().await;
            let got = read(&cache, &layout, range.clone()).await.expect("read");
            assert!(got == herd[range.start as usize..range.end as usize]);
        }));
    }
    for reader in readers {
        reader.await.expect("reader");
    }
    let (gets, bytes) = (counters.gets() - 4, counters.bytes() - 8 - 3 * MIB);
    assert!(
        gets <= 5,
        "4 direct reads and one block fetch at most: {gets}"
    );
    assert!(
        bytes <= MIB + 4 * 50,
        "the block once and 4 small ranges at most: {bytes}"
    );
}
