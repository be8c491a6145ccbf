//! The S3 service as the S3 port serves it (through [`crate::listen`]): a
//! request id on every response and log line, per-operation metrics, and
//! the request preflight.

use std::cell::RefCell;
use std::sync::Arc;
use std::time::Instant;

use futures::future::BoxFuture;
use hyper::body::Incoming;
use s3s::service::{S3Service, S3ServiceBuilder};
use s3s::{HttpError, HttpResponse};
use tracing::Instrument;

use crate::auth::Access;
use crate::metrics as m;
use crate::node::{Node, StartError};
use crate::preflight::{self, Preflight};
use crate::s3::FerryS3;
use crate::signature::Verifier;
use crate::spool::{Spool, SpoolConfig};

/// What the request this task serves learns about itself on the way.
struct Notes {
    /// Its S3 operation, noted by the access check (which is where s3s
    /// first knows it).
    operation: RefCell<Option<String>>,
    /// Its span, named by the operation once known.
    span: tracing::Span,
}

tokio::task_local! {
    static NOTES: Notes;
}

/// A span for a step of the current request (`make` opens it) when the
/// request is traced; else none, and nothing is made.
pub(crate) fn step_span(make: impl FnOnce() -> tracing::Span) -> tracing::Span {
    let traced = NOTES
        .try_with(|notes| !notes.span.is_disabled())
        .unwrap_or(false);
    if traced {
        make()
    } else {
        tracing::Span::none()
    }
}

/// Records the current request's operation name for its log line and
/// metrics, and names its trace span by it. (The access check runs before
/// the handler opens any child span, while the span's name can change.)
pub(crate) fn note_operation(name: &str) {
    let _ = NOTES.try_with(|notes| {
        *notes.operation.borrow_mut() = Some(name.to_string());
        notes.span.record("otel.name", name);
    });
}

/// A request id in the shape S3 uses: 16 upper-case hex digits.
fn new_request_id() -> String {
    format!("{:016X}", rand::random::<u64>())
}

/// The S3 service with request ids, logging and metrics around it.
#[derive(Clone)]
pub struct Instrumented {
    inner: Arc<S3Service>,
    preflight: Arc<Preflight>,
    /// With trace export, the share of requests traced.
    trace_ratio: Option<f64>,
}

impl Instrumented {
    pub(crate) fn new(
        inner: S3Service,
        preflight: Preflight,
        trace_ratio: Option<f64>,
    ) -> Instrumented {
        Instrumented {
            inner: Arc::new(inner),
            preflight: Arc::new(preflight),
            trace_ratio,
        }
    }

    /// Whether this request is traced: sampled here, before any of its
    /// spans exists, so one that is not costs nothing for tracing.
    fn sampled(&self) -> bool {
        self.trace_ratio
            .is_some_and(|ratio| ratio >= 1.0 || rand::random::<f64>() < ratio)
    }
}

impl hyper::service::Service<http::Request<Incoming>> for Instrumented {
    type Response = HttpResponse;
    type Error = HttpError;
    type Future = BoxFuture<'static, Result<HttpResponse, HttpError>>;

    fn call(&self, request: http::Request<Incoming>) -> Self::Future {
        self.serve(request.map(s3s::Body::from))
    }
}

impl Instrumented {
    /// Answers one request whatever its body came from: the S3 port's
    /// connections (`call`) and in-process callers (the fuzz targets) share
    /// this one path.
    pub fn serve(
        &self,
        request: http::Request<s3s::Body>,
    ) -> BoxFuture<'static, Result<HttpResponse, HttpError>> {
        let inner = self.inner.clone();
        let preflight = self.preflight.clone();
        let request_id = new_request_id();
        let method = request.method().clone();
        // The request's span: its id (the x-amz-request-id the client
        // sees) on every log line within.
        let span = tracing::info_span!("request", request_id = %request_id);
        // Its trace span, a DEBUG span only trace export enables (the log
        // lines stay as they are, and untraced it costs a disabled check):
        // the root of its trace, named by its S3 operation once known.
        let traced = if self.sampled() {
            tracing::debug_span!(
                parent: &span,
                "s3",
                otel.name = tracing::field::Empty,
                otel.kind = "server",
                otel.status_code = tracing::field::Empty,
                request_id = %request_id,
                http.request.method = %method,
                http.response.status_code = tracing::field::Empty,
            )
        } else {
            tracing::Span::none()
        };
        let started = Instant::now();
        let work = async move {
            // An error answered before the body was read (a refused PUT
            // with Expect: 100-continue) leaves the connection unusable:
            // say so, or the client reuses it and its next request fails.
            let close_on_error =
                request.version() <= http::Version::HTTP_11 && has_body(request.headers());
            let response = match preflight::prepare(request, &preflight).await {
                Ok(request) => S3Service::call(&inner, request).await,
                Err(refused) => refused
                    .to_http_response()
                    .map_err(|e| HttpError::new(Box::new(e))),
            };
            let operation = NOTES
                .try_with(|notes| notes.operation.borrow().clone())
                .ok()
                .flatten()
                .unwrap_or_else(|| "Unknown".to_string());
            let elapsed = started.elapsed();
            let span = NOTES
                .try_with(|notes| notes.span.clone())
                .unwrap_or_else(|_| tracing::Span::none());
            match response {
                Ok(mut response) => {
                    if method == http::Method::HEAD {
                        partial_head(&mut response);
                    }
                    if let Ok(value) = http::HeaderValue::from_str(&request_id) {
                        response.headers_mut().insert("x-amz-request-id", value);
                    }
                    if response.status().is_client_error() || response.status().is_server_error() {
                        add_request_id_to_error(&mut response, &request_id);
                        if close_on_error {
                            response.headers_mut().insert(
                                http::header::CONNECTION,
                                http::HeaderValue::from_static("close"),
                            );
                        }
                    }
                    let status = response.status().as_u16();
                    span.record("http.response.status_code", status);
                    if response.status().is_server_error() {
                        span.record("otel.status_code", "ERROR");
                    }
                    m::record_request(&operation, status, elapsed);
                    tracing::info!(
                        %method,
                        operation,
                        status,
                        ms = elapsed.as_secs_f64() * 1000.0,
                        "s3 request"
                    );
                    Ok(response)
                }
                Err(e) => {
                    span.record("otel.status_code", "ERROR");
                    m::record_request(&operation, 0, elapsed);
                    tracing::warn!(%method, operation, error = ?e, "s3 request aborted");
                    Err(e)
                }
            }
        };
        let notes = Notes {
            operation: RefCell::new(None),
            span: traced.clone(),
        };
        Box::pin(NOTES.scope(notes, work).instrument(traced).instrument(span))
    }
}

/// Whether a request carries a body the handler may not have read.
fn has_body(headers: &http::HeaderMap) -> bool {
    headers.contains_key(http::header::TRANSFER_ENCODING)
        || headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .is_some_and(|n| n > 0)
}

/// S3 answers a HEAD with a Range (or a part number) 206, as it would the
/// GET; s3s 0.14 answers 206 only for a GET and ignores the status a
/// handler sets, so a HEAD that carries a Content-Range is marked here.
fn partial_head(response: &mut HttpResponse) {
    if response.status() == http::StatusCode::OK
        && response.headers().contains_key(http::header::CONTENT_RANGE)
    {
        *response.status_mut() = http::StatusCode::PARTIAL_CONTENT;
    }
}

/// S3 error bodies carry the request id too; s3s only knows it for errors
/// Ferry raised itself, so it is added here for all of them.
fn add_request_id_to_error(response: &mut HttpResponse, request_id: &str) {
    let Some(body) = response.body().bytes() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(&body) else {
        return;
    };
    if !text.ends_with("</Error>") || text.contains("<RequestId>") {
        return;
    }
    let patched = format!(
        "{}<RequestId>{request_id}</RequestId></Error>",
        &text[..text.len() - "</Error>".len()]
    );
    if let Ok(length) = http::HeaderValue::from_str(&patched.len().to_string()) {
        response
            .headers_mut()
            .insert(http::header::CONTENT_LENGTH, length);
    }
    *response.body_mut() = s3s::Body::from(patched);
}

/// The S3 port's service for `node`: s3s with Ferry's auth, access rules
/// (a mirror refuses writes) and virtual hosts, behind the request
/// preflight and metrics.
pub fn service(node: &Node) -> Result<Instrumented, StartError> {
    let mut builder = S3ServiceBuilder::new(FerryS3::new(node)?);
    builder.set_auth(node.keyring.clone());
    let mut access = Access::new(node.keyring.clone(), node.meta.clone());
    if let (Some(mirror), Some(region)) = (&node.region.mirror, &node.config.region) {
        access = access.read_only_mirror(&region.name, mirror.clone());
    }
    builder.set_access(access);
    let server = &node.config.server;
    let hosts =
        (!server.domains.is_empty()).then(|| crate::host::VirtualHosts::new(&server.domains));
    if let Some(hosts) = &hosts {
        builder.set_host(hosts.clone());
    }
    Ok(Instrumented::new(
        builder.build(),
        Preflight {
            spool: Spool::new(SpoolConfig {
                dir: node.spool_dir(),
                max_size: server.max_put_size,
                max_spools: server.max_spools,
                max_bytes: server.max_spool_bytes,
            }),
            verifier: Verifier::new(node.keyring.clone(), hosts),
        },
        node.config.telemetry.otlp.as_ref().map(|o| o.sample_ratio),
    ))
}
