//! The admin HTTP server: `/health` and `/metrics`.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use ferry_meta::Meta;
use metrics_exporter_prometheus::PrometheusHandle;

#[derive(Clone)]
pub struct AdminState {
    pub meta: Arc<dyn Meta>,
    pub metrics: Option<PrometheusHandle>,
}

pub fn app(state: AdminState) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/metrics", get(render_metrics))
        .with_state(state)
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
