//! Traces end to end: two real nodes export their spans over OTLP/HTTP
//! to a small receiver in this test, which decodes them (the protobuf
//! OTLP collectors take) and checks the trace of one GET: the request's
//! span carries the `x-amz-request-id` the client saw, its metadata
//! lookup and block reads are its children, and a block asked of the
//! owner continues on the owner, under the asker's peer span.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use common::cluster::{MIB, TestCluster, put, unique};
use common::{ACCESS_KEY, SECRET_KEY, create_bucket, pattern, signed_curl, temp_dir};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use prost::Message;

/// A span as the receiver got it.
#[derive(Debug, Clone)]
struct Received {
    /// `service.instance.id` of the node that sent it.
    node: String,
    name: String,
    trace: String,
    id: String,
    parent: String,
    attributes: BTreeMap<String, String>,
}

type Spans = Arc<Mutex<Vec<Received>>>;

fn text(value: Option<&AnyValue>) -> String {
    match value.and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        _ => String::new(),
    }
}

fn attributes(list: &[KeyValue]) -> BTreeMap<String, String> {
    list.iter()
        .map(|kv| (kv.key.clone(), text(kv.value.as_ref())))
        .collect()
}

async fn traces(State(spans): State<Spans>, body: Bytes) -> Vec<u8> {
    let request = ExportTraceServiceRequest::decode(body).expect("an OTLP protobuf body");
    let mut got = spans.lock().expect("spans");
    for resource in request.resource_spans {
        let node = resource
            .resource
            .map(|r| attributes(&r.attributes))
            .and_then(|a| a.get("service.instance.id").cloned())
            .unwrap_or_default();
        for scope in resource.scope_spans {
            for span in scope.spans {
                got.push(Received {
                    node: node.clone(),
                    name: span.name.clone(),
                    trace: hex::encode(&span.trace_id),
                    id: hex::encode(&span.span_id),
                    parent: hex::encode(&span.parent_span_id),
                    attributes: attributes(&span.attributes),
                });
            }
        }
    }
    ExportTraceServiceResponse::default().encode_to_vec()
}

/// The receiver's base URL, and what it received.
async fn receiver() -> (String, Spans) {
    let spans = Spans::default();
    let app = Router::new()
        .route("/v1/traces", post(traces))
        .with_state(spans.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind receiver");
    let addr = listener.local_addr().expect("receiver address");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}"), spans)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_get_through_two_nodes_is_one_trace_from_request_to_owner_and_store() {
    let (endpoint, spans) = receiver().await;
    let cluster = TestCluster::start_with(
        &[100, 100],
        &format!(
            "\n[telemetry]\notlp_endpoint = \"{endpoint}\"\nexport_interval = \"200ms\"\nsample_ratio = 1.0\nservice_name = \"ferry-test\"\n"
        ),
    );
    let bucket = unique("traced");
    let (first, second) = (&cluster.nodes[0], &cluster.nodes[1]);
    create_bucket(&first.server().endpoint, &bucket).await;
    let body = pattern(5, 8 * MIB + 77);
    put(first.client(&bucket).as_ref(), "model.bin", &body).await;

    // The GET through the second node, with the request id it answers.
    let dir = temp_dir();
    let headers_file = dir.path().join("headers");
    let headers_arg = headers_file.display().to_string();
    let answer = signed_curl(
        &second.server().endpoint,
        (ACCESS_KEY, SECRET_KEY),
        &["-D", &headers_arg],
        &format!("/{bucket}/model.bin"),
    );
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(answer.body, body);
    let headers = std::fs::read_to_string(&headers_file).expect("response headers");
    let request_id = headers
        .lines()
        .find_map(|l| l.strip_prefix("x-amz-request-id:"))
        .map(|v| v.trim().to_string())
        .expect("x-amz-request-id");

    // Its trace: the request, its lookup and blocks, a peer request from
    // the second node and the first node serving it, and a store read.
    let wanted = |spans: &[Received]| -> Option<(Received, Vec<Received>)> {
        let root = spans.iter().find(|s| {
            s.name == "GetObject" && s.attributes.get("request_id") == Some(&request_id)
        })?;
        let trace: Vec<Received> = spans
            .iter()
            .filter(|s| s.trace == root.trace)
            .cloned()
            .collect();
        let peer = trace.iter().find(|s| s.name == "peer")?;
        trace
            .iter()
            .find(|s| s.name == "peer serve" && s.parent == peer.id)?;
        trace.iter().find(|s| s.name == "store")?;
        Some((root.clone(), trace))
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let (root, trace) = loop {
        let got = spans.lock().expect("spans").clone();
        if let Some(found) = wanted(&got) {
            break found;
        }
        if std::time::Instant::now() > deadline {
            let summary: Vec<String> = got
                .iter()
                .map(|s| {
                    format!(
                        "{} {} trace {} id {} parent {} {:?}",
                        s.node, s.name, s.trace, s.id, s.parent, s.attributes
                    )
                })
                .collect();
            panic!(
                "the GET's whole trace ({request_id}) did not arrive; received:\n{}",
                summary.join("\n")
            );
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert_eq!(
        root.node, "n1",
        "the request's span comes from the node it reached"
    );
    assert!(root.parent.chars().all(|c| c == '0') || root.parent.is_empty());
    assert_eq!(
        root.attributes
            .get("http.response.status_code")
            .map(String::as_str),
        Some("200")
    );
    let children_of =
        |parent: &str| -> Vec<&Received> { trace.iter().filter(|s| s.parent == parent).collect() };
    let direct: Vec<&str> = children_of(&root.id)
        .iter()
        .map(|s| s.name.as_str())
        .collect();
    assert!(direct.contains(&"meta"), "{direct:?}");
    let blocks: Vec<&Received> = children_of(&root.id)
        .into_iter()
        .filter(|s| s.name == "block")
        .collect();
    assert_eq!(blocks.len(), 9, "one span per block of the 9: {direct:?}");
    // Every peer request hangs under one of the blocks, and is served on
    // the first node under it.
    let peers: Vec<&Received> = trace.iter().filter(|s| s.name == "peer").collect();
    for peer in &peers {
        assert!(blocks.iter().any(|b| b.id == peer.parent), "{peer:?}");
        assert_eq!(peer.node, "n1");
        assert_eq!(peer.attributes.get("peer").map(String::as_str), Some("n0"));
    }
    let served: Vec<&Received> = trace.iter().filter(|s| s.name == "peer serve").collect();
    assert!(served.iter().all(|s| s.node == "n0"), "{served:?}");
    assert!(
        served
            .iter()
            .any(|s| peers.iter().any(|p| p.id == s.parent)),
        "no peer serve span under a peer span"
    );
}
