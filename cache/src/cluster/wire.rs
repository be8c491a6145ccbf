//! The peer protocol's wire format, shared by the client (here) and the
//! endpoint (in the gateway).
//!
//! A request is `GET /v1/block?<address>` where the query names the block
//! by its full address and the byte range wanted. Headers carry the
//! protocol version, the verb, the read's priority, the asking node, a
//! timestamp, and an HMAC-SHA256 with the cluster secret over method, path,
//! query, timestamp, verb, priority and asker, so nothing of it can be
//! changed or replayed outside a short window. Every peer request is
//! no-forward: the answering node never asks another peer for it.
//!
//! An answer to `get` carries the bytes with their length. Unless the
//! nodes speak TLS with the cluster's own CA (which authenticates the
//! answering node), the asker asks for an [`AnswerMac`] and refuses an
//! answer without a right one; an answer without a MAC carries an xxh3
//! checksum the asker verifies (a MAC finds accidents too, so from
//! protocol 2 a MACed answer carries none). Errors carry `x-ferry-error`: a store's
//! own failure is typed (`missing-blob`, `store`) and passed on by the
//! asker; `not-cached` answers a tiers-only get; anything else is the
//! peer's failure.

use std::ops::Range;
use std::time::{SystemTime, UNIX_EPOCH};

use hmac::{Hmac, KeyInit, Mac};
use percent_encoding::{NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use sha2::Sha256;

use crate::source::BlockAddr;
use crate::store::admission::ReadPriority;

/// Versions of this protocol a node speaks; the highest common one is used.
/// 1: answers MACed with HMAC-SHA256 over the body, always checksummed
/// with xxh3.
/// 2: an answer's MAC is keyed BLAKE3 over the answer's fields and the
/// body's BLAKE3 digest, and a MACed answer carries no xxh3 checksum. The
/// MAC over a block was half of a peer hit's CPU: BLAKE3 runs several
/// times faster than SHA-256 here, and an owner that serves a block to
/// many peers hashes it once (see [`AnswerDigests`](super::AnswerDigests)).
pub const PROTOCOL_MIN: u32 = 1;
pub const PROTOCOL_MAX: u32 = 2;

/// The protocol a request's `x-ferry-protocol` header names, when this
/// node speaks it.
pub fn spoken_protocol(header: Option<&str>) -> Option<u32> {
    header
        .and_then(|p| p.parse::<u32>().ok())
        .filter(|p| (PROTOCOL_MIN..=PROTOCOL_MAX).contains(p))
}

/// The first protocol whose answer MAC is keyed BLAKE3 over a body digest.
const PROTOCOL_BLAKE3_MAC: u32 = 2;

/// Whether an answer in `protocol` carries an xxh3 checksum: always in
/// protocol 1, and when it carries no MAC from protocol 2.
pub fn answer_checksummed(protocol: u32, maced: bool) -> bool {
    !maced || protocol < PROTOCOL_BLAKE3_MAC
}

/// Whether an answer's MAC in `protocol` covers the body through its
/// BLAKE3 digest (so a digest the owner kept can stand for the body).
pub fn mac_covers_body_digest(protocol: u32) -> bool {
    protocol >= PROTOCOL_BLAKE3_MAC
}

/// The BLAKE3 digest of an answer's body, as protocol 2's MAC covers it.
pub fn body_digest(body: &[u8]) -> [u8; 32] {
    *blake3::hash(body).as_bytes()
}

pub const PATH: &str = "/v1/block";

/// `GET /v1/status?since=<ms>`: the node's status samples newer than
/// `since` (JSON), for the status pages of the others. Signed like a
/// block request, with verb [`STATUS_VERB`]; the answer carries a MAC
/// over its body like a block's.
pub const STATUS_PATH: &str = "/v1/status";
pub const STATUS_VERB: &str = "status";
/// The largest status answer a node takes (a quarter hour of samples).
pub const STATUS_MAX_BYTES: usize = 8 << 20;

pub const H_PROTOCOL: &str = "x-ferry-protocol";
pub const H_VERB: &str = "x-ferry-verb";
pub const H_PRIORITY: &str = "x-ferry-priority";
pub const H_NODE: &str = "x-ferry-node";
pub const H_TIME: &str = "x-ferry-time";
pub const H_SIGNATURE: &str = "x-ferry-signature";
pub const H_NO_FORWARD: &str = "x-ferry-no-forward";
/// A `get` that answers from the tiers only (the handoff probe).
pub const H_TIERS_ONLY: &str = "x-ferry-tiers-only";
pub const H_CHECKSUM: &str = "x-ferry-checksum";
pub const H_CACHED: &str = "x-ferry-cached";
pub const H_ERROR: &str = "x-ferry-error";
/// The asker wants the answer authenticated with [`AnswerMac`].
pub const H_WANT_MAC: &str = "x-ferry-want-mac";
/// The answer's MAC (hex), when asked for.
pub const H_ANSWER_MAC: &str = "x-ferry-answer-mac";

/// `x-ferry-cached` of a block held in the pinned share (answered only to
/// a request for a pinned block, so only askers that know it see it).
pub const CACHED_PINNED: &str = "pinned";

pub const E_MISSING_BLOB: &str = "missing-blob";
pub const E_STORE: &str = "store";
pub const E_NOT_CACHED: &str = "not-cached";

/// How far a request's timestamp may be from the answering node's clock.
pub const MAX_SKEW_MS: i64 = 30_000;

/// What the asker wants done with the block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    /// The bytes (loading the block if needed).
    Get,
    /// Load and keep it; no body back (warm-up).
    Prefetch,
    /// Is it cached here? Loads nothing.
    Probe,
    /// Drop it from memory and disk (a retired model version); answers
    /// whether it was here.
    Evict,
}

impl Verb {
    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Get => "get",
            Verb::Prefetch => "prefetch",
            Verb::Probe => "probe",
            Verb::Evict => "evict",
        }
    }

    pub fn parse(text: &str) -> Option<Verb> {
        match text {
            "get" => Some(Verb::Get),
            "prefetch" => Some(Verb::Prefetch),
            "probe" => Some(Verb::Probe),
            "evict" => Some(Verb::Evict),
            _ => None,
        }
    }
}

pub fn priority_str(priority: ReadPriority) -> &'static str {
    priority.label()
}

pub fn parse_priority(text: &str) -> Option<ReadPriority> {
    [
        ReadPriority::Demand,
        ReadPriority::Readahead,
        ReadPriority::Warmup,
    ]
    .into_iter()
    .find(|p| p.label() == text)
}

/// The query naming `addr` and the bytes `range` of it. `pinned=1` is
/// added only for a pinned block, so a node that predates pinning still
/// reads every other request.
pub fn query(addr: &BlockAddr, range: &Range<u64>) -> String {
    let enc = |s: &str| utf8_percent_encode(s, NON_ALPHANUMERIC).to_string();
    format!(
        "store={}&blob={}&version={}&block_size={}&index={}&len={}&start={}&end={}{}",
        enc(&addr.store),
        enc(&addr.blob),
        enc(&addr.version),
        addr.block_size,
        addr.index,
        addr.len,
        range.start,
        range.end,
        if addr.pinned { "&pinned=1" } else { "" }
    )
}

/// Why a query is not a block address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Malformed(pub String);

/// The address and range a query names, checked: a range within the
/// block, a block within what a block size allows.
pub fn parse_query(query: &str) -> Result<(BlockAddr, Range<u64>), Malformed> {
    let mut fields: [Option<String>; 9] = Default::default();
    const NAMES: [&str; 9] = [
        "store",
        "blob",
        "version",
        "block_size",
        "index",
        "len",
        "start",
        "end",
        "pinned",
    ];
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let Some(at) = NAMES.iter().position(|n| *n == name) else {
            return Err(Malformed(format!("unknown field {name:?}")));
        };
        let value = percent_decode_str(value)
            .decode_utf8()
            .map_err(|_| Malformed(format!("{name} is not UTF-8")))?;
        if fields[at].replace(value.into_owned()).is_some() {
            return Err(Malformed(format!("{name} given twice")));
        }
    }
    let [
        store,
        blob,
        version,
        block_size,
        index,
        len,
        start,
        end,
        pinned,
    ] = fields;
    let text =
        |name: &str, v: Option<String>| v.ok_or_else(|| Malformed(format!("{name} missing")));
    let number = |name: &str, v: Option<String>| -> Result<u64, Malformed> {
        text(name, v)?
            .parse::<u64>()
            .map_err(|_| Malformed(format!("{name} is not a number")))
    };
    let addr = BlockAddr {
        store: text("store", store)?,
        blob: text("blob", blob)?,
        version: text("version", version)?,
        block_size: number("block_size", block_size)?,
        index: number("index", index)?,
        len: number("len", len)?,
        pinned: match pinned.as_deref() {
            None => false,
            Some("1") => true,
            Some(other) => return Err(Malformed(format!("pinned is {other:?}, not 1"))),
        },
    };
    let range = number("start", start)?..number("end", end)?;
    if addr.store.is_empty() || addr.blob.is_empty() {
        return Err(Malformed("store and blob must not be empty".into()));
    }
    if addr.block_size == 0 || addr.len == 0 || addr.len > addr.block_size {
        return Err(Malformed(format!(
            "a block of {} bytes does not fit a block size of {}",
            addr.len, addr.block_size
        )));
    }
    if addr.index.checked_mul(addr.block_size).is_none() {
        return Err(Malformed("block index out of range".into()));
    }
    if range.start >= range.end || range.end > addr.len {
        return Err(Malformed(format!(
            "range {range:?} is not within the block's {} bytes",
            addr.len
        )));
    }
    Ok((addr, range))
}

/// What a signature covers.
pub struct Signed<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub query: &'a str,
    pub time_ms: i64,
    pub verb: &'a str,
    pub priority: &'a str,
    pub node: &'a str,
}

impl<'a> Signed<'a> {
    /// What a status request's signature covers (see [`STATUS_PATH`]).
    pub fn status(query: &'a str, time_ms: i64, priority: &'a str, node: &'a str) -> Signed<'a> {
        Signed {
            method: "GET",
            path: STATUS_PATH,
            query,
            time_ms,
            verb: STATUS_VERB,
            priority,
            node,
        }
    }

    fn mac(&self, secret: &[u8]) -> Hmac<Sha256> {
        // Hmac accepts keys of any length.
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret)
            .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
        for part in [
            self.method,
            self.path,
            self.query,
            &self.time_ms.to_string(),
            self.verb,
            self.priority,
            self.node,
        ] {
            mac.update(part.as_bytes());
            mac.update(b"\n");
        }
        mac
    }

    pub fn sign(&self, secret: &[u8]) -> String {
        hex::encode(self.mac(secret).finalize().into_bytes())
    }

    /// Whether `signature` (hex) is right, compared in constant time.
    pub fn verify(&self, secret: &[u8], signature: &str) -> bool {
        match hex::decode(signature) {
            Ok(raw) => self.mac(secret).verify_slice(&raw).is_ok(),
            Err(_) => false,
        }
    }
}

/// The MAC of an answer, with the cluster secret: over the request's own
/// signature (so it answers that request and no other), the status, the
/// typed error and cached flag, then the body. Without TLS between the
/// nodes, this is what stops an on-path attacker, or a fake member
/// written into the membership Redis, from serving bytes that get cached
/// and served: the xxh3 checksum finds accidents, not forgeries.
/// HMAC-SHA256 over the fields and the body in protocol 1; from
/// protocol 2, keyed BLAKE3 over the fields and the body's BLAKE3 digest.
pub struct AnswerMac(MacState);

enum MacState {
    Sha256(Hmac<Sha256>),
    Blake3 {
        /// Keyed, with the answer's fields hashed in.
        fields: Box<blake3::Hasher>,
        body: Box<blake3::Hasher>,
        /// The body's digest when the answering node knew it already.
        known: Option<[u8; 32]>,
    },
}

/// Where keyed BLAKE3's key comes from: the cluster secret, hashed with
/// this context, so the key is used for answers and nothing else.
const BLAKE3_CONTEXT: &str = "ferry peer protocol 2026-12 answer MAC";

impl AnswerMac {
    pub fn new(
        secret: &[u8],
        protocol: u32,
        request_signature: &str,
        status: u16,
        error: &str,
        cached: &str,
    ) -> AnswerMac {
        let status = status.to_string();
        let fields = ["answer", request_signature, &status, error, cached];
        if mac_covers_body_digest(protocol) {
            let key = blake3::derive_key(BLAKE3_CONTEXT, secret);
            let mut hasher = blake3::Hasher::new_keyed(&key);
            for part in fields {
                hasher.update(part.as_bytes());
                hasher.update(b"\n");
            }
            return AnswerMac(MacState::Blake3 {
                fields: Box::new(hasher),
                body: Box::new(blake3::Hasher::new()),
                known: None,
            });
        }
        // Hmac accepts keys of any length.
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret)
            .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
        for part in fields {
            mac.update(part.as_bytes());
            mac.update(b"\n");
        }
        AnswerMac(MacState::Sha256(mac))
    }

    /// Adds the next piece of the body.
    pub fn update(&mut self, body: &[u8]) {
        match &mut self.0 {
            MacState::Sha256(mac) => mac.update(body),
            MacState::Blake3 { body: hasher, .. } => {
                hasher.update(body);
            }
        }
    }

    /// Takes `digest` ([`body_digest`] of the whole body) for the body,
    /// which then needs no [`update`](Self::update): whether this
    /// protocol's MAC can (from protocol 2).
    pub fn use_body_digest(&mut self, digest: [u8; 32]) -> bool {
        match &mut self.0 {
            MacState::Sha256(_) => false,
            MacState::Blake3 { known, .. } => {
                *known = Some(digest);
                true
            }
        }
    }

    pub fn finish(self) -> String {
        match self.0 {
            MacState::Sha256(mac) => hex::encode(mac.finalize().into_bytes()),
            MacState::Blake3 {
                fields,
                body,
                known,
            } => hex::encode(blake3_mac(*fields, &body, known).as_bytes()),
        }
    }

    /// Whether `given` (hex) is this answer's MAC, compared in constant
    /// time.
    pub fn verify(self, given: &str) -> bool {
        let Ok(given) = hex::decode(given) else {
            return false;
        };
        match self.0 {
            MacState::Sha256(mac) => mac.verify_slice(&given).is_ok(),
            // `blake3::Hash`'s equality is constant-time.
            MacState::Blake3 {
                fields,
                body,
                known,
            } => <[u8; 32]>::try_from(given.as_slice()).is_ok_and(|given| {
                blake3_mac(*fields, &body, known) == blake3::Hash::from_bytes(given)
            }),
        }
    }
}

/// Protocol 2's MAC: the keyed hash of the fields, then of the body's
/// digest (`known`, or what `body` hashed).
fn blake3_mac(
    mut fields: blake3::Hasher,
    body: &blake3::Hasher,
    known: Option<[u8; 32]>,
) -> blake3::Hash {
    let digest = known.unwrap_or_else(|| *body.finalize().as_bytes());
    fields.update(&digest);
    fields.finalize()
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The checksum an answer carries.
pub fn checksum(bytes: &[u8]) -> String {
    checksum_of(xxhash_rust::xxh3::xxh3_64(bytes))
}

/// The checksum header's form of an xxh3 digest.
pub fn checksum_of(digest: u64) -> String {
    format!("{digest:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr() -> BlockAddr {
        BlockAddr {
            store: "data".into(),
            blob: "blobs/ab/cd/x y&z=1".into(),
            version: "\"etag\"".into(),
            block_size: 4 << 20,
            index: 7,
            len: 1000,
            pinned: false,
        }
    }

    #[test]
    fn addresses_round_trip_through_the_query() {
        let q = query(&addr(), &(10..20));
        assert_eq!(parse_query(&q), Ok((addr(), 10..20)));
        let pinned = BlockAddr {
            pinned: true,
            ..addr()
        };
        let q = query(&pinned, &(10..20));
        assert!(q.ends_with("&pinned=1"), "{q}");
        assert_eq!(parse_query(&q), Ok((pinned, 10..20)));
    }

    #[test]
    fn malformed_addresses_are_refused() {
        let good = query(&addr(), &(0..1000));
        for bad in [
            good.replace("len=1000", "len=0"),
            good.replace("end=1000", "end=1001"),
            good.replace("start=0", "start=1000"),
            good.replace("block_size=4194304", "block_size=10"),
            good.replace("index=7", "index=x"),
            good.replace("store=data", "store="),
            format!("{good}&index=3"),
            format!("{good}&extra=1"),
            format!("{good}&pinned=yes"),
            format!("{good}&pinned=1&pinned=1"),
            good.replace("&version=%22etag%22", ""),
            String::new(),
        ] {
            assert!(parse_query(&bad).is_err(), "accepted {bad:?}");
        }
    }

    #[test]
    fn signatures_cover_every_signed_field() {
        let secret = b"a cluster secret of some length";
        let q = query(&addr(), &(0..1000));
        let signed = Signed {
            method: "GET",
            path: PATH,
            query: &q,
            time_ms: 1_700_000_000_000,
            verb: "get",
            priority: "demand",
            node: "n1",
        };
        let sig = signed.sign(secret);
        assert!(signed.verify(secret, &sig));
        assert!(!signed.verify(b"another secret entirely", &sig));
        assert!(!signed.verify(secret, "00"));
        assert!(!signed.verify(secret, "not hex"));
        let other_query = q.replace("index=7", "index=8");
        for changed in [
            Signed {
                query: &other_query,
                ..signed
            },
            Signed {
                time_ms: 1_700_000_000_001,
                ..signed
            },
            Signed {
                verb: "prefetch",
                ..signed
            },
            Signed {
                priority: "warmup",
                ..signed
            },
            Signed {
                node: "n2",
                ..signed
            },
            Signed {
                method: "POST",
                ..signed
            },
        ] {
            assert!(!changed.verify(secret, &sig));
        }
    }
}
