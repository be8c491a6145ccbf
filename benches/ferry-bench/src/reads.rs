//! `ferry bench read`: the read workloads of a model loader against one
//! endpoint — an S3 endpoint (SigV4) or a plain HTTP URL (nginx, a presigned
//! URL's server, ...). One JSON object per workload goes to stdout.
//!
//! Both kinds of endpoint are read through object_store's HTTP stack
//! (reqwest over hyper), so every endpoint pays the same client cost: S3 with
//! `AmazonS3`, plain HTTP with `HttpStore`. Bodies are streamed and
//! discarded chunk by chunk; no object is ever held in memory whole.
//!
//! Units: GB is 10^9 bytes; latencies are in milliseconds, to the last body
//! byte. CPU seconds are utime + stime from /proc (server: `--server-pid`,
//! summed when given several times; client: this process), so a run can tell
//! when the client, not the server, was the limit on a 2-core machine.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use clap::Args;
use futures::{StreamExt, TryStreamExt};
use http::StatusCode;
use http::header::{CONTENT_RANGE, RANGE};
use object_store::aws::AmazonS3Builder;
use object_store::client::{
    HttpClient, HttpConnector, HttpError, HttpRequest, HttpResponse, HttpService, ReqwestConnector,
};
use object_store::http::HttpBuilder;
use object_store::path::Path;
use object_store::{ClientOptions, GetOptions, GetRange, ObjectStore, ObjectStoreExt, RetryConfig};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const MIB: u64 = 1024 * 1024;
const ALL_WORKLOADS: &[&str] = &[
    "head",
    "safetensors",
    "stream",
    "parallel",
    "random256k",
    "random4m",
    "herd",
];

/// `ferry bench read`: which endpoint, which workloads.
#[derive(Debug, Args)]
pub struct ReadArgs {
    /// S3 endpoint URL (with --bucket and --key).
    #[arg(long, conflicts_with = "http_url", required_unless_present = "http_url", requires_all = ["bucket", "key"])]
    pub endpoint: Option<String>,
    #[arg(long)]
    pub bucket: Option<String>,
    /// Object key in the bucket.
    #[arg(long)]
    pub key: Option<String>,
    #[arg(long, env = "AWS_ACCESS_KEY_ID", default_value = "")]
    pub access_key: String,
    #[arg(
        long,
        env = "AWS_SECRET_ACCESS_KEY",
        hide_env_values = true,
        default_value = ""
    )]
    pub secret_key: String,
    #[arg(long, default_value = "us-east-1")]
    pub region: String,
    /// Plain HTTP URL of the object (no signing), instead of an S3 endpoint.
    #[arg(long)]
    pub http_url: Option<String>,
    /// Comma-separated workloads: head, safetensors, stream, parallel,
    /// random256k, random4m, herd [default: all].
    #[arg(long, value_delimiter = ',')]
    pub workloads: Vec<String>,
    /// Duration of each random-range run (one per concurrency).
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Concurrencies of the random-range runs.
    #[arg(long, value_delimiter = ',', default_value = "1,16")]
    pub random_concurrency: Vec<usize>,
    /// Range size and requests in flight of the `parallel` workload.
    #[arg(long, default_value_t = 8)]
    pub part_mib: u64,
    #[arg(long, default_value_t = 8)]
    pub parallel: usize,
    /// Readers of the whole object in the `herd` workload.
    #[arg(long, default_value_t = 64)]
    pub herd: usize,
    /// Sequential requests of the `head` and `safetensors` workloads (each
    /// also stops after --seconds).
    #[arg(long, default_value_t = 1000)]
    pub count: usize,
    /// Server process(es) whose CPU time to report per workload.
    #[arg(long = "server-pid")]
    pub server_pids: Vec<u32>,
    /// Prometheus endpoint of the server (e.g. Ferry's admin /metrics): the
    /// increase of --metric over each workload is reported.
    #[arg(long)]
    pub metrics_url: Option<String>,
    /// Counters to follow at --metrics-url, each summed over the label sets
    /// it matches (`name` or `name{label="value"}`); repeat for several.
    #[arg(long = "metric", default_value = "ferry_store_bytes_read_total")]
    pub metrics: Vec<String>,
    /// Read the whole object once first (reported as workload `warmup`).
    #[arg(long)]
    pub warmup: bool,
    /// A name for the endpoint, copied into every line.
    #[arg(long, default_value = "")]
    pub label: String,
}

/// Streams a response body to nowhere; returns the byte count.
async fn drain(
    store: &dyn ObjectStore,
    path: &Path,
    range: Option<Range<u64>>,
) -> Result<u64, String> {
    let options = GetOptions {
        range: range.map(GetRange::Bounded),
        ..GetOptions::default()
    };
    let mut body = store
        .get_opts(path, options)
        .await
        .map_err(|e| e.to_string())?
        .into_stream();
    let mut n = 0u64;
    while let Some(chunk) = body.next().await {
        n += chunk.map_err(|e| e.to_string())?.len() as u64;
    }
    Ok(n)
}

/// Reads one range and checks that exactly its bytes came back.
async fn read_range(
    store: &dyn ObjectStore,
    path: &Path,
    range: Range<u64>,
) -> Result<u64, String> {
    let want = range.end - range.start;
    let got = drain(store, path, Some(range.clone())).await?;
    if got != want {
        return Err(format!("range {range:?}: {got} bytes instead of {want}"));
    }
    Ok(got)
}

/// object_store requires 206 for a ranged GET. rclone's `serve s3` answers
/// 200 with a correct Content-Range and only the range's bytes; this client
/// turns exactly that answer (a Range was asked, 200, Content-Range present)
/// into 206 and counts it. `read_range` still checks the byte count, so a
/// server that sends the whole object with 200 is caught, not mismeasured.
/// Every endpoint goes through this wrapper, so the client cost is the same.
#[derive(Debug, Default)]
struct Connector {
    rewritten: Arc<AtomicU64>,
}

impl HttpConnector for Connector {
    fn connect(&self, options: &ClientOptions) -> object_store::Result<HttpClient> {
        let inner = ReqwestConnector::default().connect(options)?;
        Ok(HttpClient::new(RangeAs206 {
            inner,
            rewritten: self.rewritten.clone(),
        }))
    }
}

struct RangeAs206 {
    inner: HttpClient,
    rewritten: Arc<AtomicU64>,
}

impl fmt::Debug for RangeAs206 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RangeAs206")
    }
}

#[async_trait]
impl HttpService for RangeAs206 {
    async fn call(&self, req: HttpRequest) -> Result<HttpResponse, HttpError> {
        let ranged = req.headers().contains_key(RANGE);
        let mut res = self.inner.execute(req).await?;
        if ranged && res.status() == StatusCode::OK && res.headers().contains_key(CONTENT_RANGE) {
            *res.status_mut() = StatusCode::PARTIAL_CONTENT;
            self.rewritten.fetch_add(1, Ordering::Relaxed);
        }
        Ok(res)
    }
}

fn client_options() -> ClientOptions {
    // A herd of 64 readers of a 1 GiB object on 2 cores takes minutes:
    // object_store's default 30 s request timeout would cut it short.
    ClientOptions::new()
        .with_allow_http(true)
        .with_timeout(Duration::from_secs(3600))
        .with_pool_max_idle_per_host(256)
}

/// No retries: a failed request is reported, never hidden in a latency.
fn no_retries() -> RetryConfig {
    RetryConfig {
        max_retries: 0,
        ..RetryConfig::default()
    }
}

/// The store, the object's path in it, the 200-rewrite counter, and
/// whether the endpoint speaks S3.
type Opened = (Arc<dyn ObjectStore>, Path, Arc<AtomicU64>, bool);

fn open(args: &ReadArgs) -> Result<Opened, String> {
    let connector = Connector::default();
    let rewritten = connector.rewritten.clone();
    if let Some(url) = &args.http_url {
        let cut = url
            .rfind('/')
            .filter(|&i| i > url.find("://").map_or(0, |j| j + 2))
            .ok_or_else(|| format!("--http-url {url}: no object path"))?;
        let (base, name) = url.split_at(cut + 1);
        let store = HttpBuilder::new()
            .with_url(base)
            .with_client_options(client_options())
            .with_retry(no_retries())
            .with_http_connector(connector)
            .build()
            .map_err(|e| e.to_string())?;
        let path = Path::parse(name).map_err(|e| e.to_string())?;
        return Ok((Arc::new(store), path, rewritten, false));
    }
    let (Some(endpoint), Some(bucket), Some(key)) = (&args.endpoint, &args.bucket, &args.key)
    else {
        return Err("give --endpoint, --bucket and --key, or --http-url".into());
    };
    let store = AmazonS3Builder::new()
        .with_endpoint(endpoint)
        .with_region(&args.region)
        .with_bucket_name(bucket)
        .with_access_key_id(&args.access_key)
        .with_secret_access_key(&args.secret_key)
        .with_virtual_hosted_style_request(false)
        .with_client_options(client_options())
        .with_retry(no_retries())
        .with_http_connector(connector)
        .build()
        .map_err(|e| e.to_string())?;
    let path = Path::parse(key).map_err(|e| e.to_string())?;
    Ok((Arc::new(store), path, rewritten, true))
}

/// CPU seconds (user + system) of a process so far.
fn cpu_seconds(pid: Option<u32>, ticks: f64) -> Option<f64> {
    let file = pid.map_or_else(
        || "/proc/self/stat".to_string(),
        |p| format!("/proc/{p}/stat"),
    );
    let stat = std::fs::read_to_string(file).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces:
    // state is field 3, utime 14, stime 15.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / ticks)
}

fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// Fetches a Prometheus text page over plain HTTP/1.0 and sums, for each
/// selector, the samples it matches. A selector is a metric name, optionally
/// with labels that must be present: `name{tier="disk"}`. None when the page
/// cannot be read; a selector that matches nothing counts 0.
async fn scrape(url: &str, selectors: &[String]) -> Option<Vec<f64>> {
    let rest = url.strip_prefix("http://")?;
    let (host, path) = rest.find('/').map_or((rest, "/"), |i| rest.split_at(i));
    let mut conn =
        tokio::time::timeout(Duration::from_secs(5), tokio::net::TcpStream::connect(host))
            .await
            .ok()?
            .ok()?;
    conn.write_all(format!("GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n").as_bytes())
        .await
        .ok()?;
    let mut page = String::new();
    tokio::time::timeout(Duration::from_secs(5), conn.read_to_string(&mut page))
        .await
        .ok()?
        .ok()?;
    let totals = selectors
        .iter()
        .map(|selector| {
            let (name, labels) = selector.split_once('{').unwrap_or((selector, ""));
            let labels: Vec<&str> = labels
                .trim_end_matches('}')
                .split(',')
                .filter(|l| !l.is_empty())
                .collect();
            page.lines()
                .filter(|line| {
                    line.strip_prefix(name).is_some_and(|after| {
                        (after.starts_with('{') || after.starts_with(' '))
                            && labels.iter().all(|l| after.contains(l))
                    })
                })
                .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
                .sum()
        })
        .collect();
    Some(totals)
}

fn percentile(sorted: &[Duration], q: f64) -> f64 {
    sorted
        .get(((sorted.len() as f64 - 1.0) * q).round() as usize)
        .map_or(0.0, |d| round3(d.as_secs_f64() * 1000.0))
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// What one workload measured, before the common fields are added.
struct Outcome {
    fields: Value,
    bytes: u64,
    errors: u64,
}

/// Everything a workload needs.
struct Bench {
    store: Arc<dyn ObjectStore>,
    path: Path,
    size: u64,
}

impl Bench {
    async fn stream(&self) -> Result<Outcome, String> {
        let t = Instant::now();
        let n = drain(self.store.as_ref(), &self.path, None).await?;
        if n != self.size {
            return Err(format!("GET returned {n} bytes of {}", self.size));
        }
        Ok(Outcome {
            fields: json!({"seconds": round3(t.elapsed().as_secs_f64())}),
            bytes: n,
            errors: 0,
        })
    }

    async fn parallel(&self, part: u64, in_flight: usize) -> Result<Outcome, String> {
        let size = self.size;
        let t = Instant::now();
        let bytes: u64 = futures::stream::iter(
            (0..size.div_ceil(part)).map(|i| i * part..((i + 1) * part).min(size)),
        )
        .map(|range| read_range(self.store.as_ref(), &self.path, range))
        .buffer_unordered(in_flight.max(1))
        .try_fold(0u64, |acc, n| async move { Ok(acc + n) })
        .await?;
        Ok(Outcome {
            fields: json!({"seconds": round3(t.elapsed().as_secs_f64()), "part_bytes": part, "in_flight": in_flight}),
            bytes,
            errors: 0,
        })
    }

    /// Random ranges of `len` bytes for `seconds` with `concurrency`
    /// workers; each range is block-aligned or at any byte, half and half.
    async fn random(&self, len: u64, concurrency: usize, seconds: u64) -> Result<Outcome, String> {
        let len = len.min(self.size);
        let deadline = Instant::now() + Duration::from_secs(seconds);
        let t = Instant::now();
        let mut workers = tokio::task::JoinSet::new();
        for w in 0..concurrency.max(1) {
            let (store, path, size) = (self.store.clone(), self.path.clone(), self.size);
            workers.spawn(async move {
                let mut rng = StdRng::seed_from_u64(0x5eed + w as u64);
                let (mut latencies, mut bytes, mut errors, mut last_error) =
                    (Vec::new(), 0u64, 0u64, None);
                while Instant::now() < deadline {
                    let start = if rng.random_bool(0.5) {
                        rng.random_range(0..size / len) * len
                    } else {
                        rng.random_range(0..=size - len)
                    };
                    let op = Instant::now();
                    match read_range(store.as_ref(), &path, start..start + len).await {
                        Ok(n) => {
                            latencies.push(op.elapsed());
                            bytes += n;
                        }
                        Err(e) => {
                            errors += 1;
                            last_error = Some(e);
                        }
                    }
                }
                (latencies, bytes, errors, last_error)
            });
        }
        let (mut latencies, mut bytes, mut errors, mut last_error) = (Vec::new(), 0, 0, None);
        while let Some(done) = workers.join_next().await {
            let (l, b, e, le) = done.map_err(|e| e.to_string())?;
            latencies.extend(l);
            bytes += b;
            errors += e;
            last_error = last_error.or(le);
        }
        let secs = t.elapsed().as_secs_f64();
        latencies.sort();
        Ok(Outcome {
            fields: json!({
                "range_bytes": len,
                "concurrency": concurrency,
                "seconds": round3(secs),
                "ops": latencies.len(),
                "ops_per_s": (latencies.len() as f64 / secs).round(),
                "p50_ms": percentile(&latencies, 0.5),
                "p99_ms": percentile(&latencies, 0.99),
                "last_error": last_error,
            }),
            bytes,
            errors,
        })
    }

    async fn head(&self, count: usize, seconds: u64) -> Result<Outcome, String> {
        for _ in 0..5 {
            self.store
                .head(&self.path)
                .await
                .map_err(|e| e.to_string())?;
        }
        let deadline = Instant::now() + Duration::from_secs(seconds);
        let mut latencies = Vec::with_capacity(count);
        while latencies.len() < count && Instant::now() < deadline {
            let t = Instant::now();
            let meta = self
                .store
                .head(&self.path)
                .await
                .map_err(|e| e.to_string())?;
            latencies.push(t.elapsed());
            if meta.size != self.size {
                return Err(format!("HEAD size {} instead of {}", meta.size, self.size));
            }
        }
        latencies.sort();
        Ok(Outcome {
            fields: json!({"count": latencies.len(), "p50_ms": percentile(&latencies, 0.5), "p99_ms": percentile(&latencies, 0.99)}),
            bytes: 0,
            errors: 0,
        })
    }

    /// How a loader opens a safetensors file: the 8-byte little-endian
    /// header length, then the JSON header. Each sample is the pair.
    async fn safetensors(&self, count: usize, seconds: u64) -> Result<Outcome, String> {
        let header_len = |b: &[u8]| -> Result<u64, String> {
            let raw: [u8; 8] = b
                .try_into()
                .map_err(|_| format!("{} length bytes instead of 8", b.len()))?;
            let n = u64::from_le_bytes(raw);
            if n == 0 || n > 100 * MIB || 8 + n > self.size {
                return Err(format!("not a safetensors file: header length {n}"));
            }
            Ok(n)
        };
        // Check once that the header is JSON, outside the timed loop.
        let n = header_len(
            &self
                .store
                .get_range(&self.path, 0..8)
                .await
                .map_err(|e| e.to_string())?,
        )?;
        let header = self
            .store
            .get_range(&self.path, 8..8 + n)
            .await
            .map_err(|e| e.to_string())?;
        serde_json::from_slice::<Value>(&header)
            .map_err(|e| format!("safetensors header is not JSON: {e}"))?;
        let deadline = Instant::now() + Duration::from_secs(seconds);
        let mut latencies = Vec::with_capacity(count);
        let mut bytes = 0;
        while latencies.len() < count && Instant::now() < deadline {
            let t = Instant::now();
            let head = self
                .store
                .get_range(&self.path, 0..8)
                .await
                .map_err(|e| e.to_string())?;
            let n = header_len(&head)?;
            let header = self
                .store
                .get_range(&self.path, 8..8 + n)
                .await
                .map_err(|e| e.to_string())?;
            latencies.push(t.elapsed());
            if header.len() as u64 != n {
                return Err(format!("header: {} bytes instead of {n}", header.len()));
            }
            bytes += 8 + n;
        }
        latencies.sort();
        Ok(Outcome {
            fields: json!({
                "count": latencies.len(),
                "header_bytes": n,
                "p50_ms": percentile(&latencies, 0.5),
                "p99_ms": percentile(&latencies, 0.99),
            }),
            bytes,
            errors: 0,
        })
    }

    /// `readers` whole-object GETs released together by a barrier.
    async fn herd(&self, readers: usize) -> Result<Outcome, String> {
        let readers = readers.max(1);
        let barrier = Arc::new(tokio::sync::Barrier::new(readers));
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..readers {
            let (store, path, barrier) = (self.store.clone(), self.path.clone(), barrier.clone());
            tasks.spawn(async move {
                barrier.wait().await;
                let start = Instant::now();
                let result = drain(store.as_ref(), &path, None).await;
                (start, Instant::now(), result)
            });
        }
        let (mut first, mut last) = (None::<Instant>, None::<Instant>);
        let (mut times, mut bytes, mut errors, mut last_error) = (Vec::new(), 0u64, 0u64, None);
        while let Some(done) = tasks.join_next().await {
            let (start, end, result) = done.map_err(|e| e.to_string())?;
            first = Some(first.map_or(start, |f| f.min(start)));
            last = Some(last.map_or(end, |l| l.max(end)));
            match result {
                Ok(n) if n == self.size => {
                    bytes += n;
                    times.push(end - start);
                }
                Ok(n) => {
                    errors += 1;
                    last_error = Some(format!("{n} bytes of {}", self.size));
                }
                Err(e) => {
                    errors += 1;
                    last_error = Some(e);
                }
            }
        }
        let wall = match (first, last) {
            (Some(f), Some(l)) => (l - f).as_secs_f64(),
            _ => 0.0,
        };
        times.sort();
        let secs = |q: f64| percentile(&times, q) / 1000.0;
        Ok(Outcome {
            fields: json!({
                "readers": readers,
                "seconds": round3(wall),
                "wall_s": round3(wall),
                "reader_p50_s": round3(secs(0.5)),
                "reader_max_s": round3(secs(1.0)),
                "last_error": last_error,
            }),
            bytes,
            errors,
        })
    }
}

/// Runs the chosen workloads in a fixed order and prints a line for each.
pub async fn read(args: &ReadArgs) -> Result<(), String> {
    let mut chosen: Vec<&str> = if args.workloads.is_empty() {
        ALL_WORKLOADS.to_vec()
    } else {
        let mut chosen = Vec::new();
        for w in &args.workloads {
            let w = w.trim();
            match ALL_WORKLOADS.iter().find(|&&a| a == w) {
                Some(a) => chosen.push(*a),
                None => {
                    return Err(format!(
                        "--workloads: unknown workload '{w}' (known: {})",
                        ALL_WORKLOADS.join(", ")
                    ));
                }
            }
        }
        chosen
    };
    if args.warmup {
        chosen.insert(0, "warmup");
    }
    let (store, path, rewritten, is_s3) = open(args)?;
    let size = store
        .head(&path)
        .await
        .map_err(|e| format!("HEAD {path}: {e}"))?
        .size;
    if size == 0 {
        return Err(format!("{path} is empty"));
    }
    let bench = Bench { store, path, size };
    let ticks = clock_ticks();
    let server_cpu = || -> Option<f64> {
        if args.server_pids.is_empty() {
            return None;
        }
        args.server_pids
            .iter()
            .map(|&p| cpu_seconds(Some(p), ticks))
            .sum()
    };
    let target = args.http_url.clone().unwrap_or_else(|| {
        format!(
            "{}/{}/{}",
            args.endpoint.as_deref().unwrap_or(""),
            args.bucket.as_deref().unwrap_or(""),
            args.key.as_deref().unwrap_or("")
        )
    });

    let mut runs: Vec<(&str, Option<usize>)> = Vec::new();
    for w in chosen {
        if w.starts_with("random") {
            runs.extend(args.random_concurrency.iter().map(|&c| (w, Some(c))));
        } else {
            runs.push((w, None));
        }
    }
    for (workload, concurrency) in runs {
        let metrics_before = match &args.metrics_url {
            Some(url) => scrape(url, &args.metrics).await,
            None => None,
        };
        let (server0, client0) = (server_cpu(), cpu_seconds(None, ticks));
        let rewritten0 = rewritten.load(Ordering::Relaxed);
        let outcome = match workload {
            "warmup" | "stream" => bench.stream().await,
            "parallel" => {
                bench
                    .parallel(args.part_mib.max(1) * MIB, args.parallel)
                    .await
            }
            "random256k" => {
                bench
                    .random(256 * 1024, concurrency.unwrap_or(1), args.seconds)
                    .await
            }
            "random4m" => {
                bench
                    .random(4 * MIB, concurrency.unwrap_or(1), args.seconds)
                    .await
            }
            "head" => bench.head(args.count, args.seconds).await,
            "safetensors" => bench.safetensors(args.count, args.seconds).await,
            "herd" => bench.herd(args.herd).await,
            other => Err(format!("unknown workload {other}")),
        }
        .map_err(|e| format!("{workload} on {target}: {e}"))?;
        let (server1, client1) = (server_cpu(), cpu_seconds(None, ticks));
        let metrics_after = match &args.metrics_url {
            Some(url) => scrape(url, &args.metrics).await,
            None => None,
        };

        let mut map = serde_json::Map::new();
        map.insert("bench".into(), json!("read"));
        map.insert("label".into(), json!(args.label));
        map.insert("endpoint".into(), json!(if is_s3 { "s3" } else { "http" }));
        map.insert("workload".into(), json!(workload));
        map.insert("object_bytes".into(), json!(size));
        if let Value::Object(fields) = outcome.fields {
            map.extend(fields);
        }
        let seconds = map.get("seconds").and_then(Value::as_f64);
        let gb = outcome.bytes as f64 / 1e9;
        map.insert("bytes".into(), json!(outcome.bytes));
        if let Some(s) = seconds.filter(|&s| s > 0.0 && outcome.bytes > 0) {
            map.insert("gb_per_s".into(), json!(round3(gb / s)));
        }
        map.insert("errors".into(), json!(outcome.errors));
        if let (Some(a), Some(b)) = (server0, server1) {
            map.insert("server_cpu_s".into(), json!(round3(b - a)));
            if gb > 0.0 {
                map.insert("server_cpu_s_per_gb".into(), json!(round3((b - a) / gb)));
            }
        }
        if let (Some(a), Some(b)) = (client0, client1) {
            map.insert("client_cpu_s".into(), json!(round3(b - a)));
        }
        if let (Some(a), Some(b)) = (metrics_before, metrics_after) {
            let deltas: serde_json::Map<String, Value> = args
                .metrics
                .iter()
                .zip(a.iter().zip(&b))
                .map(|(name, (a, b))| (name.clone(), json!(b - a)))
                .collect();
            map.insert("metrics".into(), Value::Object(deltas));
        } else if args.metrics_url.is_some() {
            map.insert("metrics".into(), Value::Null);
        }
        let r = rewritten.load(Ordering::Relaxed) - rewritten0;
        if r > 0 {
            map.insert("range_200_as_206".into(), json!(r));
        }
        println!("{}", Value::Object(map));
    }
    Ok(())
}
