//! `[region]`: this deployment's region, and whether it is a source whose
//! change log mirrors follow, or a mirror following one. No section: a
//! single region that serves no feed.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use serde::Deserialize;

use crate::cluster::valid_id;
use crate::error::{ConfigError, Result};
use crate::store::StoreSpec;

/// `[region]` as written.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRegion {
    /// This region's name; mirrors register under it at their source.
    pub name: Option<String>,
    /// Shared secret of the change feed (or `FERRY_FEED_SECRET`). A source
    /// without one serves no feed.
    pub feed_secret: Option<String>,
    /// The source region's admin endpoint (`http://host:9001`): set, this
    /// region is a read-only mirror of it.
    pub follow: Option<String>,
    /// Allow a plain-HTTP feed to a non-loopback address (the answers are
    /// still signed). Default false: such a `follow` needs `https://`.
    pub trusted_network: Option<bool>,
    /// Mirror: copy only blobs of objects under these `bucket/prefix`es
    /// into this region's store; others are read from the source's store.
    /// Default: everything.
    #[serde(default)]
    pub replicate: Vec<String>,
    /// Mirror: blobs copied at once. Default 4.
    pub replication_concurrency: Option<usize>,
    /// Source: a mirror silent this long is dropped (its log and deleted
    /// blobs are no longer kept for it). Default `24h`.
    #[serde(default, with = "humantime_serde")]
    pub mirror_timeout: Option<Duration>,
    /// Change-log records kept even when no mirror needs them (in any
    /// region: a mirror's own log, and one without a feed, are trimmed to
    /// this). Default 100000.
    pub log_keep: Option<u64>,
    /// `[[region.warm]]`: prefixes whose new objects the region's cache
    /// cluster loads as they arrive (in a source or a mirror).
    #[serde(default)]
    pub warm: Vec<RawWarm>,
    /// Blocks in flight at once while warming arrivals. Default 8.
    pub warm_concurrency: Option<usize>,
}

/// `[[region.warm]]` as written.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWarm {
    /// `BUCKET` or `BUCKET/PREFIX`.
    pub prefix: String,
}

#[derive(Clone, PartialEq)]
pub struct RegionConfig {
    pub name: String,
    pub feed_secret: Option<String>,
    /// `Some`: this region mirrors the source at this URL.
    pub follow: Option<String>,
    /// `bucket/prefix` filters of replication; empty: all.
    pub replicate: Vec<String>,
    pub replication_concurrency: usize,
    pub mirror_timeout: Duration,
    pub log_keep: u64,
    /// Plain HTTP between regions beyond loopback is allowed (follow URL,
    /// and the feed on a non-loopback admin port without TLS).
    pub trusted_network: bool,
    /// `BUCKET[/PREFIX]`es warmed on arrival; empty: none.
    pub warm: Vec<String>,
    pub warm_concurrency: usize,
}

impl RegionConfig {
    /// A source region (with a feed secret, following nobody) serves the
    /// change feed on its admin port.
    pub fn serves_feed(&self) -> bool {
        self.feed_secret.is_some() && self.follow.is_none()
    }

    /// A mirror follows a source and writes nothing of its own.
    pub fn is_mirror(&self) -> bool {
        self.follow.is_some()
    }
}

impl std::fmt::Debug for RegionConfig {
    // The secret never reaches a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegionConfig")
            .field("name", &self.name)
            .field(
                "feed_secret",
                &self.feed_secret.as_ref().map(|_| "<redacted>"),
            )
            .field("follow", &self.follow)
            .field("replicate", &self.replicate)
            .field("warm", &self.warm)
            .finish_non_exhaustive()
    }
}

/// The feed secret lets its holder read the whole namespace.
const MIN_SECRET: usize = 16;

impl RawRegion {
    pub(crate) fn apply_env(&mut self, env: &HashMap<String, String>) {
        if let Some(secret) = env.get("FERRY_FEED_SECRET").filter(|v| !v.is_empty()) {
            self.feed_secret = Some(secret.clone());
        }
    }

    pub(crate) fn validate(self) -> Result<RegionConfig> {
        let name = self
            .name
            .ok_or_else(|| ConfigError::invalid("region.name", "required in a [region] section"))?;
        if !valid_id(&name) {
            return Err(ConfigError::invalid(
                "region.name",
                format!("{name:?}: use 1 to 128 letters, digits, '-', '_' or '.'"),
            ));
        }
        if let Some(secret) = &self.feed_secret
            && secret.len() < MIN_SECRET
        {
            return Err(ConfigError::invalid(
                "region.feed_secret",
                format!("must be at least {MIN_SECRET} characters"),
            ));
        }
        let follow = match self.follow {
            None => None,
            Some(text) => {
                check_follow(&text, self.trusted_network.unwrap_or(false))?;
                if self.feed_secret.is_none() {
                    return Err(ConfigError::invalid(
                        "region.feed_secret",
                        "required (or FERRY_FEED_SECRET) with `follow`: the feed authenticates with it",
                    ));
                }
                Some(text.trim_end_matches('/').to_string())
            }
        };
        for (i, prefix) in self.replicate.iter().enumerate() {
            let bucket = prefix.split('/').next().unwrap_or_default();
            if bucket.is_empty() {
                return Err(ConfigError::invalid(
                    format!("region.replicate[{i}]"),
                    format!(
                        "{prefix:?} must start with a bucket name: `bucket` or `bucket/prefix`"
                    ),
                ));
            }
        }
        let mut warm = Vec::with_capacity(self.warm.len());
        for (i, w) in self.warm.into_iter().enumerate() {
            crate::cache::check_pin(&w.prefix).map_err(|reason| {
                ConfigError::invalid(format!("region.warm[{i}].prefix"), reason)
            })?;
            warm.push(w.prefix);
        }
        let warm_concurrency = self.warm_concurrency.unwrap_or(8);
        if !(1..=256).contains(&warm_concurrency) {
            return Err(ConfigError::invalid(
                "region.warm_concurrency",
                format!("{warm_concurrency}: must be 1 to 256"),
            ));
        }
        let replication_concurrency = self.replication_concurrency.unwrap_or(4);
        if !(1..=256).contains(&replication_concurrency) {
            return Err(ConfigError::invalid(
                "region.replication_concurrency",
                format!("{replication_concurrency}: must be 1 to 256"),
            ));
        }
        Ok(RegionConfig {
            name,
            feed_secret: self.feed_secret,
            follow,
            replicate: self.replicate,
            replication_concurrency,
            mirror_timeout: self
                .mirror_timeout
                .unwrap_or(Duration::from_secs(24 * 3600)),
            log_keep: self.log_keep.unwrap_or(100_000),
            trusted_network: self.trusted_network.unwrap_or(false),
            warm,
            warm_concurrency,
        })
    }
}

/// What a region's stores must be. A source (or a single region) writes
/// blobs, so its data store is one it owns (`[volume]` checks that). A
/// mirror writes nothing: its data store may be the source's bucket, read
/// only (`owned = false`): an edge without object storage of its own. But
/// it must say where the source's blobs are (the default local folder
/// holds none of them), nothing can be copied into a store it does not
/// own, and it writes no dumps there.
pub(crate) fn check_stores(
    region: &RegionConfig,
    stores: &BTreeMap<String, StoreSpec>,
    data_store: &str,
    configured_stores: &BTreeSet<String>,
    volume: &crate::VolumeConfig,
) -> Result<()> {
    if !region.is_mirror() {
        return Ok(());
    }
    if !configured_stores.contains(data_store) {
        return Err(ConfigError::invalid(
            format!("stores.{data_store}"),
            "a mirror region reads the source's blobs: configure its data store as the source's bucket (owned = false), or as a bucket of its own with fallback = [the source's]",
        ));
    }
    let owns_data = stores.get(data_store).is_some_and(|s| s.owned);
    let replicable = stores.values().any(|s| s.owned && !s.fallback.is_empty());
    if !region.replicate.is_empty() && !replicable {
        return Err(ConfigError::invalid(
            "region.replicate",
            "this mirror owns no store that falls back to the source's, so nothing can be copied: drop `replicate`, or give the mirror a bucket of its own with fallback = [the source's]",
        ));
    }
    if !owns_data && volume.dump_interval.is_some() {
        return Err(ConfigError::invalid(
            "volume.dump_interval",
            format!(
                "the data store {data_store:?} is the source's bucket (owned = false); a mirror without a bucket of its own writes no dumps (the source's dumps cover the namespace)"
            ),
        ));
    }
    Ok(())
}

/// A feed crosses clouds: plain HTTP only to loopback or a network the
/// operator calls trusted.
fn check_follow(text: &str, trusted_network: bool) -> Result<()> {
    let url = url::Url::parse(text).map_err(|e| {
        ConfigError::invalid(
            "region.follow",
            format!("{text:?} is not a URL like https://central-node:9001: {e}"),
        )
    })?;
    let loopback = match url.host() {
        Some(url::Host::Domain(name)) => name == "localhost",
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => {
            return Err(ConfigError::invalid(
                "region.follow",
                format!("{text:?} has no host"),
            ));
        }
    };
    match url.scheme() {
        "https" => Ok(()),
        "http" if loopback || trusted_network => Ok(()),
        "http" => Err(ConfigError::invalid(
            "region.follow",
            format!(
                "{text:?} is plain HTTP to a non-loopback host; use https://, or set region.trusted_network = true if the network between the regions is private"
            ),
        )),
        other => Err(ConfigError::invalid(
            "region.follow",
            format!("{text:?}: scheme {other:?} is not http or https"),
        )),
    }
}
