//! Admission of reads by priority within a store's limits (reads in
//! flight, bytes per second; see [`Admission`]), so a cold fleet does not
//! set off a throttling storm. A read holds its slot until its body has
//! been consumed or dropped.

use std::time::Instant;

use async_trait::async_trait;
use object_store::{GetRange, GetResult, GetResultPayload, Result};

use super::admission::{Admission, current_priority};
use super::decorator::{Read, ReadDecorator, map_body};
use crate::metrics::STORE_ADMISSION_WAIT_SECONDS;

pub struct Admitted {
    name: String,
    admission: Admission,
}

impl std::fmt::Debug for Admitted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Admitted({})", self.name)
    }
}

impl Admitted {
    /// At most `max_requests` reads in flight (0: no cap) and
    /// `max_bytes_per_sec` (`None` or 0: no limit, else a burst of one
    /// second's worth); `None` when neither limit is set. A read of a known
    /// range pays for it before it starts; a read of unknown length (a
    /// whole object, or from an offset to the end) pays nothing up front and
    /// is charged its length once the store has answered, as a debt later
    /// reads pay.
    pub fn new(
        name: &str,
        max_requests: usize,
        max_bytes_per_sec: Option<u64>,
    ) -> Option<Admitted> {
        let rate = max_bytes_per_sec.filter(|&r| r > 0);
        (max_requests > 0 || rate.is_some()).then(|| Admitted {
            name: name.to_string(),
            admission: Admission::new(max_requests, rate),
        })
    }
}

#[async_trait]
impl ReadDecorator for Admitted {
    async fn get_opts(&self, read: Read<'_>) -> Result<GetResult> {
        // Bytes the read asks for, when the request says.
        let known_len = match &read.options.range {
            _ if read.options.head => Some(0),
            Some(GetRange::Bounded(range)) => Some(range.end.saturating_sub(range.start)),
            Some(GetRange::Suffix(len)) => Some(*len),
            Some(GetRange::Offset(_)) | None => None,
        };
        let priority = current_priority();
        let started = Instant::now();
        let slot = self
            .admission
            .acquire(priority, known_len.unwrap_or(0))
            .await;
        metrics::histogram!(
            STORE_ADMISSION_WAIT_SECONDS,
            "store" => self.name.clone(),
            "priority" => priority.label()
        )
        .record(started.elapsed().as_secs_f64());
        let result = read.pass_on().await?;
        if known_len.is_none() {
            self.admission
                .charge(result.range.end.saturating_sub(result.range.start));
        }
        // A local file is read in one call by whoever takes it: its slot
        // ends here. A stream holds the slot until it is consumed.
        if matches!(result.payload, GetResultPayload::File(..)) {
            return Ok(result);
        }
        Ok(map_body(result, move |chunk| {
            let _held = &slot;
            chunk
        }))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::Ordering;
    use std::time::Duration;

    use bytes::Bytes;
    use object_store::memory::InMemory;
    use object_store::path::Path;
    use object_store::{ObjectStore, ObjectStoreExt};

    use super::*;
    use crate::store::{Counted, Latency, StoreCounters, decorate};

    /// `inner` behind the decorators in the order `store::decorate` uses.
    fn stack(
        inner: Arc<dyn ObjectStore>,
        latency: Option<Duration>,
        max_requests: usize,
        max_bytes_per_sec: Option<u64>,
    ) -> (Arc<dyn ObjectStore>, Arc<StoreCounters>) {
        let mut store = inner;
        if let Some(latency) = latency {
            store = decorate(store, Latency(latency));
        }
        let counted = Counted::new("mem");
        let counters = counted.counters();
        store = decorate(store, counted);
        let admitted = Admitted::new("mem", max_requests, max_bytes_per_sec).expect("a limit");
        (decorate(store, admitted), counters)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reads_in_flight_never_exceed_the_cap() {
        let memory: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        memory
            .put(&Path::from("k"), Bytes::from(vec![7u8; 1 << 16]).into())
            .await
            .expect("put");
        let store = stack(memory, Some(Duration::from_millis(5)), 2, None);
        let counters = store.1;
        let store = store.0;
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
        let (store, counters) = stack(memory, None, 1, Some(64 * KIB));

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
