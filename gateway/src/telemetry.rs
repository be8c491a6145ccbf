//! Logs and traces: the log lines on stderr (`FERRY_LOG` filters them),
//! and with `[telemetry] otlp_endpoint` the spans of every S3 request —
//! its metadata lookups, block reads, peer requests and store reads — sent
//! to an OpenTelemetry collector over OTLP/HTTP. A peer request carries its
//! trace (`traceparent`), so the owner's spans join the asker's trace: a
//! slow GET shows which node and which store was slow.
//!
//! The request span is at INFO (it is the log lines' context); its steps
//! are DEBUG spans, which the log filter leaves out, so without export
//! they cost a disabled callsite's check.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::time::Duration;

use ferry_cache::cluster::TRACEPARENT;
use ferry_config::OtlpConfig;
use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracerProvider,
};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::Layer;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// How long a batch of spans may take to reach the collector.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// The trace export, while it runs; [`Telemetry::shutdown`] sends what is
/// left.
#[derive(Default)]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Whether spans are exported.
    pub fn exporting(&self) -> bool {
        self.provider.is_some()
    }

    /// Sends the spans not sent yet and stops the export.
    pub fn shutdown(self) {
        if let Some(provider) = self.provider
            && let Err(e) = provider.shutdown()
        {
            eprintln!("warning: the last traces were not all exported: {e}");
        }
    }
}

/// The log filter: `FERRY_LOG`, else INFO without s3s's per-error lines
/// (Ferry's own request line records them with their status) and foyer's
/// start-up chatter (its warnings and errors stay).
fn log_filter(env: &HashMap<String, String>) -> tracing_subscriber::EnvFilter {
    env.get("FERRY_LOG")
        .and_then(|f| tracing_subscriber::EnvFilter::try_new(f).ok())
        .unwrap_or_else(|| {
            tracing_subscriber::EnvFilter::new(
                "info,s3s=off,foyer=warn,foyer_memory=warn,foyer_storage=warn,foyer_common=warn",
            )
        })
}

/// Installs the logger, and the trace export when `otlp` says where to;
/// `node` names this node in every span (`service.instance.id`). An
/// export that cannot be built is logged and left off: traces are never a
/// reason not to serve.
pub fn init(
    json: bool,
    env: &HashMap<String, String>,
    otlp: Option<&OtlpConfig>,
    node: &str,
) -> Telemetry {
    let (provider, failed) = match otlp.map(|config| tracer_provider(config, node)) {
        Some(Ok(provider)) => (Some(provider), None),
        Some(Err(e)) => (None, Some(e)),
        None => (None, None),
    };
    let logs = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    // Not boxed: a boxed layer hides its per-layer filter, and spans every
    // filter left out would still be made.
    if json {
        install(logs.json().with_filter(log_filter(env)), provider.as_ref());
    } else {
        install(logs.with_filter(log_filter(env)), provider.as_ref());
    }
    if let Some(e) = failed {
        tracing::error!(error = %e, "trace export not started; serving without it");
    }
    Telemetry { provider }
}

/// Installs `logs`, and over it the trace layer when `provider` exports.
fn install<L>(logs: L, provider: Option<&SdkTracerProvider>)
where
    L: Layer<tracing_subscriber::Registry> + Send + Sync + 'static,
{
    let Some(provider) = provider else {
        tracing_subscriber::registry().with(logs).init();
        return;
    };
    let traces = {
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("ferry"))
            // Nothing in Ferry reads OpenTelemetry's own current context;
            // left off, a span stays a builder until its first child, so
            // the request's span can still take its operation's name.
            .with_context_activation(false)
            // Source locations, threads and busy/idle times on every span
            // cost CPU and say little here.
            .with_location(false)
            .with_threads(false)
            .with_target(false)
            .with_tracked_inactivity(false)
            .with_filter(traced_spans())
    };
    tracing_subscriber::registry()
        .with(logs)
        .with(traces)
        .init();
}

/// What the trace layer records. Requests are sampled at their root, not
/// by the SDK (whose sampler would drop a request only after every span of
/// it was made): the S3 service opens a request's `s3` span only for the
/// share `sample_ratio` of them, and this filter keeps
/// - the `s3` span;
/// - `peer serve`: always (the peer endpoint opens it only for a request
///   that came with a trace; the SDK follows the asker's choice);
/// - any other Ferry span: within a traced span, else never (no orphans);
/// - the log lines' `request` span: never (`s3` is the trace's root);
/// - events: Ferry's warnings and errors, onto the traced span they are in.
fn traced_spans<S>() -> impl tracing_subscriber::layer::Filter<S>
where
    S: tracing::Subscriber + for<'lookup> tracing_subscriber::registry::LookupSpan<'lookup>,
{
    tracing_subscriber::filter::DynFilterFn::new(|meta, cx| {
        if !meta.target().starts_with("ferry") {
            return false;
        }
        if !meta.is_span() {
            return *meta.level() <= tracing::Level::WARN;
        }
        match meta.name() {
            "request" => false,
            "s3" | "peer serve" => true,
            _ => cx.lookup_current().is_some(),
        }
    })
    // Settled once per callsite, not at every span or event: other
    // crates' spans and events, Ferry's events below WARN and the log
    // lines' span are never traced.
    .with_callsite_filter(|meta| {
        let never = !meta.target().starts_with("ferry")
            || (meta.is_event() && *meta.level() > tracing::Level::WARN)
            || (meta.is_span() && meta.name() == "request");
        if never {
            tracing::subscriber::Interest::never()
        } else {
            tracing::subscriber::Interest::sometimes()
        }
    })
}

fn tracer_provider(config: &OtlpConfig, node: &str) -> Result<SdkTracerProvider, String> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(config.traces_url.clone())
        .with_timeout(EXPORT_TIMEOUT)
        .with_headers(HashMap::new())
        .build()
        .map_err(|e| format!("telemetry.otlp_endpoint {}: {e}", config.traces_url))?;
    let batches = BatchSpanProcessor::builder(exporter)
        .with_batch_config(
            BatchConfigBuilder::default()
                .with_scheduled_delay(config.export_interval)
                .build(),
        )
        .build();
    // Built without the environment's OTEL_* detectors: the config file
    // is the one place this is set.
    let resource = Resource::builder_empty()
        .with_service_name(config.service_name.clone())
        .with_attribute(opentelemetry::KeyValue::new(
            "service.instance.id",
            node.to_string(),
        ))
        .build();
    Ok(SdkTracerProvider::builder()
        .with_span_processor(batches)
        // Sampled at the root (see `traced_spans`); a peer's
        // span follows the asker's choice.
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::AlwaysOn)))
        .with_resource(resource)
        .build())
}

/// The `traceparent` of the current span, for a peer request; `None`
/// when nothing is traced.
pub fn current_traceparent() -> Option<String> {
    let context = tracing::Span::current().context();
    let mut carrier: HashMap<String, String> = HashMap::new();
    TraceContextPropagator::new().inject_context(&context, &mut carrier);
    carrier.remove(TRACEPARENT)
}

/// Makes `span` a child of the trace a peer's request carries.
pub fn continue_trace(span: &tracing::Span, headers: &http::HeaderMap) {
    struct Headers<'a>(&'a http::HeaderMap);
    impl Extractor for Headers<'_> {
        fn get(&self, key: &str) -> Option<&str> {
            self.0.get(key).and_then(|v| v.to_str().ok())
        }
        fn keys(&self) -> Vec<&str> {
            self.0.keys().map(http::HeaderName::as_str).collect()
        }
    }
    let parent = TraceContextPropagator::new().extract(&Headers(headers));
    // Fails only for a span no layer records: nothing to join then.
    let _ = span.set_parent(parent);
}
