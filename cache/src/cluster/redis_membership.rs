//! Dynamic membership in Redis: each serving node announces itself with a
//! heartbeat (a record with a TTL of a few seconds) and reads everyone's;
//! a node that stops heartbeating leaves every view within the TTL. Weights
//! set at run time live in a hash without TTL and win over the weight a
//! node announces, until reset, so a drained node stays drained when it
//! restarts. Redis is the only source of truth; a restarted Redis is
//! refilled by the next heartbeats, so it needs no persistence.
//!
//! Keys, under `ferry-cluster:NAME:` (on a Redis Cluster the prefix is a
//! hash tag, `{ferry-cluster:NAME}:`, so every key of one cluster shares a
//! slot and the MULTI/EXEC pipelines and MGET below run on one node; a
//! standalone Redis keeps the bare prefix, as running clusters have it):
//! - `node:{id}`: the member record (JSON), `PX` the TTL;
//! - `nodes`: sorted set, member id, score the record's expiry (ms), so a
//!   view is one range read without scanning;
//! - `weights`: hash id -> weight set at run time;
//! - `pins`: set of the prefixes pinned at run time (see `pins`).

use std::collections::HashMap;
use std::time::Duration;

use ferry_meta::{MetaError, RedisConnection};
use redis::AsyncCommands;

use super::view::Member;
use super::wire;
use crate::error::{CacheError, Result};

/// How long a heartbeat stays valid.
pub const TTL: Duration = Duration::from_secs(5);
/// How often a node heartbeats and refreshes its view.
pub const INTERVAL: Duration = Duration::from_secs(1);
/// Every Redis call's deadline: a stuck Redis must not stall the loop.
const DEADLINE: Duration = Duration::from_secs(2);

#[derive(Clone)]
pub struct RedisMembership {
    conn: RedisConnection,
    prefix: String,
}

fn redis_err(e: redis::RedisError) -> CacheError {
    CacheError::Cluster(format!("redis: {e}"))
}

async fn deadline<T>(fut: impl std::future::Future<Output = redis::RedisResult<T>>) -> Result<T> {
    match tokio::time::timeout(DEADLINE, fut).await {
        Ok(result) => result.map_err(redis_err),
        Err(_) => Err(CacheError::Cluster(format!(
            "redis did not answer within {DEADLINE:?}"
        ))),
    }
}

impl RedisMembership {
    /// Connects to the Redis at `url` (with `redis_cluster`, any node of a
    /// Redis Cluster) for the membership of `cluster`.
    pub async fn connect(url: &str, cluster: &str, redis_cluster: bool) -> Result<RedisMembership> {
        let conn = RedisConnection::open(url, redis_cluster, DEADLINE)
            .await
            .map_err(|e| match e {
                // The message names Redis; "metadata engine" would mislead.
                MetaError::Unavailable(why) | MetaError::Internal(why) => CacheError::Cluster(why),
                other => CacheError::Cluster(other.to_string()),
            })?;
        let prefix = if redis_cluster {
            format!("{{ferry-cluster:{cluster}}}")
        } else {
            format!("ferry-cluster:{cluster}")
        };
        Ok(RedisMembership { conn, prefix })
    }

    fn node_key(&self, id: &str) -> String {
        format!("{}:node:{id}", self.prefix)
    }
    fn nodes_key(&self) -> String {
        format!("{}:nodes", self.prefix)
    }
    fn weights_key(&self) -> String {
        format!("{}:weights", self.prefix)
    }
    fn pins_key(&self) -> String {
        format!("{}:pins", self.prefix)
    }

    /// The prefixes pinned at run time.
    pub async fn pins(&self) -> Result<Vec<String>> {
        let mut conn = self.conn.clone();
        deadline(conn.smembers(self.pins_key())).await
    }

    /// Pins `prefix` (or with `pinned` false unpins it) for every member.
    pub async fn set_pin(&self, prefix: &str, pinned: bool) -> Result<()> {
        let mut conn = self.conn.clone();
        if pinned {
            deadline(conn.sadd::<_, _, ()>(self.pins_key(), prefix)).await
        } else {
            deadline(conn.srem::<_, _, ()>(self.pins_key(), prefix)).await
        }
    }

    /// Announces `me` for another TTL.
    pub async fn heartbeat(&self, me: &Member) -> Result<()> {
        let record = serde_json::to_string(&Member {
            heartbeat_ms: wire::now_ms(),
            ..me.clone()
        })
        .map_err(|e| CacheError::Cluster(e.to_string()))?;
        let ttl_ms = u64::try_from(TTL.as_millis()).unwrap_or(5000);
        let expiry = wire::now_ms() + i64::try_from(ttl_ms).unwrap_or(5000);
        let mut pipe = redis::pipe();
        pipe.atomic()
            .set_options(
                self.node_key(&me.id),
                record,
                redis::SetOptions::default().with_expiration(redis::SetExpiry::PX(ttl_ms)),
            )
            .ignore()
            .zadd(self.nodes_key(), &me.id, expiry)
            .ignore();
        let mut conn = self.conn.clone();
        deadline(pipe.query_async::<()>(&mut conn)).await
    }

    /// Leaves at once (a graceful stop): peers route around this node
    /// from their next refresh.
    pub async fn leave(&self, id: &str) -> Result<()> {
        let mut pipe = redis::pipe();
        pipe.atomic()
            .del(self.node_key(id))
            .ignore()
            .zrem(self.nodes_key(), id)
            .ignore();
        let mut conn = self.conn.clone();
        deadline(pipe.query_async::<()>(&mut conn)).await
    }

    /// Every live member, with run-time weights applied.
    pub async fn members(&self) -> Result<Vec<Member>> {
        let mut conn = self.conn.clone();
        let now = wire::now_ms();
        // Ids whose last heartbeat is long gone are dropped from the index.
        let stale = now - 60_000;
        deadline(conn.zrembyscore::<_, _, _, ()>(self.nodes_key(), "-inf", stale)).await?;
        let ids: Vec<String> = deadline(conn.zrangebyscore(self.nodes_key(), now, "+inf")).await?;
        let weights: HashMap<String, u32> = deadline(conn.hgetall(self.weights_key())).await?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = ids.iter().map(|id| self.node_key(id)).collect();
        let records: Vec<Option<String>> = deadline(conn.mget(keys)).await?;
        let mut members = Vec::with_capacity(records.len());
        for record in records.into_iter().flatten() {
            match serde_json::from_str::<Member>(&record) {
                Ok(mut member) => {
                    if let Some(weight) = weights.get(&member.id) {
                        member.weight = *weight;
                    }
                    members.push(member);
                }
                Err(e) => tracing::warn!(error = %e, "unreadable cluster member record; ignored"),
            }
        }
        Ok(members)
    }

    /// The weight set at run time for `id`, if any.
    pub async fn weight_override(&self, id: &str) -> Result<Option<u32>> {
        let mut conn = self.conn.clone();
        deadline(conn.hget(self.weights_key(), id)).await
    }

    /// Takes the cluster-wide claim `name` for `ttl`: true for the one
    /// caller that got it.
    pub async fn claim(&self, name: &str, ttl: Duration) -> Result<bool> {
        let mut conn = self.conn.clone();
        let key = format!("{}:{name}", self.prefix);
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
        let set: Option<String> = deadline(
            redis::cmd("SET")
                .arg(key)
                .arg(1)
                .arg("NX")
                .arg("PX")
                .arg(ttl_ms)
                .query_async(&mut conn),
        )
        .await?;
        Ok(set.is_some())
    }

    /// Sets (or with `None` resets to the announced one) the weight of `id`.
    pub async fn set_weight(&self, id: &str, weight: Option<u32>) -> Result<()> {
        let mut conn = self.conn.clone();
        match weight {
            Some(w) => deadline(conn.hset::<_, _, _, ()>(self.weights_key(), id, w)).await,
            None => deadline(conn.hdel::<_, _, ()>(self.weights_key(), id)).await,
        }
    }
}
