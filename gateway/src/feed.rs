//! The source region's change feed on the admin port (wire format in
//! `ferry_cache::region::feed`): every request must carry a valid
//! signature with the feed secret, and every answer is signed back.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use ferry_cache::region::feed::{self, H_REGION, H_SIGNATURE, H_TIME, SignedRequest};
use ferry_cache::region::feed::{ChangesAnswer, FeedSource};
use serde::Serialize;

#[derive(Clone)]
pub struct FeedState {
    pub source: Arc<FeedSource>,
    pub secret: Arc<[u8]>,
}

pub fn routes(state: FeedState) -> Router {
    Router::new()
        .route(feed::PATH_CHANGES, get(changes))
        .route(feed::PATH_SNAPSHOT, get(snapshot))
        .route(feed::PATH_ENTRIES, get(entries))
        .with_state(state)
}

/// The asking mirror and the request's signature, once checked: a
/// handler taking a `Caller` runs only for a signed request.
struct Caller {
    mirror: String,
    signature: String,
}

impl axum::extract::FromRequestParts<FeedState> for Caller {
    type Rejection = Refused;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &FeedState,
    ) -> Result<Caller, Refused> {
        authenticate(state, &parts.uri, &parts.headers)
    }
}

fn header<'h>(headers: &'h HeaderMap, name: &str) -> &'h str {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

/// A refused request: 401 with the reason (unsigned: the caller is not
/// known to hold the secret).
type Refused = (StatusCode, String);

fn authenticate(state: &FeedState, uri: &Uri, headers: &HeaderMap) -> Result<Caller, Refused> {
    let refuse = |why: &str| {
        tracing::warn!(path = %uri.path(), why, "feed request refused");
        (StatusCode::UNAUTHORIZED, format!("{why}\n"))
    };
    let mirror = header(headers, H_REGION);
    let signature = header(headers, H_SIGNATURE);
    let Ok(time_ms) = header(headers, H_TIME).parse::<i64>() else {
        return Err(refuse("missing or malformed timestamp"));
    };
    if mirror.is_empty() || signature.is_empty() {
        return Err(refuse("not a signed feed request"));
    }
    if (ferry_meta::now_millis() - time_ms).abs() > feed::MAX_SKEW_MS {
        return Err(refuse(
            "the request's timestamp is too far from this node's clock",
        ));
    }
    let signed = SignedRequest {
        method: "GET",
        path: uri.path(),
        query: uri.query().unwrap_or(""),
        time_ms,
        region: mirror,
    };
    if !signed.verify(&state.secret, signature) {
        return Err(refuse(
            "wrong signature (is region.feed_secret the same at both ends?)",
        ));
    }
    Ok(Caller {
        mirror: mirror.to_string(),
        signature: signature.to_string(),
    })
}

/// A JSON answer signed for `caller`'s request.
fn signed<T: Serialize>(
    state: &FeedState,
    caller: &Caller,
    status: StatusCode,
    value: &T,
) -> Response {
    let body = match serde_json::to_vec(value) {
        Ok(body) => body,
        Err(e) => return (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
    };
    let sig = feed::sign_answer(&state.secret, &caller.signature, status.as_u16(), &body);
    let mut response = (status, body).into_response();
    if let Ok(value) = HeaderValue::from_str(&sig) {
        response.headers_mut().insert(H_SIGNATURE, value);
    }
    response.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

fn bad_request(state: &FeedState, caller: &Caller, error: impl std::fmt::Display) -> Response {
    signed(
        state,
        caller,
        StatusCode::BAD_REQUEST,
        &serde_json::json!({ "error": error.to_string() }),
    )
}

fn failed(state: &FeedState, caller: &Caller, error: impl std::fmt::Display) -> Response {
    tracing::warn!(mirror = %caller.mirror, error = %error, "feed answer failed");
    signed(
        state,
        caller,
        StatusCode::SERVICE_UNAVAILABLE,
        &serde_json::json!({ "error": error.to_string() }),
    )
}

fn number<T: std::str::FromStr>(
    query: &HashMap<String, String>,
    name: &str,
    default: T,
) -> Result<T, String> {
    match query.get(name) {
        None => Ok(default),
        Some(text) => text
            .parse()
            .map_err(|_| format!("{name}={text:?} is not a number")),
    }
}

async fn changes(
    State(state): State<FeedState>,
    caller: Caller,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let parsed = (|| {
        Ok::<_, String>((
            number(&query, "after", 0u64)?,
            number(&query, "limit", feed::MAX_PAGE)?,
            number(&query, "wait_ms", 0u64)?.min(feed::MAX_WAIT_MS),
        ))
    })();
    let (after, limit, wait_ms) = match parsed {
        Ok(p) => p,
        Err(e) => return bad_request(&state, &caller, e),
    };
    match state
        .source
        .changes(&caller.mirror, after, limit, Duration::from_millis(wait_ms))
        .await
    {
        Ok(ChangesAnswer::Page(page)) => signed(&state, &caller, StatusCode::OK, &page),
        Ok(ChangesAnswer::Resync(resync)) => {
            tracing::info!(mirror = %caller.mirror, reason = %resync.reason, "mirror told to resync");
            signed(&state, &caller, StatusCode::GONE, &resync)
        }
        Err(e) => failed(&state, &caller, e),
    }
}

async fn snapshot(State(state): State<FeedState>, caller: Caller) -> Response {
    match state.source.snapshot(&caller.mirror).await {
        Ok(start) => signed(&state, &caller, StatusCode::OK, &start),
        Err(e) => failed(&state, &caller, e),
    }
}

async fn entries(
    State(state): State<FeedState>,
    caller: Caller,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let Some(bucket) = query.get("bucket") else {
        return bad_request(&state, &caller, "bucket is required");
    };
    let limit = match number(&query, "limit", feed::MAX_PAGE) {
        Ok(limit) => limit,
        Err(e) => return bad_request(&state, &caller, e),
    };
    match state
        .source
        .entries(bucket, query.get("after").cloned(), limit)
        .await
    {
        Ok(page) => signed(&state, &caller, StatusCode::OK, &page),
        Err(e) => failed(&state, &caller, e),
    }
}
