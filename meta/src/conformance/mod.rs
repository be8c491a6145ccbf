//! The conformance suite of the [`Meta`] seam: functions any engine must
//! pass, called from each engine's tests with a fresh, empty namespace.

pub mod model;

use std::sync::Arc;

use crate::types::*;
use crate::{Meta, MetaError};

/// Runs every conformance check on `meta`, which must start empty.
pub async fn run_all(meta: &dyn Meta) {
    buckets(meta).await;
    objects(meta).await;
    conditional_puts(meta).await;
    acls(meta).await;
    listing_order_and_delimiters(meta).await;
    pagination(meta).await;
    change_log(meta).await;
    blob_references(meta).await;
    leases(meta).await;
    multipart(meta).await;
    multipart_listing(meta).await;
    completion_expiry(meta).await;
    log_trimming(meta).await;
    mirror_registry(meta).await;
    // Last: a reset empties the namespace.
    replica(meta).await;
}

/// An entry with a fresh id whose layout is one blob named after the id.
pub fn simple_entry(etag: &str, size: u64) -> (Entry, Layout) {
    let id = uuid::Uuid::now_v7().to_string();
    let layout = Layout {
        segments: vec![Segment {
            store: "data".into(),
            blob: format!("blob-{id}"),
            offset: 0,
            len: size,
            version: String::new(),
        }],
    };
    let entry = Entry {
        id,
        size,
        etag: etag.into(),
        last_modified: now_millis(),
        ..Entry::default()
    };
    (entry, layout)
}

/// Puts a fresh one-blob entry under `key` and returns its layout.
pub async fn put_simple(meta: &dyn Meta, bucket: &str, key: &str, etag: &str) -> Layout {
    let (entry, layout) = simple_entry(etag, 3);
    meta.put(bucket, key, entry, layout.clone(), Precondition::None)
        .await
        .expect("put");
    layout
}

async fn keys_of(meta: &dyn Meta, bucket: &str, query: ListQuery) -> (Vec<String>, Vec<String>) {
    let page = meta.list(bucket, &query).await.expect("list");
    (
        page.entries.into_iter().map(|(k, _)| k).collect(),
        page.common_prefixes,
    )
}

pub async fn buckets(meta: &dyn Meta) {
    meta.create_bucket("zeta").await.expect("create zeta");
    meta.create_bucket("alpha").await.expect("create alpha");
    assert!(matches!(
        meta.create_bucket("alpha").await,
        Err(MetaError::BucketExists { .. })
    ));
    let names: Vec<String> = meta
        .list_buckets()
        .await
        .expect("list")
        .into_iter()
        .map(|b| b.name)
        .collect();
    assert_eq!(names, ["alpha", "zeta"]);
    assert_eq!(meta.bucket("alpha").await.expect("head").name, "alpha");
    assert!(matches!(
        meta.bucket("nope").await,
        Err(MetaError::NoSuchBucket { .. })
    ));

    put_simple(meta, "zeta", "k", "e1").await;
    assert!(matches!(
        meta.delete_bucket("zeta").await,
        Err(MetaError::BucketNotEmpty { .. })
    ));
    meta.delete("zeta", "k").await.expect("delete key");
    meta.delete_bucket("zeta")
        .await
        .expect("delete empty bucket");
    assert!(matches!(
        meta.delete_bucket("zeta").await,
        Err(MetaError::NoSuchBucket { .. })
    ));

    // Operations on a missing bucket say so, never NoSuchKey.
    let (entry, layout) = simple_entry("x", 1);
    assert!(matches!(
        meta.put("zeta", "k", entry, layout, Precondition::None)
            .await,
        Err(MetaError::NoSuchBucket { .. })
    ));
    assert!(matches!(
        meta.head("zeta", "k").await,
        Err(MetaError::NoSuchBucket { .. })
    ));
    assert!(matches!(
        meta.get("zeta", "k").await,
        Err(MetaError::NoSuchBucket { .. })
    ));
    assert!(matches!(
        meta.delete("zeta", "k").await,
        Err(MetaError::NoSuchBucket { .. })
    ));
    assert!(matches!(
        meta.list(
            "zeta",
            &ListQuery {
                max: 10,
                ..ListQuery::default()
            }
        )
        .await,
        Err(MetaError::NoSuchBucket { .. })
    ));
    // A bucket that shares a name prefix with another does not see its keys.
    meta.create_bucket("alpha2").await.expect("create alpha2");
    put_simple(meta, "alpha2", "k", "e").await;
    let (keys, _) = keys_of(
        meta,
        "alpha",
        ListQuery {
            max: 10,
            ..ListQuery::default()
        },
    )
    .await;
    assert!(keys.is_empty(), "alpha sees alpha2's keys: {keys:?}");
    meta.delete("alpha2", "k").await.expect("delete");
    meta.delete_bucket("alpha2").await.expect("delete alpha2");
}

pub async fn objects(meta: &dyn Meta) {
    meta.create_bucket("objects").await.expect("create");
    assert!(matches!(
        meta.head("objects", "k").await,
        Err(MetaError::NoSuchKey { .. })
    ));
    let (mut entry, layout) = simple_entry("etag-1", 3);
    entry.content_type = Some("text/plain".into());
    entry.user_metadata.insert("owner".into(), "me".into());
    entry.checksums.insert("CRC32".into(), "AAAAAA==".into());
    let outcome = meta
        .put(
            "objects",
            "k",
            entry.clone(),
            layout.clone(),
            Precondition::None,
        )
        .await
        .expect("put");
    assert!(outcome.replaced.is_none());
    assert_eq!(meta.head("objects", "k").await.expect("head"), entry);
    assert_eq!(
        meta.get("objects", "k").await.expect("get"),
        (entry.clone(), layout)
    );

    let (entry2, layout2) = simple_entry("etag-2", 5);
    let outcome = meta
        .put(
            "objects",
            "k",
            entry2.clone(),
            layout2.clone(),
            Precondition::None,
        )
        .await
        .expect("overwrite");
    assert_eq!(outcome.replaced, Some(entry));
    assert_eq!(
        meta.get("objects", "k").await.expect("get"),
        (entry2.clone(), layout2)
    );

    let seq = meta.last_seq().await.expect("seq");
    assert_eq!(
        meta.delete("objects", "k").await.expect("delete"),
        Some(entry2)
    );
    assert_eq!(
        meta.delete("objects", "k").await.expect("delete again"),
        None
    );
    assert_eq!(
        meta.last_seq().await.expect("seq"),
        seq + 1,
        "deleting an absent key logs nothing"
    );
    assert!(matches!(
        meta.get("objects", "k").await,
        Err(MetaError::NoSuchKey { .. })
    ));
}

pub async fn conditional_puts(meta: &dyn Meta) {
    meta.create_bucket("cond").await.expect("create");
    let (e, l) = simple_entry("v1", 1);
    meta.put("cond", "k", e, l, Precondition::IfAbsent)
        .await
        .expect("create-only on absent key");
    let before = meta.last_seq().await.expect("seq");
    let (e, l) = simple_entry("v2", 1);
    assert!(matches!(
        meta.put("cond", "k", e, l, Precondition::IfAbsent).await,
        Err(MetaError::PreconditionFailed { .. })
    ));
    let (e, l) = simple_entry("v2", 1);
    assert!(matches!(
        meta.put("cond", "k", e, l, Precondition::IfMatch("wrong".into()))
            .await,
        Err(MetaError::PreconditionFailed { .. })
    ));
    // Conditions that need an entry answer NoSuchKey on an absent key.
    for condition in [Precondition::IfMatch("v1".into()), Precondition::IfExists] {
        let (e, l) = simple_entry("v2", 1);
        assert!(matches!(
            meta.put("cond", "absent", e, l, condition).await,
            Err(MetaError::NoSuchKey { .. })
        ));
    }
    let (e, l) = simple_entry("v2", 1);
    assert!(matches!(
        meta.put("cond", "k", e, l, Precondition::IfNoneMatch("v1".into()))
            .await,
        Err(MetaError::PreconditionFailed { .. })
    ));
    assert_eq!(
        meta.last_seq().await.expect("seq"),
        before,
        "failed conditions log nothing"
    );
    let (e, l) = simple_entry("v2", 1);
    meta.put("cond", "k", e, l, Precondition::IfMatch("v1".into()))
        .await
        .expect("compare-and-swap with the right etag");
    assert_eq!(meta.head("cond", "k").await.expect("head").etag, "v2");
    let (e, l) = simple_entry("v3", 1);
    meta.put("cond", "k", e, l, Precondition::IfExists)
        .await
        .expect("If-Match: * on a present key");
    let (e, l) = simple_entry("v4", 1);
    meta.put("cond", "k", e, l, Precondition::IfNoneMatch("v2".into()))
        .await
        .expect("If-None-Match with another etag");
    let (e, l) = simple_entry("n1", 1);
    meta.put("cond", "new", e, l, Precondition::IfNoneMatch("x".into()))
        .await
        .expect("If-None-Match with an etag on an absent key");
    assert_eq!(meta.head("cond", "k").await.expect("head").etag, "v4");
    assert_eq!(meta.head("cond", "new").await.expect("head").etag, "n1");
}

/// Canned ACLs of buckets and objects: kept, logged, and changing nothing
/// else.
pub async fn acls(meta: &dyn Meta) {
    meta.create_bucket("acl").await.expect("create");
    assert_eq!(
        meta.bucket("acl").await.expect("bucket").acl,
        CannedAcl::Private
    );
    let before = meta.last_seq().await.expect("seq");
    meta.set_bucket_acl("acl", CannedAcl::PublicRead)
        .await
        .expect("set bucket acl");
    assert_eq!(
        meta.bucket("acl").await.expect("bucket").acl,
        CannedAcl::PublicRead
    );
    assert!(matches!(
        meta.set_bucket_acl("no-such", CannedAcl::Private).await,
        Err(MetaError::NoSuchBucket { .. })
    ));
    let layout = put_simple(meta, "acl", "k", "v1").await;
    let (entry, _) = meta.get("acl", "k").await.expect("get");
    meta.set_object_acl("acl", "k", CannedAcl::PublicRead)
        .await
        .expect("set object acl");
    let (after, kept) = meta.get("acl", "k").await.expect("get");
    assert_eq!(after.acl, CannedAcl::PublicRead);
    assert_eq!(
        Entry {
            acl: CannedAcl::Private,
            ..after
        },
        entry,
        "an ACL change keeps the entry otherwise as it was"
    );
    assert_eq!(kept, layout);
    assert_eq!(
        meta.blob_refs(&layout.blobs()[0]).await.expect("refs"),
        1,
        "an ACL change leaves references alone"
    );
    assert!(matches!(
        meta.set_object_acl("acl", "absent", CannedAcl::Private)
            .await,
        Err(MetaError::NoSuchKey { .. })
    ));
    assert!(matches!(
        meta.set_object_acl("no-such", "k", CannedAcl::Private)
            .await,
        Err(MetaError::NoSuchBucket { .. })
    ));
    let ops: Vec<ChangeOp> = meta
        .changes_since(before, 10)
        .await
        .expect("changes")
        .into_iter()
        .map(|c| c.op)
        .filter(|op| !matches!(op, ChangeOp::Put { .. }))
        .collect();
    assert_eq!(
        ops,
        [
            ChangeOp::SetBucketAcl {
                bucket: "acl".into(),
                acl: CannedAcl::PublicRead
            },
            ChangeOp::SetObjectAcl {
                bucket: "acl".into(),
                key: "k".into(),
                acl: CannedAcl::PublicRead
            },
        ]
    );
    // A bucket created with an ACL has it from the start, in the log too.
    let seq = meta
        .restore_bucket(&BucketInfo {
            acl: CannedAcl::PublicRead,
            ..BucketInfo::new("acl-public")
        })
        .await
        .expect("create public");
    assert_eq!(
        meta.bucket("acl-public").await.expect("bucket").acl,
        CannedAcl::PublicRead
    );
    assert_eq!(
        meta.changes_since(seq - 1, 1).await.expect("changes")[0].op,
        ChangeOp::CreateBucket {
            bucket: "acl-public".into(),
            acl: CannedAcl::PublicRead
        }
    );
}

/// Concurrent create-only puts of one key from many tasks: exactly one wins.
pub async fn racing_creates(meta: Arc<dyn Meta>) {
    meta.create_bucket("race").await.expect("create");
    let mut tasks = Vec::new();
    for i in 0..16 {
        let meta = meta.clone();
        tasks.push(tokio::spawn(async move {
            let (e, l) = simple_entry(&format!("writer-{i}"), 1);
            meta.put("race", "k", e, l, Precondition::IfAbsent).await
        }));
    }
    let mut wins = 0;
    for task in tasks {
        match task.await.expect("join") {
            Ok(_) => wins += 1,
            Err(MetaError::PreconditionFailed { .. }) => {}
            Err(other) => panic!("unexpected error {other}"),
        }
    }
    assert_eq!(wins, 1);
}

/// Keys of every shape S3 allows, in the byte order S3 lists them.
pub const TRICKY_KEYS: &[&str] = &[
    "",
    "a",
    "a b",
    "a-b",
    "a.txt",
    "a/",
    "a/../d",
    "a/./c",
    "a//b",
    "a/b",
    "a/b/c",
    "a0",
    "dir/",
    "dir/sub/x",
    "dir/subway",
    "\u{e9}t\u{e9}",
    "\u{65e5}\u{672c}/\u{8a9e}",
];

pub async fn listing_order_and_delimiters(meta: &dyn Meta) {
    meta.create_bucket("order").await.expect("create");
    // Insert in reverse so order comes from the engine, not insertion.
    for key in TRICKY_KEYS.iter().rev().filter(|k| !k.is_empty()) {
        put_simple(meta, "order", key, "e").await;
    }
    let expected: Vec<String> = TRICKY_KEYS
        .iter()
        .filter(|k| !k.is_empty())
        .map(|k| k.to_string())
        .collect();
    let (keys, prefixes) = keys_of(
        meta,
        "order",
        ListQuery {
            max: 1000,
            ..ListQuery::default()
        },
    )
    .await;
    assert_eq!(keys, expected, "byte order");
    assert!(prefixes.is_empty());

    let (keys, prefixes) = keys_of(
        meta,
        "order",
        ListQuery {
            delimiter: Some("/".into()),
            max: 1000,
            ..ListQuery::default()
        },
    )
    .await;
    assert_eq!(keys, ["a", "a b", "a-b", "a.txt", "a0", "\u{e9}t\u{e9}"]);
    assert_eq!(prefixes, ["a/", "dir/", "\u{65e5}\u{672c}/"]);

    let (keys, prefixes) = keys_of(
        meta,
        "order",
        ListQuery {
            prefix: "a/".into(),
            delimiter: Some("/".into()),
            max: 1000,
            ..ListQuery::default()
        },
    )
    .await;
    assert_eq!(keys, ["a/", "a/b"]);
    assert_eq!(prefixes, ["a/../", "a/./", "a//", "a/b/"]);

    // A prefix that ends mid-name.
    let (keys, prefixes) = keys_of(
        meta,
        "order",
        ListQuery {
            prefix: "dir/su".into(),
            delimiter: Some("/".into()),
            max: 1000,
            ..ListQuery::default()
        },
    )
    .await;
    assert_eq!(keys, ["dir/subway"]);
    assert_eq!(prefixes, ["dir/sub/"]);

    // A delimiter other than '/'.
    let (keys, prefixes) = keys_of(
        meta,
        "order",
        ListQuery {
            prefix: "a".into(),
            delimiter: Some(".".into()),
            max: 1000,
            ..ListQuery::default()
        },
    )
    .await;
    assert!(
        prefixes.contains(&"a.".to_string()) && prefixes.contains(&"a/.".to_string()),
        "{prefixes:?}"
    );
    assert!(!keys.contains(&"a.txt".to_string()));
}

pub async fn pagination(meta: &dyn Meta) {
    meta.create_bucket("pages").await.expect("create");
    let mut all = Vec::new();
    for d in 0..5 {
        for f in 0..5 {
            let key = format!("d{d}/f{f}");
            put_simple(meta, "pages", &key, "e").await;
            all.push(key);
        }
        let key = format!("top{d}");
        put_simple(meta, "pages", &key, "e").await;
        all.push(key);
    }
    all.sort();

    // Without a delimiter: pages of 7 give every key once, in order.
    let mut seen = Vec::new();
    let mut start_after = None;
    loop {
        let page = meta
            .list(
                "pages",
                &ListQuery {
                    max: 7,
                    start_after: start_after.clone(),
                    ..ListQuery::default()
                },
            )
            .await
            .expect("list");
        assert!(page.entries.len() <= 7);
        seen.extend(page.entries.into_iter().map(|(k, _)| k));
        if !page.truncated {
            assert!(page.next_start_after.is_none());
            break;
        }
        start_after = page.next_start_after;
        assert!(
            start_after.is_some(),
            "a truncated page says where to continue"
        );
    }
    assert_eq!(seen, all);

    // With a delimiter, pages of 2 mix prefixes and keys and never repeat.
    let mut items = Vec::new();
    let mut start_after = None;
    loop {
        let page = meta
            .list(
                "pages",
                &ListQuery {
                    delimiter: Some("/".into()),
                    max: 2,
                    start_after: start_after.clone(),
                    ..ListQuery::default()
                },
            )
            .await
            .expect("list");
        assert!(page.entries.len() + page.common_prefixes.len() <= 2);
        items.extend(page.common_prefixes);
        items.extend(page.entries.into_iter().map(|(k, _)| k));
        if !page.truncated {
            break;
        }
        start_after = page.next_start_after;
    }
    items.sort();
    let expected: Vec<String> = (0..5)
        .map(|d| format!("d{d}/"))
        .chain((0..5).map(|d| format!("top{d}")))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(items, expected);

    // start_after inside a group skips the rest of that group.
    let (keys, prefixes) = keys_of(
        meta,
        "pages",
        ListQuery {
            delimiter: Some("/".into()),
            start_after: Some("d1/f2".into()),
            max: 3,
            ..ListQuery::default()
        },
    )
    .await;
    assert!(keys.is_empty());
    assert_eq!(prefixes, ["d2/", "d3/", "d4/"]);

    // An exactly full last page is not truncated.
    let page = meta
        .list(
            "pages",
            &ListQuery {
                prefix: "d0/".into(),
                max: 5,
                ..ListQuery::default()
            },
        )
        .await
        .expect("list");
    assert_eq!(page.entries.len(), 5);
    assert!(!page.truncated);
}

/// Listings on an engine whose listing calls read at most `budget` keys
/// each (`with_list_read_budget`; `meta` must start empty): a page ends
/// early, truncated, once the budget is spent; it still holds at least
/// half as many items as keys read (a seek past a group does not waste a
/// batch); and paging on gives exactly the whole listing.
pub async fn list_read_budget(meta: &dyn Meta, budget: usize) {
    meta.create_bucket("budget").await.expect("create");
    let mut model = std::collections::BTreeMap::new();
    for g in 0..12 {
        // `gNN` and `gNN.x` sort just before the group `gNN/`; odd groups
        // have none, so groups follow groups too.
        let mut keys = if g % 2 == 0 {
            vec![format!("g{g:02}"), format!("g{g:02}.x")]
        } else {
            Vec::new()
        };
        keys.extend((0..12).map(|k| format!("g{g:02}/k{k:02}")));
        for key in keys {
            put_simple(meta, "budget", &key, "e").await;
            model.insert(key, "e".to_string());
        }
    }
    for (prefix, delimiter) in [
        ("", Some("/")),
        ("", None),
        ("g0", Some("/")),
        ("g03", Some("/")),
    ] {
        let mut keys = Vec::new();
        let mut groups = Vec::new();
        let mut start_after = None;
        let mut pages = 0;
        loop {
            let page = meta
                .list(
                    "budget",
                    &ListQuery {
                        prefix: prefix.into(),
                        delimiter: delimiter.map(str::to_string),
                        start_after: start_after.clone(),
                        max: 1000,
                    },
                )
                .await
                .expect("list");
            pages += 1;
            let items = page.entries.len() + page.common_prefixes.len();
            assert!(items <= budget, "{items} items from {budget} keys read");
            keys.extend(page.entries.into_iter().map(|(k, _)| k));
            groups.extend(page.common_prefixes);
            if !page.truncated {
                break;
            }
            assert!(
                items * 2 >= budget,
                "prefix {prefix:?}: a truncated page of {items} items from {budget} keys read"
            );
            start_after = page.next_start_after;
            assert!(
                start_after.is_some(),
                "a truncated page says where to resume"
            );
        }
        let want = model::model_list(&model, prefix, delimiter);
        assert!(
            want.0.len() + want.1.len() <= budget || pages > 1,
            "prefix {prefix:?}: the budget never cut a page"
        );
        assert_eq!(
            (keys, groups),
            want,
            "prefix {prefix:?} delimiter {delimiter:?}"
        );
    }
}

pub async fn change_log(meta: &dyn Meta) {
    let start = meta.last_seq().await.expect("seq");
    meta.create_bucket("log").await.expect("create");
    let layout = put_simple(meta, "log", "k", "v1").await;
    meta.delete("log", "k").await.expect("delete");
    meta.delete_bucket("log").await.expect("delete bucket");
    let changes = meta.changes_since(start, 100).await.expect("changes");
    let seqs: Vec<Seq> = changes.iter().map(|c| c.seq).collect();
    assert_eq!(seqs, [start + 1, start + 2, start + 3, start + 4]);
    assert_eq!(
        changes[0].op,
        ChangeOp::CreateBucket {
            bucket: "log".into(),
            acl: CannedAcl::Private
        }
    );
    match &changes[1].op {
        ChangeOp::Put {
            bucket,
            key,
            entry,
            layout: logged,
        } => {
            assert_eq!(
                (bucket.as_str(), key.as_str(), entry.etag.as_str()),
                ("log", "k", "v1")
            );
            assert_eq!(logged, &layout);
        }
        other => panic!("expected a put, got {other:?}"),
    }
    assert_eq!(
        changes[2].op,
        ChangeOp::Delete {
            bucket: "log".into(),
            key: "k".into()
        }
    );
    assert_eq!(
        changes[3].op,
        ChangeOp::DeleteBucket {
            bucket: "log".into()
        }
    );
    assert_eq!(
        meta.changes_since(start + 2, 1)
            .await
            .expect("changes")
            .len(),
        1
    );
    assert!(
        meta.changes_since(start + 4, 10)
            .await
            .expect("changes")
            .is_empty()
    );
}

pub async fn blob_references(meta: &dyn Meta) {
    meta.create_bucket("refs").await.expect("create");
    let layout = put_simple(meta, "refs", "a", "v1").await;
    let blob = layout.blobs().remove(0);
    assert_eq!(meta.blob_refs(&blob).await.expect("refs"), 1);

    // A second entry sharing the blob (what a copy does).
    let (entry, _) = simple_entry("v1", 3);
    meta.put("refs", "b", entry, layout.clone(), Precondition::None)
        .await
        .expect("share");
    assert_eq!(meta.blob_refs(&blob).await.expect("refs"), 2);

    let far_future = now_millis() + 3_600_000;
    let queued = |q: &[QueuedBlob]| q.iter().any(|q| q.blob == blob);
    put_simple(meta, "refs", "a", "v2").await; // overwrite drops one reference
    assert_eq!(meta.blob_refs(&blob).await.expect("refs"), 1);
    assert!(
        !queued(&meta.due_deletions(far_future, 1000).await.expect("due")),
        "still referenced"
    );

    meta.delete("refs", "b").await.expect("delete"); // last reference
    assert_eq!(meta.blob_refs(&blob).await.expect("refs"), 0);
    let due = meta.due_deletions(far_future, 1000).await.expect("due");
    let record = due
        .iter()
        .find(|q| q.blob == blob)
        .expect("queued after last reference")
        .clone();
    assert_eq!(record.refs_when_queued, 0);
    assert!(
        !queued(
            &meta
                .due_deletions(record.queued_at - 1, 1000)
                .await
                .expect("due")
        ),
        "not due before its time"
    );

    // Referenced again before the collector ran: it leaves the queue.
    let (entry, _) = simple_entry("v1", 3);
    meta.put("refs", "c", entry, layout.clone(), Precondition::None)
        .await
        .expect("resurrect");
    assert!(!queued(
        &meta.due_deletions(far_future, 1000).await.expect("due")
    ));
    assert!(
        !meta.claim_deletion(&record).await.expect("claim"),
        "a referenced blob is never claimed"
    );
    meta.delete("refs", "c").await.expect("delete");
    let record = meta
        .due_deletions(far_future, 1000)
        .await
        .expect("due")
        .into_iter()
        .find(|q| q.blob == blob)
        .expect("queued again");
    assert!(meta.claim_deletion(&record).await.expect("claim"));
    assert!(
        !meta.claim_deletion(&record).await.expect("claim twice"),
        "claimed once only"
    );

    // A blob that was written but never committed.
    let orphan = BlobRef {
        store: "data".into(),
        blob: "never-committed".into(),
    };
    meta.queue_uncommitted(std::slice::from_ref(&orphan))
        .await
        .expect("queue");
    let record = meta
        .due_deletions(far_future, 1000)
        .await
        .expect("due")
        .into_iter()
        .find(|q| q.blob == orphan)
        .expect("queued");
    assert!(meta.claim_deletion(&record).await.expect("claim"));
    // queue_uncommitted never queues a referenced blob.
    let live = put_simple(meta, "refs", "live", "v")
        .await
        .blobs()
        .remove(0);
    meta.queue_uncommitted(std::slice::from_ref(&live))
        .await
        .expect("queue");
    assert!(
        !meta
            .due_deletions(far_future, 1000)
            .await
            .expect("due")
            .iter()
            .any(|q| q.blob == live)
    );
}

pub async fn leases(meta: &dyn Meta) {
    assert!(
        meta.try_lease("collector", "node-a", 60_000)
            .await
            .expect("lease")
    );
    assert!(
        !meta
            .try_lease("collector", "node-b", 60_000)
            .await
            .expect("lease"),
        "held by a"
    );
    assert!(
        meta.try_lease("collector", "node-a", 60_000)
            .await
            .expect("renew")
    );
    assert!(
        meta.try_lease("other", "node-b", 60_000)
            .await
            .expect("independent names")
    );
    // An expired lease passes to another holder.
    assert!(meta.try_lease("short", "node-a", 1).await.expect("lease"));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        if meta
            .try_lease("short", "node-b", 60_000)
            .await
            .expect("lease")
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "an expired lease was never released"
        );
        tokio::task::yield_now().await;
    }
}

fn part(number: u32, etag: &str) -> Part {
    Part {
        number,
        etag: etag.into(),
        size: 5,
        last_modified: now_millis(),
        segments: vec![Segment {
            store: "data".into(),
            blob: format!("part-{}", uuid::Uuid::new_v4()),
            offset: 0,
            len: 5,
            version: String::new(),
        }],
        checksums: Default::default(),
    }
}

fn new_upload(key: &str) -> Upload {
    Upload {
        id: uuid::Uuid::now_v7().to_string(),
        key: key.into(),
        initiated: now_millis(),
        template: Entry {
            content_type: Some("application/octet-stream".into()),
            ..Entry::default()
        },
        checksum_algorithm: None,
    }
}

pub async fn multipart(meta: &dyn Meta) {
    meta.create_bucket("mpu").await.expect("create");
    let far_future = now_millis() + 3_600_000;
    let queued = |due: &[QueuedBlob], blob: &BlobRef| due.iter().any(|q| &q.blob == blob);
    let blob_of = |p: &Part| p.blobs().remove(0);

    let upload = new_upload("big");
    assert!(matches!(
        meta.create_upload("nope", upload.clone()).await,
        Err(MetaError::NoSuchBucket { .. })
    ));
    meta.create_upload("mpu", upload.clone())
        .await
        .expect("create upload");
    assert_eq!(
        meta.upload("mpu", "big", &upload.id).await.expect("upload"),
        upload
    );
    assert!(matches!(
        meta.upload("mpu", "other-key", &upload.id).await,
        Err(MetaError::NoSuchUpload { .. })
    ));

    // Parts in any order; a re-uploaded part replaces the first and queues its blob.
    let p2 = part(2, "b");
    let p1 = part(1, "a");
    let p1_again = part(1, "a2");
    let p3 = part(3, "c");
    assert!(
        meta.put_part("mpu", "big", &upload.id, p2.clone())
            .await
            .expect("p2")
            .is_none()
    );
    assert!(
        meta.put_part("mpu", "big", &upload.id, p1.clone())
            .await
            .expect("p1")
            .is_none()
    );
    assert_eq!(
        meta.put_part("mpu", "big", &upload.id, p1_again.clone())
            .await
            .expect("p1 again"),
        Some(p1.clone())
    );
    meta.put_part("mpu", "big", &upload.id, p3.clone())
        .await
        .expect("p3");
    let due = meta.due_deletions(far_future, 1000).await.expect("due");
    assert!(
        queued(&due, &blob_of(&p1)),
        "a replaced part's blob is queued"
    );
    assert!(!queued(&due, &blob_of(&p1_again)));

    let (parts, truncated) = meta
        .list_parts("mpu", "big", &upload.id, 0, 1000)
        .await
        .expect("parts");
    assert_eq!(parts, [p1_again.clone(), p2.clone(), p3.clone()]);
    assert!(!truncated);
    let (parts, truncated) = meta
        .list_parts("mpu", "big", &upload.id, 1, 1)
        .await
        .expect("parts");
    assert_eq!(parts, std::slice::from_ref(&p2));
    assert!(truncated);

    // Complete with parts 1 and 2: part 3's blob is queued, the others are the object's.
    let layout = Layout {
        segments: [p1_again.segments.clone(), p2.segments.clone()].concat(),
    };
    let entry = Entry {
        id: uuid::Uuid::now_v7().to_string(),
        size: 10,
        etag: "x-2".into(),
        ..upload.template.clone()
    };
    let completion = Completion {
        upload_id: upload.id.clone(),
        key: "big".into(),
        etag: "x-2".into(),
        parts: vec![(1, p1_again.etag.clone()), (2, p2.etag.clone())],
        checksums: Default::default(),
        keep_until: now_millis() + 60_000,
    };
    assert_eq!(
        meta.completion("mpu", "big", &upload.id)
            .await
            .expect("completion"),
        None,
        "no record before completion"
    );
    meta.complete_upload(
        "mpu",
        completion.clone(),
        entry.clone(),
        layout.clone(),
        Precondition::None,
    )
    .await
    .expect("complete");
    assert_eq!(meta.get("mpu", "big").await.expect("get"), (entry, layout));
    assert!(matches!(
        meta.upload("mpu", "big", &upload.id).await,
        Err(MetaError::NoSuchUpload { .. })
    ));
    // The completion is kept for retries, for this key only.
    assert_eq!(
        meta.completion("mpu", "big", &upload.id)
            .await
            .expect("completion"),
        Some(completion.clone())
    );
    assert_eq!(
        meta.completion("mpu", "other", &upload.id)
            .await
            .expect("completion"),
        None
    );
    // A second completion of the same upload commits nothing.
    let seq = meta.last_seq().await.expect("seq");
    let (again, again_layout) = simple_entry("x-2", 10);
    assert!(matches!(
        meta.complete_upload(
            "mpu",
            completion.clone(),
            again,
            again_layout,
            Precondition::None
        )
        .await,
        Err(MetaError::NoSuchUpload { .. })
    ));
    assert_eq!(meta.last_seq().await.expect("seq"), seq);
    let due = meta.due_deletions(far_future, 1000).await.expect("due");
    assert!(queued(&due, &blob_of(&p3)), "an unused part is queued");
    assert!(!queued(&due, &blob_of(&p1_again)) && !queued(&due, &blob_of(&p2)));
    assert_eq!(meta.blob_refs(&blob_of(&p2)).await.expect("refs"), 1);
    // A completed upload takes no more parts and cannot be completed again.
    assert!(matches!(
        meta.put_part("mpu", "big", &upload.id, part(4, "d")).await,
        Err(MetaError::NoSuchUpload { .. })
    ));

    // Abort queues every part and never touches the completed object.
    let second = new_upload("big");
    meta.create_upload("mpu", second.clone())
        .await
        .expect("create");
    let q = part(1, "q");
    meta.put_part("mpu", "big", &second.id, q.clone())
        .await
        .expect("part");
    meta.abort_upload("mpu", "big", &second.id)
        .await
        .expect("abort");
    assert!(queued(
        &meta.due_deletions(far_future, 1000).await.expect("due"),
        &blob_of(&q)
    ));
    assert_eq!(meta.head("mpu", "big").await.expect("head").etag, "x-2");
    assert!(matches!(
        meta.abort_upload("mpu", "big", &second.id).await,
        Err(MetaError::NoSuchUpload { .. })
    ));

    // A failed condition on completion leaves the upload in place.
    let third = new_upload("big");
    meta.create_upload("mpu", third.clone())
        .await
        .expect("create");
    let r = part(1, "r");
    meta.put_part("mpu", "big", &third.id, r.clone())
        .await
        .expect("part");
    let entry = Entry {
        id: uuid::Uuid::now_v7().to_string(),
        size: 5,
        etag: "y-1".into(),
        ..Entry::default()
    };
    let layout = Layout {
        segments: r.segments.clone(),
    };
    let refused = Completion {
        upload_id: third.id.clone(),
        key: "big".into(),
        etag: "y-1".into(),
        parts: vec![(1, r.etag.clone())],
        checksums: Default::default(),
        keep_until: now_millis() + 60_000,
    };
    assert!(matches!(
        meta.complete_upload("mpu", refused, entry, layout, Precondition::IfAbsent)
            .await,
        Err(MetaError::PreconditionFailed { .. })
    ));
    assert!(meta.upload("mpu", "big", &third.id).await.is_ok());
    assert_eq!(
        meta.completion("mpu", "big", &third.id)
            .await
            .expect("completion"),
        None,
        "a refused completion keeps no record"
    );

    // Stale uploads are found by age.
    let stale = meta
        .stale_uploads(now_millis() + 1000, 100)
        .await
        .expect("stale");
    assert!(stale.iter().any(|(b, u)| b == "mpu" && u.id == third.id));
    assert!(
        meta.stale_uploads(third.initiated - 1, 100)
            .await
            .expect("stale")
            .iter()
            .all(|(_, u)| u.id != third.id)
    );

    // Deleting the bucket aborts what is left.
    meta.delete("mpu", "big").await.expect("delete");
    meta.delete_bucket("mpu")
        .await
        .expect("delete bucket with an upload in progress");
    assert!(queued(
        &meta.due_deletions(far_future, 1000).await.expect("due"),
        &blob_of(&r)
    ));
}

/// A completion record is gone once its `keep_until` has passed, and the
/// sweep removes what has expired.
pub async fn completion_expiry(meta: &dyn Meta) {
    meta.create_bucket("done").await.expect("create");
    let mut ids = Vec::new();
    for (i, keep_until) in [now_millis() - 1, now_millis() + 3_600_000]
        .into_iter()
        .enumerate()
    {
        let upload = Upload {
            id: uuid::Uuid::now_v7().to_string(),
            key: format!("k{i}"),
            initiated: now_millis(),
            template: Entry::default(),
            checksum_algorithm: None,
        };
        meta.create_upload("done", upload.clone())
            .await
            .expect("create upload");
        let (entry, layout) = simple_entry("e-1", 1);
        let completion = Completion {
            upload_id: upload.id.clone(),
            key: upload.key.clone(),
            etag: "e-1".into(),
            parts: vec![(1, "p".into())],
            checksums: Default::default(),
            keep_until,
        };
        meta.complete_upload("done", completion, entry, layout, Precondition::None)
            .await
            .expect("complete");
        ids.push((upload.key, upload.id));
    }
    let (expired, kept) = (&ids[0], &ids[1]);
    assert_eq!(
        meta.completion("done", &expired.0, &expired.1)
            .await
            .expect("completion"),
        None,
        "an expired record is not answered"
    );
    assert!(
        meta.completion("done", &kept.0, &kept.1)
            .await
            .expect("completion")
            .is_some()
    );
    meta.expire_completions(now_millis(), 100)
        .await
        .expect("sweep");
    assert!(
        meta.completion("done", &kept.0, &kept.1)
            .await
            .expect("completion")
            .is_some(),
        "the sweep keeps records that have not expired"
    );
}

pub async fn multipart_listing(meta: &dyn Meta) {
    meta.create_bucket("uploads").await.expect("create");
    let mut made = Vec::new();
    for key in ["b/x", "a", "b/y", "a", "c"] {
        let upload = new_upload(key);
        meta.create_upload("uploads", upload.clone())
            .await
            .expect("create");
        made.push(upload);
    }
    let all = meta
        .list_uploads(
            "uploads",
            &UploadQuery {
                max: 100,
                ..UploadQuery::default()
            },
        )
        .await
        .expect("list");
    let order: Vec<(&str, &str)> = all
        .uploads
        .iter()
        .map(|u| (u.key.as_str(), u.id.as_str()))
        .collect();
    let mut expected: Vec<(&str, &str)> = made
        .iter()
        .map(|u| (u.key.as_str(), u.id.as_str()))
        .collect();
    expected.sort();
    assert_eq!(order, expected, "by key, then by initiation");

    let prefixed = meta
        .list_uploads(
            "uploads",
            &UploadQuery {
                prefix: "b/".into(),
                max: 100,
                ..UploadQuery::default()
            },
        )
        .await
        .expect("list");
    assert_eq!(prefixed.uploads.len(), 2);

    let page = meta
        .list_uploads(
            "uploads",
            &UploadQuery {
                max: 2,
                ..UploadQuery::default()
            },
        )
        .await
        .expect("list");
    assert!(page.truncated);
    let last = page.uploads.last().expect("two uploads").clone();
    let rest = meta
        .list_uploads(
            "uploads",
            &UploadQuery {
                key_marker: Some(last.key.clone()),
                upload_id_marker: Some(last.id.clone()),
                max: 100,
                ..UploadQuery::default()
            },
        )
        .await
        .expect("list");
    assert_eq!(page.uploads.len() + rest.uploads.len(), 5);
    let after_a = meta
        .list_uploads(
            "uploads",
            &UploadQuery {
                key_marker: Some("a".into()),
                max: 100,
                ..UploadQuery::default()
            },
        )
        .await
        .expect("list");
    assert!(after_a.uploads.iter().all(|u| u.key.as_str() > "a"));
    assert_eq!(after_a.uploads.len(), 3);
}

/// Dumping `source` (any engine, with content) and loading the dump into
/// `target` (empty) gives a namespace whose dump is byte-identical.
pub async fn dump_round_trip(source: &dyn Meta, target: &dyn Meta) {
    let mut first = Vec::new();
    crate::dump::dump(source, &mut first, &mut |_| {})
        .await
        .expect("dump");
    let summary = crate::dump::load(target, &mut first.as_slice(), &mut |_| {})
        .await
        .expect("load");
    assert!(summary.buckets > 0 && summary.objects > 0, "{summary:?}");
    let mut second = Vec::new();
    crate::dump::dump(target, &mut second, &mut |_| {})
        .await
        .expect("dump again");
    assert!(
        first == second,
        "a dump/load round trip changed the namespace"
    );
    assert!(
        crate::dump::load(target, &mut first.as_slice(), &mut |_| {})
            .await
            .is_err(),
        "loading into a non-empty namespace is refused"
    );
}

/// A namespace with a bit of everything, for round-trip tests.
pub async fn populate(meta: &dyn Meta) {
    meta.create_bucket("dump-a").await.expect("bucket");
    meta.create_bucket("dump-b").await.expect("bucket");
    for key in TRICKY_KEYS.iter().filter(|k| !k.is_empty()) {
        let (mut entry, layout) = simple_entry("e", 3);
        entry.user_metadata.insert("k".into(), "v".into());
        entry.checksums.insert("CRC32".into(), "AAAAAA==".into());
        meta.put("dump-a", key, entry, layout, Precondition::None)
            .await
            .expect("put");
    }
    let upload = new_upload("in/progress");
    meta.create_upload("dump-b", upload.clone())
        .await
        .expect("upload");
    meta.put_part("dump-b", "in/progress", &upload.id, part(1, "p1"))
        .await
        .expect("part");
    meta.put_part("dump-b", "in/progress", &upload.id, part(2, "p2"))
        .await
        .expect("part");
}

pub async fn log_trimming(meta: &dyn Meta) {
    meta.create_bucket("trim").await.expect("create");
    for i in 0..5 {
        put_simple(meta, "trim", &format!("k{i}"), "x").await;
    }
    let last = meta.last_seq().await.expect("seq");
    assert!(meta.log_floor().await.expect("floor") < last - 2);
    let removed = meta.trim_changes(last - 2).await.expect("trim");
    assert!(removed >= 3, "{removed}");
    assert_eq!(meta.log_floor().await.expect("floor"), last - 2);
    let left = meta.changes_since(0, 100).await.expect("changes");
    assert_eq!(
        left.iter().map(|c| c.seq).collect::<Vec<_>>(),
        [last - 1, last]
    );
    // The floor never goes down.
    assert_eq!(meta.trim_changes(1).await.expect("trim"), 0);
    assert_eq!(meta.log_floor().await.expect("floor"), last - 2);
    // New records still follow the last sequence number.
    let seq = put_simple_seq(meta, "trim", "after").await;
    assert_eq!(seq, last + 1);
}

async fn put_simple_seq(meta: &dyn Meta, bucket: &str, key: &str) -> Seq {
    let (entry, layout) = simple_entry("y", 3);
    meta.put(bucket, key, entry, layout, Precondition::None)
        .await
        .expect("put")
        .seq
}

pub async fn mirror_registry(meta: &dyn Meta) {
    assert!(meta.mirrors().await.expect("mirrors").is_empty());
    let record = |name: &str, applied| MirrorRecord {
        name: name.into(),
        applied,
        last_seen: 1_000 + i64::try_from(applied).unwrap_or(0),
        checkpoints: vec![Checkpoint {
            covered: 5,
            acked: 7,
        }],
    };
    meta.put_mirror(&record("west", 3)).await.expect("put");
    meta.put_mirror(&record("east", 9)).await.expect("put");
    meta.put_mirror(&record("west", 4)).await.expect("replace");
    let mirrors = meta.mirrors().await.expect("mirrors");
    assert_eq!(mirrors, [record("east", 9), record("west", 4)]);
    meta.remove_mirror("east").await.expect("remove");
    meta.remove_mirror("never-there")
        .await
        .expect("remove absent");
    assert_eq!(meta.mirrors().await.expect("mirrors"), [record("west", 4)]);
    meta.remove_mirror("west").await.expect("remove");
}

fn change(seq: Seq, op: ChangeOp) -> Change {
    Change {
        seq,
        at: now_millis(),
        op,
    }
}

fn put_op(bucket: &str, key: &str, etag: &str) -> (ChangeOp, BlobRef) {
    let (entry, layout) = simple_entry(etag, 3);
    let blob = layout.blobs()[0].clone();
    (
        ChangeOp::Put {
            bucket: bucket.into(),
            key: key.into(),
            entry: Box::new(entry),
            layout,
        },
        blob,
    )
}

pub async fn replica(meta: &dyn Meta) {
    // A namespace that never followed anything has no position.
    assert_eq!(meta.replica_position().await.expect("position"), None);
    let create = change(
        10,
        ChangeOp::CreateBucket {
            bucket: "m".into(),
            acl: CannedAcl::Private,
        },
    );
    assert!(meta.apply(create.clone(), vec![]).await.expect("apply"));
    assert_eq!(meta.replica_position().await.expect("position"), Some(10));
    // The same record again changes nothing.
    assert!(!meta.apply(create, vec![]).await.expect("apply"));

    let (op, blob) = put_op("m", "k", "one");
    let ChangeOp::Put { entry, .. } = &op else {
        unreachable!()
    };
    let source_id = entry.id.clone();
    assert!(
        meta.apply(change(11, op.clone()), vec![blob.clone()])
            .await
            .expect("apply put")
    );
    let (head, layout) = meta.get("m", "k").await.expect("get");
    assert_eq!(head.id, source_id, "the source's entry id is kept");
    assert_eq!(layout.blobs(), std::slice::from_ref(&blob));
    assert_eq!(meta.blob_refs(&blob).await.expect("refs"), 1);
    let jobs = meta.replication_jobs(0, 10).await.expect("jobs");
    assert_eq!(
        jobs.iter().map(|j| j.blob.clone()).collect::<Vec<_>>(),
        std::slice::from_ref(&blob)
    );
    // A replayed put (below the position) neither changes nor re-references.
    assert!(
        !meta
            .apply(change(11, op), vec![blob.clone()])
            .await
            .expect("apply")
    );
    assert_eq!(meta.blob_refs(&blob).await.expect("refs"), 1);
    assert_eq!(meta.replication_jobs(0, 10).await.expect("jobs").len(), 1);

    // Ops on absent buckets or keys are no-ops that still move the position.
    let (orphan, _) = put_op("absent", "k", "x");
    assert!(meta.apply(change(12, orphan), vec![]).await.expect("apply"));
    assert!(matches!(
        meta.head("absent", "k").await,
        Err(MetaError::NoSuchBucket { .. })
    ));
    let no_key = ChangeOp::SetObjectAcl {
        bucket: "m".into(),
        key: "nope".into(),
        acl: CannedAcl::PublicRead,
    };
    assert!(meta.apply(change(13, no_key), vec![]).await.expect("apply"));
    let gone = ChangeOp::Delete {
        bucket: "m".into(),
        key: "nope".into(),
    };
    assert!(meta.apply(change(14, gone), vec![]).await.expect("apply"));
    assert_eq!(meta.replica_position().await.expect("position"), Some(14));

    let acl = ChangeOp::SetObjectAcl {
        bucket: "m".into(),
        key: "k".into(),
        acl: CannedAcl::PublicRead,
    };
    assert!(meta.apply(change(15, acl), vec![]).await.expect("apply"));
    assert_eq!(
        meta.head("m", "k").await.expect("head").acl,
        CannedAcl::PublicRead
    );
    let bucket_acl = ChangeOp::SetBucketAcl {
        bucket: "m".into(),
        acl: CannedAcl::PublicRead,
    };
    assert!(
        meta.apply(change(16, bucket_acl), vec![])
            .await
            .expect("apply")
    );
    assert_eq!(
        meta.bucket("m").await.expect("bucket").acl,
        CannedAcl::PublicRead
    );

    // A delete drops the reference and queues the blob.
    let delete = ChangeOp::Delete {
        bucket: "m".into(),
        key: "k".into(),
    };
    assert!(meta.apply(change(17, delete), vec![]).await.expect("apply"));
    assert!(matches!(
        meta.head("m", "k").await,
        Err(MetaError::NoSuchKey { .. })
    ));
    assert_eq!(meta.blob_refs(&blob).await.expect("refs"), 0);
    let due = meta
        .due_deletions(now_millis() + 1, 100)
        .await
        .expect("due");
    assert!(due.iter().any(|q| q.blob == blob));

    // DeleteBucket takes whatever the bucket still holds.
    let (op, left_blob) = put_op("m", "left", "two");
    assert!(meta.apply(change(18, op), vec![]).await.expect("apply"));
    let drop_bucket = ChangeOp::DeleteBucket { bucket: "m".into() };
    assert!(
        meta.apply(change(19, drop_bucket), vec![])
            .await
            .expect("apply")
    );
    assert!(matches!(
        meta.bucket("m").await,
        Err(MetaError::NoSuchBucket { .. })
    ));
    assert_eq!(meta.blob_refs(&left_blob).await.expect("refs"), 0);

    // Replication jobs: deduplicated by blob, oldest first, pageable.
    let extra = [
        BlobRef {
            store: "data".into(),
            blob: "r1".into(),
        },
        BlobRef {
            store: "data".into(),
            blob: "r2".into(),
        },
    ];
    meta.queue_replication(&extra).await.expect("queue");
    meta.queue_replication(&extra[..1])
        .await
        .expect("queue again");
    let jobs = meta.replication_jobs(0, 10).await.expect("jobs");
    assert_eq!(
        jobs.iter()
            .map(|j| j.blob.blob.as_str())
            .collect::<Vec<_>>(),
        [blob.blob.as_str(), "r1", "r2"]
    );
    assert!(jobs.windows(2).all(|w| w[0].id < w[1].id));
    let rest = meta.replication_jobs(jobs[0].id, 1).await.expect("page");
    assert_eq!(rest, [jobs[1].clone()]);
    meta.finish_replication(&jobs[0]).await.expect("finish");
    meta.finish_replication(&jobs[0])
        .await
        .expect("finish twice");
    assert_eq!(meta.replication_jobs(0, 10).await.expect("jobs").len(), 2);

    // A reset forgets the position and the namespace; blobs referenced
    // before it are queued and leave the queue when referenced again.
    let (op, kept_blob) = put_op("n", "k", "three");
    let create_n = ChangeOp::CreateBucket {
        bucket: "n".into(),
        acl: CannedAcl::Private,
    };
    assert!(
        meta.apply(change(20, create_n), vec![])
            .await
            .expect("apply")
    );
    let ChangeOp::Put { entry, layout, .. } = op.clone() else {
        unreachable!()
    };
    assert!(meta.apply(change(21, op), vec![]).await.expect("apply"));
    meta.reset_replica().await.expect("reset");
    assert_eq!(meta.replica_position().await.expect("position"), None);
    assert!(meta.list_buckets().await.expect("buckets").is_empty());
    let due = meta
        .due_deletions(now_millis() + 1, 1000)
        .await
        .expect("due");
    let queued = due
        .iter()
        .find(|q| q.blob == kept_blob)
        .expect("the reset queued the blob")
        .clone();
    meta.create_bucket("n").await.expect("recreate");
    meta.put("n", "k", *entry, layout, Precondition::None)
        .await
        .expect("reload");
    assert!(
        !meta.claim_deletion(&queued).await.expect("claim"),
        "a reloaded entry's blob is not deleted"
    );
    meta.set_replica_position(30).await.expect("position");
    assert_eq!(meta.replica_position().await.expect("position"), Some(30));
    assert!(
        !meta
            .apply(
                change(30, ChangeOp::DeleteBucket { bucket: "n".into() }),
                vec![]
            )
            .await
            .expect("apply")
    );
    assert!(meta.head("n", "k").await.is_ok());
}
