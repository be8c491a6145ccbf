//! The mirror's replication worker: copies each queued blob from the
//! source region's store (the later stores of its chain) into this
//! region's own store, a few at a time, retrying with backoff; the queue
//! is in the metadata engine, so a restart resumes where it stopped.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use object_store::ObjectStoreExt;
use object_store::path::Path;
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;

use ferry_meta::{Meta, ReplicationJob};

use crate::error::{CacheError, Result};
use crate::metrics;
use crate::store::Stores;
use crate::volume::blob::BlobUpload;

/// Jobs read from the queue at once.
const SCAN: usize = 256;
/// How often an idle worker looks at the queue without being woken (jobs
/// queued by a resync on another node, retries falling due).
const IDLE_SCAN: Duration = Duration::from_secs(1);

/// What one copy ended in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Copied {
    /// This many bytes were copied.
    Bytes(u64),
    /// This region's store already had it.
    Present,
    /// No entry references the blob any more: nothing to copy.
    Unreferenced,
    /// No later store of the chain has it (deleted at the source after
    /// being replaced there); reads fail over to the chain anyway.
    Missing,
}

pub struct Replicator {
    meta: Arc<dyn Meta>,
    stores: Stores,
    concurrency: usize,
    wake: Arc<Notify>,
    /// Job ids being copied now.
    running: Arc<Mutex<HashSet<u64>>>,
    /// Failed jobs: attempts so far and when to try again.
    retry: Arc<Mutex<HashMap<u64, (u32, Instant)>>>,
}

impl Replicator {
    pub fn new(
        meta: Arc<dyn Meta>,
        stores: Stores,
        concurrency: usize,
        wake: Arc<Notify>,
    ) -> Replicator {
        Replicator {
            meta,
            stores,
            concurrency: concurrency.max(1),
            wake,
            running: Arc::default(),
            retry: Arc::default(),
        }
    }

    /// Works the queue until `stop`.
    pub async fn run(self: Arc<Self>, stop: CancellationToken) {
        let slots = Arc::new(Semaphore::new(self.concurrency));
        loop {
            match self.scan(&slots, &stop).await {
                Ok(()) => {}
                Err(e) => tracing::warn!(error = %e, "replication: reading the queue failed"),
            }
            tokio::select! {
                () = stop.cancelled() => return,
                () = self.wake.notified() => {}
                () = tokio::time::sleep(IDLE_SCAN) => {}
            }
        }
    }

    /// One pass over the queue, starting every job that is not running or
    /// waiting for a retry.
    async fn scan(
        self: &Arc<Self>,
        slots: &Arc<Semaphore>,
        stop: &CancellationToken,
    ) -> Result<()> {
        let mut after = 0;
        let mut seen = 0u64;
        loop {
            let jobs = self.meta.replication_jobs(after, SCAN).await?;
            let Some(last) = jobs.last() else { break };
            after = last.id;
            seen += jobs.len() as u64;
            for job in jobs {
                if stop.is_cancelled() {
                    return Ok(());
                }
                let waiting = self
                    .retry
                    .lock()
                    .ok()
                    .and_then(|r| r.get(&job.id).map(|(_, at)| *at > Instant::now()))
                    .unwrap_or(false);
                let fresh = self.running.lock().is_ok_and(|mut r| r.insert(job.id));
                if waiting || !fresh {
                    if fresh && let Ok(mut r) = self.running.lock() {
                        r.remove(&job.id);
                    }
                    continue;
                }
                let Ok(permit) = slots.clone().acquire_owned().await else {
                    return Ok(());
                };
                let this = self.clone();
                tokio::spawn(async move {
                    this.work(job).await;
                    drop(permit);
                });
            }
        }
        ::metrics::gauge!(metrics::REPLICATION_QUEUE).set(seen as f64);
        Ok(())
    }

    async fn work(&self, job: ReplicationJob) {
        let started = Instant::now();
        let outcome = self.copy(&job).await;
        if let Ok(mut running) = self.running.lock() {
            running.remove(&job.id);
        }
        match outcome {
            Ok(copied) => {
                let label = match copied {
                    Copied::Bytes(bytes) => {
                        ::metrics::counter!(metrics::REPLICATION_BYTES).increment(bytes);
                        "copied"
                    }
                    Copied::Present => "present",
                    Copied::Unreferenced => "unreferenced",
                    Copied::Missing => {
                        tracing::warn!(store = %job.blob.store, blob = %job.blob.blob, "replication: no store of the chain has the blob");
                        "missing"
                    }
                };
                ::metrics::counter!(metrics::REPLICATION_BLOBS, "outcome" => label).increment(1);
                ::metrics::histogram!(metrics::REPLICATION_COPY_SECONDS)
                    .record(started.elapsed().as_secs_f64());
                if let Err(e) = self.meta.finish_replication(&job).await {
                    tracing::warn!(error = %e, "replication: could not drop a finished job; it will run again");
                }
                if let Ok(mut retry) = self.retry.lock() {
                    retry.remove(&job.id);
                }
            }
            Err(e) => {
                let attempts = self
                    .retry
                    .lock()
                    .ok()
                    .and_then(|r| r.get(&job.id).map(|(n, _)| *n))
                    .unwrap_or(0)
                    + 1;
                let delay =
                    Duration::from_millis(200u64 << attempts.min(8)).min(Duration::from_secs(60));
                tracing::warn!(store = %job.blob.store, blob = %job.blob.blob, attempts, retry_in_ms = delay.as_millis() as u64, error = %e, "replication: copy failed");
                ::metrics::counter!(metrics::REPLICATION_BLOBS, "outcome" => "failed").increment(1);
                if let Ok(mut retry) = self.retry.lock() {
                    retry.insert(job.id, (attempts, Instant::now() + delay));
                }
                self.wake.notify_one();
            }
        }
    }

    /// Copies one blob into its own store from the first later store of
    /// the chain that has it.
    pub async fn copy(&self, job: &ReplicationJob) -> Result<Copied> {
        if self.meta.blob_refs(&job.blob).await? == 0 {
            return Ok(Copied::Unreferenced);
        }
        let target = self.stores.get(&job.blob.store)?;
        let path = Path::from(job.blob.blob.as_str());
        match target.client.head(&path).await {
            Ok(_) => return Ok(Copied::Present),
            Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(CacheError::store(&target.name, e)),
        }
        for name in &target.spec.fallback {
            let source = self.stores.get(name)?;
            let got = match source.client.get(&path).await {
                Ok(got) => got,
                Err(object_store::Error::NotFound { .. }) => continue,
                Err(e) => return Err(CacheError::store(name, e)),
            };
            let mut upload = BlobUpload::copy_of(target, &job.blob.blob);
            let mut stream = got.into_stream();
            let mut bytes = 0u64;
            while let Some(chunk) = stream.next().await {
                let chunk = match chunk {
                    Ok(chunk) => chunk,
                    Err(e) => {
                        upload.abort().await;
                        return Err(CacheError::store(name, e));
                    }
                };
                bytes += chunk.len() as u64;
                if let Err(e) = upload.write(chunk).await {
                    upload.abort().await;
                    return Err(e);
                }
            }
            upload.finish().await?;
            // Dropped while it was being copied: the collector may have
            // deleted the blob before this copy landed, so remove it here
            // rather than leave it unreferenced in this region's store.
            if self.meta.blob_refs(&job.blob).await? == 0 {
                match target.client.delete(&path).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                    Err(e) => return Err(CacheError::store(&target.name, e)),
                }
                return Ok(Copied::Unreferenced);
            }
            return Ok(Copied::Bytes(bytes));
        }
        Ok(Copied::Missing)
    }
}
