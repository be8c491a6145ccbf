//! The blob collector: deletes queued blobs once their grace period has
//! passed, one collector per volume (a lease), only in stores the volume
//! owns, and only blobs no committed layout references.

use std::sync::Arc;
use std::time::Duration;

use ferry_meta::{Meta, UnixMillis};
use object_store::ObjectStoreExt;
use object_store::path::Path;

use crate::error::{CacheError, Result};
use crate::region::FeedSource;
use crate::store::Stores;

const LEASE_NAME: &str = "collector";
const BATCH: usize = 256;

/// What one pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CollectStats {
    pub deleted: u64,
    /// Referenced again since queued: left alone.
    pub still_referenced: u64,
    /// In a store the volume does not own: dropped from the queue, kept in the store.
    pub not_owned: u64,
    /// Store errors; re-queued for a later pass.
    pub failed: u64,
    /// Multipart uploads aborted for being older than the expiry.
    pub uploads_expired: u64,
    /// Staging files of interrupted local writes, older than the grace
    /// period, removed.
    pub staging_removed: u64,
    /// Records of completed uploads past their keep time, dropped.
    pub completions_expired: u64,
    /// Whether another gateway holds the lease (then nothing was done).
    pub lease_held_elsewhere: bool,
    /// Change-log records trimmed (no feed: beyond the newest `log_keep`).
    pub log_trimmed: u64,
}

#[derive(Clone)]
pub struct Collector {
    meta: Arc<dyn Meta>,
    stores: Stores,
    grace: Duration,
    lease_ttl: Duration,
    upload_expiry: Option<Duration>,
    /// In a source region: the mirrors' needs (deletes wait for them, the
    /// log is trimmed below them).
    feed: Option<Arc<FeedSource>>,
    /// Change-log records kept when no feed trims the log (its own
    /// maintenance does in a source region).
    log_keep: u64,
    holder: String,
}

/// Change-log records a namespace keeps when nothing needs more.
pub const DEFAULT_LOG_KEEP: u64 = 100_000;

impl Collector {
    pub fn new(
        meta: Arc<dyn Meta>,
        stores: Stores,
        grace: Duration,
        lease_ttl: Duration,
    ) -> Collector {
        Collector {
            meta,
            stores,
            grace,
            lease_ttl,
            upload_expiry: None,
            feed: None,
            log_keep: DEFAULT_LOG_KEEP,
            holder: uuid::Uuid::new_v4().to_string(),
        }
    }

    /// Keeps the newest `keep` change-log records when no feed trims the
    /// log (a single region, or a mirror's own log, which warm on arrival
    /// follows: it catches up when trimmed under).
    pub fn with_log_keep(mut self, keep: u64) -> Collector {
        self.log_keep = keep;
        self
    }

    /// Holds the lease as `holder`: a node that keeps its identity across
    /// restarts takes its lease back at once instead of waiting it out.
    pub fn with_holder(mut self, holder: &str) -> Collector {
        self.holder = holder.to_string();
        self
    }

    /// Also abort multipart uploads initiated longer than `expiry` ago; their
    /// parts go through the queue like any other dropped blob.
    pub fn with_upload_expiry(mut self, expiry: Duration) -> Collector {
        self.upload_expiry = Some(expiry);
        self
    }

    /// In a source region: a blob deleted in the namespace goes only once
    /// every mirror has applied the delete and its grace period has passed
    /// since; each pass also drops silent mirrors and trims the log.
    pub fn with_feed(mut self, feed: Arc<FeedSource>) -> Collector {
        self.feed = Some(feed);
        self
    }

    async fn expire_uploads(&self, now: UnixMillis, stats: &mut CollectStats) -> Result<()> {
        let Some(expiry) = self.upload_expiry else {
            return Ok(());
        };
        let cutoff = now.saturating_sub(i64::try_from(expiry.as_millis()).unwrap_or(i64::MAX));
        loop {
            let stale = self.meta.stale_uploads(cutoff, BATCH).await?;
            let count = stale.len();
            for (bucket, upload) in stale {
                match self
                    .meta
                    .abort_upload(&bucket, &upload.key, &upload.id)
                    .await
                {
                    Ok(()) => {
                        stats.uploads_expired += 1;
                        tracing::info!(%bucket, key = %upload.key, upload = %upload.id, "expired multipart upload aborted");
                    }
                    // Completed or aborted meanwhile.
                    Err(
                        ferry_meta::MetaError::NoSuchUpload { .. }
                        | ferry_meta::MetaError::NoSuchBucket { .. },
                    ) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            if count < BATCH {
                return Ok(());
            }
        }
    }

    /// One pass as if the clock read `now`: deletes every blob queued at or
    /// before `now - grace`.
    pub async fn run_once(&self, now: UnixMillis) -> Result<CollectStats> {
        let mut stats = CollectStats::default();
        let ttl = u64::try_from(self.lease_ttl.as_millis()).unwrap_or(u64::MAX);
        if !self.meta.try_lease(LEASE_NAME, &self.holder, ttl).await? {
            stats.lease_held_elsewhere = true;
            return Ok(stats);
        }
        self.expire_uploads(now, &mut stats).await?;
        loop {
            let dropped = self.meta.expire_completions(now, BATCH).await?;
            stats.completions_expired += dropped as u64;
            if dropped < BATCH {
                break;
            }
        }
        let grace = i64::try_from(self.grace.as_millis()).unwrap_or(i64::MAX);
        let mut cutoff = now.saturating_sub(grace);
        match &self.feed {
            Some(feed) => {
                if let Some(horizon) = feed.maintain(now).await? {
                    cutoff = cutoff.min(horizon);
                }
            }
            None => stats.log_trimmed = self.trim_log().await?,
        }
        loop {
            let due = self.meta.due_deletions(cutoff, BATCH).await?;
            if due.is_empty() {
                break;
            }
            for queued in &due {
                if !self.meta.claim_deletion(queued).await? {
                    stats.still_referenced += 1;
                    continue;
                }
                let store = match self.stores.get(&queued.blob.store) {
                    Ok(store) => store,
                    Err(CacheError::UnknownStore(name)) => {
                        tracing::warn!(store = %name, blob = %queued.blob.blob, "queued blob in an unknown store; kept");
                        stats.not_owned += 1;
                        continue;
                    }
                    Err(e) => return Err(e),
                };
                if !store.spec.owned {
                    stats.not_owned += 1;
                    continue;
                }
                match store
                    .client
                    .delete(&Path::from(queued.blob.blob.as_str()))
                    .await
                {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => {
                        stats.deleted += 1;
                        metrics::counter!(crate::metrics::GC_DELETED).increment(1);
                    }
                    Err(e) => {
                        tracing::warn!(store = %store.name, blob = %queued.blob.blob, error = %e, "blob delete failed; re-queued");
                        stats.failed += 1;
                        metrics::counter!(crate::metrics::GC_FAILED).increment(1);
                        self.meta
                            .queue_uncommitted(std::slice::from_ref(&queued.blob))
                            .await?;
                    }
                }
            }
            if due.len() < BATCH || stats.failed > 0 {
                // Failed blobs were re-queued with a new time; stop this
                // pass rather than spin on a broken store.
                break;
            }
        }
        let written_before = std::time::UNIX_EPOCH
            + Duration::from_millis(u64::try_from(now.saturating_sub(grace)).unwrap_or(0));
        stats.staging_removed = super::staging::sweep(&self.stores, written_before).await;
        Ok(stats)
    }

    /// Drops change-log records older than the newest `log_keep`, where no
    /// feed (and so no mirror) needs them.
    async fn trim_log(&self) -> Result<u64> {
        let through = self.meta.last_seq().await?.saturating_sub(self.log_keep);
        if through <= self.meta.log_floor().await? {
            return Ok(0);
        }
        Ok(self.meta.trim_changes(through).await?)
    }

    /// Runs a pass every `interval` until `shutdown` resolves.
    pub async fn run(self, interval: Duration, shutdown: impl std::future::Future<Output = ()>) {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => return,
                _ = ticker.tick() => {
                    match self.run_once(ferry_meta::now_millis()).await {
                        Ok(stats) if stats.deleted + stats.failed + stats.uploads_expired > 0 => {
                            tracing::info!(?stats, "collector pass");
                        }
                        Ok(_) => {}
                        Err(e) => tracing::warn!(error = %e, "collector pass failed"),
                    }
                }
            }
        }
    }
}
