//! End-to-end tests of gateways whose namespace lives in Redis: real `ferry`
//! processes, a real Redis (the shared test one at `redis_url()`, or a
//! private `RedisServer` on a free port when a test must kill it).
//!
//! Every test works under its own random key prefix and deletes its keys at
//! the end (also when it panics), so the shared Redis is left as found.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path as FsPath, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path;
use object_store::{
    Attribute, Attributes, BackoffConfig, ClientOptions, ObjectStore, ObjectStoreExt, PutMode,
    PutOptions, RetryConfig,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use common::*;

// ---------------------------------------------------------------------------
// Redis helpers
// ---------------------------------------------------------------------------

/// A random key prefix in one Redis; its keys are deleted on drop.
struct Namespace {
    url: String,
    prefix: String,
}

impl Namespace {
    fn new(url: String) -> Namespace {
        Namespace {
            url,
            prefix: format!("ferry-e2e-{}", uuid::Uuid::new_v4().simple()),
        }
    }

    fn url(&self) -> String {
        self.url.clone()
    }

    fn pattern(&self) -> String {
        format!("{}:*", self.prefix)
    }

    fn key_count(&self) -> usize {
        redis_keys(&self.url, &self.pattern()).len()
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        delete_keys(&self.url, &self.pattern());
        if !std::thread::panicking() {
            assert_eq!(self.key_count(), 0, "keys of {} left behind", self.prefix);
        }
    }
}

/// A config file for a Redis-backed volume whose data store is `blobs`.
fn redis_config(
    dir: &FsPath,
    name: &str,
    ns: &Namespace,
    allow_volatile: Option<bool>,
    blobs: &FsPath,
) -> PathBuf {
    std::fs::create_dir_all(blobs).expect("mkdir blobs");
    let volatile = match allow_volatile {
        Some(v) => format!("allow_volatile_redis = {v}\n"),
        None => String::new(),
    };
    write_file(
        dir,
        name,
        &format!(
            "[meta]\nengine = \"{}\"\nredis_prefix = \"{}\"\n{volatile}\n[stores.data]\nurl = \"file://{}\"\n",
            ns.url(),
            ns.prefix,
            blobs.display()
        ),
    )
}

// ---------------------------------------------------------------------------
// S3 helpers
// ---------------------------------------------------------------------------

/// A client that never retries, so every error the gateway returns is seen,
/// and that gives up on a request after 20 s instead of hanging.
fn client(server: &Server, bucket: &str) -> Arc<dyn ObjectStore> {
    Arc::new(
        AmazonS3Builder::new()
            .with_endpoint(&server.endpoint)
            .with_allow_http(true)
            .with_region("us-east-1")
            .with_bucket_name(bucket)
            .with_access_key_id(ACCESS_KEY)
            .with_secret_access_key(SECRET_KEY)
            .with_virtual_hosted_style_request(false)
            .with_retry(RetryConfig {
                backoff: BackoffConfig::default(),
                max_retries: 0,
                retry_timeout: Duration::from_secs(20),
            })
            .with_client_options(
                ClientOptions::new()
                    .with_allow_http(true)
                    .with_timeout(Duration::from_secs(20)),
            )
            .build()
            .expect("client"),
    )
}

async fn read(
    store: &dyn ObjectStore,
    key: &str,
) -> object_store::Result<(Vec<u8>, Option<String>)> {
    let got = store.get(&Path::parse(key).expect("plain path")).await?;
    let etag = got.meta.e_tag.clone();
    Ok((got.bytes().await?.to_vec(), etag))
}

async fn list_keys(store: &dyn ObjectStore, prefix: Option<&str>) -> Vec<String> {
    let prefix = prefix.map(|p| Path::parse(p).expect("plain path"));
    store
        .list(prefix.as_ref())
        .map(|m| m.expect("list").location.to_string())
        .collect()
        .await
}

fn seeded_rng(test: &str) -> StdRng {
    let seed = std::env::var("FERRY_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random::<u64>);
    eprintln!("{test}: seed {seed} (set FERRY_TEST_SEED to replay)");
    StdRng::seed_from_u64(seed)
}

/// Characters of generated keys: plain ASCII, characters that URL
/// encodings disagree about, and multi-byte UTF-8.
const KEY_CHARS: &[char] = &[
    'a', 'b', 'c', 'x', 'y', 'z', 'A', 'Q', '0', '1', '7', '9', '-', '_', '.', ' ', '+', '=', '&',
    '@', ',', ';', '(', ')', '!', '$', '\'', 'é', 'ß', 'ü', 'Ω', 'ж', '日', '本', '語', '🦀', '😀',
];

/// Shared first segments, so that prefix listings have many results.
const DIRS: &[&str] = &["models", "data set", "日本", "ünï+cødé"];

fn random_segment(rng: &mut StdRng) -> String {
    let len = if rng.random_bool(0.1) {
        rng.random_range(20..120)
    } else {
        rng.random_range(1..12)
    };
    let mut segment: String = (0..len)
        .map(|_| KEY_CHARS[rng.random_range(0..KEY_CHARS.len())])
        .collect();
    // object_store encodes "." and ".." segments; keep keys as written.
    if segment.chars().all(|c| c == '.') {
        segment.push('x');
    }
    segment
}

fn random_key(rng: &mut StdRng) -> String {
    let segments = rng.random_range(1..=4);
    let mut parts = Vec::new();
    for i in 0..segments {
        if i == 0 && segments > 1 && rng.random_bool(0.6) {
            parts.push(DIRS[rng.random_range(0..DIRS.len())].to_string());
        } else {
            parts.push(random_segment(rng));
        }
    }
    parts.join("/")
}

fn random_body(rng: &mut StdRng) -> Vec<u8> {
    let len = rng.random_range(0..300);
    (0..len).map(|_| rng.random()).collect()
}

/// A precondition error as object_store reports a refused `PutMode::Create`.
fn is_precondition(err: &object_store::Error) -> bool {
    matches!(
        err,
        object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. }
    )
}

fn is_unavailable(err: &str) -> bool {
    err.contains("503") || err.contains("ServiceUnavailable") || err.contains("SlowDown")
}

/// Two gateways on one Redis namespace and one `file://` data store.
struct Pair {
    a: Server,
    b: Server,
    _dir: tempfile::TempDir,
    _ns: Option<Namespace>,
}

async fn start_pair(bucket: &str) -> Pair {
    let ns = Namespace::new(redis_url());
    let dir = temp_dir();
    let config = redis_config(
        dir.path(),
        "ferry.toml",
        &ns,
        Some(true),
        &dir.path().join("blobs"),
    );
    start_pair_with(bucket, dir, &config, Some(ns)).await
}

/// The name of the cache cluster [`start_pair_on_a_redis_cluster`] forms.
const CACHE_CLUSTER: &str = "raw";

/// Two gateways whose namespace and cache-cluster membership both live on
/// the Redis Cluster `redis` (any node's URL), each under its own hash tag;
/// the gateways are members `a` and `b` of one cache cluster.
async fn start_pair_on_a_redis_cluster(bucket: &str, redis: &str) -> Pair {
    let dir = temp_dir();
    let blobs = dir.path().join("blobs");
    std::fs::create_dir_all(&blobs).expect("mkdir blobs");
    let config = write_file(
        dir.path(),
        "ferry.toml",
        &format!(
            r#"[meta]
engine = "{redis}"
redis_prefix = "volume"
redis_cluster = true
allow_volatile_redis = true

[stores.data]
url = "file://{blobs}"

[cluster]
name = "{CACHE_CLUSTER}"
peer_listen = "127.0.0.1:0"
secret = "0123456789abcdef0123"
membership = "{redis}"
redis_cluster = true
"#,
            blobs = blobs.display(),
        ),
    );
    start_pair_with(bucket, dir, &config, None).await
}

async fn start_pair_with(
    bucket: &str,
    dir: tempfile::TempDir,
    config: &FsPath,
    ns: Option<Namespace>,
) -> Pair {
    let (a_dir, b_dir) = (dir.path().join("a"), dir.path().join("b"));
    std::fs::create_dir_all(&a_dir).expect("mkdir");
    std::fs::create_dir_all(&b_dir).expect("mkdir");
    let a = Server::start(Launch {
        config: Some(config),
        extra_env: vec![("FERRY_NODE_ID", "a".to_string())],
        ..Launch::new(&a_dir)
    });
    let b = Server::start(Launch {
        config: Some(config),
        extra_env: vec![("FERRY_NODE_ID", "b".to_string())],
        ..Launch::new(&b_dir)
    });
    create_bucket(&a.endpoint, bucket).await;
    Pair {
        a,
        b,
        _dir: dir,
        _ns: ns,
    }
}

// ---------------------------------------------------------------------------
// 1. Read-after-write across gateways
// ---------------------------------------------------------------------------

async fn assert_listing(
    store: &dyn ObjectStore,
    through: &str,
    expected: &BTreeMap<String, Vec<u8>>,
    i: usize,
    rng: &mut StdRng,
) {
    let all: Vec<String> = expected.keys().cloned().collect();
    assert_eq!(
        list_keys(store, None).await,
        all,
        "full listing through {through} after {i} writes"
    );
    for dir in DIRS {
        let wanted: Vec<String> = all
            .iter()
            .filter(|k| k.starts_with(&format!("{dir}/")))
            .cloned()
            .collect();
        assert_eq!(
            list_keys(store, Some(dir)).await,
            wanted,
            "listing of {dir:?}/ through {through} after {i} writes"
        );
    }
    // start-after (ListObjectsV2 StartAfter) from a random existing key.
    if !all.is_empty() {
        let offset = &all[rng.random_range(0..all.len())];
        let listed: Vec<String> = store
            .list_with_offset(None, &Path::parse(offset).expect("path"))
            .map(|m| m.expect("list").location.to_string())
            .collect()
            .await;
        let wanted: Vec<String> = all
            .iter()
            .filter(|k| k.as_str() > offset.as_str())
            .cloned()
            .collect();
        assert_eq!(
            listed, wanted,
            "listing after {offset:?} through {through} after {i} writes"
        );
    }
}

/// A delimiter listing of the whole bucket: the keys without '/' and the
/// first segments of those with one.
async fn assert_delimited(
    store: &dyn ObjectStore,
    through: &str,
    expected: &BTreeMap<String, Vec<u8>>,
) {
    let listing = store
        .list_with_delimiter(None)
        .await
        .expect("delimiter listing");
    let objects: Vec<String> = listing
        .objects
        .iter()
        .map(|o| o.location.to_string())
        .collect();
    let prefixes: Vec<String> = listing
        .common_prefixes
        .iter()
        .map(|p| p.to_string())
        .collect();
    let wanted_objects: Vec<String> = expected
        .keys()
        .filter(|k| !k.contains('/'))
        .cloned()
        .collect();
    // object_store sorts common prefixes without their delimiter.
    let wanted_prefixes: Vec<String> = expected
        .keys()
        .filter_map(|k| k.split_once('/').map(|(first, _)| first.to_string()))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(
        objects, wanted_objects,
        "objects of a delimiter listing through {through}"
    );
    assert_eq!(
        prefixes, wanted_prefixes,
        "common prefixes of a delimiter listing through {through}"
    );
    for object in &listing.objects {
        let body = &expected[object.location.as_ref()];
        assert_eq!(
            object.size,
            body.len() as u64,
            "size of {} in a listing",
            object.location
        );
    }
}

#[tokio::test]
async fn a_write_through_one_gateway_is_read_at_once_through_the_other() {
    let pair = start_pair("shared").await;
    read_after_write(&pair, "shared").await;
}

/// The same on a Redis Cluster of three masters: the namespace
/// (`[meta] redis_cluster`) and the cache cluster's membership (`[cluster]
/// redis_cluster`) each live in one hash slot, both gateways are members
/// and serve each other's blocks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_through_one_gateway_is_read_at_once_through_the_other_on_a_redis_cluster() {
    let redis = tokio::task::spawn_blocking(RedisCluster::start)
        .await
        .expect("start the redis cluster");
    let pair = start_pair_on_a_redis_cluster("shared", &redis.url()).await;
    for server in [&pair.a, &pair.b] {
        let admin = server.admin.clone();
        eventually("both gateways are members", Duration::from_secs(10), || {
            let admin = admin.clone();
            async move {
                let (_, status) = curl(&["-s", &format!("{admin}/cluster/status")]);
                let members = serde_json::from_str::<serde_json::Value>(&status)
                    .ok()
                    .and_then(|v| v["members"].as_array().map(|m| m.len()));
                (members == Some(2)).then_some(())
            }
        })
        .await;
    }
    read_after_write(&pair, "shared").await;
    let served: f64 = [&pair.a, &pair.b]
        .iter()
        .map(|s| metric(&s.admin, "ferry_peer_served_total", ""))
        .sum();
    assert!(served > 0.0, "the gateways served each other's blocks");
    for tag in ["{volume}", &format!("{{ferry-cluster:{CACHE_CLUSTER}}}")] {
        let holding: Vec<u16> = redis
            .nodes()
            .iter()
            .filter(|node| {
                let keys = node.cli(&["--scan", "--pattern", &format!("{tag}:*")]);
                !String::from_utf8_lossy(&keys.stdout).trim().is_empty()
            })
            .map(RedisServer::port)
            .collect();
        assert_eq!(holding.len(), 1, "nodes holding {tag} keys: {holding:?}");
    }
}

/// 1000 PUTs through alternating gateways, each read at once (GET, HEAD)
/// through the other; every tenth a DELETE seen at once; listings agree.
async fn read_after_write(pair: &Pair, bucket: &str) {
    let gateways = [
        (client(&pair.a, bucket), "A"),
        (client(&pair.b, bucket), "B"),
    ];
    let mut rng = seeded_rng("read-after-write");
    let mut expected: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let started = Instant::now();
    let mut deletes = 0;
    for i in 1..=1000usize {
        let (writer, w) = (&gateways[i % 2].0, gateways[i % 2].1);
        let (reader, r) = (&gateways[(i + 1) % 2].0, gateways[(i + 1) % 2].1);
        let key = random_key(&mut rng);
        let body = random_body(&mut rng);
        let path = Path::parse(&key).unwrap_or_else(|e| panic!("{key:?} is a plain path: {e}"));
        let put = writer
            .put(&path, Bytes::from(body.clone()).into())
            .await
            .unwrap_or_else(|e| panic!("PUT {key:?} through {w}: {e}"));
        assert!(put.e_tag.is_some(), "PUT returns an ETag");

        let got = reader
            .get(&path)
            .await
            .unwrap_or_else(|e| panic!("GET {key:?} through {r} right after PUT through {w}: {e}"));
        assert_eq!(got.meta.e_tag, put.e_tag, "GET ETag of {key:?} through {r}");
        let bytes = got.bytes().await.expect("body");
        assert!(
            bytes[..] == body[..],
            "GET {key:?} through {r}: bytes differ from the PUT through {w}"
        );

        let head = reader.head(&path).await.unwrap_or_else(|e| {
            panic!("HEAD {key:?} through {r} right after PUT through {w}: {e}")
        });
        assert_eq!(head.e_tag, put.e_tag, "HEAD ETag of {key:?} through {r}");
        assert_eq!(head.size, body.len() as u64, "HEAD size of {key:?}");
        assert_eq!(head.location.as_ref(), key, "HEAD location");
        expected.insert(key, body);

        if i % 10 == 0 {
            // Delete a random earlier key through the writer.
            let victim = expected
                .keys()
                .nth(rng.random_range(0..expected.len()))
                .expect("a key")
                .clone();
            let path = Path::parse(&victim).expect("path");
            writer
                .delete(&path)
                .await
                .unwrap_or_else(|e| panic!("DELETE {victim:?} through {w}: {e}"));
            let after = reader.get(&path).await;
            assert!(
                matches!(after, Err(object_store::Error::NotFound { .. })),
                "GET {victim:?} through {r} right after DELETE through {w}: {:?}",
                after.map(|g| g.meta)
            );
            let after = reader.head(&path).await;
            assert!(
                matches!(after, Err(object_store::Error::NotFound { .. })),
                "HEAD {victim:?} through {r} right after DELETE through {w}: {after:?}"
            );
            expected.remove(&victim);
            deletes += 1;
        }
        if i % 50 == 0 {
            assert_listing(reader.as_ref(), r, &expected, i, &mut rng).await;
        }
    }
    for (store, name) in &gateways {
        assert_listing(store.as_ref(), name, &expected, 1000, &mut rng).await;
        assert_delimited(store.as_ref(), name, &expected).await;
    }
    eprintln!(
        "read-after-write: 1000 PUTs, {deletes} DELETEs, {} keys left, in {:?}",
        expected.len(),
        started.elapsed()
    );
}

// ---------------------------------------------------------------------------
// 2. Racing writes from two gateways
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_writes_from_two_gateways_leave_exactly_one_winner() {
    let pair = start_pair("race").await;
    let a = client(&pair.a, "race");
    let b = client(&pair.b, "race");
    let mut rng = seeded_rng("races");

    let mut wins = [0usize; 2];
    for round in 0..20 {
        let key = format!("overwrite/{round}");
        let body_a = Bytes::from(format!("A{round}:{}", "a".repeat(rng.random_range(0..500))));
        let body_b = Bytes::from(format!("B{round}:{}", "b".repeat(rng.random_range(0..500))));
        let put_a = tokio::spawn({
            let (store, path, body) = (Arc::clone(&a), Path::from(key.as_str()), body_a.clone());
            async move { store.put(&path, body.into()).await }
        });
        let put_b = tokio::spawn({
            let (store, path, body) = (Arc::clone(&b), Path::from(key.as_str()), body_b.clone());
            async move { store.put(&path, body.into()).await }
        });
        let put_a = put_a.await.expect("task").expect("PUT through A");
        let put_b = put_b.await.expect("task").expect("PUT through B");

        let (via_a, etag_a) = read(a.as_ref(), &key).await.expect("GET through A");
        let (via_b, etag_b) = read(b.as_ref(), &key).await.expect("GET through B");
        assert!(
            via_a == via_b,
            "round {round}: the gateways disagree on {key}"
        );
        assert_eq!(
            etag_a, etag_b,
            "round {round}: the gateways disagree on the ETag"
        );
        if via_a[..] == body_a[..] {
            assert_eq!(
                etag_a, put_a.e_tag,
                "round {round}: A's body with another ETag"
            );
            wins[0] += 1;
        } else {
            assert!(
                via_a[..] == body_b[..],
                "round {round}: the body is neither written one"
            );
            assert_eq!(
                etag_a, put_b.e_tag,
                "round {round}: B's body with another ETag"
            );
            wins[1] += 1;
        }
    }
    eprintln!(
        "overwrite races won by A {} times, by B {} times",
        wins[0], wins[1]
    );

    let create = || PutOptions {
        mode: PutMode::Create,
        ..PutOptions::default()
    };
    let mut wins = [0usize; 2];
    for round in 0..20 {
        let key = format!("create/{round}");
        let bodies = [
            Bytes::from(format!("A{round}")),
            Bytes::from(format!("B{round}")),
        ];
        let tasks: Vec<_> = [&a, &b]
            .into_iter()
            .zip(bodies.clone())
            .map(|(store, body)| {
                let (store, path, opts) = (Arc::clone(store), Path::from(key.as_str()), create());
                tokio::spawn(async move { store.put_opts(&path, body.into(), opts).await })
            })
            .collect();
        let mut results = Vec::new();
        for task in tasks {
            results.push(task.await.expect("task"));
        }
        let winner = match (&results[0], &results[1]) {
            (Ok(_), Err(e)) if is_precondition(e) => 0,
            (Err(e), Ok(_)) if is_precondition(e) => 1,
            other => panic!("round {round}: conditional creates from A and B gave {other:?}"),
        };
        wins[winner] += 1;
        if round == 0 {
            eprintln!(
                "the losing conditional create: {}",
                results[1 - winner].as_ref().expect_err("loser")
            );
        }
        let etag = results[winner].as_ref().expect("winner").e_tag.clone();
        for (store, name) in [(&a, "A"), (&b, "B")] {
            let (body, got_etag) = read(store.as_ref(), &key).await.expect("GET");
            assert!(
                body[..] == bodies[winner][..],
                "round {round}: {name} serves the loser's body"
            );
            assert_eq!(got_etag, etag, "round {round}: ETag through {name}");
        }
        // A late conditional create through the loser is refused too.
        let loser = if winner == 0 { &b } else { &a };
        let late = loser
            .put_opts(
                &Path::from(key.as_str()),
                Bytes::from_static(b"late").into(),
                create(),
            )
            .await;
        assert!(
            matches!(&late, Err(e) if is_precondition(e)),
            "round {round}: late create: {late:?}"
        );
    }
    eprintln!(
        "create races won by A {} times, by B {} times",
        wins[0], wins[1]
    );
}

// ---------------------------------------------------------------------------
// 3. Redis killed and restarted under a running gateway
// ---------------------------------------------------------------------------

struct Attempt {
    key: String,
    body: Vec<u8>,
    started: Instant,
    elapsed: Duration,
    result: Result<(), String>,
}

async fn next(rx: &mut tokio::sync::mpsc::UnboundedReceiver<Attempt>) -> Attempt {
    tokio::time::timeout(Duration::from_secs(30), rx.recv())
        .await
        .expect("the writer reports within 30 s")
        .expect("the writer is running")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_crash_fails_requests_fast_and_loses_no_acknowledged_put() {
    let dir = temp_dir();
    let mut redis = RedisServer::options().aof().start();
    let ns = Namespace::new(redis.url());
    // allow_volatile_redis = false: a Redis with AOF is accepted.
    let config = redis_config(
        dir.path(),
        "ferry.toml",
        &ns,
        Some(false),
        &dir.path().join("blobs"),
    );
    let server = Server::start(Launch {
        config: Some(&config),
        ..Launch::new(dir.path())
    });
    create_bucket(&server.endpoint, "crash").await;
    let s3 = client(&server, "crash");

    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Attempt>();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = tokio::spawn({
        let (s3, stop) = (Arc::clone(&s3), Arc::clone(&stop));
        async move {
            let mut i = 0u32;
            while !stop.load(Ordering::SeqCst) {
                let key = format!("loop/{i:06}");
                let mut body = format!("{key}:").into_bytes();
                body.extend(pattern(i as u8, 100 + (i as usize * 37) % 2000));
                let started = Instant::now();
                let result = s3
                    .put(&Path::from(key.as_str()), Bytes::from(body.clone()).into())
                    .await;
                let attempt = Attempt {
                    key,
                    body,
                    started,
                    elapsed: started.elapsed(),
                    result: result.map(|_| ()).map_err(|e| e.to_string()),
                };
                if tx.send(attempt).is_err() {
                    return;
                }
                i += 1;
            }
        }
    });
    let mut acknowledged: Vec<(String, Vec<u8>)> = Vec::new();
    while acknowledged.len() < 50 {
        let attempt = next(&mut rx).await;
        let result = attempt.result.clone();
        result.unwrap_or_else(|e| panic!("PUT {} while redis is up: {e}", attempt.key));
        acknowledged.push((attempt.key, attempt.body));
    }

    redis.kill();
    let killed = Instant::now();

    // PUTs that started after the kill fail fast with a 503.
    let mut failed_after_kill: Vec<String> = Vec::new();
    while failed_after_kill.len() < 5 {
        let attempt = next(&mut rx).await;
        if attempt.started < killed {
            // In flight at the kill: either outcome, but an Ok must be durable.
            if attempt.result.is_ok() {
                acknowledged.push((attempt.key, attempt.body));
            }
            continue;
        }
        let err = match attempt.result {
            Ok(()) => panic!("PUT {} succeeded with redis killed", attempt.key),
            Err(e) => e,
        };
        assert!(
            attempt.elapsed < Duration::from_secs(5),
            "PUT took {:?} to fail: {err}",
            attempt.elapsed
        );
        assert!(is_unavailable(&err), "PUT with redis down: {err}");
        failed_after_kill.push(attempt.key);
    }
    stop.store(true, Ordering::SeqCst);
    while let Some(attempt) = rx.recv().await {
        assert!(attempt.started >= killed, "ordering of attempts");
        let err = attempt.result.expect_err("PUT succeeded with redis killed");
        assert!(
            attempt.elapsed < Duration::from_secs(5),
            "PUT took {:?} to fail: {err}",
            attempt.elapsed
        );
        assert!(is_unavailable(&err), "PUT with redis down: {err}");
        failed_after_kill.push(attempt.key);
    }
    writer.await.expect("writer");

    // Reads fail fast too: GET, HEAD, LIST.
    let (first_key, _) = &acknowledged[0];
    let path = Path::from(first_key.as_str());
    fails_fast("GET", async { s3.get(&path).await.map(|_| ()) }).await;
    fails_fast("HEAD", async { s3.head(&path).await.map(|_| ()) }).await;
    fails_fast("LIST", async {
        s3.list_with_delimiter(None).await.map(|_| ())
    })
    .await;

    // Same port, same AOF; Ferry is not restarted.
    let restart = Instant::now();
    redis.restart();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut failures = 0;
    loop {
        match s3
            .put(
                &Path::from("after-restart"),
                Bytes::from_static(b"back").into(),
            )
            .await
        {
            Ok(_) => break,
            Err(e) => {
                failures += 1;
                assert!(
                    Instant::now() < deadline,
                    "no PUT succeeded within 30 s of the restart: {e}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    eprintln!(
        "redis crash: {} PUTs acknowledged before the kill, {} failed after it; first PUT after restart after {:?} ({failures} failures)",
        acknowledged.len(),
        failed_after_kill.len(),
        restart.elapsed()
    );
    assert_eq!(
        read(s3.as_ref(), "after-restart").await.expect("GET").0,
        b"back"
    );

    for (key, body) in &acknowledged {
        let (got, _) = read(s3.as_ref(), key)
            .await
            .unwrap_or_else(|e| panic!("acknowledged PUT {key} lost across a redis crash: {e}"));
        assert!(&got == body, "{key} changed across a redis crash");
    }
    // A PUT that failed while redis was down left nothing behind.
    for key in &failed_after_kill {
        let head = s3.head(&Path::from(key.as_str())).await;
        assert!(
            matches!(head, Err(object_store::Error::NotFound { .. })),
            "{key} failed yet exists: {head:?}"
        );
    }
    let listed: BTreeSet<String> = list_keys(s3.as_ref(), Some("loop"))
        .await
        .into_iter()
        .collect();
    for (key, _) in &acknowledged {
        assert!(listed.contains(key), "{key} missing from the listing");
    }
    let status = server.stop();
    assert!(status.success(), "SIGTERM: ferry exited with {status}");
}

/// A Redis that hangs (SIGSTOP) rather than dies: no connection is refused,
/// so only the engine's deadline stands between a client and a hung request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_redis_fails_requests_within_the_deadline_and_recovers() {
    let dir = temp_dir();
    let redis = RedisServer::options().aof().start();
    let ns = Namespace::new(redis.url());
    let config = redis_config(
        dir.path(),
        "ferry.toml",
        &ns,
        Some(false),
        &dir.path().join("blobs"),
    );
    let server = Server::start(Launch {
        config: Some(&config),
        ..Launch::new(dir.path())
    });
    create_bucket(&server.endpoint, "hang").await;
    let s3 = client(&server, "hang");
    s3.put(&Path::from("before"), Bytes::from_static(b"before").into())
        .await
        .expect("put");

    signal(redis.pid(), "STOP");
    for op in ["PUT", "GET", "HEAD", "PUT again"] {
        let started = Instant::now();
        let result = match op {
            "GET" => s3.get(&Path::from("before")).await.map(|_| ()),
            "HEAD" => s3.head(&Path::from("before")).await.map(|_| ()),
            _ => s3
                .put(&Path::from("during"), Bytes::from_static(b"during").into())
                .await
                .map(|_| ()),
        };
        let elapsed = started.elapsed();
        let err = result
            .expect_err("a request succeeded with redis stopped")
            .to_string();
        assert!(
            elapsed < Duration::from_secs(5),
            "{op} took {elapsed:?} to fail with redis stopped: {err}"
        );
        assert!(is_unavailable(&err), "{op} with redis stopped: {err}");
        eprintln!("{op} with redis stopped failed after {elapsed:?}");
    }
    signal(redis.pid(), "CONT");

    let resumed = Instant::now();
    let deadline = resumed + Duration::from_secs(30);
    loop {
        match read(s3.as_ref(), "before").await {
            Ok((body, _)) => {
                assert_eq!(body, b"before");
                break;
            }
            Err(e) => {
                assert!(
                    Instant::now() < deadline,
                    "no GET succeeded within 30 s of SIGCONT: {e}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    eprintln!(
        "first GET after SIGCONT succeeded after {:?}",
        resumed.elapsed()
    );
    // A PUT answered 503 may still commit when the hung Redis runs its
    // queued script: S3 clients must treat a 5xx PUT as "maybe written".
    let during = s3.head(&Path::from("during")).await;
    eprintln!("the PUT answered 503 while redis was stopped: afterwards {during:?}");
    s3.put(&Path::from("after"), Bytes::from_static(b"after").into())
        .await
        .expect("PUT after SIGCONT");
    assert_eq!(read(s3.as_ref(), "after").await.expect("GET").0, b"after");
    // Replies to the timed-out calls must not be taken for later calls' replies.
    for _ in 0..20 {
        assert_eq!(read(s3.as_ref(), "before").await.expect("GET").0, b"before");
        assert_eq!(read(s3.as_ref(), "after").await.expect("GET").0, b"after");
    }
    let status = server.stop();
    assert!(status.success(), "SIGTERM: ferry exited with {status}");
}

// ---------------------------------------------------------------------------
// 4. No AOF, no start
// ---------------------------------------------------------------------------

#[tokio::test]
async fn a_gateway_refuses_a_redis_without_aof_unless_volatile_is_allowed() {
    let dir = temp_dir();
    let redis = RedisServer::start();
    let ns = Namespace::new(redis.url());
    let config = redis_config(
        dir.path(),
        "ferry.toml",
        &ns,
        None,
        &dir.path().join("blobs"),
    );

    let stderr_path = dir.path().join("stderr.log");
    let mut child = ferry()
        .arg("serve")
        .arg("--config")
        .arg(&config)
        .arg("--data-dir")
        .arg(dir.path())
        .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
        .env("FERRY_ACCESS_KEY", ACCESS_KEY)
        .env("FERRY_SECRET_KEY", SECRET_KEY)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr_path).expect("stderr file"))
        .spawn()
        .expect("spawn ferry");
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("ferry serve kept running on a redis without AOF");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let stderr = std::fs::read_to_string(&stderr_path).expect("stderr");
    assert!(!status.success(), "exit status {status}: {stderr}");
    assert!(stderr.contains("appendonly"), "{stderr}");
    assert!(stderr.contains("allow_volatile_redis"), "{stderr}");
    assert_eq!(ns.key_count(), 0, "a refused gateway wrote nothing");

    // The same Redis is accepted once volatility is allowed.
    let volatile = redis_config(
        dir.path(),
        "volatile.toml",
        &ns,
        Some(true),
        &dir.path().join("blobs"),
    );
    let server = Server::start(Launch {
        config: Some(&volatile),
        ..Launch::new(dir.path())
    });
    create_bucket(&server.endpoint, "volatile").await;
    let s3 = client(&server, "volatile");
    s3.put(&Path::from("k"), Bytes::from_static(b"v").into())
        .await
        .expect("put on a volatile redis");
    assert_eq!(read(s3.as_ref(), "k").await.expect("get").0, b"v");
    let status = server.stop();
    assert!(status.success(), "SIGTERM: ferry exited with {status}");
}

// ---------------------------------------------------------------------------
// 5. Dump and load between engines
// ---------------------------------------------------------------------------

fn ferry_ok(args: &[&str], config: Option<&FsPath>, data_dir: &FsPath) -> std::process::Output {
    let mut command = ferry();
    command.args(args).arg("--data-dir").arg(data_dir);
    if let Some(config) = config {
        command.arg("--config").arg(config);
    }
    let output = command.output().expect("run ferry");
    assert!(
        output.status.success(),
        "ferry {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

#[tokio::test]
async fn a_dump_moves_between_embedded_and_redis_volumes_exactly() {
    let source = temp_dir();
    let blobs = source.path().join("blobs");
    let objects: Vec<(&str, Vec<u8>)> = vec![
        ("llama/model-00001.safetensors", pattern(1, 300_000)),
        ("llama/config.json", b"{\"layers\": 32}".to_vec()),
        ("日本/データ set+1.bin", pattern(2, 1000)),
        ("empty", Vec::new()),
        ("overwritten", b"second".to_vec()),
    ];
    {
        let server = Server::start(Launch::new(source.path()));
        create_bucket(&server.endpoint, "models").await;
        create_bucket(&server.endpoint, "empty-bucket").await;
        let s3 = client(&server, "models");
        s3.put(
            &Path::from("overwritten"),
            Bytes::from_static(b"first").into(),
        )
        .await
        .expect("put");
        for (key, body) in &objects {
            s3.put(
                &Path::parse(*key).expect("path"),
                Bytes::from(body.clone()).into(),
            )
            .await
            .expect("put");
        }
        let mut attributes = Attributes::new();
        attributes.insert(Attribute::ContentType, "text/plain".into());
        attributes.insert(Attribute::Metadata("owner".into()), "ferry".into());
        s3.put_opts(
            &Path::from("typed.txt"),
            Bytes::from_static(b"typed").into(),
            PutOptions {
                attributes,
                ..PutOptions::default()
            },
        )
        .await
        .expect("put with attributes");
        s3.put(&Path::from("deleted"), Bytes::from_static(b"gone").into())
            .await
            .expect("put");
        s3.delete(&Path::from("deleted")).await.expect("delete");
        // An upload left in progress, with one part.
        let mut upload = s3
            .put_multipart(&Path::from("uploading/big.bin"))
            .await
            .expect("create upload");
        upload
            .put_part(Bytes::from(pattern(3, 5 * 1024 * 1024)).into())
            .await
            .expect("part");
        drop(upload);
        let status = server.stop();
        assert!(status.success(), "SIGTERM: ferry exited with {status}");
    }
    let first = source.path().join("first.jsonl");
    ferry_ok(
        &["meta", "dump", "-o", first.to_str().expect("utf8")],
        None,
        source.path(),
    );
    let first_text = std::fs::read_to_string(&first).expect("first dump");
    assert!(
        first_text.contains("uploading/big.bin"),
        "the dump holds the upload: {first_text}"
    );
    assert!(
        first_text.contains("日本/データ set+1.bin"),
        "the dump holds the unicode key: {first_text}"
    );

    // Into Redis, sharing the source's blobs.
    let ns = Namespace::new(redis_url());
    let redis_volume = temp_dir();
    let redis_cfg = redis_config(redis_volume.path(), "ferry.toml", &ns, Some(true), &blobs);
    let loaded = ferry_ok(
        &["meta", "load", first.to_str().expect("utf8")],
        Some(&redis_cfg),
        redis_volume.path(),
    );
    eprintln!(
        "load into redis: {}",
        String::from_utf8_lossy(&loaded.stderr).trim()
    );
    let second = redis_volume.path().join("second.jsonl");
    ferry_ok(
        &["meta", "dump", "-o", second.to_str().expect("utf8")],
        Some(&redis_cfg),
        redis_volume.path(),
    );
    let second_text = std::fs::read_to_string(&second).expect("second dump");
    assert!(
        first_text == second_text,
        "embedded dump -> redis load -> dump differs:\n{first_text}\n---\n{second_text}"
    );

    // Loading into a namespace that is no longer empty is refused.
    let again = ferry()
        .args(["meta", "load", first.to_str().expect("utf8"), "--config"])
        .arg(&redis_cfg)
        .arg("--data-dir")
        .arg(redis_volume.path())
        .output()
        .expect("load");
    assert!(
        !again.status.success(),
        "a second load into redis is refused"
    );

    // A gateway on the Redis volume serves the objects.
    {
        let server = Server::start(Launch {
            config: Some(&redis_cfg),
            ..Launch::new(redis_volume.path())
        });
        let s3 = client(&server, "models");
        for (key, body) in &objects {
            assert!(
                &read(s3.as_ref(), key).await.expect("get").0 == body,
                "{key} differs in redis"
            );
        }
        let head = s3.head(&Path::from("typed.txt")).await.expect("head");
        assert_eq!(head.size, 5);
        let status = server.stop();
        assert!(status.success(), "SIGTERM: ferry exited with {status}");
    }

    // And back into a fresh embedded volume.
    let embedded = temp_dir();
    let embedded_cfg = write_file(
        embedded.path(),
        "ferry.toml",
        &format!("[stores.data]\nurl = \"file://{}\"\n", blobs.display()),
    );
    ferry_ok(
        &["meta", "load", second.to_str().expect("utf8")],
        Some(&embedded_cfg),
        embedded.path(),
    );
    let third = embedded.path().join("third.jsonl");
    ferry_ok(
        &["meta", "dump", "-o", third.to_str().expect("utf8")],
        Some(&embedded_cfg),
        embedded.path(),
    );
    let third_text = std::fs::read_to_string(&third).expect("third dump");
    assert!(
        first_text == third_text,
        "redis dump -> embedded load -> dump differs:\n{first_text}\n---\n{third_text}"
    );
}

/// `request` fails, as unavailable, within 5 s.
async fn fails_fast(
    label: &str,
    request: impl std::future::Future<Output = object_store::Result<()>>,
) {
    let started = Instant::now();
    let err = request
        .await
        .expect_err(&format!("{label} with redis down"))
        .to_string();
    assert!(
        started.elapsed() < Duration::from_secs(5) && is_unavailable(&err),
        "{label}: {err} after {:?}",
        started.elapsed()
    );
}
