//! Clients that stop reading (or read slowly) hold only their own share
//! of the node's in-flight budget, and only for a while: other clients'
//! GETs go on, and a GET that cannot get its share in time is told to
//! slow down rather than left hanging.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::*;

const OBJECT: usize = 48 << 20;

/// A node with an in-flight budget of four 1 MiB blocks, and `extra`
/// configuration; a public bucket `models` holding `big.bin`.
async fn node_with_public_object(dir: &std::path::Path, cache: &str, extra: &str) -> Server {
    let config = write_file(
        dir,
        "ferry.toml",
        &format!(
            "{extra}\n[cache]\nmemory = \"64MiB\"\ndisk = \"0\"\nblock_size = \"1MiB\"\n\
             readahead = \"4MiB\"\ninflight = \"4MiB\"\n{cache}\n"
        ),
    );
    let data = dir.join("data");
    let mut launch = Launch::new(&data);
    launch.config = Some(&config);
    let server = Server::start(launch);
    create_bucket(&server.endpoint, "models").await;
    let answer = signed_curl(
        &server.endpoint,
        (ACCESS_KEY, SECRET_KEY),
        &["-X", "PUT", "-H", "x-amz-acl: public-read"],
        "/models?acl=",
    );
    assert_eq!(answer.status, 200, "{}", answer.text());
    use object_store::ObjectStoreExt;
    server
        .client("models")
        .put(
            &object_store::path::Path::from("big.bin"),
            pattern(3, OBJECT).into(),
        )
        .await
        .expect("put");
    server
}

/// An anonymous GET of `big.bin` over a raw socket that then reads
/// nothing: the node fills the socket's buffers and the read stalls.
fn stalled_reader(server: &Server) -> TcpStream {
    let address = server.endpoint.trim_start_matches("http://");
    let mut socket = TcpStream::connect(address).expect("connect");
    write!(
        socket,
        "GET /models/big.bin HTTP/1.1\r\nHost: {address}\r\n\r\n"
    )
    .expect("send the request");
    socket
}

fn inflight_bytes(server: &Server) -> f64 {
    metric(&server.admin, "ferry_cache_inflight_bytes", "")
}

/// Another client's whole GET of `big.bin`, checked byte for byte.
fn whole_get(server: &Server) -> Answer {
    signed_curl(
        &server.endpoint,
        (ACCESS_KEY, SECRET_KEY),
        &[],
        "/models/big.bin",
    )
}

#[tokio::test]
async fn stalled_readers_hold_only_their_own_share_of_the_budget() {
    let dir = temp_dir();
    let server = node_with_public_object(
        dir.path(),
        "inflight_per_read = \"1MiB\"\ninflight_wait = \"2s\"\nsend_timeout = \"10min\"",
        "",
    )
    .await;
    // Three readers that never read: each may hold one block of the four.
    let stalled: Vec<TcpStream> = (0..3).map(|_| stalled_reader(&server)).collect();
    eventually(
        "the stalled readers hold their blocks",
        Duration::from_secs(60),
        || async { (inflight_bytes(&server) >= f64::from(3 << 20)).then_some(()) },
    )
    .await;
    let answer = whole_get(&server);
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert!(answer.body == pattern(3, OBJECT), "the GET's bytes differ");
    drop(stalled);
}

/// Reads held up by a slow store hold the whole budget; one more GET waits
/// `inflight_wait` for its share and is then answered 503 SlowDown.
#[tokio::test]
async fn a_read_that_waits_past_inflight_wait_is_slow_down() {
    let dir = temp_dir();
    let blobs = dir.path().join("blobs");
    let server = node_with_public_object(
        dir.path(),
        "inflight_per_read = \"1MiB\"\ninflight_wait = \"500ms\"",
        &format!(
            "[stores.data]\nurl = \"file://{}\"\nsimulated_latency = \"8s\"\n",
            blobs.display()
        ),
    )
    .await;
    // Four readers, each waiting for the store with one block of the
    // budget.
    let waiting: Vec<TcpStream> = (0..4).map(|_| stalled_reader(&server)).collect();
    eventually(
        "four reads hold the whole budget",
        Duration::from_secs(30),
        || async { (inflight_bytes(&server) >= f64::from(4 << 20)).then_some(()) },
    )
    .await;
    let answer = whole_get(&server);
    assert_eq!(answer.status, 503, "{}", answer.text());
    assert!(answer.text().contains("SlowDown"), "{}", answer.text());
    drop(waiting);
}

/// A client that takes nothing for `send_timeout` loses its read: the
/// budget it held goes to other GETs, and its own body breaks off.
#[tokio::test]
async fn a_client_that_stops_reading_loses_its_read() {
    let dir = temp_dir();
    let server = node_with_public_object(
        dir.path(),
        // One reader may hold the whole budget, and others would wait for
        // it far longer than this test runs.
        "inflight_per_read = \"4MiB\"\ninflight_wait = \"10min\"\nsend_timeout = \"1s\"",
        "",
    )
    .await;
    let mut stalled = stalled_reader(&server);
    eventually(
        "the stalled read is ended",
        Duration::from_secs(60),
        || async {
            (metric(&server.admin, "ferry_cache_reads_stalled_total", "") >= 1.0).then_some(())
        },
    )
    .await;
    let answer = whole_get(&server);
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert!(answer.body == pattern(3, OBJECT), "the GET's bytes differ");
    // The stalled client, reading at last, finds its body cut short.
    stalled
        .set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    let mut received = Vec::new();
    let _ = stalled.read_to_end(&mut received);
    assert!(
        received.len() < OBJECT,
        "the stalled client got all {} bytes",
        received.len()
    );
}
