//! The matrix's processes: three nodes sharing a Redis of their own, the
//! store behind a fault proxy, n2's peer port behind a link proxy; how
//! each fault is injected into them, and one phase of load around it.

use std::path::{Path as FsPath, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};

use crate::common::fault_proxy::{FaultProxy, LinkFault, LinkProxy, StoreFault};
use crate::common::{
    self, ACCESS_KEY, Launch, RedisServer, S3sFs, SECRET_KEY, Server, create_bucket, free_addr,
    pattern, s3s_fs_binary, signal, temp_dir, write_file,
};
use crate::load::{
    Model, OBJECT_SIZE, OBJECTS, Outcome, READERS, Tally, WRITE_SIZE, read_checked, reader,
    reader_client, writer,
};
use crate::{BUCKET, Fault, MIB, Row};

const ORIGIN_BUCKET: &str = "origin";
const SECRET: &str = "fault-matrix-cluster-secret";

/// One node of the matrix's cluster, restartable where clients expect it.
struct Node {
    server: Option<Server>,
    config: PathBuf,
    data: tempfile::TempDir,
    listen: String,
    admin_listen: String,
}

impl Node {
    /// `peer`: the address its peer port binds, and the one it
    /// advertises (a [`LinkProxy`] in front of it), when not any free port.
    fn start(dir: &FsPath, id: &str, redis: &str, store: &str, peer: Option<(&str, &str)>) -> Node {
        let peer_lines = match peer {
            Some((listen, advertise)) => {
                format!("peer_listen = \"{listen}\"\nadvertise = \"{advertise}\"")
            }
            None => "peer_listen = \"127.0.0.1:0\"".to_string(),
        };
        let data = temp_dir();
        let config = write_file(
            dir,
            &format!("{id}.toml"),
            &format!(
                r#"[server]
shutdown_grace = "1s"

[meta]
engine = "{redis}"
redis_prefix = "faults"

[stores.data]
url = "s3://{ORIGIN_BUCKET}/ferry"
endpoint = "{store}"
region = "us-east-1"
access_key_id = "{ACCESS_KEY}"
secret_access_key = "{SECRET_KEY}"
allow_http = true
max_retries = 3

[cache]
memory = "16MiB"
disk = "256MiB"
block_size = "1MiB"

[cluster]
node_id = "{id}"
name = "faults"
{peer_lines}
secret = "{SECRET}"
membership = "{redis}"
request_timeout = "2s"
"#
            ),
        );
        let mut node = Node {
            server: None,
            config,
            data,
            listen: free_addr(),
            admin_listen: free_addr(),
        };
        node.restart();
        node
    }

    fn restart(&mut self) {
        self.server = Some(Server::start(Launch {
            config: Some(&self.config),
            listen: Some(&self.listen),
            admin_listen: Some(&self.admin_listen),
            ..Launch::new(self.data.path())
        }));
    }

    fn server(&self) -> &Server {
        self.server.as_ref().expect("the node runs")
    }

    fn signal(&self, name: &str) {
        signal(self.server().pid(), name);
    }

    /// kill -9: no leave, no flush.
    fn kill(&mut self) {
        if let Some(server) = self.server.take() {
            signal(server.pid(), "KILL");
            drop(server);
        }
    }

    /// Overwrites spans of its disk cache's files with garbage, as a bad
    /// disk would; the count of spans written.
    fn corrupt_disk_cache(&self) -> usize {
        let mut spans = 0;
        for file in files_under(self.data.path()) {
            let Ok(meta) = std::fs::metadata(&file) else {
                continue;
            };
            // The cache's files are its big ones (the rest are small:
            // the node's identity, pins, the spool).
            if meta.len() < MIB as u64 {
                continue;
            }
            let Ok(mut handle) = std::fs::OpenOptions::new().write(true).open(&file) else {
                continue;
            };
            use std::io::{Seek, SeekFrom, Write};
            for i in 0..256u64 {
                let at = (i * 7919 * 4096) % meta.len();
                if handle.seek(SeekFrom::Start(at)).is_ok()
                    && handle.write_all(&[0xA5; 4096]).is_ok()
                {
                    spans += 1;
                }
            }
            let _ = handle.sync_all();
        }
        spans
    }
}

fn files_under(dir: &FsPath) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path);
        }
    }
    out
}

pub struct Rig {
    _dir: tempfile::TempDir,
    redis: RedisServer,
    _origin: S3sFs,
    proxy: FaultProxy,
    /// The network between n2 and its peers.
    link: LinkProxy,
    nodes: Vec<Node>,
}

impl Rig {
    pub async fn start() -> Rig {
        let dir = temp_dir();
        let redis = RedisServer::options().aof().start();
        let origin_root = dir.path().join("origin");
        std::fs::create_dir_all(origin_root.join(ORIGIN_BUCKET)).expect("origin bucket");
        let origin = S3sFs::start(&s3s_fs_binary(), &origin_root, (ACCESS_KEY, SECRET_KEY));
        let proxy = FaultProxy::start(&origin.endpoint).await;
        let n2_peer = free_addr();
        let link = LinkProxy::start(&n2_peer).await;
        let nodes: Vec<Node> = ["n0", "n1", "n2"]
            .iter()
            .map(|id| {
                let peer = (*id == "n2").then_some((n2_peer.as_str(), link.address.as_str()));
                Node::start(dir.path(), id, &redis.url(), &proxy.endpoint, peer)
            })
            .collect();
        for node in &nodes {
            common::cluster::wait_until("every node sees three members", || {
                common::cluster::members(&node.server().admin).len() == 3
            });
        }
        create_bucket(&nodes[0].server().endpoint, BUCKET).await;
        Rig {
            _dir: dir,
            redis,
            _origin: origin,
            proxy,
            link,
            nodes,
        }
    }

    /// One of the phase's models, uploaded through n0 (before the fault).
    async fn upload(&self, phase: usize, model: usize) -> Model {
        let client = self.nodes[0].server().client(BUCKET);
        let mut objects = Vec::new();
        for i in 0..OBJECTS {
            let key = format!("p{phase}/m{model}/shard-{i}.safetensors");
            let body = pattern((phase * 7 + model * OBJECTS + i) as u8, OBJECT_SIZE);
            client
                .put(&Path::from(key.as_str()), body.clone().into())
                .await
                .unwrap_or_else(|e| panic!("upload {key}: {e}"));
            objects.push((key, body));
        }
        objects
    }

    /// Injects `fault`; returns once it is removed again.
    async fn inject(&mut self, fault: Fault) {
        let pause = |seconds: u64| tokio::time::sleep(Duration::from_secs(seconds));
        match fault {
            Fault::NodeKilled => {
                self.nodes[2].kill();
                pause(5).await;
                // Waits for the ready line: off the runtime's threads.
                tokio::task::block_in_place(|| self.nodes[2].restart());
            }
            Fault::NodeStopped => {
                self.nodes[2].signal("STOP");
                pause(10).await;
                self.nodes[2].signal("CONT");
            }
            Fault::StoreFailing => {
                let before = self.proxy.counts().failed;
                self.proxy.set(StoreFault::FailShare(0.1));
                pause(10).await;
                self.proxy.set(StoreFault::None);
                assert!(
                    self.proxy.counts().failed > before,
                    "no store request failed"
                );
            }
            Fault::StoreOutage => {
                let before = self.proxy.counts().dropped;
                self.proxy.set(StoreFault::Down);
                pause(5).await;
                self.proxy.set(StoreFault::None);
                assert!(
                    self.proxy.counts().dropped > before,
                    "no store request met the outage"
                );
            }
            Fault::StoreSlow => {
                self.proxy.set(StoreFault::Slow(Duration::from_secs(2)));
                pause(10).await;
                self.proxy.set(StoreFault::None);
            }
            Fault::RedisRestarted => tokio::task::block_in_place(|| self.redis.restart()),
            Fault::RedisStalledShort | Fault::RedisStalled => {
                let seconds = if matches!(fault, Fault::RedisStalled) {
                    5
                } else {
                    2
                };
                signal(self.redis.pid(), "STOP");
                pause(seconds).await;
                signal(self.redis.pid(), "CONT");
            }
            Fault::LinkDegraded => {
                self.link.set(LinkFault::SlowAndLossy {
                    delay: Duration::from_millis(50),
                    cut_share: 0.1,
                });
                let (_, cut_before) = self.link.counts();
                pause(10).await;
                self.link.set(LinkFault::None);
                assert!(
                    self.link.counts().1 > cut_before,
                    "no peer connection to n2 was cut"
                );
            }
            Fault::CacheCorrupted => {
                let spans = self.nodes[0].corrupt_disk_cache();
                assert!(spans > 0, "n0 has no disk cache file to corrupt");
            }
        }
    }

    /// One phase: load, the fault, load after it; then every acknowledged
    /// write read back and the cluster reading again.
    pub async fn phase(&mut self, phase: usize, fault: Fault, load: Duration) -> Row {
        let models = Arc::new([self.upload(phase, 0).await, self.upload(phase, 1).await]);
        let cold_switch = !matches!(fault, Fault::CacheCorrupted);
        if !cold_switch {
            // Onto n0's disk first: the corruption must meet cached pages.
            let client = reader_client(&self.nodes[0].server().endpoint);
            for (key, body) in models[0].iter() {
                let outcome = read_checked(client.as_ref(), key, body, 0..body.len()).await;
                assert!(matches!(outcome, Outcome::Ok(_)), "warming {key}");
            }
        }
        let tally = Arc::new(Mutex::new(Tally::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let switched = Arc::new(AtomicBool::new(false));
        let serving: Vec<Arc<dyn ObjectStore>> = (0..2)
            .map(|i| reader_client(&self.nodes[i].server().endpoint))
            .collect();
        let mut tasks = Vec::new();
        for i in 0..READERS {
            tasks.push(tokio::spawn(reader(
                serving[i % 2].clone(),
                models.clone(),
                switched.clone(),
                tally.clone(),
                stop.clone(),
                (phase * READERS + i) as u64,
            )));
        }
        tasks.push(tokio::spawn(writer(
            serving.clone(),
            format!("p{phase}/writes"),
            tally.clone(),
            stop.clone(),
        )));
        tokio::time::sleep(load).await;
        switched.store(cold_switch, Ordering::Relaxed);
        self.inject(fault).await;
        let removed = Instant::now();
        tokio::time::sleep(load).await;
        stop.store(true, Ordering::Relaxed);
        for task in tasks {
            task.await.expect("a reader or the writer panicked");
        }
        let tally = std::mem::take(&mut *tally.lock().expect("tally"));

        // Reading again: one whole object through each serving node.
        for client in &serving {
            let (key, body) = &models[1][0];
            common::eventually(
                "the cluster reads again",
                Duration::from_secs(60),
                || async {
                    matches!(
                        read_checked(client.as_ref(), key, body, 0..body.len()).await,
                        Outcome::Ok(_)
                    )
                    .then_some(())
                },
            )
            .await;
        }
        // Every acknowledged write, byte for byte, through the other node.
        let mut lost = Vec::new();
        for (n, (key, seed)) in tally.acknowledged.iter().enumerate() {
            let body = pattern(*seed, WRITE_SIZE);
            let client = &serving[(n + 1) % 2];
            if !matches!(
                read_checked(client.as_ref(), key, &body, 0..body.len()).await,
                Outcome::Ok(_)
            ) {
                lost.push(key.clone());
            }
        }
        Row::of(fault, &tally, removed, lost)
    }
}
