//! A gateway on a Redis that only speaks TLS (`rediss://`), trusting the
//! server through SSL_CERT_FILE as any rustls client on the host would.

mod common;

use bytes::Bytes;
use object_store::ObjectStoreExt;
use object_store::path::Path;

use common::*;

#[tokio::test]
async fn a_gateway_stores_its_namespace_in_a_tls_only_redis() {
    let dir = temp_dir();
    let tls = dir.path().join("tls");
    let ca = TestCa::new(&tls, "test");
    let issued = ca.issue("redis", &["127.0.0.1"]);
    // TLS only (no plain port), with AOF so the gateway needs no
    // allow_volatile_redis; ready once it answers PING over TLS.
    let redis = RedisServer::options()
        .aof()
        .tls(RedisTls {
            cert: issued.cert,
            key: issued.key,
            ca: ca.cert.clone(),
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
        extra_env: vec![("SSL_CERT_FILE", ca.cert.display().to_string())],
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
