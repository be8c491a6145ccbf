//! `ferry serve`: open the node, spawn its workers, then run its servers
//! (S3; admin with the change feed; peers) until SIGINT or SIGTERM.
//!
//! Shutdown has two signals. `term` (the OS signal) ends the servers that
//! face clients and peers: the node leaves the cluster first, so peers
//! route around it at once, S3 stops taking requests and drains them, and
//! peers are answered for the shutdown grace so handoff can drain this
//! node's cache. Once they are done, `stop` ends the rest: the admin port
//! and every background worker.

use std::io::Write;
use std::net::SocketAddr;
use std::time::Duration;

use ferry_config::Config;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use hyper_util::service::TowerToHyperService;

use crate::admin::{self, AdminState};
use crate::http;
use crate::listen::{self, Listener};
use crate::node::{Node, StartError, bind, bound_addr};
use crate::peer::{self, PeerState};
use crate::workers;

/// How long background workers get to stop once the servers are done.
const WORKERS_GRACE: Duration = Duration::from_secs(5);

pub async fn run(config: Config) -> Result<(), StartError> {
    let mut node = Node::open(config).await?;
    let s3_listener = bind("S3", node.config.server.listen).await?;
    let admin_listener = bind("admin", node.config.server.admin_listen).await?;
    let s3_addr = bound_addr(&s3_listener, "S3", node.config.server.listen)?;
    let admin_addr = bound_addr(&admin_listener, "admin", node.config.server.admin_listen)?;
    warn_about_plain_listeners(&node, s3_addr, admin_addr);

    let (term, stop) = (CancellationToken::new(), CancellationToken::new());
    let mut background = JoinSet::new();
    workers::spawn(&mut node, &mut background, &stop, &term)?;
    let limits = node.config.server.limits;
    let public_tls = node.tls.as_ref().map(|tls| tls.public.clone());
    let grace = node.config.server.shutdown_grace;
    background.spawn(listen::serve(
        Listener::new(admin_listener, "admin", public_tls.clone(), limits),
        TowerToHyperService::new(admin::app(AdminState::new(&node), node.region.feed.clone())),
        stop.clone().cancelled_owned(),
        grace,
    ));
    // Installed now, not when the task first runs: a signal right after the
    // ready line must not be fatal.
    let signal = shutdown_signal();
    background.spawn(watch_signals(signal, term.clone(), stop.clone()));

    let mut serving = JoinSet::new();
    serving.spawn(listen::serve(
        Listener::new(s3_listener, "s3", public_tls, limits),
        http::service(&node)?,
        term.clone().cancelled_owned(),
        grace,
    ));
    if let (Some(listener), Some(cluster), Some(cluster_config)) = (
        node.peer_listener.take(),
        &node.cluster,
        &node.config.cluster,
    ) {
        let term = term.clone();
        let until = async move {
            term.cancelled().await;
            tokio::time::sleep(grace).await;
        };
        let state = PeerState::new(&node, cluster, &cluster_config.secret);
        let peer_tls = node.tls.as_ref().map(|tls| tls.peer.clone());
        serving.spawn(listen::serve(
            Listener::new(listener, "peer", peer_tls, limits),
            TowerToHyperService::new(peer::app(state)),
            until,
            grace,
        ));
    }
    announce(&node, s3_addr, admin_addr);

    while serving.join_next().await.is_some() {}
    stop.cancel();
    let drained = tokio::time::timeout(WORKERS_GRACE, async {
        while background.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!("background tasks did not stop in time");
    }
    node.close().await;
    tracing::info!("ferry stopped");
    Ok(())
}

/// Plain HTTP beyond loopback is the operator's choice, but never a
/// silent one. (The peer port and the feed are refused at config time
/// unless the network is declared trusted.)
fn warn_about_plain_listeners(node: &Node, s3: SocketAddr, admin: SocketAddr) {
    if node.tls.is_some() {
        return;
    }
    for (name, addr) in [("S3", s3), ("admin", admin)] {
        if !addr.ip().is_loopback() {
            tracing::warn!(listener = name, %addr, "listening beyond loopback without TLS: credentials and data cross the network in the clear; set [tls] cert_file and key_file");
        }
    }
}

/// Cancels `term` when `signal` (SIGINT or SIGTERM) arrives, or returns
/// at `stop`.
async fn watch_signals(
    signal: impl std::future::Future<Output = ()>,
    term: CancellationToken,
    stop: CancellationToken,
) {
    tokio::select! {
        () = signal => term.cancel(),
        () = stop.cancelled() => {}
    }
}

/// The ready line (what scripts and tests wait for), and once, the
/// credentials this start generated.
fn announce(node: &Node, s3_addr: SocketAddr, admin_addr: SocketAddr) {
    let scheme = if node.tls.is_some() { "https" } else { "http" };
    let endpoint = format!("{scheme}://{s3_addr}");
    if let Some((credential, path)) = &node.generated {
        println!(
            "Generated credentials, kept in {} (mode 0600):",
            path.display()
        );
        println!("  access key: {}", credential.access_key);
        println!("  secret key: {}", credential.secret_key);
        println!("Try:");
        println!(
            "  AWS_ACCESS_KEY_ID={} AWS_SECRET_ACCESS_KEY={} aws --endpoint-url {endpoint} s3 mb s3://models",
            credential.access_key, credential.secret_key
        );
    }
    tracing::info!(
        s3 = %s3_addr,
        admin = %admin_addr,
        data_dir = %node.config.data_dir.display(),
        meta = ?node.config.meta,
        data_store = %node.config.data_store,
        "ferry is serving"
    );
    println!("ferry ready s3={endpoint} admin={scheme}://{admin_addr}");
    let _ = std::io::stdout().flush();
}

/// Resolves on the first SIGINT or SIGTERM. The handlers are installed
/// when this is called, not when the future is first polled, so a signal
/// that arrives right after the ready line is not fatal.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let term = signal(SignalKind::terminate());
        let int = signal(SignalKind::interrupt());
        async move {
            match (term, int) {
                (Ok(mut term), Ok(mut int)) => {
                    tokio::select! {
                        _ = term.recv() => {}
                        _ = int.recv() => {}
                    }
                }
                (term, int) => {
                    tracing::warn!(
                        term_ok = term.is_ok(),
                        int_ok = int.is_ok(),
                        "cannot watch signals; falling back to Ctrl-C"
                    );
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
