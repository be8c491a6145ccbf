//! What a connection may hold on each listener (S3, admin, peer): a
//! client that sends half its headers, or stops reading an answer, is cut
//! off, and connections beyond the cap wait until one closes.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use object_store::ObjectStoreExt;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path;
use object_store::signer::Signer;

const MIB: usize = 1 << 20;
/// Longer than any timeout a test configures: a read that waits this
/// long means the server kept the connection.
const GUARD: Duration = Duration::from_secs(60);

fn host_port(url: &str) -> String {
    url.trim_start_matches("http://").to_string()
}

/// A single-node cluster, so the peer port listens too.
fn start(dir: &std::path::Path, server: &str) -> (Server, String) {
    let peer = format!("127.0.0.1:{}", free_port());
    let config = format!(
        "[server]\n{server}\n\n[cluster]\nnode_id = \"n0\"\npeer_listen = \"{peer}\"\nsecret = \"cluster-secret-for-the-tests\"\npeers = [{{ id = \"n0\", address = \"{peer}\" }}]\n"
    );
    let path = write_file(dir, "ferry.toml", &config);
    let server = Server::start(Launch {
        config: Some(&path),
        ..Launch::new(dir)
    });
    (server, peer)
}

/// Reads until the server closes the connection (or resets it); panics
/// when it is still open after [`GUARD`]. Returns the bytes read.
fn read_until_closed(stream: &mut TcpStream) -> usize {
    stream.set_read_timeout(Some(GUARD)).expect("read timeout");
    let mut total = 0;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return total,
            Ok(n) => total += n,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return total,
            Err(e) => panic!("the server kept the connection open: {e}"),
        }
    }
}

#[test]
fn half_sent_headers_are_cut_off_on_every_listener() {
    let dir = temp_dir();
    let (server, peer) = start(dir.path(), "header_timeout = \"1s\"");
    for (name, address) in [
        ("s3", host_port(&server.endpoint)),
        ("admin", host_port(&server.admin)),
        ("peer", peer.clone()),
    ] {
        let mut stream = TcpStream::connect(&address).expect("connect");
        stream
            .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            .expect("write");
        let answered = read_until_closed(&mut stream);
        // hyper answers 408 or just closes; either way nothing is served.
        assert!(
            answered < 512,
            "{name}: {answered} bytes for half a request"
        );
    }
    // A connection that never sends a byte is cut off the same way.
    let mut silent = TcpStream::connect(host_port(&server.endpoint)).expect("connect");
    read_until_closed(&mut silent);
}

fn open_connections(admin: &str, listener: &str) -> f64 {
    metric(
        admin,
        "ferry_connections_open",
        &format!("listener=\"{listener}\""),
    )
}

#[tokio::test]
async fn a_client_that_stops_reading_is_cut_off() {
    let dir = temp_dir();
    let (server, _peer) = start(dir.path(), "write_timeout = \"1s\"");
    create_bucket(&server.endpoint, "models").await;
    let store = server.client("models");
    let body = pattern(5, 64 * MIB);
    store
        .put(&Path::from("big.bin"), Bytes::from(body).into())
        .await
        .expect("PUT");
    let signer = AmazonS3Builder::new()
        .with_endpoint(&server.endpoint)
        .with_allow_http(true)
        .with_region("us-east-1")
        .with_bucket_name("models")
        .with_access_key_id(ACCESS_KEY)
        .with_secret_access_key(SECRET_KEY)
        .build()
        .expect("signer");
    let url = signer
        .signed_url(
            http::Method::GET,
            &Path::from("big.bin"),
            Duration::from_secs(600),
        )
        .await;
    // A presigned GET over a raw socket that is then never read.
    let url = match url {
        Ok(url) => url,
        Err(e) => panic!("presign: {e}"),
    };
    let mut stream = TcpStream::connect(host_port(&server.endpoint)).expect("connect");
    let request = format!(
        "GET {}?{} HTTP/1.1\r\nHost: {}\r\n\r\n",
        url.path(),
        url.query().unwrap_or_default(),
        host_port(&server.endpoint)
    );
    stream.write_all(request.as_bytes()).expect("write");
    eventually("the stalled connection is open", GUARD, || async {
        (open_connections(&server.admin, "s3") >= 1.0).then_some(())
    })
    .await;
    eventually(
        "the server closes the stalled connection",
        GUARD,
        || async { (open_connections(&server.admin, "s3") == 0.0).then_some(()) },
    )
    .await;
    let received = read_until_closed(&mut stream);
    assert!(
        received < 64 * MIB,
        "the whole object was sent to a client that never read"
    );
}

#[tokio::test]
async fn connections_beyond_the_cap_wait_until_one_closes() {
    let dir = temp_dir();
    let (server, _peer) = start(dir.path(), "max_connections = 3\nheader_timeout = \"60s\"");
    let s3 = host_port(&server.endpoint);
    let held: Vec<TcpStream> = (0..3)
        .map(|_| TcpStream::connect(&s3).expect("connect"))
        .collect();
    eventually("three connections are open", GUARD, || async {
        (open_connections(&server.admin, "s3") == 3.0).then_some(())
    })
    .await;
    // The fourth is accepted by the kernel but not served.
    let mut fourth = TcpStream::connect(&s3).expect("connect");
    fourth
        .write_all(b"GET /missing-bucket/key HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .expect("write");
    fourth
        .set_read_timeout(Some(Duration::from_millis(500)))
        .expect("read timeout");
    let mut buf = [0u8; 64];
    let early = fourth.read(&mut buf);
    assert!(
        matches!(&early, Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut)),
        "the fourth connection was served beyond the cap: {early:?}"
    );
    assert_eq!(open_connections(&server.admin, "s3"), 3.0);
    // One closes: the fourth is served.
    drop(held);
    fourth.set_read_timeout(Some(GUARD)).expect("read timeout");
    let mut answer = Vec::new();
    fourth.read_to_end(&mut answer).expect("an answer");
    assert!(
        answer.starts_with(b"HTTP/1.1 "),
        "{}",
        String::from_utf8_lossy(&answer)
    );
}
