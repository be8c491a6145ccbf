//! Blob lifecycle: a blob is deleted only when nothing references it and
//! its grace period has passed, whatever readers and writers are doing.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use ferry_cache::ChainSource;
use ferry_cache::tier::PassThroughTier;
use ferry_cache::{
    BlobTags, BlobUpload, BlockCache, BlockCacheConfig, Collector, StoreHandle, Stores,
};
use ferry_config::{Overrides, RawConfig, StoreSpec};
use ferry_meta::{BlobRef, EmbeddedMeta, Entry, Layout, Meta, Precondition, Segment, now_millis};
use futures::StreamExt;
use object_store::ObjectStoreExt;
use object_store::path::Path;

const HOUR_MS: i64 = 3_600_000;

/// `raw` built with `dir` as the data dir and no environment.
fn config_in(dir: &std::path::Path, raw: RawConfig) -> ferry_config::Config {
    raw.build(
        &std::collections::HashMap::new(),
        &Overrides {
            data_dir: Some(dir.to_path_buf()),
            ..Overrides::default()
        },
    )
    .expect("config")
}

struct Volume {
    _dir: tempfile::TempDir,
    meta: Arc<dyn Meta>,
    stores: Stores,
    /// Reads the volume's files without keeping anything, as a gateway
    /// whose cache is off does.
    reader: Arc<BlockCache>,
    /// The volume's one collector; another would find the lease taken.
    collector: Collector,
}

impl Volume {
    fn new() -> Volume {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = config_in(dir.path(), RawConfig::default());
        let meta: Arc<dyn Meta> =
            Arc::new(EmbeddedMeta::open(&dir.path().join("meta.redb")).expect("meta"));
        let stores = Stores::open(&config.stores).expect("stores");
        let collector = Collector::new(
            meta.clone(),
            stores.clone(),
            Duration::from_secs(3600),
            Duration::from_secs(60),
        );
        let reader = Arc::new(BlockCache::with_tier(
            Arc::new(PassThroughTier),
            &BlockCacheConfig {
                memory: 0,
                disks: Vec::new(),
                block_size: 1 << 20,
                disk_page: 0,
                readahead: 4 << 20,
                inflight: 8 << 20,
                inflight_per_read: 4 << 20,
                inflight_wait: std::time::Duration::from_secs(60),
                pin_share: 0.1,
                send_timeout: std::time::Duration::from_secs(60),
            },
            Arc::new(ChainSource::new(stores.clone())),
        ));
        Volume {
            _dir: dir,
            meta,
            stores,
            reader,
            collector,
        }
    }

    fn data(&self) -> &StoreHandle {
        self.stores.get("data").expect("data store")
    }

    fn collector(&self) -> &Collector {
        &self.collector
    }

    /// Writes `body` as a blob without committing it.
    async fn write_blob(&self, key: &str, body: &[u8]) -> BlobRef {
        let tags = BlobTags {
            bucket: "b".into(),
            key: key.into(),
            entry_id: "e".into(),
        };
        let mut upload = BlobUpload::begin(self.data(), &tags);
        for chunk in body.chunks(1 << 20) {
            upload
                .write(Bytes::copy_from_slice(chunk))
                .await
                .expect("write");
        }
        upload.finish().await.expect("finish")
    }

    async fn commit(&self, key: &str, blob: &BlobRef, len: u64) {
        let entry = Entry {
            id: uuid::Uuid::now_v7().to_string(),
            size: len,
            etag: format!("etag-{}", blob.blob),
            last_modified: now_millis(),
            ..Entry::default()
        };
        let layout = Layout {
            segments: vec![Segment {
                store: blob.store.clone(),
                blob: blob.blob.clone(),
                offset: 0,
                len,
                version: String::new(),
            }],
        };
        self.meta
            .put("b", key, entry, layout, Precondition::None)
            .await
            .expect("commit");
    }

    async fn put(&self, key: &str, body: &[u8]) -> BlobRef {
        let blob = self.write_blob(key, body).await;
        self.commit(key, &blob, body.len() as u64).await;
        blob
    }

    async fn exists(&self, blob: &BlobRef) -> bool {
        match self
            .data()
            .client
            .head(&Path::from(blob.blob.as_str()))
            .await
        {
            Ok(_) => true,
            Err(object_store::Error::NotFound { .. }) => false,
            Err(e) => panic!("head failed: {e}"),
        }
    }

    async fn read(&self, key: &str) -> Vec<u8> {
        let (entry, layout) = self.meta.get("b", key).await.expect("get");
        let mut stream = self
            .reader
            .read_range(&layout, 0..entry.size, false)
            .expect("read");
        let mut out = Vec::new();
        while let Some(chunk) = stream.next().await {
            out.extend_from_slice(&chunk.expect("chunk"));
        }
        out
    }
}

fn pattern(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

#[tokio::test]
async fn file_stores_are_built_with_fsync() {
    let volume = Volume::new();
    let debug = format!("{:?}", volume.data().client);
    assert!(
        debug.contains("fsync: true"),
        "the local store must fsync before a PUT is acknowledged: {debug}"
    );
}

#[tokio::test]
async fn large_blobs_go_up_in_parts_and_read_back_exactly() {
    let volume = Volume::new();
    volume.meta.create_bucket("b").await.expect("bucket");
    let body = pattern(7, 20 * 1024 * 1024 + 13);
    volume.put("big", &body).await;
    assert!(volume.read("big").await == body);
}

#[tokio::test]
async fn an_overwrite_does_not_disturb_a_slow_reader_of_the_old_version() {
    let volume = Volume::new();
    volume.meta.create_bucket("b").await.expect("bucket");
    let old = pattern(1, 3 * 1024 * 1024);
    let old_blob = volume.put("k", &old).await;

    // The reader has looked the object up and read its first chunk...
    let (entry, layout) = volume.meta.get("b", "k").await.expect("get");
    let mut reader = volume
        .reader
        .read_range(&layout, 0..entry.size, false)
        .expect("read");
    let mut got = reader
        .next()
        .await
        .expect("first chunk")
        .expect("ok")
        .to_vec();

    // ...then the key is overwritten and the collector runs, now.
    let new = pattern(2, 1024 * 1024);
    let new_blob = volume.put("k", &new).await;
    let stats = volume
        .collector()
        .run_once(now_millis())
        .await
        .expect("collect");
    assert_eq!(
        stats.deleted, 0,
        "inside the grace period nothing is deleted"
    );
    assert!(volume.exists(&old_blob).await);

    // The slow reader finishes with the old bytes, whole.
    while let Some(chunk) = reader.next().await {
        got.extend_from_slice(&chunk.expect("chunk"));
    }
    assert!(got == old, "the reader saw a torn object");
    assert!(volume.read("k").await == new);

    // Once the grace period has passed, the old blob goes, the new stays.
    let stats = volume
        .collector()
        .run_once(now_millis() + 2 * HOUR_MS)
        .await
        .expect("collect");
    assert_eq!(stats.deleted, 1);
    assert!(!volume.exists(&old_blob).await);
    assert!(volume.exists(&new_blob).await);
}

#[tokio::test]
async fn the_collector_never_touches_a_written_but_uncommitted_blob() {
    let volume = Volume::new();
    volume.meta.create_bucket("b").await.expect("bucket");
    // Something else is due, so the collector has work to do.
    volume.put("other", b"x").await;
    volume.put("other", b"y").await;

    let body = pattern(3, 100_000);
    let pending = volume.write_blob("k", &body).await;
    let stats = volume
        .collector()
        .run_once(now_millis() + 48 * HOUR_MS)
        .await
        .expect("collect");
    assert_eq!(stats.deleted, 1, "only the overwritten blob is collected");
    assert!(
        volume.exists(&pending).await,
        "an uncommitted blob was deleted"
    );

    volume.commit("k", &pending, body.len() as u64).await;
    assert!(volume.read("k").await == body);
}

#[tokio::test]
async fn a_failed_upload_is_collected_after_the_grace_period() {
    let volume = Volume::new();
    let orphan = volume.write_blob("k", b"partial").await;
    volume
        .meta
        .queue_uncommitted(std::slice::from_ref(&orphan))
        .await
        .expect("queue");
    let collector = volume.collector();
    assert_eq!(
        collector
            .run_once(now_millis())
            .await
            .expect("collect")
            .deleted,
        0
    );
    assert!(volume.exists(&orphan).await);
    assert_eq!(
        collector
            .run_once(now_millis() + 2 * HOUR_MS)
            .await
            .expect("collect")
            .deleted,
        1
    );
    assert!(!volume.exists(&orphan).await);
}

#[tokio::test]
async fn nothing_referenced_is_ever_deleted() {
    let volume = Volume::new();
    volume.meta.create_bucket("b").await.expect("bucket");
    let mut written: Vec<BlobRef> = Vec::new();
    // Overwrites, deletes and shared layouts (what copies do), interleaved
    // with collector passes that see everything as due.
    for round in 0u8..6 {
        for k in 0..5u8 {
            let key = format!("k{k}");
            if (round + k) % 3 == 0 {
                volume.meta.delete("b", &key).await.expect("delete");
            } else {
                written.push(volume.put(&key, &pattern(round * 10 + k, 1000)).await);
            }
        }
        if let Ok((entry, layout)) = volume.meta.get("b", "k1").await {
            let shared = Entry {
                id: uuid::Uuid::now_v7().to_string(),
                ..entry
            };
            volume
                .meta
                .put("b", "copy", shared, layout, Precondition::None)
                .await
                .expect("share");
        }
        volume
            .collector()
            .run_once(now_millis() + 48 * HOUR_MS)
            .await
            .expect("collect");

        let mut referenced = BTreeMap::new();
        let page = volume
            .meta
            .list(
                "b",
                &ferry_meta::ListQuery {
                    max: 1000,
                    ..Default::default()
                },
            )
            .await
            .expect("list");
        for (key, _) in page.entries {
            let (_, layout) = volume.meta.get("b", &key).await.expect("get");
            for blob in layout.blobs() {
                referenced.insert(blob, key.clone());
            }
        }
        for blob in &written {
            let exists = volume.exists(blob).await;
            if let Some(key) = referenced.get(blob) {
                assert!(
                    exists,
                    "round {round}: blob of {key} was deleted while referenced"
                );
            } else {
                assert!(
                    !exists,
                    "round {round}: unreferenced blob {} survived a due pass",
                    blob.blob
                );
            }
        }
    }
}

#[tokio::test]
async fn only_one_collector_holds_the_lease() {
    let volume = Volume::new();
    let first = volume.collector();
    let second = Collector::new(
        volume.meta.clone(),
        volume.stores.clone(),
        Duration::from_secs(3600),
        Duration::from_secs(60),
    );
    assert!(
        !first
            .run_once(now_millis())
            .await
            .expect("first")
            .lease_held_elsewhere
    );
    assert!(
        second
            .run_once(now_millis())
            .await
            .expect("second")
            .lease_held_elsewhere
    );
}

#[tokio::test]
async fn blobs_in_stores_the_volume_does_not_own_are_never_deleted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let imported_root = dir.path().join("imported");
    let raw = RawConfig::from_toml(&format!(
        "[stores.imported]\nurl = \"file://{}\"\nowned = false\n",
        imported_root.display()
    ))
    .expect("toml");
    let config = config_in(dir.path(), raw);
    let spec: &StoreSpec = &config.stores["imported"];
    assert!(!spec.owned);
    let stores = Stores::open(&config.stores).expect("stores");
    let imported = stores.get("imported").expect("imported");
    imported
        .client
        .put(
            &Path::from("model.bin"),
            Bytes::from_static(b"weights").into(),
        )
        .await
        .expect("seed");
    let meta: Arc<dyn Meta> =
        Arc::new(EmbeddedMeta::open(&dir.path().join("meta.redb")).expect("meta"));
    let blob = BlobRef {
        store: "imported".into(),
        blob: "model.bin".into(),
    };
    meta.queue_uncommitted(std::slice::from_ref(&blob))
        .await
        .expect("queue");
    let collector = Collector::new(
        meta,
        stores.clone(),
        Duration::from_secs(1),
        Duration::from_secs(60),
    );
    let stats = collector
        .run_once(now_millis() + HOUR_MS)
        .await
        .expect("collect");
    assert_eq!((stats.deleted, stats.not_owned), (0, 1));
    assert!(imported.client.head(&Path::from("model.bin")).await.is_ok());
}

#[tokio::test]
async fn stale_uploads_expire_and_their_parts_are_collected_but_completed_objects_stay() {
    let volume = Volume::new();
    volume.meta.create_bucket("b").await.expect("bucket");
    let kept = volume.put("done", b"completed object").await;
    let upload = ferry_meta::Upload {
        id: uuid::Uuid::now_v7().to_string(),
        key: "pending".into(),
        initiated: now_millis(),
        template: Entry::default(),
        checksum_algorithm: None,
    };
    volume
        .meta
        .create_upload("b", upload.clone())
        .await
        .expect("create upload");
    let part_blob = volume.write_blob("pending", b"part one").await;
    let part = ferry_meta::Part {
        number: 1,
        etag: "e".into(),
        size: 8,
        last_modified: now_millis(),
        segments: vec![Segment {
            store: part_blob.store.clone(),
            blob: part_blob.blob.clone(),
            offset: 0,
            len: 8,
            version: String::new(),
        }],
        checksums: BTreeMap::new(),
    };
    volume
        .meta
        .put_part("b", "pending", &upload.id, part)
        .await
        .expect("part");

    let collector = Collector::new(
        volume.meta.clone(),
        volume.stores.clone(),
        Duration::from_secs(3600),
        Duration::from_secs(60),
    )
    .with_upload_expiry(Duration::from_secs(7 * 24 * 3600));
    // Young: untouched.
    let stats = collector.run_once(now_millis()).await.expect("collect");
    assert_eq!(stats.uploads_expired, 0);
    assert!(volume.meta.upload("b", "pending", &upload.id).await.is_ok());
    // Eight days later: aborted, and once the grace period has passed too, its part is gone.
    let later = now_millis() + 8 * 24 * HOUR_MS;
    let stats = collector.run_once(later).await.expect("collect");
    assert_eq!(stats.uploads_expired, 1);
    assert!(
        volume
            .meta
            .upload("b", "pending", &upload.id)
            .await
            .is_err()
    );
    collector
        .run_once(later + 2 * HOUR_MS)
        .await
        .expect("collect");
    assert!(!volume.exists(&part_blob).await);
    assert!(
        volume.exists(&kept).await,
        "expiry never touches a completed object"
    );
    assert_eq!(volume.read("done").await, b"completed object");
}

#[tokio::test]
async fn fsck_finds_missing_and_orphaned_blobs_and_repair_never_deletes_referenced_ones() {
    let volume = Volume::new();
    volume.meta.create_bucket("b").await.expect("bucket");
    let healthy = volume.put("healthy", b"fine").await;
    let lost = volume.put("lost", b"will vanish").await;
    // Injected damage: a referenced blob disappears from the store, and a
    // blob nothing references appears in it.
    volume
        .data()
        .client
        .delete(&Path::from(lost.blob.as_str()))
        .await
        .expect("inject missing");
    let orphan = volume.write_blob("nobody", b"orphan").await;

    let report = ferry_cache::fsck(volume.meta.clone(), &volume.stores, false, Duration::ZERO)
        .await
        .expect("fsck");
    assert_eq!(report.objects, 2);
    assert_eq!(report.missing.len(), 1);
    assert_eq!(report.missing[0].key, "lost");
    assert_eq!(report.missing[0].blob, lost);
    assert_eq!(report.orphans, vec![orphan.clone()]);
    assert!(!report.is_clean());

    // A young unreferenced blob (an upload that may be about to commit) is
    // not called an orphan.
    let young = ferry_cache::fsck(
        volume.meta.clone(),
        &volume.stores,
        false,
        Duration::from_secs(3600),
    )
    .await
    .expect("fsck");
    assert!(young.orphans.is_empty());
    assert_eq!(young.young_unreferenced, 1);

    let repaired = ferry_cache::fsck(volume.meta.clone(), &volume.stores, true, Duration::ZERO)
        .await
        .expect("fsck --repair");
    assert!(repaired.repaired);
    volume
        .collector()
        .run_once(now_millis() + 2 * HOUR_MS)
        .await
        .expect("collect");
    assert!(
        !volume.exists(&orphan).await,
        "the queued orphan is collected"
    );
    assert!(
        volume.exists(&healthy).await,
        "a referenced blob is never deleted"
    );
    let after = ferry_cache::fsck(volume.meta.clone(), &volume.stores, false, Duration::ZERO)
        .await
        .expect("fsck");
    assert!(after.orphans.is_empty());
    assert_eq!(
        after.missing.len(),
        1,
        "a missing blob is reported, not invented"
    );
}

/// A staging file an interrupted local write left (`name#N`, which no
/// listing shows) is removed once older than the grace period; a fresh one,
/// and blobs of any age, stay.
#[tokio::test]
async fn staging_files_left_by_a_crash_are_swept_after_the_grace_period() {
    let volume = Volume::new();
    volume.meta.create_bucket("b").await.expect("bucket");
    let blob = volume.put("k", b"kept").await;
    let ferry_config::StoreKind::File { root } = &volume.data().spec.kind else {
        panic!("the default data store is a local folder");
    };
    let folder = root.join("blobs").join("ab");
    std::fs::create_dir_all(&folder).expect("mkdir");
    let two_hours_ago = std::time::SystemTime::now() - Duration::from_secs(2 * 3600);
    let write = |name: &str, modified: Option<std::time::SystemTime>| {
        let path = folder.join(name);
        let file = std::fs::File::create(&path).expect("create");
        if let Some(at) = modified {
            file.set_modified(at).expect("set mtime");
        }
        path
    };
    let old = write("0123abcd#1", Some(two_hours_ago));
    let fresh = write("4567ef01#2", None);
    let old_blob = write("89ab2345", Some(two_hours_ago));
    let stats = volume
        .collector()
        .run_once(now_millis())
        .await
        .expect("collect");
    assert_eq!(stats.staging_removed, 1);
    assert!(!old.exists(), "an old staging file is swept");
    assert!(
        fresh.exists(),
        "a write that may be in progress is left alone"
    );
    assert!(old_blob.exists(), "only staging files are swept");
    assert!(volume.exists(&blob).await);
    assert!(volume.read("k").await == b"kept");
}

/// A namespace no feed serves (a single region, or a mirror's own log)
/// keeps only the newest `log_keep` change-log records: its collector
/// trims the rest, which nothing reads.
#[tokio::test]
async fn without_a_feed_the_collector_keeps_the_newest_log_records() {
    let volume = Volume::new();
    for i in 0..20 {
        volume
            .meta
            .create_bucket(&format!("bucket-{i:02}"))
            .await
            .expect("create bucket");
    }
    let last = volume.meta.last_seq().await.expect("last");
    let collector = volume.collector().clone().with_log_keep(5);
    let stats = collector.run_once(now_millis()).await.expect("pass");
    assert_eq!(stats.log_trimmed, last - 5);
    assert_eq!(volume.meta.log_floor().await.expect("floor"), last - 5);
    let kept = volume.meta.changes_since(0, 100).await.expect("changes");
    assert_eq!(kept.len(), 5, "the newest five records are kept");
    assert_eq!(kept.last().map(|c| c.seq), Some(last));
    // Nothing more to trim until more is written.
    let again = collector.run_once(now_millis()).await.expect("pass");
    assert_eq!(again.log_trimmed, 0);
}
