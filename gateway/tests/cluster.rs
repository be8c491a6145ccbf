//! The cache cluster end to end: real `ferry serve` processes on loopback
//! sharing one data store (a folder), one Redis for metadata and one for
//! membership, each test under names of its own.

mod common;

use std::path::Path as FsPath;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::cluster::{
    MIB, Node, SECRET, Spec, TOKEN, TestCluster, config, get, members, put, store_reads, unique,
    wait_until,
};
use common::{
    ACCESS_KEY, RedisServer, SECRET_KEY, create_bucket, curl, metric, pattern, redis_cli,
    redis_url, temp_dir,
};
use ferry_cache::cluster::wire;
use ferry_cache::source::BlockAddr;
use futures::StreamExt;
use object_store::ObjectStoreExt;
use object_store::path::Path;

fn set_weight(admin: &str, node: &str, weight: u32) {
    let out = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args([
            "cluster",
            "weight",
            node,
            &weight.to_string(),
            "--admin",
            admin,
        ])
        .env("FERRY_ADMIN_TOKEN", TOKEN)
        .output()
        .expect("ferry cluster weight");
    assert!(
        out.status.success(),
        "ferry cluster weight: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_nodes_load_each_block_once_and_hand_off_on_a_drain() {
    let cluster = TestCluster::start(&[100, 200, 300]);
    let bucket = unique("b");
    create_bucket(&cluster.nodes[0].server().endpoint, &bucket).await;
    let body = pattern(7, 24 * MIB + 123);
    put(
        cluster.nodes[0].client(&bucket).as_ref(),
        "model.bin",
        &body,
    )
    .await;

    // Byte-identical through every node, and one store read per block for
    // the whole cluster.
    for node in &cluster.nodes {
        assert!(
            get(node.client(&bucket).as_ref(), "model.bin").await == body,
            "through {}",
            node.id
        );
    }
    assert_eq!(store_reads(&cluster), 25.0, "store reads for 25 blocks");
    for node in &cluster.nodes[1..] {
        assert!(
            metric(&node.admin(), "ferry_peer_served_total", "") > 0.0,
            "{} (weight > 100) served no block to a peer",
            node.id
        );
    }

    // A second object read through the heaviest node only, so its blocks
    // are on their owners and on n2; then n2 is drained.
    let second = pattern(9, 12 * MIB);
    put(
        cluster.nodes[0].client(&bucket).as_ref(),
        "second.bin",
        &second,
    )
    .await;
    assert!(get(cluster.nodes[2].client(&bucket).as_ref(), "second.bin").await == second);
    let before = store_reads(&cluster);
    assert_eq!(before, 25.0 + 12.0);

    set_weight(&cluster.nodes[0].admin(), "n2", 0);
    for node in &cluster.nodes {
        wait_until(&format!("{} sees n2 drained", node.id), || {
            members(&node.admin())
                .iter()
                .any(|(id, weight, _)| id == "n2" && *weight == 0)
        });
        assert_eq!(
            metric(&node.admin(), "ferry_cluster_expected_share", "node=\"n2\""),
            0.0
        );
        let share = metric(&node.admin(), "ferry_cluster_expected_share", "node=\"n1\"");
        assert!((share - 2.0 / 3.0).abs() < 1e-9, "n1's share {share}");
    }
    // The new owners of n2's blocks ask n2 before the store: no store read.
    for node in &cluster.nodes[..2] {
        assert!(get(node.client(&bucket).as_ref(), "second.bin").await == second);
    }
    assert_eq!(store_reads(&cluster), before, "a drain caused store reads");
    let handoffs: f64 = cluster.nodes[..2]
        .iter()
        .map(|n| metric(&n.admin(), "ferry_handoff_reads_total", "outcome=\"hit\""))
        .sum();
    assert!(handoffs > 0.0, "no handoff read after the drain");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_killed_mid_stream_fails_no_read_and_is_used_again_after_a_restart() {
    let mut cluster = TestCluster::start(&[100, 100, 100]);
    let bucket = unique("b");
    create_bucket(&cluster.nodes[0].server().endpoint, &bucket).await;
    let body = Arc::new(pattern(3, 40 * MIB));
    put(cluster.nodes[0].client(&bucket).as_ref(), "big.bin", &body).await;

    // 16 streams through n0 and n1; n2 is killed once they are under way.
    let (first_tx, mut first_rx) = tokio::sync::mpsc::channel::<()>(16);
    let mut readers = Vec::new();
    for i in 0..16 {
        let client = cluster.nodes[i % 2].client(&bucket);
        let (body, first_tx) = (body.clone(), first_tx.clone());
        readers.push(tokio::spawn(async move {
            let mut stream = client
                .get(&Path::from("big.bin"))
                .await
                .expect("get")
                .into_stream();
            let mut got = Vec::with_capacity(body.len());
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.expect("a chunk of the stream");
                if got.is_empty() {
                    let _ = first_tx.send(()).await;
                }
                got.extend_from_slice(&chunk);
            }
            assert!(got == *body, "stream {i} read wrong bytes");
        }));
    }
    drop(first_tx);
    first_rx.recv().await.expect("a reader started");
    cluster.nodes[2].kill();
    for reader in readers {
        reader
            .await
            .expect("every GET completes with the right bytes");
    }

    // Back again: it rejoins and owns blocks again, once n0 sees this
    // incarnation of it.
    cluster.nodes[2].restart();
    cluster.wait_for_members(3);
    let incarnation = |admin: &str| {
        let (_, body) = curl(&[&format!("{admin}/cluster/status")]);
        let value: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        value["members"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|m| m["id"] == "n2")
            .map(|m| m["incarnation"].as_str().unwrap_or_default().to_string())
    };
    let current = incarnation(&cluster.nodes[2].admin());
    wait_until("n0 sees the restarted n2", || {
        incarnation(&cluster.nodes[0].admin()) == current
    });
    let served_before = metric(&cluster.nodes[2].admin(), "ferry_peer_served_total", "");
    let after = pattern(4, 16 * MIB);
    put(
        cluster.nodes[0].client(&bucket).as_ref(),
        "after.bin",
        &after,
    )
    .await;
    assert!(get(cluster.nodes[0].client(&bucket).as_ref(), "after.bin").await == after);
    assert!(
        metric(&cluster.nodes[2].admin(), "ferry_peer_served_total", "") > served_before,
        "the restarted node was not asked for any block"
    );
}

fn signed_request(address: &str, secret: &str, time_ms: i64, query: &str) -> Vec<String> {
    let (headers, url) = signed_headers(address, secret, 1, time_ms, query);
    let mut args: Vec<String> = headers
        .into_iter()
        .flat_map(|(name, value)| ["-H".to_string(), format!("{name}: {value}")])
        .collect();
    args.push(url);
    args
}

/// A peer `get` of `query` signed with `secret`, in `protocol`: its
/// headers and its URL.
fn signed_headers(
    address: &str,
    secret: &str,
    protocol: u32,
    time_ms: i64,
    query: &str,
) -> (Vec<(&'static str, String)>, String) {
    let signature = wire::Signed {
        method: "GET",
        path: wire::PATH,
        query,
        time_ms,
        verb: "get",
        priority: "demand",
        node: "tester",
    }
    .sign(secret.as_bytes());
    (
        vec![
            (wire::H_PROTOCOL, protocol.to_string()),
            (wire::H_VERB, "get".into()),
            (wire::H_PRIORITY, "demand".into()),
            (wire::H_NODE, "tester".into()),
            (wire::H_TIME, time_ms.to_string()),
            (wire::H_SIGNATURE, signature),
        ],
        format!("http://{address}{}?{query}", wire::PATH),
    )
}

/// The path, under `root`, of the one file below `root/blobs`.
fn only_blob(root: &FsPath) -> String {
    let mut found = Vec::new();
    let mut dirs = vec![root.join("blobs")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("read the store") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                found.push(path);
            }
        }
    }
    assert_eq!(found.len(), 1, "blobs in the store: {found:?}");
    let relative = found[0].strip_prefix(root).expect("under the store");
    relative.to_string_lossy().into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_peer_protocols_are_answered_each_with_its_own_mac() {
    let cluster = TestCluster::start(&[100]);
    let bucket = unique("b");
    create_bucket(&cluster.nodes[0].server().endpoint, &bucket).await;
    let body = pattern(3, MIB);
    put(cluster.nodes[0].client(&bucket).as_ref(), "m.bin", &body).await;
    let addr = BlockAddr {
        store: "data".into(),
        blob: only_blob(cluster.store.path()),
        version: String::new(),
        block_size: MIB as u64,
        index: 0,
        len: MIB as u64,
        pinned: false,
    };
    let query = wire::query(&addr, &(0..MIB as u64));
    let address = members(&cluster.nodes[0].admin())
        .into_iter()
        .map(|(_, _, address)| address)
        .next()
        .expect("n0's address");
    let client = reqwest::Client::new();
    // Protocol 2 twice: the second answer's MAC covers the digest the
    // node kept from the first.
    for protocol in [1, 2, 2] {
        let (headers, url) = signed_headers(&address, SECRET, protocol, wire::now_ms(), &query);
        let signature = headers
            .iter()
            .find(|(name, _)| *name == wire::H_SIGNATURE)
            .map(|(_, value)| value.clone())
            .expect("signed");
        let mut request = client.get(url).header(wire::H_WANT_MAC, "1");
        for (name, value) in headers {
            request = request.header(name, value);
        }
        let answer = request.send().await.expect("peer answers");
        assert_eq!(answer.status().as_u16(), 200, "protocol {protocol}");
        let header = |name: &str| {
            answer
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let checksum = header(wire::H_CHECKSUM);
        let cached = header(wire::H_CACHED).unwrap_or_default();
        let mac = header(wire::H_ANSWER_MAC).expect("a MAC was asked for");
        let bytes = answer.bytes().await.expect("the block");
        assert!(bytes == body, "protocol {protocol}: the block's bytes");
        // Protocol 1 carries xxh3 beside its HMAC; protocol 2's keyed
        // BLAKE3 MAC covers accidents too, so it carries no checksum.
        match protocol {
            1 => assert_eq!(checksum, Some(wire::checksum(&bytes))),
            _ => assert_eq!(checksum, None, "protocol 2 answers carry no checksum"),
        }
        let verifies = |as_protocol: u32| {
            let mut check =
                wire::AnswerMac::new(SECRET.as_bytes(), as_protocol, &signature, 200, "", &cached);
            check.update(&bytes);
            check.verify(&mac)
        };
        assert!(verifies(protocol), "protocol {protocol}: its MAC verifies");
        assert!(
            !verifies(3 - protocol),
            "protocol {protocol}: the other protocol's MAC must not verify"
        );
    }
    let admin = cluster.nodes[0].admin();
    let digests = |outcome: &str| {
        metric(
            &admin,
            "ferry_peer_answer_digests_total",
            &format!("outcome=\"{outcome}\""),
        )
    };
    assert_eq!(
        (digests("computed"), digests("kept")),
        (1.0, 1.0),
        "the block was hashed once for two protocol-2 answers"
    );
}

/// A member that is not a Ferry: it answers every request with `answer`
/// (or never, when `None`), registered in the cluster's membership with a
/// weight that makes it the top choice for nearly every block.
fn fake_member(cluster: &str, id: &str, answer: Option<&'static [u8]>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = listener.local_addr().expect("addr").to_string();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            match answer {
                Some(bytes) => {
                    use std::io::{Read, Write};
                    // The whole request first: closing with unread bytes
                    // would reset the connection before the answer is read.
                    let mut request = Vec::new();
                    let mut buf = [0u8; 4096];
                    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => request.extend_from_slice(&buf[..n]),
                        }
                    }
                    let _ = stream.write_all(bytes);
                    let _ = stream.flush();
                }
                // Hangs: keeps the connection open and silent.
                None => held.push(stream),
            }
        }
    });
    let record = serde_json::json!({
        "id": id, "address": address, "weight": 1_000_000, "block_size": MIB,
        "protocol_min": 1, "protocol_max": 1, "stores": "", "heartbeat_ms": 0,
    })
    .to_string();
    let prefix = format!("ferry-cluster:{cluster}");
    for args in [
        vec!["set".to_string(), format!("{prefix}:node:{id}"), record],
        vec![
            "zadd".to_string(),
            format!("{prefix}:nodes"),
            "99999999999999".to_string(),
            id.to_string(),
        ],
    ] {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = redis_cli(&redis_url(), &args);
        assert!(out.status.success());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn peers_refuse_bad_requests_and_reads_survive_bad_peers() {
    // A short answer timeout, so the silent member costs little.
    let cluster = TestCluster::start_with(&[100, 100], r#"request_timeout = "2s""#);
    let bucket = unique("b");
    create_bucket(&cluster.nodes[0].server().endpoint, &bucket).await;
    let address = members(&cluster.nodes[1].admin())
        .into_iter()
        .find(|(id, _, _)| id == "n1")
        .map(|(_, _, address)| address)
        .expect("n1's address");
    let addr = BlockAddr {
        store: "data".into(),
        blob: "blobs/none".into(),
        version: String::new(),
        block_size: MIB as u64,
        index: 0,
        len: MIB as u64,
        pinned: false,
    };
    let query = wire::query(&addr, &(0..10));
    let not_a_blob = wire::query(
        &BlockAddr {
            blob: "credentials.toml".into(),
            ..addr.clone()
        },
        &(0..10),
    );
    let other_size = wire::query(
        &BlockAddr {
            block_size: 2 * MIB as u64,
            ..addr.clone()
        },
        &(0..10),
    );
    let now = wire::now_ms();
    let url = format!("http://{address}{}?{query}", wire::PATH);
    let cases: Vec<(&str, Vec<String>, u16)> = vec![
        ("no authentication", vec![url.clone()], 403),
        (
            "wrong secret",
            signed_request(&address, "not-the-cluster-secret!!", now, &query),
            403,
        ),
        (
            "expired timestamp",
            signed_request(&address, SECRET, now - 120_000, &query),
            403,
        ),
        (
            "malformed address",
            signed_request(&address, SECRET, now, "store=data&blob=x&len=oops"),
            400,
        ),
        // Authentic, for a blob that does not exist: typed, not a failure.
        (
            "missing blob",
            signed_request(&address, SECRET, now, &query),
            404,
        ),
        // Authentic, for a key of the volume's store that is not a blob
        // (the node's generated credentials, a metadata dump): refused.
        (
            "not a blob key",
            signed_request(&address, SECRET, now, &not_a_blob),
            403,
        ),
        // Authentic, for a block of another size than the cluster's.
        (
            "another block size",
            signed_request(&address, SECRET, now, &other_size),
            400,
        ),
    ];
    let temp = std::env::temp_dir();
    for (what, args, expected) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (status, body) = curl(&args);
        assert_eq!(status, expected, "{what}: {body}");
        assert!(
            !body.contains(&*temp.to_string_lossy()),
            "{what}: the answer names a path on the node: {body}"
        );
    }
    let refused = metric(&cluster.nodes[1].admin(), "ferry_peer_refused_total", "");
    assert_eq!(refused, 6.0, "refusals counted");

    // Three members that answer garbage, a short body, or nothing, top of
    // the ranking for nearly every block: reads still get the right bytes.
    fake_member(
        &cluster.name,
        "garbage",
        Some(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\nx-ferry-checksum: 0000000000000000\r\nconnection: close\r\n\r\nnot-block!"),
    );
    fake_member(
        &cluster.name,
        "short",
        Some(b"HTTP/1.1 200 OK\r\ncontent-length: 1048576\r\nconnection: close\r\n\r\nonly this"),
    );
    fake_member(&cluster.name, "hangs", None);
    cluster.wait_for_members(5);
    let before = store_reads(&cluster);
    let body = pattern(5, 6 * MIB);
    put(cluster.nodes[0].client(&bucket).as_ref(), "m.bin", &body).await;
    assert!(get(cluster.nodes[0].client(&bucket).as_ref(), "m.bin").await == body);
    assert!(get(cluster.nodes[1].client(&bucket).as_ref(), "m.bin").await == body);
    let failed: f64 = cluster
        .nodes
        .iter()
        .map(|n| {
            metric(
                &n.admin(),
                "ferry_peer_requests_total",
                "outcome=\"failed\"",
            )
        })
        .sum();
    assert!(
        failed >= 3.0,
        "bad peers were not tried and refused ({failed})"
    );
    // (Which answer each bad member gave is checked one by one in the
    // peer client's own tests.)
    // Each real node loads a block at most once (normally one of them
    // does; under load a timed-out peer may be routed around, and then
    // the other loads it too).
    let reads = store_reads(&cluster) - before;
    assert!(
        (6.0..=12.0).contains(&reads),
        "{reads} store reads for 6 blocks on 2 nodes"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_member_forging_blocks_with_their_right_checksums_serves_nothing() {
    let cluster = TestCluster::start(&[100, 100]);
    let bucket = unique("b");
    create_bucket(&cluster.nodes[0].server().endpoint, &bucket).await;
    // A member top of the ranking for nearly every block, answering a
    // whole block of other bytes with their right checksum: only the
    // answer's MAC, which it cannot make without the secret, tells it
    // from a member.
    let forged = vec![b'X'; MIB];
    let answer = format!(
        "HTTP/1.1 200 OK\r\ncontent-length: {MIB}\r\n{}: {}\r\nconnection: close\r\n\r\n",
        wire::H_CHECKSUM,
        wire::checksum(&forged)
    );
    let answer: &'static [u8] =
        Box::leak([answer.into_bytes(), forged].concat().into_boxed_slice());
    fake_member(&cluster.name, "forger", Some(answer));
    cluster.wait_for_members(3);
    let body = pattern(8, 6 * MIB);
    put(cluster.nodes[0].client(&bucket).as_ref(), "m.bin", &body).await;
    for node in &cluster.nodes {
        assert!(
            get(node.client(&bucket).as_ref(), "m.bin").await == body,
            "{} served the forger's bytes",
            node.id
        );
    }
    let refused: f64 = cluster
        .nodes
        .iter()
        .map(|n| metric(&n.admin(), "ferry_peer_corrupt_answers_total", ""))
        .sum();
    assert!(refused >= 1.0, "the forger was never asked");
}

/// A client-only node `id` of `cluster` (it owns nothing) with
/// `extra_cache` lines and a memory tier of `memory` (default 96 MiB),
/// once it sees every member.
fn start_reader(cluster: &TestCluster, id: &str, extra_cache: &str, memory: Option<&str>) -> Node {
    let reader = Node::start(&Spec {
        cluster: &cluster.name,
        store: cluster.store.path(),
        id,
        weight: 100,
        block_size: "1MiB",
        extra_cluster: "serve = false",
        membership: None,
        extra_cache,
        memory,
    });
    wait_until("the client-only node sees the members", || {
        members(&reader.admin()).len() == cluster.nodes.len()
    });
    reader
}

/// A node that owns nothing, with a memory tier of four blocks: what it
/// receives from peers is evicted as it reads, and the buffers of evicted
/// blocks carry the next ones. Every byte stays right.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn blocks_from_peers_reuse_the_buffers_of_evicted_ones_and_stay_right() {
    let cluster = TestCluster::start(&[100]);
    let reader = start_reader(&cluster, "reader", "", Some("4MiB"));
    let bucket = unique("b");
    create_bucket(&cluster.nodes[0].server().endpoint, &bucket).await;
    let body = pattern(9, 24 * MIB);
    put(cluster.nodes[0].client(&bucket).as_ref(), "m.bin", &body).await;
    let store = reader.client(&bucket);
    for pass in 0..2 {
        assert!(
            get(store.as_ref(), "m.bin").await == body,
            "pass {pass}: wrong bytes"
        );
    }
    // Ranged readers at once, each across a block boundary.
    let readers = (0..8u64).map(|i| {
        let store = store.clone();
        let start = i * 3 * MIB as u64 + 12_345;
        async move {
            let range = start..start + 2 * MIB as u64;
            let got = store
                .get_range(&Path::from("m.bin"), range.clone())
                .await
                .expect("ranged GET");
            (range, got)
        }
    });
    for (range, got) in futures::future::join_all(readers).await {
        let (start, end) = (range.start as usize, range.end as usize);
        assert!(got[..] == body[start..end], "range {range:?}: wrong bytes");
    }
    let reused = metric(
        &reader.admin(),
        "ferry_block_buffers_total",
        "pool=\"peer\",outcome=\"reused\"",
    );
    assert!(reused > 0.0, "no block buffer was used again");
}

/// A node that owns none of an object asks its owner for just the bytes
/// each read serves, and keeps in memory only what it read ahead and no
/// read took yet: its memory stays for the blocks it owns.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_that_owns_nothing_fetches_only_what_it_serves_and_keeps_none_of_it() {
    let cluster = TestCluster::start(&[100]);
    // A window of two blocks, so reads a few blocks apart are random.
    let reader = start_reader(&cluster, "reader", "readahead = \"2MiB\"", Some("64MiB"));
    let bucket = unique("b");
    create_bucket(&cluster.nodes[0].server().endpoint, &bucket).await;
    let size = 24 * MIB;
    let body = pattern(12, size);
    put(cluster.nodes[0].client(&bucket).as_ref(), "m.bin", &body).await;
    let store = reader.client(&bucket);
    let received = || metric(&reader.admin(), "ferry_peer_bytes_received_total", "");
    let in_memory = || {
        metric(
            &reader.admin(),
            "foyer_memory_usage",
            "name=\"ferry-blocks\"",
        )
    };

    // Small reads all over the object, each 7 or 16 blocks from the one
    // before, some across a block boundary: a whole block fetched for
    // each would move about ten times the bytes. (Not the first block:
    // the first small read there prefetches it whole, for the tensors
    // after a model's header.)
    let mut served = 0.0;
    for i in 0..40u64 {
        let start = (1 + i * 7 % 22) * MIB as u64 + (i * 104_729) % MIB as u64;
        let range = start..start + 20_000 + (i * 6_007) % 250_000;
        let got = store
            .get_range(&Path::from("m.bin"), range.clone())
            .await
            .expect("ranged GET");
        let (from, to) = (range.start as usize, range.end as usize);
        assert!(got[..] == body[from..to], "range {range:?}: wrong bytes");
        served += got.len() as f64;
    }
    let small = received();
    assert!(
        small <= served * 1.05,
        "{small} peer bytes received for {served} served by small reads"
    );
    assert!(
        in_memory() < MIB as f64,
        "small reads left {} bytes in memory",
        in_memory()
    );

    // A loader's sequential ranged reads are read ahead whole blocks at a
    // time, each dropped from memory once a read took it.
    for start in (0..size).step_by(2 * MIB) {
        let range = start as u64..(start + 2 * MIB).min(size) as u64;
        let got = store
            .get_range(&Path::from("m.bin"), range.clone())
            .await
            .expect("ranged GET");
        assert!(
            got[..] == body[start..range.end as usize],
            "range {range:?}: wrong bytes"
        );
    }
    assert!(
        metric(&reader.admin(), "ferry_readahead_blocks_issued_total", "") > 0.0,
        "the sequential reads were not read ahead"
    );
    let streamed = received() - small;
    assert!(
        streamed <= size as f64 * 1.05,
        "{streamed} peer bytes received for a stream of {size}"
    );
    // A prefetch that lost the race with the read that needed it may be
    // left until it is evicted: at most a couple of blocks.
    assert!(
        in_memory() <= 2.0 * MIB as f64,
        "the stream left {} bytes in memory",
        in_memory()
    );
    assert_eq!(
        metric(&reader.admin(), "ferry_store_get_requests_total", ""),
        0.0,
        "the reader read the store itself"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_another_block_size_is_refused_at_start() {
    let cluster = TestCluster::start(&[100]);
    let data = temp_dir();
    let config = config(
        &Spec {
            cluster: &cluster.name,
            store: cluster.store.path(),
            id: "odd",
            weight: 100,
            block_size: "2MiB",
            extra_cluster: "",
            membership: None,
            extra_cache: "",
            memory: None,
        },
        data.path(),
    );
    let out = common::ferry()
        .arg("serve")
        .arg("--data-dir")
        .arg(data.path())
        .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
        .arg("--config")
        .arg(&config)
        .env("FERRY_ACCESS_KEY", ACCESS_KEY)
        .env("FERRY_SECRET_KEY", SECRET_KEY)
        .output()
        .expect("run ferry");
    assert!(
        !out.status.success(),
        "a node with another block size joined"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("block_size") && stderr.contains("2097152") && stderr.contains("1048576"),
        "the error does not say which value differs: {stderr}"
    );
    assert_eq!(members(&cluster.nodes[0].admin()).len(), 1);
}

/// Runs `ferry ARGS` with the admin token `token` (or none): whether it
/// succeeded, and what it printed.
fn ferry_admin(args: &[&str], token: Option<&str>) -> (bool, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ferry"));
    command.args(args).env_remove("FERRY_ADMIN_TOKEN");
    if let Some(token) = token {
        command.env("FERRY_ADMIN_TOKEN", token);
    }
    let out = command.output().expect("run ferry");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn ferry_cache(args: &[&str], admin: &str, token: Option<&str>) -> (bool, String) {
    let mut all = vec!["cache"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--admin", admin]);
    ferry_admin(&all, token)
}

fn ferry_warmup(admin: &str, target: &str, extra: &[&str], token: Option<&str>) -> (bool, String) {
    let mut args = vec!["warmup", target, "--admin", admin];
    args.extend_from_slice(extra);
    ferry_admin(&args, token)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn warmup_loads_a_prefix_into_its_owners_once() {
    let cluster = TestCluster::start(&[100, 200, 300]);
    let bucket = unique("b");
    create_bucket(&cluster.nodes[0].server().endpoint, &bucket).await;
    let client = cluster.nodes[0].client(&bucket);
    let mut shards = Vec::new();
    for i in 0..3u8 {
        let body = pattern(20 + i, 4 * MIB);
        put(
            client.as_ref(),
            &format!("llm/shard-{i}.safetensors"),
            &body,
        )
        .await;
        shards.push(body);
    }
    put(client.as_ref(), "other/unrelated.bin", &pattern(1, 2 * MIB)).await;
    let admin = cluster.nodes[0].admin();
    let target = format!("{bucket}/llm/");

    let (ok, out) = ferry_warmup(&admin, &target, &[], None);
    assert!(
        !ok && out.contains("401"),
        "a warm-up without the token ran: {out}"
    );
    let (ok, out) = ferry_warmup(&admin, &target, &["--check"], Some(TOKEN));
    assert!(ok && out.contains("0.0% of 12582912 bytes"), "{out}");

    let (ok, out) = ferry_warmup(&admin, &target, &[], Some(TOKEN));
    assert!(ok, "{out}");
    assert!(
        out.contains("warmed 3 objects, 12582912 bytes") && out.contains("12582912 bytes loaded"),
        "{out}"
    );
    assert_eq!(
        store_reads(&cluster),
        12.0,
        "one store read per block of the prefix"
    );
    let (ok, out) = ferry_warmup(&admin, &target, &["--check"], Some(TOKEN));
    assert!(ok && out.contains("100.0% of 12582912 bytes"), "{out}");

    // Again: nothing to load. Then readers on any node find it warm.
    let (ok, out) = ferry_warmup(&admin, &target, &[], Some(TOKEN));
    assert!(
        ok && out.contains("0 bytes loaded from the store, 12582912 already cached"),
        "{out}"
    );
    for node in &cluster.nodes {
        for (i, body) in shards.iter().enumerate() {
            let got = get(
                node.client(&bucket).as_ref(),
                &format!("llm/shard-{i}.safetensors"),
            )
            .await;
            assert!(got == *body);
        }
    }
    assert_eq!(
        store_reads(&cluster),
        12.0,
        "a warmed prefix was read from the store"
    );
}

/// A retired model version leaves every member: after `ferry cache evict`
/// of its prefix, a check finds none of it cached, also after a killed
/// node comes back (foyer's tombstones), while another prefix stays warm;
/// and reading it again fetches it from the store again, right.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn evicting_a_prefix_drops_it_from_every_member_for_good() {
    let mut cluster = TestCluster::start(&[100, 100, 100]);
    // `cluster status` shows what each member's tiers hold.
    let (_, body) = curl(&[&format!("{}/cluster/status", cluster.nodes[0].admin())]);
    let status: serde_json::Value = serde_json::from_str(&body).expect("status JSON");
    for member in status["members"].as_array().expect("members") {
        assert!(member["capacity"].as_u64() > Some(0), "{member}");
    }
    let bucket = unique("b");
    create_bucket(&cluster.nodes[0].server().endpoint, &bucket).await;
    let client = cluster.nodes[0].client(&bucket);
    let old = pattern(31, 8 * MIB);
    put(client.as_ref(), "v1/model.safetensors", &old).await;
    put(
        client.as_ref(),
        "v2/model.safetensors",
        &pattern(32, 4 * MIB),
    )
    .await;
    let admin = cluster.nodes[0].admin();
    for prefix in ["v1/", "v2/"] {
        let (ok, out) = ferry_warmup(&admin, &format!("{bucket}/{prefix}"), &[], Some(TOKEN));
        assert!(ok, "{out}");
    }
    // Every node reads v1 once, so non-owners hold blocks in memory too.
    for node in &cluster.nodes {
        assert!(get(node.client(&bucket).as_ref(), "v1/model.safetensors").await == old);
    }
    let v1 = format!("{bucket}/v1/");
    let (ok, out) = ferry_cache(&["evict", &v1], &admin, None);
    assert!(
        !ok && out.contains("401"),
        "an eviction without the token ran: {out}"
    );
    let (ok, out) = ferry_cache(&["evict", &v1], &admin, Some(TOKEN));
    assert!(
        ok && out.contains("evicted 1 objects, 8388608 bytes: 8388608 bytes were cached"),
        "{out}"
    );
    let (ok, out) = ferry_warmup(&admin, &v1, &["--check"], Some(TOKEN));
    assert!(ok && out.contains("0.0% of 8388608 bytes"), "{out}");
    let (ok, out) = ferry_warmup(&admin, &format!("{bucket}/v2/"), &["--check"], Some(TOKEN));
    assert!(
        ok && out.contains("100.0% of 4194304 bytes"),
        "another prefix stays: {out}"
    );

    // A killed node recovers its disk tier without the evicted blocks.
    cluster.nodes[1].kill();
    cluster.nodes[1].restart();
    cluster.wait_for_members(3);
    // Asked through the restarted node: it probes its own recovered tier
    // for the blocks it owns.
    let (ok, out) = ferry_warmup(&cluster.nodes[1].admin(), &v1, &["--check"], Some(TOKEN));
    assert!(
        ok && out.contains("0.0% of 8388608 bytes"),
        "after a restart: {out}"
    );
    let (ok, out) = ferry_warmup(
        &cluster.nodes[1].admin(),
        &format!("{bucket}/v2/"),
        &["--check"],
        Some(TOKEN),
    );
    assert!(
        ok && out.contains("100.0% of 4194304 bytes"),
        "the restarted node kept the rest: {out}"
    );

    let before = store_reads(&cluster);
    assert!(
        get(
            cluster.nodes[2].client(&bucket).as_ref(),
            "v1/model.safetensors"
        )
        .await
            == old
    );
    assert_eq!(
        store_reads(&cluster) - before,
        8.0,
        "an evicted prefix is read from the store again, once per block"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_two_replicas_a_lost_node_loses_no_hit() {
    let mut cluster = TestCluster::start_with(&[100, 100, 100], "replicas = 2");
    let bucket = unique("b");
    create_bucket(&cluster.nodes[0].server().endpoint, &bucket).await;
    let body = pattern(11, 12 * MIB);
    put(cluster.nodes[0].client(&bucket).as_ref(), "m.bin", &body).await;
    let (ok, out) = ferry_warmup(
        &cluster.nodes[0].admin(),
        &format!("{bucket}/m.bin"),
        &[],
        Some(TOKEN),
    );
    assert!(ok, "{out}");
    // Both owners of every block hold it; only the top one read the store.
    assert_eq!(store_reads(&cluster), 12.0);
    cluster.nodes[2].kill();
    // What the survivors read from the store from now on.
    let before = store_reads(&cluster);
    for node in &cluster.nodes[..2] {
        assert!(get(node.client(&bucket).as_ref(), "m.bin").await == body);
    }
    assert_eq!(
        store_reads(&cluster),
        before,
        "a block missed after losing one of its two owners"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_membership_outage_keeps_the_last_view() {
    // A Redis of this test's own, without persistence, for the membership.
    let mut redis = RedisServer::start();
    let name = unique("cl");
    let store = temp_dir();
    let url = redis.url();
    let nodes: Vec<Node> = (0..2)
        .map(|i| {
            Node::start(&Spec {
                cluster: &name,
                store: store.path(),
                id: &format!("n{i}"),
                weight: 100,
                block_size: "1MiB",
                extra_cluster: "",
                membership: Some(&url),
                extra_cache: "",
                memory: None,
            })
        })
        .collect();
    let cluster = TestCluster { name, store, nodes };
    cluster.wait_for_members(2);
    let bucket = unique("b");
    create_bucket(&cluster.nodes[0].server().endpoint, &bucket).await;

    redis.kill();
    // Longer than a heartbeat's TTL: a node that dropped expired members
    // on its own would now see itself alone.
    let outage = Instant::now();
    while outage.elapsed() < Duration::from_secs(7) {
        for node in &cluster.nodes {
            assert_eq!(
                members(&node.admin()).len(),
                2,
                "{} shrank its view",
                node.id
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    // And it still reads through its peer.
    let body = pattern(8, 8 * MIB);
    put(cluster.nodes[0].client(&bucket).as_ref(), "m.bin", &body).await;
    assert!(get(cluster.nodes[0].client(&bucket).as_ref(), "m.bin").await == body);
    assert!(metric(&cluster.nodes[1].admin(), "ferry_peer_served_total", "") > 0.0);

    // Redis back (empty, same port): the next heartbeats fill it again.
    redis.restart();
    wait_until("heartbeats are back in redis", || {
        let out = redis.cli(&["zcard", &format!("ferry-cluster:{}:nodes", cluster.name)]);
        String::from_utf8_lossy(&out.stdout).trim() == "2"
    });
}

/// A signed ranged GET of the first bytes of a key, as a loader reads a
/// safetensors header length.
fn read_header(node: &Node, bucket: &str, key: &str) -> Vec<u8> {
    let answer = common::signed_curl(
        &node.server().endpoint,
        (ACCESS_KEY, SECRET_KEY),
        &["-H", "Range: bytes=0-7"],
        &format!("/{bucket}/{key}"),
    );
    assert_eq!(answer.status, 206, "{}", answer.text());
    answer.body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_first_header_read_warms_the_whole_model_once_for_the_cluster() {
    let cluster = TestCluster::start_configured(
        &[100, 100, 100],
        "",
        r#"warm_on_open = ["*.safetensors"]"#,
        None,
    );
    let bucket = unique("b");
    create_bucket(&cluster.nodes[0].server().endpoint, &bucket).await;
    let model = pattern(30, 8 * MIB);
    let other = pattern(31, 8 * MIB);
    let client = cluster.nodes[0].client(&bucket);
    put(client.as_ref(), "llm/model.safetensors", &model).await;
    put(client.as_ref(), "llm/other.bin", &other).await;

    assert_eq!(
        read_header(&cluster.nodes[0], &bucket, "llm/model.safetensors"),
        model[..8]
    );
    // Its warm-up loads all 8 blocks into their owners behind it, each
    // from the store once. The 8-byte read itself is answered directly
    // (one more store read) unless the warm-up loaded block 0 first.
    let (admin, target) = (
        cluster.nodes[0].admin(),
        format!("{bucket}/llm/model.safetensors"),
    );
    wait_until("the model is warm on its owners", || {
        let (ok, out) = ferry_warmup(&admin, &target, &["--check"], Some(TOKEN));
        ok && out.contains("100.0% of 8388608 bytes")
    });
    let warmed = store_reads(&cluster);
    assert!(
        (8.0..=9.0).contains(&warmed),
        "{warmed} store reads to warm 8 blocks"
    );
    for node in &cluster.nodes {
        assert!(get(node.client(&bucket).as_ref(), "llm/model.safetensors").await == model);
    }
    assert_eq!(
        store_reads(&cluster),
        warmed,
        "a warmed model was read from the store"
    );
    // Another node's first header read of the same version starts nothing.
    read_header(&cluster.nodes[2], &bucket, "llm/model.safetensors");
    let started: f64 = cluster
        .nodes
        .iter()
        .map(|n| {
            metric(
                &n.admin(),
                "ferry_warm_on_open_total",
                "outcome=\"started\"",
            )
        })
        .sum();
    assert_eq!(
        started, 1.0,
        "the warm-up ran more than once in the cluster"
    );
    // A key outside the patterns is not warmed: its header costs the
    // direct read and the prefetch of its first block, as on one node.
    let before = store_reads(&cluster);
    read_header(&cluster.nodes[1], &bucket, "llm/other.bin");
    wait_until("the header's block is prefetched", || {
        store_reads(&cluster) >= before + 2.0
    });
    let warm_events: f64 = cluster
        .nodes
        .iter()
        .map(|n| metric(&n.admin(), "ferry_warm_on_open_total", ""))
        .sum();
    // Started on n0; n1 and n2 each found it started (once each).
    assert_eq!(warm_events, 3.0, "other.bin's header started a warm-up");
    assert_eq!(store_reads(&cluster), before + 2.0);
}

fn redis_exists(key: &str) -> bool {
    let out = redis_cli(&redis_url(), &["exists", key]);
    String::from_utf8_lossy(&out.stdout).trim() == "1"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn client_only_nodes_own_nothing_weights_survive_restarts_and_a_stop_leaves_at_once() {
    let mut cluster = TestCluster::start(&[100, 100]);
    // It reads the membership but is never in it.
    let client_only = start_reader(&cluster, "function", "", None);
    assert!(
        members(&cluster.nodes[0].admin())
            .iter()
            .all(|(id, _, _)| id != "function")
    );
    let bucket = unique("b");
    create_bucket(&cluster.nodes[0].server().endpoint, &bucket).await;
    let body = pattern(40, 6 * MIB);
    put(cluster.nodes[0].client(&bucket).as_ref(), "m.bin", &body).await;
    assert!(get(client_only.client(&bucket).as_ref(), "m.bin").await == body);
    assert_eq!(
        metric(&client_only.admin(), "ferry_store_get_requests_total", ""),
        0.0,
        "a client-only node read the store itself"
    );
    assert_eq!(store_reads(&cluster), 6.0);
    // Every byte it served came from a peer, and nothing more (readahead
    // stops at the object's end).
    let received = metric(&client_only.admin(), "ferry_peer_bytes_received_total", "");
    let served = body.len() as f64;
    assert!(
        (served..=served * 1.05).contains(&received),
        "{received} peer bytes received for {served} served"
    );

    // A weight set at run time outlives a restart of the node.
    set_weight(&cluster.nodes[0].admin(), "n1", 0);
    wait_until("n0 sees n1 drained", || {
        members(&cluster.nodes[0].admin())
            .iter()
            .any(|(id, w, _)| id == "n1" && *w == 0)
    });
    let server = cluster.nodes[1].server.take().expect("n1 runs");
    assert!(server.stop().success());
    cluster.nodes[1].restart();
    wait_until("n1 is back, still drained", || {
        let view = members(&cluster.nodes[1].admin());
        view.len() == 2 && view.iter().any(|(id, w, _)| id == "n1" && *w == 0)
    });

    // SIGTERM: the heartbeat is deleted at once, not left to expire.
    let heartbeat = format!("ferry-cluster:{}:node:n1", cluster.name);
    assert!(redis_exists(&heartbeat));
    let server = cluster.nodes[1].server.take().expect("n1 runs");
    assert!(server.stop().success());
    assert!(
        !redis_exists(&heartbeat),
        "a stopped node left its heartbeat to expire"
    );
    wait_until("n0 sees n1 gone", || {
        members(&cluster.nodes[0].admin()).len() == 1
    });
}

/// A model version pinned at run time on one node stays on its owners'
/// disks through a sweep of unpinned data that evicts everything else
/// cached before it, also across a node killed and restarted; every
/// member follows the pin; unpinning takes it away.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_pinned_prefix_outlives_a_sweep_on_every_member() {
    // Half of each node's 128 MiB disk for pinned blocks; memory too
    // small to hide an eviction from the checks.
    let mut cluster =
        TestCluster::start_configured(&[100, 100, 100], "", "pin_share = 0.5", Some("8MiB"));
    let bucket = unique("b");
    create_bucket(&cluster.nodes[0].server().endpoint, &bucket).await;
    let client = cluster.nodes[0].client(&bucket);
    let kept = pattern(41, 12 * MIB);
    put(client.as_ref(), "keep/model.safetensors", &kept).await;
    put(
        client.as_ref(),
        "early/model.safetensors",
        &pattern(42, 12 * MIB),
    )
    .await;
    for i in 0..9u8 {
        put(
            client.as_ref(),
            &format!("sweep/part-{i}.bin"),
            &pattern(50 + i, 32 * MIB),
        )
        .await;
    }
    let admin = cluster.nodes[0].admin();
    let keep = format!("{bucket}/keep/");

    let (ok, out) = ferry_cache(&["pin", &keep], &admin, None);
    assert!(!ok && out.contains("401"), "a pin without the token: {out}");
    let (ok, out) = ferry_cache(&["pin", &keep], &admin, Some(TOKEN));
    assert!(
        ok && out.contains("warmed 1 objects, 12582912 bytes")
            && out.contains("100.0% in the pinned share"),
        "{out}"
    );
    // Every member follows the pin (kept in the cluster's Redis).
    for node in &cluster.nodes {
        wait_until(&format!("{} lists the pin", node.id), || {
            let (ok, out) = ferry_cache(&["pins"], &node.admin(), Some(TOKEN));
            ok && out.contains("runtime") && out.contains(&keep)
        });
    }
    let (ok, out) = ferry_warmup(&admin, &format!("{bucket}/early/"), &[], Some(TOKEN));
    assert!(ok, "{out}");
    // 288 MiB of unpinned blocks, 96 MiB per node: more than each node's
    // 64 MiB unpinned share holds.
    let (ok, out) = ferry_warmup(
        &admin,
        &format!("{bucket}/sweep/"),
        &["--force"],
        Some(TOKEN),
    );
    assert!(ok, "{out}");

    let check = |admin: &str, prefix: &str| {
        ferry_warmup(
            admin,
            &format!("{bucket}/{prefix}"),
            &["--check"],
            Some(TOKEN),
        )
    };
    let (ok, out) = check(&cluster.nodes[1].admin(), "keep/");
    assert!(
        ok && out.contains("100.0% of 12582912 bytes")
            && out.contains("100.0% in the pinned share"),
        "the pinned prefix outlived the sweep: {out}"
    );
    let (ok, out) = check(&cluster.nodes[1].admin(), "early/");
    let early_share: f64 = out
        .split('%')
        .next()
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(100.0);
    assert!(
        ok && early_share < 50.0,
        "the sweep evicted the unpinned prefix cached before it: {out}"
    );

    // Read through every node: from the owners' pinned shares, none of it
    // from the store.
    let before = store_reads(&cluster);
    for node in &cluster.nodes {
        assert!(get(node.client(&bucket).as_ref(), "keep/model.safetensors").await == kept);
    }
    assert_eq!(
        store_reads(&cluster),
        before,
        "the pinned prefix was read from the store"
    );

    // A killed node finds its pinned share again.
    cluster.nodes[2].kill();
    cluster.nodes[2].restart();
    cluster.wait_for_members(3);
    let (ok, out) = check(&cluster.nodes[2].admin(), "keep/");
    assert!(
        ok && out.contains("100.0% in the pinned share"),
        "after kill -9 and a restart: {out}"
    );

    let (ok, out) = ferry_cache(&["unpin", &keep], &admin, Some(TOKEN));
    assert!(ok && out.contains("unpinned"), "{out}");
    for node in &cluster.nodes {
        wait_until(&format!("{} drops the pin", node.id), || {
            let (ok, out) = ferry_cache(&["pins"], &node.admin(), Some(TOKEN));
            ok && !out.contains(&keep)
        });
    }
}
