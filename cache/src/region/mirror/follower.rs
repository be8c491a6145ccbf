//! The mirror's follower: applies the source's change log in order,
//! exactly once each (by sequence number, in one transaction with the new
//! position and the blobs' replication jobs), and resyncs from a snapshot
//! when its position is gone from the source's log.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use serde::de::DeserializeOwned;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use ferry_meta::{Meta, MetaError, Precondition, now_millis};

use super::{MirrorState, ReplicationPolicy};
use crate::client_tls::{ClientTls, Trust};
use crate::error::{CacheError, Result};
use crate::metrics;
use crate::region::feed::{
    self, Answer, ChangesPage, EntriesPage, H_REGION, H_SIGNATURE, H_TIME, SignedRequest,
    SnapshotStart,
};

/// How long one long poll waits for a record at the source.
const POLL_WAIT: Duration = Duration::from_secs(20);
/// Records asked for at once.
const PAGE: usize = 500;
/// Snapshot entries written at once (they share the engine's commits).
const LOAD_CONCURRENCY: usize = 32;
const LEASE: &str = "mirror-follower";
const LEASE_TTL: Duration = Duration::from_secs(60);

/// A signed client of the source's feed.
#[derive(Clone)]
pub struct FeedClient {
    http: reqwest::Client,
    base: String,
    secret: Vec<u8>,
    /// This mirror region's name.
    region: String,
}

impl FeedClient {
    /// `tls`: the source is trusted on the system roots and `ca_file`.
    pub fn new(base: &str, secret: &str, region: &str, tls: &ClientTls) -> Result<FeedClient> {
        let builder = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(POLL_WAIT + Duration::from_secs(15))
            .tcp_nodelay(true);
        let http = tls
            .apply(builder, Trust::SystemAndOwn)
            .build()
            .map_err(|e| CacheError::Feed(format!("cannot build the feed client: {e}")))?;
        Ok(FeedClient {
            http,
            base: base.trim_end_matches('/').to_string(),
            secret: secret.as_bytes().to_vec(),
            region: region.to_string(),
        })
    }

    async fn get<T: DeserializeOwned>(&self, path: &str, query: &str) -> Result<Answer<T>> {
        let time_ms = now_millis();
        let signature = SignedRequest {
            method: "GET",
            path,
            query,
            time_ms,
            region: &self.region,
        }
        .sign(&self.secret);
        let url = format!("{}{path}?{query}", self.base);
        let response = self
            .http
            .get(&url)
            .header(H_REGION, &self.region)
            .header(H_TIME, time_ms.to_string())
            .header(H_SIGNATURE, &signature)
            .send()
            .await
            .map_err(|e| CacheError::Feed(format!("{url}: {e}")))?;
        let status = response.status().as_u16();
        let answer_signature = response
            .headers()
            .get(H_SIGNATURE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = response
            .bytes()
            .await
            .map_err(|e| CacheError::Feed(format!("{url}: reading the answer: {e}")))?;
        feed::read_answer(
            &self.secret,
            &signature,
            status,
            answer_signature.as_deref(),
            &body,
        )
        .map_err(|e| CacheError::Feed(format!("{url} {e}")))
    }
}

#[derive(Clone)]
pub struct Follower {
    meta: Arc<dyn Meta>,
    client: FeedClient,
    policy: ReplicationPolicy,
    state: Arc<MirrorState>,
    /// Woken when replication jobs were queued.
    replicate: Arc<Notify>,
    holder: String,
}

impl Follower {
    pub fn new(
        meta: Arc<dyn Meta>,
        client: FeedClient,
        policy: ReplicationPolicy,
        state: Arc<MirrorState>,
        replicate: Arc<Notify>,
        holder: &str,
    ) -> Follower {
        Follower {
            meta,
            client,
            policy,
            state,
            replicate,
            holder: holder.to_string(),
        }
    }

    /// Follows until `stop`; errors are retried with backoff. One node of
    /// the mirror region follows at a time (a lease held as `holder`, the
    /// node's identity, so a restarted node takes it back at once).
    pub async fn run(self, stop: CancellationToken) {
        let mut backoff = Duration::from_millis(100);
        let mut lease_renewed: Option<tokio::time::Instant> = None;
        loop {
            if stop.is_cancelled() {
                return;
            }
            let needs_lease = lease_renewed.is_none_or(|at| at.elapsed() > LEASE_TTL / 3);
            if needs_lease {
                let ttl = u64::try_from(LEASE_TTL.as_millis()).unwrap_or(u64::MAX);
                match self.meta.try_lease(LEASE, &self.holder, ttl).await {
                    Ok(true) => lease_renewed = Some(tokio::time::Instant::now()),
                    Ok(false) => {
                        lease_renewed = None;
                        tokio::select! {
                            () = stop.cancelled() => return,
                            () = tokio::time::sleep(LEASE_TTL / 4) => continue,
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "mirror follower: lease failed");
                        lease_renewed = None;
                    }
                }
            }
            let step = tokio::select! {
                () = stop.cancelled() => return,
                step = self.step() => step,
            };
            match step {
                Ok(()) => backoff = Duration::from_millis(100),
                Err(e) => {
                    tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "mirror follower");
                    ::metrics::counter!(metrics::MIRROR_FEED_ERRORS).increment(1);
                    self.state.set_error(e.to_string());
                    tokio::select! {
                        () = stop.cancelled() => return,
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    /// One long poll and its records (or a resync).
    pub async fn step(&self) -> Result<()> {
        let Some(position) = self.meta.replica_position().await? else {
            return self
                .resync(
                    "no applied position yet (first start, or an earlier resync did not finish)",
                )
                .await;
        };
        self.state.set_position(position);
        // Set at every poll, not only when records arrive: a mirror that
        // resynced or restarted and has nothing new shows where it stands.
        ::metrics::gauge!(metrics::MIRROR_POSITION).set(position as f64);
        let query = format!(
            "after={position}&limit={PAGE}&wait_ms={}",
            POLL_WAIT.as_millis()
        );
        let page: ChangesPage = match self.client.get(feed::PATH_CHANGES, &query).await? {
            Answer::Ok(page) => page,
            Answer::Resync(resync) => {
                self.state.contact(&resync.source);
                self.state.set_dropped();
                return self.resync(&resync.reason).await;
            }
        };
        self.state.contact(&page.source);
        if page.changes.is_empty() {
            // Nothing after our position: caught up.
            ::metrics::gauge!(metrics::MIRROR_LAG_SECONDS).set(0.0);
        }
        let mut queued = false;
        for change in page.changes {
            let (seq, at) = (change.seq, change.at);
            let blobs = self.policy.blobs_of(&change.op);
            queued |= !blobs.is_empty();
            if self.meta.apply(change, blobs).await? {
                ::metrics::counter!(metrics::MIRROR_APPLIED).increment(1);
            }
            self.state.set_position(seq);
            ::metrics::gauge!(metrics::MIRROR_POSITION).set(seq as f64);
            let lag = if seq >= page.last {
                0
            } else {
                now_millis() - at
            };
            ::metrics::gauge!(metrics::MIRROR_LAG_SECONDS).set(lag.max(0) as f64 / 1000.0);
        }
        if queued {
            self.replicate.notify_one();
        }
        Ok(())
    }

    /// Replaces this namespace with the source's: registers at the source
    /// (which keeps its log from that position for us), empties the
    /// namespace, loads every entry, then records the position; the log
    /// replays from there, so entries the snapshot caught later than the
    /// position converge.
    async fn resync(&self, reason: &str) -> Result<()> {
        tracing::warn!(%reason, "mirror resyncing from the source's snapshot");
        ::metrics::counter!(metrics::MIRROR_RESYNCS).increment(1);
        self.state.set_resyncing(true);
        let start: SnapshotStart = match self.client.get(feed::PATH_SNAPSHOT, "").await? {
            Answer::Ok(start) => start,
            Answer::Resync(r) => {
                return Err(CacheError::Feed(format!(
                    "the source refused a snapshot: {}",
                    r.reason
                )));
            }
        };
        self.state.contact(&start.source);
        self.meta.reset_replica().await?;
        let mut entries = 0u64;
        for bucket in &start.buckets {
            match self.meta.restore_bucket(bucket).await {
                Ok(_) | Err(MetaError::BucketExists { .. }) => {}
                Err(e) => return Err(e.into()),
            }
            let mut after: Option<String> = None;
            loop {
                let mut query = format!("bucket={}&limit={}", enc(&bucket.name), feed::MAX_PAGE);
                if let Some(key) = &after {
                    query.push_str(&format!("&after={}", enc(key)));
                }
                let page: EntriesPage = match self.client.get(feed::PATH_ENTRIES, &query).await? {
                    Answer::Ok(page) => page,
                    Answer::Resync(r) => return Err(CacheError::Feed(r.reason)),
                };
                entries += page.entries.len() as u64;
                // Jobs for the whole page in one write, then the entries
                // (a crash in between leaves no position: resync again).
                let blobs: Vec<_> = page
                    .entries
                    .iter()
                    .flat_map(|e| self.policy.blobs(&bucket.name, &e.key, &e.layout))
                    .collect();
                if !blobs.is_empty() {
                    self.meta.queue_replication(&blobs).await?;
                }
                let writes = futures::stream::iter(page.entries.into_iter().map(|e| async move {
                    self.meta
                        .put(&bucket.name, &e.key, e.entry, e.layout, Precondition::None)
                        .await
                }))
                .buffer_unordered(LOAD_CONCURRENCY)
                .collect::<Vec<_>>()
                .await;
                for write in writes {
                    write?;
                }
                match page.next {
                    Some(next) => after = Some(next),
                    None => break,
                }
            }
        }
        self.meta.set_replica_position(start.position).await?;
        self.state.set_position(start.position);
        self.state.set_resyncing(false);
        self.replicate.notify_one();
        tracing::info!(
            buckets = start.buckets.len(),
            entries,
            position = start.position,
            "mirror resynced; replaying the log from the snapshot's position"
        );
        Ok(())
    }
}

fn enc(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, percent_encoding::NON_ALPHANUMERIC).to_string()
}
