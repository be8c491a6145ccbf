//! The peer client's answer decoding: a member that answers each block
//! request with fuzzed bytes (status line, headers, body; with the right
//! MAC, computed here, or none), read by the real peer client over
//! loopback.
//!
//! Beyond "no panic": an answer is accepted only with the right MAC, and
//! an accepted block answer holds exactly the bytes asked for.

#![no_main]

use std::io::{Read, Write};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use arbitrary::Arbitrary;
use ferry_cache::cluster::wire::{self, Verb};
use ferry_cache::cluster::{Member, PeerClient, Timeouts};
use ferry_cache::{BlockAddr, ClientTls};
use ferry_fuzz::runtime;
use libfuzzer_sys::fuzz_target;

const SECRET: &str = "fuzz-cluster-secret-long-enough";
const BLOCK: u64 = 16;

#[derive(Arbitrary, Debug, Clone)]
enum Status {
    Ok,
    NotFound,
    Internal,
    Raw(String),
}

#[derive(Arbitrary, Debug, Clone)]
enum Mac {
    None,
    /// The right MAC over what is sent (the status, error and cached
    /// headers given here, and the body).
    Right,
    Raw(String),
}

#[derive(Arbitrary, Debug, Clone)]
struct Answer {
    status: Status,
    error: Option<String>,
    cached: Option<String>,
    /// The right xxh3 checksum of the body, or this text.
    checksum: Option<Option<String>>,
    /// Content-Length as sent: the body's, none, or this one.
    length: Option<Option<u64>>,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    mac: Mac,
}

#[derive(Arbitrary, Debug)]
struct Input {
    protocol: bool,
    verb: u8,
    answer: Answer,
}

impl Answer {
    /// The bytes on the wire, for the request signed `signature` in
    /// `protocol`.
    fn render(&self, protocol: u32, signature: &str) -> Vec<u8> {
        let (code, reason) = match &self.status {
            Status::Ok => (200, "OK".to_string()),
            Status::NotFound => (404, "Not Found".to_string()),
            Status::Internal => (500, "Internal Server Error".to_string()),
            Status::Raw(line) => (0, line.clone()),
        };
        let mut head = if code == 0 {
            format!("HTTP/1.1 {reason}\r\n")
        } else {
            format!("HTTP/1.1 {code} {reason}\r\n")
        };
        match self.length {
            None => head.push_str(&format!("content-length: {}\r\n", self.body.len())),
            Some(Some(length)) => head.push_str(&format!("content-length: {length}\r\n")),
            Some(None) => {}
        }
        if let Some(error) = &self.error {
            head.push_str(&format!("{}: {error}\r\n", wire::H_ERROR));
        }
        if let Some(cached) = &self.cached {
            head.push_str(&format!("{}: {cached}\r\n", wire::H_CACHED));
        }
        match &self.checksum {
            None => head.push_str(&format!(
                "{}: {}\r\n",
                wire::H_CHECKSUM,
                wire::checksum(&self.body)
            )),
            Some(Some(text)) => head.push_str(&format!("{}: {text}\r\n", wire::H_CHECKSUM)),
            Some(None) => {}
        }
        match &self.mac {
            Mac::None => {}
            Mac::Right => {
                let mut mac = wire::AnswerMac::new(
                    SECRET.as_bytes(),
                    protocol,
                    signature,
                    code,
                    self.error.as_deref().unwrap_or_default(),
                    self.cached.as_deref().unwrap_or_default(),
                );
                mac.update(&self.body);
                head.push_str(&format!("{}: {}\r\n", wire::H_ANSWER_MAC, mac.finish()));
            }
            Mac::Raw(text) => head.push_str(&format!("{}: {text}\r\n", wire::H_ANSWER_MAC)),
        }
        for (name, value) in &self.headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("connection: close\r\n\r\n");
        let mut out = head.into_bytes();
        out.extend_from_slice(&self.body);
        out
    }
}

struct Peer {
    member: Member,
    client: PeerClient,
    /// What the member answers next, and in which protocol.
    next: &'static Mutex<Option<(u32, Answer)>>,
}

fn peer(protocol: u32) -> &'static Peer {
    static PEERS: [OnceLock<Peer>; 2] = [OnceLock::new(), OnceLock::new()];
    PEERS[protocol as usize - 1].get_or_init(|| {
        let next: &'static Mutex<Option<(u32, Answer)>> = Box::leak(Box::new(Mutex::new(None)));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let address = listener.local_addr().expect("an address").to_string();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
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
                let answer = next.lock().expect("the answer").clone();
                if let Some((protocol, answer)) = answer {
                    let _ = stream.write_all(&answer.render(protocol, &signature));
                }
            }
        });
        let member = Member {
            id: "fuzzed".into(),
            address,
            weight: 1,
            block_size: BLOCK,
            protocol_min: 1,
            protocol_max: protocol,
            stores: String::new(),
            heartbeat_ms: 0,
            incarnation: String::new(),
            capacity: 0,
            tls: false,
        };
        let client = PeerClient::new(
            "asker",
            SECRET,
            Timeouts {
                connect: Duration::from_millis(500),
                request: Duration::from_secs(2),
            },
            &ClientTls::default(),
        )
        .expect("a peer client");
        Peer {
            member,
            client,
            next,
        }
    })
}

fuzz_target!(|input: Input| {
    let protocol = if input.protocol { 2 } else { 1 };
    let verb = [Verb::Get, Verb::Prefetch, Verb::Probe, Verb::Evict][usize::from(input.verb % 4)];
    let peer = peer(protocol);
    *peer.next.lock().expect("the answer") = Some((protocol, input.answer.clone()));
    let addr = BlockAddr {
        store: "data".into(),
        blob: "b".into(),
        version: String::new(),
        block_size: BLOCK,
        index: 0,
        len: BLOCK,
        pinned: false,
    };
    let result = runtime().block_on(peer.client.ask(&peer.member, &addr, 0..BLOCK, verb, false));
    // A failure marks the member down for a while; the next input asks
    // it all the same.
    peer.client.forget_failures(&peer.member.id);
    if let Ok(answer) = result {
        assert!(
            matches!(input.answer.mac, Mac::Right),
            "an answer without the right MAC was accepted: {:?}",
            input.answer
        );
        if verb == Verb::Get {
            assert_eq!(
                answer.bytes.len() as u64,
                BLOCK,
                "a block answer of the wrong length was accepted"
            );
        }
    }
});
