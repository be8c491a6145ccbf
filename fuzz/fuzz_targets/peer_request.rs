//! The peer endpoint's request parsing: fuzzed block and status requests
//! (query, verb, priority, protocol, time, flags), signed with the
//! cluster's secret or not, through a cluster node's peer router.
//!
//! Beyond "no panic": an unsigned or wrongly signed request is refused
//! (403) whatever else it says.

#![no_main]

use std::sync::OnceLock;

use arbitrary::Arbitrary;
use ferry_cache::BlockAddr;
use ferry_cache::cluster::wire::{self, Signed};
use ferry_fuzz::{open_node, read_body, runtime, with_headers};
use libfuzzer_sys::fuzz_target;
use tower::ServiceExt;

const SECRET: &str = "fuzz-cluster-secret-long-enough";

fn router() -> &'static axum::Router {
    static ROUTER: OnceLock<axum::Router> = OnceLock::new();
    ROUTER.get_or_init(|| {
        let node = open_node(&format!(
            "[cache]\nmemory = \"16MiB\"\ndisk = \"0\"\nblock_size = \"1MiB\"\n\n\
             [cluster]\nnode_id = \"fuzz\"\nsecret = \"{SECRET}\"\n\n\
             [[cluster.peers]]\nid = \"fuzz\"\naddress = \"127.0.0.1:9\"\n"
        ));
        let cluster = node.cluster.clone().expect("a cluster node");
        let router =
            ferry_gateway::peer::app(ferry_gateway::peer::PeerState::new(node, &cluster, SECRET));
        router
    })
}

#[derive(Arbitrary, Debug)]
enum Query {
    /// A block address, encoded as askers do.
    Block {
        store: String,
        blob: String,
        version: String,
        block_size: u64,
        index: u64,
        len: u64,
        start: u64,
        end: u64,
        pinned: bool,
    },
    Raw(String),
}

#[derive(Arbitrary, Debug)]
struct Input {
    status_path: bool,
    query: Query,
    verb: String,
    priority: String,
    protocol: Option<String>,
    node: String,
    /// Milliseconds off the node's clock.
    time_offset: i32,
    sign: bool,
    tamper: bool,
    tiers_only: bool,
    want_mac: bool,
    no_forward: bool,
    extra: Vec<(String, String)>,
}

fuzz_target!(|input: Input| {
    let router = router();
    let query = match &input.query {
        Query::Block {
            store,
            blob,
            version,
            block_size,
            index,
            len,
            start,
            end,
            pinned,
        } => wire::query(
            &BlockAddr {
                store: store.clone(),
                blob: blob.clone(),
                version: version.clone(),
                block_size: *block_size,
                index: *index,
                len: *len,
                pinned: *pinned,
            },
            &(*start..*end),
        ),
        Query::Raw(raw) => raw.clone(),
    };
    let path = if input.status_path {
        wire::STATUS_PATH
    } else {
        wire::PATH
    };
    let time_ms = wire::now_ms() + i64::from(input.time_offset);
    let signed = Signed {
        method: "GET",
        path,
        query: &query,
        time_ms,
        verb: &input.verb,
        priority: &input.priority,
        node: &input.node,
    };
    let mut signature = if input.sign {
        signed.sign(SECRET.as_bytes())
    } else {
        "0".repeat(64)
    };
    if input.tamper {
        let flipped = if signature.starts_with('0') { "1" } else { "0" };
        signature.replace_range(0..1, flipped);
    }
    let authentic = input.sign && !input.tamper;
    let request = http::Request::get(format!("{path}?{query}"));
    let mut headers = vec![
        (wire::H_VERB.to_string(), input.verb.clone()),
        (wire::H_PRIORITY.to_string(), input.priority.clone()),
        (wire::H_NODE.to_string(), input.node.clone()),
        (wire::H_TIME.to_string(), time_ms.to_string()),
        (wire::H_SIGNATURE.to_string(), signature),
    ];
    if let Some(protocol) = &input.protocol {
        headers.push((wire::H_PROTOCOL.to_string(), protocol.clone()));
    }
    for (flag, name) in [
        (input.tiers_only, wire::H_TIERS_ONLY),
        (input.want_mac, wire::H_WANT_MAC),
        (input.no_forward, wire::H_NO_FORWARD),
    ] {
        if flag {
            headers.push((name.to_string(), "1".to_string()));
        }
    }
    headers.extend(input.extra.iter().cloned());
    let Some(request) = with_headers(request, &headers) else {
        return;
    };
    let Ok(request) = request.body(axum::body::Body::empty()) else {
        return;
    };
    runtime().block_on(async {
        let Ok(response) = router.clone().oneshot(request).await;
        let status = response.status().as_u16();
        let _ = read_body(response.into_body(), 1 << 20).await;
        if !authentic {
            assert!(
                status == 403 || status == 400,
                "an unsigned request was answered {status}"
            );
        }
    });
});
