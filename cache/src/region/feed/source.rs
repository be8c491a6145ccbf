//! The source region's side of the feed: answering mirrors, and keeping
//! for them what they have not applied yet.
//!
//! Every registered mirror has a [`MirrorRecord`]: its applied position
//! (trimming stops below the lowest), and checkpoints "by `acked` it had
//! applied every change made at or before `covered`". The collector asks
//! [`FeedSource::maintain`]: a blob deleted at `t` may go only once every
//! mirror has a checkpoint with `covered >= t` and `acked + grace <= now`,
//! so a fallback read a mirror started just before it applied the delete
//! keeps its blob for the whole grace period.

use std::sync::Arc;
use std::time::Duration;

use ferry_meta::{Checkpoint, Meta, MirrorRecord, Seq, UnixMillis, now_millis};

use super::{ChangesPage, EntriesPage, MAX_PAGE, Resync, SnapshotEntry, SnapshotStart};
use crate::error::Result;
use crate::metrics;

/// How often a long poll looks at the log again.
const POLL_TICK: Duration = Duration::from_millis(10);
/// A mirror's record is rewritten at most this often when its position
/// has not moved (its heartbeat), so idle long polls cost no writes.
const HEARTBEAT_WRITE_MS: i64 = 5_000;
/// A change's time is taken before it commits, and gateways sharing a
/// Redis have their own clocks: a checkpoint claims only changes made
/// this long before what it observed.
const CLOCK_MARGIN_MS: i64 = 1_000;

/// Where the source reads the time (a test moves it by hand).
pub type Clock = Arc<dyn Fn() -> UnixMillis + Send + Sync>;

#[derive(Debug)]
pub enum ChangesAnswer {
    Page(ChangesPage),
    Resync(Resync),
}

pub struct FeedSource {
    meta: Arc<dyn Meta>,
    /// This (the source) region's name.
    name: String,
    /// The collector's grace period.
    grace: Duration,
    /// A mirror silent this long is dropped.
    mirror_timeout: Duration,
    /// Records kept even when no mirror needs them.
    log_keep: u64,
    clock: Clock,
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl FeedSource {
    pub fn new(
        meta: Arc<dyn Meta>,
        name: &str,
        grace: Duration,
        mirror_timeout: Duration,
        log_keep: u64,
    ) -> FeedSource {
        FeedSource {
            meta,
            name: name.to_string(),
            grace,
            mirror_timeout,
            log_keep,
            clock: Arc::new(now_millis),
        }
    }

    /// Reads the time from `clock` instead of the system's.
    pub fn with_clock(mut self, clock: Clock) -> FeedSource {
        self.clock = clock;
        self
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    fn resync(&self, reason: impl Into<String>) -> ChangesAnswer {
        ChangesAnswer::Resync(Resync {
            source: self.name.clone(),
            reason: reason.into(),
        })
    }

    /// Records after `after` for `mirror`, waiting up to `wait` for the
    /// first one. `after` acknowledges everything up to it.
    pub async fn changes(
        &self,
        mirror: &str,
        after: Seq,
        limit: usize,
        wait: Duration,
    ) -> Result<ChangesAnswer> {
        let limit = limit.clamp(1, MAX_PAGE);
        let Some(record) = self.record(mirror).await? else {
            return Ok(self.resync(format!(
                "mirror {mirror:?} is not registered here (new, or dropped after being silent longer than the mirror timeout)"
            )));
        };
        let deadline = tokio::time::Instant::now() + wait;
        // Acknowledged on the first pass; later passes of the long poll
        // only look at the log's end until there is something to answer.
        let mut unacknowledged = Some(record);
        loop {
            // Before reading the log's end: changes made earlier are in it.
            let observed = (self.clock)() - CLOCK_MARGIN_MS;
            let last = self.meta.last_seq().await?;
            if after > last {
                return Ok(self.resync(format!(
                    "position {after} is past this log's end {last} (the source's metadata was replaced)"
                )));
            }
            let answering = last > after || tokio::time::Instant::now() >= deadline;
            if answering || unacknowledged.is_some() {
                let changes = if last > after {
                    self.meta.changes_since(after, limit).await?
                } else {
                    Vec::new()
                };
                // Read the floor after the records: trimming only raises
                // it, so a position still at or above it saw a complete log.
                let floor = self.meta.log_floor().await?;
                if after < floor {
                    return Ok(self.resync(format!(
                        "position {after} was trimmed from the log (it starts after {floor})"
                    )));
                }
                if let Some(record) = unacknowledged.take() {
                    // Everything made before the first record not applied
                    // yet is applied; with none left, everything until now.
                    let covered = changes
                        .first()
                        .map_or(observed, |c| observed.min(c.at - CLOCK_MARGIN_MS));
                    self.acknowledge(record, after, covered).await?;
                }
                if answering {
                    return Ok(ChangesAnswer::Page(ChangesPage {
                        source: self.name.clone(),
                        last,
                        changes,
                    }));
                }
            }
            tokio::time::sleep(POLL_TICK.min(deadline - tokio::time::Instant::now())).await;
        }
    }

    async fn record(&self, mirror: &str) -> Result<Option<MirrorRecord>> {
        Ok(self
            .meta
            .mirrors()
            .await?
            .into_iter()
            .find(|m| m.name == mirror))
    }

    async fn acknowledge(
        &self,
        mut record: MirrorRecord,
        applied: Seq,
        covered: UnixMillis,
    ) -> Result<()> {
        let now = (self.clock)();
        let interval = (millis(self.grace) / 8).max(1_000);
        let checkpoint_due = record
            .checkpoints
            .last()
            .is_none_or(|c| now - c.acked >= interval);
        let moved = applied != record.applied;
        if !moved && !checkpoint_due && now - record.last_seen < HEARTBEAT_WRITE_MS {
            return Ok(());
        }
        record.applied = applied;
        record.last_seen = now;
        if checkpoint_due {
            record.checkpoints.push(Checkpoint {
                covered,
                acked: now,
            });
        }
        prune(&mut record.checkpoints, now, millis(self.grace));
        self.meta.put_mirror(&record).await?;
        Ok(())
    }

    /// Registers `mirror` at the log's current end and answers the
    /// buckets; the mirror loads entries, then replays from `position`.
    pub async fn snapshot(&self, mirror: &str) -> Result<SnapshotStart> {
        let now = (self.clock)();
        let position = self.meta.last_seq().await?;
        self.meta
            .put_mirror(&MirrorRecord {
                name: mirror.to_string(),
                applied: position,
                last_seen: now,
                // Blobs deleted before now are in no snapshot this mirror
                // loads: an old acknowledgement lets them go.
                checkpoints: vec![Checkpoint {
                    covered: now - CLOCK_MARGIN_MS,
                    acked: 0,
                }],
            })
            .await?;
        tracing::info!(%mirror, position, "mirror registered for a resync");
        Ok(SnapshotStart {
            source: self.name.clone(),
            position,
            buckets: self.meta.list_buckets().await?,
        })
    }

    /// One page of a bucket's entries with their layouts, after `after`.
    pub async fn entries(
        &self,
        bucket: &str,
        after: Option<String>,
        limit: usize,
    ) -> Result<EntriesPage> {
        let page = self
            .meta
            .list(
                bucket,
                &ferry_meta::ListQuery {
                    start_after: after,
                    max: limit.clamp(1, MAX_PAGE),
                    ..ferry_meta::ListQuery::default()
                },
            )
            .await?;
        let mut entries = Vec::with_capacity(page.entries.len());
        let next = page
            .truncated
            .then(|| page.entries.last().map(|(k, _)| k.clone()))
            .flatten();
        for (key, _) in page.entries {
            match self.meta.get(bucket, &key).await {
                Ok((entry, layout)) => entries.push(SnapshotEntry { key, entry, layout }),
                // Deleted since it was listed: the log replays the delete.
                Err(ferry_meta::MetaError::NoSuchKey { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(EntriesPage { entries, next })
    }

    /// Drops mirrors silent longer than the timeout, trims the log below
    /// what every remaining mirror has applied (keeping `log_keep` records
    /// in any case), and answers the newest deletion time whose blobs
    /// every remaining mirror is done with (`None`: no mirror, nothing to
    /// wait for). Run by one node at a time, the collector.
    pub async fn maintain(&self, now: UnixMillis) -> Result<Option<UnixMillis>> {
        let last = self.meta.last_seq().await?;
        let grace = millis(self.grace);
        let mut lowest = last;
        let mut horizon: Option<UnixMillis> = None;
        let mut count = 0u32;
        for mirror in self.meta.mirrors().await? {
            let silent = now - mirror.last_seen;
            if silent > millis(self.mirror_timeout) {
                tracing::warn!(
                    mirror = %mirror.name,
                    silent_s = silent / 1000,
                    applied = mirror.applied,
                    "mirror dropped: silent longer than region.mirror_timeout; it must resync when it returns"
                );
                self.meta.remove_mirror(&mirror.name).await?;
                ::metrics::counter!(metrics::FEED_MIRRORS_DROPPED).increment(1);
                continue;
            }
            count += 1;
            ::metrics::gauge!(metrics::FEED_MIRROR_BEHIND, "mirror" => mirror.name.clone())
                .set(last.saturating_sub(mirror.applied) as f64);
            lowest = lowest.min(mirror.applied);
            let done_with = mirror
                .checkpoints
                .iter()
                .filter(|c| c.acked.saturating_add(grace) <= now)
                .map(|c| c.covered)
                .max()
                .unwrap_or(UnixMillis::MIN);
            horizon = Some(horizon.map_or(done_with, |h| h.min(done_with)));
        }
        ::metrics::gauge!(metrics::FEED_MIRRORS).set(f64::from(count));
        let through = lowest.min(last.saturating_sub(self.log_keep));
        if through > self.meta.log_floor().await? {
            let removed = self.meta.trim_changes(through).await?;
            ::metrics::counter!(metrics::FEED_TRIMMED).increment(removed);
            tracing::debug!(through, removed, "change log trimmed");
        }
        Ok(horizon)
    }
}

/// Keeps the newest checkpoint already past its grace (it answers for
/// every older deletion) and all newer ones.
fn prune(checkpoints: &mut Vec<Checkpoint>, now: UnixMillis, grace: i64) {
    if let Some(aged) = checkpoints
        .iter()
        .rposition(|c| c.acked.saturating_add(grace) <= now)
    {
        checkpoints.drain(..aged);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pruning_keeps_the_newest_aged_checkpoint_and_everything_after() {
        let c = |covered, acked| Checkpoint { covered, acked };
        let mut list = vec![c(1, 10), c(2, 20), c(3, 30), c(4, 40)];
        prune(&mut list, 35, 10);
        assert_eq!(list, [c(2, 20), c(3, 30), c(4, 40)]);
        prune(&mut list, 5, 10);
        assert_eq!(list.len(), 3, "nothing aged: nothing goes");
    }
}
