//! Tests of the Redis engine against real servers: the shared test one at
//! `redis_url()` (no persistence, so engines open with `allow_volatile`),
//! and private `redis-server` processes with AOF for restarts and
//! measurements. Each test works under its own random prefix and removes
//! its keys at the end.

use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use ferry_test_support::{RedisCluster, RedisServer, free_port, redis_url};

use super::*;
use crate::conformance::{put_simple, simple_entry};

fn fresh_prefix() -> String {
    format!("ferry-test-{}", uuid::Uuid::new_v4().simple())
}

/// Deletes every key under a prefix when dropped.
struct Cleanup {
    url: String,
    pattern: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Err(e) = delete_keys(&self.url, &self.pattern) {
            eprintln!("cleanup of {} failed: {e}", self.pattern);
        }
    }
}

fn sync_conn(url: &str) -> redis::RedisResult<redis::Connection> {
    let conn = redis::Client::open(url)?.get_connection_with_timeout(Duration::from_secs(2))?;
    conn.set_read_timeout(Some(Duration::from_secs(5)))?;
    conn.set_write_timeout(Some(Duration::from_secs(5)))?;
    Ok(conn)
}

fn scan_keys(url: &str, pattern: &str) -> redis::RedisResult<Vec<Vec<u8>>> {
    let mut conn = sync_conn(url)?;
    let mut cursor: u64 = 0;
    let mut out = Vec::new();
    loop {
        let (next, keys): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(1000)
            .query(&mut conn)?;
        out.extend(keys);
        if next == 0 {
            return Ok(out);
        }
        cursor = next;
    }
}

fn delete_keys(url: &str, pattern: &str) -> redis::RedisResult<()> {
    let keys = scan_keys(url, pattern)?;
    let mut conn = sync_conn(url)?;
    for chunk in keys.chunks(500) {
        redis::cmd("UNLINK").arg(chunk).query::<()>(&mut conn)?;
    }
    Ok(())
}

fn cleanup(url: &str, prefix: &str) -> Cleanup {
    Cleanup {
        url: url.to_string(),
        pattern: Keys::new(prefix).pattern(),
    }
}

/// A fresh namespace on the shared Redis.
async fn engine() -> (Cleanup, RedisMeta) {
    let prefix = fresh_prefix();
    let guard = cleanup(&redis_url(), &prefix);
    let meta = RedisMeta::open(&redis_url(), &prefix, true)
        .await
        .expect("open redis engine");
    (guard, meta)
}

#[tokio::test]
async fn conformance() {
    let (guard, meta) = engine().await;
    let started = Instant::now();
    crate::conformance::run_all(&meta).await;
    eprintln!("conformance suite on redis: {:?}", started.elapsed());
    let pattern = guard.pattern.clone();
    drop(guard);
    assert!(
        scan_keys(&redis_url(), &pattern).expect("scan").is_empty(),
        "cleanup left keys behind"
    );
}

#[tokio::test]
async fn listings_end_early_at_the_read_budget() {
    let (_guard, meta) = engine().await;
    crate::conformance::list_read_budget(&meta.with_list_read_budget(6), 6).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_creates_have_one_winner() {
    let (_guard, meta) = engine().await;
    crate::conformance::racing_creates(Arc::new(meta)).await;
}

#[tokio::test]
async fn dump_and_load_round_trip_exactly() {
    let (_a, source) = engine().await;
    let (_b, target) = engine().await;
    crate::conformance::populate(&source).await;
    crate::conformance::dump_round_trip(&source, &target).await;
}

#[tokio::test]
async fn dumps_move_between_engines() {
    let dir = tempfile::tempdir().expect("tempdir");
    let embedded = crate::EmbeddedMeta::open(&dir.path().join("meta.redb")).expect("open");
    let (_guard, redis) = engine().await;
    crate::conformance::populate(&embedded).await;
    crate::conformance::dump_round_trip(&embedded, &redis).await;
}

/// Engines opened for the model check live on this runtime, because the
/// check builds engines outside any runtime and drives them from its own.
static SETUP: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime")
});

#[test]
fn namespace_matches_reference_model() {
    crate::conformance::model::check(|| {
        let prefix = fresh_prefix();
        let guard = cleanup(&redis_url(), &prefix);
        let meta = SETUP
            .block_on(RedisMeta::open(&redis_url(), &prefix, true))
            .expect("open redis engine");
        (
            Box::new(guard) as Box<dyn std::any::Any>,
            Arc::new(meta) as Arc<dyn Meta>,
        )
    });
}

#[test]
fn namespace_matches_reference_model_under_a_tiny_read_budget() {
    crate::conformance::model::check(|| {
        let prefix = fresh_prefix();
        let guard = cleanup(&redis_url(), &prefix);
        let meta = SETUP
            .block_on(RedisMeta::open(&redis_url(), &prefix, true))
            .expect("open redis engine")
            .with_list_read_budget(2);
        (
            Box::new(guard) as Box<dyn std::any::Any>,
            Arc::new(meta) as Arc<dyn Meta>,
        )
    });
}

#[tokio::test]
async fn a_redis_without_aof_is_refused_unless_allowed() {
    let mut conn = sync_conn(&redis_url()).expect("connect");
    let appendonly: HashMap<String, String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("appendonly")
        .query(&mut conn)
        .expect("config get");
    assert_eq!(
        appendonly.get("appendonly").map(String::as_str),
        Some("no"),
        "this test expects the shared test redis to run without AOF"
    );
    let prefix = fresh_prefix();
    let _guard = cleanup(&redis_url(), &prefix);
    match RedisMeta::open(&redis_url(), &prefix, false).await {
        Err(MetaError::Internal(message)) => {
            for needed in [
                "appendonly yes",
                "appendfsync",
                "meta.allow_volatile_redis = true",
            ] {
                assert!(
                    message.contains(needed),
                    "{message:?} does not mention {needed:?}"
                );
            }
        }
        Err(other) => panic!("refused with the wrong error: {other}"),
        Ok(_) => panic!("a redis without AOF was accepted"),
    }
    RedisMeta::open(&redis_url(), &prefix, true)
        .await
        .expect("accepted when volatile is allowed");
}

#[tokio::test]
async fn an_unreachable_redis_is_unavailable_quickly() {
    let port = free_port();
    let started = Instant::now();
    let result = RedisMeta::open_with_timeout(
        &format!("redis://127.0.0.1:{port}"),
        "nowhere",
        true,
        Duration::from_secs(1),
    )
    .await;
    assert!(
        matches!(result, Err(MetaError::Unavailable(_))),
        "{result:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn prefixes_keep_volumes_apart() {
    let (_a, one) = engine().await;
    let (_b, two) = engine().await;
    one.create_bucket("same").await.expect("create");
    two.create_bucket("same")
        .await
        .expect("create in the other volume");
    put_simple(&one, "same", "k", "from-one").await;
    assert!(matches!(
        two.head("same", "k").await,
        Err(MetaError::NoSuchKey { .. })
    ));
    assert_eq!(one.last_seq().await.expect("seq"), 2);
    assert_eq!(two.last_seq().await.expect("seq"), 1);
}

/// Two gateways (two engine handles, two connections) write one key at
/// once: one version wins, every other version's blob is unreferenced and
/// queued, none is orphaned with a reference.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gateways_racing_on_one_key_leave_no_orphaned_reference() {
    let (guard, first) = engine().await;
    let prefix = guard.pattern.trim_end_matches(":*").to_string();
    let second = RedisMeta::open(&redis_url(), &prefix, true)
        .await
        .expect("second gateway");
    first.create_bucket("race").await.expect("create");
    let start_seq = first.last_seq().await.expect("seq");

    let mut tasks = Vec::new();
    for i in 0..32 {
        let meta = if i % 2 == 0 {
            first.clone()
        } else {
            second.clone()
        };
        tasks.push(tokio::spawn(async move {
            let (entry, layout) = simple_entry(&format!("w{i}"), 3);
            let outcome = meta
                .put(
                    "race",
                    "k",
                    entry.clone(),
                    layout.clone(),
                    Precondition::None,
                )
                .await
                .expect("put");
            (entry, layout, outcome)
        }));
    }
    let mut written = Vec::new();
    for task in tasks {
        written.push(task.await.expect("join"));
    }
    let winner = first.head("race", "k").await.expect("head");
    let replaced: Vec<String> = written
        .iter()
        .filter_map(|(_, _, o)| o.replaced.as_ref().map(|e| e.id.clone()))
        .collect();
    assert_eq!(
        replaced.len(),
        31,
        "every put but the first replaced one version"
    );
    let mut all: Vec<String> = replaced.clone();
    all.push(winner.id.clone());
    all.sort();
    all.dedup();
    assert_eq!(
        all.len(),
        32,
        "each version was replaced once, except the winner"
    );

    let due = first
        .due_deletions(now_millis() + 3_600_000, 10_000)
        .await
        .expect("due");
    for (entry, layout, _) in &written {
        let blob = layout.blobs().remove(0);
        let refs = first.blob_refs(&blob).await.expect("refs");
        let queued = due.iter().any(|q| q.blob == blob);
        if entry.id == winner.id {
            assert_eq!((refs, queued), (1, false), "the winner's blob");
        } else {
            assert_eq!((refs, queued), (0, true), "a losing blob");
        }
    }
    let seqs: Vec<Seq> = first
        .changes_since(start_seq, 100)
        .await
        .expect("changes")
        .iter()
        .map(|c| c.seq)
        .collect();
    assert_eq!(
        seqs,
        (start_seq + 1..=start_seq + 32).collect::<Vec<_>>(),
        "one record per put, no gaps"
    );
}

/// Read-modify-write with `IfMatch` from two gateways: every increment
/// lands exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compare_and_swap_across_gateways_loses_no_update() {
    let (guard, first) = engine().await;
    let prefix = guard.pattern.trim_end_matches(":*").to_string();
    let second = RedisMeta::open(&redis_url(), &prefix, true)
        .await
        .expect("second gateway");
    first.create_bucket("cas").await.expect("create");
    put_simple(&first, "cas", "counter", "0").await;
    let mut tasks = Vec::new();
    for meta in [first.clone(), second.clone(), first.clone(), second] {
        tasks.push(tokio::spawn(async move {
            let mut conflicts = 0;
            for _ in 0..10 {
                loop {
                    let current = meta.head("cas", "counter").await.expect("head");
                    let n: u32 = current.etag.parse().expect("number");
                    let (entry, layout) = simple_entry(&(n + 1).to_string(), 3);
                    match meta
                        .put(
                            "cas",
                            "counter",
                            entry,
                            layout,
                            Precondition::IfMatch(current.etag),
                        )
                        .await
                    {
                        Ok(_) => break,
                        Err(MetaError::PreconditionFailed { .. }) => conflicts += 1,
                        Err(other) => panic!("{other}"),
                    }
                }
            }
            conflicts
        }));
    }
    let mut conflicts = 0;
    for task in tasks {
        conflicts += task.await.expect("join");
    }
    assert_eq!(first.head("cas", "counter").await.expect("head").etag, "40");
    eprintln!("40 increments from 4 writers, {conflicts} lost compare-and-swaps retried");
}

// ---------------------------------------------------------------------
// Private redis-server processes (`RedisServer`, with AOF fsynced on every
// write).

/// A counter from the server's `INFO stats`.
fn info_number(server: &RedisServer, field: &str) -> u64 {
    let mut conn = sync_conn(&server.url()).expect("connect");
    let info: String = redis::cmd("INFO")
        .arg("stats")
        .query(&mut conn)
        .expect("info");
    info.lines()
        .find_map(|line| line.strip_prefix(&format!("{field}:")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in INFO"))
}

/// Seconds since `key` was last read or written (Redis's own access clock).
fn idle_seconds(server: &RedisServer, key: &str) -> u64 {
    let mut conn = sync_conn(&server.url()).expect("connect");
    redis::cmd("OBJECT")
        .arg("IDLETIME")
        .arg(key)
        .query(&mut conn)
        .expect("object idletime")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn survives_a_redis_crash_and_restart_without_reopening() {
    let mut server = RedisServer::options().aof().start();
    let timeout = Duration::from_secs(2);
    // AOF is on, so the engine opens without allow_volatile.
    let meta = RedisMeta::open_with_timeout(&server.url(), "crash", false, timeout)
        .await
        .expect("open on a redis with AOF");
    meta.create_bucket("b").await.expect("create");

    let acked: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let writer = {
        let meta = meta.clone();
        let acked = acked.clone();
        tokio::spawn(async move {
            let mut failures = Vec::new();
            for i in 0.. {
                let key = format!("k{i:06}");
                let etag = format!("e{i}");
                let (entry, layout) = simple_entry(&etag, 3);
                let started = Instant::now();
                match meta.put("b", &key, entry, layout, Precondition::None).await {
                    Ok(_) => acked.lock().expect("lock").push((key, etag)),
                    Err(MetaError::Unavailable(message)) => {
                        failures.push((started.elapsed(), message));
                        if failures.len() == 20 {
                            break;
                        }
                    }
                    Err(other) => panic!("put failed with {other}, not Unavailable"),
                }
                assert!(i < 1_000_000, "redis never went away");
            }
            failures
        })
    };
    // Kill it mid-way through the loop of puts.
    let deadline = Instant::now() + Duration::from_secs(30);
    while acked.lock().expect("lock").len() < 200 {
        assert!(Instant::now() < deadline, "puts are too slow");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    server.kill();
    let failures = writer.await.expect("writer");
    let slowest = failures.iter().map(|(d, _)| *d).max().unwrap_or_default();
    eprintln!(
        "{} puts acknowledged before the kill; failures took at most {slowest:?}; first: {}",
        acked.lock().expect("lock").len(),
        failures[0].1
    );
    assert!(
        slowest < timeout + Duration::from_millis(500),
        "a call hung for {slowest:?}"
    );
    let started = Instant::now();
    assert!(matches!(
        meta.head("b", "k000000").await,
        Err(MetaError::Unavailable(_))
    ));
    assert!(matches!(
        meta.list(
            "b",
            &ListQuery {
                max: 10,
                ..ListQuery::default()
            }
        )
        .await,
        Err(MetaError::Unavailable(_))
    ));
    assert!(
        started.elapsed() < timeout * 2,
        "reads while down took {:?}",
        started.elapsed()
    );

    server.restart();
    // The same handle works again: the connection manager reconnects.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match meta.head("b", "k000000").await {
            Ok(_) => break,
            Err(MetaError::Unavailable(_)) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(other) => panic!("after restart: {other}"),
        }
    }
    let acked = acked.lock().expect("lock").clone();
    for (key, etag) in &acked {
        let entry = meta
            .head("b", key)
            .await
            .expect("an acknowledged put survived the crash");
        assert_eq!(&entry.etag, etag, "{key}");
    }
    let page = meta
        .list(
            "b",
            &ListQuery {
                max: 10_000,
                ..ListQuery::default()
            },
        )
        .await
        .expect("list");
    assert!(page.entries.len() >= acked.len());
    // Writes work again, scripts included (Redis lost its script cache).
    put_simple(&meta, "b", "after-restart", "new").await;
    assert_eq!(
        meta.head("b", "after-restart").await.expect("head").etag,
        "new"
    );
    assert!(meta.last_seq().await.expect("seq") >= acked.len() as u64 + 2);
}

/// HEAD and LIST of an object whose layout has 10,000 segments never read
/// that layout: on a private server, the layouts hash stays idle (Redis's
/// own access clock) and the bytes Redis sends stay small, while one GET
/// shows both probes do notice a layout read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_and_list_never_read_layouts() {
    let server = RedisServer::options().aof().start();
    let meta = RedisMeta::open(&server.url(), "layouts", false)
        .await
        .expect("open");
    let keys = Keys::new("layouts");
    meta.create_bucket("b").await.expect("create");
    let segments: Vec<Segment> = (0..10_000)
        .map(|i| Segment {
            store: "data".into(),
            blob: format!("blob-{i:05}-{}", uuid::Uuid::new_v4()),
            offset: 0,
            len: 1 << 20,
            version: String::new(),
        })
        .collect();
    let layout = Layout { segments };
    let layout_bytes = serde_json::to_vec(&layout).expect("json").len() as u64;
    let (mut entry, _) = simple_entry("big", 0);
    entry.size = layout.total_len();
    let started = Instant::now();
    meta.put(
        "b",
        "big",
        entry.clone(),
        layout.clone(),
        Precondition::None,
    )
    .await
    .expect("put big");
    eprintln!(
        "put with 10,000 segments ({layout_bytes} bytes of layout): {:?}",
        started.elapsed()
    );
    put_simple(&meta, "b", "small", "small").await;

    let time = |key: &'static str| {
        let meta = meta.clone();
        async move {
            let started = Instant::now();
            for _ in 0..200 {
                meta.head("b", key).await.expect("head");
            }
            started.elapsed() / 200
        }
    };
    let out_before = info_number(&server, "total_net_output_bytes");
    let started = Instant::now();
    let mut ops = 0u64;
    let (mut head_big, mut head_small) = (Duration::ZERO, Duration::ZERO);
    while started.elapsed() < Duration::from_millis(2500) {
        head_big = time("big").await;
        head_small = time("small").await;
        let page = meta
            .list(
                "b",
                &ListQuery {
                    max: 10,
                    ..ListQuery::default()
                },
            )
            .await
            .expect("list");
        assert_eq!(page.entries.len(), 2);
        let page = meta
            .list(
                "b",
                &ListQuery {
                    prefix: "b".into(),
                    max: 1,
                    ..ListQuery::default()
                },
            )
            .await
            .expect("list");
        assert_eq!(page.entries[0].1, entry);
        ops += 402;
    }
    let sent = info_number(&server, "total_net_output_bytes") - out_before;
    eprintln!(
        "{ops} HEAD/LIST calls: {} bytes from redis per call; HEAD of the big object {head_big:?}, of a small one {head_small:?}",
        sent / ops
    );
    assert!(
        sent / ops < 1024,
        "HEAD/LIST sent {} bytes per call",
        sent / ops
    );
    for key in [keys.layouts(), keys.layout_blobs()] {
        let idle = idle_seconds(&server, &key);
        assert!(idle >= 2, "{key} was read during HEAD/LIST (idle {idle}s)");
    }

    // The probes notice a read: GET reads the layout.
    let out_before = info_number(&server, "total_net_output_bytes");
    let (_, got) = meta.get("b", "big").await.expect("get");
    assert_eq!(got, layout);
    assert!(info_number(&server, "total_net_output_bytes") - out_before >= layout_bytes);
    assert!(idle_seconds(&server, &keys.layouts()) < 2);

    // Deleting it drops 10,000 references in one script.
    let started = Instant::now();
    meta.delete("b", "big").await.expect("delete");
    eprintln!("delete with 10,000 segments: {:?}", started.elapsed());
    let due = meta
        .due_deletions(now_millis() + 1000, 20_000)
        .await
        .expect("due");
    assert_eq!(due.len(), 10_000);
}

fn raw_field(hash: &str, field: &str) -> Vec<u8> {
    let mut conn = sync_conn(&redis_url()).expect("connect");
    redis::cmd("HGET")
        .arg(hash)
        .arg(field)
        .query(&mut conn)
        .expect("hget")
}

/// A replayed ACL edits the record's JSON in Lua: the result must be the
/// bytes serde writes, whatever the record holds (nested objects, escaped
/// quotes, an `"acl"` user-metadata key, a field after `acl`).
#[tokio::test]
async fn replayed_acls_keep_records_as_serde_writes_them() {
    let (_guard, meta) = engine().await;
    let seq = std::sync::atomic::AtomicU64::new(0);
    let apply = |op: ChangeOp| {
        let meta = meta.clone();
        let seq = seq.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        async move {
            assert!(
                meta.apply(Change { seq, at: 1234, op }, vec![])
                    .await
                    .expect("apply")
            );
        }
    };
    apply(ChangeOp::CreateBucket {
        bucket: "m".into(),
        acl: CannedAcl::Private,
    })
    .await;
    let (mut tricky, layout) = simple_entry("e\"t", 5_497_558_138_880);
    tricky.user_metadata.insert("acl".into(), "x\"}".into());
    tricky
        .user_metadata
        .insert("k,\\\"".into(), "{[\u{e9},]}:".into());
    tricky.content_type = Some("a/b".into());
    tricky.parts = vec![5, 6];
    tricky.checksums.insert("CRC32".into(), "abc=".into());
    tricky.imported_from = Some("legacy".into());
    let (plain, plain_layout) = simple_entry("plain", 3);
    for (key, entry, layout) in [
        ("tricky", &tricky, &layout),
        ("plain", &plain, &plain_layout),
    ] {
        apply(ChangeOp::Put {
            bucket: "m".into(),
            key: key.into(),
            entry: Box::new(entry.clone()),
            layout: layout.clone(),
        })
        .await;
    }
    for acl in [
        CannedAcl::PublicRead,
        CannedAcl::PublicRead,
        CannedAcl::Private,
    ] {
        for (key, entry) in [("tricky", &tricky), ("plain", &plain)] {
            apply(ChangeOp::SetObjectAcl {
                bucket: "m".into(),
                key: key.into(),
                acl,
            })
            .await;
            let expected = Entry {
                acl,
                ..entry.clone()
            };
            let raw = raw_field(&meta.keys.entries("m"), key);
            assert_eq!(
                String::from_utf8_lossy(&raw),
                String::from_utf8_lossy(&encode(&expected).expect("json")),
                "{key} set {acl:?}"
            );
            assert_eq!(meta.head("m", key).await.expect("head"), expected);
        }
        apply(ChangeOp::SetBucketAcl {
            bucket: "m".into(),
            acl,
        })
        .await;
        let expected = BucketInfo {
            name: "m".into(),
            created: 1234,
            acl,
        };
        let raw = raw_field(&meta.keys.buckets(), "m");
        assert_eq!(raw, encode(&expected).expect("json"), "bucket {acl:?}");
    }
    // Each applied change was logged here too, in order.
    let logged = meta.changes_since(0, 100).await.expect("changes");
    assert_eq!(
        logged.iter().map(|c| c.seq).collect::<Vec<_>>(),
        (1..=seq.load(std::sync::atomic::Ordering::Relaxed)).collect::<Vec<_>>()
    );
}

/// A reset works in bounded steps: a bucket larger than one step, an
/// upload in progress, and what it leaves behind.
#[tokio::test]
async fn a_reset_empties_the_namespace_in_steps() {
    let (guard, meta) = engine().await;
    meta.create_bucket("big").await.expect("create");
    meta.create_bucket("other").await.expect("create");
    let mut blobs = Vec::new();
    for i in 0..2 * RESET_BATCH + 5 {
        let layout = put_simple(&meta, "big", &format!("k{i:05}"), "x").await;
        blobs.extend(layout.blobs());
    }
    blobs.extend(put_simple(&meta, "other", "k", "x").await.blobs());
    let upload = Upload {
        id: "u1".into(),
        key: "up".into(),
        initiated: now_millis(),
        template: Entry::default(),
        checksum_algorithm: None,
    };
    meta.create_upload("big", upload).await.expect("upload");
    let (_, part_layout) = simple_entry("part", 3);
    let part = Part {
        number: 1,
        etag: "p".into(),
        size: 3,
        last_modified: now_millis(),
        segments: part_layout.segments.clone(),
        checksums: Default::default(),
    };
    meta.put_part("big", "up", "u1", part).await.expect("part");
    blobs.extend(part_layout.blobs());
    let record = MirrorRecord {
        name: "west".into(),
        applied: 3,
        last_seen: 4,
        checkpoints: Vec::new(),
    };
    meta.put_mirror(&record).await.expect("mirror");
    meta.queue_replication(&blobs[..1]).await.expect("job");
    meta.set_replica_position(77).await.expect("position");
    let seq = meta.last_seq().await.expect("seq");

    meta.reset_replica().await.expect("reset");
    assert_eq!(meta.replica_position().await.expect("position"), None);
    assert!(meta.list_buckets().await.expect("buckets").is_empty());
    let due = meta
        .due_deletions(now_millis() + 1, 10_000)
        .await
        .expect("due");
    assert_eq!(due.len(), blobs.len());
    for blob in &blobs {
        assert_eq!(meta.blob_refs(blob).await.expect("refs"), 0);
    }
    assert!(
        meta.stale_uploads(i64::MAX, 10)
            .await
            .expect("stale")
            .is_empty()
    );
    // Kept: the log (with one deletion per bucket), the registry, the jobs.
    assert_eq!(meta.last_seq().await.expect("seq"), seq + 2);
    assert_eq!(meta.mirrors().await.expect("mirrors"), [record]);
    assert_eq!(meta.replication_jobs(0, 10).await.expect("jobs").len(), 1);
    let mut left: Vec<String> = scan_keys(&redis_url(), &guard.pattern)
        .expect("scan")
        .into_iter()
        .map(|k| String::from_utf8_lossy(&k).into_owned())
        .collect();
    left.sort();
    let k = &meta.keys;
    let mut kept = vec![
        k.seq(),
        k.log(),
        k.queue(),
        k.mirrors(),
        k.jobs(),
        k.next_job(),
    ];
    kept.sort();
    assert_eq!(left, kept);
}

#[test]
fn passwords_are_redacted() {
    assert_eq!(
        redact("redis://:secret@host:6379/0"),
        "redis://***@host:6379/0"
    );
    assert_eq!(
        redact("redis://user:secret@host/1"),
        "redis://user:***@host/1"
    );
    assert_eq!(redact("redis://host:6379"), "redis://host:6379");
}

/// DELETE_BUCKET drops a bounded number of parts in its one script: a
/// bucket whose uploads hold more has them aborted first, one script each.
#[tokio::test]
async fn deleting_a_bucket_aborts_many_uploads_in_steps() {
    let (_guard, meta) = engine().await;
    meta.create_bucket("b").await.expect("create");
    let upload = Upload {
        id: "u1".into(),
        key: "k".into(),
        initiated: now_millis(),
        template: Entry::default(),
        checksum_algorithm: None,
    };
    meta.create_upload("b", upload).await.expect("upload");
    let mut blobs = Vec::new();
    for number in 1..=u32::try_from(BUCKET_UPLOADS_BATCH + 1).expect("batch") {
        let (_, layout) = simple_entry("part", 3);
        blobs.extend(layout.blobs());
        let part = Part {
            number,
            etag: "p".into(),
            size: 3,
            last_modified: now_millis(),
            segments: layout.segments,
            checksums: Default::default(),
        };
        meta.put_part("b", "k", "u1", part).await.expect("part");
    }

    // The script alone refuses, and changes nothing.
    let mut invocation = meta.scripts.delete_bucket.prepare_invoke();
    meta.bucket_removal_keys(&mut invocation, "b")
        .arg("b")
        .arg(now_millis())
        .arg("{}")
        .arg(BUCKET_UPLOADS_BATCH);
    let reply = meta.invoke(&invocation).await.expect("script");
    assert_eq!(status_of(reply, "delete_bucket").expect("status").0, "busy");
    meta.upload("b", "k", "u1")
        .await
        .expect("the upload is still there");

    meta.delete_bucket("b").await.expect("delete bucket");
    assert!(matches!(
        meta.bucket("b").await,
        Err(MetaError::NoSuchBucket { .. })
    ));
    let mut queued: Vec<BlobRef> = meta
        .due_deletions(i64::MAX, 2 * BUCKET_UPLOADS_BATCH)
        .await
        .expect("queue")
        .into_iter()
        .map(|q| q.blob)
        .collect();
    queued.sort();
    blobs.sort();
    assert_eq!(queued, blobs, "every part's blob is queued");
}

/// On a Redis Cluster of three masters, with the volume's keys in one hash
/// slot, the engine passes the whole conformance suite, and every key it
/// wrote is on one node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_on_a_redis_cluster() {
    let cluster = tokio::task::spawn_blocking(RedisCluster::start)
        .await
        .expect("start the cluster");
    let meta = RedisMeta::open_cluster(&cluster.url(), "ferry", true)
        .await
        .expect("open on the cluster");
    crate::conformance::run_all(&meta).await;
    let holding: Vec<u16> = cluster
        .nodes()
        .iter()
        .filter(|node| {
            !String::from_utf8_lossy(&node.cli(&["--scan"]).stdout)
                .trim()
                .is_empty()
        })
        .map(RedisServer::port)
        .collect();
    assert_eq!(holding.len(), 1, "nodes holding keys: {holding:?}");
}
