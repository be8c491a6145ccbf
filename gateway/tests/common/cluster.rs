//! A cache cluster for end-to-end tests: real `ferry serve` processes on
//! loopback sharing one data store (a folder), the test Redis for
//! metadata and membership, each cluster under names of its own.

use std::path::{Path as FsPath, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};

use super::{Launch, Server, curl, delete_keys, metric, redis_url, temp_dir};

pub const MIB: usize = 1 << 20;
pub const SECRET: &str = "cluster-secret-for-the-tests";
pub const TOKEN: &str = "admin-token-for-the-tests";

/// Names this test's cluster, metadata prefix and bucket.
pub fn unique(what: &str) -> String {
    format!(
        "{what}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

pub struct Spec<'a> {
    pub cluster: &'a str,
    pub store: &'a FsPath,
    pub id: &'a str,
    pub weight: u32,
    pub block_size: &'a str,
    pub extra_cluster: &'a str,
    /// The membership Redis (default: the shared test one, `redis_url()`).
    pub membership: Option<&'a str>,
    /// Lines added to `[cache]`.
    pub extra_cache: &'a str,
    /// The memory tier (default 96 MiB).
    pub memory: Option<&'a str>,
}

pub fn config(spec: &Spec<'_>, dir: &FsPath) -> PathBuf {
    let text = format!(
        r#"[server]
shutdown_grace = "1s"

[meta]
engine = "{redis}"
redis_prefix = "{cluster}"
allow_volatile_redis = true

[stores.data]
url = "file://{store}"

[cache]
memory = "{memory}"
disk = "128MiB"
block_size = "{block_size}"
{extra_cache}

[cluster]
node_id = "{id}"
name = "{cluster}"
peer_listen = "127.0.0.1:0"
weight = {weight}
secret = "{SECRET}"
membership = "{membership}"
{extra}

[admin]
token = "{TOKEN}"
"#,
        cluster = spec.cluster,
        store = spec.store.display(),
        block_size = spec.block_size,
        id = spec.id,
        weight = spec.weight,
        extra = spec.extra_cluster,
        redis = redis_url(),
        membership = spec.membership.map_or_else(redis_url, str::to_string),
        extra_cache = spec.extra_cache,
        memory = spec.memory.unwrap_or("96MiB"),
    );
    let path = dir.join(format!("{}.toml", spec.id));
    std::fs::write(&path, text).expect("write config");
    path
}

pub struct Node {
    pub id: String,
    pub server: Option<Server>,
    pub data: tempfile::TempDir,
    pub config: PathBuf,
}

impl Node {
    pub fn start(spec: &Spec<'_>) -> Node {
        let data = temp_dir();
        let config = config(spec, data.path());
        let server = Server::start(Launch {
            config: Some(&config),
            ..Launch::new(data.path())
        });
        Node {
            id: spec.id.to_string(),
            server: Some(server),
            data,
            config,
        }
    }

    pub fn server(&self) -> &Server {
        self.server.as_ref().expect("node is running")
    }

    pub fn restart(&mut self) {
        self.server = Some(Server::start(Launch {
            config: Some(&self.config),
            ..Launch::new(self.data.path())
        }));
    }

    /// kill -9: no leave, no flush; peers find out by failing.
    pub fn kill(&mut self) {
        if let Some(server) = self.server.take() {
            let _ = Command::new("kill")
                .args(["-KILL", &server.pid().to_string()])
                .status();
            // Reaps it.
            drop(server);
        }
    }

    pub fn client(&self, bucket: &str) -> Arc<dyn ObjectStore> {
        self.server().client(bucket)
    }

    pub fn admin(&self) -> String {
        self.server().admin.clone()
    }
}

pub struct TestCluster {
    pub name: String,
    pub store: tempfile::TempDir,
    pub nodes: Vec<Node>,
}

impl TestCluster {
    pub fn start(weights: &[u32]) -> TestCluster {
        TestCluster::start_with(weights, "")
    }

    /// With `extra` lines in every node's `[cluster]`.
    pub fn start_with(weights: &[u32], extra: &str) -> TestCluster {
        TestCluster::start_configured(weights, extra, "", None)
    }

    /// With `extra` lines in `[cluster]`, `extra_cache` in `[cache]`, and
    /// a memory tier of `memory` (default 96 MiB).
    pub fn start_configured(
        weights: &[u32],
        extra: &str,
        extra_cache: &str,
        memory: Option<&str>,
    ) -> TestCluster {
        let name = unique("cl");
        let store = temp_dir();
        let nodes = weights
            .iter()
            .enumerate()
            .map(|(i, &weight)| {
                Node::start(&Spec {
                    cluster: &name,
                    store: store.path(),
                    id: &format!("n{i}"),
                    weight,
                    block_size: "1MiB",
                    extra_cluster: extra,
                    membership: None,
                    extra_cache,
                    memory,
                })
            })
            .collect();
        let cluster = TestCluster { name, store, nodes };
        cluster.wait_for_members(weights.len());
        cluster
    }

    /// Polls every running node's view until it has `n` members.
    pub fn wait_for_members(&self, n: usize) {
        for node in self.nodes.iter().filter(|n| n.server.is_some()) {
            wait_until(&format!("{} sees {n} members", node.id), || {
                members(&node.admin()).len() == n
            });
        }
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        // The metadata and membership keys of this test, gone.
        for pattern in [
            format!("{}:*", self.name),
            format!("ferry-cluster:{}:*", self.name),
        ] {
            delete_keys(&redis_url(), &pattern);
        }
    }
}

pub fn wait_until(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// (id, weight, address) of each member in a node's view.
pub fn members(admin: &str) -> Vec<(String, u64, String)> {
    let (status, body) = curl(&[&format!("{admin}/cluster/status")]);
    if status != 200 {
        return Vec::new();
    }
    let value: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    value["members"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| {
            (
                m["id"].as_str().unwrap_or_default().to_string(),
                m["weight"].as_u64().unwrap_or(0),
                m["address"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

pub fn store_reads(cluster: &TestCluster) -> f64 {
    cluster
        .nodes
        .iter()
        .filter(|n| n.server.is_some())
        .map(|n| metric(&n.admin(), "ferry_store_get_requests_total", ""))
        .sum()
}

pub async fn put(store: &dyn ObjectStore, key: &str, body: &[u8]) {
    store
        .put(&Path::from(key), Bytes::copy_from_slice(body).into())
        .await
        .unwrap_or_else(|e| panic!("put {key}: {e}"));
}

pub async fn get(store: &dyn ObjectStore, key: &str) -> Vec<u8> {
    super::read_all(store, key).await
}
