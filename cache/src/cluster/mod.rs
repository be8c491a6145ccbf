//! The cache cluster: nodes whose memory and disks form one block cache.
//! Each block has owners chosen by weighted rendezvous hashing over the
//! serving members (`ring`); a node that is not an owner asks the owner
//! over the peer protocol (`wire`, `client`) before any store, and the
//! owner loads the block once for the whole cluster (`source`). Membership
//! is a static list or heartbeats in Redis (`view`, `redis_membership`).

mod client;
mod digests;
mod redis_membership;
pub mod ring;
mod serve;
mod source;
mod view;
mod warm_on_open;
pub mod warmup;
pub mod wire;

use std::future::Future;
use std::sync::Arc;

use xxhash_rust::xxh3::xxh3_64;

pub use client::{Answer, PeerClient, PeerError, TRACEPARENT, Timeouts, TraceContext};
pub use digests::AnswerDigests;
pub use redis_membership::RedisMembership;
pub use serve::Served;
pub use source::{Node, OwnerSource, PeerSource};
pub use view::{Member, Membership, View};
pub use warm_on_open::WarmOnOpen;

use ferry_config::{ClusterConfig, Membership as MembershipConfig, StoreSpec};

use crate::client_tls::ClientTls;
use crate::error::CacheError;

/// The fingerprint of a store map: nodes whose logical store names mean
/// other buckets must not share cache keys.
pub fn store_fingerprint<'a>(
    stores: impl IntoIterator<Item = (&'a String, &'a StoreSpec)>,
) -> String {
    let mut text = String::new();
    for (name, spec) in stores {
        text.push_str(name);
        text.push('=');
        text.push_str(&spec.identity());
        text.push('\n');
    }
    format!("{:016x}", xxh3_64(text.as_bytes()))
}

/// Why this node may not join the members it sees, naming the value
/// that differs and what the cluster uses.
pub fn check_join(me: &Member, others: &[Member]) -> Result<(), CacheError> {
    for other in others.iter().filter(|o| o.id != me.id) {
        if other.block_size != me.block_size {
            return Err(CacheError::Cluster(format!(
                "cache.block_size is {} here but the cluster uses {} (node {}); every node of a cluster must use the same block size",
                me.block_size, other.block_size, other.id
            )));
        }
        if me.protocol_max < other.protocol_min || other.protocol_max < me.protocol_min {
            return Err(CacheError::Cluster(format!(
                "this node speaks peer protocol {}..={} but node {} speaks {}..={}: no common version",
                me.protocol_min, me.protocol_max, other.id, other.protocol_min, other.protocol_max
            )));
        }
        if other.stores != me.stores {
            return Err(CacheError::Cluster(format!(
                "this node's [stores] differ from node {}'s (fingerprint {} against {}): a store name must mean the same bucket on every node",
                other.id, me.stores, other.stores
            )));
        }
    }
    Ok(())
}

/// TLS in the cluster: whether this node's peer endpoint speaks it
/// (announced to the others), and what its peer client trusts and shows.
#[derive(Clone, Default)]
pub struct Tls {
    pub serves: bool,
    pub client: ClientTls,
}

/// A started cluster membership: the node and what keeps its view fresh.
pub struct Cluster {
    pub node: Arc<Node>,
    /// This node as it announces itself (`None`: client-only).
    pub me: Option<Member>,
    redis: Option<RedisMembership>,
}

impl Cluster {
    /// Builds this node's membership: reads the current members, refuses
    /// to join when they disagree on block size, protocol or stores, and
    /// (dynamic) announces itself. `advertise` is where peers reach this
    /// node; `stores` the fingerprint of its store map.
    pub async fn start(
        config: &ClusterConfig,
        advertise: String,
        block_size: u64,
        stores: String,
        capacity: u64,
        tls: &Tls,
        trace: Option<TraceContext>,
    ) -> Result<Cluster, CacheError> {
        let me = config.serve.then(|| Member {
            id: config.node_id.clone(),
            address: advertise,
            weight: config.weight,
            block_size,
            protocol_min: wire::PROTOCOL_MIN,
            protocol_max: wire::PROTOCOL_MAX,
            stores,
            heartbeat_ms: 0,
            incarnation: uuid::Uuid::new_v4().simple().to_string(),
            capacity,
            tls: tls.serves,
        });
        let (view, redis) = match &config.membership {
            MembershipConfig::Static(peers) => {
                let members: Vec<Member> = peers
                    .iter()
                    .map(|p| Member {
                        id: p.id.clone(),
                        address: p.address.clone(),
                        weight: p.weight,
                        block_size,
                        protocol_min: wire::PROTOCOL_MIN,
                        protocol_max: wire::PROTOCOL_MAX,
                        stores: me.as_ref().map(|m| m.stores.clone()).unwrap_or_default(),
                        heartbeat_ms: 0,
                        incarnation: String::new(),
                        capacity: 0,
                        tls: tls.serves,
                    })
                    .collect();
                if let Some(me) = &me
                    && !members.iter().any(|m| m.id == me.id)
                {
                    return Err(CacheError::Cluster(format!(
                        "cluster.peers does not list this node ({}); a serving node of a static cluster must be in its list",
                        me.id
                    )));
                }
                (View::new(members), None)
            }
            MembershipConfig::Redis { url, cluster } => {
                let redis = RedisMembership::connect(url.expose(), &config.name, *cluster)
                    .await
                    .map_err(|e| CacheError::Cluster(format!("cluster.membership: {e}")))?;
                let mut members = redis
                    .members()
                    .await
                    .map_err(|e| CacheError::Cluster(format!("cluster.membership: {e}")))?;
                if let Some(me) = &me {
                    check_join(me, &members)?;
                    let mut announced = me.clone();
                    if let Some(weight) = redis.weight_override(&me.id).await? {
                        tracing::info!(node = %me.id, weight, configured = me.weight, "a weight set at run time applies");
                        announced.weight = weight;
                    }
                    redis
                        .heartbeat(me)
                        .await
                        .map_err(|e| CacheError::Cluster(format!("cluster.membership: {e}")))?;
                    members.retain(|m| m.id != me.id);
                    members.push(announced);
                }
                (View::new(members), Some(redis))
            }
        };
        let client = PeerClient::new(
            &config.node_id,
            &config.secret,
            Timeouts {
                connect: config.connect_timeout,
                request: config.request_timeout,
            },
            &tls.client,
        )?
        .with_trace_context(trace);
        let node = Arc::new(Node {
            id: config.node_id.clone(),
            replicas: config.replicas,
            membership: Arc::new(Membership::new(view, config.handoff)),
            client,
        });
        Ok(Cluster { node, me, redis })
    }

    pub fn redis(&self) -> Option<&RedisMembership> {
        self.redis.as_ref()
    }

    /// Heartbeats and refreshes the view every second until `shutdown`,
    /// then leaves (deletes the heartbeat) so peers route around this node
    /// at once. While Redis is unreachable the last view stays in use: a
    /// node never shrinks its view to itself.
    pub async fn run(&self, shutdown: impl Future<Output = ()>) {
        let Some(redis) = &self.redis else {
            shutdown.await;
            return;
        };
        tokio::pin!(shutdown);
        let mut ticker = tokio::time::interval(redis_membership::INTERVAL);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failing = false;
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                _ = ticker.tick() => {}
            }
            let round = async {
                if let Some(me) = &self.me {
                    redis.heartbeat(me).await?;
                }
                redis.members().await
            };
            match round.await {
                Ok(members) => {
                    if failing {
                        tracing::info!("cluster membership reachable again");
                        failing = false;
                    }
                    if let Some(arrived) = self.node.membership.update(View::new(members)) {
                        // A node that joined or restarted is tried again at once.
                        for id in &arrived {
                            self.node.client.forget_failures(id);
                        }
                        let view = self.node.membership.current();
                        let ids: Vec<&str> = view.members.iter().map(|m| m.id.as_str()).collect();
                        tracing::info!(members = ?ids, "cluster view changed");
                    }
                }
                Err(e) => {
                    if !failing {
                        tracing::warn!(error = %e, "cluster membership unreachable; keeping the last view");
                        failing = true;
                    }
                }
            }
        }
        if let Some(me) = &self.me {
            match redis.leave(&me.id).await {
                Ok(()) => tracing::info!(node = %me.id, "left the cluster"),
                Err(e) => {
                    tracing::warn!(error = %e, "could not leave the cluster; peers drop this node when its heartbeat expires")
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: &str) -> Member {
        Member {
            id: id.into(),
            address: format!("{id}:1"),
            weight: 100,
            block_size: 4 << 20,
            protocol_min: 1,
            protocol_max: 2,
            stores: "abc".into(),
            heartbeat_ms: 0,
            incarnation: String::new(),
            capacity: 0,
            tls: false,
        }
    }

    #[test]
    fn a_node_that_differs_is_refused_with_the_value_named() {
        let me = member("me");
        assert!(check_join(&me, &[member("a"), member("b")]).is_ok());
        let other_size = Member {
            block_size: 1 << 20,
            ..member("a")
        };
        let err = check_join(&me, &[other_size])
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.contains("block_size") && err.contains("1048576"),
            "{err}"
        );
        let other_protocol = Member {
            protocol_min: 3,
            protocol_max: 4,
            ..member("a")
        };
        let err = check_join(&me, &[other_protocol])
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("protocol"), "{err}");
        let overlapping = Member {
            protocol_min: 2,
            protocol_max: 5,
            ..member("a")
        };
        assert!(check_join(&me, &[overlapping]).is_ok());
        let other_stores = Member {
            stores: "xyz".into(),
            ..member("a")
        };
        let err = check_join(&me, &[other_stores])
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("stores"), "{err}");
        // A record of this node itself (a restart within the TTL) is fine.
        let old_me = Member {
            block_size: 1,
            ..member("me")
        };
        assert!(check_join(&me, &[old_me]).is_ok());
    }
}
