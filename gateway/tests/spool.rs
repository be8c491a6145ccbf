//! PUTs without a Content-Length, which a node reads to their end before
//! storing them: signed ones work, and how many a node takes at once is
//! bounded.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

fn sigv4() -> Vec<String> {
    vec![
        "--aws-sigv4".to_string(),
        "aws:amz:us-east-1:s3".to_string(),
        "--user".to_string(),
        format!("{ACCESS_KEY}:{SECRET_KEY}"),
        "-H".to_string(),
        "x-amz-content-sha256: UNSIGNED-PAYLOAD".to_string(),
    ]
}

/// With one spool slot, a second body without a length is answered 503
/// SlowDown while the first is being read, and the first, correctly
/// signed, is stored whole.
#[tokio::test]
async fn a_body_beyond_the_spool_slots_is_slow_down_and_a_signed_one_is_stored() {
    let dir = temp_dir();
    let config = write_file(dir.path(), "ferry.toml", "[server]\nmax_spools = 1\n");
    let data = dir.path().join("data");
    let mut launch = Launch::new(&data);
    launch.config = Some(&config);
    let server = Server::start(launch);
    create_bucket(&server.endpoint, "models").await;

    // The first upload sends a part of its body and then waits, holding
    // the one slot.
    let mut first = Command::new("curl")
        .args([
            "-s",
            "--max-time",
            "120",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
        ])
        .args(["-T", "-"])
        .args(sigv4())
        .arg(format!("{}/models/first.bin", server.endpoint))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("curl");
    let mut stdin = first.stdin.take().expect("stdin");
    stdin.write_all(&pattern(1, 3 << 20)).expect("first part");
    stdin.flush().expect("flush");
    eventually(
        "the first body holds the slot",
        Duration::from_secs(30),
        || async { (metric(&server.admin, "ferry_spool_bodies", "") == 1.0).then_some(()) },
    )
    .await;

    let auth = sigv4();
    let auth: Vec<&str> = auth.iter().map(String::as_str).collect();
    let url = format!("{}/models/second.bin", server.endpoint);
    let (status, body) = chunked_put(&url, &auth, 1 << 20);
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("SlowDown"), "{body}");

    stdin.write_all(&pattern(2, 1 << 20)).expect("rest");
    drop(stdin);
    let out = first.wait_with_output().expect("first upload");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "200");
    let mut expected = pattern(1, 3 << 20);
    expected.extend(pattern(2, 1 << 20));
    let stored = read_all(server.client("models").as_ref(), "first.bin").await;
    assert!(
        stored == expected,
        "the stored object differs from what was sent"
    );

    // The slot is free again.
    let (status, body) = chunked_put(&url, &auth, 1 << 20);
    assert_eq!(status, 200, "{body}");
    eventually(
        "every slot is given back",
        Duration::from_secs(30),
        || async { (metric(&server.admin, "ferry_spool_bodies", "") == 0.0).then_some(()) },
    )
    .await;
}
