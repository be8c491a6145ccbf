//! Warm on arrival (`[[region.warm]]`): objects created or replaced under
//! the configured prefixes are loaded into this region's cache cluster as
//! their change is applied here, so a model written in the source region
//! is on the edge's disks before its GPUs ask for it.
//!
//! The worker tails this namespace's own change log, which holds every
//! write of a source and every change a mirror applied, so the same code
//! serves both. One node of the region does it (a lease in the metadata,
//! as the mirror's follower holds one); warming is the owner-side
//! prefetch of `ferry warmup`, at warm-up priority, a few blocks at a time.
//!
//! Its position is not kept across nodes: whoever takes the lease first
//! catches up (every object under the prefixes is warmed, which costs a
//! probe per block already cached), then follows the log from where that
//! listing began. A gap in the log (trimmed under it) is a catch-up too.
//!
//! An overwrite or delete of an object it warmed evicts the old version's
//! blocks from every member at once rather than leaving them to age out
//! behind newer data (foyer's disks evict first in, first out, and the old
//! version was written before the new one): the old version's blob
//! outlives it by the grace period, so a read still streaming it refetches
//! from the store.
//!
//! When what the prefixes hold exceeds what the cluster's tiers hold,
//! warming stops (a warning, `ferry_warm_arrival_over_capacity` 1):
//! it would evict itself, and pinned blocks it never evicts anyway (they
//! live in their own share of each disk).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ferry_meta::{ChangeOp, Layout, ListQuery, Meta, Seq, UnixMillis, now_millis};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::cluster::Node;
use crate::cluster::warmup::{self, Action, Tally};
use crate::error::Result;
use crate::metrics;
use crate::read::blocks::BlockCache;
use crate::region::BucketPrefixes;

const LEASE: &str = "warm-on-arrival";
const LEASE_TTL: Duration = Duration::from_secs(30);
/// How often the log is read when it had nothing new.
const POLL: Duration = Duration::from_millis(250);
/// Change-log records read at once.
const PAGE: usize = 256;
/// Keys listed at once while catching up.
const LIST_PAGE: usize = 1000;
/// An object whose warming failed is tried again this long after, doubling.
const RETRY_FIRST: Duration = Duration::from_secs(2);
const RETRY_ATTEMPTS: u32 = 6;

/// What the worker is doing, for `/region/status` and the metrics.
#[derive(Debug, Default)]
pub struct ArrivalState {
    /// This node holds the lease and does the warming.
    active: AtomicBool,
    position: AtomicU64,
    /// Objects waiting to be warmed.
    queue: AtomicU64,
    /// Objects under the prefixes, and their bytes.
    objects: AtomicU64,
    bytes: AtomicU64,
    capacity: AtomicU64,
    over_capacity: AtomicBool,
    warmed: AtomicU64,
    failed: AtomicU64,
    last_error: Mutex<Option<String>>,
}

/// [`ArrivalState`] as `/region/status` shows it.
#[derive(Debug, Serialize)]
pub struct ArrivalStatus {
    pub prefixes: Vec<String>,
    pub active_here: bool,
    pub position: u64,
    pub queue: u64,
    pub objects: u64,
    pub bytes: u64,
    /// What the cluster's tiers hold (0: unknown).
    pub capacity: u64,
    pub over_capacity: bool,
    pub warmed: u64,
    pub failed: u64,
    pub last_error: Option<String>,
}

/// An object to warm, and when its change was committed at the source.
#[derive(Debug, Clone)]
struct Pending {
    bucket: String,
    key: String,
    layout: Layout,
    committed: Option<UnixMillis>,
    attempts: u32,
}

/// What the lease holder keeps while it follows the log.
#[derive(Debug, Default)]
struct Follow {
    caught_up: bool,
    position: Seq,
    /// Objects under the prefixes, by `(bucket, key)`: the layout last seen.
    known: HashMap<(String, String), Layout>,
    retry: Vec<(Instant, Pending)>,
}

pub struct WarmOnArrival {
    meta: Arc<dyn Meta>,
    cache: Arc<BlockCache>,
    node: Option<Arc<Node>>,
    prefixes: BucketPrefixes,
    concurrency: usize,
    /// What this node's tiers hold, when no cluster says what all do.
    local_capacity: u64,
    holder: String,
    state: Arc<ArrivalState>,
}

impl WarmOnArrival {
    pub fn new(
        meta: Arc<dyn Meta>,
        cache: Arc<BlockCache>,
        node: Option<Arc<Node>>,
        prefixes: &[String],
        concurrency: usize,
        local_capacity: u64,
        holder: &str,
    ) -> WarmOnArrival {
        // The series exist from the start, for dashboards and alerts.
        for outcome in ["warmed", "failed", "skipped"] {
            ::metrics::counter!(metrics::WARM_ARRIVAL_OBJECTS, "outcome" => outcome).increment(0);
        }
        ::metrics::gauge!(metrics::WARM_ARRIVAL_QUEUE).set(0.0);
        WarmOnArrival {
            meta,
            cache,
            node,
            prefixes: BucketPrefixes::new(prefixes),
            concurrency: concurrency.max(1),
            local_capacity,
            holder: holder.to_string(),
            state: Arc::default(),
        }
    }

    pub fn status(&self) -> ArrivalStatus {
        let s = &self.state;
        ArrivalStatus {
            prefixes: self
                .prefixes
                .iter()
                .map(|(bucket, prefix)| format!("{bucket}/{prefix}"))
                .collect(),
            active_here: s.active.load(Ordering::Relaxed),
            position: s.position.load(Ordering::Relaxed),
            queue: s.queue.load(Ordering::Relaxed),
            objects: s.objects.load(Ordering::Relaxed),
            bytes: s.bytes.load(Ordering::Relaxed),
            capacity: s.capacity.load(Ordering::Relaxed),
            over_capacity: s.over_capacity.load(Ordering::Relaxed),
            warmed: s.warmed.load(Ordering::Relaxed),
            failed: s.failed.load(Ordering::Relaxed),
            last_error: s.last_error.lock().ok().and_then(|e| e.clone()),
        }
    }

    /// Warms arrivals until `stop`, while this node holds the lease.
    pub async fn run(self: Arc<Self>, stop: CancellationToken) {
        let ttl = u64::try_from(LEASE_TTL.as_millis()).unwrap_or(u64::MAX);
        loop {
            match self.meta.try_lease(LEASE, &self.holder, ttl).await {
                Ok(true) => {}
                Ok(false) => {
                    tokio::select! {
                        () = stop.cancelled() => return,
                        () = tokio::time::sleep(LEASE_TTL / 4) => continue,
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "warm on arrival: lease failed");
                    tokio::select! {
                        () = stop.cancelled() => return,
                        () = tokio::time::sleep(LEASE_TTL / 10) => continue,
                    }
                }
            }
            self.state.active.store(true, Ordering::Relaxed);
            tracing::info!(prefixes = ?self.prefixes, "warm on arrival: this node warms the region's arrivals");
            let mut follow = Follow::default();
            tokio::select! {
                () = stop.cancelled() => {}
                () = self.keep_lease() => {
                    tracing::warn!("warm on arrival: lease lost; another node takes over");
                }
                () = self.follow(&mut follow) => {}
            }
            self.state.active.store(false, Ordering::Relaxed);
            ::metrics::gauge!(metrics::WARM_ARRIVAL_QUEUE).set(0.0);
            if stop.is_cancelled() {
                return;
            }
        }
    }

    /// Renews the lease; returns when it is lost (another node holds it,
    /// or it could not be renewed within its time to live).
    async fn keep_lease(&self) {
        let ttl = u64::try_from(LEASE_TTL.as_millis()).unwrap_or(u64::MAX);
        let mut renewed = Instant::now();
        loop {
            tokio::time::sleep(LEASE_TTL / 3).await;
            match self.meta.try_lease(LEASE, &self.holder, ttl).await {
                Ok(true) => renewed = Instant::now(),
                Ok(false) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "warm on arrival: lease renewal failed");
                    if renewed.elapsed() > LEASE_TTL * 2 / 3 {
                        return;
                    }
                }
            }
        }
    }

    /// Follows the log for as long as it is called; errors are retried
    /// from the same position.
    async fn follow(&self, follow: &mut Follow) {
        let mut backoff = Duration::from_millis(200);
        loop {
            match self.step(follow).await {
                Ok(true) => backoff = Duration::from_millis(200),
                Ok(false) => tokio::time::sleep(POLL).await,
                Err(e) => {
                    tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "warm on arrival");
                    if let Ok(mut last) = self.state.last_error.lock() {
                        *last = Some(e.to_string());
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
            }
        }
    }

    /// One catch-up, or one page of the log and its warming. True when it
    /// did something (read again at once).
    async fn step(&self, follow: &mut Follow) -> Result<bool> {
        if !follow.caught_up {
            self.catch_up(follow).await?;
            return Ok(true);
        }
        if follow.position < self.meta.log_floor().await? {
            tracing::warn!(
                position = follow.position,
                "warm on arrival: the log was trimmed past this position; catching up from a listing"
            );
            follow.caught_up = false;
            return Ok(true);
        }
        let changes = self.meta.changes_since(follow.position, PAGE).await?;
        let Some(last) = changes.last().map(|c| c.seq) else {
            let due = take_due(&mut follow.retry);
            if due.is_empty() {
                return Ok(false);
            }
            self.warm(follow, due, false).await;
            return Ok(true);
        };
        // The newest version of each key in this page, in log order.
        let mut pending: BTreeMap<(String, String), Pending> = BTreeMap::new();
        let mut gone: Vec<Layout> = Vec::new();
        for change in changes {
            match change.op {
                ChangeOp::Put {
                    bucket,
                    key,
                    entry,
                    layout,
                } if self.prefixes.covers(&bucket, &key) => {
                    let id = (bucket.clone(), key.clone());
                    if let Some(old) = follow.known.insert(id.clone(), layout.clone())
                        && old != layout
                    {
                        gone.push(old);
                    }
                    pending.insert(
                        id,
                        Pending {
                            bucket,
                            key,
                            layout,
                            committed: Some(entry.last_modified),
                            attempts: 0,
                        },
                    );
                }
                ChangeOp::Delete { bucket, key } => {
                    let id = (bucket, key);
                    if let Some(old) = follow.known.remove(&id) {
                        gone.push(old);
                    }
                    pending.remove(&id);
                }
                ChangeOp::DeleteBucket { bucket } => {
                    let ids: Vec<_> = follow
                        .known
                        .keys()
                        .filter(|(b, _)| *b == bucket)
                        .cloned()
                        .collect();
                    for id in ids {
                        if let Some(old) = follow.known.remove(&id) {
                            gone.push(old);
                        }
                        pending.remove(&id);
                    }
                }
                _ => {}
            }
        }
        for layout in gone {
            let tally = warmup::object(
                &self.cache,
                self.node.as_ref(),
                &layout,
                false,
                Action::Evict,
                self.concurrency,
            )
            .await;
            ::metrics::counter!(metrics::WARM_ARRIVAL_EVICTED).increment(tally.bytes_cached);
        }
        let mut work: Vec<Pending> = pending.into_values().collect();
        work.extend(take_due(&mut follow.retry));
        self.warm(follow, work, true).await;
        follow.position = last;
        self.state.position.store(last, Ordering::Relaxed);
        Ok(true)
    }

    /// Lists every object under the prefixes and warms them all; the log
    /// is then followed from where the listing began.
    async fn catch_up(&self, follow: &mut Follow) -> Result<()> {
        let position = self.meta.last_seq().await?;
        follow.known.clear();
        follow.retry.clear();
        let mut work = Vec::new();
        for (bucket, prefix) in self.prefixes.iter() {
            let mut after = None;
            loop {
                let page = match self
                    .meta
                    .list(
                        bucket,
                        &ListQuery {
                            prefix: prefix.to_string(),
                            delimiter: None,
                            start_after: after.clone(),
                            max: LIST_PAGE,
                        },
                    )
                    .await
                {
                    Ok(page) => page,
                    // Created later: its objects arrive through the log.
                    Err(ferry_meta::MetaError::NoSuchBucket { .. }) => break,
                    Err(e) => return Err(e.into()),
                };
                for (key, _) in &page.entries {
                    let layout = match self.meta.get(bucket, key).await {
                        Ok((_, layout)) => layout,
                        // Deleted since it was listed.
                        Err(ferry_meta::MetaError::NoSuchKey { .. }) => continue,
                        Err(e) => return Err(e.into()),
                    };
                    follow
                        .known
                        .insert((bucket.to_string(), key.clone()), layout.clone());
                    work.push(Pending {
                        bucket: bucket.to_string(),
                        key: key.clone(),
                        layout,
                        committed: None,
                        attempts: 0,
                    });
                }
                if !page.truncated {
                    break;
                }
                after = page.next_start_after;
            }
        }
        tracing::info!(
            objects = work.len(),
            position,
            "warm on arrival: caught up with a listing of the prefixes"
        );
        follow.position = position;
        follow.caught_up = true;
        self.state.position.store(position, Ordering::Relaxed);
        self.warm(follow, work, false).await;
        Ok(())
    }

    /// What the region's tiers hold (0: unknown).
    fn capacity(&self) -> u64 {
        match &self.node {
            Some(node) => node.membership.current().capacity() / node.replicas.max(1) as u64,
            None => self.local_capacity,
        }
    }

    /// Warms `work` one object after another (each object's blocks a few
    /// at a time); failures go to the retry list. `arrived`: the objects
    /// came from the log, so their lag is measured.
    async fn warm(&self, follow: &mut Follow, work: Vec<Pending>, arrived: bool) {
        let (objects, bytes) = (
            follow.known.len() as u64,
            follow.known.values().map(Layout::total_len).sum::<u64>(),
        );
        let capacity = self.capacity();
        self.state.objects.store(objects, Ordering::Relaxed);
        self.state.bytes.store(bytes, Ordering::Relaxed);
        self.state.capacity.store(capacity, Ordering::Relaxed);
        let over = capacity > 0 && bytes > capacity;
        if over != self.state.over_capacity.swap(over, Ordering::Relaxed) {
            if over {
                tracing::warn!(
                    bytes,
                    capacity,
                    "warm on arrival stopped: the warm prefixes hold more than the cluster's tiers; drop old versions or add capacity"
                );
            } else {
                tracing::info!(bytes, capacity, "warm on arrival resumed");
            }
        }
        ::metrics::gauge!(metrics::WARM_ARRIVAL_OVER_CAPACITY).set(if over { 1.0 } else { 0.0 });
        let mut left = work.len() as u64;
        ::metrics::gauge!(metrics::WARM_ARRIVAL_QUEUE).set(left as f64);
        self.state.queue.store(left, Ordering::Relaxed);
        for mut item in work {
            left -= 1;
            let current = follow
                .known
                .get(&(item.bucket.clone(), item.key.clone()))
                .is_some_and(|known| *known == item.layout);
            if !current {
                // Replaced or deleted since it was queued.
            } else if over {
                ::metrics::counter!(metrics::WARM_ARRIVAL_OBJECTS, "outcome" => "skipped")
                    .increment(1);
            } else {
                let pinned = self.cache.pins().covers(&item.bucket, &item.key);
                let object = |action| {
                    warmup::object(
                        &self.cache,
                        self.node.as_ref(),
                        &item.layout,
                        pinned,
                        action,
                        self.concurrency,
                    )
                };
                let mut tally = object(Action::Warm).await;
                // Warm means on its owners now: a block lost on the way (an
                // owner restarted, or evicted it at once) is a failure, tried
                // again later.
                if tally.failures == 0 {
                    let check = object(Action::Check).await;
                    if check.bytes_cached < check.bytes {
                        tally.failures += 1;
                    }
                }
                self.record(&mut item, &tally, arrived, follow);
            }
            ::metrics::gauge!(metrics::WARM_ARRIVAL_QUEUE).set(left as f64);
            self.state.queue.store(left, Ordering::Relaxed);
        }
    }

    fn record(&self, item: &mut Pending, tally: &Tally, arrived: bool, follow: &mut Follow) {
        ::metrics::counter!(metrics::WARM_ARRIVAL_BYTES, "how" => "loaded")
            .increment(tally.bytes_loaded);
        ::metrics::counter!(metrics::WARM_ARRIVAL_BYTES, "how" => "cached")
            .increment(tally.bytes_cached);
        if tally.failures > 0 {
            self.state.failed.fetch_add(1, Ordering::Relaxed);
            ::metrics::counter!(metrics::WARM_ARRIVAL_OBJECTS, "outcome" => "failed").increment(1);
            item.attempts += 1;
            if item.attempts < RETRY_ATTEMPTS {
                let wait = RETRY_FIRST * 2u32.pow(item.attempts - 1);
                tracing::warn!(bucket = %item.bucket, key = %item.key, failures = tally.failures, retry_in_s = wait.as_secs(), "warm on arrival: blocks failed; trying again");
                follow.retry.push((Instant::now() + wait, item.clone()));
            } else {
                tracing::warn!(bucket = %item.bucket, key = %item.key, "warm on arrival: giving up on this object after {RETRY_ATTEMPTS} attempts");
            }
            return;
        }
        self.state.warmed.fetch_add(1, Ordering::Relaxed);
        ::metrics::counter!(metrics::WARM_ARRIVAL_OBJECTS, "outcome" => "warmed").increment(1);
        if arrived && let Some(at) = item.committed {
            let lag = (now_millis() - at).max(0) as f64 / 1000.0;
            ::metrics::histogram!(metrics::WARM_ARRIVAL_LAG_SECONDS).record(lag);
        }
    }
}

/// Retries whose time has come, taken out of the list.
fn take_due(retry: &mut Vec<(Instant, Pending)>) -> Vec<Pending> {
    let now = Instant::now();
    let (due, later): (Vec<_>, Vec<_>) = retry.drain(..).partition(|(at, _)| *at <= now);
    *retry = later;
    due.into_iter().map(|(_, p)| p).collect()
}
