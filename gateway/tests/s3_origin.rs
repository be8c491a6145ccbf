//! Ferry over a real S3 origin: its data store is an S3 bucket served by
//! another process (a second Ferry over a local folder, or s3s-fs), as in
//! production, where the data store is an S3 bucket. Block reads are ranged
//! GETs against that origin and blob writes are PUTs and multipart uploads.
//!
//! Gateway B is the Ferry under test; origin A is the S3 server behind it.
//! Origin failures are real: the origin process is stopped or killed.

mod common;

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path;
use object_store::{BackoffConfig, ClientOptions, ObjectStore, ObjectStoreExt, RetryConfig};

use common::*;

const MIB: usize = 1 << 20;
/// The origin's own credentials, which only gateway B's store config knows.
const ORIGIN_KEY: &str = "origin-key";
const ORIGIN_SECRET: &str = "origin-secret-not-the-gateways";
/// The bucket on the origin that holds B's blobs.
const ORIGIN_BUCKET: &str = "origin";
/// How long a request against a dead origin may take before it must have
/// failed: gateway B retries for at most `retry_timeout` (5 s below), plus
/// room for a busy machine.
const DEAD_ORIGIN_BOUND: Duration = Duration::from_secs(20);

/// Origin A: a plain Ferry over its local folder, with its own credentials.
fn start_origin(dir: &std::path::Path, listen: Option<&str>) -> Server {
    Server::start(Launch {
        env_credentials: false,
        extra_env: vec![
            ("FERRY_ACCESS_KEY", ORIGIN_KEY.to_string()),
            ("FERRY_SECRET_KEY", ORIGIN_SECRET.to_string()),
        ],
        listen,
        ..Launch::new(dir)
    })
}

/// Gateway B's config: its data store is bucket `origin` at the S3
/// endpoint `origin`, with a small block cache. `cache_extra` adds lines to
/// `[cache]`.
fn gateway_config(dir: &std::path::Path, origin: &str, key: (&str, &str), cache_extra: &str) {
    let (access_key, secret_key) = key;
    write_file(
        dir,
        "ferry.toml",
        &format!(
            r#"
[stores.data]
url = "s3://{ORIGIN_BUCKET}"
endpoint = "{origin}"
region = "us-east-1"
access_key_id = "{access_key}"
secret_access_key = "{secret_key}"
allow_http = true
max_retries = 3
retry_timeout = "5s"

[stores.data.options]
connect_timeout = "2s"
timeout = "60s"

[cache]
memory = "64MiB"
{cache_extra}
"#
        ),
    );
}

fn start_gateway(dir: &std::path::Path) -> Server {
    let config = dir.join("ferry.toml");
    Server::start(Launch {
        config: Some(&config),
        ..Launch::new(dir)
    })
}

/// An S3 client that does not retry, so a failure shows as it happened,
/// and waits long enough to see a slow failure of the server.
fn client(
    endpoint: &str,
    bucket: &str,
    access_key: &str,
    secret_key: &str,
) -> Arc<dyn ObjectStore> {
    Arc::new(
        AmazonS3Builder::new()
            .with_endpoint(endpoint)
            .with_allow_http(true)
            .with_region("us-east-1")
            .with_bucket_name(bucket)
            .with_access_key_id(access_key)
            .with_secret_access_key(secret_key)
            .with_virtual_hosted_style_request(false)
            .with_retry(RetryConfig {
                backoff: BackoffConfig::default(),
                max_retries: 0,
                retry_timeout: Duration::from_secs(120),
            })
            .with_client_options(
                ClientOptions::new()
                    .with_allow_http(true)
                    .with_timeout(Duration::from_secs(120)),
            )
            .build()
            .expect("client"),
    )
}

fn gateway_client(server: &Server, bucket: &str) -> Arc<dyn ObjectStore> {
    client(&server.endpoint, bucket, ACCESS_KEY, SECRET_KEY)
}

async fn put(store: &dyn ObjectStore, key: &str, body: &[u8]) -> object_store::PutResult {
    store
        .put(&Path::from(key), Bytes::copy_from_slice(body).into())
        .await
        .unwrap_or_else(|e| panic!("put {key}: {e}"))
}

/// Ranges of an object of `len` bytes (more than 8 MiB) that cross 4 MiB
/// block boundaries, and its end.
fn ranges_across_blocks(len: usize) -> Vec<std::ops::Range<usize>> {
    let block = 4 * MIB;
    assert!(len > 2 * block + 1);
    vec![
        block - 100..block + 100,
        block - 1..2 * block + 1,
        0..block + 1,
        len - 1000..len,
        block * (len / block) - 3..len - 1,
    ]
}

async fn check_ranges(store: &dyn ObjectStore, key: &str, body: &[u8]) {
    for range in ranges_across_blocks(body.len()) {
        let got = store
            .get_range(&Path::from(key), range.start as u64..range.end as u64)
            .await
            .unwrap_or_else(|e| panic!("range {range:?} of {key}: {e}"));
        assert!(
            got[..] == body[range.clone()],
            "range {range:?} of {key} differs"
        );
    }
}

/// Every object in `store`, as (key, size).
async fn listing(store: &dyn ObjectStore) -> Vec<(String, u64)> {
    store
        .list(None)
        .map(|m| {
            let m = m.expect("list");
            (m.location.to_string(), m.size)
        })
        .collect()
        .await
}

/// GetObject requests a Ferry has answered, from its admin `/metrics`.
fn get_objects_answered(server: &Server) -> u64 {
    let output = Command::new("curl")
        .args(["-sf", &format!("{}/metrics", server.admin)])
        .output()
        .expect("curl");
    assert!(output.status.success(), "metrics scrape failed");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        text.contains("ferry_s3_requests_total{"),
        "no request counter in {text}"
    );
    text.lines()
        .filter(|l| l.starts_with("ferry_s3_requests_total{"))
        .filter(|l| l.contains("operation=\"GetObject\""))
        .map(|l| {
            l.rsplit(' ')
                .next()
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or_else(|| panic!("unparsable metric line {l:?}"))
        })
        .sum::<f64>() as u64
}

fn create_bucket_with(endpoint: &str, bucket: &str, key: (&str, &str)) {
    let answer = signed_curl(endpoint, key, &["-X", "PUT"], &format!("/{bucket}"));
    assert_eq!(
        (answer.exit, answer.status),
        (Some(0), 200),
        "create bucket {bucket}: {}",
        answer.text()
    );
}

fn listen_address(server: &Server) -> String {
    server
        .endpoint
        .strip_prefix("http://")
        .expect("http endpoint")
        .to_string()
}

/// Origin A with bucket `origin`, and gateway B over it. Bind every field:
/// a folder dropped early is deleted under its running server.
struct Pair {
    a_dir: tempfile::TempDir,
    b_dir: tempfile::TempDir,
    a: Server,
    b: Server,
}

async fn pair(cache_extra: &str) -> Pair {
    let a_dir = temp_dir();
    let b_dir = temp_dir();
    let a = start_origin(a_dir.path(), None);
    create_bucket_with(&a.endpoint, ORIGIN_BUCKET, (ORIGIN_KEY, ORIGIN_SECRET));
    gateway_config(
        b_dir.path(),
        &a.endpoint,
        (ORIGIN_KEY, ORIGIN_SECRET),
        cache_extra,
    );
    let b = start_gateway(b_dir.path());
    Pair { a_dir, b_dir, a, b }
}

#[tokio::test]
async fn ferry_over_ferry_keeps_every_blob_in_the_origin_bucket() {
    let Pair {
        a_dir: _a_dir,
        b_dir: _b_dir,
        a,
        b,
    } = pair("").await;
    create_bucket(&b.endpoint, "models").await;
    let s3 = gateway_client(&b, "models");

    // Above the 8 MiB part size: B uploads the blob to A in parts.
    let big = pattern(1, 20 * MIB + 17);
    let small = pattern(2, 1234);
    let big_put = put(s3.as_ref(), "llama/model.safetensors", &big).await;
    let small_put = put(s3.as_ref(), "llama/config.json", &small).await;

    assert!(read_all(s3.as_ref(), "llama/model.safetensors").await == big);
    assert!(read_all(s3.as_ref(), "llama/config.json").await == small);
    check_ranges(s3.as_ref(), "llama/model.safetensors", &big).await;
    let part = s3
        .get_range(&Path::from("llama/config.json"), 1000..1234)
        .await
        .expect("range of the small object");
    assert!(part[..] == small[1000..]);

    let head = s3
        .head(&Path::from("llama/model.safetensors"))
        .await
        .expect("head");
    assert_eq!(head.size, big.len() as u64);
    assert_eq!(head.e_tag, big_put.e_tag);
    let head = s3
        .head(&Path::from("llama/config.json"))
        .await
        .expect("head");
    assert_eq!(head.size, small.len() as u64);
    assert_eq!(head.e_tag, small_put.e_tag);
    let names: Vec<String> = listing(s3.as_ref())
        .await
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(names, ["llama/config.json", "llama/model.safetensors"]);

    // The bytes live in A: blobs under blobs/, as many bytes as were
    // written, and nothing else; B's names and buckets are not there.
    let origin = client(&a.endpoint, ORIGIN_BUCKET, ORIGIN_KEY, ORIGIN_SECRET);
    let blobs = listing(origin.as_ref()).await;
    assert_eq!(blobs.len(), 2, "one blob per object: {blobs:?}");
    for (key, _) in &blobs {
        assert!(key.starts_with("blobs/"), "{key} in the origin bucket");
        assert!(
            !key.contains("llama") && !key.contains("config.json") && !key.contains("model"),
            "an object name shows in the origin: {key}"
        );
    }
    let stored: u64 = blobs.iter().map(|(_, size)| size).sum();
    assert_eq!(stored, (big.len() + small.len()) as u64);
    let (big_blob, _) = blobs
        .iter()
        .find(|(_, size)| *size == big.len() as u64)
        .expect("the big object's blob");
    assert!(
        read_all(origin.as_ref(), big_blob).await == big,
        "the blob in A holds the object's bytes"
    );
    let buckets = signed_curl(&a.endpoint, (ORIGIN_KEY, ORIGIN_SECRET), &[], "/");
    assert_eq!(buckets.status, 200, "{}", buckets.text());
    assert!(
        buckets.text().contains("<Name>origin</Name>"),
        "{}",
        buckets.text()
    );
    assert!(!buckets.text().contains("models"), "{}", buckets.text());
}

#[tokio::test]
async fn cached_blocks_are_not_read_from_the_origin_again_even_after_a_restart() {
    let Pair {
        a_dir: _a_dir,
        b_dir,
        a,
        b,
    } = pair("").await;
    create_bucket(&b.endpoint, "models").await;
    let body = pattern(5, 20 * MIB + 333);
    put(gateway_client(&b, "models").as_ref(), "weights", &body).await;

    let before = get_objects_answered(&a);
    let s3 = gateway_client(&b, "models");
    assert!(read_all(s3.as_ref(), "weights").await == body);
    let after_cold = get_objects_answered(&a);
    assert!(
        after_cold > before,
        "a cold read goes to the origin ({before} -> {after_cold} GetObject at A)"
    );

    assert!(read_all(s3.as_ref(), "weights").await == body);
    check_ranges(s3.as_ref(), "weights", &body).await;
    assert_eq!(
        get_objects_answered(&a),
        after_cold,
        "a warm read asked the origin again"
    );

    // A page the disk tier dropped because its flush buffers were full
    // (counted; on a loaded machine it happens) is a later miss by design:
    // each may cost one read of its block again, nothing else may.
    let dropped = metric(&b.admin, "ferry_cache_disk_writes_dropped_total", "") as u64;
    assert!(b.stop().success(), "B exits cleanly on SIGTERM");
    let b = start_gateway(b_dir.path());
    let s3 = gateway_client(&b, "models");
    assert!(read_all(s3.as_ref(), "weights").await == body);
    check_ranges(s3.as_ref(), "weights", &body).await;
    // B's start checks that A answers ranged GETs: one GET of its probe.
    let again = get_objects_answered(&a).saturating_sub(after_cold + 1);
    assert!(
        again <= dropped,
        "after a restart B read the origin again for {again} blocks, though its disk tier dropped only {dropped} pages: the disk tier lost blocks"
    );
}

#[tokio::test]
async fn a_dead_origin_is_an_error_and_loses_nothing() {
    let Pair {
        a_dir,
        b_dir: _b_dir,
        a,
        b,
    } = pair("").await;
    let a_listen = listen_address(&a);
    create_bucket(&b.endpoint, "models").await;
    let s3 = gateway_client(&b, "models");
    // Written through B, never read: B's cache has none of its blocks.
    let cold = pattern(7, 9 * MIB + 5);
    put(s3.as_ref(), "cold", &cold).await;

    assert!(a.stop().success(), "A exits on SIGTERM");

    let started = Instant::now();
    let got = signed_curl(&b.endpoint, (ACCESS_KEY, SECRET_KEY), &[], "/models/cold");
    let took = started.elapsed();
    eprintln!(
        "GET with the origin down: curl exit {:?}, status {}, {} of {} bytes, {took:?}",
        got.exit,
        got.status,
        got.body.len(),
        cold.len()
    );
    assert!(took < DEAD_ORIGIN_BOUND, "the GET took {took:?}");
    // The first block is fetched before the status line goes out, so the
    // store failure is answered as what it is.
    assert_eq!(got.status, 503, "{}", got.text());
    assert!(
        got.text().contains("<Code>ServiceUnavailable</Code>"),
        "{}",
        got.text()
    );

    // A PUT cannot store its blob: refused, and no entry appears.
    let upload = temp_dir();
    let fresh = pattern(8, 300_000);
    let file = upload.path().join("fresh");
    std::fs::write(&file, &fresh).expect("write");
    let started = Instant::now();
    let refused = signed_curl(
        &b.endpoint,
        (ACCESS_KEY, SECRET_KEY),
        &[
            "-X",
            "PUT",
            "--data-binary",
            &format!("@{}", file.display()),
        ],
        "/models/fresh",
    );
    let took = started.elapsed();
    assert!(took < DEAD_ORIGIN_BOUND, "the PUT took {took:?}");
    assert_eq!(refused.status, 503, "{}", refused.text());
    assert!(
        refused.text().contains("<Code>ServiceUnavailable</Code>"),
        "{}",
        refused.text()
    );
    assert!(matches!(
        s3.head(&Path::from("fresh")).await,
        Err(object_store::Error::NotFound { .. })
    ));
    let names: Vec<String> = listing(s3.as_ref())
        .await
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(names, ["cold"]);

    // A comes back on the same folder and port: everything reads again.
    let a = start_origin(a_dir.path(), Some(&a_listen));
    assert!(read_all(s3.as_ref(), "cold").await == cold);
    check_ranges(s3.as_ref(), "cold", &cold).await;
    put(s3.as_ref(), "fresh", &fresh).await;
    assert!(read_all(s3.as_ref(), "fresh").await == fresh);
    let origin = client(&a.endpoint, ORIGIN_BUCKET, ORIGIN_KEY, ORIGIN_SECRET);
    let stored: u64 = listing(origin.as_ref()).await.iter().map(|(_, s)| s).sum();
    assert_eq!(stored, (cold.len() + fresh.len()) as u64);
}

#[tokio::test]
async fn an_origin_dying_mid_stream_aborts_the_response() {
    // One block in flight ahead of the client, so most of the object is
    // still at A when A dies.
    let Pair {
        a_dir,
        b_dir: _b_dir,
        a,
        b,
    } = pair("readahead = \"4MiB\"").await;
    let a_listen = listen_address(&a);
    create_bucket(&b.endpoint, "models").await;
    let s3 = gateway_client(&b, "models");
    let body = pattern(11, 64 * MIB);
    put(s3.as_ref(), "big", &body).await;

    let mut stream = s3
        .get(&Path::from("big"))
        .await
        .expect("response head")
        .into_stream();
    let first = stream
        .next()
        .await
        .expect("a first chunk")
        .expect("first chunk");
    // SIGKILL: A's connections drop without a graceful drain.
    drop(a);
    let killed = Instant::now();
    let mut received = first.len();
    let outcome = loop {
        match stream.next().await {
            Some(Ok(chunk)) => received += chunk.len(),
            Some(Err(e)) => break Err(e),
            None => break Ok(()),
        }
    };
    let took = killed.elapsed();
    eprintln!(
        "origin killed mid-stream: {received} of {} bytes, then {outcome:?} after {took:?}",
        body.len()
    );
    assert!(
        received < body.len(),
        "B had the whole object before A died; the test did not cut a stream"
    );
    assert!(
        outcome.is_err(),
        "the response ended cleanly after {received} of {} bytes",
        body.len()
    );
    assert!(took < DEAD_ORIGIN_BOUND, "the failure took {took:?}");

    // Nothing wrong was cached: with A back, the object reads whole.
    let _a = start_origin(a_dir.path(), Some(&a_listen));
    assert!(read_all(s3.as_ref(), "big").await == body);
}

#[tokio::test]
async fn ferry_over_s3s_fs_round_trips_and_serves_warm_reads_from_its_cache() {
    let binary = s3s_fs_binary();
    let origin_dir = temp_dir();
    let origin_key = ("s3s-key", "s3s-secret-key");
    let origin = S3sFs::start(&binary, origin_dir.path(), origin_key);
    create_bucket_with(&origin.endpoint, ORIGIN_BUCKET, origin_key);

    let b_dir = temp_dir();
    gateway_config(b_dir.path(), &origin.endpoint, origin_key, "");
    let b = start_gateway(b_dir.path());
    create_bucket(&b.endpoint, "models").await;
    let s3 = gateway_client(&b, "models");

    let big = pattern(21, 20 * MIB + 4099);
    let small = pattern(22, 77);
    put(s3.as_ref(), "gguf/model.gguf", &big).await;
    put(s3.as_ref(), "gguf/tokenizer.json", &small).await;
    assert!(read_all(s3.as_ref(), "gguf/model.gguf").await == big);
    assert!(read_all(s3.as_ref(), "gguf/tokenizer.json").await == small);
    check_ranges(s3.as_ref(), "gguf/model.gguf", &big).await;
    assert_eq!(
        s3.head(&Path::from("gguf/model.gguf"))
            .await
            .expect("head")
            .size,
        big.len() as u64
    );

    // The blobs are in s3s-fs's bucket, read back through its own API.
    let direct = client(&origin.endpoint, ORIGIN_BUCKET, origin_key.0, origin_key.1);
    let blobs = listing(direct.as_ref()).await;
    assert_eq!(blobs.len(), 2, "{blobs:?}");
    assert!(
        blobs.iter().all(|(k, _)| k.starts_with("blobs/")),
        "{blobs:?}"
    );
    let stored: u64 = blobs.iter().map(|(_, s)| s).sum();
    assert_eq!(stored, (big.len() + small.len()) as u64);

    // Warm: with the origin gone, everything read before still reads.
    drop(origin);
    assert!(read_all(s3.as_ref(), "gguf/model.gguf").await == big);
    assert!(read_all(s3.as_ref(), "gguf/tokenizer.json").await == small);
    check_ranges(s3.as_ref(), "gguf/model.gguf", &big).await;
}
