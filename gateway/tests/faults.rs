//! The fault matrix: three real `ferry serve` nodes sharing a Redis of
//! their own (AOF, fsynced on every write) for metadata and membership,
//! their data store a real S3 server (s3s-fs) behind a fault proxy, and
//! the network between one of them and its peers through a link proxy. For
//! each fault, 64 readers load models through two of the nodes (safetensors
//! headers, 16 MiB ranges, whole objects, every byte checked) and a writer
//! uploads, while the fault is injected and after it is removed. Each
//! phase uploads two models: the readers load the first before the fault
//! and switch to the second, never read yet, the moment it is injected,
//! so the fault meets a cold rollout (blocks fetched from owners and the
//! store) as well as warm reads. (A corrupted cache must meet cached
//! pages: that phase reads the first model throughout.)
//!
//! Counted per fault: GETs that succeeded, GETs that failed visibly (an
//! S3 error or an aborted body), GETs that returned wrong or short bytes
//! (must be none, ever), the p99 and worst stall (the longest wait for
//! the next bytes within one GET), and how long failures went on after
//! the fault was removed. Every write acknowledged during a fault is read
//! back byte for byte afterwards.
//!
//! Pass rules: a node killed or stopped, the store failing one request in
//! ten, and a Redis stall shorter than the metadata timeout (3 s) fail no
//! GET; the other faults fail only visibly. Every phase ends with the
//! cluster reading again.
//!
//! The test prints the matrix as a Markdown table. `FERRY_FAULT_SECONDS`
//! (default 4) is how long the load runs before each fault and after it;
//! `benches/faults.sh` runs the long form and keeps the table.

mod common;

use std::path::{Path as FsPath, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::fault_proxy::{FaultProxy, LinkFault, LinkProxy, StoreFault};
use common::{
    ACCESS_KEY, Launch, RedisServer, S3sFs, SECRET_KEY, Server, create_bucket, free_addr, pattern,
    s3s_fs_binary, signal, temp_dir, write_file,
};
use futures::StreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path;
use object_store::{ClientOptions, GetOptions, GetRange, ObjectStore, ObjectStoreExt, RetryConfig};

const MIB: usize = 1 << 20;
const BUCKET: &str = "models";
const ORIGIN_BUCKET: &str = "origin";
/// The objects each phase reads: a model's shards.
const OBJECTS: usize = 3;
const OBJECT_SIZE: usize = 24 * MIB;
const READERS: usize = 64;
const RANGE: usize = 16 * MIB;
const SECRET: &str = "fault-matrix-cluster-secret";

/// A model: its shards' keys and bytes.
type Model = Vec<(String, Vec<u8>)>;

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

/// A client that never retries: every failure the node answers is seen.
fn reader_client(endpoint: &str) -> Arc<dyn ObjectStore> {
    Arc::new(
        AmazonS3Builder::new()
            .with_endpoint(endpoint)
            .with_allow_http(true)
            .with_region("us-east-1")
            .with_bucket_name(BUCKET)
            .with_access_key_id(ACCESS_KEY)
            .with_secret_access_key(SECRET_KEY)
            .with_virtual_hosted_style_request(false)
            .with_retry(RetryConfig {
                max_retries: 0,
                ..RetryConfig::default()
            })
            .with_client_options(
                ClientOptions::new()
                    .with_allow_http(true)
                    .with_timeout(Duration::from_secs(60)),
            )
            .build()
            .expect("client"),
    )
}

/// What one phase's readers and writer saw.
#[derive(Default)]
struct Tally {
    ok: u64,
    failed: u64,
    /// GETs whose bytes differed from the object's, or that ended early
    /// without an error.
    wrong: u64,
    /// The longest wait for bytes within each GET.
    stalls: Vec<Duration>,
    last_failure: Option<Instant>,
    /// The first few failures, for the report.
    examples: Vec<String>,
    writes_ok: u64,
    writes_failed: u64,
    /// Acknowledged writes: key and the seed of its bytes.
    acknowledged: Vec<(String, u8)>,
}

impl Tally {
    fn failure(&mut self, what: String) {
        self.failed += 1;
        self.last_failure = Some(Instant::now());
        if self.examples.len() < 3 {
            self.examples.push(what);
        }
    }
}

/// How one GET ended.
enum Outcome {
    Ok(Duration),
    Failed(String),
    Wrong(String),
}

/// Reads `range` of `key` (whose bytes are `body`) as a stream, checking
/// every chunk against the object.
async fn read_checked(
    client: &dyn ObjectStore,
    key: &str,
    body: &[u8],
    range: std::ops::Range<usize>,
) -> Outcome {
    let started = Instant::now();
    let options = GetOptions {
        range: Some(GetRange::Bounded(range.start as u64..range.end as u64)),
        ..GetOptions::default()
    };
    let result = match client.get_opts(&Path::from(key), options).await {
        Ok(result) => result,
        Err(e) => return Outcome::Failed(format!("GET {key} {range:?}: {e}")),
    };
    let mut stream = result.into_stream();
    let mut at = range.start;
    let mut last = started;
    let mut stall = Duration::ZERO;
    while let Some(chunk) = stream.next().await {
        let now = Instant::now();
        stall = stall.max(now - last);
        last = now;
        let chunk = match chunk {
            Ok(chunk) => chunk,
            Err(e) => return Outcome::Failed(format!("GET {key} {range:?} at {at}: {e}")),
        };
        let end = at + chunk.len();
        if end > range.end || chunk[..] != body[at..end] {
            return Outcome::Wrong(format!("GET {key} {range:?}: wrong bytes at {at}"));
        }
        at = end;
    }
    if at != range.end {
        return Outcome::Wrong(format!(
            "GET {key} {range:?}: ended at {at} without an error"
        ));
    }
    Outcome::Ok(stall)
}

/// One reader's loop: a model load's mix of reads until `stop`.
async fn reader(
    client: Arc<dyn ObjectStore>,
    models: Arc<[Model; 2]>,
    switched: Arc<AtomicBool>,
    tally: Arc<Mutex<Tally>>,
    stop: Arc<AtomicBool>,
    seed: u64,
) {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut next = move || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 33) as usize
    };
    while !stop.load(Ordering::Relaxed) {
        // A GET that fails at once may not yield; the test's own timers
        // must still run.
        tokio::task::yield_now().await;
        let objects = &models[usize::from(switched.load(Ordering::Relaxed))];
        let (key, body) = &objects[next() % objects.len()];
        let kind = next() % 20;
        // The GETs of one step of a load, in order.
        let ranges: Vec<std::ops::Range<usize>> = if kind < 10 {
            // A safetensors header: its length, then the header itself.
            Vec::from([0..8, 8..8 + 64 * 1024])
        } else if kind < 17 {
            let start = next() % (body.len() - RANGE);
            std::iter::once(start..start + RANGE).collect()
        } else {
            std::iter::once(0..body.len()).collect()
        };
        for range in ranges {
            let outcome = read_checked(client.as_ref(), key, body, range).await;
            let mut tally = tally.lock().expect("tally");
            match outcome {
                Outcome::Ok(stall) => {
                    tally.ok += 1;
                    tally.stalls.push(stall);
                }
                Outcome::Failed(why) => {
                    if tally.failed < 3 {
                        eprintln!("faults: {why}");
                    }
                    tally.failure(why);
                    break;
                }
                Outcome::Wrong(why) => {
                    tally.wrong += 1;
                    tally.examples.push(why);
                    break;
                }
            }
        }
    }
}

/// Uploads small objects one after another until `stop`, noting which
/// were acknowledged.
async fn writer(
    clients: Vec<Arc<dyn ObjectStore>>,
    prefix: String,
    tally: Arc<Mutex<Tally>>,
    stop: Arc<AtomicBool>,
) {
    let mut n = 0usize;
    while !stop.load(Ordering::Relaxed) {
        let key = format!("{prefix}/w{n}");
        let seed = (n % 251) as u8;
        let client = &clients[n % clients.len()];
        let result = client
            .put(&Path::from(key.as_str()), pattern(seed, 256 * 1024).into())
            .await;
        let mut tally = tally.lock().expect("tally");
        match result {
            Ok(_) => {
                tally.writes_ok += 1;
                tally.acknowledged.push((key, seed));
            }
            Err(_) => tally.writes_failed += 1,
        }
        n += 1;
    }
}

/// A fault: how it is injected and removed, and whether GETs may fail.
#[derive(Clone, Copy)]
enum Fault {
    NodeKilled,
    NodeStopped,
    StoreFailing,
    StoreOutage,
    StoreSlow,
    RedisRestarted,
    RedisStalledShort,
    RedisStalled,
    CacheCorrupted,
    LinkDegraded,
}

impl Fault {
    fn name(self) -> &'static str {
        match self {
            Fault::NodeKilled => "a cache node killed -9, restarted after 5 s",
            Fault::NodeStopped => "a cache node SIGSTOPped for 10 s",
            Fault::StoreFailing => "the store failing 10 % of requests for 10 s",
            Fault::StoreOutage => "a 5 s store outage",
            Fault::StoreSlow => "the store answering in 2 s for 10 s",
            Fault::RedisRestarted => "Redis killed -9 and restarted",
            Fault::RedisStalledShort => "Redis SIGSTOPped for 2 s",
            Fault::RedisStalled => "Redis SIGSTOPped for 5 s",
            Fault::CacheCorrupted => "a serving node's disk cache overwritten in 256 places",
            Fault::LinkDegraded => {
                "the network to a node slow (50 ms a chunk) and lossy (10 % of connections cut) for 10 s"
            }
        }
    }

    /// Whether the pass rule allows failed GETs (visible ones only).
    fn may_fail_gets(self) -> bool {
        matches!(
            self,
            Fault::StoreOutage
                | Fault::StoreSlow
                | Fault::RedisRestarted
                | Fault::RedisStalled
                | Fault::CacheCorrupted
                | Fault::LinkDegraded
        )
    }
}

struct Rig {
    _dir: tempfile::TempDir,
    redis: RedisServer,
    _origin: S3sFs,
    proxy: FaultProxy,
    /// The network between n2 and its peers.
    link: LinkProxy,
    nodes: Vec<Node>,
}

impl Rig {
    async fn start() -> Rig {
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
    async fn phase(&mut self, phase: usize, fault: Fault, load: Duration) -> Row {
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
            let body = pattern(*seed, 256 * 1024);
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

/// One line of the matrix.
struct Row {
    fault: Fault,
    ok: u64,
    failed: u64,
    wrong: u64,
    p99_stall: Duration,
    worst_stall: Duration,
    /// Failures after the fault was removed: until when.
    recovery: Option<Duration>,
    writes_ok: u64,
    writes_failed: u64,
    lost: Vec<String>,
    examples: Vec<String>,
}

impl Row {
    fn of(fault: Fault, tally: &Tally, removed: Instant, lost: Vec<String>) -> Row {
        let mut stalls = tally.stalls.clone();
        stalls.sort();
        let p99 = stalls
            .get((stalls.len() * 99 / 100).min(stalls.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default();
        Row {
            fault,
            ok: tally.ok,
            failed: tally.failed,
            wrong: tally.wrong,
            p99_stall: p99,
            worst_stall: stalls.last().copied().unwrap_or_default(),
            recovery: tally
                .last_failure
                .map(|last| last.saturating_duration_since(removed)),
            writes_ok: tally.writes_ok,
            writes_failed: tally.writes_failed,
            lost,
            examples: tally.examples.clone(),
        }
    }

    fn markdown(&self) -> String {
        format!(
            "| {} | {} | {} | {} | {:.2} s | {:.2} s | {} | {} / {} | {} |",
            self.fault.name(),
            self.ok,
            self.failed,
            self.wrong,
            self.p99_stall.as_secs_f64(),
            self.worst_stall.as_secs_f64(),
            match self.recovery {
                None => "no failures".to_string(),
                Some(d) => format!("{:.1} s", d.as_secs_f64()),
            },
            self.writes_ok,
            self.writes_failed,
            self.lost.len(),
        )
    }

    /// What breaks the pass rule, if anything.
    fn broken(&self) -> Option<String> {
        let mut why = Vec::new();
        if self.wrong > 0 {
            why.push(format!("{} GETs returned wrong or short bytes", self.wrong));
        }
        if !self.lost.is_empty() {
            why.push(format!("acknowledged writes lost: {:?}", self.lost));
        }
        if self.failed > 0 && !self.fault.may_fail_gets() {
            why.push(format!("{} GETs failed", self.failed));
        }
        (!why.is_empty()).then(|| {
            format!(
                "{}: {} (first: {:?})",
                self.fault.name(),
                why.join("; "),
                self.examples
            )
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_survives_each_fault_of_the_matrix() {
    let load = Duration::from_secs(
        std::env::var("FERRY_FAULT_SECONDS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(4),
    );
    let mut rig = Rig::start().await;
    let faults = [
        Fault::NodeKilled,
        Fault::NodeStopped,
        Fault::StoreFailing,
        Fault::StoreOutage,
        Fault::StoreSlow,
        Fault::RedisRestarted,
        Fault::RedisStalledShort,
        Fault::RedisStalled,
        Fault::LinkDegraded,
        Fault::CacheCorrupted,
    ];
    let mut rows = Vec::new();
    for (phase, fault) in faults.into_iter().enumerate() {
        let row = rig.phase(phase, fault, load).await;
        eprintln!("{}", row.markdown());
        rows.push(row);
    }
    let mut table = String::from(
        "| fault | GETs ok | GETs failed (visibly) | wrong or short | p99 stall | worst stall | failures until, after removal | writes ok / failed | acknowledged writes lost |\n|---|---|---|---|---|---|---|---|---|\n",
    );
    for row in &rows {
        table.push_str(&row.markdown());
        table.push('\n');
    }
    println!("{table}");
    if let Ok(path) = std::env::var("FERRY_FAULT_REPORT") {
        std::fs::write(&path, &table).expect("write the report");
    }
    let broken: Vec<String> = rows.iter().filter_map(Row::broken).collect();
    assert!(broken.is_empty(), "{}\n{table}", broken.join("\n"));
}
