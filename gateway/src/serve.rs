//! `ferry serve`: open the namespace and the stores, then serve S3 and the
//! admin endpoints until SIGINT or SIGTERM.

use std::io::Write;
use std::time::Duration;

use std::sync::Arc;

use axum::serve::ListenerExt;
use ferry_cache::cluster::{Cluster, OwnerSource, PeerSource, WarmOnOpen, store_fingerprint};
use ferry_cache::region::{
    FeedClient, FeedSource, Follower, MirrorState, ReplicationPolicy, Replicator,
};
use ferry_cache::{
    BlockCache, BlockCacheConfig, BlockSource, ChainSource, Collector, Layouts, Stores,
};
use ferry_config::{ClusterConfig, Config};
use ferry_meta::Meta;
use s3s::service::S3ServiceBuilder;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::admin::{self, AdminState};
use crate::auth::{Access, Keyring};
use crate::credentials::{self, Origin};
use crate::http::{self, Instrumented};
use crate::peer::{self, PeerState};
use crate::preflight::Spool;
use crate::s3::FerryS3;

async fn bind(what: &str, addr: std::net::SocketAddr) -> Result<TcpListener, String> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen for {what} on {addr}: {e}"))
}

/// Resolves on the first SIGINT or SIGTERM. The handlers are installed
/// when this is called, not when the future is first polled, so a signal
/// that arrives right after the ready line is not fatal.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let term = signal(SignalKind::terminate());
        let int = signal(SignalKind::interrupt());
        async move {
            match (term, int) {
                (Ok(mut term), Ok(mut int)) => {
                    tokio::select! {
                        _ = term.recv() => {}
                        _ = int.recv() => {}
                    }
                }
                (term, int) => {
                    tracing::warn!(
                        term_ok = term.is_ok(),
                        int_ok = int.is_ok(),
                        "cannot watch signals; falling back to Ctrl-C"
                    );
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// A quarter of the machine's memory, at most 8 GiB (1 GiB if unknown).
fn default_memory_tier() -> u64 {
    let total = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                .map(|kib| kib * 1024)
        });
    total.map_or(1 << 30, |bytes| (bytes / 4).min(8 << 30))
}

/// The sources a node's block cache reads through: its own reads, and
/// the loads it makes for peers.
struct Sources {
    own: Arc<dyn BlockSource>,
    owner: Arc<dyn BlockSource>,
}

async fn open_cache(config: &Config, sources: Sources) -> Result<Arc<BlockCache>, String> {
    let memory = config.cache.memory.unwrap_or_else(default_memory_tier);
    let off = memory == 0 && config.cache.disk == 0;
    if off && config.cluster.is_some() {
        return Err(
            "cache.memory and cache.disk are both 0, but a cluster node needs a block cache".into(),
        );
    }
    let cache = BlockCache::open(
        &BlockCacheConfig {
            memory,
            disk: config.cache.disk,
            dir: config.cache.dir.clone(),
            block_size: config.cache.block_size,
            readahead: config.cache.readahead,
            inflight: config.cache.inflight,
        },
        sources.own,
    )
    .await
    .map_err(|e| e.to_string())?
    .with_owner_source(sources.owner);
    if off {
        tracing::info!("block cache off: every read goes to the stores");
        return Ok(Arc::new(cache));
    }
    tracing::info!(
        memory_mib = memory >> 20,
        disk_mib = if cache.has_disk_tier() { config.cache.disk >> 20 } else { 0 },
        dir = %config.cache.dir.display(),
        block_kib = config.cache.block_size >> 10,
        readahead_mib = config.cache.readahead >> 20,
        "block cache"
    );
    Ok(Arc::new(cache))
}

/// Binds the peer endpoint and joins the cluster (refused when the
/// members disagree on block size, protocol or stores).
async fn join_cluster(
    config: &Config,
    cluster: &ClusterConfig,
) -> Result<(Cluster, TcpListener), String> {
    let listener = bind("peers", cluster.peer_listen).await?;
    let bound = listener.local_addr().map_err(|e| e.to_string())?;
    let advertise = match &cluster.advertise {
        Some(address) => address.clone(),
        None if bound.ip().is_unspecified() => {
            return Err(format!(
                "cluster.advertise: peer_listen {bound} is a wildcard address; set advertise to the host:port peers reach this node at"
            ));
        }
        None => bound.to_string(),
    };
    let joined = Cluster::start(
        cluster,
        advertise.clone(),
        config.cache.block_size,
        store_fingerprint(&config.stores),
        config
            .cache
            .memory
            .unwrap_or_else(default_memory_tier)
            .saturating_add(config.cache.disk),
    )
    .await?;
    tracing::info!(
        node = %cluster.node_id,
        peer = %bound,
        advertise = %advertise,
        weight = cluster.weight,
        replicas = cluster.replicas,
        serve = cluster.serve,
        members = joined.node.membership.current().members.len(),
        "joined the cluster"
    );
    Ok((joined, listener))
}

pub async fn run(mut config: Config) -> Result<(), String> {
    std::fs::create_dir_all(&config.data_dir)
        .map_err(|e| format!("cannot create data dir {}: {e}", config.data_dir.display()))?;
    let prometheus = match crate::metrics::install() {
        Ok(handle) => Some(handle),
        Err(e) => {
            tracing::warn!(error = %e, "metrics recorder not installed");
            None
        }
    };
    let meta = ferry_meta::open(&config.meta)
        .await
        .map_err(|e| e.to_string())?;
    let stores = Stores::open(&config.stores).map_err(|e| e.to_string())?;
    ferry_cache::check_ranged_reads(&stores)
        .await
        .map_err(|e| e.to_string())?;

    let mut banner = None;
    if config.credentials.is_empty() {
        let (credential, origin) = credentials::load_or_generate(&config.data_dir)?;
        match origin {
            Origin::Generated(path) => banner = Some((credential.clone(), path)),
            Origin::Loaded(path) => {
                tracing::info!(access_key = %credential.access_key, file = %path.display(), "using generated credentials")
            }
        }
        config.credentials.push(credential);
    }
    let keyring = Keyring::new(&config.credentials, &config.server.region);
    // Each logical store reads through its chain (itself, then its
    // fallbacks); a store without fallbacks is read as a single store.
    let store_source: Arc<dyn BlockSource> = Arc::new(ChainSource::new(stores.clone()));
    let (cluster, peer_listener) = match &config.cluster {
        Some(cluster_config) => {
            let (cluster, listener) = join_cluster(&config, cluster_config).await?;
            (Some(Arc::new(cluster)), Some(listener))
        }
        None => (None, None),
    };
    let sources = match &cluster {
        Some(cluster) => {
            let owner = Arc::new(OwnerSource::new(cluster.node.clone(), store_source));
            Sources {
                own: Arc::new(PeerSource::new(cluster.node.clone(), owner.clone())),
                owner,
            }
        }
        None => Sources {
            own: store_source.clone(),
            owner: store_source,
        },
    };
    let cache = open_cache(&config, sources).await?;

    let s3 = FerryS3 {
        meta: meta.clone(),
        stores: stores.clone(),
        data_store: config.data_store.clone(),
        keyring: keyring.clone(),
        region: config.server.region.clone(),
        max_put_size: config.server.max_put_size,
        cache: cache.clone(),
        layouts: Layouts::default(),
        completion_ttl: config.volume.upload_expiry,
        stale: Default::default(),
        // Nothing to warm into a cache that keeps nothing.
        warm_on_open: if cache.keeps_blocks() {
            WarmOnOpen::new(
                &config.cache.warm_on_open,
                cache.clone(),
                cluster.as_ref().map(|c| c.node.clone()),
                cluster.as_ref().and_then(|c| c.redis().cloned()),
            )?
        } else {
            None
        },
    };
    let identity = node_identity(&config)?;
    let mut region = Region::start(&config, &meta, &stores, &identity)?;
    let mut builder = S3ServiceBuilder::new(s3);
    builder.set_auth(keyring.clone());
    let mut access = Access::new(keyring, meta.clone());
    if let (Some(mirror), Some(region_config)) = (&region.mirror, &config.region) {
        access = access.read_only_mirror(&region_config.name, mirror.clone());
    }
    builder.set_access(access);
    if !config.server.domains.is_empty() {
        builder.set_host(crate::host::VirtualHosts::new(&config.server.domains));
    }
    let spool_dir = config.data_dir.join("spool");
    std::fs::create_dir_all(&spool_dir)
        .map_err(|e| format!("cannot create {}: {e}", spool_dir.display()))?;
    let service = Instrumented::new(
        builder.build(),
        Spool {
            dir: spool_dir,
            max_size: config.server.max_put_size,
        },
    );

    let s3_listener = bind("S3", config.server.listen).await?;
    let admin_listener = bind("admin", config.server.admin_listen).await?;
    let s3_addr = s3_listener.local_addr().map_err(|e| e.to_string())?;
    let admin_addr = admin_listener.local_addr().map_err(|e| e.to_string())?;

    let stop = CancellationToken::new();
    let mut tasks = tokio::task::JoinSet::new();

    if let Some(interval) = config.volume.dump_interval {
        let store = stores
            .get(&config.data_store)
            .map_err(|e| e.to_string())?
            .clone();
        let dump_stop = stop.clone();
        let (meta, scratch, keep) = (
            meta.clone(),
            config.data_dir.clone(),
            config.volume.dump_keep,
        );
        tasks.spawn(async move {
            ferry_cache::run_scheduled_dumps(
                meta,
                store,
                scratch,
                interval,
                keep,
                dump_stop.cancelled_owned(),
            )
            .await;
        });
    }
    let collector = Collector::new(
        meta.clone(),
        stores.clone(),
        config.volume.grace,
        config.volume.lease,
    )
    .with_upload_expiry(config.volume.upload_expiry)
    .with_holder(&identity);
    let collector = match &region.feed {
        Some(feed) => collector.with_feed(feed.source.clone()),
        None => collector,
    };
    if let Some((follower, replicator)) = region.mirror_tasks.take() {
        let (follower_stop, replicator_stop) = (stop.clone(), stop.clone());
        tasks.spawn(async move { follower.run(follower_stop).await });
        tasks.spawn(async move { replicator.run(replicator_stop).await });
    }
    for schedule in config.imports.clone() {
        let (meta, stores, import_stop) = (meta.clone(), stores.clone(), stop.clone());
        let holder = identity.clone();
        tracing::info!(import = %schedule.name, every = ?schedule.every, "scheduled import");
        tasks.spawn(async move {
            ferry_cache::region::import::run_scheduled(meta, stores, schedule, holder, import_stop)
                .await
        });
    }
    let interval = config.volume.interval;
    let collector_stop = stop.clone();
    tasks.spawn(async move {
        collector
            .run(interval, collector_stop.cancelled_owned())
            .await
    });

    let admin_app = admin::app(
        AdminState {
            meta: meta.clone(),
            metrics: prometheus.clone(),
            cluster: cluster.clone(),
            cache: cache.clone(),
            stores: stores.clone(),
            token: config.admin_token.clone().map(Into::into),
            mirror: region.mirror.as_ref().map(|m| {
                (
                    m.clone(),
                    config
                        .region
                        .as_ref()
                        .map_or(Duration::from_secs(86_400), |r| r.mirror_timeout),
                )
            }),
        },
        region.feed.clone(),
    );
    let admin_stop = stop.clone();
    tasks.spawn(async move {
        if let Err(e) = axum::serve(admin_listener, admin_app)
            .with_graceful_shutdown(admin_stop.cancelled_owned())
            .await
        {
            tracing::error!(error = %e, "admin server failed");
        }
    });
    if let Some(handle) = prometheus {
        let upkeep_stop = stop.clone();
        tasks.spawn(async move {
            let mut ticker = tokio::time::interval(Duration::from_secs(5));
            loop {
                tokio::select! {
                    () = upkeep_stop.cancelled() => return,
                    _ = ticker.tick() => handle.run_upkeep(),
                }
            }
        });
    }

    // SIGTERM: leave the cluster first (peers route around this node at
    // once), stop taking S3 requests and drain them, and keep answering
    // peers for the shutdown grace so handoff can drain this node's cache.
    let term = CancellationToken::new();
    {
        let term = term.clone();
        let signal = shutdown_signal();
        tasks.spawn(async move {
            signal.await;
            term.cancel();
        });
    }
    let mut peer_server = None;
    if let (Some(cluster), Some(peer_listener), Some(cluster_config)) =
        (&cluster, peer_listener, &config.cluster)
    {
        let peer_app = peer::app(PeerState {
            cache: cache.clone(),
            node: cluster.node.clone(),
            secret: cluster_config.secret.clone().into(),
        });
        let (peer_term, grace) = (term.clone(), config.server.shutdown_grace);
        peer_server = Some(tokio::spawn(async move {
            let until = async move {
                peer_term.cancelled().await;
                tokio::time::sleep(grace).await;
            };
            // Every answer's last segment goes out at once (no Nagle wait
            // for the asker's delayed ACK), as on the S3 port.
            let peer_listener = peer_listener.tap_io(|tcp| {
                if let Err(e) = tcp.set_nodelay(true) {
                    tracing::debug!(error = %e, "could not set TCP_NODELAY on a peer connection");
                }
            });
            if let Err(e) = axum::serve(peer_listener, peer_app.into_make_service())
                .with_graceful_shutdown(until)
                .await
            {
                tracing::error!(error = %e, "peer server failed");
            }
        }));
        let (cluster, leave) = (cluster.clone(), term.clone());
        tasks.spawn(async move { cluster.run(leave.cancelled_owned()).await });
    }
    let shutdown = term.clone().cancelled_owned();
    let endpoint = format!("http://{s3_addr}");
    if let Some((credential, path)) = banner {
        println!(
            "Generated credentials, kept in {} (mode 0600):",
            path.display()
        );
        println!("  access key: {}", credential.access_key);
        println!("  secret key: {}", credential.secret_key);
        println!("Try:");
        println!(
            "  AWS_ACCESS_KEY_ID={} AWS_SECRET_ACCESS_KEY={} aws --endpoint-url {endpoint} s3 mb s3://models",
            credential.access_key, credential.secret_key
        );
    }
    tracing::info!(
        s3 = %s3_addr,
        admin = %admin_addr,
        data_dir = %config.data_dir.display(),
        meta = ?config.meta,
        data_store = %config.data_store,
        "ferry is serving"
    );
    println!("ferry ready s3={endpoint} admin=http://{admin_addr}");
    let _ = std::io::stdout().flush();

    http::serve(s3_listener, service, shutdown, config.server.shutdown_grace).await;
    if let Some(peer_server) = peer_server {
        // Peers may still be draining this node's cache (handoff).
        let _ = peer_server.await;
    }
    stop.cancel();
    let drained = tokio::time::timeout(Duration::from_secs(5), async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!("background tasks did not stop in time");
    }
    cache.close().await;
    drop(meta);
    tracing::info!("ferry stopped");
    Ok(())
}

/// This node's part in a multi-region deployment: the change feed it
/// serves (a source with a feed secret), or the follower and replication
/// worker of a mirror.
#[derive(Default)]
struct Region {
    feed: Option<crate::feed::FeedState>,
    mirror: Option<Arc<MirrorState>>,
    mirror_tasks: Option<(Follower, Arc<Replicator>)>,
}

impl Region {
    fn start(
        config: &Config,
        meta: &Arc<dyn Meta>,
        stores: &Stores,
        identity: &str,
    ) -> Result<Region, String> {
        let Some(region) = &config.region else {
            return Ok(Region::default());
        };
        let (Some(follow), Some(secret)) = (&region.follow, &region.feed_secret) else {
            let feed = region
                .feed_secret
                .as_ref()
                .map(|secret| crate::feed::FeedState {
                    source: Arc::new(FeedSource::new(
                        meta.clone(),
                        &region.name,
                        config.volume.grace,
                        region.mirror_timeout,
                        region.log_keep,
                    )),
                    secret: secret.as_bytes().into(),
                });
            tracing::info!(region = %region.name, feed = feed.is_some(), "source region");
            return Ok(Region {
                feed,
                ..Region::default()
            });
        };
        let policy = ReplicationPolicy::new(&region.replicate, stores);
        if policy.stores().next().is_none() {
            tracing::warn!(
                "mirror region without an owned store that falls back to another: no blob is replicated, every read goes to the source's store"
            );
        }
        let state = Arc::new(MirrorState::new(follow));
        let wake = Arc::new(tokio::sync::Notify::new());
        let client = FeedClient::new(follow, secret, &region.name).map_err(|e| e.to_string())?;
        let follower = Follower::new(
            meta.clone(),
            client,
            policy.clone(),
            state.clone(),
            wake.clone(),
            identity,
        );
        let replicator = Arc::new(Replicator::new(
            meta.clone(),
            stores.clone(),
            region.replication_concurrency,
            wake,
        ));
        tracing::info!(region = %region.name, %follow, replicated_stores = ?policy.stores().collect::<Vec<_>>(), "mirror region: writes are refused, the namespace follows the source");
        Ok(Region {
            feed: None,
            mirror: Some(state),
            mirror_tasks: Some((follower, replicator)),
        })
    }
}

/// This node's identity for leases: the cluster's node id, or else an id
/// made once and kept in the data dir, so a restarted node (even after a
/// kill) takes its leases back at once instead of waiting for them to
/// expire.
fn node_identity(config: &Config) -> Result<String, String> {
    if let Some(cluster) = &config.cluster {
        return Ok(cluster.node_id.clone());
    }
    let path = config.data_dir.join("node-id");
    match std::fs::read_to_string(&path) {
        Ok(id) if !id.trim().is_empty() => return Ok(id.trim().to_string()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    }
    let id = uuid::Uuid::new_v4().to_string();
    std::fs::write(&path, format!("{id}\n"))
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(id)
}
