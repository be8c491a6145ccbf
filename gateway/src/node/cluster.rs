//! Joining the cache cluster: bind the peer endpoint, then announce this
//! node (refused when the members disagree on block size, protocol or
//! stores).

use std::sync::Arc;

use ferry_cache::ClientTls;
use ferry_cache::cluster::{Cluster, Tls, TraceContext, store_fingerprint};
use ferry_config::{ClusterConfig, Config};
use tokio::net::TcpListener;

use super::{StartError, bind, bound_addr};

pub(crate) async fn join(
    config: &Config,
    cluster: &ClusterConfig,
    client_tls: &ClientTls,
) -> Result<(Cluster, TcpListener), StartError> {
    let listener = bind("peers", cluster.peer_listen).await?;
    let bound = bound_addr(&listener, "peers", cluster.peer_listen)?;
    let advertise = match &cluster.advertise {
        Some(address) => address.clone(),
        None if bound.ip().is_unspecified() => {
            return Err(StartError::Config(format!(
                "cluster.advertise: peer_listen {bound} is a wildcard address; set advertise to the host:port peers reach this node at"
            )));
        }
        None => bound.to_string(),
    };
    let joined = Cluster::start(
        cluster,
        advertise.clone(),
        config.cache.block_size,
        store_fingerprint(&config.stores),
        super::cache::tier_capacity(config),
        &Tls {
            serves: config.tls.enabled(),
            client: client_tls.clone(),
        },
        // With trace export, block requests carry their trace to the owner.
        config
            .telemetry
            .otlp
            .is_some()
            .then(|| Arc::new(crate::telemetry::current_traceparent) as TraceContext),
    )
    .await?;
    tracing::info!(
        node = %cluster.node_id,
        peer = %bound,
        advertise = %advertise,
        weight = cluster.weight,
        replicas = cluster.replicas,
        serve = cluster.serve,
        members = joined.node.membership.current().members.len(),
        "joined the cluster"
    );
    Ok((joined, listener))
}
