//! The fleet `docker/fleet.yaml` describes, run as processes: Redis with
//! AOF, an S3 origin (a Ferry over a folder), three cluster nodes with
//! weights 100/200/300 speaking TLS (mutual TLS between peers) on Redis
//! metadata and membership, and a mirror region following the source over
//! https. Each process runs the compose file's own config from
//! `docker/fleet/`, with only the compose network's host names, ports and
//! paths replaced by this test's. Then a rolling restart of one node
//! under 16 streams of reads that must all succeed.

mod common;

use std::path::{Path as FsPath, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::tls::*;
use common::*;
use futures::StreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};

const MIB: usize = 1 << 20;
const CLUSTER_SECRET: &str = "fleet-cluster-secret-for-the-tests";
const FEED_SECRET: &str = "fleet-feed-secret-for-the-tests";
const ADMIN_TOKEN: &str = "fleet-admin-token-for-the-tests";
const FLEET_CONFIGS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../docker/fleet");

/// `docker/fleet/NAME.toml` with each `(from, to)` replaced, written into
/// `dir`. A `from` the file no longer holds fails the test, so the
/// template and this test cannot drift apart silently.
fn fleet_config(dir: &FsPath, name: &str, replace: &[(String, String)]) -> PathBuf {
    let template = format!("{FLEET_CONFIGS}/{name}.toml");
    let mut text =
        std::fs::read_to_string(&template).unwrap_or_else(|e| panic!("read {template}: {e}"));
    for (from, to) in replace {
        assert!(text.contains(from.as_str()), "{template} has no {from:?}");
        text = text.replace(from.as_str(), to);
    }
    write_file(dir, &format!("{name}.toml"), &text)
}

fn pair(from: &str, to: impl Into<String>) -> (String, String) {
    (from.to_string(), to.into())
}

/// What the compose file passes every node from the operator's
/// environment.
fn secrets_env() -> Vec<(&'static str, String)> {
    vec![
        ("FERRY_CLUSTER_SECRET", CLUSTER_SECRET.to_string()),
        ("FERRY_FEED_SECRET", FEED_SECRET.to_string()),
        ("FERRY_ADMIN_TOKEN", ADMIN_TOKEN.to_string()),
        // The origin's key: the store section of the configs has none.
        ("AWS_ACCESS_KEY_ID", ACCESS_KEY.to_string()),
        ("AWS_SECRET_ACCESS_KEY", SECRET_KEY.to_string()),
    ]
}

async fn wait_members(ca: &TestCa, admin: &str, want: usize) {
    eventually(
        &format!("{want} members seen by {admin}"),
        Duration::from_secs(60),
        || async { (member_ids(ca, admin).len() == want).then_some(()) },
    )
    .await;
}

/// One cache node: its config (from `docker/fleet/ferry-N.toml`), data
/// dir and S3 address stay the same across a restart.
struct Node {
    config: PathBuf,
    data: PathBuf,
    listen: String,
    server: Option<Server>,
}

impl Node {
    fn start(&mut self) {
        self.server = Some(Server::start(Launch {
            config: Some(&self.config),
            listen: Some(&self.listen),
            extra_env: secrets_env(),
            ..Launch::new(&self.data)
        }));
    }

    fn server(&self) -> &Server {
        self.server.as_ref().expect("the node runs")
    }
}

struct Fleet {
    dir: tempfile::TempDir,
    ca: TestCa,
    _redis: RedisServer,
    origin: Server,
    nodes: Vec<Node>,
}

impl Fleet {
    /// Redis, the origin with its bucket, and the three nodes, each
    /// seeing all three as members.
    async fn start() -> Fleet {
        let dir = temp_dir();
        let certs = dir.path().join("certs");
        let ca = TestCa::new(&certs, "fleet");
        let certs_prefix = format!("{}/", certs.display());
        let redis = RedisServer::options().aof().start();

        let origin_dir = dir.path().join("origin");
        std::fs::create_dir_all(&origin_dir).expect("mkdir");
        let origin_config = fleet_config(
            &origin_dir,
            "origin",
            &[pair(
                "file:///data/",
                format!("file://{}/", origin_dir.display()),
            )],
        );
        let origin = Server::start(Launch {
            config: Some(&origin_config),
            ..Launch::new(&origin_dir.join("data"))
        });
        create_bucket(&origin.endpoint, "central").await;

        let mut nodes = Vec::new();
        for i in 1..=3 {
            let name = format!("ferry-{i}");
            ca.issue(&name, &[&name, "localhost", "127.0.0.1"]);
            let node_dir = dir.path().join(&name);
            std::fs::create_dir_all(&node_dir).expect("mkdir");
            let peer_port = free_port();
            let config = fleet_config(
                &node_dir,
                &name,
                &[
                    pair("redis://redis:6379/0", redis.url()),
                    pair("http://origin:9000", origin.endpoint.clone()),
                    pair("0.0.0.0:9002", format!("127.0.0.1:{peer_port}")),
                    pair(
                        &format!("\"{name}:9002\""),
                        format!("\"localhost:{peer_port}\""),
                    ),
                    pair("/certs/", certs_prefix.clone()),
                ],
            );
            let mut node = Node {
                config,
                data: node_dir.join("data"),
                listen: free_addr(),
                server: None,
            };
            node.start();
            nodes.push(node);
        }
        for node in &nodes {
            assert!(node.server().endpoint.starts_with("https://"));
            wait_members(&ca, &node.server().admin, 3).await;
        }
        Fleet {
            dir,
            ca,
            _redis: redis,
            origin,
            nodes,
        }
    }

    fn client(&self, node: usize) -> Arc<dyn ObjectStore> {
        client_trusting(&self.nodes[node].server().endpoint, &self.ca, "models")
    }

    /// `n` objects of `size` (and a little more each) written through
    /// ferry-1.
    async fn write_objects(&self, n: usize, size: usize) -> Vec<(String, Vec<u8>)> {
        create_bucket_trusting(&self.nodes[0].server().endpoint, &self.ca, "models");
        let store = self.client(0);
        let mut objects = Vec::new();
        for i in 0..n {
            let key = format!("shards/{i}.bin");
            let body = pattern(i as u8, size + i * 1000);
            store
                .put(&Path::from(key.as_str()), Bytes::from(body.clone()).into())
                .await
                .expect("PUT");
            objects.push((key, body));
        }
        objects
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_fleet_serves_through_every_node_and_its_mirror() {
    let fleet = Fleet::start().await;
    let objects = fleet.write_objects(4, 9 * MIB).await;
    for node in 0..3 {
        let store = fleet.client(node);
        for (key, body) in &objects {
            assert!(
                read_all(store.as_ref(), key).await == *body,
                "{key} through ferry-{}",
                node + 1
            );
        }
    }
    let peer_answers: f64 = fleet
        .nodes
        .iter()
        .map(|n| {
            metric_trusting(
                &fleet.ca,
                &n.server().admin,
                "ferry_peer_requests_total",
                "outcome=\"ok\"",
            )
        })
        .sum();
    assert!(peer_answers > 0.0, "no block was served by a peer");
    // The blobs went to the origin (its folder), as the nodes' store says.
    assert!(
        files_under(&fleet.dir.path().join("origin").join("blobs")) >= objects.len(),
        "the origin's folder holds no blob"
    );

    // The mirror follows ferry-1's feed by the name its certificate holds.
    let mirror_dir = fleet.dir.path().join("mirror");
    std::fs::create_dir_all(&mirror_dir).expect("mkdir");
    fleet
        .ca
        .issue("mirror", &["mirror", "localhost", "127.0.0.1"]);
    let follow = fleet.nodes[0]
        .server()
        .admin
        .replace("127.0.0.1", "localhost");
    let config = fleet_config(
        &mirror_dir,
        "mirror",
        &[
            pair("http://origin:9000", fleet.origin.endpoint.clone()),
            pair("https://ferry-1:9001", follow),
            pair(
                "/certs/",
                format!("{}/", fleet.dir.path().join("certs").display()),
            ),
            pair("file:///data/", format!("file://{}/", mirror_dir.display())),
        ],
    );
    let mirror = Server::start(Launch {
        config: Some(&config),
        extra_env: secrets_env(),
        ..Launch::new(&mirror_dir.join("data"))
    });
    let reader = client_trusting(&mirror.endpoint, &fleet.ca, "models");
    for (key, body) in &objects {
        let got = eventually(
            &format!("the mirror serves {key}"),
            Duration::from_secs(60),
            || {
                let reader = reader.clone();
                async move {
                    let got = reader.get(&Path::from(key.as_str())).await.ok()?;
                    got.bytes().await.ok()
                }
            },
        )
        .await;
        assert!(
            got.as_ref() == body.as_slice(),
            "the mirror served other bytes of {key}"
        );
    }
}

fn files_under(dir: &FsPath) -> usize {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                files_under(&e.path())
            } else {
                1
            }
        })
        .sum()
}

/// What a reader asks for: a whole object, or a range across a block
/// boundary (blocks are 4 MiB).
fn read_plan(round: usize, len: usize) -> Option<std::ops::Range<usize>> {
    match round % 3 {
        0 => None,
        1 => Some(4 * MIB - 1000..(4 * MIB + 300_000).min(len)),
        _ => Some(len / 3..len - 17),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rolling_restart_under_load_fails_no_get() {
    let mut fleet = Fleet::start().await;
    let objects = Arc::new(fleet.write_objects(6, 6 * MIB).await);
    // Streams that will be in flight on ferry-3 when it is told to stop.
    let long: Vec<u8> = pattern(99, 24 * MIB + 5);
    fleet
        .client(0)
        .put(&Path::from("long.bin"), Bytes::from(long.clone()).into())
        .await
        .expect("PUT long.bin");

    // 16 readers through ferry-1 and ferry-2, which stay up.
    let stop = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    let mut readers = Vec::new();
    for task in 0..16 {
        let store = fleet.client(task % 2);
        let (objects, stop, reads, failures) = (
            objects.clone(),
            stop.clone(),
            reads.clone(),
            failures.clone(),
        );
        readers.push(tokio::spawn(async move {
            let mut round = task;
            while !stop.load(Ordering::Relaxed) {
                let (key, body) = &objects[round % objects.len()];
                let path = Path::from(key.as_str());
                let outcome = match read_plan(round, body.len()) {
                    None => match store.get(&path).await {
                        Ok(got) => got.bytes().await.map(|b| (b, 0..body.len())),
                        Err(e) => Err(e),
                    },
                    Some(range) => store
                        .get_range(&path, range.start as u64..range.end as u64)
                        .await
                        .map(|b| (b, range)),
                };
                match outcome {
                    Ok((got, range)) if got.as_ref() == &body[range.clone()] => {}
                    Ok((_, range)) => failures
                        .lock()
                        .expect("failures")
                        .push(format!("{key} {range:?}: wrong bytes")),
                    Err(e) => failures
                        .lock()
                        .expect("failures")
                        .push(format!("{key}: {e}")),
                }
                reads.fetch_add(1, Ordering::Relaxed);
                round += 1;
            }
        }));
    }
    let more_reads = |from: usize, what: &'static str| {
        let reads = reads.clone();
        async move {
            eventually(what, Duration::from_secs(120), || {
                let reads = reads.clone();
                async move { (reads.load(Ordering::Relaxed) >= from + 32).then_some(()) }
            })
            .await;
        }
    };
    more_reads(0, "reads before the restart").await;

    // Two whole reads of long.bin on ferry-3, each past its first bytes.
    let restarted = fleet.client(2);
    let mut in_flight = Vec::new();
    for _ in 0..2 {
        let got = restarted
            .get(&Path::from("long.bin"))
            .await
            .expect("GET long.bin on ferry-3");
        let mut stream = got.into_stream();
        let first = stream
            .next()
            .await
            .expect("a first chunk")
            .expect("the first chunk");
        in_flight.push((first.to_vec(), stream));
    }
    let pid = fleet.nodes[2].server().pid();
    signal_term(pid);
    for (mut received, mut stream) in in_flight {
        while let Some(chunk) = stream.next().await {
            received.extend_from_slice(&chunk.expect("a chunk after SIGTERM"));
        }
        assert!(
            received == long,
            "a stream in flight at SIGTERM was cut short or wrong"
        );
    }
    let server = fleet.nodes[2].server.take().expect("ferry-3");
    server.stop();
    wait_members(&fleet.ca, &fleet.nodes[0].server().admin, 2).await;
    more_reads(reads.load(Ordering::Relaxed), "reads while ferry-3 is down").await;

    // The same config and data dir: it serves again and is a member.
    fleet.nodes[2].start();
    for node in &fleet.nodes {
        wait_members(&fleet.ca, &node.server().admin, 3).await;
    }
    let ids = member_ids(&fleet.ca, &fleet.nodes[0].server().admin);
    assert!(ids.contains(&"ferry-3".to_string()), "{ids:?}");
    let (key, body) = &objects[0];
    assert!(read_all(fleet.client(2).as_ref(), key).await == *body);
    more_reads(reads.load(Ordering::Relaxed), "reads after the restart").await;

    stop.store(true, Ordering::Relaxed);
    for reader in readers {
        reader.await.expect("reader task");
    }
    let failures = failures.lock().expect("failures");
    assert!(
        failures.is_empty(),
        "{} of {} GETs failed: {:?}",
        failures.len(),
        reads.load(Ordering::Relaxed),
        &failures[..failures.len().min(10)]
    );
}
