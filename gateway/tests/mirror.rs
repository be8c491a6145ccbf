//! Mirror regions end to end: a source gateway whose blobs live in a real
//! S3 server (another Ferry over a folder), and a mirror gateway with its
//! own embedded metadata and its own store that follows the source's
//! change feed, copies the blobs, and refuses writes.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use futures::StreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};

const FEED_SECRET: &str = "a-feed-secret-for-the-tests";
const N: usize = 100;
const ADMIN_TOKEN: &str = "mirror-admin-token-0123";

fn origin_store(origin: &Server) -> String {
    format!(
        r#"url = "s3://central/ferry"
endpoint = "{}"
region = "us-east-1"
access_key_id = "{ACCESS_KEY}"
secret_access_key = "{SECRET_KEY}"
allow_http = true
max_retries = 2
"#,
        origin.endpoint
    )
}

/// The source region: its blobs in the origin's `central` bucket.
fn source(dir: &std::path::Path, origin: &Server, admin_listen: &str, extra: &str) -> Server {
    let config = write_file(
        dir,
        "source.toml",
        &format!(
            "[stores.data]\n{}\n[region]\nname = \"central\"\nfeed_secret = \"{FEED_SECRET}\"\n{extra}\n[volume]\ngc_grace = \"2s\"\ngc_interval = \"300ms\"\ngc_lease = \"1s\"\n",
            origin_store(origin)
        ),
    );
    Server::start(Launch {
        config: Some(&config),
        admin_listen: Some(admin_listen),
        ..Launch::new(&dir.join("data"))
    })
}

/// The mirror region: its own folder store, falling back to the source's
/// bucket (read-only here).
fn mirror(dir: &std::path::Path, origin: &Server, follow: &str, extra: &str) -> Server {
    let config = write_file(
        dir,
        "mirror.toml",
        &format!(
            "[stores.data]\nurl = \"file://{}\"\nfallback = [\"central\"]\n\n[stores.central]\n{}owned = false\n\n[region]\nname = \"edge-1\"\nfollow = \"{follow}\"\nfeed_secret = \"{FEED_SECRET}\"\nreplication_concurrency = 1\n{extra}\n[volume]\ngc_grace = \"1s\"\ngc_interval = \"300ms\"\ngc_lease = \"1s\"\n\n[admin]\ntoken = \"{ADMIN_TOKEN}\"\n",
            dir.join("edge-blobs").display(),
            origin_store(origin)
        ),
    );
    Server::start(Launch {
        config: Some(&config),
        ..Launch::new(&dir.join("data"))
    })
}

fn body_of(i: usize, round: u8) -> Vec<u8> {
    pattern(
        round.wrapping_mul(7).wrapping_add(i as u8),
        (1 << 20) + i * 101,
    )
}

async fn put(store: &dyn ObjectStore, key: &str, body: Vec<u8>) {
    store
        .put(&Path::from(key), Bytes::from(body).into())
        .await
        .unwrap_or_else(|e| panic!("put {key}: {e}"));
}

/// Every key under `prefix` with its ETag; a bucket the mirror has not
/// created yet lists as empty.
async fn listing(store: &dyn ObjectStore, prefix: &str) -> BTreeMap<String, Option<String>> {
    match try_listing(store, prefix).await {
        Ok(out) => out,
        Err(e) if e.to_string().contains("NoSuchBucket") => BTreeMap::new(),
        Err(e) => panic!("list: {e}"),
    }
}

/// The blob files under a store's folder (not the staging files a
/// killed upload may leave, whose names carry a `#`).
fn blob_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .flat_map(|e| {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                blob_files(&e.path())
            } else if e.file_name().to_string_lossy().contains('#') {
                Vec::new()
            } else {
                vec![e.path()]
            }
        })
        .collect()
}

fn files_under(dir: &std::path::Path) -> usize {
    blob_files(dir).len()
}

fn region_status(mirror: &Server) -> serde_json::Value {
    let (status, body) = curl(&[&format!("{}/region/status", mirror.admin)]);
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).expect("status json")
}

async fn replication_done(mirror: &Server) {
    eventually(
        "replication queue empty",
        Duration::from_secs(120),
        || async { (region_status(mirror)["replication_queue"] == 0).then_some(()) },
    )
    .await;
}

/// Waits until the mirror lists exactly what the source lists.
async fn converged(source: &dyn ObjectStore, mirror: &dyn ObjectStore, prefix: &str) {
    let want = listing(source, prefix).await;
    eventually(
        "the mirror lists what the source lists",
        Duration::from_secs(60),
        || async { (listing(mirror, prefix).await == want).then_some(()) },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_mirror_follows_its_source_copies_the_blobs_and_refuses_writes() {
    let origin_dir = temp_dir();
    let origin = Server::start(Launch::new(origin_dir.path()));
    create_bucket(&origin.endpoint, "central").await;
    let source_dir = temp_dir();
    let src = source(source_dir.path(), &origin, &free_addr(), "");
    create_bucket(&src.endpoint, "models").await;
    let source_client = src.client("models");

    let mirror_dir = temp_dir();
    // Replication is held up while a file stands where the mirror's store
    // makes its `blobs/` folder (copies fail and are retried), so the
    // first reads must come from the source's store through the chain.
    let edge_blobs = mirror_dir.path().join("edge-blobs");
    std::fs::create_dir_all(&edge_blobs).expect("mkdir");
    std::fs::write(edge_blobs.join("blobs"), b"in the way").expect("blocker");
    let edge = mirror(mirror_dir.path(), &origin, &src.admin, "");
    let edge_client = edge.client("models");

    // Write N objects in the source; read every even one in the mirror as
    // soon as it is listed there.
    let writer = {
        let source_client = source_client.clone();
        tokio::spawn(async move {
            futures::stream::iter(0..N)
                .for_each_concurrent(8, |i| {
                    let c = source_client.clone();
                    async move { put(c.as_ref(), &format!("m/{i:03}.bin"), body_of(i, 1)).await }
                })
                .await;
        })
    };
    let read = Arc::new(std::sync::Mutex::new(std::collections::BTreeSet::new()));
    eventually(
        "every even object read in the mirror",
        Duration::from_secs(120),
        || {
            let (edge_client, read) = (edge_client.clone(), read.clone());
            async move {
                for key in listing(edge_client.as_ref(), "m").await.into_keys() {
                    let i: usize = key[2..5].parse().expect("index");
                    let fresh = i.is_multiple_of(2) && read.lock().expect("lock").insert(i);
                    if fresh {
                        assert_eq!(
                            read_all(edge_client.as_ref(), &key).await,
                            body_of(i, 1),
                            "{key}"
                        );
                    }
                }
                (read.lock().expect("lock").len() == N / 2).then_some(())
            }
        },
    )
    .await;
    writer.await.expect("writer");
    converged(source_client.as_ref(), edge_client.as_ref(), "m").await;
    let fallbacks = metric(&edge.admin, "ferry_store_fallbacks_total", "");
    assert!(
        fallbacks >= (N / 2) as f64,
        "every read before replication came from the source's store: {fallbacks}"
    );
    assert!(
        metric(
            &edge.admin,
            "ferry_replication_blobs_total",
            "outcome=\"failed\""
        ) > 0.0
    );
    std::fs::remove_file(edge_blobs.join("blobs")).expect("unblock");

    // After replication every blob is in the mirror's own store, and the
    // odd objects (never read) are served without asking the source's,
    // but for the odd hedge of a read slower than the own store's p95, and
    // reads while the own store is still skipped for the failures of the
    // reads before (its backoff runs out on its own time): none finds a
    // blob missing from it.
    replication_done(&edge).await;
    assert_eq!(files_under(&edge_blobs), N);
    let central = || {
        metric(
            &edge.admin,
            "ferry_store_get_requests_total",
            "store=\"central\"",
        )
    };
    let hedges = || {
        metric(&edge.admin, "ferry_store_hedges_total", "outcome=\"won\"")
            + metric(&edge.admin, "ferry_store_hedges_total", "outcome=\"lost\"")
    };
    let fallbacks = |reason: &str| {
        metric(
            &edge.admin,
            "ferry_store_fallbacks_total",
            &format!("reason=\"{reason}\""),
        )
    };
    let (central_before, hedges_before) = (central(), hedges());
    let (skipped_before, missing_before) = (fallbacks("skipped"), fallbacks("missing"));
    for i in (1..N).step_by(2) {
        let key = format!("m/{i:03}.bin");
        assert_eq!(
            read_all(edge_client.as_ref(), &key).await,
            body_of(i, 1),
            "{key}"
        );
    }
    let hedged = hedges() - hedges_before;
    let skipped = fallbacks("skipped") - skipped_before;
    assert!(
        central() - central_before <= hedged + skipped,
        "reads after replication must not touch the source's store (hedges: {hedged}, while skipped: {skipped})"
    );
    assert_eq!(
        fallbacks("missing") - missing_before,
        0.0,
        "a replicated blob was missing from the mirror's store"
    );

    // Writes to the mirror are refused, naming the source region.
    let answer = signed_curl(
        &edge.endpoint,
        (ACCESS_KEY, SECRET_KEY),
        &["-X", "PUT", "--data-binary", "x"],
        "/models/new.bin",
    );
    assert_eq!(answer.status, 405, "{}", answer.text());
    assert!(
        answer.text().contains("MethodNotAllowed"),
        "{}",
        answer.text()
    );
    assert!(
        answer
            .text()
            .contains("read-only mirror of the source region central"),
        "{}",
        answer.text()
    );
    // So is an import, which the next resync would undo.
    let (status, body) = curl(&[
        "-X",
        "POST",
        "-H",
        &format!("Authorization: Bearer {ADMIN_TOKEN}"),
        "-H",
        "Content-Type: application/json",
        "--data",
        r#"{"store":"central","source_prefix":"","bucket":"models","target_prefix":"","delete":false}"#,
        &format!("{}/import", edge.admin),
    ]);
    assert_eq!(status, 409, "{body}");
    assert!(
        body.contains("read-only mirror of the source region central"),
        "{body}"
    );
    let delete = signed_curl(
        &edge.endpoint,
        (ACCESS_KEY, SECRET_KEY),
        &["-X", "DELETE"],
        "/models/m/000.bin",
    );
    assert_eq!(delete.status, 405, "{}", delete.text());

    // Overwrites and deletes propagate, while the mirror is killed -9 and
    // restarted in the middle of a stream of them: nothing is missing or
    // applied twice (a replayed put after its delete would resurrect it).
    let edge_pid = edge.pid();
    let stream = {
        let source_client = source_client.clone();
        tokio::spawn(async move {
            for i in 0..60 {
                put(
                    source_client.as_ref(),
                    &format!("m/{i:03}.bin"),
                    body_of(i, 2),
                )
                .await;
                if i % 3 == 0 {
                    source_client
                        .delete(&Path::from(format!("m/{:03}.bin", 99 - i)))
                        .await
                        .expect("delete");
                }
            }
        })
    };
    eventually(
        "the mirror applied part of the stream",
        Duration::from_secs(60),
        || async {
            (region_status(&edge)["position"].as_u64().unwrap_or(0) > 0
                && listing(edge_client.as_ref(), "m").await.len() < N)
                .then_some(())
        },
    )
    .await;
    let killed = std::process::Command::new("kill")
        .args(["-KILL", &edge_pid.to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    drop(edge);
    let edge = mirror(mirror_dir.path(), &origin, &src.admin, "");
    let edge_client = edge.client("models");
    stream.await.expect("stream");
    converged(source_client.as_ref(), edge_client.as_ref(), "m").await;
    for (key, _) in listing(source_client.as_ref(), "m").await {
        let i: usize = key[2..5].parse().expect("index");
        let round = if i < 60 { 2 } else { 1 };
        assert_eq!(
            read_all(edge_client.as_ref(), &key).await,
            body_of(i, round),
            "{key}"
        );
    }
    replication_done(&edge).await;

    // Deleted blobs leave the mirror's store too (its own collector), and
    // the source's collector waited for the mirror before deleting its own.
    let live = listing(source_client.as_ref(), "m").await.len();
    let settled = tokio::time::timeout(Duration::from_secs(60), async {
        while files_under(&edge_blobs) != live {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(
        settled.is_ok(),
        "the mirror's store should hold only the {live} live blobs: {:?}",
        blob_files(&edge_blobs)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dropped_mirror_is_unhealthy_and_resyncs_when_it_returns() {
    let origin_dir = temp_dir();
    let origin = Server::start(Launch::new(origin_dir.path()));
    create_bucket(&origin.endpoint, "central").await;
    let source_dir = temp_dir();
    let source_admin = free_addr();
    // A mirror silent for 2 s is dropped, and the log keeps 5 records.
    let src_extra = "mirror_timeout = \"2s\"\nlog_keep = 5\n";
    let src = source(source_dir.path(), &origin, &source_admin, src_extra);
    create_bucket(&src.endpoint, "models").await;
    let source_client = src.client("models");
    for i in 0..10 {
        put(source_client.as_ref(), &format!("a/{i}.bin"), body_of(i, 1)).await;
    }

    // The mirror out of touch with its source for longer than its timeout
    // says so on /health.
    let mirror_dir = temp_dir();
    let edge_extra = "mirror_timeout = \"2s\"\n";
    let edge = mirror(mirror_dir.path(), &origin, &src.admin, edge_extra);
    let edge_client = edge.client("models");
    converged(source_client.as_ref(), edge_client.as_ref(), "").await;
    let (status, _) = curl(&[&format!("{}/health", edge.admin)]);
    assert_eq!(status, 200);
    drop(src);
    let why = eventually(
        "the mirror reports the lost source",
        Duration::from_secs(30),
        || async {
            let (status, body) = curl(&[&format!("{}/health", edge.admin)]);
            (status == 503).then_some(body)
        },
    )
    .await;
    assert!(
        why.contains("no answer from the source region central"),
        "{why}"
    );

    // The source comes back while the mirror is away; the mirror is
    // dropped and the log trimmed past its position.
    drop(edge);
    let src = source(source_dir.path(), &origin, &source_admin, src_extra);
    let source_client = src.client("models");
    eventually(
        "the source drops the silent mirror",
        Duration::from_secs(30),
        || async {
            (metric(&src.admin, "ferry_feed_mirrors_dropped_total", "") >= 1.0).then_some(())
        },
    )
    .await;
    for i in 0..10 {
        if i % 2 == 0 {
            source_client
                .delete(&Path::from(format!("a/{i}.bin")))
                .await
                .expect("delete");
        } else {
            put(source_client.as_ref(), &format!("a/{i}.bin"), body_of(i, 2)).await;
        }
    }
    for i in 10..20 {
        put(source_client.as_ref(), &format!("b/{i}.bin"), body_of(i, 3)).await;
    }

    // Back, the mirror is told to resync, and converges to the source.
    let edge = mirror(mirror_dir.path(), &origin, &src.admin, edge_extra);
    let edge_client: Arc<dyn ObjectStore> = edge.client("models");
    converged(source_client.as_ref(), edge_client.as_ref(), "").await;
    assert!(metric(&edge.admin, "ferry_mirror_resyncs_total", "") >= 1.0);
    for i in (1..10).step_by(2) {
        assert_eq!(
            read_all(edge_client.as_ref(), &format!("a/{i}.bin")).await,
            body_of(i, 2)
        );
    }
    let (status, body) = curl(&[&format!("{}/health", edge.admin)]);
    assert_eq!(status, 200, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_feed_refuses_requests_without_the_secret() {
    let origin_dir = temp_dir();
    let origin = Server::start(Launch::new(origin_dir.path()));
    create_bucket(&origin.endpoint, "central").await;
    let source_dir = temp_dir();
    let src = source(source_dir.path(), &origin, &free_addr(), "");
    let (status, body) = curl(&[&format!("{}/feed/changes?after=0", src.admin)]);
    assert_eq!(status, 401, "{body}");
    // A mirror with another secret never gets a record, and says why.
    let mirror_dir = temp_dir();
    let config = write_file(
        mirror_dir.path(),
        "mirror.toml",
        &format!(
            "[region]\nname = \"edge-1\"\nfollow = \"{}\"\nfeed_secret = \"not-the-secret-at-all\"\n\n[stores.data]\n{}owned = false\n",
            src.admin,
            origin_store(&origin)
        ),
    );
    let edge = Server::start(Launch {
        config: Some(&config),
        ..Launch::new(&mirror_dir.path().join("data"))
    });
    let error = eventually(
        "the mirror reports the refusal",
        Duration::from_secs(30),
        || async {
            region_status(&edge)["last_error"]
                .as_str()
                .map(str::to_string)
        },
    )
    .await;
    assert!(error.contains("feed_secret"), "{error}");
}
