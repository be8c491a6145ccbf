//! Metric names of the gateway, with descriptions, in one place. Labels are
//! the S3 operation and the status only: never a bucket or a key.

use std::time::Duration;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

pub const REQUESTS: &str = "ferry_s3_requests_total";
pub const REQUEST_SECONDS: &str = "ferry_s3_request_duration_seconds";
pub const PUT_BYTES: &str = "ferry_s3_put_bytes_total";
pub const PEER_INTERNAL_ERRORS: &str = "ferry_peer_internal_errors_total";
pub const WORKER_PANICS: &str = "ferry_worker_panics_total";
pub const CONNECTIONS_OPEN: &str = "ferry_connections_open";
pub const TLS_HANDSHAKE_FAILURES: &str = "ferry_tls_handshake_failures_total";
pub const TLS_RELOADS: &str = "ferry_tls_reloads_total";
pub const SPOOL_BODIES: &str = "ferry_spool_bodies";
pub const SPOOL_BYTES: &str = "ferry_spool_bytes";
pub const SPOOL_RECEIVED: &str = "ferry_spool_received_bytes_total";
pub const SPOOL_REFUSED: &str = "ferry_spool_refused_total";
pub const ALLOCATOR_BYTES: &str = "ferry_allocator_bytes";
pub const CLUSTER_MEMBERS: &str = "ferry_cluster_members";
pub const CLUSTER_MEMBER_DOWN: &str = "ferry_cluster_member_down";

/// Buckets of every latency histogram (requests, block fetches, peer
/// requests, store admission, foyer's own), in seconds: a memory hit takes
/// tens of microseconds, a disk hit about a millisecond, a peer hit a few,
/// a cold read from object storage tens to hundreds, and a stalled one
/// seconds. Histograms, not summaries, so Prometheus can add up nodes.
const LATENCY_BUCKETS: &[f64] = &[
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0, 10.0, 30.0, 60.0,
];

/// Installs the Prometheus recorder and registers every description.
pub fn install() -> Result<PrometheusHandle, String> {
    let handle = PrometheusBuilder::new()
        .set_buckets(LATENCY_BUCKETS)
        .map_err(|e| e.to_string())?
        .set_buckets_for_metric(
            metrics_exporter_prometheus::Matcher::Full(
                ferry_cache::metrics::WARM_ARRIVAL_LAG_SECONDS.to_string(),
            ),
            &[
                0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0,
            ],
        )
        .map_err(|e| e.to_string())?
        .install_recorder()
        .map_err(|e| e.to_string())?;
    metrics::describe_gauge!(
        CLUSTER_MEMBERS,
        "Serving members in this node's view of the cluster (updated every 5 s)"
    );
    metrics::describe_gauge!(
        CLUSTER_MEMBER_DOWN,
        "1 while this node routes around the member (it failed to answer), by node (updated every 5 s)"
    );
    metrics::describe_counter!(
        WORKER_PANICS,
        "Background workers that panicked and were started again, by worker"
    );
    metrics::describe_gauge!(
        CONNECTIONS_OPEN,
        "Open connections by listener (s3, admin, peer); at server.max_connections more wait"
    );
    metrics::describe_counter!(
        TLS_HANDSHAKE_FAILURES,
        "TLS handshakes that failed or timed out, by listener"
    );
    metrics::describe_counter!(
        TLS_RELOADS,
        "Certificate reloads (SIGHUP or changed files) by result (ok, failed)"
    );
    metrics::describe_counter!(
        PEER_INTERNAL_ERRORS,
        "Peer requests this node failed to answer for a reason of its own (500)"
    );
    metrics::describe_counter!(
        REQUESTS,
        "S3 requests by operation and HTTP status (0: connection aborted)"
    );
    metrics::describe_histogram!(
        REQUEST_SECONDS,
        metrics::Unit::Seconds,
        "S3 request latency by operation and status, to the response head"
    );
    metrics::describe_counter!(
        PUT_BYTES,
        metrics::Unit::Bytes,
        "Object bytes received by PutObject"
    );
    metrics::describe_gauge!(
        SPOOL_BODIES,
        "PUT bodies without a Content-Length being collected or waiting to be stored"
    );
    metrics::describe_gauge!(
        SPOOL_BYTES,
        metrics::Unit::Bytes,
        "Bytes those bodies hold, in memory and in the spool folder"
    );
    metrics::describe_counter!(
        SPOOL_RECEIVED,
        metrics::Unit::Bytes,
        "Bytes of bodies without a Content-Length read into the spool"
    );
    metrics::describe_counter!(
        SPOOL_REFUSED,
        "Bodies without a Content-Length refused with SlowDown, by reason (busy: every slot taken; budget: the byte budget spent)"
    );
    metrics::describe_gauge!(
        ALLOCATOR_BYTES,
        metrics::Unit::Bytes,
        "The memory allocator's figures by state: allocated (live), active (in pages holding live data), resident (in RAM, kept for reuse included), metadata, retained (given back to the kernel); read on each scrape and status sample"
    );
    ferry_cache::metrics::describe();
    Ok(handle)
}

/// This node's metrics page: the allocator's gauges read now, then every
/// series. The admin endpoint and the status sampler both render through
/// here, so neither shows figures older than the other's.
pub fn render(handle: &PrometheusHandle) -> String {
    crate::allocator::record();
    handle.render()
}

pub fn record_request(operation: &str, status: u16, elapsed: Duration) {
    let labels = [
        ("operation", operation.to_string()),
        ("status", status.to_string()),
    ];
    metrics::counter!(REQUESTS, &labels).increment(1);
    metrics::histogram!(REQUEST_SECONDS, &labels).record(elapsed.as_secs_f64());
}
