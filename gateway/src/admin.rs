//! The admin HTTP server: `/health` and `/metrics` (open), the cluster's
//! status (open, read-only) and its run-time weights (admin token).

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use ferry_cache::cluster::Cluster;
use ferry_meta::Meta;
use metrics_exporter_prometheus::PrometheusHandle;
use serde::{Deserialize, Serialize};

#[derive(Clone)]
pub struct AdminState {
    pub meta: Arc<dyn Meta>,
    pub metrics: Option<PrometheusHandle>,
    pub cluster: Option<Arc<Cluster>>,
    /// Bearer token of the mutating endpoints; `None`: they answer 401.
    pub token: Option<Arc<str>>,
}

pub fn app(state: AdminState) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/metrics", get(render_metrics))
        .route("/cluster/status", get(cluster_status))
        .route("/cluster/weight", post(set_weight))
        .with_state(state)
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

#[derive(Serialize)]
struct MemberStatus {
    id: String,
    address: String,
    weight: u32,
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
            weight: m.weight,
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
    if !authorized(&state, &headers) {
        return (
            StatusCode::UNAUTHORIZED,
            "this endpoint needs the admin token ([admin] token or FERRY_ADMIN_TOKEN) as a Bearer token\n",
        )
            .into_response();
    }
    let Json(change) = match body {
        Ok(body) => body,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response(),
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

/// Healthy when the metadata engine answers.
async fn health(State(state): State<AdminState>) -> (StatusCode, String) {
    match state.meta.last_seq().await {
        Ok(_) => (StatusCode::OK, "ok\n".to_string()),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("metadata unavailable: {e}\n"),
        ),
    }
}

async fn render_metrics(State(state): State<AdminState>) -> (StatusCode, String) {
    match &state.metrics {
        Some(handle) => (StatusCode::OK, handle.render()),
        None => (
            StatusCode::NOT_FOUND,
            "metrics recorder not installed\n".to_string(),
        ),
    }
}
