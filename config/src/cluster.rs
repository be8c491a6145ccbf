//! `[cluster]`: this node's place in a cluster of gateways whose memory
//! and disks form one block cache. No section: a single node.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;

use crate::RedisUrl;
use crate::error::{ConfigError, Result};

/// `[cluster]` as written.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCluster {
    /// Default: the host name. Must stay the same across restarts (set it
    /// explicitly where host names change, e.g. Kubernetes pods without a
    /// StatefulSet).
    pub node_id: Option<String>,
    /// Name of the cluster; nodes of another cluster in the same Redis are
    /// never members. Default `ferry`.
    pub name: Option<String>,
    /// Where the peer endpoint listens, e.g. `0.0.0.0:9002` (port 0 picks
    /// one). Default `127.0.0.1:9002`.
    pub peer_listen: Option<String>,
    /// `host:port` other nodes reach the peer endpoint at. Default: the
    /// address `peer_listen` bound.
    pub advertise: Option<String>,
    /// Share of the blocks this node owns, relative to the others.
    /// Default: the disk tier's capacity in GiB (100 without a disk tier);
    /// 0 owns nothing.
    pub weight: Option<u32>,
    /// Owners of each block. Default 1.
    pub replicas: Option<usize>,
    /// A client-only node reads through the cluster but owns nothing and
    /// is not a member. Default true.
    pub serve: Option<bool>,
    /// Shared secret of the peer protocol (or `FERRY_CLUSTER_SECRET`).
    pub secret: Option<String>,
    /// `redis://` URL of dynamic membership (heartbeats with a TTL).
    pub membership: Option<String>,
    /// `membership` is a node of a Redis Cluster: the cluster's keys are
    /// written under one hash tag (`{ferry-cluster:NAME}:...`) so they share
    /// a slot. Default false (a standalone Redis keeps the bare prefix, as
    /// running clusters have it).
    pub redis_cluster: Option<bool>,
    /// Static membership, instead of `membership`.
    #[serde(default)]
    pub peers: Vec<RawPeer>,
    /// How long a node keeps earlier views, so a block's new owner can ask
    /// its previous owner before the store. Default `10m`.
    #[serde(default, with = "humantime_serde")]
    pub handoff: Option<Duration>,
    /// Connecting to a peer. Default `250ms`.
    #[serde(default, with = "humantime_serde")]
    pub connect_timeout: Option<Duration>,
    /// A peer's whole answer for one block. Default `5s` (an owner may be
    /// loading the block from a slow store).
    #[serde(default, with = "humantime_serde")]
    pub request_timeout: Option<Duration>,
    /// The peer port may listen beyond loopback without TLS: the network
    /// between the nodes is private. Default false.
    pub trusted_network: Option<bool>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPeer {
    pub id: String,
    pub address: String,
    /// Default 100.
    pub weight: Option<u32>,
}

/// How this node finds the others.
#[derive(Debug, Clone, PartialEq)]
pub enum Membership {
    Static(Vec<Peer>),
    Redis {
        url: RedisUrl,
        /// The URL is a node of a Redis Cluster.
        cluster: bool,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Peer {
    pub id: String,
    pub address: String,
    pub weight: u32,
}

#[derive(Clone, PartialEq)]
pub struct ClusterConfig {
    pub node_id: String,
    pub name: String,
    pub peer_listen: SocketAddr,
    pub advertise: Option<String>,
    pub weight: u32,
    pub replicas: usize,
    pub serve: bool,
    pub secret: String,
    pub membership: Membership,
    pub handoff: Duration,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    pub trusted_network: bool,
}

impl std::fmt::Debug for ClusterConfig {
    // The secret never reaches a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterConfig")
            .field("node_id", &self.node_id)
            .field("name", &self.name)
            .field("peer_listen", &self.peer_listen)
            .field("advertise", &self.advertise)
            .field("weight", &self.weight)
            .field("replicas", &self.replicas)
            .field("serve", &self.serve)
            .field("secret", &"<redacted>")
            .field("membership", &self.membership)
            .finish()
    }
}

/// The cluster secret must be long enough to resist guessing: it lets its
/// holder read any cached block.
const MIN_SECRET: usize = 16;

pub(crate) fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// `host:port`, the form peers are reached at.
fn valid_address(address: &str) -> bool {
    match address.rsplit_once(':') {
        Some((host, port)) => !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p != 0),
        None => false,
    }
}

impl RawCluster {
    pub(crate) fn apply_env(&mut self, env: &HashMap<String, String>) {
        let get = |name: &str| env.get(name).filter(|v| !v.is_empty()).cloned();
        if let Some(secret) = get("FERRY_CLUSTER_SECRET") {
            self.secret = Some(secret);
        }
        if let Some(id) = get("FERRY_NODE_ID") {
            self.node_id = Some(id);
        }
        if self.node_id.is_none() {
            self.node_id = get("HOSTNAME");
        }
    }

    /// `default_weight`: this node's weight when `weight` is not set (see
    /// `CacheConfig::default_cluster_weight`).
    pub(crate) fn validate(self, default_weight: u32) -> Result<ClusterConfig> {
        let node_id = self.node_id.ok_or_else(|| {
            ConfigError::invalid(
                "cluster.node_id",
                "not set and the host name is unknown; set it (it must stay the same across restarts)",
            )
        })?;
        if !valid_id(&node_id) {
            return Err(ConfigError::invalid(
                "cluster.node_id",
                format!("{node_id:?}: use 1 to 128 letters, digits, '-', '_' or '.'"),
            ));
        }
        let name = self.name.unwrap_or_else(|| "ferry".to_string());
        if !valid_id(&name) {
            return Err(ConfigError::invalid(
                "cluster.name",
                format!("{name:?}: use 1 to 128 letters, digits, '-', '_' or '.'"),
            ));
        }
        let listen = self.peer_listen.as_deref().unwrap_or("127.0.0.1:9002");
        let peer_listen: SocketAddr = listen.parse().map_err(|_| {
            ConfigError::invalid(
                "cluster.peer_listen",
                format!("{listen:?} is not a socket address like 0.0.0.0:9002"),
            )
        })?;
        if let Some(advertise) = &self.advertise
            && !valid_address(advertise)
        {
            return Err(ConfigError::invalid(
                "cluster.advertise",
                format!("{advertise:?} is not host:port"),
            ));
        }
        let secret = self.secret.ok_or_else(|| {
            ConfigError::invalid(
                "cluster.secret",
                "required (or FERRY_CLUSTER_SECRET): peers authenticate every request with it",
            )
        })?;
        if secret.len() < MIN_SECRET {
            return Err(ConfigError::invalid(
                "cluster.secret",
                format!("must be at least {MIN_SECRET} characters"),
            ));
        }
        let replicas = self.replicas.unwrap_or(1);
        if !(1..=8).contains(&replicas) {
            return Err(ConfigError::invalid(
                "cluster.replicas",
                format!("{replicas}: must be 1 to 8"),
            ));
        }
        let serve = self.serve.unwrap_or(true);
        let weight = if serve {
            self.weight.unwrap_or(default_weight)
        } else {
            0
        };
        let membership = match (self.membership, self.peers.is_empty()) {
            (Some(_), false) => {
                return Err(ConfigError::invalid(
                    "cluster.peers",
                    "set either `membership` (Redis) or `peers` (static), not both",
                ));
            }
            (Some(url), true) => {
                if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
                    return Err(ConfigError::invalid(
                        "cluster.membership",
                        format!("{url:?} is not a redis:// or rediss:// URL"),
                    ));
                }
                Membership::Redis {
                    url: url.into(),
                    cluster: self.redis_cluster.unwrap_or(false),
                }
            }
            (None, true) => {
                return Err(ConfigError::invalid(
                    "cluster.membership",
                    "set `membership` (a redis:// URL) or list `peers`",
                ));
            }
            (None, false) => {
                if self.redis_cluster == Some(true) {
                    return Err(ConfigError::invalid(
                        "cluster.redis_cluster",
                        "applies to Redis `membership`; static `peers` use no Redis",
                    ));
                }
                let mut seen = BTreeSet::new();
                let mut peers = Vec::with_capacity(self.peers.len());
                for (i, peer) in self.peers.into_iter().enumerate() {
                    if !valid_id(&peer.id) || !seen.insert(peer.id.clone()) {
                        return Err(ConfigError::invalid(
                            format!("cluster.peers[{i}].id"),
                            format!("{:?} is not a node id, or is listed twice", peer.id),
                        ));
                    }
                    if !valid_address(&peer.address) {
                        return Err(ConfigError::invalid(
                            format!("cluster.peers[{i}].address"),
                            format!("{:?} is not host:port", peer.address),
                        ));
                    }
                    peers.push(Peer {
                        id: peer.id,
                        address: peer.address,
                        weight: peer.weight.unwrap_or(100),
                    });
                }
                Membership::Static(peers)
            }
        };
        Ok(ClusterConfig {
            node_id,
            name,
            peer_listen,
            advertise: self.advertise,
            weight,
            replicas,
            serve,
            secret,
            membership,
            handoff: self.handoff.unwrap_or(Duration::from_secs(600)),
            connect_timeout: self.connect_timeout.unwrap_or(Duration::from_millis(250)),
            request_timeout: self.request_timeout.unwrap_or(Duration::from_secs(5)),
            trusted_network: self.trusted_network.unwrap_or(false),
        })
    }
}
