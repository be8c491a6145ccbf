//! Seeing into the fleet, end to end: the status page of a real
//! three-node cluster in headless Chromium after known reads, its numbers
//! against each node's `/metrics`; `ferry stats`; the peer verb that
//! gathers samples; and the Grafana dashboard and alert rules in
//! `docker/` against the metrics of running nodes (a cluster that is a
//! source region, and a mirror region following it).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Command;

use common::cluster::{MIB, TOKEN, TestCluster, get, members, put, unique, wait_until};
use common::{Launch, Server, create_bucket, curl, metric_in, pattern};

/// Debian's Chromium (tests/run.sh installs it when missing).
fn chromium() -> PathBuf {
    let path = std::env::var_os("FERRY_TEST_CHROMIUM")
        .map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from);
    assert!(
        path.exists(),
        "{} not found: the status page's browser test needs Chromium (Debian packages chromium; tests/run.sh installs it)",
        path.display()
    );
    path
}

/// Chromium, headless, on `url` with `extra` arguments: its stdout. The
/// flags keep it off the network beyond the page (this machine refuses
/// outside connections) and out of any profile.
fn headless(url: &str, extra: &[String]) -> String {
    let profile = tempfile::tempdir().expect("profile dir");
    let out = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            // Page timers run in virtual time: the page fetches its data
            // and draws once, without waiting out its 5 s poll.
            "--virtual-time-budget=4000",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(extra)
        .arg(url)
        .output()
        .expect("run chromium");
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

fn metrics_text(admin: &str) -> String {
    let (status, text) = curl(&[&format!("{admin}/metrics")]);
    assert_eq!(status, 200, "metrics of {admin}");
    text
}

/// Block bytes a node served by source, as its `/metrics` says: its
/// memory and disk tiers, peers and every store.
fn served_by_metrics(admin: &str) -> u64 {
    let text = metrics_text(admin);
    let sum = metric_in(&text, "ferry_cache_bytes_served_total", "source=\"memory\"")
        + metric_in(&text, "ferry_cache_bytes_served_total", "source=\"disk\"")
        + metric_in(&text, "ferry_peer_bytes_received_total", "")
        + metric_in(&text, "ferry_store_bytes_read_total", "");
    sum as u64
}

fn status_data(admin: &str) -> serde_json::Value {
    let (status, body) = curl(&[&format!("{admin}/status/data")]);
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).expect("status data is JSON")
}

/// The newest sample of `node` in a node's status data.
fn newest<'a>(data: &'a serde_json::Value, node: &str) -> Option<&'a serde_json::Value> {
    data["samples"][node].as_array().and_then(|s| s.last())
}

fn served_in(sample: &serde_json::Value) -> u64 {
    let t = &sample["totals"];
    let stores: u64 = t["stores"]
        .as_object()
        .map(|m| m.values().filter_map(serde_json::Value::as_u64).sum())
        .unwrap_or(0);
    t["memory"].as_u64().unwrap_or(0)
        + t["disk"].as_u64().unwrap_or(0)
        + t["peer"].as_u64().unwrap_or(0)
        + stores
}

/// The value of attribute `name` in the start tag that holds `marker`.
fn attribute(dom: &str, marker: &str, name: &str) -> Option<String> {
    let at = dom.find(marker)?;
    let start = dom[..at].rfind('<')?;
    let end = at + dom[at..].find('>')?;
    let tag = &dom[start..end];
    let from = tag.find(&format!("{name}=\""))? + name.len() + 2;
    let len = tag[from..].find('"')?;
    Some(tag[from..from + len].to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_status_page_of_a_cluster_shows_what_each_nodes_metrics_say() {
    let weights = [100u32, 200, 300];
    let cluster = TestCluster::start(&weights);
    let bucket = unique("status");
    let first = &cluster.nodes[0];
    create_bucket(&first.server().endpoint, &bucket).await;
    let body = pattern(9, 12 * MIB + 4321);
    put(first.client(&bucket).as_ref(), "model.bin", &body).await;
    // Reads through every node: blocks from the store once, then from
    // their owners' tiers and over the peer protocol.
    for node in &cluster.nodes {
        assert_eq!(get(node.client(&bucket).as_ref(), "model.bin").await, body);
    }
    // A warm-up through the first node: a long job on its page.
    let (status, lines) = curl(&[
        "-X",
        "POST",
        "-H",
        &format!("Authorization: Bearer {TOKEN}"),
        "-H",
        "content-type: application/json",
        "-d",
        &format!("{{\"bucket\":\"{bucket}\"}}"),
        &format!("{}/warmup", first.admin()),
    ]);
    assert_eq!(status, 200, "{lines}");
    assert!(lines.contains("\"done\""), "{lines}");

    // Nothing reads any more: wait until the first node holds, for every
    // node, a sample taken after the reads (its totals equal that node's
    // /metrics) with rates over an interval before it.
    let admin = first.admin();
    let expected: BTreeMap<String, u64> = cluster
        .nodes
        .iter()
        .map(|n| (n.id.clone(), served_by_metrics(&n.admin())))
        .collect();
    assert!(expected.values().all(|&served| served > 0), "{expected:?}");
    wait_until("the first node holds every node's latest sample", || {
        let data = status_data(&admin);
        expected.iter().all(|(id, served)| {
            newest(&data, id).is_some_and(|s| {
                served_in(s) == *served && s["interval_ms"].as_u64().unwrap_or(0) > 0
            })
        })
    });
    let data = status_data(&admin);
    let warmups = newest(&data, "n0").expect("n0 sample")["jobs"].clone();
    assert_eq!(warmups[0]["kind"], "warm-up", "{warmups}");
    assert_eq!(warmups[0]["outcome"], "done", "{warmups}");
    assert_eq!(
        warmups[0]["bytes_total"].as_u64(),
        Some(body.len() as u64),
        "{warmups}"
    );

    // The page, drawn by a real browser.
    let url = format!("{admin}/status");
    let dom = headless(&url, &["--dump-dom".to_string()]);
    assert!(
        attribute(&dom, "<body", "data-ready").is_some(),
        "the page never drew: {dom}"
    );
    for (node, weight) in cluster.nodes.iter().zip(weights) {
        let marker = format!("data-node=\"{}\"", node.id);
        assert_eq!(
            attribute(&dom, &marker, "data-weight"),
            Some(weight.to_string()),
            "weight of {} on the page",
            node.id
        );
        assert_eq!(
            attribute(&dom, &marker, "data-served"),
            Some(expected[&node.id].to_string()),
            "bytes served by {} on the page against its /metrics",
            node.id
        );
    }
    assert_eq!(dom.matches("data-node=\"").count(), weights.len(), "{dom}");
    let points = attribute(&dom, "id=\"chart-bytes\"", "data-points")
        .and_then(|p| p.parse::<u32>().ok())
        .unwrap_or(0);
    assert!(points >= 1, "the bytes chart drew no point: {dom}");
    let series = attribute(&dom, "id=\"chart-bytes\"", "data-series").unwrap_or_default();
    for source in ["memory", "peer", "store data"] {
        assert!(series.split(',').any(|s| s == source), "{series}");
    }
    assert!(
        dom.contains("data-job=\"warm-up\""),
        "no warm-up row: {dom}"
    );
    // Open page, no secret: neither the bucket nor the key shows.
    assert!(!dom.contains(&bucket) && !dom.contains("model.bin"));

    // A picture of it, for the README.
    let shot = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("status-page.png");
    let _ = std::fs::remove_file(&shot);
    headless(
        &url,
        &[
            format!("--screenshot={}", shot.display()),
            "--window-size=1280,1500".to_string(),
            "--hide-scrollbars".to_string(),
        ],
    );
    let png = std::fs::read(&shot).expect("screenshot written");
    assert!(png.starts_with(b"\x89PNG"), "not a PNG");

    // `ferry stats`: one sample of the whole cluster as JSON, and as text.
    let out = common::ferry()
        .args(["stats", "--once", "--json", "--cluster", "--admin", &admin])
        .output()
        .expect("ferry stats");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line: serde_json::Value = serde_json::from_slice(&out.stdout).expect("stats JSON");
    assert_eq!(line["nodes"].as_array().map(Vec::len), Some(3), "{line}");
    assert_eq!(
        line["served_total"].as_u64(),
        Some(expected.values().sum::<u64>()),
        "{line}"
    );
    let out = common::ferry()
        .args(["stats", "--once", "--admin", &admin])
        .output()
        .expect("ferry stats");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.lines().count() == 2, "{text}");
    assert!(text.starts_with("time") && text.contains("hit"), "{text}");

    // The peer verb behind it answers only signed requests.
    let peer = members(&admin)
        .into_iter()
        .find(|(id, _, _)| id == "n1")
        .map(|(_, _, address)| address)
        .expect("n1's peer address");
    let (status, _) = curl(&[&format!("http://{peer}/v1/status?since=0")]);
    assert_eq!(status, 403);
}

/// `ferry_*` and `foyer_*` names in a PromQL expression.
fn metric_names(expr: &str) -> BTreeSet<String> {
    expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("ferry_") || w.starts_with("foyer_"))
        .map(str::to_string)
        .collect()
}

/// Label names an expression selects on (`{name="..."}`) or groups by
/// (`by (a, b)`), besides those Prometheus adds itself.
fn label_names(expr: &str) -> BTreeSet<String> {
    let mut labels = BTreeSet::new();
    for (open, close) in [("{", '}'), ("by (", ')')] {
        for part in expr.split(open).skip(1) {
            let inside = part.split(close).next().unwrap_or_default();
            for item in inside.split(',') {
                let name = item
                    .split(['=', '!', '~'])
                    .next()
                    .unwrap_or_default()
                    .trim();
                if !name.is_empty() && !["instance", "job", "le"].contains(&name) {
                    labels.insert(name.to_string());
                }
            }
        }
    }
    labels
}

fn dashboard_expressions() -> Vec<String> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("docker/grafana/ferry-dashboard.json"))
            .expect("dashboard file"),
    )
    .expect("dashboard JSON");
    let mut exprs: Vec<String> = dashboard["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .filter_map(|t| t["expr"].as_str().map(str::to_string))
        .collect();
    let rules = std::fs::read_to_string(root.join("docker/prometheus/ferry-alerts.yml"))
        .expect("alert rules file");
    exprs.extend(
        rules
            .lines()
            .filter_map(|l| l.trim().strip_prefix("expr:"))
            .map(|e| e.trim().to_string()),
    );
    exprs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_metric_the_dashboard_and_alerts_query_is_on_a_running_node() {
    let exprs = dashboard_expressions();
    assert!(exprs.len() >= 20, "{exprs:?}");
    // A two-node cluster that is a source region, and a mirror region
    // following it that warms a prefix on arrival and copies none of its
    // blobs (they are read from the source's store, a fallback).
    let feed_secret = "a-feed-secret-for-the-status-test";
    let cluster = TestCluster::start_with(
        &[100, 100],
        &format!(
            "\n[region]\nname = \"central\"\nfeed_secret = \"{feed_secret}\"\n\n\
             [volume]\ngc_interval = \"300ms\"\n"
        ),
    );
    let bucket = unique("dash");
    let first = &cluster.nodes[0];
    create_bucket(&first.server().endpoint, &bucket).await;
    let body = pattern(3, 6 * MIB);
    put(first.client(&bucket).as_ref(), "weights.bin", &body).await;
    assert_eq!(
        get(cluster.nodes[1].client(&bucket).as_ref(), "weights.bin").await,
        body
    );
    let dir = tempfile::tempdir().expect("mirror dir");
    let config = common::write_file(
        dir.path(),
        "mirror.toml",
        &format!(
            "[stores.data]\nurl = \"file://{mine}\"\nfallback = [\"central\"]\n\n\
             [stores.central]\nurl = \"file://{source}\"\nowned = false\n\n\
             [region]\nname = \"edge-1\"\nfollow = \"{follow}\"\nfeed_secret = \"{feed_secret}\"\n\
             replicate = [\"elsewhere\"]\n\n\
             [[region.warm]]\nprefix = \"{bucket}\"\n",
            mine = dir.path().join("blobs").display(),
            source = cluster.store.path().display(),
            follow = first.admin(),
        ),
    );
    let mirror = Server::start(Launch {
        config: Some(&config),
        ..Launch::new(&dir.path().join("data"))
    });
    wait_until("the mirror reports its position and lag", || {
        let text = metrics_text(&mirror.admin);
        metric_in(&text, "ferry_mirror_position", "") > 0.0
            && text.contains("ferry_mirror_lag_seconds ")
    });
    assert_eq!(
        get(mirror.client(&bucket).as_ref(), "weights.bin").await,
        body
    );
    wait_until("the source's collector measured the mirror", || {
        cluster
            .nodes
            .iter()
            .any(|n| metrics_text(&n.admin()).contains("ferry_feed_mirror_behind_records{"))
    });

    let texts: Vec<String> = cluster
        .nodes
        .iter()
        .map(|n| metrics_text(&n.admin()))
        .chain([metrics_text(&mirror.admin)])
        .collect();
    // Every series name, and the labels each name carries.
    let mut labels_of: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for text in &texts {
        for series in ferry_gateway::status::Exposition::parse(text).series() {
            labels_of
                .entry(series.name.clone())
                .or_default()
                .extend(series.labels.iter().map(|(k, _)| k.clone()));
        }
    }
    let mut missing = Vec::new();
    for expr in &exprs {
        let names = metric_names(expr);
        for name in &names {
            if !labels_of.contains_key(name) {
                missing.push(format!("{name} (in {expr})"));
            }
        }
        for label in label_names(expr) {
            let carried = names
                .iter()
                .any(|n| labels_of.get(n).is_some_and(|l| l.contains(&label)));
            if !carried {
                missing.push(format!("label {label} (in {expr})"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "queried but not on any node's /metrics:\n{}",
        missing.join("\n")
    );
}
