//! The matrix's processes: three nodes sharing a Redis of their own, the
//! store behind a fault proxy, n2's peer port behind a link proxy; how
//! each fault is injected into them, and one phase of load around it.

use std::collections::BTreeMap;
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
use crate::disk::{FailurePoints, Tmpfs};
use crate::load::{
    Model, OBJECT_SIZE, OBJECTS, Outcome, READERS, Tally, WRITE_SIZE, read_checked, reader,
    reader_client, writer,
};
use crate::{BUCKET, Fault, MIB, Row};

const ORIGIN_BUCKET: &str = "origin";
const SECRET: &str = "fault-matrix-cluster-secret";
const FEED_SECRET: &str = "fault-matrix-feed-secret";
/// Small tiers with 1 MiB blocks: a model's shards span many blocks, and
/// a node's disk holds a few models.
const CACHE: &str = "[cache]\nmemory = \"16MiB\"\ndisk = \"256MiB\"\nblock_size = \"1MiB\"\n";
/// n1's cache folder: the disk's 256 MiB and room to spare.
const CACHE_TMPFS_MIB: u64 = 288;

/// The settings of a store over the origin bucket, through `endpoint`.
fn origin_store(endpoint: &str) -> String {
    format!(
        r#"url = "s3://{ORIGIN_BUCKET}/ferry"
endpoint = "{endpoint}"
region = "us-east-1"
access_key_id = "{ACCESS_KEY}"
secret_access_key = "{SECRET_KEY}"
allow_http = true
max_retries = 3
"#
    )
}

/// One node of the matrix's cluster, restartable where clients expect it.
pub struct Node {
    server: Option<Server>,
    config: PathBuf,
    env: Vec<(&'static str, String)>,
    /// Its cache folder's own filesystem, when it has one (unmounted
    /// after the server stops, before its data folder goes).
    pub cache_fs: Option<Tmpfs>,
    data: tempfile::TempDir,
    listen: String,
    pub admin_listen: String,
}

/// What sets one node apart from the others.
#[derive(Default)]
struct NodeSetup<'a> {
    /// The address its peer port binds, and the one it advertises (a
    /// [`LinkProxy`] in front of it), when not any free port.
    peer: Option<(&'a str, &'a str)>,
    /// Environment of its process (libfiu's preload).
    env: Vec<(&'static str, String)>,
    /// A tmpfs of this many MiB as its cache folder.
    cache_tmpfs_mib: Option<u64>,
}

impl Node {
    fn start(dir: &FsPath, id: &str, redis: &str, store: &str, setup: NodeSetup<'_>) -> Node {
        let peer_lines = match setup.peer {
            Some((listen, advertise)) => {
                format!("peer_listen = \"{listen}\"\nadvertise = \"{advertise}\"")
            }
            None => "peer_listen = \"127.0.0.1:0\"".to_string(),
        };
        let data = temp_dir();
        let cache_fs = setup
            .cache_tmpfs_mib
            .map(|mib| Tmpfs::mount(&data.path().join("cache"), mib));
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
{store}
{CACHE}
[cluster]
node_id = "{id}"
name = "faults"
{peer_lines}
secret = "{SECRET}"
membership = "{redis}"
request_timeout = "2s"

[region]
name = "central"
feed_secret = "{FEED_SECRET}"
"#
            ),
        );
        let mut node = Node {
            server: None,
            config,
            env: setup.env,
            cache_fs,
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
            extra_env: self.env.clone(),
            ..Launch::new(self.data.path())
        }));
    }

    pub fn server(&self) -> &Server {
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
    /// n0 runs with libfiu loaded: its disk can be made to fail.
    failure_points: FailurePoints,
    nodes: Vec<Node>,
    mirror: Mirror,
}

/// A mirror region of one gateway following the cluster (region
/// `central`) through a link proxy; its own embedded metadata and folder
/// store, falling back to the cluster's store for blobs not copied yet.
struct Mirror {
    server: Server,
    _data: tempfile::TempDir,
    /// The network between the mirror and its source.
    link: LinkProxy,
}

impl Mirror {
    async fn start(dir: &FsPath, source_admin: &str, store: &str) -> Mirror {
        let link = LinkProxy::start(source_admin).await;
        let data = temp_dir();
        let config = write_file(
            dir,
            "mirror.toml",
            &format!(
                r#"[server]
shutdown_grace = "1s"

[stores.data]
url = "file://{blobs}"
fallback = ["central"]

[stores.central]
{store}owned = false

{CACHE}
[region]
name = "edge-1"
follow = "http://{follow}"
feed_secret = "{FEED_SECRET}"
"#,
                blobs = data.path().join("blobs").display(),
                follow = link.address,
            ),
        );
        let server = tokio::task::block_in_place(|| {
            Server::start(Launch {
                config: Some(&config),
                ..Launch::new(&data.path().join("node"))
            })
        });
        Mirror {
            server,
            _data: data,
            link,
        }
    }

    /// Its follower's counters in one scrape: records applied, the
    /// position reached, resyncs, failed polls.
    fn follower(&self) -> FollowerCounters {
        let page = metrics_page(&self.server.admin);
        let read = |name| common::metric_in(&page, name, "");
        FollowerCounters {
            applied: read("ferry_mirror_changes_applied_total"),
            position: read("ferry_mirror_position"),
            resyncs: read("ferry_mirror_resyncs_total"),
            feed_errors: read("ferry_mirror_feed_errors_total"),
        }
    }

    /// The follower's counters once two scrapes in a row agree: it
    /// counts a record applied just before it moves its position, so a
    /// scrape between the two would be off by one.
    async fn follower_at_rest(&self) -> FollowerCounters {
        common::eventually(
            "the mirror's follower at rest",
            Duration::from_secs(30),
            || async {
                let (first, second) = (self.follower(), self.follower());
                (first == second).then_some(second)
            },
        )
        .await
    }

    /// Milliseconds since the source last answered the follower.
    fn silent_for_ms(&self) -> f64 {
        let status = tokio::task::block_in_place(|| {
            common::curl(&[&format!("{}/region/status", self.server.admin)])
        });
        assert_eq!(status.0, 200, "{}", status.1);
        let status: serde_json::Value = serde_json::from_str(&status.1).expect("status json");
        status["last_contact_ms"].as_f64().unwrap_or(f64::INFINITY)
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
struct FollowerCounters {
    applied: f64,
    position: f64,
    resyncs: f64,
    feed_errors: f64,
}

/// A node's `/metrics` page, fetched off the runtime's threads.
fn metrics_page(admin: &str) -> String {
    tokio::task::block_in_place(|| {
        let (status, text) = common::curl(&[&format!("{admin}/metrics")]);
        assert_eq!(status, 200, "metrics of {admin}");
        text
    })
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
        let failure_points = FailurePoints::new(dir.path());
        let store = origin_store(&proxy.endpoint);
        let nodes: Vec<Node> = tokio::task::block_in_place(|| {
            ["n0", "n1", "n2"]
                .iter()
                .map(|id| {
                    let setup = match *id {
                        "n0" => NodeSetup {
                            env: failure_points.env(),
                            ..NodeSetup::default()
                        },
                        "n1" => NodeSetup {
                            cache_tmpfs_mib: Some(CACHE_TMPFS_MIB),
                            ..NodeSetup::default()
                        },
                        _ => NodeSetup {
                            peer: Some((n2_peer.as_str(), link.address.as_str())),
                            ..NodeSetup::default()
                        },
                    };
                    Node::start(dir.path(), id, &redis.url(), &store, setup)
                })
                .collect()
        });
        for node in &nodes {
            common::cluster::wait_until("every node sees three members", || {
                common::cluster::members(&node.server().admin).len() == 3
            });
        }
        create_bucket(&nodes[0].server().endpoint, BUCKET).await;
        // The mirror reads the origin directly, not through the fault
        // proxy: the store faults are the cluster's, and the proxy's
        // counts show the cluster met them.
        let mirror = Mirror::start(
            dir.path(),
            &nodes[0].admin_listen,
            &origin_store(&origin.endpoint),
        )
        .await;
        Rig {
            _dir: dir,
            redis,
            _origin: origin,
            proxy,
            link,
            failure_points,
            nodes,
            mirror,
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

    /// Injects `fault`; returns once it is removed again, with what
    /// shows the fault was real. Panics when it was not.
    async fn inject(&mut self, fault: Fault) -> String {
        let pause = |seconds: u64| tokio::time::sleep(Duration::from_secs(seconds));
        match fault {
            Fault::NodeKilled => {
                let pid = self.nodes[2].server().pid();
                self.nodes[2].kill();
                pause(5).await;
                // Waits for the ready line: off the runtime's threads.
                tokio::task::block_in_place(|| self.nodes[2].restart());
                format!(
                    "n2 (pid {pid}) killed; back as pid {}",
                    self.nodes[2].server().pid()
                )
            }
            Fault::NodeStopped => {
                self.nodes[2].signal("STOP");
                pause(10).await;
                self.nodes[2].signal("CONT");
                "n2 stopped and continued".to_string()
            }
            Fault::StoreFailing => {
                let before = self.proxy.counts();
                self.proxy.set(StoreFault::FailShare(0.1));
                pause(10).await;
                self.proxy.set(StoreFault::None);
                let after = self.proxy.counts();
                let failed = after.failed - before.failed;
                assert!(failed > 0, "no store request failed");
                format!(
                    "{failed} of {} store requests answered 503",
                    failed + after.passed - before.passed
                )
            }
            Fault::StoreOutage => {
                let before = self.proxy.counts().dropped;
                self.proxy.set(StoreFault::Down);
                pause(5).await;
                self.proxy.set(StoreFault::None);
                let dropped = self.proxy.counts().dropped - before;
                assert!(dropped > 0, "no store request met the outage");
                format!("{dropped} store requests dropped")
            }
            Fault::StoreSlow => {
                let before = self.proxy.counts().passed;
                self.proxy.set(StoreFault::Slow(Duration::from_secs(2)));
                pause(10).await;
                self.proxy.set(StoreFault::None);
                let slowed = self.proxy.counts().passed - before;
                assert!(slowed > 0, "no store request met the slow store");
                format!("{slowed} store requests delayed 2 s")
            }
            Fault::RedisRestarted => {
                let pid = self.redis.pid();
                tokio::task::block_in_place(|| self.redis.restart());
                format!("Redis (pid {pid}) killed; back as pid {}", self.redis.pid())
            }
            Fault::RedisStalledShort | Fault::RedisStalled => {
                let seconds = if matches!(fault, Fault::RedisStalled) {
                    5
                } else {
                    2
                };
                signal(self.redis.pid(), "STOP");
                pause(seconds).await;
                signal(self.redis.pid(), "CONT");
                "Redis stopped and continued".to_string()
            }
            Fault::LinkDegraded => {
                let before = self.link.counts();
                self.link.set(LinkFault::SlowAndLossy {
                    delay: Duration::from_millis(50),
                    cut_every: 10,
                });
                pause(10).await;
                self.link.set(LinkFault::None);
                let after = self.link.counts();
                let cut = after.cut - before.cut;
                assert!(cut > 0, "no peer connection to n2 was cut");
                format!(
                    "{cut} of the {} connections to n2 that carried data cut",
                    after.lossy - before.lossy
                )
            }
            Fault::CacheCorrupted => {
                let spans = self.nodes[0].corrupt_disk_cache();
                assert!(spans > 0, "n0 has no disk cache file to corrupt");
                format!("{spans} spans of 4 KiB overwritten in n0's cache files")
            }
            Fault::DiskFailing => {
                let n0 = &self.nodes[0];
                let errors = || disk_errors(&n0.server().admin, "");
                let before = errors();
                let pid = n0.server().pid();
                tokio::task::block_in_place(|| self.failure_points.fail_disk_io(pid));
                pause(10).await;
                tokio::task::block_in_place(|| self.failure_points.heal_disk_io(pid));
                let seen = errors() - before;
                assert!(seen > 0.0, "n0 saw no error from its failing disk");
                format!("n0 counted {seen} errors of its disk")
            }
            Fault::DiskFull => {
                let n1 = &self.nodes[1];
                let full = || disk_errors(&n1.server().admin, "op=\"full\"");
                let before = full();
                let tmpfs = n1.cache_fs.as_ref().expect("n1's cache folder is a tmpfs");
                let filled = tokio::task::block_in_place(|| tmpfs.fill());
                pause(10).await;
                tokio::task::block_in_place(|| tmpfs.empty());
                let seen = full() - before;
                assert!(seen > 0.0, "n1 never found its disk full");
                format!(
                    "{} MiB written to fill n1's cache disk; n1 found it full",
                    filled / MIB as u64
                )
            }
            Fault::SourceUnreachable => {
                self.mirror.link.set(LinkFault::Silent);
                pause(30).await;
                let silent = self.mirror.silent_for_ms() / 1000.0;
                self.mirror.link.set(LinkFault::None);
                // Its long polls last 20 s: a follower that heard nothing
                // for longer did not reach its source.
                assert!(
                    silent > 20.0,
                    "the mirror heard from its source {silent:.1} s before the link came back"
                );
                format!("the mirror heard nothing from its source for {silent:.0} s")
            }
        }
    }

    /// One phase: load, the fault, load after it; then every acknowledged
    /// write read back and the cluster reading again.
    pub async fn phase(&mut self, phase: usize, fault: Fault, load: Duration) -> Row {
        let models = Arc::new([self.upload(phase, 0).await, self.upload(phase, 1).await]);
        // Faults of a node's disk must meet pages on it: n0 reads the
        // first model onto its disk, and the readers stay on that model.
        let on_n0_disk = matches!(fault, Fault::CacheCorrupted | Fault::DiskFailing);
        if on_n0_disk {
            let client = reader_client(&self.nodes[0].server().endpoint);
            for (key, body) in models[0].iter() {
                let outcome = read_checked(client.as_ref(), key, body, 0..body.len()).await;
                assert!(matches!(outcome, Outcome::Ok(_)), "warming {key}");
            }
        }
        let writing: Vec<Arc<dyn ObjectStore>> = (0..2)
            .map(|i| reader_client(&self.nodes[i].server().endpoint))
            .collect();
        let mut serving = writing.clone();
        let mirror = reader_client(&self.mirror.server.endpoint);
        let source_unreachable = matches!(fault, Fault::SourceUnreachable);
        let follower_before = if source_unreachable {
            // The mirror serves a third of the readers. It holds all the
            // source holds first, so its follower is at rest when its
            // counters are read.
            converged(writing[0].as_ref(), mirror.as_ref()).await;
            serving.push(mirror.clone());
            Some(self.mirror.follower_at_rest().await)
        } else {
            None
        };
        let tally = Arc::new(Mutex::new(Tally::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let switched = Arc::new(AtomicBool::new(false));
        let mut tasks = Vec::new();
        for i in 0..READERS {
            tasks.push(tokio::spawn(reader(
                serving[i % serving.len()].clone(),
                models.clone(),
                switched.clone(),
                tally.clone(),
                stop.clone(),
                (phase * READERS + i) as u64,
            )));
        }
        tasks.push(tokio::spawn(writer(
            writing.clone(),
            format!("p{phase}/writes"),
            tally.clone(),
            stop.clone(),
        )));
        tokio::time::sleep(load).await;
        switched.store(!on_n0_disk, Ordering::Relaxed);
        let mut evidence = self.inject(fault).await;
        let removed = Instant::now();
        // Back in touch, the mirror catches up with what the source
        // holds at that moment.
        let catching_up = if source_unreachable {
            let prefix = format!("p{phase}/");
            let source = writing[0].clone();
            let want = common::eventually("the source lists", Duration::from_secs(30), || {
                listing(source.as_ref(), &prefix)
            })
            .await;
            let mirror = mirror.clone();
            Some(tokio::spawn(async move {
                common::eventually(
                    "the mirror catches up with its source",
                    Duration::from_secs(120),
                    || async {
                        let have = listing(mirror.as_ref(), &prefix).await?;
                        want.iter()
                            .all(|(key, etag)| have.get(key) == Some(etag))
                            .then_some(())
                    },
                )
                .await;
                removed.elapsed()
            }))
        } else {
            None
        };
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
        // Every acknowledged write, byte for byte, through the node that
        // did not take it (and, in a mirror phase, through the mirror).
        let mut lost = Vec::new();
        let mut broken = Vec::new();
        if let Some(caught_up) = catching_up {
            let caught_up = caught_up.await.expect("the mirror caught up");
            converged(writing[0].as_ref(), mirror.as_ref()).await;
            let before = follower_before.expect("read before the load");
            // A record applied twice counts as applied without moving the
            // position (the source's sequence numbers have no gaps: each
            // is taken in the script that appends the record), so the two
            // never meet again; the wait covers a scrape between the two
            // updates.
            let balanced = common::eventually_or_none(Duration::from_secs(10), || async {
                let after = self.mirror.follower();
                (after.applied - before.applied == after.position - before.position)
                    .then_some(after)
            })
            .await;
            let after = balanced.unwrap_or_else(|| {
                let after = self.mirror.follower();
                broken.push(format!(
                    "the mirror applied {} records over {} positions",
                    after.applied - before.applied,
                    after.position - before.position
                ));
                after
            });
            if after.resyncs != before.resyncs {
                broken.push("the mirror resynced instead of catching up".to_string());
            }
            lost.extend(
                lost_writes(&tally.acknowledged, |_| &mirror)
                    .await
                    .into_iter()
                    .map(|key| format!("{key} (on the mirror)")),
            );
            evidence.push_str(&format!(
                "; {} failed polls; caught up {:.1} s after, {} records applied, none twice",
                after.feed_errors - before.feed_errors,
                caught_up.as_secs_f64(),
                after.applied - before.applied,
            ));
        }
        lost.extend(
            lost_writes(&tally.acknowledged, |took| {
                &writing[(took + 1) % writing.len()]
            })
            .await,
        );
        Row::of(fault, &tally, removed, lost, broken, evidence)
    }
}

/// The acknowledged writes that `reader_for(the node that took it)` does
/// not serve byte for byte.
async fn lost_writes<'a>(
    acknowledged: &[(String, u8, usize)],
    reader_for: impl Fn(usize) -> &'a Arc<dyn ObjectStore>,
) -> Vec<String> {
    let mut lost = Vec::new();
    for (key, seed, took) in acknowledged {
        let body = pattern(*seed, WRITE_SIZE);
        let client = reader_for(*took);
        if !matches!(
            read_checked(client.as_ref(), key, &body, 0..body.len()).await,
            Outcome::Ok(_)
        ) {
            lost.push(key.clone());
        }
    }
    lost
}

/// A node's count of its cache disks' errors, of series matching `filter`.
fn disk_errors(admin: &str, filter: &str) -> f64 {
    common::metric_in(
        &metrics_page(admin),
        "ferry_cache_disk_errors_total",
        filter,
    )
}

/// Every key under `prefix` with its ETag; `None` when the listing fails.
async fn listing(
    client: &dyn ObjectStore,
    prefix: &str,
) -> Option<BTreeMap<String, Option<String>>> {
    common::try_listing(client, prefix).await.ok()
}

/// Waits until `mirror` lists exactly what `source` lists.
async fn converged(source: &dyn ObjectStore, mirror: &dyn ObjectStore) {
    common::eventually(
        "the mirror lists what its source lists",
        Duration::from_secs(120),
        || async {
            let want = listing(source, "").await?;
            (listing(mirror, "").await? == want).then_some(())
        },
    )
    .await;
}
