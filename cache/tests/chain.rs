//! The store chain over real local-folder stores, with faults switched on
//! and off while reads run: a blob missing in the first store, a first
//! store that is down, slow, or down for a while, and hedged reads.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use ferry_cache::ChainSource;
use ferry_cache::store::{Counted, Faults, Faulty, decorate};
use ferry_cache::{BlockAddr, BlockSource, StoreCounters, StoreHandle, Stores};
use ferry_config::StoreSpec;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};

const BLOCK: u64 = 64 * 1024;

/// `edge` (falling back to `central`) and `central`, each a folder.
fn specs(edge: &std::path::Path, central: &std::path::Path, attempt: &str) -> Vec<StoreSpec> {
    let raw = ferry_config::RawConfig::from_toml(&format!(
        "[stores.data]\nurl = \"file://{}\"\nfallback = [\"central\"]\nattempt_timeout = \"{attempt}\"\n\
         [stores.central]\nurl = \"file://{}\"\nowned = false\n",
        edge.display(),
        central.display()
    ))
    .expect("toml");
    let config = raw
        .build(&Default::default(), &ferry_config::Overrides::default())
        .expect("config");
    vec![
        config.stores["data"].clone(),
        config.stores["central"].clone(),
    ]
}

struct Chain {
    source: ChainSource,
    edge: Arc<StoreCounters>,
    central: Arc<StoreCounters>,
    edge_faults: Arc<Faults>,
    _dirs: (tempfile::TempDir, tempfile::TempDir),
    edge_dir: std::path::PathBuf,
    central_dir: std::path::PathBuf,
}

fn chain(attempt: &str) -> Chain {
    let (edge_dir, central_dir) = (
        tempfile::tempdir().expect("tmp"),
        tempfile::tempdir().expect("tmp"),
    );
    let edge_faults = Arc::new(Faults::default());
    let mut counters = Vec::new();
    let handles: Vec<StoreHandle> = specs(edge_dir.path(), central_dir.path(), attempt)
        .into_iter()
        .map(|spec| {
            let root = if spec.name == "data" {
                edge_dir.path()
            } else {
                central_dir.path()
            };
            let local: Arc<dyn ObjectStore> =
                Arc::new(LocalFileSystem::new_with_prefix(root).expect("fs"));
            let faulty = if spec.name == "data" {
                decorate(
                    local,
                    Faulty {
                        faults: edge_faults.clone(),
                        fail_after: None,
                    },
                )
            } else {
                local
            };
            let counted = Counted::new(&spec.name);
            counters.push(counted.counters());
            StoreHandle {
                name: spec.name.clone(),
                spec,
                client: decorate(faulty, counted),
                supports_attributes: false,
            }
        })
        .collect();
    let central = counters.pop().expect("central");
    let edge = counters.pop().expect("edge");
    Chain {
        source: ChainSource::new(Stores::from_handles(handles)),
        edge,
        central,
        edge_faults,
        edge_dir: edge_dir.path().to_path_buf(),
        central_dir: central_dir.path().to_path_buf(),
        _dirs: (edge_dir, central_dir),
    }
}

fn body(seed: u8) -> Vec<u8> {
    (0..BLOCK as usize)
        .map(|i| (i as u8).wrapping_mul(seed) ^ seed)
        .collect()
}

async fn write(root: &std::path::Path, blob: &str, bytes: &[u8]) {
    let store = LocalFileSystem::new_with_prefix(root).expect("fs");
    store
        .put(&Path::from(blob), Bytes::copy_from_slice(bytes).into())
        .await
        .expect("write blob");
}

fn addr(blob: &str) -> BlockAddr {
    BlockAddr {
        store: "data".into(),
        blob: blob.into(),
        version: String::new(),
        block_size: BLOCK,
        index: 0,
        len: BLOCK,
        pinned: false,
    }
}

async fn read(chain: &Chain, blob: &str) -> Result<Vec<u8>, String> {
    chain
        .source
        .fetch(&addr(blob), 0..BLOCK)
        .await
        .map(|f| f.bytes.to_vec())
        .map_err(|e| e.to_string())
}

#[tokio::test]
async fn a_blob_missing_in_the_first_store_is_read_from_the_next() {
    let chain = chain("3s");
    let data = body(3);
    write(&chain.central_dir, "blobs/only-central", &data).await;
    assert_eq!(
        read(&chain, "blobs/only-central").await.as_deref(),
        Ok(&data[..])
    );
    assert_eq!((chain.edge.gets(), chain.central.gets()), (1, 1));
    // Where the first store has it, the next is not asked.
    write(&chain.edge_dir, "blobs/both", &data).await;
    write(&chain.central_dir, "blobs/both", &body(9)).await;
    assert_eq!(read(&chain, "blobs/both").await.as_deref(), Ok(&data[..]));
    assert_eq!(chain.central.gets(), 1);
    // Missing everywhere is a missing blob, not a store failure.
    let err = read(&chain, "blobs/nowhere")
        .await
        .err()
        .unwrap_or_default();
    assert!(err.contains("missing"), "{err}");
}

#[tokio::test]
async fn a_failing_first_store_is_skipped_for_a_while() {
    let chain = chain("3s");
    let data = body(5);
    write(&chain.edge_dir, "blobs/b", &data).await;
    write(&chain.central_dir, "blobs/b", &data).await;
    chain.edge_faults.down.store(true, Ordering::Relaxed);
    for _ in 0..5 {
        assert_eq!(read(&chain, "blobs/b").await.as_deref(), Ok(&data[..]));
    }
    // Asked once, then skipped while unhealthy; reads still succeed.
    assert_eq!(
        chain.edge.gets(),
        1,
        "a store marked unhealthy was asked first again"
    );
    assert_eq!(chain.central.gets(), 5);
}

#[tokio::test]
async fn a_dead_first_store_costs_its_attempt_timeout_not_its_retries() {
    let chain = chain("200ms");
    let data = body(7);
    write(&chain.edge_dir, "blobs/b", &data).await;
    write(&chain.central_dir, "blobs/b", &data).await;
    // Hangs far longer than the attempt timeout (a black-holed store).
    chain
        .edge_faults
        .extra_delay_ms
        .store(60_000, Ordering::Relaxed);
    let started = std::time::Instant::now();
    assert_eq!(read(&chain, "blobs/b").await.as_deref(), Ok(&data[..]));
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "the chain waited out the store"
    );
    assert_eq!(chain.central.gets(), 1);
}

#[tokio::test]
async fn an_outage_of_the_first_store_fails_no_read_and_it_is_used_again_after() {
    let chain = chain("3s");
    let data = body(11);
    write(&chain.edge_dir, "blobs/b", &data).await;
    write(&chain.central_dir, "blobs/b", &data).await;
    assert_eq!(read(&chain, "blobs/b").await.as_deref(), Ok(&data[..]));
    chain.edge_faults.down.store(true, Ordering::Relaxed);
    for _ in 0..20 {
        assert_eq!(read(&chain, "blobs/b").await.as_deref(), Ok(&data[..]));
    }
    chain.edge_faults.down.store(false, Ordering::Relaxed);
    // Once its unhealthy time is over it is tried first again, and answers.
    let mut back = false;
    for _ in 0..60 {
        let (edge_before, central_before) = (chain.edge.gets(), chain.central.gets());
        assert_eq!(read(&chain, "blobs/b").await.as_deref(), Ok(&data[..]));
        if chain.edge.gets() > edge_before && chain.central.gets() == central_before {
            back = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(back, "the first store was not used again after its outage");
}

#[tokio::test]
async fn a_slow_first_store_is_hedged_to_the_next_within_a_budget() {
    let chain = chain("10s");
    let data = body(13);
    write(&chain.edge_dir, "blobs/b", &data).await;
    write(&chain.central_dir, "blobs/b", &data).await;
    // Learn the first store's latency while it is quick. A read that the
    // shared test machine stalls may be hedged (within the budget's
    // burst); what counts is that the slow store below is.
    for _ in 0..40 {
        assert_eq!(read(&chain, "blobs/b").await.as_deref(), Ok(&data[..]));
    }
    let stalled = chain.central.gets();
    assert!(stalled <= 2, "a quick store was hedged {stalled} times");
    // Now it is slow: a demand read is hedged and the next store's answer wins.
    chain
        .edge_faults
        .extra_delay_ms
        .store(1_000, Ordering::Relaxed);
    let started = std::time::Instant::now();
    assert_eq!(read(&chain, "blobs/b").await.as_deref(), Ok(&data[..]));
    assert!(
        started.elapsed() < Duration::from_millis(900),
        "the read waited for the slow store"
    );
    assert_eq!(chain.central.gets(), stalled + 1);
    // The budget (5 % of reads plus a small burst) stops hedging a slow
    // store on every read.
    for _ in 0..10 {
        assert_eq!(read(&chain, "blobs/b").await.as_deref(), Ok(&data[..]));
    }
    let hedges = chain.central.gets() - stalled;
    assert!(hedges < 11, "every read was hedged ({hedges})");
}
