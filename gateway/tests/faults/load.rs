//! The load of the fault matrix: readers that load models the way
//! inference servers do (safetensors headers, 16 MiB ranges, whole
//! objects; every byte checked as it streams) and a writer whose
//! acknowledged writes are read back afterwards.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path;
use object_store::{ClientOptions, GetOptions, GetRange, ObjectStore, ObjectStoreExt, RetryConfig};

use crate::common::{ACCESS_KEY, SECRET_KEY, pattern};
use crate::{BUCKET, MIB};

/// The objects each phase reads: a model's shards.
pub const OBJECTS: usize = 3;
pub const OBJECT_SIZE: usize = 24 * MIB;
pub const READERS: usize = 64;
const RANGE: usize = 16 * MIB;
/// The size of each object the writer uploads.
pub const WRITE_SIZE: usize = 256 * 1024;

/// A model: its shards' keys and bytes.
pub type Model = Vec<(String, Vec<u8>)>;

/// A client that never retries: every failure the node answers is seen.
pub fn reader_client(endpoint: &str) -> Arc<dyn ObjectStore> {
    Arc::new(
        AmazonS3Builder::new()
            .with_endpoint(endpoint)
            .with_allow_http(true)
            .with_region("us-east-1")
            .with_bucket_name(BUCKET)
            .with_access_key_id(ACCESS_KEY)
            .with_secret_access_key(SECRET_KEY)
            .with_virtual_hosted_style_request(false)
            .with_retry(RetryConfig {
                max_retries: 0,
                ..RetryConfig::default()
            })
            .with_client_options(
                ClientOptions::new()
                    .with_allow_http(true)
                    .with_timeout(Duration::from_secs(60)),
            )
            .build()
            .expect("client"),
    )
}

/// What one phase's readers and writer saw.
#[derive(Default)]
pub struct Tally {
    pub ok: u64,
    pub failed: u64,
    /// GETs whose bytes differed from the object's, or that ended early
    /// without an error.
    pub wrong: u64,
    /// The longest wait for bytes within each GET.
    pub stalls: Vec<Duration>,
    pub last_failure: Option<Instant>,
    /// The first few failures, for the report.
    pub examples: Vec<String>,
    pub writes_ok: u64,
    pub writes_failed: u64,
    /// Acknowledged writes: key, the seed of its bytes, and which of
    /// the writer's clients took it.
    pub acknowledged: Vec<(String, u8, usize)>,
}

impl Tally {
    fn failure(&mut self, what: String) {
        self.failed += 1;
        self.last_failure = Some(Instant::now());
        if self.examples.len() < 3 {
            self.examples.push(what);
        }
    }
}

/// How one GET ended.
pub enum Outcome {
    Ok(Duration),
    Failed(String),
    Wrong(String),
}

/// Reads `range` of `key` (whose bytes are `body`) as a stream, checking
/// every chunk against the object.
pub async fn read_checked(
    client: &dyn ObjectStore,
    key: &str,
    body: &[u8],
    range: std::ops::Range<usize>,
) -> Outcome {
    let started = Instant::now();
    let options = GetOptions {
        range: Some(GetRange::Bounded(range.start as u64..range.end as u64)),
        ..GetOptions::default()
    };
    let result = match client.get_opts(&Path::from(key), options).await {
        Ok(result) => result,
        Err(e) => return Outcome::Failed(format!("GET {key} {range:?}: {e}")),
    };
    let mut stream = result.into_stream();
    let mut at = range.start;
    let mut last = started;
    let mut stall = Duration::ZERO;
    while let Some(chunk) = stream.next().await {
        let now = Instant::now();
        stall = stall.max(now - last);
        last = now;
        let chunk = match chunk {
            Ok(chunk) => chunk,
            Err(e) => return Outcome::Failed(format!("GET {key} {range:?} at {at}: {e}")),
        };
        let end = at + chunk.len();
        if end > range.end || chunk[..] != body[at..end] {
            return Outcome::Wrong(format!("GET {key} {range:?}: wrong bytes at {at}"));
        }
        at = end;
    }
    if at != range.end {
        return Outcome::Wrong(format!(
            "GET {key} {range:?}: ended at {at} without an error"
        ));
    }
    Outcome::Ok(stall)
}

/// One reader's loop: a model load's mix of reads until `stop`.
pub async fn reader(
    client: Arc<dyn ObjectStore>,
    models: Arc<[Model; 2]>,
    switched: Arc<AtomicBool>,
    tally: Arc<Mutex<Tally>>,
    stop: Arc<AtomicBool>,
    seed: u64,
) {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut next = move || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 33) as usize
    };
    while !stop.load(Ordering::Relaxed) {
        // A GET that fails at once may not yield; the test's own timers
        // must still run.
        tokio::task::yield_now().await;
        let objects = &models[usize::from(switched.load(Ordering::Relaxed))];
        let (key, body) = &objects[next() % objects.len()];
        let kind = next() % 20;
        // The GETs of one step of a load, in order.
        let ranges: Vec<std::ops::Range<usize>> = if kind < 10 {
            // A safetensors header: its length, then the header itself.
            Vec::from([0..8, 8..8 + 64 * 1024])
        } else if kind < 17 {
            let start = next() % (body.len() - RANGE);
            std::iter::once(start..start + RANGE).collect()
        } else {
            std::iter::once(0..body.len()).collect()
        };
        for range in ranges {
            let outcome = read_checked(client.as_ref(), key, body, range).await;
            let mut tally = tally.lock().expect("tally");
            match outcome {
                Outcome::Ok(stall) => {
                    tally.ok += 1;
                    tally.stalls.push(stall);
                }
                Outcome::Failed(why) => {
                    if tally.failed < 3 {
                        eprintln!("faults: {why}");
                    }
                    tally.failure(why);
                    break;
                }
                Outcome::Wrong(why) => {
                    tally.wrong += 1;
                    tally.examples.push(why);
                    break;
                }
            }
        }
    }
}

/// Uploads small objects one after another until `stop`, noting which
/// were acknowledged.
pub async fn writer(
    clients: Vec<Arc<dyn ObjectStore>>,
    prefix: String,
    tally: Arc<Mutex<Tally>>,
    stop: Arc<AtomicBool>,
) {
    let mut n = 0usize;
    while !stop.load(Ordering::Relaxed) {
        let key = format!("{prefix}/w{n}");
        let seed = (n % 251) as u8;
        let took = n % clients.len();
        let client = &clients[took];
        let result = client
            .put(&Path::from(key.as_str()), pattern(seed, WRITE_SIZE).into())
            .await;
        let mut tally = tally.lock().expect("tally");
        match result {
            Ok(_) => {
                tally.writes_ok += 1;
                tally.acknowledged.push((key, seed, took));
            }
            Err(_) => tally.writes_failed += 1,
        }
        n += 1;
    }
}
