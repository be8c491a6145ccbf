//! Benchmarks of the S3 surface: listing large namespaces and small PUTs.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ferry_meta::{Entry, Layout, Meta, Precondition, now_millis};
use futures::{StreamExt, TryStreamExt};
use object_store::aws::AmazonS3Builder;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};

use crate::{BenchEndpoint, PopulateArgs};

fn client(endpoint: &BenchEndpoint) -> Result<Arc<dyn ObjectStore>, String> {
    let store = AmazonS3Builder::new()
        .with_endpoint(&endpoint.endpoint)
        .with_allow_http(true)
        .with_region(&endpoint.region)
        .with_bucket_name(&endpoint.bucket)
        .with_access_key_id(&endpoint.access_key)
        .with_secret_access_key(&endpoint.secret_key)
        .with_virtual_hosted_style_request(false)
        .build()
        .map_err(|e| e.to_string())?;
    Ok(Arc::new(store))
}

/// The i-th key of a layout: `flat` puts every key in one directory,
/// `tree` spreads them over a 3-level tree of 100-way directories.
fn key_for(layout: &str, i: u64) -> String {
    match layout {
        "tree" => format!(
            "d{:02}/s{:02}/f{:06}.bin",
            (i / 10_000) % 100,
            (i / 100) % 100,
            i
        ),
        _ => format!("dir/f{i:07}.bin"),
    }
}

/// Writes `keys` empty-layout entries straight into the namespace (the
/// server must be stopped for the embedded engine). This is the fast way to
/// build a million-key listing benchmark; the entries have no data.
pub async fn populate(meta: Arc<dyn Meta>, args: &PopulateArgs) -> Result<(), String> {
    match meta.create_bucket(&args.bucket).await {
        Ok(_) | Err(ferry_meta::MetaError::BucketExists { .. }) => {}
        Err(e) => return Err(e.to_string()),
    }
    let started = Instant::now();
    let layout = args.layout.clone();
    let bucket = args.bucket.clone();
    futures::stream::iter(0..args.keys)
        .map(|i| {
            let meta = meta.clone();
            let (layout, bucket) = (layout.clone(), bucket.clone());
            async move {
                let entry = Entry {
                    id: uuid::Uuid::now_v7().to_string(),
                    size: 0,
                    etag: "d41d8cd98f00b204e9800998ecf8427e".into(),
                    last_modified: now_millis(),
                    content_type: Some("binary/octet-stream".into()),
                    ..Entry::default()
                };
                meta.put(
                    &bucket,
                    &key_for(&layout, i),
                    entry,
                    Layout::default(),
                    Precondition::None,
                )
                .await
                .map_err(|e| e.to_string())
            }
        })
        .buffer_unordered(64)
        .try_for_each(|_| async { Ok(()) })
        .await?;
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{{\"bench\":\"populate\",\"keys\":{},\"layout\":\"{}\",\"seconds\":{secs:.2},\"puts_per_second\":{:.0}}}",
        args.keys,
        args.layout,
        args.keys as f64 / secs
    );
    Ok(())
}

/// Pages through a whole bucket (`delimiter` off), or walks it directory by
/// directory with delimiter listings (`walk` on).
pub async fn list(endpoint: &BenchEndpoint, walk: bool) -> Result<(), String> {
    let store = client(endpoint)?;
    let started = Instant::now();
    let (keys, prefixes, requests) = if walk {
        let mut queue: VecDeque<Option<Path>> = VecDeque::from([None]);
        let (mut keys, mut prefixes, mut requests) = (0u64, 0u64, 0u64);
        while let Some(prefix) = queue.pop_front() {
            let listing = store
                .list_with_delimiter(prefix.as_ref())
                .await
                .map_err(|e| e.to_string())?;
            requests += 1 + (listing.objects.len() + listing.common_prefixes.len()) as u64 / 1000;
            keys += listing.objects.len() as u64;
            prefixes += listing.common_prefixes.len() as u64;
            queue.extend(listing.common_prefixes.into_iter().map(Some));
        }
        (keys, prefixes, requests)
    } else {
        let mut stream = store.list(None);
        let mut keys = 0u64;
        while let Some(item) = stream.next().await {
            item.map_err(|e| e.to_string())?;
            keys += 1;
        }
        (keys, 0, keys.div_ceil(1000))
    };
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{{\"bench\":\"list\",\"walk\":{walk},\"keys\":{keys},\"prefixes\":{prefixes},\"pages\":{requests},\"seconds\":{secs:.2},\"keys_per_second\":{:.0}}}",
        keys as f64 / secs
    );
    Ok(())
}

/// PUTs `count` objects of `size` bytes with `concurrency` in flight.
pub async fn put(
    endpoint: &BenchEndpoint,
    size: usize,
    count: u64,
    concurrency: usize,
) -> Result<(), String> {
    let store = client(endpoint)?;
    let body = Bytes::from(vec![0x5a; size]);
    let run = uuid::Uuid::new_v4().simple().to_string();
    let started = Instant::now();
    let mut latencies: Vec<Duration> = futures::stream::iter(0..count)
        .map(|i| {
            let (store, body, run) = (store.clone(), body.clone(), run.clone());
            async move {
                let t = Instant::now();
                store
                    .put(&Path::from(format!("bench-put/{run}/{i:08}")), body.into())
                    .await
                    .map(|_| t.elapsed())
                    .map_err(|e| e.to_string())
            }
        })
        .buffer_unordered(concurrency.max(1))
        .try_collect()
        .await?;
    let secs = started.elapsed().as_secs_f64();
    let (p50, p99) = percentiles(std::mem::take(&mut latencies));
    println!(
        "{{\"bench\":\"put\",\"size\":{size},\"count\":{count},\"concurrency\":{concurrency},\"seconds\":{secs:.2},\"puts_per_second\":{:.0},\"p50_ms\":{p50:.2},\"p99_ms\":{p99:.2}}}",
        count as f64 / secs,
    );
    Ok(())
}

fn percentiles(mut samples: Vec<Duration>) -> (f64, f64) {
    samples.sort();
    let pick = |q: f64| {
        samples
            .get(((samples.len() as f64 - 1.0) * q).round() as usize)
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    (pick(0.5), pick(0.99))
}

/// HEAD and small-GET latency, one request at a time, on an object it writes.
pub async fn latency(endpoint: &BenchEndpoint, size: usize, count: u64) -> Result<(), String> {
    let store = client(endpoint)?;
    let key = Path::from(format!("bench-latency/{}", uuid::Uuid::new_v4().simple()));
    store
        .put(&key, Bytes::from(vec![0x42; size]).into())
        .await
        .map_err(|e| e.to_string())?;
    // Warm connections and caches before measuring.
    for _ in 0..20 {
        store.head(&key).await.map_err(|e| e.to_string())?;
    }
    let mut heads = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let t = Instant::now();
        store.head(&key).await.map_err(|e| e.to_string())?;
        heads.push(t.elapsed());
    }
    let mut gets = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let t = Instant::now();
        store
            .get(&key)
            .await
            .map_err(|e| e.to_string())?
            .bytes()
            .await
            .map_err(|e| e.to_string())?;
        gets.push(t.elapsed());
    }
    let (head50, head99) = percentiles(heads);
    let (get50, get99) = percentiles(gets);
    println!(
        "{{\"bench\":\"latency\",\"size\":{size},\"count\":{count},\"head_p50_ms\":{head50:.3},\"head_p99_ms\":{head99:.3},\"get_p50_ms\":{get50:.3},\"get_p99_ms\":{get99:.3}}}"
    );
    Ok(())
}
