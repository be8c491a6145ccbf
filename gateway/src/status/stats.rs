//! `ferry stats`: the node's (or with `--cluster`, every node's) newest
//! status sample as a line in the terminal, refreshed as samples arrive,
//! or once as JSON. It reads `/status/data` of the admin port, the JSON
//! the status page reads.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

use serde::Serialize;

use super::sample::{Rates, Sample};
use super::view::StatusView;
use crate::cli::StatsArgs;
use crate::cluster_cli::admin_call;

/// One line of `ferry stats`: rates over the sample's interval, summed
/// over the nodes it covers.
#[derive(Debug, Serialize)]
pub struct StatsLine {
    pub nodes: Vec<String>,
    pub at_ms: i64,
    pub interval_ms: u64,
    /// Block bytes per second by source: memory, disk, peer, each store.
    pub memory: f64,
    pub disk: f64,
    pub peer: f64,
    pub stores: BTreeMap<String, f64>,
    pub hit_ratio: Option<f64>,
    pub requests: f64,
    pub request_errors: f64,
    pub store_requests: f64,
    pub store_errors: f64,
    pub peer_sent: f64,
    /// The busiest S3 operations: requests per second and p99 (ms).
    pub operations: Vec<Operation>,
    /// The counters the rates came from, summed.
    pub served_total: u64,
}

#[derive(Debug, Serialize)]
pub struct Operation {
    pub name: String,
    pub per_second: f64,
    pub p99_ms: Option<f64>,
}

/// Sums the newest sample of each node in `view` (only the answering
/// node's unless `cluster`); `None` before a node has two samples.
pub fn line(view: &StatusView, cluster: bool) -> Option<StatsLine> {
    let newest: Vec<&Sample> = view
        .samples
        .iter()
        .filter(|(node, _)| cluster || **node == view.node)
        .filter_map(|(_, samples)| samples.iter().rev().find(|s| s.interval_ms > 0))
        .collect();
    if newest.is_empty() {
        return None;
    }
    let add = |f: &dyn Fn(&Rates) -> f64| newest.iter().map(|s| f(&s.rates)).sum::<f64>();
    let mut stores: BTreeMap<String, f64> = BTreeMap::new();
    let mut ops: BTreeMap<String, (f64, Option<f64>)> = BTreeMap::new();
    for sample in &newest {
        for (store, rate) in &sample.rates.stores {
            *stores.entry(store.clone()).or_default() += rate;
        }
        for (op, rate) in &sample.rates.requests {
            let entry = ops.entry(op.clone()).or_default();
            entry.0 += rate;
            if let Some(p99) = sample.rates.p99_ms.get(op) {
                entry.1 = Some(entry.1.map_or(*p99, |p: f64| p.max(*p99)));
            }
        }
    }
    let mut operations: Vec<Operation> = ops
        .into_iter()
        .filter(|(_, (rate, _))| *rate > 0.0)
        .map(|(name, (per_second, p99_ms))| Operation {
            name,
            per_second,
            p99_ms,
        })
        .collect();
    operations.sort_by(|a, b| b.per_second.total_cmp(&a.per_second));
    operations.truncate(3);
    let client: u64 = newest.iter().map(|s| s.rates.client_bytes).sum();
    let store: u64 = newest.iter().map(|s| s.rates.store_bytes).sum();
    let sum_map = |m: &BTreeMap<String, f64>| m.values().sum::<f64>();
    Some(StatsLine {
        nodes: newest.iter().map(|s| s.node.clone()).collect(),
        at_ms: newest.iter().map(|s| s.at_ms).max().unwrap_or(0),
        interval_ms: newest.iter().map(|s| s.interval_ms).max().unwrap_or(0),
        memory: add(&|r| r.memory),
        disk: add(&|r| r.disk),
        peer: add(&|r| r.peer),
        stores,
        hit_ratio: (client > 0).then(|| (1.0 - store as f64 / client as f64).clamp(0.0, 1.0)),
        requests: add(&|r| sum_map(&r.requests)),
        request_errors: add(&|r| sum_map(&r.request_errors)),
        store_requests: add(&|r| sum_map(&r.store_requests)),
        store_errors: add(&|r| sum_map(&r.store_errors)),
        peer_sent: add(&|r| r.peer_sent),
        operations,
        served_total: newest.iter().map(|s| s.totals.served()).sum(),
    })
}

fn mb(bytes_per_second: f64) -> String {
    format!("{:.1}", bytes_per_second / 1e6)
}

const HEADER: &str = "time      memory   disk   peer  store MB/s |  hit | S3 req/s   err | store req/s  err | peer out MB/s | top operations (req/s, p99 ms)";

fn render(line: &StatsLine) -> String {
    let time = clock_time(line.at_ms);
    let store: f64 = line.stores.values().sum();
    let hit = line
        .hit_ratio
        .map_or_else(|| "   –".to_string(), |r| format!("{:3.0}%", r * 100.0));
    let ops: Vec<String> = line
        .operations
        .iter()
        .map(|op| {
            let p99 = op
                .p99_ms
                .map_or_else(|| "–".to_string(), |p| format!("{p:.1}"));
            format!("{} {:.0}/s {p99}", op.name, op.per_second)
        })
        .collect();
    format!(
        "{time} {:>7} {:>6} {:>6} {:>6}      | {hit} | {:>8.1} {:>5.1} | {:>11.1} {:>4.1} | {:>13} | {}",
        mb(line.memory),
        mb(line.disk),
        mb(line.peer),
        mb(store),
        line.requests,
        line.request_errors,
        line.store_requests,
        line.store_errors,
        mb(line.peer_sent),
        ops.join(", ")
    )
}

/// `HH:MM:SS` (UTC) of a time in ms since the epoch.
fn clock_time(at_ms: i64) -> String {
    let seconds = at_ms.div_euclid(1000).rem_euclid(86_400);
    format!(
        "{:02}:{:02}:{:02}",
        seconds / 3600,
        (seconds / 60) % 60,
        seconds % 60
    )
}

async fn fetch(args: &StatsArgs, since: i64) -> Result<StatusView, String> {
    let text = admin_call(&args.admin, &format!("/status/data?since={since}"), None).await?;
    serde_json::from_str(&text).map_err(|e| format!("the node's /status/data is not readable: {e}"))
}

pub async fn run(args: StatsArgs) -> Result<bool, String> {
    let interval = Duration::from_secs(args.interval.max(1));
    if args.once {
        // A line needs a sample with rates: the node's second one.
        let deadline = tokio::time::Instant::now() + super::INTERVAL * 3;
        loop {
            let view = fetch(&args, 0).await?;
            if let Some(line) = line(&view, args.cluster) {
                let text = if args.json {
                    serde_json::to_string_pretty(&line).map_err(|e| e.to_string())?
                } else {
                    format!("{HEADER}\n{}", render(&line))
                };
                println!("{text}");
                return Ok(true);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(
                    "the node has no sample with rates yet (it takes one every 5 s); try again"
                        .into(),
                );
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
    let mut printed_at = 0;
    let mut lines = 0u32;
    loop {
        // The last few samples of every node: a line sums each node's
        // newest, whichever node sampled last.
        let since = ferry_meta::now_millis() - 4 * 5_000;
        let view = fetch(&args, since).await?;
        if let Some(line) = line(&view, args.cluster).filter(|l| l.at_ms > printed_at) {
            printed_at = line.at_ms;
            let mut out = std::io::stdout().lock();
            if args.json {
                let text = serde_json::to_string(&line).map_err(|e| e.to_string())?;
                let _ = writeln!(out, "{text}");
            } else {
                if lines.is_multiple_of(20) {
                    let _ = writeln!(out, "{HEADER}");
                }
                let _ = writeln!(out, "{}", render(&line));
            }
            let _ = out.flush();
            lines += 1;
        }
        tokio::time::sleep(interval).await;
    }
}
