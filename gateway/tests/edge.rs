//! Edge regions without object storage, end to end: a source region (one
//! node, its bucket served by another Ferry over a folder, a real S3
//! server whose request counts are read) and a mirror region that owns no
//! bucket: its data store is the source's bucket, read only, and every
//! block reaches it through its cache. `[[region.warm]]` loads new objects
//! under a prefix into the edge's cluster as they arrive.

mod common;

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use futures::StreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, WriteMultipart};

const MIB: usize = 1 << 20;
const FEED_SECRET: &str = "edge-feed-secret-for-the-tests";
const CLUSTER_SECRET: &str = "edge-cluster-secret-for-the-tests";
const ADMIN_TOKEN: &str = "edge-admin-token-for-the-tests";

/// The source's bucket, as a `[stores.*]` body.
fn origin_store(origin: &Server) -> String {
    format!(
        "url = \"s3://central/ferry\"\nendpoint = \"{}\"\nregion = \"us-east-1\"\naccess_key_id = \"{ACCESS_KEY}\"\nsecret_access_key = \"{SECRET_KEY}\"\nallow_http = true\nmax_retries = 2\n",
        origin.endpoint
    )
}

/// The source region: one node, its blobs in the origin's bucket.
fn source(dir: &std::path::Path, origin: &Server, grace: &str) -> Server {
    let config = write_file(
        dir,
        "source.toml",
        &format!(
            "[stores.data]\n{}\n[region]\nname = \"central\"\nfeed_secret = \"{FEED_SECRET}\"\n\n[volume]\ngc_grace = \"{grace}\"\ngc_interval = \"200ms\"\ngc_lease = \"1s\"\n",
            origin_store(origin)
        ),
    );
    Server::start(Launch {
        config: Some(&config),
        ..Launch::new(&dir.join("data"))
    })
}

/// A node of the edge region: no bucket of its own (its data store is the
/// source's, `owned = false`), and `extra` (its metadata, cluster, warm
/// prefixes, cache).
fn edge_node(dir: &std::path::Path, origin: &Server, follow: &str, extra: &str) -> Server {
    let config = write_file(
        dir,
        "edge.toml",
        &format!(
            "[server]\nshutdown_grace = \"1s\"\n\n[stores.data]\n{}owned = false\n\n[region]\nname = \"edge-1\"\nfollow = \"{follow}\"\nfeed_secret = \"{FEED_SECRET}\"\n{extra}\n[admin]\ntoken = \"{ADMIN_TOKEN}\"\n",
            origin_store(origin)
        ),
    );
    Server::start(Launch {
        config: Some(&config),
        ..Launch::new(&dir.join("data"))
    })
}

/// GETs the origin (the source's bucket) has answered.
fn origin_gets(origin: &Server) -> f64 {
    metric(
        &origin.admin,
        "ferry_s3_requests_total",
        "operation=\"GetObject\"",
    )
}

async fn put_multipart(store: &dyn ObjectStore, key: &str, body: &[u8]) {
    let upload = store
        .put_multipart(&Path::from(key))
        .await
        .unwrap_or_else(|e| panic!("create upload {key}: {e}"));
    let mut writer = WriteMultipart::new_with_chunk_size(upload, 16 * MIB);
    for chunk in body.chunks(16 * MIB) {
        writer.write(chunk);
    }
    writer
        .finish()
        .await
        .unwrap_or_else(|e| panic!("complete upload {key}: {e}"));
}

async fn put(store: &dyn ObjectStore, key: &str, body: &[u8]) {
    store
        .put(&Path::from(key), Bytes::copy_from_slice(body).into())
        .await
        .unwrap_or_else(|e| panic!("put {key}: {e}"));
}

/// `ferry warmup TARGET --check` against a node: its summary line.
fn warm_check(admin: &str, target: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["warmup", target, "--check", "--admin", admin])
        .env("FERRY_ADMIN_TOKEN", ADMIN_TOKEN)
        .output()
        .expect("run ferry warmup");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "warmup --check: {text}");
    text
}

/// Waits until the edge's cluster holds every byte under `target`, all
/// `bytes` of them.
async fn fully_warm(admin: &str, target: &str, bytes: usize) {
    let want = format!("100.0% of {bytes} bytes");
    eventually(
        &format!("{target} fully warm in the edge ({want})"),
        Duration::from_secs(120),
        || {
            let done = warm_check(admin, target).contains(&want);
            async move { done.then_some(()) }
        },
    )
    .await;
}

async fn listed(store: &dyn ObjectStore, key: &str) -> bool {
    store.head(&Path::from(key)).await.is_ok()
}

fn region_status(admin: &str) -> serde_json::Value {
    let (status, body) = curl(&[&format!("{admin}/region/status")]);
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).expect("region status JSON")
}

/// The edge region: two cluster nodes sharing Redis metadata, no bucket of
/// their own, warming `models/llama-3/` on arrival.
struct Edge {
    name: String,
    nodes: Vec<Server>,
    _dirs: Vec<tempfile::TempDir>,
}

impl Edge {
    fn start(origin: &Server, follow: &str) -> Edge {
        let name = format!("edge-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        let mut nodes = Vec::new();
        let mut dirs = Vec::new();
        for i in 0..2 {
            let dir = temp_dir();
            let extra = format!(
                "[[region.warm]]\nprefix = \"models/llama-3/\"\n\n\
                 [meta]\nengine = \"{redis}\"\nredis_prefix = \"{name}\"\nallow_volatile_redis = true\n\n\
                 [cache]\nmemory = \"32MiB\"\ndisk = \"512MiB\"\nblock_size = \"4MiB\"\n\n\
                 [cluster]\nnode_id = \"e{i}\"\nname = \"{name}\"\npeer_listen = \"127.0.0.1:0\"\nsecret = \"{CLUSTER_SECRET}\"\nmembership = \"{redis}\"\n",
                redis = redis_url(),
            );
            nodes.push(edge_node(dir.path(), origin, follow, &extra));
            dirs.push(dir);
        }
        Edge {
            name,
            nodes,
            _dirs: dirs,
        }
    }

    /// The node doing the warming (holding the lease), once one does.
    async fn warming_node(&self) -> &Server {
        eventually(
            "an edge node warms arrivals",
            Duration::from_secs(60),
            || async {
                self.nodes
                    .iter()
                    .find(|n| region_status(&n.admin)["warm_on_arrival"]["active_here"] == true)
            },
        )
        .await
    }

    fn metric(&self, name: &str, filter: &str) -> f64 {
        self.nodes
            .iter()
            .map(|n| metric(&n.admin, name, filter))
            .sum()
    }
}

impl Drop for Edge {
    fn drop(&mut self) {
        for pattern in [
            format!("{}:*", self.name),
            format!("ferry-cluster:{}:*", self.name),
        ] {
            delete_keys(&redis_url(), &pattern);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_edge_without_a_bucket_warms_new_models_as_they_arrive() {
    let origin_dir = temp_dir();
    let origin = Server::start(Launch::new(origin_dir.path()));
    create_bucket(&origin.endpoint, "central").await;
    let source_dir = temp_dir();
    let src = source(source_dir.path(), &origin, "1h");
    create_bucket(&src.endpoint, "models").await;
    let source_client = src.client("models");
    let edge = Edge::start(&origin, &src.admin);
    let edge_clients: Vec<Arc<dyn ObjectStore>> =
        edge.nodes.iter().map(|n| n.client("models")).collect();
    let admin = edge.nodes[0].admin.clone();

    // A 256 MiB model written in the source: listable in the edge, then
    // fully warm in the edge's cluster, without anyone running a warm-up.
    let model = pattern(7, 256 * MIB);
    put_multipart(source_client.as_ref(), "llama-3/model.safetensors", &model).await;
    eventually(
        "the model listed in the edge",
        Duration::from_secs(60),
        || {
            let client = edge_clients[1].clone();
            async move {
                listed(client.as_ref(), "llama-3/model.safetensors")
                    .await
                    .then_some(())
            }
        },
    )
    .await;
    fully_warm(&admin, "models/llama-3/", model.len()).await;
    let warmer = edge.warming_node().await;
    let status = region_status(&warmer.admin);
    assert_eq!(
        status["warm_on_arrival"]["over_capacity"], false,
        "{status}"
    );
    assert!(
        metric(&warmer.admin, "ferry_warm_arrival_lag_seconds_count", "") >= 1.0,
        "the lag from the source's commit to fully warm is measured"
    );
    assert_eq!(
        edge.metric("ferry_warm_arrival_bytes_total", "how=\"loaded\""),
        model.len() as f64,
        "each block was loaded once, for the whole region"
    );

    // Reading it in the edge, on either node, sends nothing to the
    // source's bucket.
    let gets_before = origin_gets(&origin);
    for client in &edge_clients {
        assert!(read_all(client.as_ref(), "llama-3/model.safetensors").await == model);
    }
    assert_eq!(
        origin_gets(&origin),
        gets_before,
        "a warm model was read from the source's bucket"
    );

    // A write outside the prefix is not warmed. The arrivals are worked in
    // log order, so once a later write under the prefix is warm, the one
    // outside it has been passed over.
    put(
        source_client.as_ref(),
        "mistral/w.bin",
        &pattern(3, 8 * MIB),
    )
    .await;
    let tokenizer = pattern(4, 3 * MIB);
    put(source_client.as_ref(), "llama-3/tokenizer.json", &tokenizer).await;
    fully_warm(&admin, "models/llama-3/", model.len() + tokenizer.len()).await;
    let outside = warm_check(&admin, "models/mistral/");
    assert!(outside.contains("0.0% of 8388608 bytes"), "{outside}");

    // An overwrite warms the new version and evicts the old one's blocks
    // from the members that held them.
    let evicted_blocks = || {
        edge.metric(
            "ferry_peer_served_total",
            "verb=\"evict\",outcome=\"evicted\"",
        )
    };
    let evicted_before = (
        edge.metric("ferry_warm_arrival_evicted_bytes_total", ""),
        evicted_blocks(),
    );
    let model_v2 = pattern(9, 64 * MIB);
    put_multipart(
        source_client.as_ref(),
        "llama-3/model.safetensors",
        &model_v2,
    )
    .await;
    fully_warm(&admin, "models/llama-3/", model_v2.len() + tokenizer.len()).await;
    let evicted = edge.metric("ferry_warm_arrival_evicted_bytes_total", "") - evicted_before.0;
    assert_eq!(
        evicted,
        model.len() as f64,
        "every block of the old version was held somewhere and evicted"
    );
    let blocks = (model.len() / (4 * MIB)) as f64;
    assert!(
        evicted_blocks() - evicted_before.1 >= blocks,
        "each of the old version's {blocks} blocks left its owner"
    );
    let gets_before = origin_gets(&origin);
    for client in &edge_clients {
        assert!(read_all(client.as_ref(), "llama-3/model.safetensors").await == model_v2);
    }
    assert_eq!(
        origin_gets(&origin),
        gets_before,
        "the new version was warm"
    );

    // The edge owns no bucket: it refuses writes like any mirror.
    let refused = edge_clients[0]
        .put(&Path::from("llama-3/x"), Bytes::from_static(b"x").into())
        .await;
    assert!(refused.is_err(), "a write to the edge was accepted");
}

/// The source's collector deletes a replaced blob only once every mirror
/// has applied the change and the grace period has passed since: a
/// stream through a storeless edge that began before the overwrite and
/// the delete keeps reading the old blob from the source's bucket to its
/// last byte.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_blob_streamed_through_a_storeless_edge_is_not_deleted_under_it() {
    let origin_dir = temp_dir();
    let origin = Server::start(Launch::new(origin_dir.path()));
    create_bucket(&origin.endpoint, "central").await;
    let source_dir = temp_dir();
    let src = source(source_dir.path(), &origin, "4s");
    create_bucket(&src.endpoint, "models").await;
    let source_client = src.client("models");
    let edge_dir = temp_dir();
    // A small cache and short readahead: the stream's later blocks are
    // read from the source's bucket after the delete. The bucket is a warm
    // prefix, but holds more than this cache: it is not warmed.
    let edge = edge_node(
        edge_dir.path(),
        &origin,
        &src.admin,
        "[[region.warm]]\nprefix = \"models\"\n\n\
         [cache]\nmemory = \"8MiB\"\ndisk = \"0\"\nblock_size = \"1MiB\"\nreadahead = \"2MiB\"\n",
    );
    let edge_client = edge.client("models");

    let v1 = pattern(11, 48 * MIB);
    put(source_client.as_ref(), "m.bin", &v1).await;
    // The source's blobs, as objects of its bucket.
    let bucket = origin.client("central");
    let blob_files = || {
        let bucket = bucket.clone();
        async move {
            bucket
                .list(Some(&Path::from("ferry/blobs")))
                .collect::<Vec<_>>()
                .await
                .len()
        }
    };
    eventually("m.bin listed in the edge", Duration::from_secs(60), || {
        let client = edge_client.clone();
        async move { listed(client.as_ref(), "m.bin").await.then_some(()) }
    })
    .await;
    let v1_blobs = blob_files().await;
    assert!(v1_blobs >= 1);
    eventually(
        "warm on arrival stopped: the prefix is larger than the cache",
        Duration::from_secs(30),
        || async {
            let status = region_status(&edge.admin);
            (status["warm_on_arrival"]["over_capacity"] == true).then_some(())
        },
    )
    .await;
    assert_eq!(
        metric(&edge.admin, "ferry_warm_arrival_over_capacity", ""),
        1.0
    );
    assert!(
        metric(
            &edge.admin,
            "ferry_warm_arrival_objects_total",
            "outcome=\"skipped\""
        ) >= 1.0
    );
    assert_eq!(
        metric(&edge.admin, "ferry_warm_arrival_bytes_total", ""),
        0.0,
        "nothing was warmed"
    );

    // The stream starts; its reader takes the first MiB and holds on.
    let mut stream = edge_client
        .get(&Path::from("m.bin"))
        .await
        .expect("get through the edge")
        .into_stream();
    let mut got = Vec::with_capacity(v1.len());
    while got.len() < MIB {
        got.extend_from_slice(&stream.next().await.expect("first bytes").expect("read"));
    }

    // Overwritten, then deleted, at the source; the edge applies both.
    put(source_client.as_ref(), "m.bin", &pattern(12, 2 * MIB)).await;
    source_client
        .delete(&Path::from("m.bin"))
        .await
        .expect("delete at the source");
    eventually(
        "the delete applied in the edge",
        Duration::from_secs(30),
        || {
            let client = edge_client.clone();
            async move { (!listed(client.as_ref(), "m.bin").await).then_some(()) }
        },
    )
    .await;

    // The rest of the stream still comes from the source's bucket.
    let gets_at_delete = origin_gets(&origin);
    while let Some(chunk) = stream.next().await {
        got.extend_from_slice(&chunk.expect("the stream continues after the delete"));
    }
    assert!(
        got == v1,
        "the stream through the edge returned other bytes"
    );
    assert!(
        origin_gets(&origin) > gets_at_delete + 10.0,
        "the stream's later blocks were read from the source's bucket after the delete"
    );

    // And the collector does delete both versions' blobs once the grace
    // period has passed since the edge applied the change.
    eventually(
        "the old blobs deleted at the source",
        Duration::from_secs(60),
        || async { (blob_files().await == 0).then_some(()) },
    )
    .await;
}
