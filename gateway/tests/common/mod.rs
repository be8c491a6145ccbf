//! Starting real `ferry serve` processes for end-to-end tests: port 0, a
//! temporary data dir, and the ready line on stdout as the only signal.
//! The helpers every crate's tests share (free ports, the test Redis,
//! private `redis-server`s) come from `ferry-test-support`, re-exported
//! here so a test file has one import.

#![allow(dead_code)]

pub mod cluster;
pub mod fault_proxy;
pub mod tls;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use object_store::ObjectStore;
use object_store::aws::AmazonS3Builder;

// Each test binary uses some of these; not one uses all.
#[allow(unused_imports)]
pub use ferry_test_support::{
    Issued, RedisCluster, RedisOptions, RedisServer, RedisTls, TestCa, delete_keys, free_addr,
    free_port, redis_cli, redis_keys, redis_url,
};

pub const ACCESS_KEY: &str = "test-admin";
pub const SECRET_KEY: &str = "test-admin-secret";

pub struct Server {
    child: Child,
    pub endpoint: String,
    pub admin: String,
    /// Lines printed to stdout before the ready line.
    pub banner: Vec<String>,
}

pub struct Launch<'a> {
    pub data_dir: &'a Path,
    pub config: Option<&'a Path>,
    /// Pass FERRY_ACCESS_KEY / FERRY_SECRET_KEY.
    pub env_credentials: bool,
    pub extra_env: Vec<(&'a str, String)>,
    /// The S3 listen address; default `127.0.0.1:0` (any free port). A
    /// fixed one lets a restarted server come back where clients expect it.
    pub listen: Option<&'a str>,
    /// The admin listen address; default `127.0.0.1:0`.
    pub admin_listen: Option<&'a str>,
}

impl<'a> Launch<'a> {
    pub fn new(data_dir: &'a Path) -> Launch<'a> {
        Launch {
            data_dir,
            config: None,
            env_credentials: true,
            extra_env: Vec::new(),
            listen: None,
            admin_listen: None,
        }
    }
}

pub fn ferry() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ferry"));
    // Nothing from the developer's shell leaks into a test's config.
    for (key, _) in std::env::vars() {
        if key.starts_with("FERRY_") {
            command.env_remove(key);
        }
    }
    command
}

impl Server {
    pub fn start(launch: Launch<'_>) -> Server {
        let mut command = ferry();
        command
            .arg("serve")
            .arg("--data-dir")
            .arg(launch.data_dir)
            .args(["--listen", launch.listen.unwrap_or("127.0.0.1:0")])
            .args([
                "--admin-listen",
                launch.admin_listen.unwrap_or("127.0.0.1:0"),
            ])
            .env("FERRY_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if let Some(config) = launch.config {
            command.arg("--config").arg(config);
        }
        if launch.env_credentials {
            command
                .env("FERRY_ACCESS_KEY", ACCESS_KEY)
                .env("FERRY_SECRET_KEY", SECRET_KEY);
        }
        for (key, value) in launch.extra_env {
            command.env(key, value);
        }
        let mut child = command.spawn().expect("spawn ferry");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let mut banner = Vec::new();
        loop {
            match rx.recv_timeout(Duration::from_secs(30)) {
                Ok(line) if line.starts_with("ferry ready ") => {
                    let field = |name: &str| {
                        line.split_whitespace()
                            .find_map(|w| w.strip_prefix(name))
                            .expect("ready line field")
                            .to_string()
                    };
                    return Server {
                        endpoint: field("s3="),
                        admin: field("admin="),
                        child,
                        banner,
                    };
                }
                Ok(line) => banner.push(line),
                Err(e) => {
                    let _ = child.kill();
                    panic!("ferry did not become ready: {e}; output so far: {banner:?}");
                }
            }
        }
    }

    pub fn client(&self, bucket: &str) -> Arc<dyn ObjectStore> {
        self.client_as(bucket, ACCESS_KEY, SECRET_KEY)
    }

    pub fn client_as(
        &self,
        bucket: &str,
        access_key: &str,
        secret_key: &str,
    ) -> Arc<dyn ObjectStore> {
        Arc::new(
            AmazonS3Builder::new()
                .with_endpoint(&self.endpoint)
                .with_allow_http(true)
                .with_region("us-east-1")
                .with_bucket_name(bucket)
                .with_access_key_id(access_key)
                .with_secret_access_key(secret_key)
                .with_virtual_hosted_style_request(false)
                .build()
                .expect("client"),
        )
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM and waits for the process to exit.
    pub fn stop(mut self) -> ExitStatus {
        signal_term(self.child.id());
        self.child.wait().expect("wait")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn signal_term(pid: u32) {
    signal(pid, "TERM");
}

/// Sends signal `name` (`TERM`, `KILL`, `STOP`, `CONT`) to `pid`.
pub fn signal(pid: u32, name: &str) {
    let status = Command::new("kill")
        .args([&format!("-{name}"), &pid.to_string()])
        .status()
        .expect("kill");
    assert!(status.success(), "kill -{name} {pid}");
}

pub fn temp_dir() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

pub fn write_file(dir: &Path, name: &str, contents: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, contents).expect("write");
    path
}

/// Creates a bucket with a raw signed request (object_store has no bucket API).
pub async fn create_bucket(endpoint: &str, bucket: &str) {
    let status = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-X",
            "PUT",
            "--aws-sigv4",
            "aws:amz:us-east-1:s3",
            "--user",
            &format!("{ACCESS_KEY}:{SECRET_KEY}"),
            "-H",
            "x-amz-content-sha256: UNSIGNED-PAYLOAD",
            &format!("{endpoint}/{bucket}"),
        ])
        .output()
        .expect("curl");
    let code = String::from_utf8_lossy(&status.stdout).to_string();
    assert_eq!(code, "200", "create bucket {bucket}");
}

pub fn pattern(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(131).wrapping_add(seed) ^ (i >> 12) as u8)
        .collect()
}

/// What a raw signed request got: curl's exit code, the HTTP status and
/// the body.
pub struct Answer {
    pub exit: Option<i32>,
    pub status: u16,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).to_string()
    }
}

/// A SigV4-signed request with curl, which checks the body against
/// Content-Length (exit code 18 for a short body).
pub fn signed_curl(
    endpoint: &str,
    (access_key, secret_key): (&str, &str),
    extra: &[&str],
    path: &str,
) -> Answer {
    let out_dir = temp_dir();
    let out = out_dir.path().join("body");
    let output = Command::new("curl")
        .args(["-s", "--max-time", "150", "-w", "%{http_code}", "-o"])
        .arg(&out)
        .args(extra)
        .args([
            "--aws-sigv4",
            "aws:amz:us-east-1:s3",
            "--user",
            &format!("{access_key}:{secret_key}"),
            "-H",
            "x-amz-content-sha256: UNSIGNED-PAYLOAD",
            &format!("{endpoint}{path}"),
        ])
        .output()
        .expect("curl");
    Answer {
        exit: output.status.code(),
        status: String::from_utf8_lossy(&output.stdout)
            .trim()
            .parse()
            .unwrap_or(0),
        body: std::fs::read(&out).unwrap_or_default(),
    }
}

/// The whole object `key` through an S3 client; panics naming the key.
pub async fn read_all(store: &dyn ObjectStore, key: &str) -> Vec<u8> {
    use object_store::ObjectStoreExt;
    store
        .get(&object_store::path::Path::from(key))
        .await
        .unwrap_or_else(|e| panic!("get {key}: {e}"))
        .bytes()
        .await
        .unwrap_or_else(|e| panic!("body of {key}: {e}"))
        .to_vec()
}

/// A plain GET (or what `args` ask for) with curl: the status and body.
pub fn curl(args: &[&str]) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-s", "--max-time", "20", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

/// The sum of a metric's series on a node whose lines contain `filter`.
pub fn metric(admin: &str, name: &str, filter: &str) -> f64 {
    let (status, text) = curl(&[&format!("{admin}/metrics")]);
    assert_eq!(status, 200, "metrics of {admin}");
    metric_in(&text, name, filter)
}

/// The sum of a metric's series in a Prometheus text page whose lines
/// contain `filter`.
pub fn metric_in(text: &str, name: &str, filter: &str) -> f64 {
    text.lines()
        .filter(|l| {
            l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']) && l.contains(filter)
        })
        .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()))
        .sum()
}

/// Every key under `prefix` with its ETag, or the first error listing met.
pub async fn try_listing(
    store: &dyn ObjectStore,
    prefix: &str,
) -> object_store::Result<std::collections::BTreeMap<String, Option<String>>> {
    use futures::StreamExt;
    let mut out = std::collections::BTreeMap::new();
    let mut items = store.list(Some(&object_store::path::Path::from(prefix)));
    while let Some(item) = items.next().await {
        let item = item?;
        out.insert(item.location.to_string(), item.e_tag);
    }
    Ok(out)
}

/// Polls `check` every 20 ms until it returns `Some`, for at most
/// `limit`; panics with `what` when it never does.
pub async fn eventually<T, F, Fut>(what: &str, limit: Duration, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    eventually_or_none(limit, check)
        .await
        .unwrap_or_else(|| panic!("{what}: not within {limit:?}"))
}

/// Polls `check` every 20 ms until it returns `Some`, for at most
/// `limit`; `None` when it never does.
pub async fn eventually_or_none<T, F, Fut>(limit: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = std::time::Instant::now() + limit;
    loop {
        if let Some(value) = check().await {
            return Some(value);
        }
        if std::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// s3s-fs, a plain S3 server over a folder, started on a free port.
pub struct S3sFs {
    child: Child,
    pub endpoint: String,
}

impl S3sFs {
    pub fn start(binary: &std::path::Path, root: &std::path::Path, key: (&str, &str)) -> S3sFs {
        for _ in 0..5 {
            let port = free_port();
            let mut child = Command::new(binary)
                .args(["--host", "127.0.0.1", "--port", &port.to_string()])
                .args(["--access-key", key.0, "--secret-key", key.1])
                .arg(root)
                .stdout(Stdio::null())
                .stderr(Stdio::inherit())
                .spawn()
                .unwrap_or_else(|e| panic!("spawn {}: {e}", binary.display()));
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return S3sFs {
                        child,
                        endpoint: format!("http://127.0.0.1:{port}"),
                    };
                }
                // Exited: most likely the port was taken meanwhile; try another.
                if child.try_wait().expect("try_wait").is_some() {
                    break;
                }
                assert!(Instant::now() < deadline, "s3s-fs did not listen on {port}");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        panic!("s3s-fs did not start");
    }
}

impl Drop for S3sFs {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn s3s_fs_binary() -> PathBuf {
    let Some(path) = std::env::var_os("FERRY_TEST_S3S_FS") else {
        panic!(
            "FERRY_TEST_S3S_FS is not set. This test needs s3s-fs as an independent S3 origin: \
             run tests/run.sh (it installs s3s-fs into .tools/ and sets the variable), or \
             `cargo install --locked s3s-fs@0.14.1 --features binary --root .tools` and \
             FERRY_TEST_S3S_FS=$PWD/.tools/bin/s3s-fs cargo test -p ferry-gateway --test s3_origin"
        );
    };
    let path = PathBuf::from(path);
    assert!(
        path.is_file(),
        "FERRY_TEST_S3S_FS={} is not a file; tests/run.sh installs s3s-fs",
        path.display()
    );
    path
}

/// A PUT of `len` bytes without a Content-Length (`curl -T -` sends it
/// `Transfer-Encoding: chunked`), authenticated by the curl arguments
/// `auth`: the status and body of the answer.
pub fn chunked_put(url: &str, auth: &[&str], len: usize) -> (u16, String) {
    let mut child = Command::new("curl")
        .args(["-s", "--max-time", "60", "-w", "\n%{http_code}", "-T", "-"])
        .args(auth)
        .arg(url)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("curl");
    let mut stdin = child.stdin.take().expect("stdin");
    let writer = std::thread::spawn(move || {
        let chunk = vec![7u8; 1 << 20];
        let mut left = len;
        while left > 0 {
            let n = left.min(chunk.len());
            // The node may answer and close before taking it all.
            if stdin.write_all(&chunk[..n]).is_err() {
                return;
            }
            left -= n;
        }
    });
    let out = child.wait_with_output().expect("curl output");
    let _ = writer.join();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

/// The current time as an HTTP date (what SigV2 signs).
pub fn httpdate_now() -> String {
    let out = Command::new("date")
        .env("LC_ALL", "C")
        .args(["-u", "+%a, %d %b %Y %H:%M:%S GMT"])
        .output()
        .expect("date");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}
