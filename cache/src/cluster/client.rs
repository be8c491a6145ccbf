//! Asking a peer for a block: pooled keep-alive connections with
//! TCP_NODELAY, short connect and answer timeouts, every request signed,
//! every answer's length and checksum verified, and peers that fail marked
//! down with a growing backoff so reads go elsewhere until they are back.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tracing::Instrument;
use xxhash_rust::xxh3::Xxh3;

use super::view::Member;
use super::wire::{self, Verb};
use crate::buffers::BlockBuffers;
use crate::client_tls::{ClientTls, Trust};
use crate::error::CacheError;
use crate::metrics as m;
use crate::source::BlockAddr;
use crate::store::admission::{self, ReadPriority};

/// What went wrong asking a peer.
#[derive(Debug)]
pub enum PeerError {
    /// Refused, unreachable, timed out, or answered something that is not
    /// the block (wrong length, bad checksum, garbage): the peer is marked
    /// down and the read goes on elsewhere.
    Failed(String),
    /// A tiers-only get the peer does not hold.
    NotCached,
    /// The block's store failed at the peer; the asker passes this on
    /// rather than reading the store itself.
    Store(CacheError),
}

/// Connect and answer limits.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub connect: Duration,
    pub request: Duration,
}

const POOL_IDLE: Duration = Duration::from_secs(15);
/// Block buffers kept for reuse: a readahead window of 4 MiB blocks.
const BUFFERS_KEPT: usize = 16;
const BACKOFF_FIRST: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy)]
struct Down {
    until: Instant,
    backoff: Duration,
}

/// How one request is sent.
struct How {
    verb: Verb,
    tiers_only: bool,
    priority: ReadPriority,
    protocol: u32,
    /// Ask for, and require, an answer MAC.
    want_mac: bool,
}

pub struct PeerClient {
    http: reqwest::Client,
    node: String,
    secret: Vec<u8>,
    down: Mutex<HashMap<String, Down>>,
    buffers: Arc<BlockBuffers>,
    /// The client trusts only the cluster's own CA: a peer reached over
    /// TLS is then authenticated by its certificate.
    own_roots_only: bool,
    /// The current trace's `traceparent`, sent with each block request so
    /// the owner's spans join the asker's trace (`None`: nothing traced).
    trace: Option<TraceContext>,
}

/// Gives the W3C `traceparent` of the trace the current task is in, if
/// any (the gateway's tracing knows; the cache does not).
pub type TraceContext = Arc<dyn Fn() -> Option<String> + Send + Sync>;

/// The header a peer request carries its trace in.
pub const TRACEPARENT: &str = "traceparent";

/// An answered request: the body for `get`, whether it was cached for
/// `probe`.
#[derive(Debug)]
pub struct Answer {
    pub bytes: Bytes,
    pub cached: bool,
    /// A probe's or prefetch's block is in the pinned share of its disk.
    pub pinned: bool,
}

impl PeerClient {
    pub fn new(
        node: &str,
        secret: &str,
        timeouts: Timeouts,
        tls: &ClientTls,
    ) -> Result<PeerClient, CacheError> {
        let builder = reqwest::Client::builder()
            .connect_timeout(timeouts.connect)
            .timeout(timeouts.request)
            .tcp_nodelay(true)
            // Under the peers' header timeout (server.header_timeout,
            // 20 s by default), which closes kept-alive connections that
            // wait longer for a request.
            .pool_idle_timeout(POOL_IDLE)
            .pool_max_idle_per_host(64)
            .no_proxy();
        let http = tls
            .apply(builder, Trust::OwnRootsOnly)
            .build()
            .map_err(|e| CacheError::Cluster(format!("cannot build the peer client: {e}")))?;
        Ok(PeerClient {
            http,
            node: node.to_string(),
            secret: secret.as_bytes().to_vec(),
            down: Mutex::new(HashMap::new()),
            buffers: BlockBuffers::new("peer", BUFFERS_KEPT),
            own_roots_only: !tls.roots.is_empty(),
            trace: None,
        })
    }

    /// Sends each block request with the current trace's `traceparent`
    /// from `trace`.
    pub fn with_trace_context(mut self, trace: Option<TraceContext>) -> PeerClient {
        self.trace = trace;
        self
    }

    /// Whether `peer` (an id) is marked down now.
    pub fn is_down(&self, peer: &str) -> bool {
        self.down
            .lock()
            .ok()
            .and_then(|down| down.get(peer).map(|d| d.until > Instant::now()))
            .unwrap_or(false)
    }

    fn mark_down(&self, peer: &str, why: &str) {
        let Ok(mut down) = self.down.lock() else {
            return;
        };
        let now = Instant::now();
        let backoff = match down.get(peer) {
            // Requests that were in flight when it went down fail together:
            // one outage, one step of backoff.
            Some(d) if d.until > now => return,
            Some(d) => (d.backoff * 2).min(BACKOFF_MAX),
            None => BACKOFF_FIRST,
        };
        down.insert(
            peer.to_string(),
            Down {
                until: now + backoff,
                backoff,
            },
        );
        tracing::warn!(%peer, reason = why, backoff_ms = backoff.as_millis() as u64, "peer marked down");
    }

    /// Forgets `peer`'s failures: it came back (a new incarnation).
    pub fn forget_failures(&self, peer: &str) {
        self.mark_up(peer);
    }

    fn mark_up(&self, peer: &str) {
        if let Ok(mut down) = self.down.lock()
            && down.remove(peer).is_some()
        {
            tracing::info!(%peer, "peer answering again");
        }
    }

    /// Sends one request to `peer`, in the highest protocol version both
    /// speak; see [`PeerError`] for what a failure means.
    pub async fn ask(
        &self,
        peer: &Member,
        addr: &BlockAddr,
        range: Range<u64>,
        verb: Verb,
        tiers_only: bool,
    ) -> Result<Answer, PeerError> {
        let id = peer.id.as_str();
        let priority = admission::current_priority();
        let started = Instant::now();
        let protocol = wire::PROTOCOL_MAX.min(peer.protocol_max);
        let result = if protocol < wire::PROTOCOL_MIN.max(peer.protocol_min) {
            Err(PeerError::Failed(format!(
                "no common peer protocol: {}..={} here, {}..={} there",
                wire::PROTOCOL_MIN,
                wire::PROTOCOL_MAX,
                peer.protocol_min,
                peer.protocol_max
            )))
        } else {
            let how = How {
                verb,
                tiers_only,
                priority,
                protocol,
                want_mac: !(peer.tls && self.own_roots_only),
            };
            let span = tracing::debug_span!(
                "peer",
                peer = id,
                verb = verb.as_str(),
                index = addr.index,
                otel.kind = "client",
            );
            self.send(&peer.base_url(), addr, &range, how)
                .instrument(span)
                .await
        };
        let outcome = match &result {
            Ok(_) => "ok",
            Err(PeerError::NotCached) => "not_cached",
            Err(PeerError::Store(_)) => "store_error",
            Err(PeerError::Failed(_)) => "failed",
        };
        metrics::counter!(m::PEER_REQUESTS, "verb" => verb.as_str(), "outcome" => outcome)
            .increment(1);
        metrics::histogram!(m::PEER_REQUEST_SECONDS, "verb" => verb.as_str())
            .record(started.elapsed().as_secs_f64());
        match &result {
            Ok(answer) => {
                metrics::counter!(m::PEER_BYTES_RECEIVED).increment(answer.bytes.len() as u64);
                self.mark_up(id);
            }
            Err(PeerError::Failed(why)) => self.mark_down(id, why),
            Err(_) => self.mark_up(id),
        }
        result
    }

    /// `peer`'s status samples newer than `since_ms`, as the JSON its
    /// status endpoint answers (see [`wire::STATUS_PATH`]), its MAC
    /// checked. Unlike a block request it marks the peer neither down nor
    /// up: what the status page gathers must not steer reads.
    pub async fn status_samples(&self, peer: &Member, since_ms: i64) -> Result<Bytes, PeerError> {
        let protocol = wire::PROTOCOL_MAX.min(peer.protocol_max);
        let query = format!("since={since_ms}");
        let time_ms = wire::now_ms();
        let priority = wire::priority_str(ReadPriority::Warmup);
        let signature =
            wire::Signed::status(&query, time_ms, priority, &self.node).sign(&self.secret);
        let url = format!("{}{}?{query}", peer.base_url(), wire::STATUS_PATH);
        let failed = |what: &str, e: &dyn std::fmt::Display| {
            PeerError::Failed(format!("status of {}: {what}: {e}", peer.id))
        };
        let response = self
            .http
            .get(&url)
            .header(wire::H_PROTOCOL, protocol.to_string())
            .header(wire::H_VERB, wire::STATUS_VERB)
            .header(wire::H_PRIORITY, priority)
            .header(wire::H_NODE, &self.node)
            .header(wire::H_TIME, time_ms.to_string())
            .header(wire::H_SIGNATURE, &signature)
            .send()
            .await
            .map_err(|e| failed("request failed", &e))?;
        let status = response.status();
        if !status.is_success() {
            return Err(failed("answered", &status));
        }
        if response
            .content_length()
            .is_some_and(|len| len > wire::STATUS_MAX_BYTES as u64)
        {
            return Err(failed("answer too large", &"over the limit"));
        }
        let given_mac = response
            .headers()
            .get(wire::H_ANSWER_MAC)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let bytes = response
            .bytes()
            .await
            .map_err(|e| failed("body failed", &e))?;
        if bytes.len() > wire::STATUS_MAX_BYTES {
            return Err(failed("answer too large", &bytes.len()));
        }
        let mut mac = wire::AnswerMac::new(&self.secret, protocol, &signature, 200, "", "");
        mac.update(&bytes);
        if !given_mac.is_some_and(|given| mac.verify(&given)) {
            return Err(failed("answer refused", &"its MAC is missing or wrong"));
        }
        Ok(bytes)
    }

    async fn send(
        &self,
        base_url: &str,
        addr: &BlockAddr,
        range: &Range<u64>,
        how: How,
    ) -> Result<Answer, PeerError> {
        let How {
            verb,
            tiers_only,
            priority,
            protocol,
            want_mac,
        } = how;
        let query = wire::query(addr, range);
        let time_ms = wire::now_ms();
        let priority = wire::priority_str(priority);
        let signature = wire::Signed {
            method: "GET",
            path: wire::PATH,
            query: &query,
            time_ms,
            verb: verb.as_str(),
            priority,
            node: &self.node,
        }
        .sign(&self.secret);
        let url = format!("{base_url}{}?{query}", wire::PATH);
        let mut request = self
            .http
            .get(&url)
            .header(wire::H_PROTOCOL, protocol.to_string())
            .header(wire::H_VERB, verb.as_str())
            .header(wire::H_PRIORITY, priority)
            .header(wire::H_NODE, &self.node)
            .header(wire::H_TIME, time_ms.to_string())
            .header(wire::H_SIGNATURE, &signature)
            .header(wire::H_NO_FORWARD, "1");
        if tiers_only {
            request = request.header(wire::H_TIERS_ONLY, "1");
        }
        if let Some(parent) = self.trace.as_ref().and_then(|trace| trace()) {
            request = request.header(TRACEPARENT, parent);
        }
        if want_mac {
            request = request.header(wire::H_WANT_MAC, "1");
        }
        let response = request
            .send()
            .await
            .map_err(|e| PeerError::Failed(format!("request failed: {e}")))?;
        let status = response.status();
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let error = header(wire::H_ERROR);
        let expected_sum = header(wire::H_CHECKSUM);
        let cached_flag = header(wire::H_CACHED);
        let cached = matches!(cached_flag.as_deref(), Some("1" | wire::CACHED_PINNED));
        let pinned = cached_flag.as_deref() == Some(wire::CACHED_PINNED);
        let given_mac = header(wire::H_ANSWER_MAC);
        let mut mac = want_mac.then(|| {
            wire::AnswerMac::new(
                &self.secret,
                protocol,
                &signature,
                status.as_u16(),
                error.as_deref().unwrap_or_default(),
                cached_flag.as_deref().unwrap_or_default(),
            )
        });
        // Without a right MAC an answer is a peer's failure: the read
        // goes on to the store.
        let authentic = |mac: Option<wire::AnswerMac>| {
            let Some(mac) = mac else { return Ok(()) };
            if given_mac.as_deref().is_some_and(|given| mac.verify(given)) {
                return Ok(());
            }
            metrics::counter!(m::PEER_CORRUPT).increment(1);
            Err(PeerError::Failed(
                "the answer's MAC is missing or wrong".into(),
            ))
        };
        if !status.is_success() {
            let text = response.text().await.unwrap_or_default();
            if error.is_some() {
                if let Some(mac) = mac.as_mut() {
                    mac.update(text.as_bytes());
                }
                authentic(mac)?;
            }
            return Err(match error.as_deref() {
                Some(wire::E_NOT_CACHED) => PeerError::NotCached,
                Some(wire::E_MISSING_BLOB) => PeerError::Store(CacheError::MissingBlob {
                    store: addr.store.clone(),
                    blob: addr.blob.clone(),
                }),
                Some(wire::E_STORE) => PeerError::Store(CacheError::Store {
                    store: addr.store.clone(),
                    source: object_store::Error::Generic {
                        store: "peer",
                        source: text.into(),
                    },
                }),
                _ => PeerError::Failed(format!("answered {status}: {}", text.trim())),
            });
        }
        if verb != Verb::Get {
            let bytes = response
                .bytes()
                .await
                .map_err(|e| PeerError::Failed(format!("body failed: {e}")))?;
            if let Some(mac) = mac.as_mut() {
                mac.update(&bytes);
            }
            authentic(mac)?;
            return Ok(Answer {
                bytes,
                cached,
                pinned,
            });
        }
        // Into one buffer of the block's size (one a dropped block left,
        // when there is one), checksummed as it arrives: one copy from
        // the socket, no reallocation, no second pass.
        let wanted = range.end - range.start;
        let mut body = self.buffers.take(usize::try_from(wanted).unwrap_or(0));
        let mut sum = wire::answer_checksummed(protocol, mac.is_some()).then(Xxh3::new);
        let mut response = response;
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| PeerError::Failed(format!("body failed: {e}")))?
        {
            if (body.len() + chunk.len()) as u64 > wanted {
                metrics::counter!(m::PEER_CORRUPT).increment(1);
                return Err(PeerError::Failed(format!(
                    "answered more than the {wanted} bytes asked for"
                )));
            }
            if let Some(sum) = sum.as_mut() {
                sum.update(&chunk);
            }
            if let Some(mac) = mac.as_mut() {
                mac.update(&chunk);
            }
            body.extend_from_slice(&chunk);
        }
        if body.len() as u64 != wanted {
            metrics::counter!(m::PEER_CORRUPT).increment(1);
            return Err(PeerError::Failed(format!(
                "answered {} bytes, expected {wanted}",
                body.len()
            )));
        }
        if let Some(sum) = sum
            && expected_sum.as_deref() != Some(wire::checksum_of(sum.digest()).as_str())
        {
            metrics::counter!(m::PEER_CORRUPT).increment(1);
            return Err(PeerError::Failed("checksum mismatch".into()));
        }
        authentic(mac)?;
        let bytes = body.freeze();
        Ok(Answer {
            bytes,
            cached,
            pinned,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};

    use super::*;

    const SECRET: &str = "a secret that is long enough";

    /// A member at a local port that answers every request with what
    /// `answer` makes of the request's signature.
    fn fake_with(answer: impl Fn(&str) -> Vec<u8> + Send + 'static) -> Member {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let address = listener.local_addr().expect("addr").to_string();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let text = String::from_utf8_lossy(&request).to_string();
                let signature = text
                    .lines()
                    .find_map(|l| l.strip_prefix(&format!("{}: ", wire::H_SIGNATURE)))
                    .unwrap_or_default()
                    .to_string();
                let _ = stream.write_all(&answer(&signature));
            }
        });
        Member {
            id: "fake".into(),
            address,
            weight: 1,
            block_size: 16,
            protocol_min: 1,
            protocol_max: 1,
            stores: String::new(),
            heartbeat_ms: 0,
            incarnation: String::new(),
            capacity: 0,
            tls: false,
        }
    }

    /// A member that answers every request with `answer`, as it is.
    fn fake(answer: Vec<u8>) -> Member {
        fake_with(move |_| answer.clone())
    }

    fn answer(body: &[u8], checksum: &str, length: usize) -> Vec<u8> {
        answer_with(body, checksum, length, "")
    }

    fn answer_with(body: &[u8], checksum: &str, length: usize, extra: &str) -> Vec<u8> {
        let mut out = format!(
            "HTTP/1.1 200 OK\r\ncontent-length: {length}\r\n{}: {checksum}\r\n{extra}connection: close\r\n\r\n",
            wire::H_CHECKSUM
        )
        .into_bytes();
        out.extend_from_slice(body);
        out
    }

    /// The MAC header of an answer of `body` to the request signed
    /// `signature`, in protocol 1 (what [`fake_with`]'s members speak).
    fn mac_header(signature: &str, status: u16, error: &str, body: &[u8]) -> String {
        mac_header_in(1, signature, status, error, body)
    }

    fn mac_header_in(
        protocol: u32,
        signature: &str,
        status: u16,
        error: &str,
        body: &[u8],
    ) -> String {
        let mut mac =
            wire::AnswerMac::new(SECRET.as_bytes(), protocol, signature, status, error, "");
        mac.update(body);
        format!("{}: {}\r\n", wire::H_ANSWER_MAC, mac.finish())
    }

    fn addr() -> BlockAddr {
        BlockAddr {
            store: "data".into(),
            blob: "b".into(),
            version: String::new(),
            block_size: 16,
            index: 0,
            len: 16,
            pinned: false,
        }
    }

    async fn ask(member: &Member) -> Result<Answer, PeerError> {
        let client = PeerClient::new(
            "me",
            SECRET,
            Timeouts {
                connect: Duration::from_millis(500),
                request: Duration::from_secs(2),
            },
            &ClientTls::default(),
        )
        .expect("client");
        client.ask(member, &addr(), 0..16, Verb::Get, false).await
    }

    #[tokio::test]
    async fn only_the_right_length_and_checksum_are_accepted() {
        let block = b"0123456789abcdef";
        let got = ask(&fake_with(|signature| {
            answer_with(
                block,
                &wire::checksum(block),
                16,
                &mac_header(signature, 200, "", block),
            )
        }))
        .await
        .expect("a good answer");
        assert_eq!(&got.bytes[..], block);
        // Other bytes with their own checksum: only the MAC tells.
        let forged = b"FEDCBA9876543210";
        let unauthenticated: Vec<(&str, Member)> = vec![
            ("no MAC", fake(answer(forged, &wire::checksum(forged), 16))),
            (
                "the MAC of the right bytes",
                fake_with(|signature| {
                    answer_with(
                        forged,
                        &wire::checksum(forged),
                        16,
                        &mac_header(signature, 200, "", block),
                    )
                }),
            ),
            (
                "the MAC of another request",
                fake_with(|_| {
                    answer_with(
                        forged,
                        &wire::checksum(forged),
                        16,
                        &mac_header("another request", 200, "", forged),
                    )
                }),
            ),
        ];
        for (what, member) in unauthenticated {
            match ask(&member).await {
                Err(PeerError::Failed(why)) => assert!(why.contains("MAC"), "{what}: {why}"),
                other => panic!("{what}: answered {other:?}"),
            }
        }
        let cases: Vec<(&str, Vec<u8>)> = vec![
            (
                "garbage",
                answer(b"not-block!", &wire::checksum(b"not-block!"), 10),
            ),
            ("bad checksum", answer(block, "0000000000000000", 16)),
            ("no checksum", {
                let mut out =
                    b"HTTP/1.1 200 OK\r\ncontent-length: 16\r\nconnection: close\r\n\r\n".to_vec();
                out.extend_from_slice(block);
                out
            }),
            ("too long", answer(b"0123456789abcdef-and-more", "x", 25)),
            ("short body", answer(b"0123", &wire::checksum(block), 16)),
            ("not http", b"garbage garbage garbage\r\n\r\n".to_vec()),
        ];
        for (what, bytes) in cases {
            match ask(&fake(bytes)).await {
                Err(PeerError::Failed(_)) => {}
                other => panic!("{what}: answered {other:?}"),
            }
        }
    }

    /// Protocol 2: a keyed-BLAKE3 MAC and no checksum make a good answer;
    /// protocol 1's HMAC, or the MAC of other bytes, does not.
    #[tokio::test]
    async fn protocol_2_answers_are_authenticated_by_keyed_blake3_alone() {
        let speaking_2 = |member: Member| Member {
            protocol_max: 2,
            ..member
        };
        let block = b"0123456789abcdef";
        let plain = |body: &[u8], extra: &str| {
            let mut out = format!(
                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n{extra}connection: close\r\n\r\n",
                body.len()
            )
            .into_bytes();
            out.extend_from_slice(body);
            out
        };
        let good = speaking_2(fake_with(move |signature| {
            plain(block, &mac_header_in(2, signature, 200, "", block))
        }));
        let got = ask(&good).await.expect("a MACed answer without a checksum");
        assert_eq!(&got.bytes[..], block);
        let forged = b"FEDCBA9876543210";
        let refused: Vec<(&str, Member)> = vec![
            (
                "a protocol 1 MAC",
                speaking_2(fake_with(move |signature| {
                    plain(block, &mac_header_in(1, signature, 200, "", block))
                })),
            ),
            (
                "the MAC of the right bytes",
                speaking_2(fake_with(move |signature| {
                    plain(forged, &mac_header_in(2, signature, 200, "", block))
                })),
            ),
            (
                "no MAC but a right checksum",
                speaking_2(fake(answer(forged, &wire::checksum(forged), 16))),
            ),
        ];
        for (what, member) in refused {
            match ask(&member).await {
                Err(PeerError::Failed(why)) => assert!(why.contains("MAC"), "{what}: {why}"),
                other => panic!("{what}: answered {other:?}"),
            }
        }
    }

    #[tokio::test]
    async fn a_failing_peer_is_down_for_a_while_and_typed_store_errors_are_not_failures() {
        let client = PeerClient::new(
            "me",
            SECRET,
            Timeouts {
                connect: Duration::from_millis(200),
                request: Duration::from_secs(1),
            },
            &ClientTls::default(),
        )
        .expect("client");
        let dead = Member {
            address: "127.0.0.1:1".into(),
            ..fake(Vec::new())
        };
        assert!(!client.is_down("fake"));
        assert!(matches!(
            client.ask(&dead, &addr(), 0..16, Verb::Get, false).await,
            Err(PeerError::Failed(_))
        ));
        assert!(client.is_down("fake"));
        client.forget_failures("fake");
        assert!(!client.is_down("fake"));
        let missing = fake_with(|signature| {
            format!(
                "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n{}: {}\r\n{}connection: close\r\n\r\n",
                wire::H_ERROR,
                wire::E_MISSING_BLOB,
                mac_header(signature, 404, wire::E_MISSING_BLOB, b""),
            )
            .into_bytes()
        });
        assert!(matches!(
            client.ask(&missing, &addr(), 0..16, Verb::Get, false).await,
            Err(PeerError::Store(CacheError::MissingBlob { .. }))
        ));
        assert!(
            !client.is_down("fake"),
            "a store error marked the peer down"
        );
        let newer = Member {
            protocol_min: 3,
            protocol_max: 4,
            ..fake(Vec::new())
        };
        match client.ask(&newer, &addr(), 0..16, Verb::Get, false).await {
            Err(PeerError::Failed(why)) => assert!(why.contains("protocol"), "{why}"),
            other => panic!("no common protocol answered {other:?}"),
        }
        // A typed error nobody authenticated is the peer's failure, not
        // the store's.
        let forged = fake(
            format!(
                "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n{}: {}\r\nconnection: close\r\n\r\n",
                wire::H_ERROR,
                wire::E_MISSING_BLOB
            )
            .into_bytes(),
        );
        assert!(matches!(
            client.ask(&forged, &addr(), 0..16, Verb::Get, false).await,
            Err(PeerError::Failed(_))
        ));
    }
}
