//! What Ferry's tests that start processes share: free loopback ports, the
//! URL of the shared test Redis, `redis-cli` against it, and private
//! `redis-server` processes on free ports, and test certificates.
//!
//! A dev-dependency only. The shared Redis is named by
//! `FERRY_TEST_REDIS_URL`, by default `redis://127.0.0.1:6379` (the one
//! `tests/run.sh` starts when none answers there).

mod certs;

pub use certs::{Issued, TestCa};

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The environment variable that names the shared test Redis.
pub const REDIS_URL_VAR: &str = "FERRY_TEST_REDIS_URL";

/// The shared test Redis when `FERRY_TEST_REDIS_URL` is unset or empty.
pub const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";

/// How long a private `redis-server` may take to answer its first PING.
const REDIS_START_LIMIT: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------
// Ports
// ---------------------------------------------------------------------------

/// A loopback port that is free now. Nothing holds it afterwards, so a
/// process started on it may (rarely) find it taken meanwhile.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

/// A loopback address with a port free now (for a server that must come
/// back on the same address after a restart).
pub fn free_addr() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").to_string()
}

// ---------------------------------------------------------------------------
// The shared test Redis
// ---------------------------------------------------------------------------

/// The URL of the shared test Redis (no persistence, shared by every test:
/// each test works under key names of its own and removes them).
pub fn redis_url() -> String {
    match std::env::var(REDIS_URL_VAR) {
        Ok(url) if !url.trim().is_empty() => url.trim().to_string(),
        _ => DEFAULT_REDIS_URL.to_string(),
    }
}

/// `redis-cli -u url args…`; panics only when redis-cli cannot be run.
pub fn redis_cli(url: &str, args: &[&str]) -> Output {
    Command::new("redis-cli")
        .args(["-u", url])
        .args(args)
        .output()
        .expect("run redis-cli")
}

/// The keys matching `pattern` (a SCAN MATCH pattern) in the Redis at `url`.
pub fn redis_keys(url: &str, pattern: &str) -> Vec<String> {
    let out = redis_cli(url, &["--scan", "--pattern", pattern]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

/// Deletes the keys matching `pattern` in the Redis at `url`.
pub fn delete_keys(url: &str, pattern: &str) {
    let keys = redis_keys(url, pattern);
    for chunk in keys.chunks(200) {
        let mut args = vec!["DEL"];
        args.extend(chunk.iter().map(String::as_str));
        redis_cli(url, &args);
    }
}

// ---------------------------------------------------------------------------
// Private redis-server processes
// ---------------------------------------------------------------------------

/// The certificate files of a TLS-only [`RedisServer`]. Clients are not
/// asked for certificates (`--tls-auth-clients no`).
#[derive(Clone, Debug)]
pub struct RedisTls {
    /// The server's certificate (for 127.0.0.1).
    pub cert: PathBuf,
    /// Its private key.
    pub key: PathBuf,
    /// The CA that signed `cert`; `redis-cli` trusts it for the PING.
    pub ca: PathBuf,
}

/// How to start a [`RedisServer`]; by default without persistence and
/// speaking plain TCP.
#[derive(Clone, Debug, Default)]
#[must_use = "a RedisOptions does nothing until `start`"]
pub struct RedisOptions {
    aof: bool,
    tls: Option<RedisTls>,
    cluster: bool,
}

impl RedisOptions {
    /// AOF on, fsynced on every write: what survives a SIGKILL is every
    /// acknowledged write, and Ferry opens it without `allow_volatile_redis`.
    pub fn aof(mut self) -> RedisOptions {
        self.aof = true;
        self
    }

    /// Cluster mode on (`--cluster-enabled yes`): a node for a
    /// [`RedisCluster`], serving no slot until the cluster is created.
    pub fn cluster_node(mut self) -> RedisOptions {
        self.cluster = true;
        self
    }

    /// TLS only: the plain port is off, the server's port speaks TLS.
    pub fn tls(mut self, tls: RedisTls) -> RedisOptions {
        self.tls = Some(tls);
        self
    }

    /// Starts the server on a free port with its files in a temporary
    /// folder of its own, and waits until it answers PING.
    pub fn start(self) -> RedisServer {
        let dir = tempfile::tempdir().expect("tempdir for redis-server");
        let mut server = RedisServer {
            child: None,
            port: free_port(),
            dir: dir.path().to_path_buf(),
            options: self,
            _dir: dir,
        };
        server.spawn();
        server
    }
}

/// A `redis-server` child process on a free loopback port, SIGKILLed on
/// drop. Its files (AOF, `redis.log`) are in a temporary folder that a
/// [`restart`](RedisServer::restart) keeps.
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
    options: RedisOptions,
    // Removed after the process is killed (fields drop after `drop`).
    _dir: tempfile::TempDir,
}

impl RedisServer {
    /// A server without persistence, ready.
    pub fn start() -> RedisServer {
        RedisOptions::default().start()
    }

    /// Options for a server with AOF or TLS: `RedisServer::options().aof().start()`.
    pub fn options() -> RedisOptions {
        RedisOptions::default()
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:PORT`, or `rediss://` for a TLS server.
    pub fn url(&self) -> String {
        let scheme = if self.options.tls.is_some() {
            "rediss"
        } else {
            "redis"
        };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// The folder of its files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The process id, for signals (SIGSTOP/SIGCONT); panics when killed.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("redis-server is running").id()
    }

    /// `redis-cli` against this server (over TLS for a TLS server).
    pub fn cli(&self, args: &[&str]) -> Output {
        let mut command = Command::new("redis-cli");
        command.args(["-h", "127.0.0.1", "-p", &self.port.to_string()]);
        if let Some(tls) = &self.options.tls {
            command.arg("--tls").arg("--cacert").arg(&tls.ca);
        }
        command.args(args).output().expect("run redis-cli")
    }

    /// SIGKILL: no chance to flush anything that is not already on disk.
    /// Nothing happens when it is not running.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("SIGKILL redis-server");
            child.wait().expect("wait redis-server");
        }
    }

    /// Starts it again on the same port and folder (after a SIGKILL when it
    /// still runs) and waits until it answers PING. With AOF it comes back
    /// with every write it acknowledged; without, empty.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// Starts `redis-server` and waits until it answers PING.
    fn spawn(&mut self) {
        let log_path = self.dir.join("redis.log");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .expect("redis log");
        let port = self.port.to_string();
        let mut command = Command::new("redis-server");
        command
            .args(["--bind", "127.0.0.1", "--daemonize", "no", "--save", ""])
            .arg("--dir")
            .arg(&self.dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log);
        match &self.options.tls {
            None => {
                command.args(["--port", &port]);
            }
            Some(tls) => {
                command
                    .args(["--port", "0", "--tls-port", &port])
                    .arg("--tls-cert-file")
                    .arg(&tls.cert)
                    .arg("--tls-key-file")
                    .arg(&tls.key)
                    .arg("--tls-ca-cert-file")
                    .arg(&tls.ca)
                    .args(["--tls-auth-clients", "no"]);
            }
        }
        if self.options.cluster {
            // The node's own state file, in its folder (`--dir`).
            command.args([
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
            ]);
        }
        if self.options.aof {
            command.args(["--appendonly", "yes", "--appendfsync", "always"]);
        } else {
            command.args(["--appendonly", "no"]);
        }
        self.child = Some(command.spawn().expect("spawn redis-server"));
        let deadline = Instant::now() + REDIS_START_LIMIT;
        loop {
            let pong = self.cli(&["PING"]);
            if String::from_utf8_lossy(&pong.stdout).trim() == "PONG" {
                return;
            }
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                self.child = None;
                let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                panic!("redis-server on port {port} exited with {status}: {log}");
            }
            assert!(
                Instant::now() < deadline,
                "redis-server on port {port} did not answer PING within {REDIS_START_LIMIT:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// How long a new Redis Cluster may take until every node serves every slot.
const CLUSTER_START_LIMIT: Duration = Duration::from_secs(60);

/// A Redis Cluster of three masters without replicas or persistence, each
/// a [`RedisServer`] on a free loopback port, joined with
/// `redis-cli --cluster create`; ready once every node reports
/// `cluster_state:ok`. The processes are killed on drop.
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
}

impl RedisCluster {
    pub fn start() -> RedisCluster {
        let nodes: Vec<RedisServer> = (0..3)
            .map(|_| RedisServer::options().cluster_node().start())
            .collect();
        let addresses: Vec<String> = nodes
            .iter()
            .map(|node| format!("127.0.0.1:{}", node.port()))
            .collect();
        let created = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addresses)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .expect("run redis-cli --cluster create");
        assert!(
            created.status.success(),
            "redis-cli --cluster create failed: {}{}",
            String::from_utf8_lossy(&created.stdout),
            String::from_utf8_lossy(&created.stderr)
        );
        let deadline = Instant::now() + CLUSTER_START_LIMIT;
        for node in &nodes {
            loop {
                let info = node.cli(&["CLUSTER", "INFO"]);
                if String::from_utf8_lossy(&info.stdout).contains("cluster_state:ok") {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "the redis cluster was not ok within {CLUSTER_START_LIMIT:?}"
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        RedisCluster { nodes }
    }

    /// The URL of one node; a cluster client finds the others from it.
    pub fn url(&self) -> String {
        self.nodes[0].url()
    }

    /// Every node, for checks that look at each.
    pub fn nodes(&self) -> &[RedisServer] {
        &self.nodes
    }
}
