//! Property test of a namespace against a reference model: a `BTreeMap`
//! from key to ETag. Random sequences of puts, deletes and paginated
//! listings must give the same answers from the engine and the model.

use std::any::Any;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

use crate::types::*;
use crate::{Meta, MetaError};

#[derive(Debug, Clone)]
pub enum Op {
    Put {
        key: String,
        etag: u8,
    },
    Delete {
        key: String,
    },
    List {
        prefix: String,
        delimiter: Option<String>,
        page: usize,
    },
}

/// Key segments chosen to hit S3's awkward cases: empty segments, dots,
/// characters on either side of '/' in byte order, multibyte text.
const SEGMENTS: &[&str] = &[
    "",
    "a",
    "b",
    "a-b",
    "a.b",
    ".",
    "..",
    "0",
    "\u{e9}",
    "\u{65e5}\u{672c}",
    " ",
];

fn key_strategy() -> impl Strategy<Value = String> {
    (
        prop::collection::vec(prop::sample::select(SEGMENTS), 1..4),
        any::<bool>(),
    )
        .prop_map(|(parts, trailing)| {
            let mut key = parts.join("/");
            if trailing {
                key.push('/');
            }
            key
        })
        .prop_filter("S3 keys are not empty", |k| !k.is_empty())
}

fn prefix_strategy() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        key_strategy(),
        // Prefixes cut mid-name.
        key_strategy().prop_map(|k| k.chars().take(1).collect()),
    ]
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (key_strategy(), any::<u8>()).prop_map(|(key, etag)| Op::Put { key, etag }),
        2 => key_strategy().prop_map(|key| Op::Delete { key }),
        2 => (prefix_strategy(), prop::option::of(prop::sample::select(vec!["/", ".", "a"])), 1usize..5)
            .prop_map(|(prefix, delimiter, page)| Op::List {
                prefix,
                delimiter: delimiter.map(str::to_string),
                page,
            }),
    ]
}

/// What a full listing must return: keys and common prefixes, in order.
pub fn model_list(
    model: &BTreeMap<String, String>,
    prefix: &str,
    delimiter: Option<&str>,
) -> (Vec<String>, Vec<String>) {
    let mut keys = Vec::new();
    let mut groups = BTreeSet::new();
    for key in model.keys().filter(|k| k.starts_with(prefix)) {
        let rest = &key[prefix.len()..];
        match delimiter.and_then(|d| rest.find(d).map(|at| (d, at))) {
            Some((d, at)) => {
                groups.insert(key[..prefix.len() + at + d.len()].to_string());
            }
            None => keys.push(key.clone()),
        }
    }
    (keys, groups.into_iter().collect())
}

async fn engine_list(
    meta: &dyn Meta,
    prefix: &str,
    delimiter: Option<&str>,
    page: usize,
) -> (Vec<String>, Vec<String>) {
    let mut keys = Vec::new();
    let mut groups = Vec::new();
    let mut start_after = None;
    for _ in 0..10_000 {
        let result = meta
            .list(
                "model",
                &ListQuery {
                    prefix: prefix.to_string(),
                    delimiter: delimiter.map(str::to_string),
                    start_after: start_after.clone(),
                    max: page,
                },
            )
            .await
            .expect("list");
        assert!(
            result.entries.len() + result.common_prefixes.len() <= page,
            "page too long"
        );
        keys.extend(result.entries.into_iter().map(|(k, _)| k));
        groups.extend(result.common_prefixes);
        if !result.truncated {
            return (keys, groups);
        }
        start_after = result.next_start_after;
    }
    panic!("listing never ended");
}

/// Applies `ops` to `meta` (whose namespace starts empty) and to the model,
/// asserting they agree after every step.
pub async fn run_ops(meta: &dyn Meta, ops: &[Op]) {
    meta.create_bucket("model").await.expect("create bucket");
    let mut model: BTreeMap<String, String> = BTreeMap::new();
    for op in ops {
        match op {
            Op::Put { key, etag } => {
                let (entry, layout) = super::simple_entry(&etag.to_string(), 1);
                meta.put("model", key, entry, layout, Precondition::None)
                    .await
                    .expect("put");
                model.insert(key.clone(), etag.to_string());
            }
            Op::Delete { key } => {
                let removed = meta.delete("model", key).await.expect("delete");
                assert_eq!(
                    removed.map(|e| e.etag),
                    model.remove(key),
                    "delete of {key:?}"
                );
            }
            Op::List {
                prefix,
                delimiter,
                page,
            } => {
                let got = engine_list(meta, prefix, delimiter.as_deref(), *page).await;
                let want = model_list(&model, prefix, delimiter.as_deref());
                assert_eq!(
                    got, want,
                    "list prefix={prefix:?} delimiter={delimiter:?} page={page}"
                );
            }
        }
    }
    for (key, etag) in &model {
        assert_eq!(
            &meta.head("model", key).await.expect("head").etag,
            etag,
            "head {key:?}"
        );
    }
    let (all, _) = engine_list(meta, "", None, 1000).await;
    assert_eq!(all, model.keys().cloned().collect::<Vec<_>>());
    if let Some(Op::Delete { key }) = ops.iter().rev().find(|o| matches!(o, Op::Delete { .. }))
        && !model.contains_key(key)
    {
        assert!(matches!(
            meta.head("model", key).await,
            Err(MetaError::NoSuchKey { .. })
        ));
    }
}

/// Sequences that once failed, or that pin a corner case; run before the
/// random ones.
pub fn regressions() -> Vec<Vec<Op>> {
    let put = |key: &str| Op::Put {
        key: key.into(),
        etag: 1,
    };
    let list = |prefix: &str, delimiter: Option<&str>, page: usize| Op::List {
        prefix: prefix.into(),
        delimiter: delimiter.map(str::to_string),
        page,
    };
    vec![
        // A marker object equal to its own common prefix, paged one at a time.
        vec![
            put("a/"),
            put("a"),
            put("a//b"),
            put("a/b/"),
            list("", Some("/"), 1),
            list("a/", Some("/"), 1),
        ],
        // Keys that sort between "a" and "a/" ('-' and '.' are below '/').
        vec![
            put("a/x"),
            put("a-b"),
            put("a.b"),
            put("a"),
            list("a", Some("/"), 1),
            list("", None, 2),
        ],
        // A delimiter that is also part of the prefix.
        vec![
            put("a.b.c"),
            put("a.b"),
            put(".."),
            list("a.", Some("."), 1),
            list(".", Some("."), 1),
        ],
        // Deleting the only key under a group removes the group.
        vec![
            put("x/y"),
            Op::Delete { key: "x/y".into() },
            list("", Some("/"), 3),
        ],
    ]
}

/// Runs the regressions and then random sequences, each on a fresh engine
/// made by `fresh` (which returns a guard to keep alive, and the engine).
pub fn check(fresh: impl Fn() -> (Box<dyn Any>, Arc<dyn Meta>)) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    for ops in regressions() {
        let (_guard, meta) = fresh();
        runtime.block_on(run_ops(meta.as_ref(), &ops));
    }
    let mut runner = TestRunner::new(Config {
        cases: 48,
        ..Config::default()
    });
    runner
        .run(&prop::collection::vec(op_strategy(), 1..40), |ops| {
            let (_guard, meta) = fresh();
            runtime.block_on(run_ops(meta.as_ref(), &ops));
            Ok(())
        })
        .unwrap_or_else(|e| panic!("namespace differs from the model: {e}"));
}
