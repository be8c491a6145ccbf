//! A fault proxy in front of a real S3 server: each request is passed on
//! unchanged (the Host header too, so signatures hold) over a connection
//! of its own, unless the current fault says otherwise. The faults a
//! store shows in production: some requests failing, an outage, slow
//! answers.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// What the proxy does to the requests it receives.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum StoreFault {
    None,
    /// Answers this share of requests 503 SlowDown, as S3 does under load.
    FailShare(f64),
    /// Drops every connection without an answer.
    Down,
    /// Waits this long before passing a request on.
    Slow(Duration),
}

pub struct FaultProxy {
    pub endpoint: String,
    fault: Arc<Mutex<StoreFault>>,
    counts: Arc<Mutex<ProxyCounts>>,
    task: tokio::task::JoinHandle<()>,
}

/// Requests seen, by what was done with them.
#[derive(Debug, Default, Clone, Copy)]
pub struct ProxyCounts {
    pub passed: u64,
    pub failed: u64,
    pub dropped: u64,
}

type ProxyBody = http_body_util::combinators::BoxBody<Bytes, hyper::Error>;

impl FaultProxy {
    /// A proxy to `upstream` (`http://host:port`) on a free loopback port.
    pub async fn start(upstream: &str) -> FaultProxy {
        let upstream: SocketAddr = upstream
            .trim_start_matches("http://")
            .parse()
            .expect("upstream host:port");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let endpoint = format!("http://{}", listener.local_addr().expect("addr"));
        let fault = Arc::new(Mutex::new(StoreFault::None));
        let counts = Arc::new(Mutex::new(ProxyCounts::default()));
        let (f, c) = (fault.clone(), counts.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    continue;
                };
                let (fault, counts) = (f.clone(), c.clone());
                tokio::spawn(async move {
                    let service = service_fn(move |request| {
                        forward(upstream, request, fault.clone(), counts.clone())
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(client), service)
                        .await;
                });
            }
        });
        FaultProxy {
            endpoint,
            fault,
            counts,
            task,
        }
    }

    pub fn set(&self, fault: StoreFault) {
        *self.fault.lock().expect("fault") = fault;
    }

    pub fn counts(&self) -> ProxyCounts {
        *self.counts.lock().expect("counts")
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn forward(
    upstream: SocketAddr,
    request: hyper::Request<Incoming>,
    fault: Arc<Mutex<StoreFault>>,
    counts: Arc<Mutex<ProxyCounts>>,
) -> Result<hyper::Response<ProxyBody>, std::io::Error> {
    let now = *fault.lock().expect("fault");
    let count = |f: fn(&mut ProxyCounts)| f(&mut counts.lock().expect("counts"));
    match now {
        StoreFault::Down => {
            count(|c| c.dropped += 1);
            // An error from the service closes the connection unanswered.
            return Err(std::io::Error::other("the store is down"));
        }
        StoreFault::FailShare(share) if rand::random::<f64>() < share => {
            count(|c| c.failed += 1);
            let body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>";
            return Ok(hyper::Response::builder()
                .status(503)
                .header("content-type", "application/xml")
                .body(
                    Full::new(Bytes::from(body))
                        .map_err(|never| match never {})
                        .boxed(),
                )
                .expect("a response"));
        }
        StoreFault::Slow(delay) => tokio::time::sleep(delay).await,
        _ => {}
    }
    count(|c| c.passed += 1);
    let stream = TcpStream::connect(upstream).await?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(std::io::Error::other)?;
    tokio::spawn(connection);
    let response = sender
        .send_request(request)
        .await
        .map_err(std::io::Error::other)?;
    Ok(response.map(|body| body.boxed()))
}

/// What a [`LinkProxy`] does to the connections through it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LinkFault {
    None,
    /// Each chunk waits `delay` before it is passed on, and of the
    /// connections that carry data under the fault, the first and then
    /// every `cut_every`-th is cut (reset) after its chunk: a slow, lossy
    /// network between two hosts. (Counted, not drawn at random: the
    /// phase must cut some connection however few it sees.)
    SlowAndLossy {
        delay: Duration,
        cut_every: u64,
    },
    /// Nothing passes either way, as across a partitioned network:
    /// connections stay open but silent (what was sent waits in the
    /// proxy), new ones are accepted but reach nothing, until the link
    /// is back; then everything held flows on.
    Silent,
}

/// Connections made through a [`LinkProxy`]; of them, those that
/// carried data under a lossy fault, and those it cut.
#[derive(Debug, Default, Clone, Copy)]
pub struct LinkCounts {
    pub connections: u64,
    pub lossy: u64,
    pub cut: u64,
}

/// A TCP proxy standing for the network between two hosts: the node
/// advertises (or is told to reach) the proxy's address, so every
/// connection between them crosses it. (Loopback cannot be made lossy
/// with `tc netem` here: the kernel has no netem qdisc.)
pub struct LinkProxy {
    pub address: String,
    fault: watch::Sender<LinkFault>,
    counts: Arc<Mutex<LinkCounts>>,
    task: tokio::task::JoinHandle<()>,
}

impl LinkProxy {
    pub async fn start(upstream: &str) -> LinkProxy {
        let upstream: SocketAddr = upstream.parse().expect("upstream host:port");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("addr").to_string();
        let (fault, watching) = watch::channel(LinkFault::None);
        let counts = Arc::new(Mutex::new(LinkCounts::default()));
        let shared = counts.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    continue;
                };
                let (mut fault, counts) = (watching.clone(), shared.clone());
                tokio::spawn(async move {
                    counts.lock().expect("counts").connections += 1;
                    if fault.wait_for(|f| *f != LinkFault::Silent).await.is_err() {
                        return; // the proxy is gone
                    }
                    let Ok(server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let _ = client.set_nodelay(true);
                    let _ = server.set_nodelay(true);
                    let (client_read, client_write) = client.into_split();
                    let (server_read, server_write) = server.into_split();
                    // Whether this connection was judged under a lossy
                    // fault yet (by either direction).
                    let judged = Arc::new(AtomicBool::new(false));
                    let towards = Link {
                        fault: fault.clone(),
                        counts: counts.clone(),
                        judged: judged.clone(),
                    };
                    let back = Link {
                        fault,
                        counts,
                        judged,
                    };
                    tokio::select! {
                        () = pipe(client_read, server_write, towards) => {}
                        () = pipe(server_read, client_write, back) => {}
                    }
                });
            }
        });
        LinkProxy {
            address,
            fault,
            counts,
            task,
        }
    }

    pub fn set(&self, fault: LinkFault) {
        self.fault.send_replace(fault);
    }

    pub fn counts(&self) -> LinkCounts {
        *self.counts.lock().expect("counts")
    }
}

impl Drop for LinkProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One direction of a connection's view of its link.
struct Link {
    fault: watch::Receiver<LinkFault>,
    counts: Arc<Mutex<LinkCounts>>,
    judged: Arc<AtomicBool>,
}

impl Link {
    /// Whether this connection is the one in `cut_every` to cut (asked
    /// once per connection, at its first chunk under a lossy fault).
    fn cut(&self, cut_every: u64) -> bool {
        if self.judged.swap(true, Ordering::Relaxed) {
            return false;
        }
        let mut counts = self.counts.lock().expect("counts");
        let cut = counts.lossy.is_multiple_of(cut_every.max(1));
        counts.lossy += 1;
        counts.cut += u64::from(cut);
        cut
    }
}

/// Copies `from` to `to` chunk by chunk under the current fault: a slow
/// link delays each chunk and cuts its share of connections (the other
/// direction is dropped with it, which resets the connection); a silent
/// link holds each chunk until it is back. Ends when the proxy is dropped.
async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut link: Link,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 64 * 1024];
    let mut proxy = link.fault.clone();
    let copy = async move {
        loop {
            let n = match from.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            // Copied out: the watch's guard must not live across awaits.
            let now = match link.fault.wait_for(|f| *f != LinkFault::Silent).await {
                Ok(now) => *now,
                Err(_) => return,
            };
            let mut cut = false;
            if let LinkFault::SlowAndLossy { delay, cut_every } = now {
                tokio::time::sleep(delay).await;
                cut = link.cut(cut_every);
            }
            if to.write_all(&buf[..n]).await.is_err() || cut {
                return;
            }
        }
    };
    // `changed` fails once the proxy (the sender) is dropped.
    let dropped = async move { while proxy.changed().await.is_ok() {} };
    tokio::select! {
        () = copy => {}
        () = dropped => {}
    }
}
