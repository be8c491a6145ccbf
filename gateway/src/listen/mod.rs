//! One connection loop for every listener (S3, admin with the change
//! feed, peer), so each gets the same protection:
//!
//! - at most `max_connections` open at once; more wait in the kernel's
//!   backlog instead of taking memory and descriptors;
//! - a TLS handshake, when TLS is on, in the connection's own task (a slow
//!   handshake never holds the accept loop), bounded by the header timeout;
//! - hyper's header-read timeout (request headers, and the wait for the
//!   next request on a kept-alive HTTP/1.1 connection);
//! - a deadline for a request's first bytes, and idle and write timeouts,
//!   around the connection ([`timed_io`]);
//! - TCP_NODELAY (without it every small answer waits for the client's
//!   delayed ACK);
//! - graceful shutdown: stop accepting, then give open requests a grace.

mod timed_io;
pub mod tls;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ferry_config::ConnectionLimits;
use hyper::body::{Body, Incoming};
use hyper::service::Service;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;

use crate::metrics as m;
pub use timed_io::TimedIo;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A bound listener and how its connections are served.
pub struct Listener {
    pub tcp: TcpListener,
    /// `s3`, `admin` or `peer`: the label of its metrics and log lines.
    pub name: &'static str,
    pub tls: Option<TlsAcceptor>,
    pub limits: ConnectionLimits,
}

impl Listener {
    pub fn new(
        tcp: TcpListener,
        name: &'static str,
        tls: Option<Arc<rustls::ServerConfig>>,
        limits: ConnectionLimits,
    ) -> Listener {
        Listener {
            tcp,
            name,
            tls: tls.map(TlsAcceptor::from),
            limits,
        }
    }
}

/// Accepts connections on `listener` and serves them with `service` until
/// `shutdown` resolves; then stops accepting and gives in-flight requests
/// up to `grace` to finish.
pub async fn serve<S, B>(
    listener: Listener,
    service: S,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) where
    S: Service<http::Request<Incoming>, Response = http::Response<B>>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let Listener {
        tcp,
        name,
        tls,
        limits,
    } = listener;
    let mut builder = ConnBuilder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    builder.http2().timer(TokioTimer::new());
    let builder = Arc::new(builder);
    let open = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        // A permit first: at the cap, connections wait in the backlog.
        let permit = tokio::select! {
            () = &mut shutdown => break,
            permit = open.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
        };
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = tcp.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Out of file descriptors and the like: back off briefly
                    // instead of spinning on accept.
                    tracing::warn!(listener = name, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let connection = Connection {
            builder: builder.clone(),
            service: service.clone(),
            watcher: graceful.watcher(),
            tls: tls.clone(),
            limits,
            name,
            peer,
        };
        tokio::spawn(async move {
            metrics::gauge!(m::CONNECTIONS_OPEN, "listener" => name).increment(1.0);
            connection.run(stream).await;
            metrics::gauge!(m::CONNECTIONS_OPEN, "listener" => name).decrement(1.0);
            drop(permit);
        });
    }
    drop(tcp);
    tokio::select! {
        () = graceful.shutdown() => tracing::info!(listener = name, "all connections drained"),
        () = tokio::time::sleep(grace) => tracing::warn!(listener = name, ?grace, "shutdown grace period over; dropping open connections"),
    }
}

/// One accepted connection, served in its own task.
struct Connection<S> {
    builder: Arc<ConnBuilder<TokioExecutor>>,
    service: S,
    watcher: Watcher,
    tls: Option<TlsAcceptor>,
    limits: ConnectionLimits,
    name: &'static str,
    peer: SocketAddr,
}

impl<S, B> Connection<S>
where
    S: Service<http::Request<Incoming>, Response = http::Response<B>>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    async fn run(self, stream: TcpStream) {
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(peer = %self.peer, error = %e, "could not set TCP_NODELAY");
        }
        let limits = self.limits;
        match self.tls.clone() {
            None => {
                self.http(TimedIo::new(
                    stream,
                    limits.header_timeout,
                    limits.idle_timeout,
                    limits.write_timeout,
                ))
                .await
            }
            Some(acceptor) => {
                // The deadlines go around the decrypted stream: what they
                // watch for is the HTTP request, after the handshake.
                let handshake =
                    tokio::time::timeout(limits.header_timeout, acceptor.accept(stream)).await;
                match handshake {
                    Ok(Ok(tls)) => {
                        self.http(TimedIo::new(
                            tls,
                            limits.header_timeout,
                            limits.idle_timeout,
                            limits.write_timeout,
                        ))
                        .await
                    }
                    Ok(Err(e)) => {
                        metrics::counter!(m::TLS_HANDSHAKE_FAILURES, "listener" => self.name)
                            .increment(1);
                        tracing::debug!(listener = self.name, peer = %self.peer, error = %e, "TLS handshake failed");
                    }
                    Err(_) => {
                        metrics::counter!(m::TLS_HANDSHAKE_FAILURES, "listener" => self.name)
                            .increment(1);
                        tracing::debug!(listener = self.name, peer = %self.peer, "TLS handshake timed out");
                    }
                }
            }
        }
    }

    async fn http<I>(self, io: I)
    where
        I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let connection = self
            .builder
            .serve_connection_with_upgrades(TokioIo::new(io), self.service);
        if let Err(e) = self.watcher.watch(connection).await {
            tracing::debug!(listener = self.name, peer = %self.peer, error = %e, "connection ended with an error");
        }
    }
}
