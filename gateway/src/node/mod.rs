//! A node: the parts `ferry serve` runs, opened from the configuration in
//! one place. [`Node::open`] reads as the list of parts: metadata, stores,
//! credentials, the cluster, the block cache over its source, the region;
//! `serve` then spawns the node's workers and runs its servers.

mod cache;
mod cluster;
mod error;
mod identity;
mod region;

use std::path::PathBuf;
use std::sync::Arc;

use ferry_cache::cluster::{Cluster, OwnerSource, PeerSource};
use ferry_cache::pins::{KeptPins, Pins};
use ferry_cache::{BlockCache, BlockSource, ChainSource, Stores};
use ferry_config::{Config, Credential};
use ferry_meta::Meta;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;

use crate::auth::Keyring;
use crate::credentials::{self, Origin};
use crate::listen::tls::ServerTls;
use crate::supervisor::Workers;

pub use error::StartError;
pub use region::Region;

pub struct Node {
    pub config: Config,
    pub meta: Arc<dyn Meta>,
    pub stores: Stores,
    pub keyring: Keyring,
    /// Every read goes through it (it keeps nothing when the cache is off).
    pub cache: Arc<BlockCache>,
    pub cluster: Option<Arc<Cluster>>,
    pub region: Region,
    /// Who holds this node's leases (collector, imports, mirror).
    pub identity: String,
    /// `None` when another recorder was installed first (tests in one
    /// process).
    pub metrics: Option<PrometheusHandle>,
    /// What the background workers went through (panics, restarts), for
    /// `/health`.
    pub workers: Arc<Workers>,
    /// Credentials made at this start, to show once the node serves.
    pub generated: Option<(Credential, PathBuf)>,
    /// The listeners' certificate and settings; `None`: plain HTTP.
    pub tls: Option<Arc<ServerTls>>,
    /// Where pins set at run time are kept (the cluster's Redis, or a file
    /// beside the disk tier).
    pub kept_pins: Arc<KeptPins>,
    /// Its samples and its peers', and its long jobs: the status page.
    pub status: Arc<crate::status::Status>,
    /// The peer endpoint, bound when joining the cluster (the address it
    /// advertises must be known before the others are told).
    pub(crate) peer_listener: Option<TcpListener>,
}

impl Node {
    pub async fn open(mut config: Config) -> Result<Node, StartError> {
        // Certificates first: a bad file is a start-up error before anything
        // is opened.
        let tls = ServerTls::load(&config.tls)?.map(Arc::new);
        let client_tls = crate::listen::tls::client_tls(&config.tls)?;
        std::fs::create_dir_all(&config.data_dir)
            .map_err(StartError::file("create data dir", &config.data_dir))?;
        let metrics = match crate::metrics::install() {
            Ok(handle) => Some(handle),
            Err(e) => {
                tracing::warn!(error = %e, "metrics recorder not installed");
                None
            }
        };
        let meta = ferry_meta::open(&config.meta).await?;
        let stores = Stores::open(&config.stores)?;
        ferry_cache::check_ranged_reads(&stores).await?;
        let generated = own_credentials(&mut config)?;
        let keyring = Keyring::new(&config.credentials, &config.server.region);

        // Each logical store reads through its chain (itself, then its
        // fallbacks); in a cluster, blocks are asked of their owners first.
        let store_source: Arc<dyn BlockSource> = Arc::new(ChainSource::new(stores.clone()));
        let (cluster, peer_listener) = match &config.cluster {
            Some(cluster_config) => {
                let (cluster, listener) =
                    cluster::join(&config, cluster_config, &client_tls).await?;
                (Some(Arc::new(cluster)), Some(listener))
            }
            None => (None, None),
        };
        let sources = match &cluster {
            Some(cluster) => {
                let owner = Arc::new(OwnerSource::new(cluster.node.clone(), store_source));
                cache::Sources {
                    own: Arc::new(PeerSource::new(cluster.node.clone(), owner.clone())),
                    owner,
                }
            }
            None => cache::Sources {
                own: store_source.clone(),
                owner: store_source,
            },
        };
        let pins = Arc::new(Pins::new(config.cache.pins.clone()));
        let kept_pins = Arc::new(crate::pins::kept(&config, cluster.as_deref()));
        match kept_pins.load().await {
            Ok(runtime) => pins.set_runtime(runtime),
            // The cluster's pins arrive with the next refresh; a damaged
            // pin file is the operator's to mend (pin again to rewrite it).
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the run-time pins; starting with the configured ones")
            }
        }
        let cache = cache::open(&config, sources, pins).await?;

        let identity = identity::node_identity(&config)?;
        let warming = region::Warming {
            cache: &cache,
            node: cluster.as_ref().map(|c| c.node.clone()),
        };
        let region = Region::start(&config, &meta, &stores, &identity, &client_tls, warming)?;
        let spool = spool_dir(&config);
        std::fs::create_dir_all(&spool).map_err(StartError::file("create", &spool))?;
        let memory_tier = if cache.keeps_blocks() {
            config
                .cache
                .memory
                .unwrap_or_else(cache::default_memory_tier)
        } else {
            0
        };
        let status = Arc::new(crate::status::Status::new(
            &identity,
            metrics.clone(),
            cluster.clone(),
            memory_tier,
        ));
        Ok(Node {
            config,
            meta,
            stores,
            keyring,
            cache,
            cluster,
            region,
            identity,
            metrics,
            workers: Arc::default(),
            generated,
            tls,
            kept_pins,
            status,
            peer_listener,
        })
    }

    /// Where PUT bodies without a length wait for their signature check.
    pub fn spool_dir(&self) -> PathBuf {
        spool_dir(&self.config)
    }

    /// Flushes what must survive a restart; call once everything stopped.
    pub async fn close(&self) {
        self.cache.close().await;
    }
}

fn spool_dir(config: &Config) -> PathBuf {
    config.data_dir.join("spool")
}

/// The address `listener` (bound for `what` at `addr`) listens on.
pub(crate) fn bound_addr(
    listener: &TcpListener,
    what: &'static str,
    addr: std::net::SocketAddr,
) -> Result<std::net::SocketAddr, StartError> {
    listener
        .local_addr()
        .map_err(|source| StartError::Bind { what, addr, source })
}

/// Binds a listener, naming what it is for when it cannot.
pub(crate) async fn bind(
    what: &'static str,
    addr: std::net::SocketAddr,
) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind { what, addr, source })
}

/// A node configured without credentials makes a pair once and keeps it
/// in the data dir; the pair is returned when it was made at this start.
fn own_credentials(config: &mut Config) -> Result<Option<(Credential, PathBuf)>, StartError> {
    if !config.credentials.is_empty() {
        return Ok(None);
    }
    let (credential, origin) =
        credentials::load_or_generate(&config.data_dir).map_err(StartError::Credentials)?;
    config.credentials.push(credential.clone());
    match origin {
        Origin::Generated(path) => Ok(Some((credential, path))),
        Origin::Loaded(path) => {
            tracing::info!(access_key = %credential.access_key, file = %path.display(), "using generated credentials");
            Ok(None)
        }
    }
}
