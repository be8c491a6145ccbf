//! A store wrapper that admits reads by priority within the store's limits
//! (requests in flight, bytes per second: see [`crate::store::admission`]), counts
//! what goes to the store (requests and bytes by store, for metrics and
//! tests), can add a fixed latency to every
//! request (a 20 ms object store on a laptop, for benchmarks), and can fail
//! reads after some bytes (for tests of a store dying mid-stream).
//! object_store's own `throttle` wrapper cannot be used over local files.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetRange, GetResult, GetResultPayload, ListResult, MultipartUpload,
    ObjectMeta, ObjectStore, PutMultipartOptions, PutOptions, PutPayload, PutResult, Result,
};

use crate::metrics::STORE_ADMISSION_WAIT_SECONDS;
use crate::store::admission::{Admission, current_priority};

/// Counts of the reads that reached a store.
#[derive(Debug, Default)]
pub struct StoreCounters {
    pub get_requests: AtomicU64,
    pub get_bytes: AtomicU64,
    /// Reads started and not yet finished, and the most ever at once.
    pub in_flight: AtomicU64,
    pub peak_in_flight: AtomicU64,
}

/// Counts a read as in flight until dropped (with its body stream).
struct InFlight(Arc<StoreCounters>);

impl InFlight {
    fn start(counters: &Arc<StoreCounters>) -> InFlight {
        let now = counters.in_flight.fetch_add(1, Ordering::Relaxed) + 1;
        counters.peak_in_flight.fetch_max(now, Ordering::Relaxed);
        InFlight(counters.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

impl StoreCounters {
    pub fn gets(&self) -> u64 {
        self.get_requests.load(Ordering::Relaxed)
    }

    pub fn bytes(&self) -> u64 {
        self.get_bytes.load(Ordering::Relaxed)
    }
}

/// Faults a test can switch on and off while a store is in use: a store
/// that goes down, or gets slow, for a while.
#[derive(Debug, Default)]
pub struct Faults {
    /// Every read fails while set.
    pub down: std::sync::atomic::AtomicBool,
    /// Added to every read, in milliseconds.
    pub extra_delay_ms: AtomicU64,
}

pub struct InstrumentedStore {
    inner: Arc<dyn ObjectStore>,
    name: String,
    latency: Option<Duration>,
    faults: Option<Arc<Faults>>,
    /// Tests: every read fails after this many bytes.
    fail_after: Option<u64>,
    /// Reads in flight at most (0: no cap) and bytes per second at most,
    /// so a cold fleet does not set off a throttling storm.
    max_requests: usize,
    max_bytes_per_sec: Option<u64>,
    /// `None` when neither limit is set.
    admission: Option<Admission>,
    counters: Arc<StoreCounters>,
}

impl InstrumentedStore {
    pub fn new(inner: Arc<dyn ObjectStore>, name: &str) -> InstrumentedStore {
        InstrumentedStore {
            inner,
            name: name.to_string(),
            latency: None,
            faults: None,
            fail_after: None,
            max_requests: 0,
            max_bytes_per_sec: None,
            admission: None,
            counters: Arc::default(),
        }
    }

    /// Caps the reads in flight (0: no cap). A read holds its slot until
    /// its body has been consumed or dropped.
    pub fn with_max_requests(mut self, max: usize) -> InstrumentedStore {
        self.max_requests = max;
        self.with_admission()
    }

    /// Caps the bytes requested per second (`None` or 0: no limit), with
    /// a burst of one second's worth. A read of a known range pays for it
    /// before it starts; a read of unknown length (a whole object, or from
    /// an offset to the end) pays nothing up front and is charged its
    /// length once the store has answered, as a debt later reads pay.
    pub fn with_max_bytes_per_sec(mut self, rate: Option<u64>) -> InstrumentedStore {
        self.max_bytes_per_sec = rate.filter(|&r| r > 0);
        self.with_admission()
    }

    fn with_admission(mut self) -> InstrumentedStore {
        self.admission = (self.max_requests > 0 || self.max_bytes_per_sec.is_some())
            .then(|| Admission::new(self.max_requests, self.max_bytes_per_sec));
        self
    }

    pub fn with_latency(mut self, latency: Option<Duration>) -> InstrumentedStore {
        self.latency = latency.filter(|d| !d.is_zero());
        self
    }

    /// Tests: reads obey `faults` from now on.
    pub fn with_faults(mut self, faults: Arc<Faults>) -> InstrumentedStore {
        self.faults = Some(faults);
        self
    }

    pub fn failing_after(mut self, bytes: u64) -> InstrumentedStore {
        self.fail_after = Some(bytes);
        self
    }

    pub fn counters(&self) -> Arc<StoreCounters> {
        self.counters.clone()
    }

    async fn delay(&self) {
        if let Some(latency) = self.latency {
            tokio::time::sleep(latency).await;
        }
        if let Some(faults) = &self.faults {
            let extra = faults.extra_delay_ms.load(Ordering::Relaxed);
            if extra > 0 {
                tokio::time::sleep(Duration::from_millis(extra)).await;
            }
        }
    }

    fn is_down(&self) -> bool {
        self.faults
            .as_ref()
            .is_some_and(|f| f.down.load(Ordering::Relaxed))
    }
}

impl fmt::Debug for InstrumentedStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "InstrumentedStore({:?})", self.inner)
    }
}

impl fmt::Display for InstrumentedStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Instrumented({})", self.inner)
    }
}

#[async_trait::async_trait]
impl ObjectStore for InstrumentedStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        self.delay().await;
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.delay().await;
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        // Bytes the read asks for, when the request says.
        let known_len = match &options.range {
            _ if options.head => Some(0),
            Some(GetRange::Bounded(range)) => Some(range.end.saturating_sub(range.start)),
            Some(GetRange::Suffix(len)) => Some(*len),
            Some(GetRange::Offset(_)) | None => None,
        };
        let slot = match &self.admission {
            Some(admission) => {
                let priority = current_priority();
                let started = std::time::Instant::now();
                let permit = admission.acquire(priority, known_len.unwrap_or(0)).await;
                metrics::histogram!(
                    STORE_ADMISSION_WAIT_SECONDS,
                    "store" => self.name.clone(),
                    "priority" => priority.label()
                )
                .record(started.elapsed().as_secs_f64());
                Some(permit)
            }
            None => None,
        };
        let in_flight = InFlight::start(&self.counters);
        self.delay().await;
        self.counters.get_requests.fetch_add(1, Ordering::Relaxed);
        if self.is_down() {
            return Err(object_store::Error::Generic {
                store: "test",
                source: "the store is down (test fault)".into(),
            });
        }
        metrics::counter!(crate::metrics::STORE_REQUESTS, "store" => self.name.clone())
            .increment(1);
        let result = self.inner.get_opts(location, options).await?;
        if known_len.is_none()
            && let Some(admission) = &self.admission
        {
            admission.charge(result.range.end.saturating_sub(result.range.start));
        }
        // A local file comes back as a handle: keep it, so `bytes()` reads
        // the whole range in one blocking call instead of the 8 KiB chunks
        // `into_stream` would make. Its bytes are counted up front.
        if matches!(result.payload, GetResultPayload::File(..)) && self.fail_after.is_none() {
            let len = result.range.end - result.range.start;
            self.counters.get_bytes.fetch_add(len, Ordering::Relaxed);
            metrics::counter!(crate::metrics::STORE_BYTES_READ, "store" => self.name.clone())
                .increment(len);
            drop((slot, in_flight));
            return Ok(result);
        }
        let (meta, range, attributes) = (
            result.meta.clone(),
            result.range.clone(),
            result.attributes.clone(),
        );
        let stream = result.into_stream();
        let counters = self.counters.clone();
        let store = self.name.clone();
        let fail_after = self.fail_after;
        let mut seen = 0u64;
        let stream = stream.map(move |chunk| {
            let _held = (&slot, &in_flight);
            let chunk = chunk?;
            seen += chunk.len() as u64;
            if fail_after.is_some_and(|limit| seen > limit) {
                return Err(object_store::Error::Generic {
                    store: "instrumented",
                    source: "injected read failure".into(),
                });
            }
            counters
                .get_bytes
                .fetch_add(chunk.len() as u64, Ordering::Relaxed);
            metrics::counter!(crate::metrics::STORE_BYTES_READ, "store" => store.clone())
                .increment(chunk.len() as u64);
            Ok(chunk)
        });
        Ok(GetResult {
            payload: GetResultPayload::Stream(stream.boxed()),
            meta,
            range,
            attributes,
            extensions: Default::default(),
        })
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        let mut out = Vec::with_capacity(ranges.len());
        for range in ranges {
            let options = GetOptions {
                range: Some(range.clone().into()),
                ..GetOptions::default()
            };
            out.push(self.get_opts(location, options).await?.bytes().await?);
        }
        Ok(out)
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.delay().await;
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.delay().await;
        self.inner.copy_opts(from, to, options).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::ObjectStoreExt;
    use object_store::memory::InMemory;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reads_in_flight_never_exceed_the_cap() {
        let memory: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        memory
            .put(&Path::from("k"), Bytes::from(vec![7u8; 1 << 16]).into())
            .await
            .expect("put");
        let store = Arc::new(
            InstrumentedStore::new(memory, "mem")
                .with_latency(Some(Duration::from_millis(5)))
                .with_max_requests(2),
        );
        let counters = store.counters();
        let readers: Vec<_> = (0..16)
            .map(|_| {
                let store = store.clone();
                tokio::spawn(async move {
                    store
                        .get(&Path::from("k"))
                        .await
                        .expect("get")
                        .bytes()
                        .await
                        .expect("body")
                })
            })
            .collect();
        for reader in readers {
            assert_eq!(reader.await.expect("join").len(), 1 << 16);
        }
        assert_eq!(counters.gets(), 16);
        assert!(counters.peak_in_flight.load(Ordering::Relaxed) <= 2);
        assert_eq!(counters.in_flight.load(Ordering::Relaxed), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn reads_are_admitted_by_priority_within_the_byte_rate() {
        use crate::store::admission::{ReadPriority, with_priority};
        use futures::future::BoxFuture;
        use tokio::time::Instant;

        const KIB: u64 = 1 << 10;
        let memory: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let key = Path::from("k");
        memory
            .put(&key, Bytes::from(vec![7u8; 256 << 10]).into())
            .await
            .expect("put");
        let store = Arc::new(
            InstrumentedStore::new(memory, "mem")
                .with_max_requests(1)
                .with_max_bytes_per_sec(Some(64 * KIB)),
        );
        let counters = store.counters();

        // Four 64 KiB reads: the first from the burst, then one a second.
        let started = Instant::now();
        for i in 0..4 {
            store
                .get_range(&key, i * 64 * KIB..(i + 1) * 64 * KIB)
                .await
                .expect("range");
        }
        let elapsed = started.elapsed();
        assert!(
            (Duration::from_millis(2900)..=Duration::from_millis(4100)).contains(&elapsed),
            "{elapsed:?}"
        );

        // A whole-object read pays for its 256 KiB once answered.
        let started = Instant::now();
        assert_eq!(
            store
                .get(&key)
                .await
                .expect("get")
                .bytes()
                .await
                .expect("body")
                .len(),
            256 << 10
        );
        assert!(started.elapsed() < Duration::from_millis(1100));
        let started = Instant::now();
        store.get_range(&key, 0..1).await.expect("byte");
        assert!(
            started.elapsed() >= Duration::from_millis(3900),
            "{:?}",
            started.elapsed()
        );

        // With the only slot held, a later demand read overtakes a warm-up.
        let held = store.get(&key).await.expect("held");
        let read = |priority| -> BoxFuture<'static, (ReadPriority, Instant)> {
            let store = store.clone();
            let key = key.clone();
            Box::pin(with_priority(priority, async move {
                store.get_range(&key, 0..KIB).await.expect("read");
                (priority, Instant::now())
            }))
        };
        let mut warmup = read(ReadPriority::Warmup);
        assert!(futures::poll!(&mut warmup).is_pending());
        let mut demand = read(ReadPriority::Demand);
        assert!(futures::poll!(&mut demand).is_pending());
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        for waiter in [warmup, demand] {
            let tx = tx.clone();
            tokio::spawn(async move { tx.send(waiter.await).expect("receiver alive") });
        }
        drop((tx, held));
        let mut order = Vec::new();
        while let Some((priority, _)) = rx.recv().await {
            order.push(priority);
        }
        assert_eq!(order, [ReadPriority::Demand, ReadPriority::Warmup]);
        assert_eq!(counters.peak_in_flight.load(Ordering::Relaxed), 1);
        assert_eq!(counters.in_flight.load(Ordering::Relaxed), 0);
    }
}
