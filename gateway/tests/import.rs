//! `ferry import` end to end: a gateway adopts the objects of another S3
//! server's bucket (here another Ferry over a folder) by prefix, without
//! copying them, incrementally, and never serves bytes of an object that
//! changed behind its back.

mod common;

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use futures::StreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};

const TOKEN: &str = "admin-token-for-imports";
const N: usize = 10_000;

/// A gateway with the origin's bucket `src` as the store `src` (not
/// owned), and `extra` config after it.
fn gateway_with(dir: &std::path::Path, origin: &Server, extra: &str) -> Server {
    let config = write_file(
        dir,
        "gateway.toml",
        &format!(
            r#"[stores.src]
url = "s3://src"
endpoint = "{}"
region = "us-east-1"
access_key_id = "{ACCESS_KEY}"
secret_access_key = "{SECRET_KEY}"
allow_http = true
owned = false
max_retries = 1

{extra}
"#,
            origin.endpoint
        ),
    );
    Server::start(Launch {
        config: Some(&config),
        ..Launch::new(&dir.join("data"))
    })
}

fn gateway(dir: &std::path::Path, origin: &Server) -> Server {
    gateway_with(dir, origin, &format!("[admin]\ntoken = \"{TOKEN}\""))
}

fn import(admin: &str, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .arg("import")
        .args(args)
        .args(["--admin", admin])
        .env("FERRY_ADMIN_TOKEN", TOKEN)
        .output()
        .expect("ferry import");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "ferry import failed: {text}");
    text
}

async fn put(store: &dyn ObjectStore, key: &str, body: Vec<u8>) {
    store
        .put(&Path::from(key), Bytes::from(body).into())
        .await
        .unwrap_or_else(|e| panic!("put {key}: {e}"));
}

/// An origin Ferry whose bucket `src` holds `models/{stem}{i}.bin` for
/// `i` below `count` (first-round bodies), and a client of that bucket.
async fn origin_with(
    dir: &std::path::Path,
    stem: &str,
    count: usize,
) -> (Server, Arc<dyn ObjectStore>) {
    let origin = Server::start(Launch::new(dir));
    create_bucket(&origin.endpoint, "src").await;
    let src: Arc<dyn ObjectStore> = origin.client("src");
    for i in 0..count {
        put(
            src.as_ref(),
            &format!("models/{stem}{i}.bin"),
            body_of(i, 1),
        )
        .await;
    }
    (origin, src)
}

fn body_of(i: usize, round: u8) -> Vec<u8> {
    pattern(round.wrapping_add(i as u8), 1000 + i * 37)
}

async fn keys(store: &dyn ObjectStore, prefix: &str) -> Vec<String> {
    let mut out: Vec<String> = store
        .list(Some(&Path::from(prefix)))
        .map(|m| m.expect("list").location.to_string())
        .collect()
        .await;
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn import_adopts_a_prefix_incrementally_and_pins_what_it_adopted() {
    let origin_dir = temp_dir();
    let origin = Server::start(Launch::new(origin_dir.path()));
    create_bucket(&origin.endpoint, "src").await;
    let src: Arc<dyn ObjectStore> = origin.client("src");
    futures::stream::iter(0..N)
        .for_each_concurrent(16, |i| {
            let src = src.clone();
            async move { put(src.as_ref(), &format!("models/m{i:04}.bin"), body_of(i, 1)).await }
        })
        .await;
    put(
        src.as_ref(),
        "other/not-imported.bin",
        b"elsewhere".to_vec(),
    )
    .await;

    let dir = temp_dir();
    let g = gateway(dir.path(), &origin);
    create_bucket(&g.endpoint, "mine").await;
    let mine = g.client("mine");
    // A key a user owns already, where the import would put one.
    put(
        mine.as_ref(),
        "imported/m0000.bin",
        b"the user's own".to_vec(),
    )
    .await;

    let out = import(&g.admin, &["src/models", "--to", "mine/imported"]);
    assert!(
        out.contains(&format!(
            "listed {N}, added {}, updated 0, unchanged 0, deleted 0, conflicts 1",
            N - 1
        )),
        "{out}"
    );
    assert_eq!(
        read_all(mine.as_ref(), "imported/m0000.bin").await,
        b"the user's own"
    );
    for i in [1, 150, N - 1] {
        assert_eq!(
            read_all(mine.as_ref(), &format!("imported/m{i:04}.bin")).await,
            body_of(i, 1)
        );
    }
    assert!(keys(mine.as_ref(), "other").await.is_empty());

    // Again, nothing changed: nothing is written.
    let head = mine
        .head(&Path::from("imported/m0002.bin"))
        .await
        .expect("head");
    let out = import(&g.admin, &["src/models", "--to", "mine/imported"]);
    assert!(
        out.contains(&format!("added 0, updated 0, unchanged {}", N - 1)),
        "{out}"
    );
    let again = mine
        .head(&Path::from("imported/m0002.bin"))
        .await
        .expect("head");
    assert_eq!(head.e_tag, again.e_tag);
    assert_eq!(
        head.last_modified, again.last_modified,
        "an unchanged entry was rewritten"
    );

    // Change 5, add 3, delete 2 at the source; re-import with --delete.
    for i in 10..15 {
        put(src.as_ref(), &format!("models/m{i:04}.bin"), body_of(i, 2)).await;
    }
    for i in N..N + 3 {
        put(src.as_ref(), &format!("models/m{i:04}.bin"), body_of(i, 1)).await;
    }
    for i in [20, 21] {
        src.delete(&Path::from(format!("models/m{i:04}.bin")))
            .await
            .expect("delete");
    }
    let out = import(
        &g.admin,
        &["src/models", "--to", "mine/imported", "--delete"],
    );
    assert!(
        out.contains(&format!(
            "listed {}, added 3, updated 5, unchanged {}, deleted 2, conflicts 1",
            N + 1,
            N - 1 - 5 - 2
        )),
        "{out}"
    );
    for i in 10..15 {
        assert_eq!(
            read_all(mine.as_ref(), &format!("imported/m{i:04}.bin")).await,
            body_of(i, 2)
        );
    }
    let listed = keys(mine.as_ref(), "imported").await;
    assert_eq!(listed.len(), N + 3 - 2);
    assert!(!listed.contains(&"imported/m0020.bin".to_string()));
    assert_eq!(
        read_all(mine.as_ref(), "imported/m0000.bin").await,
        b"the user's own"
    );

    // Changed at the source without a re-import: a clear error, never the
    // new (or mixed) bytes.
    put(src.as_ref(), "models/m0100.bin", body_of(100, 9)).await;
    let answer = signed_curl(
        &g.endpoint,
        (ACCESS_KEY, SECRET_KEY),
        &[],
        "/mine/imported/m0100.bin",
    );
    assert_eq!(answer.status, 409, "{}", answer.text());
    assert!(
        answer.text().contains("ObjectChangedAtSource"),
        "{}",
        answer.text()
    );
    // The entry is now known stale: the next GET is refused at once,
    // without asking the source again.
    let asked = metric(&origin.admin, "ferry_s3_requests_total", "GetObject");
    let again = signed_curl(
        &g.endpoint,
        (ACCESS_KEY, SECRET_KEY),
        &[],
        "/mine/imported/m0100.bin",
    );
    assert_eq!(again.status, 409, "{}", again.text());
    assert_eq!(
        metric(&origin.admin, "ferry_s3_requests_total", "GetObject"),
        asked,
        "a stale entry's GET must not reach the source"
    );
    // A re-import gives the key a new entry, readable again.
    import(&g.admin, &["src/models", "--to", "mine/imported"]);
    assert_eq!(
        read_all(mine.as_ref(), "imported/m0100.bin").await,
        body_of(100, 9)
    );
    // The source was never written by the import.
    assert_eq!(
        read_all(src.as_ref(), "models/m0001.bin").await,
        body_of(1, 1)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduled_import_follows_the_source_and_reports_its_last_run() {
    let origin_dir = temp_dir();
    let (origin, src) = origin_with(origin_dir.path(), "s", 5).await;
    let dir = temp_dir();
    let g = gateway_with(
        dir.path(),
        &origin,
        "[[imports]]\nfrom = \"src/models\"\nto = \"sched/models\"\ndelete = true\nevery = \"1s\"",
    );
    create_bucket(&g.endpoint, "sched").await;
    let sched = g.client("sched");
    let listed = |want: usize| {
        let sched = sched.clone();
        async move { (keys(sched.as_ref(), "models").await.len() == want).then_some(()) }
    };
    eventually("the first scheduled run", Duration::from_secs(30), || {
        listed(5)
    })
    .await;
    // Changes at the source arrive by themselves.
    put(src.as_ref(), "models/s5.bin", body_of(5, 1)).await;
    src.delete(&Path::from("models/s0.bin"))
        .await
        .expect("delete");
    eventually("a later scheduled run", Duration::from_secs(30), || async {
        let now = keys(sched.as_ref(), "models").await;
        (now.len() == 5 && now.contains(&"models/s5.bin".to_string())).then_some(())
    })
    .await;
    assert_eq!(
        read_all(sched.as_ref(), "models/s5.bin").await,
        body_of(5, 1)
    );
    let runs = metric(&g.admin, "ferry_import_runs_total", "outcome=\"ok\"");
    assert!(runs >= 2.0, "{runs}");
    let listed_last = metric(&g.admin, "ferry_import_last", "count=\"listed\"");
    assert_eq!(listed_last, 5.0);
}

/// With the cache off, reads take the same path: an imported object
/// changed at its source is refused, never served with its new bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cache_off_gateway_refuses_an_imported_object_changed_at_its_source() {
    let origin_dir = temp_dir();
    let (origin, src) = origin_with(origin_dir.path(), "c", 3).await;
    let dir = temp_dir();
    let g = gateway_with(
        dir.path(),
        &origin,
        &format!("[admin]\ntoken = \"{TOKEN}\"\n\n[cache]\nmemory = \"0\"\ndisk = \"0\""),
    );
    create_bucket(&g.endpoint, "mine").await;
    let mine = g.client("mine");
    let out = import(&g.admin, &["src/models", "--to", "mine/models"]);
    assert!(out.contains("listed 3, added 3"), "{out}");
    assert_eq!(
        read_all(mine.as_ref(), "models/c1.bin").await,
        body_of(1, 1)
    );
    put(src.as_ref(), "models/c1.bin", body_of(1, 2)).await;
    let answer = signed_curl(
        &g.endpoint,
        (ACCESS_KEY, SECRET_KEY),
        &[],
        "/mine/models/c1.bin",
    );
    assert_eq!(answer.status, 409, "{}", answer.text());
    assert!(
        answer.text().contains("ObjectChangedAtSource"),
        "{}",
        answer.text()
    );
    // The others, unchanged, are still served.
    assert_eq!(
        read_all(mine.as_ref(), "models/c2.bin").await,
        body_of(2, 1)
    );
}

/// An independent S3 server whose listings carry no ETags (s3s-fs): the
/// import asks each object's HEAD for it, and pins reads to it as usual.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_adopts_an_s3s_fs_bucket_whose_listing_has_no_etags() {
    let binary = s3s_fs_binary();
    let origin_dir = temp_dir();
    let key = ("s3s-key", "s3s-secret-key");
    let origin = S3sFs::start(&binary, origin_dir.path(), key);
    let (status, body) = curl(&[
        "-X",
        "PUT",
        "--aws-sigv4",
        "aws:amz:us-east-1:s3",
        "--user",
        &format!("{}:{}", key.0, key.1),
        "-H",
        "x-amz-content-sha256: UNSIGNED-PAYLOAD",
        &format!("{}/legacy", origin.endpoint),
    ]);
    assert_eq!(status, 200, "{body}");
    let legacy: Arc<dyn ObjectStore> = Arc::new(
        object_store::aws::AmazonS3Builder::new()
            .with_endpoint(&origin.endpoint)
            .with_allow_http(true)
            .with_region("us-east-1")
            .with_bucket_name("legacy")
            .with_access_key_id(key.0)
            .with_secret_access_key(key.1)
            .with_virtual_hosted_style_request(false)
            .build()
            .expect("client"),
    );
    for i in 0..20 {
        put(legacy.as_ref(), &format!("m/{i:02}.bin"), body_of(i, 1)).await;
    }
    let dir = temp_dir();
    let config = write_file(
        dir.path(),
        "gateway.toml",
        &format!(
            "[stores.legacy]\nurl = \"s3://legacy\"\nendpoint = \"{}\"\nregion = \"us-east-1\"\naccess_key_id = \"{}\"\nsecret_access_key = \"{}\"\nallow_http = true\nowned = false\nmax_retries = 1\n\n[admin]\ntoken = \"{TOKEN}\"\n",
            origin.endpoint, key.0, key.1
        ),
    );
    let g = Server::start(Launch {
        config: Some(&config),
        ..Launch::new(&dir.path().join("data"))
    });
    create_bucket(&g.endpoint, "mine").await;
    let mine = g.client("mine");
    let out = import(&g.admin, &["legacy/m", "--to", "mine"]);
    assert!(out.contains("listed 20, added 20"), "{out}");
    for i in [0, 7, 19] {
        assert_eq!(
            read_all(mine.as_ref(), &format!("{i:02}.bin")).await,
            body_of(i, 1)
        );
    }
    // Changed behind Ferry's back: refused, never the new bytes.
    put(legacy.as_ref(), "m/03.bin", body_of(3, 5)).await;
    let answer = signed_curl(&g.endpoint, (ACCESS_KEY, SECRET_KEY), &[], "/mine/03.bin");
    assert_eq!(answer.status, 409, "{}", answer.text());
}
