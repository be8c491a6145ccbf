//! Pins at run time: where this node keeps them, the worker that follows
//! the cluster's (Redis), and the admin endpoints that list and change
//! them (`/cache/pins`, admin token).

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use ferry_cache::CacheError;
use ferry_cache::cluster::Cluster;
use ferry_cache::pins::{KeptPins, Pins, kept::PIN_FILE};
use ferry_config::Config;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::admin::{AdminState, admitted, authorized_or_refused};

/// How often a cluster node reads the pins kept in Redis: a pin set on
/// one node applies on every other within this.
pub const REFRESH: Duration = Duration::from_secs(2);

/// Where this node keeps the pins set at run time.
pub fn kept(config: &Config, cluster: Option<&Cluster>) -> KeptPins {
    let Some(disk) = config.cache.disks.first() else {
        return KeptPins::Nowhere("this node has no disk tier: pins keep blocks on disk");
    };
    match cluster {
        Some(cluster) => match cluster.redis() {
            Some(redis) => KeptPins::Redis(redis.clone()),
            None => KeptPins::Nowhere(
                "static membership has no shared place for run-time pins: add [[cache.pin]] to every node's config",
            ),
        },
        None => KeptPins::File(disk.dir.join(PIN_FILE)),
    }
}

/// Reads the cluster's run-time pins every `REFRESH` until `stop`.
pub async fn follow(kept: Arc<KeptPins>, pins: Arc<Pins>, stop: CancellationToken) {
    let mut ticker = tokio::time::interval(REFRESH);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = ticker.tick() => {}
        }
        match kept.load().await {
            Ok(runtime) => {
                if failing {
                    tracing::info!("run-time pins readable again");
                    failing = false;
                }
                pins.set_runtime(runtime);
            }
            Err(e) => {
                if !failing {
                    tracing::warn!(error = %e, "cannot read the run-time pins; keeping the last ones");
                    failing = true;
                }
            }
        }
    }
}

#[derive(Serialize)]
struct PinList {
    pins: Vec<ferry_cache::pins::Pin>,
}

/// Every pin of this node (names buckets: admin token).
pub async fn list(State(state): State<AdminState>, headers: HeaderMap) -> Response {
    if let Err(refused) = authorized_or_refused(&state, &headers) {
        return refused.into_response();
    }
    Json(PinList {
        pins: state.cache.pins().list(),
    })
    .into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PinChange {
    /// `BUCKET` or `BUCKET/PREFIX`.
    prefix: String,
    /// `false` unpins.
    #[serde(default = "pinned_by_default")]
    pinned: bool,
}

fn pinned_by_default() -> bool {
    true
}

/// Pins (or unpins) a prefix for the whole cluster, or this node outside
/// one; answers the pins now in force here.
pub async fn change(
    State(state): State<AdminState>,
    headers: HeaderMap,
    body: Result<Json<PinChange>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let change = match admitted(&state, &headers, body) {
        Ok(change) => change,
        Err(refused) => return refused.into_response(),
    };
    if let Err(why) = ferry_config::check_pin(&change.prefix) {
        return (StatusCode::BAD_REQUEST, format!("prefix: {why}\n")).into_response();
    }
    match state.kept_pins.set(&change.prefix, change.pinned).await {
        Ok(runtime) => {
            tracing::info!(prefix = %change.prefix, pinned = change.pinned, "pin changed");
            state.cache.pins().set_runtime(runtime);
            Json(PinList {
                pins: state.cache.pins().list(),
            })
            .into_response()
        }
        Err(CacheError::Unsupported(why)) => {
            (StatusCode::CONFLICT, format!("{why}\n")).into_response()
        }
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")).into_response(),
    }
}
