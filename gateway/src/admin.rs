//! The admin HTTP server: `/health` and `/metrics` (open), the cluster's
//! status (open, read-only), its run-time weights, warm-ups, evictions,
//! imports and pins (admin token).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use ferry_cache::cluster::Cluster;
use ferry_cache::cluster::warmup::{self, WarmupEvent, WarmupRequest};
use ferry_cache::region::import::{self, ImportEvent, ImportRequest};
use ferry_cache::region::mirror::MirrorState;
use ferry_cache::{BlockCache, Stores};
use ferry_meta::Meta;
use metrics_exporter_prometheus::PrometheusHandle;
use serde::{Deserialize, Serialize};

use crate::node::Node;
use crate::status::Status;
use crate::status::jobs::JobHandle;
use crate::supervisor::Workers;

#[derive(Clone)]
pub struct AdminState {
    pub meta: Arc<dyn Meta>,
    pub metrics: Option<PrometheusHandle>,
    pub cluster: Option<Arc<Cluster>>,
    pub cache: Arc<BlockCache>,
    pub stores: Stores,
    /// Bearer token of the mutating endpoints; `None`: they answer 401.
    pub token: Option<Arc<str>>,
    /// In a mirror region: the follower's state, and how long without the
    /// source it stays healthy.
    pub mirror: Option<(Arc<MirrorState>, Duration)>,
    /// Warm on arrival, when `[[region.warm]]` names prefixes.
    pub arrivals: Option<Arc<ferry_cache::region::WarmOnArrival>>,
    /// The background workers' panics and restarts.
    pub workers: Arc<Workers>,
    /// Where pins set at run time are kept.
    pub kept_pins: Arc<ferry_cache::pins::KeptPins>,
    /// The status page's samples and the node's long jobs.
    pub status: Arc<Status>,
}

impl AdminState {
    pub fn new(node: &Node) -> AdminState {
        AdminState {
            meta: node.meta.clone(),
            metrics: node.metrics.clone(),
            cluster: node.cluster.clone(),
            cache: node.cache.clone(),
            stores: node.stores.clone(),
            token: node.config.admin_token.clone().map(Into::into),
            mirror: node.region.mirror.as_ref().map(|m| {
                (
                    m.clone(),
                    node.config
                        .region
                        .as_ref()
                        .map_or(Duration::from_secs(86_400), |r| r.mirror_timeout),
                )
            }),
            arrivals: node.region.arrivals.clone(),
            workers: node.workers.clone(),
            kept_pins: node.kept_pins.clone(),
            status: node.status.clone(),
        }
    }
}

/// The admin routes, with the change feed when this is a source region.
pub fn app(state: AdminState, feed: Option<crate::feed::FeedState>) -> Router {
    let router = Router::new()
        .route("/health", get(health))
        .route("/region/status", get(region_status))
        .route("/metrics", get(render_metrics))
        .route("/cluster/status", get(cluster_status))
        .route("/cluster/weight", post(set_weight))
        .route("/warmup", post(warmup))
        .route("/import", post(import))
        .route(
            "/cache/pins",
            get(crate::pins::list).post(crate::pins::change),
        )
        .with_state(state.clone())
        .merge(crate::status::routes(state.status.clone()));
    match feed {
        Some(feed) => router.merge(crate::feed::routes(feed)),
        None => router,
    }
}

/// Whether the request carries the admin token (compared in constant time).
fn authorized(state: &AdminState, headers: &HeaderMap) -> bool {
    let Some(token) = &state.token else {
        return false;
    };
    let given = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    given.len() == token.len()
        && given
            .bytes()
            .zip(token.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

/// 401 without the admin token.
pub(crate) fn authorized_or_refused(
    state: &AdminState,
    headers: &HeaderMap,
) -> Result<(), (StatusCode, String)> {
    if authorized(state, headers) {
        return Ok(());
    }
    Err((
        StatusCode::UNAUTHORIZED,
        "this endpoint needs the admin token ([admin] token or FERRY_ADMIN_TOKEN) as a Bearer token\n"
            .to_string(),
    ))
}

/// The body of a mutating request, once its token is checked: 401
/// without the admin token, 400 for a body that is not the expected JSON.
pub(crate) fn admitted<T>(
    state: &AdminState,
    headers: &HeaderMap,
    body: Result<Json<T>, axum::extract::rejection::JsonRejection>,
) -> Result<T, (StatusCode, String)> {
    authorized_or_refused(state, headers)?;
    body.map(|Json(body)| body)
        .map_err(|e| (StatusCode::BAD_REQUEST, format!("{e}\n")))
}

#[derive(Serialize)]
struct MemberStatus {
    id: String,
    address: String,
    /// Its peer endpoint speaks TLS.
    tls: bool,
    weight: u32,
    /// Bytes its memory and disk tiers hold, as it announced them (0:
    /// unknown, a static member).
    capacity: u64,
    expected_share: f64,
    /// Milliseconds since its last heartbeat (`None`: static membership).
    heartbeat_age_ms: Option<i64>,
    /// Whether this node currently routes around it.
    down: bool,
    /// Changes at every restart of the member.
    incarnation: String,
}

#[derive(Serialize)]
struct ClusterStatus {
    node: String,
    replicas: usize,
    dynamic: bool,
    members: Vec<MemberStatus>,
    /// Blocks this node served since it started, by tier.
    served: Served,
}

#[derive(Serialize)]
struct Served {
    memory: u64,
    disk: u64,
    /// From a peer or a store.
    outside: u64,
    /// Memory and disk over all.
    hit_ratio: f64,
}

async fn cluster_status(State(state): State<AdminState>) -> Response {
    let Some(cluster) = &state.cluster else {
        return (StatusCode::NOT_FOUND, "this node is not in a cluster\n").into_response();
    };
    let view = cluster.node.membership.current();
    let shares: std::collections::HashMap<String, f64> = view.shares().into_iter().collect();
    let now = ferry_cache::cluster::wire::now_ms();
    let members = view
        .members
        .iter()
        .map(|m| MemberStatus {
            id: m.id.clone(),
            address: m.address.clone(),
            tls: m.tls,
            weight: m.weight,
            capacity: m.capacity,
            expected_share: shares.get(&m.id).copied().unwrap_or(0.0),
            heartbeat_age_ms: (m.heartbeat_ms > 0).then(|| now - m.heartbeat_ms),
            down: m.id != cluster.node.id && cluster.node.client.is_down(&m.id),
            incarnation: m.incarnation.clone(),
        })
        .collect();
    Json(ClusterStatus {
        node: cluster.node.id.clone(),
        replicas: cluster.node.replicas,
        dynamic: cluster.redis().is_some(),
        members,
        served: {
            let counts = state.cache.hit_counts();
            let all = counts.memory + counts.disk + counts.outside;
            Served {
                memory: counts.memory,
                disk: counts.disk,
                outside: counts.outside,
                hit_ratio: if all == 0 {
                    0.0
                } else {
                    (counts.memory + counts.disk) as f64 / all as f64
                },
            }
        },
    })
    .into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WeightChange {
    node: String,
    /// `None` resets to the weight the node announces (its config).
    weight: Option<u32>,
}

async fn set_weight(
    State(state): State<AdminState>,
    headers: HeaderMap,
    body: Result<Json<WeightChange>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let change = match admitted(&state, &headers, body) {
        Ok(change) => change,
        Err(refused) => return refused.into_response(),
    };
    let Some(cluster) = &state.cluster else {
        return (StatusCode::NOT_FOUND, "this node is not in a cluster\n").into_response();
    };
    let Some(redis) = cluster.redis() else {
        return (
            StatusCode::CONFLICT,
            "static membership: change the weights in cluster.peers of every node's config\n",
        )
            .into_response();
    };
    match redis.set_weight(&change.node, change.weight).await {
        Ok(()) => {
            tracing::info!(node = %change.node, weight = ?change.weight, "cluster weight set");
            (StatusCode::OK, "ok\n").into_response()
        }
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")).into_response(),
    }
}

/// Healthy when the metadata engine answers and, in a mirror region,
/// the mirror is registered at its source and in touch with it.
async fn health(State(state): State<AdminState>) -> (StatusCode, String) {
    if let Err(e) = state.meta.last_seq().await {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("metadata unavailable: {e}\n"),
        );
    }
    if let Some((mirror, timeout)) = &state.mirror {
        let timeout = i64::try_from(timeout.as_millis()).unwrap_or(i64::MAX);
        if let Some(why) = mirror.unhealthy(ferry_meta::now_millis(), timeout) {
            return (StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n"));
        }
    }
    if let Some(why) = state.workers.down() {
        return (StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n"));
    }
    // Workers that panicked and run again do not make the node unhealthy,
    // but the answer says so.
    let mut answer = "ok\n".to_string();
    for line in state.workers.history() {
        answer.push_str(&line);
        answer.push('\n');
    }
    (StatusCode::OK, answer)
}

#[derive(Serialize)]
struct MirrorStatus {
    source: String,
    follow: String,
    /// The last source sequence number applied here.
    position: u64,
    /// Milliseconds since the source last answered.
    last_contact_ms: Option<i64>,
    resyncing: bool,
    dropped: bool,
    last_error: Option<String>,
    /// Blobs still to copy into this region's store.
    replication_queue: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    warm_on_arrival: Option<ferry_cache::region::ArrivalStatus>,
}

/// The region's state as JSON: the mirror's, and warm on arrival's (404
/// in a region that neither follows nor warms).
async fn region_status(State(state): State<AdminState>) -> Response {
    let arrivals = state.arrivals.as_ref().map(|a| a.status());
    let Some((mirror, _)) = &state.mirror else {
        return match arrivals {
            Some(arrivals) => {
                Json(serde_json::json!({ "warm_on_arrival": arrivals })).into_response()
            }
            None => (
                StatusCode::NOT_FOUND,
                "this region is not a mirror and warms nothing on arrival\n",
            )
                .into_response(),
        };
    };
    let queue = match state.meta.replication_jobs(0, 100_000).await {
        Ok(jobs) => jobs.len(),
        Err(e) => return (StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")).into_response(),
    };
    let now = ferry_meta::now_millis();
    Json(MirrorStatus {
        source: mirror.source(),
        follow: mirror.follow.clone(),
        position: mirror.position(),
        last_contact_ms: mirror.last_contact().map(|at| now - at),
        resyncing: mirror.resyncing(),
        dropped: mirror.dropped(),
        last_error: mirror.last_error(),
        replication_queue: queue,
        warm_on_arrival: arrivals,
    })
    .into_response()
}

async fn render_metrics(State(state): State<AdminState>) -> (StatusCode, String) {
    match &state.metrics {
        Some(handle) => (StatusCode::OK, crate::metrics::render(handle)),
        None => (
            StatusCode::NOT_FOUND,
            "metrics recorder not installed\n".to_string(),
        ),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WarmupBody {
    bucket: String,
    #[serde(default)]
    prefix: String,
    #[serde(default)]
    check: bool,
    /// Drop the prefix's blocks from every member instead.
    #[serde(default)]
    evict: bool,
    #[serde(default)]
    force: bool,
    concurrency: Option<usize>,
}

/// Runs a warm-up (or with `check`, a probe) of a prefix on this node,
/// answering its progress as JSON lines while it runs.
async fn warmup(
    State(state): State<AdminState>,
    headers: HeaderMap,
    body: Result<Json<WarmupBody>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let body = match admitted(&state, &headers, body) {
        Ok(body) => body,
        Err(refused) => return refused.into_response(),
    };
    if !state.cache.keeps_blocks() {
        return (
            StatusCode::CONFLICT,
            "this node has no block cache to warm\n",
        )
            .into_response();
    }
    if body.check && body.evict {
        return (
            StatusCode::BAD_REQUEST,
            "check and evict cannot be asked together\n",
        )
            .into_response();
    }
    let request = WarmupRequest {
        bucket: body.bucket,
        prefix: body.prefix,
        check: body.check,
        evict: body.evict,
        concurrency: body.concurrency.unwrap_or(16).clamp(1, 256),
        force: body.force,
    };
    let node = state.cluster.as_ref().map(|c| c.node.clone());
    let kind = match (request.check, request.evict) {
        (true, _) => "check",
        (_, true) => "evict",
        _ => "warm-up",
    };
    let job = state.status.jobs.start(kind, "");
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    // Ends when the job does, or when the client goes away (the channel
    // closes and the job stops at its next event).
    tokio::spawn(warmup::run(
        state.cache.clone(),
        node,
        state.meta.clone(),
        request,
        tx,
    ));
    ndjson(rx, job, note_warmup)
}

/// A warm-up's event in the book of long jobs.
fn note_warmup(job: &JobHandle, event: &WarmupEvent) -> Option<(&'static str, String)> {
    match event {
        WarmupEvent::Plan { objects, bytes, .. } => {
            job.update(|j| {
                j.objects_total = *objects;
                j.bytes_total = *bytes;
            });
            None
        }
        WarmupEvent::Progress(tally) => {
            note_tally(job, tally);
            None
        }
        WarmupEvent::Done(tally) => {
            note_tally(job, tally);
            Some((
                "done",
                format!(
                    "{} objects, {} bytes: {} loaded, {} already cached, {} failures",
                    tally.objects,
                    tally.bytes,
                    tally.bytes_loaded,
                    tally.bytes_cached,
                    tally.failures
                ),
            ))
        }
        // The reason names the prefix; the page shows no names.
        WarmupEvent::Refused { .. } => Some(("refused", "refused (see its own output)".into())),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ImportBody {
    store: String,
    #[serde(default)]
    source_prefix: String,
    bucket: String,
    #[serde(default)]
    target_prefix: String,
    #[serde(default)]
    delete: bool,
}

/// Runs an import of a store's objects into a bucket on this node,
/// answering its progress as JSON lines while it runs.
async fn import(
    State(state): State<AdminState>,
    headers: HeaderMap,
    body: Result<Json<ImportBody>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let body = match admitted(&state, &headers, body) {
        Ok(body) => body,
        Err(refused) => return refused.into_response(),
    };
    if let Some((mirror, _)) = &state.mirror {
        // A mirror's namespace is the source's: an import here would be
        // undone by the next resync. Import in the source region.
        return (
            StatusCode::CONFLICT,
            format!(
                "this region is a read-only mirror of the source region {}; run the import there\n",
                mirror.source()
            ),
        )
            .into_response();
    }
    let job = state.status.jobs.start("import", &body.store);
    let request = ImportRequest {
        store: body.store,
        source_prefix: body.source_prefix,
        bucket: body.bucket,
        target_prefix: body.target_prefix,
        delete: body.delete,
    };
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(import::run(
        state.meta.clone(),
        state.stores.clone(),
        request,
        tx,
    ));
    ndjson(rx, job, note_import)
}

fn note_tally(job: &JobHandle, tally: &warmup::Tally) {
    job.update(|j| {
        j.objects = tally.objects;
        j.bytes = tally.bytes;
        j.failures = tally.failures;
    });
}

/// An import's event in the book of long jobs.
fn note_import(job: &JobHandle, event: &ImportEvent) -> Option<(&'static str, String)> {
    match event {
        ImportEvent::Progress(tally) => {
            job.update(|j| {
                j.objects = tally.listed;
                j.failures = tally.failures;
            });
            None
        }
        ImportEvent::Done(tally) => {
            job.update(|j| {
                j.objects = tally.listed;
                j.objects_total = tally.listed;
                j.failures = tally.failures;
            });
            Some((
                "done",
                format!(
                    "{} listed: {} added, {} updated, {} unchanged, {} deleted, {} conflicts, {} failures",
                    tally.listed,
                    tally.added,
                    tally.updated,
                    tally.unchanged,
                    tally.deleted,
                    tally.conflicts,
                    tally.failures
                ),
            ))
        }
        ImportEvent::Refused { .. } => Some(("refused", "refused (see its own output)".into())),
    }
}

/// What a job's event changes in its book entry, and whether it ended
/// (its outcome and summary).
type Note<T> = fn(&JobHandle, &T) -> Option<(&'static str, String)>;

/// A response streaming `rx`'s events, one JSON line each, noting each in
/// the job's book entry. When the client goes away the stream drops, the
/// job stops at its next event, and its entry says it stopped.
fn ndjson<T: Serialize + Send + 'static>(
    rx: tokio::sync::mpsc::Receiver<T>,
    job: JobHandle,
    note: Note<T>,
) -> Response {
    let lines = futures::stream::unfold((rx, Some(job)), move |(mut rx, mut job)| async move {
        let event = rx.recv().await?;
        if let Some(handle) = &job
            && let Some((outcome, summary)) = note(handle, &event)
            && let Some(handle) = job.take()
        {
            handle.end(outcome, Some(summary));
        }
        let line = serde_json::to_string(&event).unwrap_or_default() + "\n";
        Some((Ok::<_, std::convert::Infallible>(line), (rx, job)))
    });
    let mut response = Response::new(axum::body::Body::from_stream(lines));
    response.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("application/x-ndjson"),
    );
    response
}
