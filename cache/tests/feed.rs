//! The source region's side of the feed over a real embedded namespace
//! and a real folder store: deletes wait for every mirror and the grace
//! period after its acknowledgement, the log is trimmed below the slowest
//! mirror, and a mirror whose position is gone is told to resync.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use ferry_cache::region::feed::{ChangesAnswer, FeedSource};
use ferry_cache::{Collector, Stores};
use ferry_meta::conformance::simple_entry;
use ferry_meta::{EmbeddedMeta, Meta, Precondition, now_millis};
use object_store::ObjectStoreExt;
use object_store::path::Path;

const GRACE: Duration = Duration::from_secs(2);

struct Source {
    _dir: tempfile::TempDir,
    /// The feed's clock, moved by hand.
    clock: Arc<AtomicI64>,
    meta: Arc<dyn Meta>,
    stores: Stores,
    feed: Arc<FeedSource>,
}

fn source(log_keep: u64) -> Source {
    let dir = tempfile::tempdir().expect("tempdir");
    let meta: Arc<dyn Meta> =
        Arc::new(EmbeddedMeta::open(&dir.path().join("meta.redb")).expect("meta"));
    let raw = ferry_config::RawConfig::from_toml(&format!(
        "[stores.data]\nurl = \"file://{}\"\n",
        dir.path().join("blobs").display()
    ))
    .expect("toml");
    let config = raw
        .build(&Default::default(), &ferry_config::Overrides::default())
        .expect("config");
    let stores = Stores::open(&config.stores).expect("stores");
    let clock = Arc::new(AtomicI64::new(now_millis()));
    let time = clock.clone();
    let feed = Arc::new(
        FeedSource::new(
            meta.clone(),
            "central",
            GRACE,
            Duration::from_secs(600),
            log_keep,
        )
        .with_clock(Arc::new(move || time.load(Ordering::Relaxed))),
    );
    Source {
        _dir: dir,
        clock,
        meta,
        stores,
        feed,
    }
}

impl Source {
    /// Puts `key` with a real blob in the store; returns the blob's key.
    async fn put(&self, key: &str) -> String {
        let (entry, layout) = simple_entry("etag", 3);
        let blob = layout.segments[0].blob.clone();
        let store = self.stores.get("data").expect("data");
        store
            .client
            .put(
                &Path::from(blob.as_str()),
                Bytes::from_static(b"abc").into(),
            )
            .await
            .expect("put blob");
        self.meta
            .put("b", key, entry, layout, Precondition::None)
            .await
            .expect("put");
        blob
    }

    async fn blob_exists(&self, blob: &str) -> bool {
        let store = self.stores.get("data").expect("data");
        store.client.head(&Path::from(blob)).await.is_ok()
    }

    fn collector(&self) -> Collector {
        Collector::new(
            self.meta.clone(),
            self.stores.clone(),
            GRACE,
            Duration::from_secs(30),
        )
        .with_feed(self.feed.clone())
    }

    /// The mirror reports everything up to the log's end applied.
    async fn acknowledge(&self, mirror: &str) {
        let last = self.meta.last_seq().await.expect("seq");
        match self
            .feed
            .changes(mirror, last, 100, Duration::ZERO)
            .await
            .expect("changes")
        {
            ChangesAnswer::Page(page) => assert!(page.changes.is_empty()),
            ChangesAnswer::Resync(r) => panic!("resync: {}", r.reason),
        }
    }
}

#[tokio::test]
async fn a_deleted_blob_waits_for_every_mirror_and_the_grace_after_it() {
    let s = source(100);
    s.meta.create_bucket("b").await.expect("bucket");
    let collector = s.collector();

    // No mirror: the grace period alone.
    let alone = s.put("alone").await;
    s.meta.delete("b", "alone").await.expect("delete");
    collector
        .run_once(now_millis() + 3_000)
        .await
        .expect("pass");
    assert!(!s.blob_exists(&alone).await);

    let kept = s.put("k").await;
    s.feed.snapshot("edge").await.expect("register");
    s.meta.delete("b", "k").await.expect("delete");
    // Long past the grace, but the mirror has not applied the delete.
    collector
        .run_once(now_millis() + 60_000)
        .await
        .expect("pass");
    assert!(
        s.blob_exists(&kept).await,
        "kept until the mirror applied the delete"
    );

    // Acknowledged at once: the delete is too recent to be claimed.
    s.acknowledge("edge").await;
    collector
        .run_once(now_millis() + 60_000)
        .await
        .expect("pass");
    assert!(
        s.blob_exists(&kept).await,
        "a checkpoint claims only changes older than its margin"
    );
    // Two seconds on, the mirror acknowledges again: that checkpoint
    // covers the delete, and the grace counts from it.
    let acked = s.clock.fetch_add(2_000, Ordering::Relaxed) + 2_000;
    s.acknowledge("edge").await;
    collector.run_once(acked + 1_000).await.expect("pass");
    assert!(
        s.blob_exists(&kept).await,
        "kept for the grace period after the acknowledgement"
    );
    collector.run_once(acked + 2_500).await.expect("pass");
    assert!(!s.blob_exists(&kept).await);
}

#[tokio::test]
async fn the_log_is_trimmed_below_the_slowest_mirror_and_gaps_are_resyncs() {
    let s = source(0);
    s.meta.create_bucket("b").await.expect("bucket");
    for i in 0..5 {
        s.put(&format!("k{i}")).await;
    }
    // An unknown mirror must resync.
    assert!(matches!(
        s.feed
            .changes("nobody", 0, 10, Duration::ZERO)
            .await
            .expect("changes"),
        ChangesAnswer::Resync(_)
    ));
    let slow = s.feed.snapshot("slow").await.expect("register").position;
    for i in 5..10 {
        s.put(&format!("k{i}")).await;
    }
    s.feed.snapshot("fast").await.expect("register");
    s.acknowledge("fast").await;
    s.feed.maintain(now_millis()).await.expect("maintain");
    assert_eq!(s.meta.log_floor().await.expect("floor"), slow);
    // The slow mirror still reads every record after its position.
    match s
        .feed
        .changes("slow", slow, 100, Duration::ZERO)
        .await
        .expect("changes")
    {
        ChangesAnswer::Page(page) => {
            assert_eq!(page.changes.first().map(|c| c.seq), Some(slow + 1));
            assert_eq!(page.changes.len(), 5);
        }
        ChangesAnswer::Resync(r) => panic!("resync: {}", r.reason),
    }
    // Both silent far longer than the timeout: dropped, the log trimmed
    // to its end, and a returning mirror is told to resync.
    s.feed
        .maintain(now_millis() + 3_600_000)
        .await
        .expect("maintain");
    assert!(s.meta.mirrors().await.expect("mirrors").is_empty());
    let last = s.meta.last_seq().await.expect("seq");
    assert_eq!(s.meta.log_floor().await.expect("floor"), last);
    assert!(matches!(
        s.feed
            .changes("slow", slow, 10, Duration::ZERO)
            .await
            .expect("changes"),
        ChangesAnswer::Resync(_)
    ));
    // Registered again at the end, below-floor positions are gaps.
    s.feed.snapshot("slow").await.expect("register");
    match s
        .feed
        .changes("slow", slow, 10, Duration::ZERO)
        .await
        .expect("changes")
    {
        ChangesAnswer::Resync(r) => assert!(r.reason.contains("trimmed"), "{}", r.reason),
        ChangesAnswer::Page(_) => panic!("a trimmed position must resync"),
    }
}

#[tokio::test]
async fn a_long_poll_answers_as_soon_as_a_record_arrives() {
    let s = source(100);
    s.meta.create_bucket("b").await.expect("bucket");
    let at = s.feed.snapshot("edge").await.expect("register").position;
    let feed = s.feed.clone();
    let poll =
        tokio::spawn(async move { feed.changes("edge", at, 10, Duration::from_secs(20)).await });
    s.put("late").await;
    let started = std::time::Instant::now();
    match poll.await.expect("join").expect("changes") {
        ChangesAnswer::Page(page) => assert_eq!(page.changes.len(), 1),
        ChangesAnswer::Resync(r) => panic!("resync: {}", r.reason),
    }
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "answered before the wait ran out"
    );
}
