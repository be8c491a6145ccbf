//! A gateway whose cache is off (`cache.memory = 0`, `cache.disk = 0`)
//! reads through the same block path as one with a cache: along its
//! store chain, and asking the stores for no more bytes than it serves.

mod common;

use std::path::Path as FsPath;
use std::sync::Arc;

use bytes::Bytes;
use common::*;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};

const CACHE_OFF: &str = "[cache]\nmemory = \"0\"\ndisk = \"0\"\n";

/// A gateway over `near` (the volume's data store) falling back to `far`.
fn gateway(dir: &FsPath) -> Server {
    let config = write_file(
        dir,
        "gateway.toml",
        &format!(
            "[stores.data]\nurl = \"file://{near}\"\nfallback = [\"far\"]\n\n[stores.far]\nurl = \"file://{far}\"\nowned = false\n\n{CACHE_OFF}",
            near = dir.join("near").display(),
            far = dir.join("far").display(),
        ),
    );
    Server::start(Launch {
        config: Some(&config),
        ..Launch::new(&dir.join("data"))
    })
}

/// A client of bucket `models` on `g`, holding `body` as `m.bin`.
async fn with_object(g: &Server, body: &[u8]) -> Arc<dyn ObjectStore> {
    create_bucket(&g.endpoint, "models").await;
    let client = g.client("models");
    client
        .put(&Path::from("m.bin"), Bytes::copy_from_slice(body).into())
        .await
        .expect("put");
    client
}

/// The relative paths of every file under `root`.
fn files(root: &FsPath) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(dir) = todo.pop() {
        for entry in std::fs::read_dir(&dir).expect("read_dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                todo.push(path);
            } else {
                out.push(path.strip_prefix(root).expect("under root").to_path_buf());
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cache_off_gateway_falls_back_along_its_chain() {
    let dir = temp_dir();
    let g = gateway(dir.path());
    let body = pattern(7, 3 << 20);
    let client = with_object(&g, &body).await;
    // The blob leaves the first store of the chain for the second, as in
    // a mirror whose copy has not arrived: only the chain can find it.
    let near = dir.path().join("near");
    let moved = files(&near);
    assert!(
        !moved.is_empty(),
        "the PUT wrote a blob into the data store"
    );
    for rel in &moved {
        let to = dir.path().join("far").join(rel);
        std::fs::create_dir_all(to.parent().expect("parent")).expect("mkdir");
        std::fs::rename(near.join(rel), &to).expect("move the blob");
    }
    let before = metric(&g.admin, "ferry_store_fallbacks_total", "");
    assert_eq!(read_all(client.as_ref(), "m.bin").await, body);
    let part = client
        .get_range(&Path::from("m.bin"), 1_000_000..1_000_100)
        .await
        .expect("ranged get");
    assert_eq!(part.as_ref(), &body[1_000_000..1_000_100]);
    assert!(
        metric(&g.admin, "ferry_store_fallbacks_total", "to=\"far\"") > before,
        "the reads were served by the fallback store"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cache_off_gateway_reads_no_more_store_bytes_than_it_serves() {
    let dir = temp_dir();
    let g = gateway(dir.path());
    // Three 4 MiB blocks and a bit: ranges inside one block, across a
    // block boundary, at the end, and the whole object.
    let body = pattern(9, (12 << 20) + 12_345);
    let client = with_object(&g, &body).await;
    let before = metric(&g.admin, "ferry_store_bytes_read_total", "");
    let ranges = [
        0..8,
        8..100_008,
        (4 << 20) - 1000..(4 << 20) + 1000,
        body.len() - 5..body.len(),
        5_000_000..5_000_001,
    ];
    let mut served = 0;
    for range in ranges {
        let got = client
            .get_range(&Path::from("m.bin"), range.start as u64..range.end as u64)
            .await
            .expect("ranged get");
        assert_eq!(got.as_ref(), &body[range.clone()]);
        served += got.len();
    }
    assert_eq!(read_all(client.as_ref(), "m.bin").await, body);
    served += body.len();
    let read = metric(&g.admin, "ferry_store_bytes_read_total", "") - before;
    assert_eq!(
        read, served as f64,
        "without a cache the stores are asked for exactly the bytes served"
    );
}
