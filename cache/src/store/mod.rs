//! The configured data stores, built once and looked up by logical name,
//! each read through its decorators (stacked in [`decorate`]), and the
//! start-up check that a store answers ranged reads as asked (`probe`).

pub mod admission;
mod admitted;
mod counted;
mod decorator;
#[cfg(feature = "testing")]
mod faults;
mod latency;
mod probe;

use std::collections::BTreeMap;
use std::sync::Arc;

use ferry_config::{StoreKind, StoreSpec};
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::prefix::PrefixStore;
use object_store::{ObjectStore, RetryConfig};

use crate::error::{CacheError, Result};

pub use admitted::Admitted;
pub use counted::{Counted, StoreCounters};
pub use decorator::{Decorated, ReadDecorator, decorate};
#[cfg(feature = "testing")]
pub use faults::{Faults, Faulty};
pub use latency::Latency;
pub use probe::check_ranged_reads;

/// One store: its configuration and a client for it.
#[derive(Debug, Clone)]
pub struct StoreHandle {
    pub name: String,
    pub spec: StoreSpec,
    pub client: Arc<dyn ObjectStore>,
    /// Whether attributes (user metadata) can be attached to blobs here.
    pub supports_attributes: bool,
}

/// Every configured store by logical name.
#[derive(Debug, Clone, Default)]
pub struct Stores {
    by_name: BTreeMap<String, StoreHandle>,
}

impl Stores {
    pub fn open(specs: &BTreeMap<String, StoreSpec>) -> Result<Stores> {
        let mut by_name = BTreeMap::new();
        for (name, spec) in specs {
            metrics::counter!(crate::metrics::STORE_UNHEALTHY, "store" => name.clone())
                .increment(0);
            by_name.insert(name.clone(), open_store(spec)?);
        }
        Ok(Stores { by_name })
    }

    /// A registry over stores built elsewhere (tests wrap real stores to
    /// count or delay requests).
    pub fn from_handles(handles: impl IntoIterator<Item = StoreHandle>) -> Stores {
        Stores {
            by_name: handles.into_iter().map(|h| (h.name.clone(), h)).collect(),
        }
    }

    pub fn get(&self, name: &str) -> Result<&StoreHandle> {
        self.by_name
            .get(name)
            .ok_or_else(|| CacheError::UnknownStore(name.to_string()))
    }

    pub fn iter(&self) -> impl Iterator<Item = &StoreHandle> {
        self.by_name.values()
    }
}

fn open_store(spec: &StoreSpec) -> Result<StoreHandle> {
    let config_err = |reason: String| CacheError::StoreConfig {
        store: spec.name.clone(),
        reason,
    };
    let (client, supports_attributes): (Arc<dyn ObjectStore>, bool) = match &spec.kind {
        StoreKind::File { root } => {
            std::fs::create_dir_all(root)
                .map_err(|e| config_err(format!("cannot create {}: {e}", root.display())))?;
            // fsync on: a PUT is acknowledged only once its blob is on disk.
            let fs = LocalFileSystem::new_with_prefix(root)
                .map_err(|e| config_err(e.to_string()))?
                .with_fsync(true)
                .with_automatic_cleanup(true);
            (Arc::new(fs), false)
        }
        StoreKind::Memory => (Arc::new(InMemory::new()), true),
        StoreKind::S3 { bucket } => {
            let mut builder = AmazonS3Builder::new().with_bucket_name(bucket);
            for (key, value) in &spec.options {
                let key = key
                    .parse()
                    .map_err(|e| config_err(format!("option {key:?}: {e}")))?;
                builder = builder.with_config(key, value);
            }
            if let Some(endpoint) = &spec.endpoint {
                builder = builder.with_endpoint(endpoint);
            }
            builder = builder
                .with_region(spec.region.as_deref().unwrap_or("us-east-1"))
                .with_allow_http(spec.allow_http)
                .with_retry(RetryConfig {
                    max_retries: spec.max_retries,
                    retry_timeout: spec.retry_timeout,
                    ..RetryConfig::default()
                });
            if let (Some(key), Some(secret)) = (&spec.access_key_id, &spec.secret_access_key) {
                builder = builder
                    .with_access_key_id(key)
                    .with_secret_access_key(&secret.0);
            } else {
                // A key pair absent from the file comes from the process's
                // environment, under the names every AWS tool reads, so a
                // deployment keeps the secret out of its config files. Only
                // the credentials: an AWS_ENDPOINT in the environment must
                // not redirect a store the file points elsewhere.
                for (var, key) in [
                    ("AWS_ACCESS_KEY_ID", AmazonS3ConfigKey::AccessKeyId),
                    ("AWS_SECRET_ACCESS_KEY", AmazonS3ConfigKey::SecretAccessKey),
                    ("AWS_SESSION_TOKEN", AmazonS3ConfigKey::Token),
                ] {
                    if let Some(value) = std::env::var(var).ok().filter(|v| !v.is_empty()) {
                        builder = builder.with_config(key, value);
                    }
                }
            }
            let s3 = builder.build().map_err(|e| config_err(e.to_string()))?;
            (Arc::new(s3), true)
        }
        StoreKind::Gcs { .. } | StoreKind::Azure { .. } => {
            return Err(config_err(format!(
                "{}: this build of ferry includes file://, memory:// and s3:// stores",
                spec.url
            )));
        }
    };
    let client: Arc<dyn ObjectStore> = if spec.prefix.is_empty() {
        client
    } else {
        Arc::new(PrefixStore::new(client, spec.prefix.as_str()))
    };
    Ok(StoreHandle {
        name: spec.name.clone(),
        spec: spec.clone(),
        client: decorated(client, spec),
        supports_attributes,
    })
}

/// `client` behind the decorators every configured store is read through,
/// outermost first: admission by priority within the store's limits (a
/// read waits here, before it counts as in flight), counting of requests
/// and bytes, then the simulated latency of a benchmark's slow store.
fn decorated(mut client: Arc<dyn ObjectStore>, spec: &StoreSpec) -> Arc<dyn ObjectStore> {
    if !spec.simulated_latency.is_zero() {
        client = decorate(client, Latency(spec.simulated_latency));
    }
    client = decorate(client, Counted::new(&spec.name));
    if let Some(admitted) = Admitted::new(&spec.name, spec.max_requests, spec.max_bytes_per_sec) {
        client = decorate(client, admitted);
    }
    client
}
