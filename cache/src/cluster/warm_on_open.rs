//! Warm on open: the first read of an object's first block — a loader
//! reading a safetensors or GGUF header — starts a warm-up of the whole
//! object into its owners in the background, so the tensor reads that
//! follow find their blocks loaded. Only for keys matching the configured
//! patterns, only for authenticated reads, once per object version for
//! the whole cluster (a Redis `SET NX` with a TTL; this node also
//! remembers what it started), a few objects at a time.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ferry_meta::Layout;
use futures::stream::{self, StreamExt};
use globset::{Glob, GlobSet, GlobSetBuilder};
use tokio::sync::Semaphore;

use super::RedisMembership;
use super::source::Node;
use super::warmup::warm_block;
use crate::error::CacheError;
use crate::metrics as m;
use crate::read::blocks::BlockCache;
use crate::store::admission::{self, ReadPriority};

/// Objects warming at once on this node.
const OBJECTS_AT_ONCE: usize = 4;
/// Blocks in flight per object.
const BLOCKS_AT_ONCE: usize = 16;
/// How long the cluster remembers that an object version was warmed.
const CLAIM_TTL: Duration = Duration::from_secs(3600);
/// Object versions this node remembers having started.
const REMEMBERED: usize = 4096;

pub struct WarmOnOpen {
    patterns: GlobSet,
    cache: Arc<BlockCache>,
    node: Option<Arc<Node>>,
    redis: Option<RedisMembership>,
    started: Mutex<(VecDeque<String>, HashSet<String>)>,
    running: Arc<Semaphore>,
}

impl WarmOnOpen {
    /// `None` when no pattern is configured.
    pub fn new(
        patterns: &[String],
        cache: Arc<BlockCache>,
        node: Option<Arc<Node>>,
        redis: Option<RedisMembership>,
    ) -> Result<Option<Arc<WarmOnOpen>>, CacheError> {
        if patterns.is_empty() {
            return Ok(None);
        }
        let mut set = GlobSetBuilder::new();
        for (i, pattern) in patterns.iter().enumerate() {
            set.add(
                Glob::new(pattern)
                    .map_err(|e| CacheError::Cluster(format!("cache.warm_on_open[{i}]: {e}")))?,
            );
        }
        Ok(Some(Arc::new(WarmOnOpen {
            patterns: set
                .build()
                .map_err(|e| CacheError::Cluster(format!("cache.warm_on_open: {e}")))?,
            cache,
            node,
            redis,
            started: Mutex::default(),
            running: Arc::new(Semaphore::new(OBJECTS_AT_ONCE)),
        })))
    }

    /// Whether this node starts it (first time it sees this version).
    fn first_here(&self, entry_id: &str) -> bool {
        let Ok(mut guard) = self.started.lock() else {
            return false;
        };
        let (order, set) = &mut *guard;
        if !set.insert(entry_id.to_string()) {
            return false;
        }
        order.push_back(entry_id.to_string());
        while order.len() > REMEMBERED {
            if let Some(old) = order.pop_front() {
                set.remove(&old);
            }
        }
        true
    }

    /// Called for every authenticated GET: warms the object when this read
    /// starts in its first block and its key matches (`pinned`: the object
    /// is under a pinned prefix).
    pub fn on_read(
        self: &Arc<Self>,
        key: &str,
        entry_id: &str,
        layout: &Layout,
        range_start: u64,
        pinned: bool,
    ) {
        if range_start >= self.cache.block_size()
            || !self.patterns.is_match(key)
            || !self.first_here(entry_id)
        {
            return;
        }
        let (this, layout, entry_id) = (self.clone(), layout.clone(), entry_id.to_string());
        // Bounded (a few objects at a time) and finite: its blocks, then done.
        tokio::spawn(async move {
            if let Some(redis) = &this.redis {
                match redis.claim(&format!("warm:{entry_id}"), CLAIM_TTL).await {
                    Ok(true) => {}
                    Ok(false) => {
                        metrics::counter!(m::WARM_ON_OPEN, "outcome" => "elsewhere").increment(1);
                        return;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "warm on open: cannot claim; skipped");
                        return;
                    }
                }
            }
            let Ok(_permit) = this.running.clone().acquire_owned().await else {
                return;
            };
            metrics::counter!(m::WARM_ON_OPEN, "outcome" => "started").increment(1);
            let blocks = this.cache.block_addrs(&layout, pinned);
            let (cache, node) = (&this.cache, this.node.as_deref());
            stream::iter(blocks)
                .map(|addr| async move {
                    admission::with_priority(ReadPriority::Warmup, async {
                        warm_block(cache, node, &addr, false).await;
                    })
                    .await
                })
                .buffer_unordered(BLOCKS_AT_ONCE)
                .collect::<Vec<()>>()
                .await;
        });
    }
}
