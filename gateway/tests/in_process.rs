//! The gateway as a library: a node opened in this process, its admin
//! router driven without a socket.

use std::collections::HashMap;

use axum::body::Body;
use ferry_config::{Overrides, RawConfig};
use ferry_gateway::admin::{self, AdminState};
use ferry_gateway::node::Node;
use http::{Request, StatusCode};
use tower::ServiceExt;

const TOKEN: &str = "in-process-admin-token";

/// A node over `toml`, with `dir` as its data dir and no environment.
async fn open_node(dir: &std::path::Path, toml: &str) -> Node {
    let config = RawConfig::from_toml(toml)
        .expect("toml")
        .build(
            &HashMap::new(),
            &Overrides {
                data_dir: Some(dir.to_path_buf()),
                ..Overrides::default()
            },
        )
        .expect("config");
    Node::open(config).await.expect("the node opens")
}

/// `/health`'s status and text.
async fn health(app: &axum::Router) -> (StatusCode, String) {
    let answer = app
        .clone()
        .oneshot(
            Request::get("/health")
                .body(Body::empty())
                .expect("request"),
        )
        .await
        .expect("answer");
    (answer.status(), body_text(answer).await)
}

async fn body_text(response: axum::response::Response) -> String {
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .expect("body");
    String::from_utf8_lossy(&bytes).into_owned()
}

/// A node whose cache is off serves reads through the pass-through tier,
/// and its admin API refuses to warm a cache that keeps nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cache_off_node_is_healthy_and_refuses_a_warmup() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = open_node(
        dir.path(),
        &format!("[cache]\nmemory = \"0\"\ndisk = \"0\"\n\n[admin]\ntoken = \"{TOKEN}\"\n"),
    )
    .await;
    assert!(!node.cache.keeps_blocks());
    let app = admin::app(AdminState::new(&node), None);

    assert_eq!(health(&app).await.0, StatusCode::OK);

    let warmup = |token: &str| {
        Request::post("/warmup")
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", "application/json")
            .body(Body::from(r#"{"bucket":"models"}"#))
            .expect("request")
    };
    let refused = app
        .clone()
        .oneshot(warmup("a-wrong-token"))
        .await
        .expect("answer");
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    let answer = app.oneshot(warmup(TOKEN)).await.expect("answer");
    assert_eq!(answer.status(), StatusCode::CONFLICT);
    assert!(
        body_text(answer).await.contains("no block cache to warm"),
        "the refusal says why"
    );
    node.close().await;
}

/// A background worker that panicked makes `/health` fail while it waits
/// to start again, and is still mentioned once it runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_reports_a_worker_that_panicked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = open_node(dir.path(), "").await;
    let app = admin::app(AdminState::new(&node), None);
    assert_eq!(health(&app).await, (StatusCode::OK, "ok\n".to_string()));
    node.workers
        .panicked("collector", "index out of bounds".to_string());
    let (status, text) = health(&app).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{text}");
    assert!(
        text.contains("collector") && text.contains("index out of bounds"),
        "{text}"
    );
    node.workers.restarted("collector");
    let (status, text) = health(&app).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert!(
        text.starts_with("ok\n") && text.contains("running again"),
        "{text}"
    );
    node.close().await;
}
