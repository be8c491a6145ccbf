//! The change feed's wire format from both ends: fuzzed requests to a
//! source region's feed endpoints (signed with the feed secret or not),
//! and fuzzed answers read as a mirror's follower reads them (signed
//! right or not).
//!
//! Beyond "no panic": the endpoint answers an unsigned request 401 and
//! nothing else; the follower takes nothing from an answer whose
//! signature does not hold.

#![no_main]

use std::sync::OnceLock;

use arbitrary::Arbitrary;
use ferry_cache::region::feed::{
    self, Answer, ChangesPage, EntriesPage, SignedRequest, SnapshotStart,
};
use ferry_fuzz::{open_node, read_body, runtime};
use libfuzzer_sys::fuzz_target;
use tower::ServiceExt;

const SECRET: &str = "fuzz-feed-secret";

fn router() -> &'static axum::Router {
    static ROUTER: OnceLock<axum::Router> = OnceLock::new();
    ROUTER.get_or_init(|| {
        let node = open_node(&format!(
            "[cache]\nmemory = \"16MiB\"\ndisk = \"0\"\n\n\
             [region]\nname = \"central\"\nfeed_secret = \"{SECRET}\"\n\n\
             [admin]\ntoken = \"fuzz-admin-token\"\n"
        ));
        let feed = node.region.feed.clone().expect("a source region's feed");
        let router =
            ferry_gateway::admin::app(ferry_gateway::admin::AdminState::new(node), Some(feed));
        router
    })
}

#[derive(Arbitrary, Debug)]
enum Path {
    Changes,
    Snapshot,
    Entries,
    Raw(String),
}

#[derive(Arbitrary, Debug)]
struct Request {
    path: Path,
    params: Vec<(String, String)>,
    region: String,
    time_offset_ms: i32,
    sign: bool,
    tamper: bool,
}

#[derive(Arbitrary, Debug)]
enum Kind {
    Changes,
    Snapshot,
    Entries,
}

#[derive(Arbitrary, Debug)]
struct Reply {
    kind: Kind,
    request_signature: String,
    status: u16,
    body: Vec<u8>,
    sign: bool,
    raw_signature: Option<String>,
}

#[derive(Arbitrary, Debug)]
enum Input {
    Request(Request),
    Reply(Reply),
}

fuzz_target!(|input: Input| match input {
    Input::Request(request) => ask(request),
    Input::Reply(reply) => read(reply),
});

fn ask(input: Request) {
    let path = match &input.path {
        Path::Changes => feed::PATH_CHANGES,
        Path::Snapshot => feed::PATH_SNAPSHOT,
        Path::Entries => feed::PATH_ENTRIES,
        Path::Raw(raw) => raw.as_str(),
    };
    // A long poll would stall the fuzzer: the last `wait_ms` wins.
    let mut params = input.params.clone();
    params.push(("wait_ms".into(), "0".into()));
    let query = params
        .iter()
        .map(|(name, value)| format!("{name}={value}"))
        .collect::<Vec<_>>()
        .join("&");
    let time_ms = ferry_cache::cluster::wire::now_ms() + i64::from(input.time_offset_ms);
    let mut signature = SignedRequest {
        method: "GET",
        path,
        query: &query,
        time_ms,
        region: &input.region,
    }
    .sign(SECRET.as_bytes());
    if !input.sign {
        signature = "0".repeat(64);
    } else if input.tamper {
        let flipped = if signature.starts_with('0') { "1" } else { "0" };
        signature.replace_range(0..1, flipped);
    }
    let authentic = input.sign && !input.tamper;
    let Ok(request) = http::Request::get(format!("{path}?{query}"))
        .header(feed::H_REGION, &input.region)
        .header(feed::H_TIME, time_ms.to_string())
        .header(feed::H_SIGNATURE, &signature)
        .body(axum::body::Body::empty())
    else {
        return;
    };
    let is_feed = path.starts_with("/feed/");
    let router = router().clone();
    runtime().block_on(async {
        let Ok(response) = router.oneshot(request).await;
        let status = response.status().as_u16();
        let _ = read_body(response.into_body(), 1 << 20).await;
        if is_feed && !authentic {
            assert!(
                status == 401 || status == 404 || status == 405,
                "{path}?{query}: an unsigned feed request was answered {status}"
            );
        }
    });
}

fn read(input: Reply) {
    let signature = match (&input.raw_signature, input.sign) {
        (Some(raw), _) => raw.clone(),
        (None, true) => feed::sign_answer(
            SECRET.as_bytes(),
            &input.request_signature,
            input.status,
            &input.body,
        ),
        (None, false) => String::new(),
    };
    let authentic = input.sign && input.raw_signature.is_none();
    let taken = match input.kind {
        Kind::Changes => read_as::<ChangesPage>(&input, &signature).is_ok(),
        Kind::Snapshot => read_as::<SnapshotStart>(&input, &signature).is_ok(),
        Kind::Entries => read_as::<EntriesPage>(&input, &signature).is_ok(),
    };
    if taken {
        assert!(
            authentic,
            "an answer with a wrong signature was taken: {input:?}"
        );
    }
}

fn read_as<T: serde::de::DeserializeOwned>(
    input: &Reply,
    signature: &str,
) -> Result<Answer<T>, String> {
    feed::read_answer(
        SECRET.as_bytes(),
        &input.request_signature,
        input.status,
        (!signature.is_empty()).then_some(signature),
        &input.body,
    )
}
