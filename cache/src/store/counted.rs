//! Counting what reaches a store: requests and bytes by store (metrics,
//! and [`StoreCounters`] for tests), and reads in flight with their peak.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use object_store::{GetResult, GetResultPayload, Result};
use tracing::Instrument;

use super::decorator::{Read, ReadDecorator, map_body};
use crate::metrics::{STORE_BYTES_READ, STORE_ERRORS, STORE_REQUESTS};

/// Counts of the reads that reached a store.
#[derive(Debug, Default)]
pub struct StoreCounters {
    pub get_requests: AtomicU64,
    pub get_bytes: AtomicU64,
    /// Reads started and not yet finished, and the most ever at once.
    pub in_flight: AtomicU64,
    pub peak_in_flight: AtomicU64,
}

impl StoreCounters {
    pub fn gets(&self) -> u64 {
        self.get_requests.load(Ordering::Relaxed)
    }

    pub fn bytes(&self) -> u64 {
        self.get_bytes.load(Ordering::Relaxed)
    }
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

/// Counts the reads of the store named `name`.
#[derive(Debug)]
pub struct Counted {
    name: String,
    counters: Arc<StoreCounters>,
}

impl Counted {
    pub fn new(name: &str) -> Counted {
        // Each store's series exist from the start, at 0, so a rate or an
        // alert over them has a value before the first request.
        metrics::counter!(STORE_REQUESTS, "store" => name.to_string()).increment(0);
        metrics::counter!(STORE_ERRORS, "store" => name.to_string()).increment(0);
        metrics::counter!(STORE_BYTES_READ, "store" => name.to_string()).increment(0);
        Counted {
            name: name.to_string(),
            counters: Arc::default(),
        }
    }

    pub fn counters(&self) -> Arc<StoreCounters> {
        self.counters.clone()
    }
}

#[async_trait]
impl ReadDecorator for Counted {
    async fn get_opts(&self, read: Read<'_>) -> Result<GetResult> {
        // The read's span lasts until its body is read (it goes with the
        // body), so a trace shows the whole transfer.
        let span = tracing::debug_span!("store", store = %self.name, otel.kind = "client");
        let in_flight = InFlight::start(&self.counters);
        self.counters.get_requests.fetch_add(1, Ordering::Relaxed);
        metrics::counter!(STORE_REQUESTS, "store" => self.name.clone()).increment(1);
        let result = match read.pass_on().instrument(span.clone()).await {
            Ok(result) => result,
            Err(e) => {
                if !matches!(e, object_store::Error::NotFound { .. }) {
                    metrics::counter!(STORE_ERRORS, "store" => self.name.clone()).increment(1);
                }
                return Err(e);
            }
        };
        // A local file comes back as a handle: keep it, so `bytes()` reads
        // the whole range in one blocking call instead of the 8 KiB chunks
        // `into_stream` would make. Its bytes are counted up front.
        if matches!(result.payload, GetResultPayload::File(..)) {
            let len = result.range.end - result.range.start;
            self.counters.get_bytes.fetch_add(len, Ordering::Relaxed);
            metrics::counter!(STORE_BYTES_READ, "store" => self.name.clone()).increment(len);
            return Ok(result);
        }
        let (counters, store) = (self.counters.clone(), self.name.clone());
        Ok(map_body(result, move |chunk| {
            let _held = (&in_flight, &span);
            let chunk = chunk.inspect_err(|_| {
                metrics::counter!(STORE_ERRORS, "store" => store.clone()).increment(1);
            })?;
            counters
                .get_bytes
                .fetch_add(chunk.len() as u64, Ordering::Relaxed);
            metrics::counter!(STORE_BYTES_READ, "store" => store.clone())
                .increment(chunk.len() as u64);
            Ok(chunk)
        }))
    }
}
