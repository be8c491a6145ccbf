//! An anonymous listing of a public bucket whose metadata engine cuts
//! pages short (its per-call read budget, set tiny here) still pages
//! through every key and common prefix, with both ListObjects versions:
//! the short pages say they are truncated and where to resume.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use ferry_config::{Overrides, RawConfig};
use ferry_gateway::node::Node;
use ferry_meta::{CannedAcl, EmbeddedMeta, Entry, Layout, Meta, Precondition};
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};

const BUDGET: usize = 4;

/// A node over `dir` whose namespace reads at most `BUDGET` keys per listing.
async fn open_node(dir: &std::path::Path) -> Node {
    let config = RawConfig::from_toml("[cache]\nmemory = \"0\"\ndisk = \"0\"\n")
        .expect("toml")
        .build(
            &HashMap::new(),
            &Overrides {
                data_dir: Some(dir.to_path_buf()),
                ..Overrides::default()
            },
        )
        .expect("config");
    let mut node = Node::open(config).await.expect("the node opens");
    let meta = EmbeddedMeta::open(&dir.join("budgeted.redb"))
        .expect("open meta")
        .with_list_read_budget(BUDGET);
    node.meta = Arc::new(meta);
    node
}

/// Ten top-level keys and twenty common prefixes of five keys each; returns
/// what a delimiter listing must show: the keys, and the prefixes.
async fn populate(meta: &dyn Meta, bucket: &str) -> (Vec<String>, Vec<String>) {
    meta.create_bucket(bucket).await.expect("create bucket");
    meta.set_bucket_acl(bucket, CannedAcl::PublicRead)
        .await
        .expect("public-read");
    let mut keys = Vec::new();
    let mut prefixes = Vec::new();
    for n in 0..20 {
        let mut all = vec![format!("d{n:02}/")];
        all.extend((0..5).map(|k| format!("d{n:02}/k{k}")));
        if n % 2 == 0 {
            all.push(format!("f{n:02}"));
            keys.push(format!("f{n:02}"));
        }
        prefixes.push(format!("d{n:02}/"));
        for key in all {
            let entry = Entry {
                id: format!("id-{key}"),
                etag: "e".into(),
                ..Entry::default()
            };
            meta.put(bucket, &key, entry, Layout::default(), Precondition::None)
                .await
                .expect("put");
        }
    }
    (keys, prefixes)
}

/// The text of every `<tag>` element in `xml` (none nest in a listing).
fn elements(xml: &str, tag: &str) -> Vec<String> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    xml.split(&open)
        .skip(1)
        .filter_map(|rest| rest.split_once(&close).map(|(text, _)| text.to_string()))
        .collect()
}

fn element(xml: &str, tag: &str) -> Option<String> {
    elements(xml, tag).into_iter().next()
}

/// One page's keys and common prefixes.
fn items(xml: &str) -> (Vec<String>, Vec<String>) {
    let prefixes = xml
        .split("<CommonPrefixes>")
        .skip(1)
        .filter_map(|group| element(group, "Prefix"))
        .collect();
    (elements(xml, "Key"), prefixes)
}

/// Pages through `bucket` anonymously with ListObjectsV2 (`v2`) or
/// ListObjects; returns the keys, the prefixes and the number of pages.
async fn list_all(endpoint: &str, bucket: &str, v2: bool) -> (Vec<String>, Vec<String>, usize) {
    let client = reqwest::Client::new();
    let (mut keys, mut prefixes, mut pages) = (Vec::new(), Vec::new(), 0);
    let mut resume: Option<String> = None;
    loop {
        let mut query = vec![("delimiter", "/".to_string())];
        if v2 {
            query.push(("list-type", "2".into()));
        }
        if let Some(resume) = resume.take() {
            query.push((if v2 { "continuation-token" } else { "marker" }, resume));
        }
        let query: Vec<String> = query
            .iter()
            .map(|(name, value)| format!("{name}={}", utf8_percent_encode(value, NON_ALPHANUMERIC)))
            .collect();
        let answer = client
            .get(format!("{endpoint}/{bucket}?{}", query.join("&")))
            .send()
            .await
            .expect("list request");
        assert!(answer.status().is_success(), "{}", answer.status());
        let xml = answer.text().await.expect("body");
        pages += 1;
        let (page_keys, page_prefixes) = items(&xml);
        let count = page_keys.len() + page_prefixes.len();
        assert!(
            (1..=BUDGET).contains(&count),
            "a page of {count} items: {xml}"
        );
        keys.extend(page_keys);
        prefixes.extend(page_prefixes);
        if element(&xml, "IsTruncated").as_deref() != Some("true") {
            return (keys, prefixes, pages);
        }
        let next = if v2 {
            "NextContinuationToken"
        } else {
            "NextMarker"
        };
        resume = Some(element(&xml, next).unwrap_or_else(|| panic!("no {next} in {xml}")));
        assert!(pages < 1000, "the listing never ends");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listings_cut_short_by_the_read_budget_page_to_the_end() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = open_node(dir.path()).await;
    let (keys, prefixes) = populate(node.meta.as_ref(), "public").await;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let endpoint = format!("http://{}", listener.local_addr().expect("address"));
    let service = ferry_gateway::http::service(&node).expect("service");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let limits = node.config.server.limits;
    let server = tokio::spawn(ferry_gateway::listen::serve(
        ferry_gateway::listen::Listener::new(listener, "s3", None, limits),
        service,
        async {
            let _ = stopped.await;
        },
        Duration::from_secs(5),
    ));

    for v2 in [true, false] {
        let (got_keys, got_prefixes, pages) = list_all(&endpoint, "public", v2).await;
        assert_eq!(got_keys, keys, "keys (v2: {v2})");
        assert_eq!(got_prefixes, prefixes, "prefixes (v2: {v2})");
        // 30 items in pages of at most BUDGET: the budget cut every page.
        assert!(pages >= 30 / BUDGET, "{pages} pages (v2: {v2})");
    }

    let _ = stop.send(());
    server.await.expect("server task");
    node.close().await;
}
