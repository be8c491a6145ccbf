//! The store chain: a block of logical store S is read from S, then from
//! each store of S's `fallback` list, in order.
//!
//! - A store that lacks the blob passes the read on (a mirror whose copy
//!   has not arrived yet); one that fails or takes longer than its
//!   `attempt_timeout` (its own retries included, so they cannot hide a
//!   dead store) is marked unhealthy for a growing while and tried after
//!   the healthy ones until then.
//! - A demand read whose first store has not answered within that store's
//!   recent p95 latency is hedged to the next store: the first answer wins
//!   and the other read is dropped. Hedges spend a budget of about 5 % of
//!   the chain's reads, so a slow store never doubles the load; hedges are
//!   set off by time only, never by an error such as SlowDown.
//! - A store with no fallback is read exactly as before: one store, its
//!   own retries, no timeout of the chain's.

use std::collections::{HashMap, VecDeque};
use std::ops::Range;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;

use crate::error::{CacheError, Result};
use crate::metrics as m;
use crate::source::store::read_exact;
use crate::source::{BlockAddr, BlockSource, FetchedBlock};
use crate::store::admission::{self, ReadPriority};
use crate::store::{StoreHandle, Stores};

/// Latencies kept per store for its p95.
const SAMPLES: usize = 128;
/// Too few samples to know a p95: no hedging yet.
const MIN_SAMPLES: usize = 20;
/// Hedges allowed per chain read, and the burst allowed at first.
const HEDGE_SHARE: f64 = 0.05;
const HEDGE_BURST: f64 = 4.0;
const UNHEALTHY_FIRST: Duration = Duration::from_secs(1);
const UNHEALTHY_MAX: Duration = Duration::from_secs(30);

#[derive(Default)]
struct Health {
    latencies: VecDeque<Duration>,
    unhealthy_until: Option<Instant>,
    backoff: Duration,
}

pub struct ChainSource {
    stores: Stores,
    health: Mutex<HashMap<String, Health>>,
    /// Chain reads and hedges sent, for the budget.
    reads: AtomicU64,
    hedges: AtomicU64,
}

/// Why a read moved to the next store.
#[derive(Debug, Clone, Copy)]
enum Reason {
    Missing,
    Failed,
    Timeout,
}

impl Reason {
    fn label(self) -> &'static str {
        match self {
            Reason::Missing => "missing",
            Reason::Failed => "failed",
            Reason::Timeout => "timeout",
        }
    }
}

impl ChainSource {
    pub fn new(stores: Stores) -> ChainSource {
        ChainSource {
            stores,
            health: Mutex::default(),
            reads: AtomicU64::new(0),
            hedges: AtomicU64::new(0),
        }
    }

    /// `store`, then its fallbacks, healthy ones first (in chain order).
    fn order(&self, store: &str) -> Result<Vec<&StoreHandle>> {
        let first = self.stores.get(store)?;
        let mut chain = vec![first];
        for next in &first.spec.fallback {
            chain.push(self.stores.get(next)?);
        }
        let now = Instant::now();
        let health = self
            .health
            .lock()
            .map_err(|_| CacheError::Tier("chain health poisoned".into()))?;
        let sick = |s: &&StoreHandle| {
            health
                .get(&s.name)
                .and_then(|h| h.unhealthy_until)
                .is_some_and(|until| until > now)
        };
        let (healthy, unhealthy): (Vec<_>, Vec<_>) = chain.into_iter().partition(|s| !sick(s));
        Ok(healthy.into_iter().chain(unhealthy).collect())
    }

    fn p95(&self, store: &str) -> Option<Duration> {
        let health = self.health.lock().ok()?;
        let samples = &health.get(store)?.latencies;
        if samples.len() < MIN_SAMPLES {
            return None;
        }
        let mut sorted: Vec<Duration> = samples.iter().copied().collect();
        sorted.sort_unstable();
        sorted.get(sorted.len() * 95 / 100).copied()
    }

    fn went_well(&self, store: &str, took: Duration) {
        if let Ok(mut health) = self.health.lock() {
            let h = health.entry(store.to_string()).or_default();
            h.latencies.push_back(took);
            if h.latencies.len() > SAMPLES {
                h.latencies.pop_front();
            }
            if h.unhealthy_until.take().is_some() {
                tracing::info!(%store, "store answering again");
            }
            h.backoff = Duration::ZERO;
        }
    }

    fn went_badly(&self, store: &str, why: &str) {
        if let Ok(mut health) = self.health.lock() {
            let h = health.entry(store.to_string()).or_default();
            let now = Instant::now();
            if h.unhealthy_until.is_some_and(|until| until > now) {
                return;
            }
            h.backoff = if h.backoff.is_zero() {
                UNHEALTHY_FIRST
            } else {
                (h.backoff * 2).min(UNHEALTHY_MAX)
            };
            h.unhealthy_until = Some(now + h.backoff);
            metrics::counter!(m::STORE_UNHEALTHY, "store" => store.to_string()).increment(1);
            tracing::warn!(%store, reason = why, backoff_ms = h.backoff.as_millis() as u64, "store skipped in its chain for a while");
        }
    }

    /// Takes one hedge from the budget, if it has one.
    fn hedge_allowed(&self) -> bool {
        let reads = self.reads.load(Ordering::Relaxed) as f64;
        let hedges = self.hedges.load(Ordering::Relaxed) as f64;
        if hedges + 1.0 > reads * HEDGE_SHARE + HEDGE_BURST {
            return false;
        }
        self.hedges.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// One read of one store in a chain: bounded by its attempt timeout,
    /// and recorded in its health.
    async fn attempt(
        &self,
        store: &StoreHandle,
        blob: &str,
        version: &str,
        range: Range<u64>,
    ) -> (Result<Bytes>, Option<Reason>) {
        let started = Instant::now();
        let read = read_exact(store, blob, version, range);
        match tokio::time::timeout(store.spec.attempt_timeout, read).await {
            Ok(Ok(bytes)) => {
                self.went_well(&store.name, started.elapsed());
                (Ok(bytes), None)
            }
            // Another store of the chain may have the blob (as it was).
            Ok(Err(e @ (CacheError::MissingBlob { .. } | CacheError::Changed { .. }))) => {
                (Err(e), Some(Reason::Missing))
            }
            Ok(Err(e)) => {
                self.went_badly(&store.name, &e.to_string());
                (Err(e), Some(Reason::Failed))
            }
            Err(_) => {
                self.went_badly(&store.name, "attempt timed out");
                let e = CacheError::Store {
                    store: store.name.clone(),
                    source: object_store::Error::Generic {
                        store: "chain",
                        source: format!("no answer within {:?}", store.spec.attempt_timeout).into(),
                    },
                };
                (Err(e), Some(Reason::Timeout))
            }
        }
    }

    /// The first store's read, hedged to the second when it is slower than
    /// its p95: the first success wins.
    async fn hedged(
        &self,
        first: &StoreHandle,
        second: &StoreHandle,
        blob: &str,
        version: &str,
        range: &Range<u64>,
    ) -> Option<(Result<Bytes>, Option<Reason>, bool)> {
        let delay = self.p95(&first.name)?;
        let primary = self.attempt(first, blob, version, range.clone());
        tokio::pin!(primary);
        if let Ok((result, reason)) = tokio::time::timeout(delay, &mut primary).await {
            return Some((result, reason, false));
        }
        if !self.hedge_allowed() {
            metrics::counter!(m::STORE_HEDGES, "store" => first.name.clone(), "outcome" => "no_budget").increment(1);
            let (result, reason) = primary.await;
            return Some((result, reason, false));
        }
        let hedge = self.attempt(second, blob, version, range.clone());
        tokio::pin!(hedge);
        tokio::select! {
            (result, reason) = &mut primary => {
                if result.is_ok() {
                    metrics::counter!(m::STORE_HEDGES, "store" => first.name.clone(), "outcome" => "lost").increment(1);
                    return Some((result, reason, false));
                }
                let (result, reason) = hedge.await;
                Some((result, reason, true))
            }
            (result, reason) = &mut hedge => {
                if result.is_ok() {
                    metrics::counter!(m::STORE_HEDGES, "store" => first.name.clone(), "outcome" => "won").increment(1);
                    return Some((result, reason, true));
                }
                let (result, reason) = primary.await;
                Some((result, reason, false))
            }
        }
    }
}

#[async_trait]
impl BlockSource for ChainSource {
    async fn fetch(&self, addr: &BlockAddr, range: Range<u64>) -> Result<FetchedBlock> {
        let start = addr.offset();
        let range = start + range.start..start + range.end;
        // Most stores have no fallback: read them without the chain's
        // bookkeeping (no health lock, no ordering), as a single store.
        let first = self.stores.get(&addr.store)?;
        if first.spec.fallback.is_empty() {
            return Ok(read_exact(first, &addr.blob, &addr.version, range)
                .await?
                .into());
        }
        let order = self.order(&addr.store)?;
        self.reads.fetch_add(1, Ordering::Relaxed);
        let demand = admission::current_priority() == ReadPriority::Demand;
        let mut last = None;
        let mut i = 0;
        while i < order.len() {
            let store = order[i];
            let (result, reason, by_hedge) = match order.get(i + 1) {
                Some(next) if demand && store.spec.hedge => match self
                    .hedged(store, next, &addr.blob, &addr.version, &range)
                    .await
                {
                    Some(answer) => answer,
                    None => {
                        let (result, reason) = self
                            .attempt(store, &addr.blob, &addr.version, range.clone())
                            .await;
                        (result, reason, false)
                    }
                },
                _ => {
                    let (result, reason) = self
                        .attempt(store, &addr.blob, &addr.version, range.clone())
                        .await;
                    (result, reason, false)
                }
            };
            // A hedge that answered was the next store's read.
            let served_by = if by_hedge { order[i + 1] } else { store };
            match result {
                Ok(bytes) => {
                    if served_by.name != addr.store {
                        metrics::counter!(
                            m::STORE_FALLBACKS,
                            "from" => addr.store.clone(),
                            "to" => served_by.name.clone(),
                            "reason" => if by_hedge { "hedge" } else { last.as_ref().map_or("skipped", |(r, _): &(Reason, CacheError)| r.label()) }
                        )
                        .increment(1);
                    }
                    return Ok(bytes.into());
                }
                Err(e) => {
                    let reason = reason.unwrap_or(Reason::Failed);
                    last = Some((reason, e));
                    i += if by_hedge { 2 } else { 1 };
                }
            }
        }
        // Every store failed: a blob missing everywhere is missing; any
        // other failure is the last store's.
        Err(last.map_or_else(|| CacheError::UnknownStore(addr.store.clone()), |(_, e)| e))
    }

    fn check_store(&self, store: &str) -> Result<()> {
        self.order(store).map(|_| ())
    }
}
