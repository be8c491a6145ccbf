//! What the fuzz targets share: one runtime, nodes opened in this process
//! over a temporary folder, the client's half of SigV4, and reading a
//! response's body with a cap.

pub mod sigv4;

use std::collections::HashMap;
use std::sync::OnceLock;

use ferry_config::{Overrides, RawConfig};
use ferry_gateway::node::Node;
use http_body_util::BodyExt;
use tokio::runtime::Runtime;

/// The runtime every target runs its requests on. Multi-threaded (one
/// worker) because the node's parts may block in place; a panic on any
/// of its threads still aborts the process (libFuzzer's panic hook), so
/// the fuzzer sees it.
pub fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a runtime")
    })
}

/// A node over `toml` with a data dir of its own, kept (never dropped) for
/// the process's life: a fuzzing run's inputs share the node and what
/// they wrote.
pub fn open_node(toml: &str) -> &'static Node {
    let dir = tempfile::Builder::new()
        .prefix("ferry-fuzz-")
        .tempdir()
        .expect("a temporary dir")
        .keep();
    let config = RawConfig::from_toml(toml)
        .expect("the target's config parses")
        .build(
            &HashMap::new(),
            &Overrides {
                data_dir: Some(dir),
                ..Overrides::default()
            },
        )
        .expect("the target's config is valid");
    let node = runtime()
        .block_on(Node::open(config))
        .expect("the node opens");
    Box::leak(Box::new(node))
}

/// `builder` with each of `headers`, or `None` when one of them cannot be
/// a header (such an input names no request a client could send).
pub fn with_headers(
    mut builder: http::request::Builder,
    headers: &[(String, String)],
) -> Option<http::request::Builder> {
    for (name, value) in headers {
        let name = http::HeaderName::from_bytes(name.as_bytes()).ok()?;
        let value = http::HeaderValue::from_str(value).ok()?;
        builder = builder.header(name, value);
    }
    Some(builder)
}

/// The whole body, or `None` when it fails midway (an aborted response)
/// or grows past `cap` bytes.
pub async fn read_body<B>(body: B, cap: usize) -> Option<Vec<u8>>
where
    B: http_body::Body,
{
    let mut body = std::pin::pin!(body);
    let mut out = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.ok()?;
        if let Ok(mut data) = frame.into_data() {
            use bytes::Buf;
            while data.has_remaining() {
                let chunk = data.chunk();
                out.extend_from_slice(chunk);
                let taken = chunk.len();
                data.advance(taken);
            }
            if out.len() > cap {
                return None;
            }
        }
    }
    Some(out)
}
