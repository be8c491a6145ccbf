//! A fault proxy in front of a real S3 server: each request is passed on
//! unchanged (the Host header too, so signatures hold) over a connection
//! of its own, unless the current fault says otherwise. The faults a
//! store shows in production: some requests failing, an outage, slow
//! answers.

use std::net::SocketAddr;
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
    /// Each chunk waits `delay` before it is passed on, and this share of
    /// connections is cut (reset) after their first chunk: a slow, lossy
    /// network between two hosts.
    SlowAndLossy {
        delay: Duration,
        cut_share: f64,
    },
    /// Every connection through it is cut, and new ones are closed as
    /// they arrive: the far side unreachable.
    Down,
}

/// A TCP proxy standing for the network between two hosts: the node
/// advertises (or is told to reach) the proxy's address, so every
/// connection between them crosses it. (Loopback cannot be made lossy
/// with `tc netem` here: the kernel has no netem qdisc.)
pub struct LinkProxy {
    pub address: String,
    fault: watch::Sender<LinkFault>,
    /// Connections made through it, and how many of them it cut.
    counts: Arc<Mutex<(u64, u64)>>,
    task: tokio::task::JoinHandle<()>,
}

impl LinkProxy {
    pub async fn start(upstream: &str) -> LinkProxy {
        let upstream: SocketAddr = upstream.parse().expect("upstream host:port");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("addr").to_string();
        let (fault, watching) = watch::channel(LinkFault::None);
        let counts = Arc::new(Mutex::new((0, 0)));
        let counted = counts.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    continue;
                };
                let (fault, counts) = (watching.clone(), counted.clone());
                tokio::spawn(async move {
                    let now = *fault.borrow();
                    let cut = match now {
                        LinkFault::SlowAndLossy { cut_share, .. } => {
                            rand::random::<f64>() < cut_share
                        }
                        LinkFault::Down => true,
                        LinkFault::None => false,
                    };
                    {
                        let mut counts = counts.lock().expect("counts");
                        counts.0 += 1;
                        counts.1 += u64::from(cut);
                    }
                    if now == LinkFault::Down {
                        return; // dropping `client` closes it
                    }
                    let Ok(server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let _ = client.set_nodelay(true);
                    let _ = server.set_nodelay(true);
                    let (client_read, client_write) = client.into_split();
                    let (server_read, server_write) = server.into_split();
                    tokio::select! {
                        _ = pipe(client_read, server_write, fault.clone(), cut) => {}
                        _ = pipe(server_read, client_write, fault, cut) => {}
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

    /// Connections made through it so far, and how many were cut.
    pub fn counts(&self) -> (u64, u64) {
        *self.counts.lock().expect("counts")
    }
}

impl Drop for LinkProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Copies `from` to `to` chunk by chunk under the current fault; with
/// `cut`, the connection ends after its first chunk (the other direction
/// is dropped with it, which resets it). A link going down ends it at
/// once, whatever it was doing.
async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut fault: watch::Receiver<LinkFault>,
    cut: bool,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 64 * 1024];
    let mut down = fault.clone();
    let copy = async move {
        loop {
            let n = match from.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            let now = *fault.borrow_and_update();
            if let LinkFault::SlowAndLossy { delay, .. } = now {
                tokio::time::sleep(delay).await;
            }
            if to.write_all(&buf[..n]).await.is_err() {
                return;
            }
            if cut && now != LinkFault::None {
                return;
            }
        }
    };
    tokio::select! {
        () = copy => {}
        _ = down.wait_for(|f| *f == LinkFault::Down) => {}
    }
}
