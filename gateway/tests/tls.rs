//! TLS on every listener, with certificates made in the test: the S3 port
//! over HTTP/2 and HTTP/1.1, a certificate replaced and reloaded under a
//! stream in flight, bad files refused at start naming the field, a
//! cluster whose peers speak mutual TLS (a certificate from another CA is
//! refused), and a cluster switched to TLS one node at a time.

mod common;

use std::path::Path as FsPath;
use std::process::{Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use common::tls::*;
use common::*;
use object_store::ObjectStoreExt;
use object_store::path::Path;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

const MIB: usize = 1 << 20;
const SECRET: &str = "cluster-secret-for-the-tls-tests";

fn unique(what: &str) -> String {
    format!(
        "{what}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

/// The `[tls]` section for `issued`, trusting `ca`.
fn tls_section(issued: &Issued, ca: &TestCa, peer_client_auth: bool) -> String {
    format!(
        "[tls]\ncert_file = \"{}\"\nkey_file = \"{}\"\nca_file = \"{}\"\npeer_client_auth = {peer_client_auth}\n",
        issued.cert.display(),
        issued.key.display(),
        ca.cert.display()
    )
}

fn start_node(dir: &FsPath, config: &str) -> Server {
    let path = write_file(dir, "ferry.toml", config);
    Server::start(Launch {
        config: Some(&path),
        ..Launch::new(dir)
    })
}

/// The certificate a new connection to `url` is shown.
async fn served_certificate(url: &str, ca: &TestCa) -> Vec<u8> {
    let pem = std::fs::read(&ca.cert).expect("read the CA");
    let http = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&pem).expect("CA")])
        .tls_info(true)
        .build()
        .expect("client");
    let response = http.get(url).send().await.expect("GET over TLS");
    response
        .extensions()
        .get::<reqwest::tls::TlsInfo>()
        .and_then(|info| info.peer_certificate().map(<[u8]>::to_vec))
        .expect("the peer's certificate")
}

fn der_of(pem_file: &FsPath) -> Vec<u8> {
    CertificateDer::from_pem_file(pem_file)
        .expect("PEM certificate")
        .to_vec()
}

#[tokio::test]
async fn the_s3_port_speaks_tls_over_http2_and_http1() {
    let dir = temp_dir();
    let ca = TestCa::new(&dir.path().join("certs"), "test");
    let issued = ca.issue("node", &["localhost", "127.0.0.1"]);
    let server = start_node(dir.path(), &tls_section(&issued, &ca, false));
    assert!(
        server.endpoint.starts_with("https://"),
        "{}",
        server.endpoint
    );
    assert!(server.admin.starts_with("https://"), "{}", server.admin);

    create_bucket_trusting(&server.endpoint, &ca, "models");
    let store = client_trusting(&server.endpoint, &ca, "models");
    let body = pattern(3, 3 * MIB + 17);
    store
        .put(&Path::from("w.bin"), Bytes::from(body.clone()).into())
        .await
        .expect("PUT over TLS");
    assert_eq!(read_all(store.as_ref(), "w.bin").await, body);

    // ALPN: HTTP/2 when the client offers it, HTTP/1.1 when it asks for it.
    let health = format!("{}/health", server.admin);
    let (_, version) = curl_trusting(&ca, &["--http2", "-w", "%{http_version}", &health]);
    assert_eq!(version, "2");
    let (_, version) = curl_trusting(&ca, &["--http1.1", "-w", "%{http_version}", &health]);
    assert_eq!(version, "1.1");
    // Plain HTTP is not answered on a TLS port.
    let plain = server.endpoint.replace("https://", "http://");
    let (status, _) = curl(&[&format!("{plain}/models/w.bin")]);
    assert_ne!(status, 200);
    // The health check the container image runs, over TLS.
    let health_check = |ca_file: Option<&FsPath>| {
        let mut command = ferry();
        command.args(["health", "--admin", &server.admin]);
        if let Some(ca_file) = ca_file {
            command.arg("--ca-file").arg(ca_file);
        }
        command.output().expect("run ferry health").status.code()
    };
    assert_eq!(health_check(Some(&ca.cert)), Some(0));
    assert_eq!(
        health_check(None),
        Some(1),
        "an untrusted certificate passed"
    );
    // A client that does not trust the CA is refused by its own check.
    let out = Command::new("curl")
        .args(["-s", "-o", "/dev/null", &health])
        .status()
        .expect("curl");
    assert_eq!(
        out.code(),
        Some(60),
        "curl: peer certificate cannot be authenticated"
    );
}

#[tokio::test]
async fn a_replaced_certificate_is_reloaded_without_dropping_a_stream_in_flight() {
    let dir = temp_dir();
    let ca = TestCa::new(&dir.path().join("certs"), "test");
    let first = ca.issue("node", &["localhost", "127.0.0.1"]);
    let first_der = der_of(&first.cert);
    let server = start_node(dir.path(), &tls_section(&first, &ca, false));
    create_bucket_trusting(&server.endpoint, &ca, "models");
    let store = client_trusting(&server.endpoint, &ca, "models");
    let body = pattern(9, 48 * MIB);
    store
        .put(&Path::from("big.bin"), Bytes::from(body.clone()).into())
        .await
        .expect("PUT");
    let health = format!("{}/health", server.admin);
    assert_eq!(served_certificate(&health, &ca).await, first_der);

    // A stream in flight on the first certificate: its first bytes read.
    let mut stream = store
        .get(&Path::from("big.bin"))
        .await
        .expect("GET")
        .into_stream();
    let mut got = Vec::with_capacity(body.len());
    use futures::StreamExt;
    let chunk = stream.next().await.expect("a first chunk").expect("bytes");
    got.extend_from_slice(&chunk);

    // The files replaced in place (as a renewal tool does), then SIGHUP.
    let second = ca.issue("node", &["localhost", "127.0.0.1"]);
    let second_der = der_of(&second.cert);
    assert_ne!(first_der, second_der);
    hangup(server.pid());
    eventually(
        "new connections get the new certificate",
        Duration::from_secs(20),
        || async { (served_certificate(&health, &ca).await == second_der).then_some(()) },
    )
    .await;

    // The stream on the old certificate completes, byte for byte.
    while let Some(chunk) = stream.next().await {
        got.extend_from_slice(&chunk.expect("the stream survives the reload"));
    }
    assert_eq!(got.len(), body.len());
    assert!(got == body, "the streamed bytes differ");

    // A bad file at reload keeps the current certificate.
    let failed = |ca: &TestCa| {
        metric_trusting(
            ca,
            &server.admin,
            "ferry_tls_reloads_total",
            "result=\"failed\"",
        )
    };
    let failed_before = failed(&ca);
    std::fs::write(&second.cert, "not a certificate").expect("break the file");
    hangup(server.pid());
    eventually(
        "the failed reload is counted",
        Duration::from_secs(20),
        || async { (failed(&ca) > failed_before).then_some(()) },
    )
    .await;
    assert_eq!(served_certificate(&health, &ca).await, second_der);
}

fn hangup(pid: u32) {
    let status = Command::new("kill")
        .args(["-HUP", &pid.to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
}

#[test]
fn a_missing_or_bad_certificate_file_stops_the_start_naming_the_field() {
    let dir = temp_dir();
    let ca = TestCa::new(&dir.path().join("certs"), "test");
    let issued = ca.issue("node", &["localhost"]);
    let other = ca.issue("other", &["localhost"]);
    let missing = dir.path().join("nowhere.crt");
    let cases = [
        (
            format!(
                "[tls]\ncert_file = \"{}\"\nkey_file = \"{}\"\n",
                missing.display(),
                issued.key.display()
            ),
            vec!["tls.cert_file".to_string(), missing.display().to_string()],
        ),
        (
            format!(
                "[tls]\ncert_file = \"{}\"\nkey_file = \"{}\"\n",
                issued.cert.display(),
                other.key.display()
            ),
            vec![
                "tls.key_file".to_string(),
                other.key.display().to_string(),
                "does not match".to_string(),
            ],
        ),
        (
            format!(
                "[tls]\ncert_file = \"{}\"\nkey_file = \"{}\"\nca_file = \"{}\"\n",
                issued.cert.display(),
                issued.key.display(),
                issued.key.display()
            ),
            vec!["tls.ca_file".to_string()],
        ),
        (
            format!("[tls]\ncert_file = \"{}\"\n", issued.cert.display()),
            vec!["tls.key_file".to_string()],
        ),
    ];
    for (config, expected) in cases {
        let path = write_file(dir.path(), "bad.toml", &config);
        let out = ferry()
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--admin-listen",
                "127.0.0.1:0",
            ])
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .arg("--config")
            .arg(&path)
            .env("FERRY_ACCESS_KEY", ACCESS_KEY)
            .env("FERRY_SECRET_KEY", SECRET_KEY)
            .stdout(Stdio::null())
            .output()
            .expect("run ferry");
        assert!(!out.status.success(), "started with {config}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        for part in &expected {
            assert!(stderr.contains(part.as_str()), "{part:?} not in {stderr}");
        }
    }
}

/// A node of a cluster test: its own data dir, the shared store folder,
/// Redis membership under the test's cluster name.
struct ClusterNode {
    server: Server,
    _data: tempfile::TempDir,
}

fn cluster_node(cluster: &str, store: &FsPath, id: &str, weight: u32, tls: &str) -> ClusterNode {
    let data = temp_dir();
    let config = format!(
        r#"[server]
shutdown_grace = "1s"

[meta]
engine = "{redis}"
redis_prefix = "{cluster}"
allow_volatile_redis = true

[stores.data]
url = "file://{store}"

[cache]
memory = "64MiB"
disk = "0"
block_size = "1MiB"

[cluster]
node_id = "{id}"
name = "{cluster}"
peer_listen = "127.0.0.1:0"
weight = {weight}
secret = "{SECRET}"
membership = "{redis}"

{tls}
"#,
        redis = redis_url(),
        store = store.display(),
    );
    let server = start_node(data.path(), &config);
    ClusterNode {
        server,
        _data: data,
    }
}

struct Cleanup(String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        for pattern in [
            format!("{}:*", self.0),
            format!("ferry-cluster:{}:*", self.0),
        ] {
            delete_keys(&redis_url(), &pattern);
        }
    }
}

/// Reads every object through every node and checks the bytes; returns
/// the peer answers the nodes received.
async fn read_everything_everywhere(
    nodes: &[&ClusterNode],
    ca: &TestCa,
    objects: &[(String, Vec<u8>)],
) {
    for node in nodes {
        let store = client_trusting(&node.server.endpoint, ca, "models");
        for (key, body) in objects {
            assert!(
                read_all(store.as_ref(), key).await == *body,
                "{key} through {}",
                node.server.endpoint
            );
        }
    }
}

fn peer_answers(nodes: &[&ClusterNode], ca: &TestCa) -> f64 {
    nodes
        .iter()
        .map(|n| {
            metric_trusting(
                ca,
                &n.server.admin,
                "ferry_peer_requests_total",
                "outcome=\"ok\"",
            )
        })
        .sum()
}

async fn write_objects(node: &ClusterNode, ca: &TestCa, n: usize) -> Vec<(String, Vec<u8>)> {
    create_bucket_trusting(&node.server.endpoint, ca, "models");
    let store = client_trusting(&node.server.endpoint, ca, "models");
    let mut objects = Vec::new();
    for i in 0..n {
        let key = format!("shard-{i}.bin");
        let body = pattern(i as u8, 3 * MIB + i);
        store
            .put(&Path::from(key.as_str()), Bytes::from(body.clone()).into())
            .await
            .expect("PUT");
        objects.push((key, body));
    }
    objects
}

fn peer_address(server: &Server, ca: &TestCa) -> String {
    let body = admin_get(ca, &server.admin, "/cluster/status");
    let value: serde_json::Value = serde_json::from_str(&body).expect("cluster status JSON");
    let node = value["node"].as_str().expect("the node's id");
    value["members"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|m| m["id"] == node)
        .and_then(|m| m["address"].as_str())
        .expect("the node's own address")
        .to_string()
}

#[tokio::test]
async fn a_cluster_over_mutual_tls_serves_peers_and_refuses_another_ca() {
    let dir = temp_dir();
    let ca = TestCa::new(&dir.path().join("certs"), "cluster");
    let name = unique("tls");
    let _cleanup = Cleanup(name.clone());
    let store = temp_dir();
    let nodes: Vec<ClusterNode> = [100, 200, 300]
        .iter()
        .enumerate()
        .map(|(i, &weight)| {
            let issued = ca.issue(&format!("n{i}"), &["localhost", "127.0.0.1"]);
            cluster_node(
                &name,
                store.path(),
                &format!("n{i}"),
                weight,
                &tls_section(&issued, &ca, true),
            )
        })
        .collect();
    let all: Vec<&ClusterNode> = nodes.iter().collect();
    for node in &all {
        eventually("three members", Duration::from_secs(30), || async {
            (member_ids(&ca, &node.server.admin).len() == 3).then_some(())
        })
        .await;
    }
    let objects = write_objects(&nodes[0], &ca, 6).await;
    read_everything_everywhere(&all, &ca, &objects).await;
    assert!(
        peer_answers(&all, &ca) > 0.0,
        "no block was served by a peer"
    );

    // The peer port: a certificate from the cluster's CA gets through the
    // handshake (and then needs the secret: 403); one from another CA,
    // or none, does not get a handshake at all.
    let address = peer_address(&nodes[1].server, &ca);
    let url = format!("https://{address}{}", ferry_cache::cluster::wire::PATH);
    let own = ca.issue("visitor", &["localhost"]);
    let stranger_ca = TestCa::new(&dir.path().join("stranger"), "stranger");
    let stranger = stranger_ca.issue("stranger", &["localhost"]);
    let with = |issued: &Issued| -> (Option<i32>, String) {
        curl_trusting(
            &ca,
            &[
                "-w",
                "%{http_code}",
                "--cert",
                &issued.cert.display().to_string(),
                "--key",
                &issued.key.display().to_string(),
                &url,
            ],
        )
    };
    let (_, code) = with(&own);
    assert_eq!(code, "403", "a cluster certificate without the secret");
    let (exit, code) = with(&stranger);
    assert_ne!(
        exit,
        Some(0),
        "a certificate from another CA was let in ({code})"
    );
    assert_eq!(code, "000");
    let (exit, code) = curl_trusting(&ca, &["-w", "%{http_code}", &url]);
    assert_ne!(exit, Some(0), "no client certificate was let in ({code})");
}

#[tokio::test]
async fn a_cluster_switched_to_tls_one_node_at_a_time_fails_no_get() {
    let dir = temp_dir();
    let ca = TestCa::new(&dir.path().join("certs"), "cluster");
    let name = unique("tls-mixed");
    let _cleanup = Cleanup(name.clone());
    let store = temp_dir();
    // n0 still plain (trusting the cluster CA for its peers), n1 and n2
    // already switched: each heartbeat says how the node is reached.
    let trust_only = format!("[tls]\nca_file = \"{}\"\n", ca.cert.display());
    let plain = cluster_node(&name, store.path(), "n0", 100, &trust_only);
    let switched: Vec<ClusterNode> = (1..3)
        .map(|i| {
            let issued = ca.issue(&format!("n{i}"), &["localhost", "127.0.0.1"]);
            cluster_node(
                &name,
                store.path(),
                &format!("n{i}"),
                100,
                &tls_section(&issued, &ca, false),
            )
        })
        .collect();
    let all: Vec<&ClusterNode> = std::iter::once(&plain).chain(switched.iter()).collect();
    for node in &all {
        eventually("three members", Duration::from_secs(30), || async {
            (member_ids(&ca, &node.server.admin).len() == 3).then_some(())
        })
        .await;
    }
    assert!(plain.server.endpoint.starts_with("http://"));
    let objects = {
        let store = plain.server.client("models");
        create_bucket(&plain.server.endpoint, "models").await;
        let mut objects = Vec::new();
        for i in 0..6 {
            let key = format!("shard-{i}.bin");
            let body = pattern(i as u8, 3 * MIB + i);
            store
                .put(&Path::from(key.as_str()), Bytes::from(body.clone()).into())
                .await
                .expect("PUT");
            objects.push((key, body));
        }
        objects
    };
    for (key, body) in &objects {
        assert!(read_all(plain.server.client("models").as_ref(), key).await == *body);
    }
    read_everything_everywhere(&switched.iter().collect::<Vec<_>>(), &ca, &objects).await;
    // The plain node reached the TLS ones over TLS, and they it in plain.
    let plain_asked = metric(
        &plain.server.admin,
        "ferry_peer_requests_total",
        "outcome=\"ok\"",
    );
    assert!(
        plain_asked > 0.0,
        "the plain node got no block from a TLS peer"
    );
    let tls_asked: f64 = switched
        .iter()
        .map(|n| {
            metric_trusting(
                &ca,
                &n.server.admin,
                "ferry_peer_requests_total",
                "outcome=\"ok\"",
            )
        })
        .sum();
    assert!(tls_asked > 0.0, "the TLS nodes got no block from a peer");
    let failed: f64 = metric(
        &plain.server.admin,
        "ferry_peer_requests_total",
        "outcome=\"failed\"",
    ) + switched
        .iter()
        .map(|n| {
            metric_trusting(
                &ca,
                &n.server.admin,
                "ferry_peer_requests_total",
                "outcome=\"failed\"",
            )
        })
        .sum::<f64>();
    assert_eq!(failed, 0.0, "peer requests failed during the switch");
}

#[tokio::test]
async fn a_mirror_follows_its_source_over_https_by_dns_name() {
    let dir = temp_dir();
    let ca = TestCa::new(&dir.path().join("certs"), "regions");
    let issued = ca.issue("source", &["localhost"]);
    let shared = dir.path().join("central-blobs");
    let source_dir = dir.path().join("source");
    std::fs::create_dir_all(&source_dir).expect("mkdir");
    let source = start_node(
        &source_dir,
        &format!(
            "[stores.data]\nurl = \"file://{}\"\n\n[region]\nname = \"central\"\nfeed_secret = \"{SECRET}\"\n\n{}",
            shared.display(),
            tls_section(&issued, &ca, false)
        ),
    );
    // The certificate names localhost, not 127.0.0.1: the follower must
    // check the name it dialled.
    let follow = source.admin.replace("127.0.0.1", "localhost");
    assert!(follow.starts_with("https://localhost:"), "{follow}");
    let mirror_dir = dir.path().join("mirror");
    std::fs::create_dir_all(&mirror_dir).expect("mkdir");
    let mirror = start_node(
        &mirror_dir,
        &format!(
            "[stores.data]\nurl = \"file://{}\"\nfallback = [\"central\"]\n\n[stores.central]\nurl = \"file://{}\"\nowned = false\n\n[region]\nname = \"edge\"\nfollow = \"{follow}\"\nfeed_secret = \"{SECRET}\"\n\n[tls]\nca_file = \"{}\"\n",
            mirror_dir.join("blobs").display(),
            shared.display(),
            ca.cert.display()
        ),
    );
    let endpoint = source.endpoint.replace("127.0.0.1", "localhost");
    create_bucket_trusting(&endpoint, &ca, "models");
    let written = client_trusting(&endpoint, &ca, "models");
    let body = pattern(4, 2 * MIB + 7);
    written
        .put(
            &Path::from("m/weights.bin"),
            Bytes::from(body.clone()).into(),
        )
        .await
        .expect("PUT at the source");
    let reader = mirror.client("models");
    let got = eventually(
        "the mirror follows the source",
        Duration::from_secs(30),
        || {
            let reader = reader.clone();
            async move {
                let got = reader.get(&Path::from("m/weights.bin")).await.ok()?;
                got.bytes().await.ok()
            }
        },
    )
    .await;
    assert!(
        got.as_ref() == body.as_slice(),
        "the mirror served other bytes"
    );
    // The key reached the mirror's own namespace through the feed.
    assert!(metric(&mirror.admin, "ferry_mirror_changes_applied_total", "") > 0.0);
}
