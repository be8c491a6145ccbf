//! The peer endpoint: serves blocks, and nothing else, to authenticated
//! peers of the cluster (wire format in `ferry_cache::cluster::wire`).
//! Every request must carry a valid HMAC with the cluster secret and a
//! timestamp within the allowed skew; anything else is 403 and counted.
//! Whoever holds the secret can read any cached block, bypassing S3
//! credentials: keep this port on the cluster's private network.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use ferry_cache::cluster::wire::{self, Verb};
use ferry_cache::cluster::{AnswerDigests, Cluster, Node as ClusterNode, Served};
use tracing::Instrument;

use crate::node::Node;
use ferry_cache::{BlockAddr, BlockCache, CacheError, Stores, admission};

use crate::metrics as gm;

#[derive(Clone)]
pub struct PeerState {
    pub cache: Arc<BlockCache>,
    pub node: Arc<ClusterNode>,
    pub secret: Arc<str>,
    /// To tell which keys are blobs peers may read.
    pub stores: Stores,
    /// The cluster's block size: an address of another size names a block
    /// no member caches.
    pub block_size: u64,
    /// Digests of the blocks answered, for protocol 2's MACs.
    pub digests: AnswerDigests,
    /// This node's status samples, which the others' status pages gather.
    pub status: Arc<crate::status::Status>,
}

impl PeerState {
    pub fn new(node: &Node, cluster: &Cluster, secret: &str) -> PeerState {
        PeerState {
            cache: node.cache.clone(),
            node: cluster.node.clone(),
            secret: secret.into(),
            stores: node.stores.clone(),
            block_size: node.config.cache.block_size,
            digests: AnswerDigests::default(),
            status: node.status.clone(),
        }
    }
}

pub fn app(state: PeerState) -> Router {
    Router::new()
        .route(wire::PATH, get(block))
        .route(wire::STATUS_PATH, get(status_samples))
        .with_state(state)
}

fn refuse(status: StatusCode, reason: &'static str, message: String) -> Response {
    metrics::counter!(ferry_cache::metrics::PEER_REFUSED, "reason" => reason).increment(1);
    tracing::warn!(reason, %message, "peer request refused");
    (status, message).into_response()
}

fn header<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Peers read blocks of blobs: in a store Ferry owns, only keys under its
/// blob prefix (not metadata dumps or anything else kept there); in an
/// imported store, its objects.
fn readable_by_peers(stores: &Stores, addr: &BlockAddr) -> Result<(), String> {
    let Ok(store) = stores.get(&addr.store) else {
        return Err(format!("no store {:?} here", addr.store));
    };
    let under_blobs = addr
        .blob
        .strip_prefix(ferry_cache::volume::BLOB_PREFIX)
        .is_some_and(|rest| rest.starts_with('/'));
    if store.spec.owned && !under_blobs {
        return Err(format!("{:?} is not a blob key", addr.blob));
    }
    Ok(())
}

fn typed_error(kind: &'static str, status: StatusCode, message: String) -> Response {
    let mut response = (status, message).into_response();
    response
        .headers_mut()
        .insert(wire::H_ERROR, HeaderValue::from_static(kind));
    response
}

/// A peer request, answered; with the answer's MAC when the asker wants
/// one (see `wire::AnswerMac`).
async fn block(
    State(state): State<PeerState>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let want_mac = header(&headers, wire::H_WANT_MAC) == Some("1");
    let signature = header(&headers, wire::H_SIGNATURE).map(str::to_string);
    // `answer` refuses a request in a protocol not spoken here; a MAC
    // over that refusal is in the lowest one.
    let spoken = wire::spoken_protocol(header(&headers, wire::H_PROTOCOL));
    let protocol = spoken.unwrap_or(wire::PROTOCOL_MIN);
    let secret = state.secret.clone();
    let maced = want_mac && signature.is_some();
    let form = AnswerForm {
        checksum: wire::answer_checksummed(protocol, maced),
        body_digest: maced && wire::mac_covers_body_digest(protocol),
    };
    // The asker's trace continues here, when it sent one (only a traced
    // request does).
    let span = if headers.contains_key(ferry_cache::cluster::TRACEPARENT) {
        let span = tracing::debug_span!(
            "peer serve",
            asker = header(&headers, wire::H_NODE).unwrap_or_default(),
            verb = header(&headers, wire::H_VERB).unwrap_or_default(),
            otel.kind = "server",
        );
        crate::telemetry::continue_trace(&span, &headers);
        span
    } else {
        tracing::Span::none()
    };
    let response = answer(state, query.unwrap_or_default(), &headers, spoken, form)
        .instrument(span)
        .await;
    match signature {
        Some(signature) if maced => with_mac(response, &secret, protocol, &signature).await,
        _ => response,
    }
}

/// This node's status samples newer than `since`, for another node's
/// status page: signed like a block request, answered with a MAC.
async fn status_samples(
    State(state): State<PeerState>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let query = query.unwrap_or_default();
    let (Some(priority), Some(node), Some(time), Some(signature)) = (
        header(&headers, wire::H_PRIORITY),
        header(&headers, wire::H_NODE),
        header(&headers, wire::H_TIME),
        header(&headers, wire::H_SIGNATURE),
    ) else {
        return refuse(
            StatusCode::FORBIDDEN,
            "signature",
            "missing peer authentication headers".into(),
        );
    };
    let signed = time
        .parse::<i64>()
        .ok()
        .map(|time_ms| wire::Signed::status(&query, time_ms, priority, node));
    let Some(signed) = signed.filter(|signed| {
        header(&headers, wire::H_VERB) == Some(wire::STATUS_VERB)
            && signed.verify(state.secret.as_bytes(), signature)
    }) else {
        return refuse(
            StatusCode::FORBIDDEN,
            "signature",
            format!("bad status request signature from {node:?}"),
        );
    };
    let skew = (wire::now_ms() - signed.time_ms).abs();
    if skew > wire::MAX_SKEW_MS {
        return refuse(
            StatusCode::FORBIDDEN,
            "expired",
            format!("timestamp {skew} ms away from this node's clock"),
        );
    }
    let Some(protocol) = wire::spoken_protocol(header(&headers, wire::H_PROTOCOL)) else {
        return refuse(
            StatusCode::BAD_REQUEST,
            "protocol",
            "peer protocol not spoken here".into(),
        );
    };
    let Some(since) = query
        .strip_prefix("since=")
        .and_then(|v| v.parse::<i64>().ok())
    else {
        return refuse(
            StatusCode::BAD_REQUEST,
            "malformed",
            "a status request names since=<ms>".into(),
        );
    };
    let body = match serde_json::to_vec(&state.status.own_samples_since(since)) {
        Ok(body) => body,
        Err(e) => {
            metrics::counter!(gm::PEER_INTERNAL_ERRORS).increment(1);
            return (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response();
        }
    };
    let mut mac = wire::AnswerMac::new(state.secret.as_bytes(), protocol, signature, 200, "", "");
    mac.update(&body);
    let mut response = (StatusCode::OK, body).into_response();
    if let Ok(value) = HeaderValue::from_str(&mac.finish()) {
        response.headers_mut().insert(wire::H_ANSWER_MAC, value);
    }
    response.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// What a block answer carries besides its bytes.
#[derive(Clone, Copy)]
struct AnswerForm {
    /// An xxh3 checksum header.
    checksum: bool,
    /// Its body's digest, for the MAC (a response extension, not sent).
    body_digest: bool,
}

/// A block answer's body digest, passed from `answer` to `with_mac`.
#[derive(Clone, Copy)]
struct BodyDigest([u8; 32]);

/// `response` with its MAC header. Every answer body is in memory already
/// (a block, or a short message), so collecting it costs no copy.
async fn with_mac(response: Response, secret: &str, protocol: u32, signature: &str) -> Response {
    let (mut parts, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, usize::MAX).await else {
        return (StatusCode::INTERNAL_SERVER_ERROR, "answer body failed").into_response();
    };
    let value = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    };
    let mut mac = wire::AnswerMac::new(
        secret.as_bytes(),
        protocol,
        signature,
        parts.status.as_u16(),
        value(wire::H_ERROR),
        value(wire::H_CACHED),
    );
    let known = parts.extensions.remove::<BodyDigest>();
    if !known.is_some_and(|BodyDigest(digest)| mac.use_body_digest(digest)) {
        mac.update(&bytes);
    }
    if let Ok(value) = HeaderValue::from_str(&mac.finish()) {
        parts.headers.insert(wire::H_ANSWER_MAC, value);
    }
    Response::from_parts(parts, Body::from(bytes))
}

/// The answer to one peer request in `protocol` (`None`: one not spoken
/// here, refused), a block's in `form`.
async fn answer(
    state: PeerState,
    query: String,
    headers: &HeaderMap,
    protocol: Option<u32>,
    form: AnswerForm,
) -> Response {
    let (Some(verb), Some(priority), Some(node), Some(time), Some(signature)) = (
        header(headers, wire::H_VERB),
        header(headers, wire::H_PRIORITY),
        header(headers, wire::H_NODE),
        header(headers, wire::H_TIME),
        header(headers, wire::H_SIGNATURE),
    ) else {
        return refuse(
            StatusCode::FORBIDDEN,
            "signature",
            "missing peer authentication headers".into(),
        );
    };
    let Ok(time_ms) = time.parse::<i64>() else {
        return refuse(StatusCode::FORBIDDEN, "signature", "bad timestamp".into());
    };
    let signed = wire::Signed {
        method: "GET",
        path: wire::PATH,
        query: &query,
        time_ms,
        verb,
        priority,
        node,
    };
    if !signed.verify(state.secret.as_bytes(), signature) {
        return refuse(
            StatusCode::FORBIDDEN,
            "signature",
            format!("bad signature from {node:?}"),
        );
    }
    let skew = (wire::now_ms() - time_ms).abs();
    if skew > wire::MAX_SKEW_MS {
        return refuse(
            StatusCode::FORBIDDEN,
            "expired",
            format!("timestamp {skew} ms away from this node's clock"),
        );
    }
    if protocol.is_none() {
        return refuse(
            StatusCode::BAD_REQUEST,
            "protocol",
            format!(
                "peer protocol {:?} not spoken here ({}..={})",
                header(headers, wire::H_PROTOCOL),
                wire::PROTOCOL_MIN,
                wire::PROTOCOL_MAX
            ),
        );
    }
    let (Some(verb), Some(priority)) = (Verb::parse(verb), wire::parse_priority(priority)) else {
        return refuse(
            StatusCode::BAD_REQUEST,
            "malformed",
            "unknown verb or priority".into(),
        );
    };
    let (addr, range) = match wire::parse_query(&query) {
        Ok(parsed) => parsed,
        Err(wire::Malformed(why)) => {
            return refuse(StatusCode::BAD_REQUEST, "malformed", why);
        }
    };
    if addr.block_size != state.block_size {
        return refuse(
            StatusCode::BAD_REQUEST,
            "block_size",
            format!(
                "block size {} is not this cluster's ({})",
                addr.block_size, state.block_size
            ),
        );
    }
    if let Err(why) = readable_by_peers(&state.stores, &addr) {
        return refuse(StatusCode::FORBIDDEN, "not_a_blob", why);
    }
    let tiers_only = header(headers, wire::H_TIERS_ONLY) == Some("1");
    let keep_on_disk = state.node.owns(addr.cache_key().as_bytes());
    let served = admission::with_priority(
        priority,
        state
            .cache
            .serve_peer(&addr, range.clone(), verb, tiers_only, keep_on_disk),
    )
    .await;
    match served {
        Ok(Served::Bytes { bytes, .. }) => {
            metrics::counter!(ferry_cache::metrics::PEER_BYTES_SERVED)
                .increment(bytes.len() as u64);
            let sum = form.checksum.then(|| wire::checksum(&bytes));
            let digest = form
                .body_digest
                .then(|| BodyDigest(state.digests.of(&addr, &range, &bytes)));
            let mut response = Response::new(Body::from(bytes));
            if let Some(digest) = digest {
                response.extensions_mut().insert(digest);
            }
            if let Some(value) = sum.and_then(|sum| HeaderValue::from_str(&sum).ok()) {
                response.headers_mut().insert(wire::H_CHECKSUM, value);
            }
            response
        }
        Ok(Served::Cached { cached, pinned }) => {
            let mut response = StatusCode::OK.into_response();
            response.headers_mut().insert(
                wire::H_CACHED,
                HeaderValue::from_static(match (cached, pinned) {
                    (true, true) => wire::CACHED_PINNED,
                    (true, false) => "1",
                    (false, _) => "0",
                }),
            );
            response
        }
        Ok(Served::NotCached) => typed_error(
            wire::E_NOT_CACHED,
            StatusCode::NOT_FOUND,
            "not cached here".into(),
        ),
        // Answers name the blob as asked, never where a store keeps it (a
        // local store's error holds its absolute path): the detail is logged.
        Err(CacheError::MissingBlob { .. }) => typed_error(
            wire::E_MISSING_BLOB,
            StatusCode::NOT_FOUND,
            format!("blob {} is missing from store {}", addr.blob, addr.store),
        ),
        Err(CacheError::Store { store, source }) => {
            tracing::warn!(%store, error = %source, "a store failed serving a peer");
            typed_error(
                wire::E_STORE,
                StatusCode::SERVICE_UNAVAILABLE,
                format!("store {store} failed"),
            )
        }
        Err(other) => {
            metrics::counter!(gm::PEER_INTERNAL_ERRORS).increment(1);
            tracing::error!(error = %other, "serving a peer failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "this node failed to serve the block",
            )
                .into_response()
        }
    }
}
