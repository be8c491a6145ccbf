//! The change feed's wire format, shared by the source's endpoint (in the
//! gateway, on the admin port) and the mirror's follower.
//!
//! The feed crosses clouds, so both directions are authenticated with the
//! region's feed secret: a request carries the mirror's name, a timestamp
//! and an HMAC-SHA256 over method, path, query, timestamp and name; an
//! answer carries an HMAC over the request's signature and the answer's
//! body, so an answer can be neither forged nor replayed for another
//! request. (TLS is still required by config for non-loopback sources
//! unless the operator marks the network trusted: the HMAC does not hide
//! the namespace from a listener.)
//!
//! - `GET /feed/changes?after=A&limit=N&wait_ms=W`: records after `A`,
//!   waiting up to `W` for the first; `after` also acknowledges that the
//!   mirror applied everything up to `A`. 410 with [`Resync`] when the
//!   mirror must resync (its position was trimmed, or it was dropped).
//! - `GET /feed/snapshot`: registers the mirror at the current end of the
//!   log and answers that position with the bucket list; the mirror
//!   replays the log from there after loading the entries.
//! - `GET /feed/snapshot/entries?bucket=B&after=K&limit=N`: one page of a
//!   bucket's entries with their layouts.

mod source;

pub use source::{ChangesAnswer, FeedSource};

use hmac::{Hmac, KeyInit, Mac};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use ferry_meta::{BucketInfo, Change, Entry, Layout, Seq};

pub const PATH_CHANGES: &str = "/feed/changes";
pub const PATH_SNAPSHOT: &str = "/feed/snapshot";
pub const PATH_ENTRIES: &str = "/feed/snapshot/entries";

/// The asking mirror's name (requests) or the answering source's (answers).
pub const H_REGION: &str = "x-ferry-region";
pub const H_TIME: &str = "x-ferry-time";
pub const H_SIGNATURE: &str = "x-ferry-signature";

/// How far a request's timestamp may be from the source's clock.
pub const MAX_SKEW_MS: i64 = 30_000;
/// Longest long-poll a source grants.
pub const MAX_WAIT_MS: u64 = 30_000;
/// Most records or entries in one answer.
pub const MAX_PAGE: usize = 1000;

/// The signed parts of a feed request.
#[derive(Debug, Clone, Copy)]
pub struct SignedRequest<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub query: &'a str,
    pub time_ms: i64,
    pub region: &'a str,
}

impl SignedRequest<'_> {
    fn mac(&self, secret: &[u8]) -> Hmac<Sha256> {
        let mut mac = new_mac(secret);
        for part in [
            "ferry-feed-request-1",
            self.method,
            self.path,
            self.query,
            &self.time_ms.to_string(),
            self.region,
        ] {
            // Length-prefixed, so no two field lists sign alike.
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part.as_bytes());
        }
        mac
    }

    pub fn sign(&self, secret: &[u8]) -> String {
        hex::encode(self.mac(secret).finalize().into_bytes())
    }

    /// Whether `signature` (hex) is right, compared in constant time.
    pub fn verify(&self, secret: &[u8], signature: &str) -> bool {
        hex::decode(signature).is_ok_and(|raw| self.mac(secret).verify_slice(&raw).is_ok())
    }
}

fn new_mac(secret: &[u8]) -> Hmac<Sha256> {
    // HMAC takes keys of any length.
    <Hmac<Sha256> as KeyInit>::new_from_slice(secret).unwrap_or_else(|_| unreachable!())
}

fn answer_mac(secret: &[u8], request_signature: &str, status: u16, body: &[u8]) -> Hmac<Sha256> {
    let mut mac = new_mac(secret);
    mac.update(b"ferry-feed-answer-1");
    mac.update(&(request_signature.len() as u64).to_be_bytes());
    mac.update(request_signature.as_bytes());
    mac.update(&status.to_be_bytes());
    mac.update(body);
    mac
}

/// The signature of an answer (status and body) to the request signed
/// `request_signature`.
pub fn sign_answer(secret: &[u8], request_signature: &str, status: u16, body: &[u8]) -> String {
    hex::encode(
        answer_mac(secret, request_signature, status, body)
            .finalize()
            .into_bytes(),
    )
}

pub fn verify_answer(
    secret: &[u8],
    request_signature: &str,
    status: u16,
    body: &[u8],
    signature: &str,
) -> bool {
    hex::decode(signature).is_ok_and(|raw| {
        answer_mac(secret, request_signature, status, body)
            .verify_slice(&raw)
            .is_ok()
    })
}

/// A source's answer, once read: the page asked for, or the source's
/// demand to resync.
#[derive(Debug)]
pub enum Answer<T> {
    Ok(T),
    Resync(Resync),
}

/// Reads the source's answer (`status`, its signature header, `body`) to
/// the request signed `request_signature`. Nothing of an answer is used
/// unless its signature holds; the error says what was wrong, in words
/// that follow the request's URL.
pub fn read_answer<T: DeserializeOwned>(
    secret: &[u8],
    request_signature: &str,
    status: u16,
    answer_signature: Option<&str>,
    body: &[u8],
) -> Result<Answer<T>, String> {
    let signed = answer_signature
        .is_some_and(|sig| verify_answer(secret, request_signature, status, body, sig));
    if !signed {
        // Not the source, or not with our secret.
        let text = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
        return Err(format!(
            "answered {status} without a valid feed signature (is region.feed_secret the same at both ends?): {text}"
        ));
    }
    let undecodable = |e: serde_json::Error| format!("answered an undecodable body: {e}");
    match status {
        200 => serde_json::from_slice(body)
            .map(Answer::Ok)
            .map_err(undecodable),
        410 => serde_json::from_slice(body)
            .map(Answer::Resync)
            .map_err(undecodable),
        _ => Err(format!(
            "answered {status}: {}",
            String::from_utf8_lossy(body)
        )),
    }
}

/// An answer to `GET /feed/changes`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChangesPage {
    /// The source region's name.
    pub source: String,
    /// The source's newest sequence number when it answered.
    pub last: Seq,
    pub changes: Vec<Change>,
}

/// A 410 answer: the mirror must resync from a snapshot.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Resync {
    pub source: String,
    pub reason: String,
}

/// An answer to `GET /feed/snapshot`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SnapshotStart {
    pub source: String,
    /// Replay the log from here once the entries are loaded.
    pub position: Seq,
    pub buckets: Vec<BucketInfo>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SnapshotEntry {
    pub key: String,
    pub entry: Entry,
    pub layout: Layout,
}

/// An answer to `GET /feed/snapshot/entries`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EntriesPage {
    pub entries: Vec<SnapshotEntry>,
    /// Pass as `after` for the next page; `None`: the bucket is done.
    pub next: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_and_answers_are_bound_to_the_secret_and_each_other() {
        let secret = b"a feed secret of some length";
        let request = SignedRequest {
            method: "GET",
            path: PATH_CHANGES,
            query: "after=5&limit=100&wait_ms=1000",
            time_ms: 1_700_000_000_000,
            region: "edge-1",
        };
        let sig = request.sign(secret);
        assert!(request.verify(secret, &sig));
        assert!(!request.verify(b"another secret entirely", &sig));
        assert!(!request.verify(secret, "not hex"));
        for changed in [
            SignedRequest {
                query: "after=4&limit=100&wait_ms=1000",
                ..request
            },
            SignedRequest {
                region: "edge-2",
                ..request
            },
            SignedRequest {
                time_ms: 1_700_000_000_001,
                ..request
            },
            SignedRequest {
                path: PATH_SNAPSHOT,
                ..request
            },
        ] {
            assert!(!changed.verify(secret, &sig), "{changed:?}");
        }
        let answer = sign_answer(secret, &sig, 200, b"{\"changes\":[]}");
        assert!(verify_answer(
            secret,
            &sig,
            200,
            b"{\"changes\":[]}",
            &answer
        ));
        assert!(!verify_answer(
            secret,
            &sig,
            200,
            b"{\"changes\":[1]}",
            &answer
        ));
        assert!(!verify_answer(
            secret,
            &sig,
            410,
            b"{\"changes\":[]}",
            &answer
        ));
        let other = SignedRequest {
            time_ms: 1,
            ..request
        }
        .sign(secret);
        assert!(!verify_answer(
            secret,
            &other,
            200,
            b"{\"changes\":[]}",
            &answer
        ));
    }
}
