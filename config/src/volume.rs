//! `[volume]`: which store new blobs go to, and how the collector deletes
//! the ones no longer referenced.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use crate::error::{ConfigError, Result};
use crate::store::StoreSpec;
use crate::{DEFAULT_DATA_STORE, VolumeConfig};

/// `[volume]`: where blobs go and how they are collected.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawVolume {
    /// Store for new blobs. Default `data`, which, when not configured, is
    /// `file://<data_dir>/blobs`.
    pub data_store: Option<String>,
    /// Default `24h`.
    #[serde(default, with = "humantime_serde")]
    pub gc_grace: Option<Duration>,
    /// Default `60s`.
    #[serde(default, with = "humantime_serde")]
    pub gc_interval: Option<Duration>,
    /// Default `5m`.
    #[serde(default, with = "humantime_serde")]
    pub gc_lease: Option<Duration>,
    /// Multipart uploads older than this are aborted. Default `7d`.
    #[serde(default, with = "humantime_serde")]
    pub upload_expiry: Option<Duration>,
    /// How often a metadata dump is written into the data store; absent
    /// means never. Example `6h`.
    #[serde(default, with = "humantime_serde")]
    pub dump_interval: Option<Duration>,
    /// Scheduled dumps kept in the data store. Default 7.
    pub dump_keep: Option<usize>,
}

impl RawVolume {
    /// Gives the data store's name and the collector's settings. When the
    /// data store is the default one and `[stores]` does not configure it,
    /// it is added to `stores` as `file://<data_dir>/blobs`.
    ///
    /// A mirror region (`mirror`) writes no blobs, so its data store may be
    /// one it does not own: the source's bucket, read only.
    pub(crate) fn validate(
        self,
        data_dir: &Path,
        stores: &mut BTreeMap<String, StoreSpec>,
        mirror: bool,
    ) -> Result<(String, VolumeConfig)> {
        let data_store = self
            .data_store
            .unwrap_or_else(|| DEFAULT_DATA_STORE.to_string());
        if !stores.contains_key(&data_store) {
            if data_store != DEFAULT_DATA_STORE {
                return Err(ConfigError::invalid(
                    "volume.data_store",
                    format!("no store named {data_store:?} under [stores]"),
                ));
            }
            stores.insert(
                data_store.clone(),
                StoreSpec::local_default(&data_dir.join("blobs")),
            );
        }
        if !mirror && stores.get(&data_store).is_some_and(|s| !s.owned) {
            return Err(ConfigError::invalid(
                "volume.data_store",
                format!(
                    "store {data_store:?} has owned = false; new blobs must go to a store the volume owns (only a mirror region, which writes nothing, may read its blobs from a store it does not own)"
                ),
            ));
        }

        let volume = VolumeConfig {
            grace: self.gc_grace.unwrap_or(Duration::from_secs(24 * 3600)),
            interval: self.gc_interval.unwrap_or(Duration::from_secs(60)),
            lease: self.gc_lease.unwrap_or(Duration::from_secs(300)),
            upload_expiry: self
                .upload_expiry
                .unwrap_or(Duration::from_secs(7 * 24 * 3600)),
            dump_interval: self.dump_interval,
            dump_keep: self.dump_keep.unwrap_or(7),
        };
        if volume.dump_keep == 0 {
            return Err(ConfigError::invalid(
                "volume.dump_keep",
                "must keep at least one dump",
            ));
        }
        for (field, value) in [
            ("volume.gc_grace", volume.grace),
            ("volume.gc_interval", volume.interval),
            ("volume.gc_lease", volume.lease),
            ("volume.upload_expiry", volume.upload_expiry),
            (
                "volume.dump_interval",
                volume.dump_interval.unwrap_or(Duration::from_secs(1)),
            ),
        ] {
            if value.is_zero() {
                return Err(ConfigError::invalid(field, "must be greater than 0"));
            }
        }
        Ok((data_store, volume))
    }
}
