//! The status page's routes on the admin port: `/status` (one HTML page,
//! no external assets) and `/status/data` (the JSON it polls). Both are
//! open and read only what the node already holds: viewing the page asks
//! no other node anything.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;

use super::Status;

const PAGE: &str = include_str!("page.html");

pub fn routes(status: Arc<Status>) -> Router {
    Router::new()
        .route("/status", get(page))
        .route("/status/data", get(data))
        .with_state(status)
}

async fn page() -> Response {
    ([(header::CACHE_CONTROL, "no-store")], Html(PAGE)).into_response()
}

#[derive(Deserialize)]
struct Since {
    /// Only samples taken after this (ms since the epoch); 0: all held.
    #[serde(default)]
    since: i64,
}

async fn data(State(status): State<Arc<Status>>, Query(since): Query<Since>) -> Response {
    (
        [(header::CACHE_CONTROL, "no-store")],
        Json(status.view(since.since)),
    )
        .into_response()
}
