//! End-to-end tests of `ferry serve` as a process, driven by a Rust S3
//! client (object_store's) and curl.

mod common;

use bytes::Bytes;
use futures::StreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};

use common::*;

#[tokio::test]
async fn objects_round_trip_through_a_rust_s3_client() {
    let dir = temp_dir();
    let server = Server::start(Launch::new(dir.path()));
    create_bucket(&server.endpoint, "models").await;
    let s3 = server.client("models");

    let big = pattern(1, 20 * 1024 * 1024 + 17);
    s3.put(
        &Path::from("llama/model-00001.safetensors"),
        Bytes::from(big.clone()).into(),
    )
    .await
    .expect("put big");
    s3.put(
        &Path::from("llama/config.json"),
        Bytes::from_static(b"{}").into(),
    )
    .await
    .expect("put small");
    s3.put(&Path::from("README"), Bytes::new().into())
        .await
        .expect("put empty");

    assert!(read_all(s3.as_ref(), "llama/model-00001.safetensors").await == big);
    assert_eq!(read_all(s3.as_ref(), "README").await, b"");
    let range = s3
        .get_range(
            &Path::from("llama/model-00001.safetensors"),
            4_194_000..4_195_000,
        )
        .await
        .expect("range across a 4 MiB boundary");
    assert_eq!(&range[..], &big[4_194_000..4_195_000]);

    let head = s3
        .head(&Path::from("llama/config.json"))
        .await
        .expect("head");
    assert_eq!(head.size, 2);
    assert_eq!(
        head.e_tag.as_deref(),
        Some("\"99914b932bd37a50b983c5e7c90ae93b\"")
    );

    let listing = s3.list_with_delimiter(None).await.expect("list");
    let prefixes: Vec<String> = listing
        .common_prefixes
        .iter()
        .map(|p| p.to_string())
        .collect();
    let keys: Vec<String> = listing
        .objects
        .iter()
        .map(|o| o.location.to_string())
        .collect();
    assert_eq!(prefixes, ["llama"]);
    assert_eq!(keys, ["README"]);

    s3.delete(&Path::from("llama/config.json"))
        .await
        .expect("delete");
    assert!(matches!(
        s3.get(&Path::from("llama/config.json")).await,
        Err(object_store::Error::NotFound { .. })
    ));
}

#[tokio::test]
async fn a_restart_keeps_every_object_byte_for_byte() {
    let dir = temp_dir();
    let objects: Vec<(String, Vec<u8>)> = (0..6u8)
        .map(|i| {
            (
                format!("dir{}/obj-{i}", i % 2),
                pattern(i, 1000 + usize::from(i) * 300_000),
            )
        })
        .collect();
    {
        let server = Server::start(Launch::new(dir.path()));
        create_bucket(&server.endpoint, "keep").await;
        let s3 = server.client("keep");
        for (key, body) in &objects {
            s3.put(&Path::from(key.as_str()), Bytes::from(body.clone()).into())
                .await
                .expect("put");
        }
        assert!(server.stop().success(), "SIGTERM exits cleanly");
    }
    let server = Server::start(Launch::new(dir.path()));
    let s3 = server.client("keep");
    for (key, body) in &objects {
        assert!(
            &read_all(s3.as_ref(), key).await == body,
            "{key} changed across a restart"
        );
    }
    let listed: Vec<String> = s3
        .list(None)
        .map(|m| m.expect("list").location.to_string())
        .collect()
        .await;
    let mut expected: Vec<String> = objects.iter().map(|(k, _)| k.clone()).collect();
    expected.sort();
    assert_eq!(listed, expected);
}

#[tokio::test]
async fn sigterm_lets_an_inflight_download_finish() {
    let dir = temp_dir();
    let server = Server::start(Launch::new(dir.path()));
    create_bucket(&server.endpoint, "drain").await;
    let s3 = server.client("drain");
    let body = pattern(9, 48 * 1024 * 1024);
    s3.put(&Path::from("big"), Bytes::from(body.clone()).into())
        .await
        .expect("put");

    let mut stream = s3.get(&Path::from("big")).await.expect("get").into_stream();
    let mut got = stream
        .next()
        .await
        .expect("first chunk")
        .expect("ok")
        .to_vec();
    signal_term(server.pid());
    while let Some(chunk) = stream.next().await {
        got.extend_from_slice(&chunk.expect("the download is not cut off"));
    }
    assert!(got == body);
    assert!(server.stop().success());
}

#[tokio::test]
async fn a_wrong_secret_or_unknown_key_is_refused() {
    let dir = temp_dir();
    let server = Server::start(Launch::new(dir.path()));
    create_bucket(&server.endpoint, "auth").await;
    let wrong = server.client_as("auth", ACCESS_KEY, "not-the-secret");
    let err = wrong
        .put(&Path::from("k"), Bytes::from_static(b"x").into())
        .await
        .expect_err("refused");
    assert!(err.to_string().contains("SignatureDoesNotMatch"), "{err}");
    let unknown = server.client_as("auth", "nobody", "whatever-secret");
    let err = unknown.get(&Path::from("k")).await.expect_err("refused");
    assert!(
        err.to_string().contains("403") || err.to_string().contains("InvalidAccessKeyId"),
        "{err}"
    );
    // Nothing was written by the refused PUT.
    let s3 = server.client("auth");
    assert!(matches!(
        s3.get(&Path::from("k")).await,
        Err(object_store::Error::NotFound { .. })
    ));
}

#[tokio::test]
async fn read_only_and_bucket_limited_keys_are_enforced() {
    let dir = temp_dir();
    let config = write_file(
        dir.path(),
        "ferry.toml",
        r#"
[[credentials]]
access_key = "reader"
secret_key = "reader-secret"
read_only = true

[[credentials]]
access_key = "limited"
secret_key = "limited-secret"
buckets = ["mine"]
"#,
    );
    let server = Server::start(Launch {
        config: Some(&config),
        ..Launch::new(dir.path())
    });
    create_bucket(&server.endpoint, "mine").await;
    create_bucket(&server.endpoint, "theirs").await;
    server
        .client("theirs")
        .put(&Path::from("secret"), Bytes::from_static(b"s").into())
        .await
        .expect("admin put");

    let reader = server.client_as("theirs", "reader", "reader-secret");
    assert_eq!(read_all(reader.as_ref(), "secret").await, b"s");
    let err = reader
        .put(&Path::from("x"), Bytes::from_static(b"x").into())
        .await
        .expect_err("read-only");
    assert!(err.to_string().contains("AccessDenied"), "{err}");

    let limited_mine = server.client_as("mine", "limited", "limited-secret");
    limited_mine
        .put(&Path::from("ok"), Bytes::from_static(b"ok").into())
        .await
        .expect("own bucket");
    let limited_theirs = server.client_as("theirs", "limited", "limited-secret");
    let err = limited_theirs
        .get(&Path::from("secret"))
        .await
        .expect_err("other bucket");
    assert!(
        err.to_string().contains("403") || err.to_string().contains("AccessDenied"),
        "{err}"
    );
    let err = limited_theirs
        .list_with_delimiter(None)
        .await
        .expect_err("no listing of other buckets");
    assert!(err.to_string().contains("AccessDenied"), "{err}");
}

#[tokio::test]
async fn zero_setup_generates_credentials_once() {
    let dir = temp_dir();
    let first = Server::start(Launch {
        env_credentials: false,
        ..Launch::new(dir.path())
    });
    let text = first.banner.join("\n");
    let access_key = first
        .banner
        .iter()
        .find_map(|l| l.trim().strip_prefix("access key: "))
        .expect("banner names the access key")
        .to_string();
    let secret_key = first
        .banner
        .iter()
        .find_map(|l| l.trim().strip_prefix("secret key: "))
        .expect("banner names the secret key")
        .to_string();
    assert!(text.contains("aws --endpoint-url"), "{text}");
    create_bucket_as(&first.endpoint, "gen", &access_key, &secret_key);
    assert!(first.stop().success());

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("credentials.toml"))
            .expect("stat")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let second = Server::start(Launch {
        env_credentials: false,
        ..Launch::new(dir.path())
    });
    assert!(
        second.banner.is_empty(),
        "the secret is printed only once: {:?}",
        second.banner
    );
    let s3 = second.client_as("gen", &access_key, &secret_key);
    s3.put(&Path::from("k"), Bytes::from_static(b"v").into())
        .await
        .expect("same credentials work");
}

fn create_bucket_as(endpoint: &str, bucket: &str, access_key: &str, secret_key: &str) {
    let answer = signed_curl(
        endpoint,
        (access_key, secret_key),
        &["-X", "PUT"],
        &format!("/{bucket}"),
    );
    assert_eq!(answer.status, 200, "{}", answer.text());
}

#[tokio::test]
async fn admin_endpoints_answer() {
    let dir = temp_dir();
    let server = Server::start(Launch::new(dir.path()));
    create_bucket(&server.endpoint, "metrics-test").await;
    // A file read front to back in 1 MiB ranges, as loaders do: readahead
    // prefetches the next 4 MiB blocks and the reads use them.
    let s3 = server.client("metrics-test");
    let body = pattern(7, 24 << 20);
    s3.put(&Path::from("model"), Bytes::from(body.clone()).into())
        .await
        .expect("put");
    for start in (0..body.len()).step_by(1 << 20) {
        let got = s3
            .get_range(
                &Path::from("model"),
                start as u64..(start + (1 << 20)) as u64,
            )
            .await
            .expect("range");
        assert!(got[..] == body[start..start + (1 << 20)]);
    }
    let health = std::process::Command::new("curl")
        .args([
            "-s",
            "-w",
            " %{http_code}",
            &format!("{}/health", server.admin),
        ])
        .output()
        .expect("curl");
    assert_eq!(
        String::from_utf8_lossy(&health.stdout).replace('\n', ""),
        "ok 200"
    );
    let metrics = std::process::Command::new("curl")
        .args(["-s", &format!("{}/metrics", server.admin)])
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&metrics.stdout);
    assert!(text.contains("ferry_s3_requests_total"), "{text}");
    assert!(text.contains("operation=\"CreateBucket\""), "{text}");
    let value = |name: &str| -> f64 {
        text.lines()
            .filter(|line| line.starts_with(name))
            .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    assert!(value("ferry_readahead_blocks_issued_total") > 0.0, "{text}");
    assert!(value("ferry_readahead_blocks_used_total") > 0.0, "{text}");
    assert!(value("ferry_cache_hits_total") > 0.0, "{text}");
    // foyer's own metrics come through the bridge.
    assert!(value("foyer_memory_op_total") > 0.0, "{text}");
    // The allocator's figures (the binary's default build, jemalloc): the
    // node holds at least the 24 MiB it just cached, and jemalloc's
    // counts nest (live bytes lie in active pages, which are resident).
    if cfg!(feature = "jemalloc") {
        let allocator = |state: &str| value(&format!("ferry_allocator_bytes{{state=\"{state}\"}}"));
        assert!(allocator("allocated") > (24 << 20) as f64, "{text}");
        assert!(allocator("active") >= allocator("allocated"), "{text}");
        assert!(allocator("resident") >= allocator("active"), "{text}");
    }
    assert!(!text.contains("bucket=\""), "no bucket labels: {text}");
}

/// `ferry config check` of a file `name` holding `toml`, in `dir`.
fn config_check(dir: &std::path::Path, name: &str, toml: &str) -> std::process::Output {
    let file = write_file(dir, name, toml);
    ferry()
        .args(["config", "check"])
        .arg(&file)
        .output()
        .expect("run")
}

#[test]
fn a_bad_config_is_refused_with_the_field_named() {
    let dir = temp_dir();
    let bad = write_file(dir.path(), "bad.toml", "[server]\nlisten = \"nowhere\"\n");
    let output = ferry()
        .args(["serve", "--config"])
        .arg(&bad)
        .arg("--data-dir")
        .arg(dir.path())
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("server.listen"), "{stderr}");

    let output = config_check(
        dir.path(),
        "unknown.toml",
        "[server]\nlisen = \"127.0.0.1:1\"\n",
    );
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("lisen"));

    let output = config_check(
        dir.path(),
        "good.toml",
        "[server]\nlisten = \"127.0.0.1:9000\"\n",
    );
    assert!(output.status.success());
    assert!(String::from_utf8_lossy(&output.stdout).contains("ok"));
}

#[test]
fn a_redis_password_is_never_printed() {
    let dir = temp_dir();
    let output = config_check(
        dir.path(),
        "secret.toml",
        "[meta]\nengine = \"redis://ferry:s3cr3t-redis-pass@127.0.0.1:6379/3\"\n",
    );
    assert!(output.status.success());
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(!printed.contains("s3cr3t-redis-pass"), "{printed}");
    assert!(
        printed.contains("redis://ferry:redacted@127.0.0.1:6379/3"),
        "{printed}"
    );
}
