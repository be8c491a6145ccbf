//! Warm-up: every block of every object under a prefix is loaded by its
//! owners before a rollout reads it, at warm-up priority (after demand
//! and readahead) and with bounded concurrency. Each owner is sent a
//! `prefetch` (load and keep, no body back), so the prefix never streams
//! through one node. `check` sends `probe`s instead and loads nothing: the
//! share of the prefix's bytes already on its owners.
//!
//! `evict` sends `evict` to every member instead (and drops the blocks
//! here): a retired model version leaves every node's memory and disk,
//! and stays gone after a restart; `bytes_cached` then counts the bytes
//! that were cached somewhere and are not any more.
//!
//! Blocks of objects under a pinned prefix are warmed as pinned: their
//! owners keep them in the pinned share of their disks (moving any cached
//! before the pin), and `check` counts the bytes found there.
//!
//! Progress goes out as [`WarmupEvent`]s; the job first totals the prefix
//! and refuses (unless forced) when it exceeds what the owners' tiers can
//! hold, since such a warm-up would evict itself.

use std::sync::Arc;

use ferry_meta::{Layout, ListQuery, Meta};
use futures::stream::{self, StreamExt};
use serde::Serialize;
use tokio::sync::mpsc;

use super::PeerError;
use super::source::Node;
use super::wire::Verb;
use crate::cluster::Served;
use crate::read::blocks::BlockCache;
use crate::source::{BlockAddr, whole};
use crate::store::admission::{self, ReadPriority};

/// What to warm.
#[derive(Debug, Clone)]
pub struct WarmupRequest {
    pub bucket: String,
    pub prefix: String,
    /// Probe only; load nothing.
    pub check: bool,
    /// Drop the prefix's blocks from every member instead of loading them.
    pub evict: bool,
    /// Blocks in flight at once.
    pub concurrency: usize,
    /// Go on even when the prefix is larger than the cluster's tiers.
    pub force: bool,
}

/// One line of a warm-up's progress.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum WarmupEvent {
    /// The prefix's totals and the cluster's capacity (0: unknown).
    Plan {
        objects: u64,
        bytes: u64,
        capacity: u64,
    },
    Progress(Tally),
    Done(Tally),
    /// Nothing was done, and why.
    Refused {
        reason: String,
    },
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Tally {
    pub objects: u64,
    pub bytes: u64,
    /// Bytes an owner loaded from the store for this warm-up.
    pub bytes_loaded: u64,
    /// Bytes already cached on their owner.
    pub bytes_cached: u64,
    /// Of `bytes_cached`, those in the pinned share of their owner's disk
    /// (a check tells; a warm-up counts only blocks already there).
    pub bytes_pinned: u64,
    pub failures: u64,
}

impl Tally {
    fn add(&mut self, other: &Tally) {
        self.objects += other.objects;
        self.bytes += other.bytes;
        self.bytes_loaded += other.bytes_loaded;
        self.bytes_cached += other.bytes_cached;
        self.bytes_pinned += other.bytes_pinned;
        self.failures += other.failures;
    }
}

/// What [`object`] does with each block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Load it on its owners.
    Warm,
    /// Ask its owners whether they hold it; load nothing.
    Check,
    /// Drop it from every member.
    Evict,
}

/// Every block of one object (`layout`), `concurrency` at a time, at
/// warm-up priority: the unit a warm-up of a prefix, and warming on
/// arrival, are made of.
pub async fn object(
    cache: &Arc<BlockCache>,
    node: Option<&Arc<Node>>,
    layout: &Layout,
    pinned: bool,
    action: Action,
    concurrency: usize,
) -> Tally {
    let blocks = cache.block_addrs(layout, pinned);
    let results: Vec<Outcome> = stream::iter(blocks)
        .map(|addr| {
            let (cache, node) = (cache.clone(), node.cloned());
            admission::with_priority(ReadPriority::Warmup, async move {
                match action {
                    Action::Evict => evict_block(&cache, node.as_deref(), &addr).await,
                    Action::Check => warm_block(&cache, node.as_deref(), &addr, true).await,
                    Action::Warm => warm_block(&cache, node.as_deref(), &addr, false).await,
                }
            })
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    let mut tally = Tally {
        objects: 1,
        bytes: layout.total_len(),
        ..Tally::default()
    };
    for outcome in results {
        match outcome {
            Outcome::Cached { bytes, pinned } => {
                tally.bytes_cached += bytes;
                if pinned {
                    tally.bytes_pinned += bytes;
                }
            }
            Outcome::Loaded(n) => tally.bytes_loaded += n,
            // What `check` finds absent: neither cached nor failed.
            Outcome::Missing => {}
            Outcome::Failed => tally.failures += 1,
        }
    }
    tally
}

const PAGE: usize = 1000;

/// Runs the warm-up, sending its events to `events` (a closed receiver
/// stops it).
pub async fn run(
    cache: Arc<BlockCache>,
    node: Option<Arc<Node>>,
    meta: Arc<dyn Meta>,
    request: WarmupRequest,
    events: mpsc::Sender<WarmupEvent>,
) {
    let refuse = |reason: String| async {
        let _ = events.send(WarmupEvent::Refused { reason }).await;
    };
    // The totals first, from metadata only.
    let (mut objects, mut bytes) = (0u64, 0u64);
    let mut after = None;
    loop {
        let page = match page_after(meta.as_ref(), &request, after.clone()).await {
            Ok(page) => page,
            Err(e) => return refuse(e.to_string()).await,
        };
        objects += page.entries.len() as u64;
        bytes += page.entries.iter().map(|(_, e)| e.size).sum::<u64>();
        if !page.truncated {
            break;
        }
        after = page.next_start_after;
    }
    let capacity = node
        .as_ref()
        .map_or(0, |n| n.membership.current().capacity());
    if events
        .send(WarmupEvent::Plan {
            objects,
            bytes,
            capacity,
        })
        .await
        .is_err()
    {
        return;
    }
    if !request.check && !request.evict && capacity > 0 && bytes > capacity && !request.force {
        return refuse(format!(
            "the prefix holds {bytes} bytes but the cluster's tiers hold {capacity}: the warm-up would evict itself (force to go on)"
        ))
        .await;
    }

    let action = match (request.evict, request.check) {
        (true, _) => Action::Evict,
        (false, true) => Action::Check,
        (false, false) => Action::Warm,
    };
    let mut tally = Tally::default();
    let mut after = None;
    loop {
        let page = match page_after(meta.as_ref(), &request, after.clone()).await {
            Ok(page) => page,
            Err(e) => return refuse(e.to_string()).await,
        };
        for (key, _) in &page.entries {
            let layout = match meta.get(&request.bucket, key).await {
                Ok((_, layout)) => layout,
                // Deleted since it was listed.
                Err(_) => continue,
            };
            let pinned = cache.pins().covers(&request.bucket, key);
            let of_object = object(
                &cache,
                node.as_ref(),
                &layout,
                pinned,
                action,
                request.concurrency,
            )
            .await;
            tally.add(&of_object);
            if events
                .send(WarmupEvent::Progress(tally.clone()))
                .await
                .is_err()
            {
                return;
            }
        }
        if !page.truncated {
            break;
        }
        after = page.next_start_after;
    }
    let _ = events.send(WarmupEvent::Done(tally)).await;
}

/// One page of the prefix's keys after `after`.
async fn page_after(
    meta: &dyn Meta,
    request: &WarmupRequest,
    after: Option<String>,
) -> ferry_meta::Result<ferry_meta::ListPage> {
    meta.list(
        &request.bucket,
        &ListQuery {
            prefix: request.prefix.clone(),
            delimiter: None,
            start_after: after,
            max: PAGE,
        },
    )
    .await
}

pub(super) enum Outcome {
    /// Bytes cached already, and whether in the pinned share.
    Cached {
        bytes: u64,
        pinned: bool,
    },
    Loaded(u64),
    /// Probed and not cached.
    Missing,
    Failed,
}

/// One block dropped from this node and from every other member (owners
/// keep it on disk, others may hold it in memory). A member that is down
/// cannot be told: its copy is a failure of the eviction.
pub(super) async fn evict_block(
    cache: &BlockCache,
    node: Option<&Node>,
    addr: &BlockAddr,
) -> Outcome {
    let len = addr.len;
    let mut held = matches!(
        cache
            .serve_peer(addr, whole(addr), Verb::Evict, false, false)
            .await,
        Ok(Served::Cached { cached: true, .. })
    );
    let mut failed = false;
    if let Some(node) = node {
        let view = node.membership.current();
        for member in view.members.iter().filter(|m| m.id != node.id) {
            match node
                .client
                .ask(member, addr, whole(addr), Verb::Evict, false)
                .await
            {
                Ok(answer) => held |= answer.cached,
                Err(e) => {
                    tracing::warn!(peer = %member.id, error = ?e, blob = %addr.blob, "eviction of a block on a member failed");
                    failed = true;
                }
            }
        }
    }
    match (failed, held) {
        (true, _) => Outcome::Failed,
        (false, true) => Outcome::Cached {
            bytes: len,
            pinned: false,
        },
        (false, false) => Outcome::Missing,
    }
}

/// One block: a prefetch (or probe) of each of its owners that is live,
/// the top one first (the others fill from it).
pub(super) async fn warm_block(
    cache: &BlockCache,
    node: Option<&Node>,
    addr: &BlockAddr,
    check: bool,
) -> Outcome {
    let verb = if check { Verb::Probe } else { Verb::Prefetch };
    let len = addr.len;
    let local = |keep: bool| async move {
        match cache.serve_peer(addr, whole(addr), verb, false, keep).await {
            Ok(Served::Cached {
                cached: true,
                pinned,
            }) => Outcome::Cached { bytes: len, pinned },
            Ok(_) if check => Outcome::Missing,
            Ok(_) => Outcome::Loaded(len),
            Err(e) => {
                tracing::warn!(error = %e, blob = %addr.blob, block = addr.index, "warm-up of a block failed");
                Outcome::Failed
            }
        }
    };
    let Some(node) = node else {
        return local(true).await;
    };
    let key = addr.cache_key();
    let view = node.membership.current();
    let ranked = view.ranked(key.as_bytes());
    if ranked.is_empty() {
        return local(false).await;
    }
    // The first `replicas` members that answer, in rendezvous order: a
    // peer that fails is marked down and the next one stands in, as for a
    // read.
    let mut first = None;
    let mut warmed = 0;
    for member in ranked {
        if warmed == node.replicas {
            break;
        }
        let outcome = if member.id == node.id {
            local(true).await
        } else if node.client.is_down(&member.id) {
            continue;
        } else {
            match node
                .client
                .ask(member, addr, whole(addr), verb, false)
                .await
            {
                Ok(answer) if answer.cached => Outcome::Cached {
                    bytes: len,
                    pinned: answer.pinned,
                },
                Ok(_) if check => Outcome::Missing,
                Ok(_) => Outcome::Loaded(len),
                // The owner's store failed: another node's would too.
                Err(PeerError::Store(e)) => {
                    tracing::warn!(peer = %member.id, error = %e, "warm-up of a block failed");
                    Outcome::Failed
                }
                Err(e) => {
                    tracing::warn!(peer = %member.id, error = ?e, "warm-up ask failed; trying the next member");
                    continue;
                }
            }
        };
        warmed += 1;
        first.get_or_insert(outcome);
        if check {
            break;
        }
    }
    first.unwrap_or(Outcome::Failed)
}
