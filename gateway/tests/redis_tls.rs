//! A gateway on a Redis that only speaks TLS (`rediss://`), trusting the
//! server through SSL_CERT_FILE as any rustls client on the host would.

mod common;

use std::path::Path as FsPath;
use std::process::{Command, Stdio};

use bytes::Bytes;
use object_store::ObjectStoreExt;
use object_store::path::Path;

use common::*;

fn openssl(dir: &FsPath, args: &[&str]) {
    let status = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stderr(Stdio::null())
        .status()
        .expect("openssl");
    assert!(status.success(), "openssl {args:?}");
}

/// A CA, and a certificate for 127.0.0.1 signed by it.
fn certificates(dir: &FsPath) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "2",
            "-subj",
            "/CN=ferry-test-ca",
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "redis.key",
            "-out",
            "redis.csr",
            "-subj",
            "/CN=127.0.0.1",
        ],
    );
    std::fs::write(dir.join("ext.cnf"), "subjectAltName=IP:127.0.0.1\n").expect("ext");
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "redis.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "redis.crt",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
        ],
    );
}

#[tokio::test]
async fn a_gateway_stores_its_namespace_in_a_tls_only_redis() {
    let dir = temp_dir();
    let tls = dir.path().join("tls");
    std::fs::create_dir_all(&tls).expect("mkdir");
    certificates(&tls);
    // TLS only (no plain port), with AOF so the gateway needs no
    // allow_volatile_redis; ready once it answers PING over TLS.
    let redis = RedisServer::options()
        .aof()
        .tls(RedisTls {
            cert: tls.join("redis.crt"),
            key: tls.join("redis.key"),
            ca: tls.join("ca.crt"),
        })
        .start();
    let config = write_file(
        dir.path(),
        "ferry.toml",
        &format!(
            "[meta]\nengine = \"{}\"\nredis_prefix = \"tls-test\"\n",
            redis.url()
        ),
    );
    let server = Server::start(Launch {
        config: Some(&config),
        extra_env: vec![("SSL_CERT_FILE", tls.join("ca.crt").display().to_string())],
        ..Launch::new(dir.path())
    });
    create_bucket(&server.endpoint, "over-tls").await;
    let s3 = server.client("over-tls");
    s3.put(
        &Path::from("model.bin"),
        Bytes::from_static(b"weights").into(),
    )
    .await
    .expect("put");
    let got = s3
        .get(&Path::from("model.bin"))
        .await
        .expect("get")
        .bytes()
        .await
        .expect("body");
    assert_eq!(&got[..], b"weights");
    assert!(server.stop().success());
    drop(redis);
}
