//! One sample of a node: what it served and how, over the last interval
//! (rates), with the counters it came from (totals), its tiers' use, and
//! its long jobs. A node takes one every few seconds from its own
//! `/metrics` text, keeps the last quarter hour, and hands them to its
//! peers, so any node's status page shows the whole cluster.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::exposition::Exposition;
use super::jobs::JobStatus;
use crate::metrics as gm;
use ferry_cache::metrics as cm;

/// Counters as `/metrics` shows them at the sample's time.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Totals {
    /// Block bytes served from this node's memory and disk tiers (to its
    /// clients and to peers), received from peers, and read from each
    /// store.
    pub memory: u64,
    pub disk: u64,
    pub peer: u64,
    pub stores: BTreeMap<String, u64>,
    /// Block bytes served that came from outside this node (a peer or a
    /// store), and block bytes sent to peers.
    pub outside: u64,
    pub peer_sent: u64,
    pub store_requests: BTreeMap<String, u64>,
    pub store_errors: BTreeMap<String, u64>,
    /// S3 requests by operation, and those answered with a server error
    /// (5xx) or cut off (status 0).
    pub requests: BTreeMap<String, u64>,
    pub request_errors: BTreeMap<String, u64>,
    /// Bytes a mirror copied into its store, and bytes warm on arrival
    /// warmed.
    pub replicated: u64,
    pub arrived: u64,
    /// Request latency buckets by operation: (upper bound in seconds,
    /// requests at most that long), cumulative, as the histogram says.
    #[serde(skip)]
    pub latency: BTreeMap<String, Vec<(f64, f64)>>,
}

impl Totals {
    /// Block bytes served by source, all sources together.
    pub fn served(&self) -> u64 {
        self.memory + self.disk + self.peer + self.stores.values().sum::<u64>()
    }
}

/// Rates over one interval, per second.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Rates {
    pub memory: f64,
    pub disk: f64,
    pub peer: f64,
    pub stores: BTreeMap<String, f64>,
    pub peer_sent: f64,
    pub store_requests: BTreeMap<String, f64>,
    pub store_errors: BTreeMap<String, f64>,
    pub requests: BTreeMap<String, f64>,
    pub request_errors: BTreeMap<String, f64>,
    /// The 99th percentile of request latency by operation, in
    /// milliseconds (the upper bound of the bucket it falls in).
    pub p99_ms: BTreeMap<String, f64>,
    /// Of the bytes this node served to S3 clients (all served minus
    /// those sent to peers), the share no store had to send; `None`
    /// when it served none.
    pub hit_ratio: Option<f64>,
    /// The bytes the ratio is over: served to clients, and read from
    /// stores, in the interval.
    pub client_bytes: u64,
    pub store_bytes: u64,
}

/// The memory and disk tiers' use, in bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Tiers {
    pub memory_used: u64,
    pub memory_capacity: u64,
    pub disk_used: u64,
    pub disk_capacity: u64,
}

/// A region's state as the node sees it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RegionSample {
    /// In a mirror: the last source record applied, seconds behind the
    /// source, blobs waiting to be copied and bytes copied per second.
    pub mirror: Option<MirrorSample>,
    /// At a source: records each mirror (by region name) has not applied.
    pub mirrors_behind: BTreeMap<String, u64>,
    /// Warm on arrival: objects waiting, and bytes warmed per second.
    pub arrivals: Option<ArrivalSample>,
    /// Scheduled imports (by their configuration name): the last run's
    /// counts, and when it ran (Unix seconds).
    pub imports: BTreeMap<String, ImportSample>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MirrorSample {
    pub position: u64,
    pub lag_seconds: f64,
    pub replication_queue: u64,
    pub replicated_bytes_per_second: f64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ArrivalSample {
    pub queue: u64,
    pub bytes_per_second: f64,
    pub over_capacity: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ImportSample {
    pub counts: BTreeMap<String, u64>,
    pub last_run: i64,
}

/// One sample of one node.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    pub node: String,
    /// When it was taken (ms since the epoch), and over how long its
    /// rates are.
    pub at_ms: i64,
    pub interval_ms: u64,
    pub totals: Totals,
    pub rates: Rates,
    pub tiers: Tiers,
    pub jobs: Vec<JobStatus>,
    pub region: RegionSample,
}

/// What a sample says of a node besides its metrics.
pub struct Context<'a> {
    pub node: &'a str,
    pub at_ms: i64,
    pub memory_capacity: u64,
    pub jobs: Vec<JobStatus>,
}

/// Takes samples, each with its rates since the one before.
#[derive(Default)]
pub struct Sampler {
    previous: Option<(i64, Totals)>,
}

impl Sampler {
    pub fn sample(&mut self, metrics: &Exposition, context: Context<'_>) -> Sample {
        let totals = totals(metrics);
        let (interval_ms, rates, per_second) = match &self.previous {
            Some((at, before)) if context.at_ms > *at => {
                let ms = u64::try_from(context.at_ms - at).unwrap_or(1).max(1);
                let seconds = ms as f64 / 1000.0;
                let per_second = |a: u64, b: u64| b.saturating_sub(a) as f64 / seconds;
                (
                    ms,
                    rates(before, &totals, seconds),
                    (
                        per_second(before.replicated, totals.replicated),
                        per_second(before.arrived, totals.arrived),
                    ),
                )
            }
            _ => (0, Rates::default(), (0.0, 0.0)),
        };
        let sample = Sample {
            node: context.node.to_string(),
            at_ms: context.at_ms,
            interval_ms,
            tiers: tiers(metrics, context.memory_capacity),
            region: region(metrics, per_second),
            jobs: context.jobs,
            rates,
            totals: Totals {
                latency: BTreeMap::new(),
                ..totals.clone()
            },
        };
        self.previous = Some((context.at_ms, totals));
        sample
    }
}

fn count(value: f64) -> u64 {
    if value.is_finite() && value > 0.0 {
        value as u64
    } else {
        0
    }
}

fn counts(sums: BTreeMap<String, f64>) -> BTreeMap<String, u64> {
    sums.into_iter().map(|(k, v)| (k, count(v))).collect()
}

fn totals(metrics: &Exposition) -> Totals {
    let served = metrics.sum_by(cm::CACHE_BYTES_SERVED, "source");
    let served_from = |source: &str| count(served.get(source).copied().unwrap_or(0.0));
    let mut requests = BTreeMap::new();
    let mut request_errors = BTreeMap::new();
    for series in metrics.named(gm::REQUESTS) {
        let (Some(operation), Some(status)) = (series.label("operation"), series.label("status"))
        else {
            continue;
        };
        *requests.entry(operation.to_string()).or_insert(0) += count(series.value);
        let failed = status == "0" || status.starts_with('5');
        let errors = request_errors.entry(operation.to_string()).or_insert(0);
        if failed {
            *errors += count(series.value);
        }
    }
    let bucket_name = format!("{}_bucket", gm::REQUEST_SECONDS);
    let mut latency: BTreeMap<String, BTreeMap<u64, (f64, f64)>> = BTreeMap::new();
    for series in metrics.named(&bucket_name) {
        let (Some(operation), Some(le)) = (series.label("operation"), series.label("le")) else {
            continue;
        };
        let Ok(bound) = le.parse::<f64>() else {
            continue;
        };
        // Summed over statuses; keyed by the bound's bits to keep order.
        let slot = latency
            .entry(operation.to_string())
            .or_default()
            .entry(order_key(bound))
            .or_insert((bound, 0.0));
        slot.1 += series.value;
    }
    Totals {
        memory: served_from("memory"),
        disk: served_from("disk"),
        outside: served_from("store"),
        peer: count(metrics.sum(cm::PEER_BYTES_RECEIVED, &[])),
        peer_sent: count(metrics.sum(cm::PEER_BYTES_SERVED, &[])),
        stores: counts(metrics.sum_by(cm::STORE_BYTES_READ, "store")),
        store_requests: counts(metrics.sum_by(cm::STORE_REQUESTS, "store")),
        store_errors: counts(metrics.sum_by(cm::STORE_ERRORS, "store")),
        requests,
        request_errors,
        replicated: count(metrics.sum(cm::REPLICATION_BYTES, &[])),
        arrived: count(metrics.sum(cm::WARM_ARRIVAL_BYTES, &[])),
        latency: latency
            .into_iter()
            .map(|(op, buckets)| (op, buckets.into_values().collect()))
            .collect(),
    }
}

/// Orders non-negative bounds (and +Inf) as their bits do.
fn order_key(bound: f64) -> u64 {
    bound.max(0.0).to_bits()
}

fn rates(before: &Totals, now: &Totals, seconds: f64) -> Rates {
    let rate = |a: u64, b: u64| b.saturating_sub(a) as f64 / seconds;
    let map_rates = |a: &BTreeMap<String, u64>, b: &BTreeMap<String, u64>| {
        b.iter()
            .map(|(k, v)| (k.clone(), rate(a.get(k).copied().unwrap_or(0), *v)))
            .collect::<BTreeMap<_, _>>()
    };
    let delta = |a: u64, b: u64| b.saturating_sub(a);
    let served = delta(
        before.memory + before.disk + before.outside,
        now.memory + now.disk + now.outside,
    );
    let client_bytes = served.saturating_sub(delta(before.peer_sent, now.peer_sent));
    let store_bytes = delta(
        before.stores.values().sum::<u64>(),
        now.stores.values().sum::<u64>(),
    );
    let hit_ratio = (client_bytes > 0)
        .then(|| (1.0 - store_bytes as f64 / client_bytes as f64).clamp(0.0, 1.0));
    let p99_ms = now
        .latency
        .iter()
        .filter_map(|(op, buckets)| {
            let earlier = before.latency.get(op);
            p99(earlier.map(Vec::as_slice).unwrap_or(&[]), buckets)
                .map(|seconds| (op.clone(), seconds * 1000.0))
        })
        .collect();
    Rates {
        memory: rate(before.memory, now.memory),
        disk: rate(before.disk, now.disk),
        peer: rate(before.peer, now.peer),
        stores: map_rates(&before.stores, &now.stores),
        peer_sent: rate(before.peer_sent, now.peer_sent),
        store_requests: map_rates(&before.store_requests, &now.store_requests),
        store_errors: map_rates(&before.store_errors, &now.store_errors),
        requests: map_rates(&before.requests, &now.requests),
        request_errors: map_rates(&before.request_errors, &now.request_errors),
        p99_ms,
        hit_ratio,
        client_bytes,
        store_bytes,
    }
}

/// The 99th percentile of the requests between two cumulative bucket
/// lists: the upper bound of the first bucket holding 99 % of them (the
/// largest finite bound when it is the +Inf bucket); `None` without
/// requests.
fn p99(before: &[(f64, f64)], now: &[(f64, f64)]) -> Option<f64> {
    let earlier = |bound: f64| {
        before
            .iter()
            .find(|(b, _)| *b == bound)
            .map_or(0.0, |(_, c)| *c)
    };
    let deltas: Vec<(f64, f64)> = now
        .iter()
        .map(|(bound, c)| (*bound, (c - earlier(*bound)).max(0.0)))
        .collect();
    let all = deltas.last().map_or(0.0, |(_, c)| *c);
    if all <= 0.0 {
        return None;
    }
    let largest_finite = deltas
        .iter()
        .map(|(b, _)| *b)
        .filter(|b| b.is_finite())
        .fold(0.0, f64::max);
    deltas
        .iter()
        .find(|(_, c)| *c >= all * 0.99)
        .map(|(bound, _)| {
            if bound.is_finite() {
                *bound
            } else {
                largest_finite
            }
        })
}

/// Memory in use from foyer's gauge of the block cache; disk from its
/// disk engines' blocks by state (clean blocks hold nothing).
fn tiers(metrics: &Exposition, memory_capacity: u64) -> Tiers {
    let memory_used = count(metrics.sum("foyer_memory_usage", &[("name", "ferry-blocks")]));
    let mut used = 0.0;
    let mut capacity = 0.0;
    for series in metrics.named("foyer_storage_block_engine_block") {
        let (Some(name), Some(state)) = (series.label("name"), series.label("type")) else {
            continue;
        };
        if !name.starts_with("ferry-disk") {
            continue;
        }
        let size = metrics.sum(
            "foyer_storage_block_engine_block_size_bytes",
            &[("name", name)],
        );
        capacity += series.value * size;
        if state != "clean" {
            used += series.value * size;
        }
    }
    Tiers {
        memory_used,
        memory_capacity,
        disk_used: count(used),
        disk_capacity: count(capacity),
    }
}

fn region(metrics: &Exposition, (replicated, arrived): (f64, f64)) -> RegionSample {
    let has = |name: &str| metrics.named(name).next().is_some();
    let mirror = has(cm::MIRROR_POSITION).then(|| MirrorSample {
        position: count(metrics.sum(cm::MIRROR_POSITION, &[])),
        lag_seconds: metrics.sum(cm::MIRROR_LAG_SECONDS, &[]).max(0.0),
        replication_queue: count(metrics.sum(cm::REPLICATION_QUEUE, &[])),
        replicated_bytes_per_second: replicated,
    });
    let arrivals = has(cm::WARM_ARRIVAL_QUEUE).then(|| ArrivalSample {
        queue: count(metrics.sum(cm::WARM_ARRIVAL_QUEUE, &[])),
        bytes_per_second: arrived,
        over_capacity: metrics.sum(cm::WARM_ARRIVAL_OVER_CAPACITY, &[]) > 0.0,
    });
    let mut imports: BTreeMap<String, ImportSample> = BTreeMap::new();
    for series in metrics.named(cm::IMPORT_LAST) {
        if let (Some(import), Some(what)) = (series.label("import"), series.label("count")) {
            imports
                .entry(import.to_string())
                .or_default()
                .counts
                .insert(what.to_string(), count(series.value));
        }
    }
    for series in metrics.named(cm::IMPORT_LAST_RUN) {
        if let Some(import) = series.label("import") {
            imports.entry(import.to_string()).or_default().last_run = series.value as i64;
        }
    }
    RegionSample {
        mirror,
        mirrors_behind: counts(metrics.sum_by(cm::FEED_MIRROR_BEHIND, "mirror")),
        arrivals,
        imports,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context(at_ms: i64) -> Context<'static> {
        Context {
            node: "n1",
            at_ms,
            memory_capacity: 100,
            jobs: Vec::new(),
        }
    }

    #[test]
    fn rates_hit_ratio_and_p99_come_from_the_difference_of_two_renderings() {
        let first = Exposition::parse(
            "ferry_cache_bytes_served_total{source=\"memory\"} 1000\n\
             ferry_store_bytes_read_total{store=\"data\"} 0\n\
             ferry_s3_requests_total{operation=\"GetObject\",status=\"200\"} 10\n\
             ferry_s3_request_duration_seconds_bucket{operation=\"GetObject\",status=\"200\",le=\"0.001\"} 10\n\
             ferry_s3_request_duration_seconds_bucket{operation=\"GetObject\",status=\"200\",le=\"0.1\"} 10\n\
             ferry_s3_request_duration_seconds_bucket{operation=\"GetObject\",status=\"200\",le=\"+Inf\"} 10\n",
        );
        let second = Exposition::parse(
            "ferry_cache_bytes_served_total{source=\"memory\"} 4000\n\
             ferry_cache_bytes_served_total{source=\"store\"} 1000\n\
             ferry_store_bytes_read_total{store=\"data\"} 1000\n\
             ferry_store_get_errors_total{store=\"data\"} 2\n\
             ferry_s3_requests_total{operation=\"GetObject\",status=\"200\"} 108\n\
             ferry_s3_requests_total{operation=\"GetObject\",status=\"503\"} 2\n\
             ferry_s3_request_duration_seconds_bucket{operation=\"GetObject\",status=\"200\",le=\"0.001\"} 90\n\
             ferry_s3_request_duration_seconds_bucket{operation=\"GetObject\",status=\"200\",le=\"0.1\"} 108\n\
             ferry_s3_request_duration_seconds_bucket{operation=\"GetObject\",status=\"200\",le=\"+Inf\"} 108\n\
             ferry_s3_request_duration_seconds_bucket{operation=\"GetObject\",status=\"503\",le=\"0.001\"} 0\n\
             ferry_s3_request_duration_seconds_bucket{operation=\"GetObject\",status=\"503\",le=\"0.1\"} 0\n\
             ferry_s3_request_duration_seconds_bucket{operation=\"GetObject\",status=\"503\",le=\"+Inf\"} 2\n",
        );
        let mut sampler = Sampler::default();
        let at_first = sampler.sample(&first, context(10_000));
        assert_eq!(at_first.interval_ms, 0);
        let sample = sampler.sample(&second, context(12_000));
        assert_eq!(sample.interval_ms, 2000);
        assert_eq!(sample.rates.memory, 1500.0);
        assert_eq!(sample.rates.stores.get("data"), Some(&500.0));
        assert_eq!(sample.rates.store_errors.get("data"), Some(&1.0));
        assert_eq!(sample.rates.requests.get("GetObject"), Some(&50.0));
        assert_eq!(sample.rates.request_errors.get("GetObject"), Some(&1.0));
        // 100 requests: 80 within 1 ms, 98 within 100 ms, 2 beyond.
        assert_eq!(sample.rates.p99_ms.get("GetObject"), Some(&100.0));
        // 4000 bytes served, 1000 of them read from the store.
        assert_eq!(sample.rates.hit_ratio, Some(0.75));
        assert_eq!(sample.totals.memory, 4000);
    }

    #[test]
    fn tiers_add_up_the_disk_engines_blocks_that_hold_data() {
        let text = "foyer_memory_usage{name=\"ferry-blocks\"} 300\n\
            foyer_memory_usage{name=\"ferry-disk0\"} 7\n\
            foyer_storage_block_engine_block{name=\"ferry-disk0\",type=\"clean\"} 6\n\
            foyer_storage_block_engine_block{name=\"ferry-disk0\",type=\"evictable\"} 3\n\
            foyer_storage_block_engine_block{name=\"ferry-disk0\",type=\"writing\"} 1\n\
            foyer_storage_block_engine_block_size_bytes{name=\"ferry-disk0\"} 16\n";
        let tiers = tiers(&Exposition::parse(text), 1000);
        assert_eq!(
            tiers,
            Tiers {
                memory_used: 300,
                memory_capacity: 1000,
                disk_used: 64,
                disk_capacity: 160,
            }
        );
    }
}
