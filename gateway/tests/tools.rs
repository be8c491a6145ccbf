//! `ferry meta dump|load` and `ferry fsck` on real volumes.

mod common;

use bytes::Bytes;
use object_store::ObjectStoreExt;
use object_store::path::Path;

use common::*;

fn run_ok(args: &[&str], data_dir: &std::path::Path) -> std::process::Output {
    let output = ferry()
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .output()
        .expect("run ferry");
    assert!(
        output.status.success(),
        "ferry {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

#[tokio::test]
async fn a_dump_loaded_elsewhere_serves_the_same_objects_and_dumps_identically() {
    let source = temp_dir();
    let objects: Vec<(String, Vec<u8>)> = (0..5u8)
        .map(|i| {
            (
                format!("m/{i}/weights.bin"),
                pattern(i, 100_000 * usize::from(i + 1)),
            )
        })
        .collect();
    {
        let server = Server::start(Launch::new(source.path()));
        create_bucket(&server.endpoint, "models").await;
        let s3 = server.client("models");
        for (key, body) in &objects {
            s3.put(&Path::from(key.as_str()), Bytes::from(body.clone()).into())
                .await
                .expect("put");
        }
        assert!(server.stop().success());
    }
    let first = source.path().join("first.jsonl");
    run_ok(
        &["meta", "dump", "-o", first.to_str().expect("utf8")],
        source.path(),
    );

    // A second volume whose only data store is the first volume's blobs.
    let target = temp_dir();
    let config = write_file(
        target.path(),
        "ferry.toml",
        &format!(
            "[stores.data]\nurl = \"file://{}\"\n",
            source.path().join("blobs").display()
        ),
    );
    let output = ferry()
        .args(["meta", "load", "--config"])
        .arg(&config)
        .arg("--data-dir")
        .arg(target.path())
        .arg(&first)
        .output()
        .expect("load");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stderr).contains("loaded 1 buckets, 5 objects"));

    let second = target.path().join("second.jsonl");
    run_ok(
        &["meta", "dump", "-o", second.to_str().expect("utf8")],
        target.path(),
    );
    assert_eq!(
        std::fs::read(&first).expect("first"),
        std::fs::read(&second).expect("second"),
        "dump -> load -> dump is exact"
    );
    // Loading twice is refused: the namespace is no longer empty.
    let again = ferry()
        .args(["meta", "load", "--data-dir"])
        .arg(target.path())
        .arg(&first)
        .output()
        .expect("load");
    assert_eq!(again.status.code(), Some(1), "a failure, not a usage error");

    let server = Server::start(Launch {
        config: Some(&config),
        ..Launch::new(target.path())
    });
    let s3 = server.client("models");
    for (key, body) in &objects {
        let got = s3
            .get(&Path::from(key.as_str()))
            .await
            .expect("get")
            .bytes()
            .await
            .expect("body");
        assert!(&got[..] == body.as_slice(), "{key} differs after a load");
    }
}

#[tokio::test]
async fn fsck_reports_a_missing_blob_and_an_orphan_and_repair_queues_only_the_orphan() {
    let dir = temp_dir();
    {
        let server = Server::start(Launch::new(dir.path()));
        create_bucket(&server.endpoint, "vol").await;
        let s3 = server.client("vol");
        s3.put(&Path::from("keep"), Bytes::from_static(b"keep me").into())
            .await
            .expect("put");
        s3.put(&Path::from("lose"), Bytes::from_static(b"lose me").into())
            .await
            .expect("put");
        assert!(server.stop().success());
    }
    let clean = ferry()
        .args(["fsck", "--min-age", "0s", "--data-dir"])
        .arg(dir.path())
        .output()
        .expect("fsck");
    assert!(
        clean.status.success(),
        "{}",
        String::from_utf8_lossy(&clean.stdout)
    );

    // Find the blob of "lose" through a dump, delete it, and add an orphan.
    let dump = ferry()
        .args(["meta", "dump", "--data-dir"])
        .arg(dir.path())
        .output()
        .expect("dump");
    let text = String::from_utf8_lossy(&dump.stdout);
    let line = text
        .lines()
        .find(|l| l.contains("\"key\":\"lose\""))
        .expect("lose in dump");
    let record: serde_json::Value = serde_json::from_str(line).expect("json");
    let blob = record["layout"]["segments"][0]["blob"]
        .as_str()
        .expect("blob")
        .to_string();
    std::fs::remove_file(dir.path().join("blobs").join(&blob)).expect("inject missing");
    let orphan_dir = dir.path().join("blobs/blobs/zz/zz");
    std::fs::create_dir_all(&orphan_dir).expect("mkdir");
    std::fs::write(orphan_dir.join("zzzzorphan"), b"nobody").expect("inject orphan");

    let found = ferry()
        .args(["fsck", "--min-age", "0s", "--data-dir"])
        .arg(dir.path())
        .output()
        .expect("fsck");
    let report = String::from_utf8_lossy(&found.stdout);
    assert_eq!(found.status.code(), Some(3), "problems found: {report}");
    assert!(report.contains("missing: vol/lose"), "{report}");
    assert!(
        report.contains("orphan: data:blobs/zz/zz/zzzzorphan"),
        "{report}"
    );
    assert!(report.contains("1 missing, 1 orphaned"), "{report}");

    let repaired = ferry()
        .args(["fsck", "--repair", "--min-age", "0s", "--data-dir"])
        .arg(dir.path())
        .output()
        .expect("fsck --repair");
    assert!(String::from_utf8_lossy(&repaired.stdout).contains("queued for the collector"));
    // The referenced blob of "keep" is untouched, and the orphan waits for the grace period.
    assert!(orphan_dir.join("zzzzorphan").exists());
    let server = Server::start(Launch::new(dir.path()));
    let s3 = server.client("vol");
    let kept = s3
        .get(&Path::from("keep"))
        .await
        .expect("get")
        .bytes()
        .await
        .expect("body");
    assert_eq!(&kept[..], b"keep me");
}

#[tokio::test]
async fn scheduled_dumps_land_in_the_data_store_and_old_ones_are_pruned() {
    let dir = temp_dir();
    let config = write_file(
        dir.path(),
        "ferry.toml",
        "[volume]\ndump_interval = \"1s\"\ndump_keep = 2\n",
    );
    let server = Server::start(Launch {
        config: Some(&config),
        ..Launch::new(dir.path())
    });
    create_bucket(&server.endpoint, "dumped").await;
    server
        .client("dumped")
        .put(&Path::from("k"), Bytes::from_static(b"v").into())
        .await
        .expect("put");
    let dumps = dir.path().join("blobs/ferry-dumps");
    let list = || -> Vec<std::path::PathBuf> {
        let mut found: Vec<_> = std::fs::read_dir(&dumps)
            .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        found.sort();
        found
    };
    // Poll the folder (dumps are time-driven); at most dump_keep remain.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut seen = std::collections::BTreeSet::new();
    while seen.len() < 3 {
        assert!(
            std::time::Instant::now() < deadline,
            "only {} dumps appeared",
            seen.len()
        );
        let now = list();
        assert!(now.len() <= 2, "more than dump_keep dumps kept: {now:?}");
        seen.extend(now);
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let newest = list().pop().expect("a dump");
    let text = std::fs::read_to_string(&newest).expect("read dump");
    assert!(text.starts_with("{\"type\":\"header\""), "{text}");
    assert!(text.contains("\"key\":\"k\""), "{text}");
}
