//! `[cache]`: the memory and disk tiers and how reads use them.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytesize::ByteSize;
use serde::Deserialize;

use crate::error::{ConfigError, Result};
use crate::{CacheConfig, DiskConfig};

/// `[cache]`: the block cache in front of the stores.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCache {
    /// Memory tier. Default: a quarter of the machine's memory, at most 8 GiB.
    pub memory: Option<ByteSize>,
    /// Disk tier on one disk; `0` turns it off. Default `10GiB`.
    pub disk: Option<ByteSize>,
    /// Folder of the one-disk tier. Default `<data_dir>/cache`.
    pub dir: Option<PathBuf>,
    /// The disk tier over several disks (instead of `disk` and `dir`):
    /// blocks spread over them by capacity, and a failing disk loses only
    /// its own blocks.
    #[serde(default)]
    pub disks: Vec<RawDisk>,
    /// Block size, 1 MiB to 64 MiB. Default `4MiB`.
    pub block_size: Option<ByteSize>,
    /// Size of the pages a block is kept in on the disk tier, 64 KiB up to
    /// the block size: a range read of a block on disk loads only the
    /// pages it covers. Default `512KiB`.
    pub disk_page: Option<ByteSize>,
    /// Bytes one streaming read keeps in flight ahead of the client.
    /// Default `64MiB`.
    pub readahead: Option<ByteSize>,
    /// Bytes of blocks all reads together may hold between fetch and send;
    /// when spent, reads wait. Part of `memory`, at most half of it.
    /// Default `256MiB`.
    pub inflight: Option<ByteSize>,
    /// Bytes of `inflight` one read may hold: a few slow or stalled
    /// clients then cannot hold all of it. At least one block is always
    /// allowed. Default: `readahead` plus two blocks (72 MiB with the
    /// defaults), so one stream keeps its whole readahead window in
    /// flight.
    pub inflight_per_read: Option<ByteSize>,
    /// How long a read waits for `inflight` before it is answered 503
    /// SlowDown. Default `10s`.
    #[serde(default, with = "humantime_serde")]
    pub inflight_wait: Option<Duration>,
    /// How long a GET waits for its client to take its next block; a
    /// client that takes nothing for this long loses its read and the
    /// budget it held. Default `60s`.
    #[serde(default, with = "humantime_serde")]
    pub send_timeout: Option<Duration>,
    /// Key patterns (`*` any characters, `?` one) under which the first
    /// read of an object's first block warms the whole object into the
    /// cluster in the background, once per object version. Default none.
    #[serde(default)]
    pub warm_on_open: Vec<String>,
    /// Prefixes (`BUCKET/PREFIX`) whose blocks unpinned ones never evict
    /// from the disk tier: they live in a share of each disk of their own.
    #[serde(default)]
    pub pin: Vec<RawPin>,
    /// The share of each disk kept for pinned blocks, 0 to 0.9; 0 turns
    /// pinning off. Default 0.1, so pins can never starve the rest.
    pub pin_share: Option<f64>,
}

/// `[[cache.pin]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPin {
    /// `BUCKET/PREFIX` (or a whole bucket).
    pub prefix: String,
}

/// `[[cache.disks]]` (or an inline table in `disks = [...]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDisk {
    pub dir: PathBuf,
    pub capacity: ByteSize,
}

impl RawCache {
    /// The disks of the tier: `disks`, or the one disk `disk`/`dir` say.
    fn disks(&mut self, data_dir: &Path) -> Result<Vec<DiskConfig>> {
        if !self.disks.is_empty() {
            if self.disk.is_some() || self.dir.is_some() {
                return Err(ConfigError::invalid(
                    "cache.disks",
                    "set either `disks` or the one-disk `disk` and `dir`, not both",
                ));
            }
            let mut disks: Vec<DiskConfig> = Vec::new();
            for (i, raw) in std::mem::take(&mut self.disks).into_iter().enumerate() {
                if raw.capacity.as_u64() == 0 {
                    return Err(ConfigError::invalid(
                        format!("cache.disks[{i}].capacity"),
                        "must be more than 0 (leave the disk out instead)",
                    ));
                }
                if disks.iter().any(|d| d.dir == raw.dir) {
                    return Err(ConfigError::invalid(
                        format!("cache.disks[{i}].dir"),
                        format!("{} is already a disk of the tier", raw.dir.display()),
                    ));
                }
                disks.push(DiskConfig {
                    dir: raw.dir,
                    capacity: raw.capacity.as_u64(),
                });
            }
            return Ok(disks);
        }
        let capacity = self.disk.map_or(10 << 30, |b| b.as_u64());
        if capacity == 0 {
            return Ok(Vec::new());
        }
        Ok(vec![DiskConfig {
            dir: self.dir.take().unwrap_or_else(|| data_dir.join("cache")),
            capacity,
        }])
    }

    pub(crate) fn validate(mut self, data_dir: &Path) -> Result<CacheConfig> {
        let disks = self.disks(data_dir)?;
        let block_size = self.block_size.map_or(4 << 20, |b| b.as_u64());
        if !((1 << 20)..=(64 << 20)).contains(&block_size) {
            return Err(ConfigError::invalid(
                "cache.block_size",
                "must be between 1MiB and 64MiB",
            ));
        }
        let disk_page = self.disk_page.map_or(512 << 10, |b| b.as_u64());
        if disk_page < (64 << 10) || disk_page > block_size {
            return Err(ConfigError::invalid(
                "cache.disk_page",
                "must be between 64KiB and cache.block_size",
            ));
        }
        let readahead = self.readahead.map_or(64 << 20, |b| b.as_u64());
        if readahead > (1 << 30) {
            return Err(ConfigError::invalid(
                "cache.readahead",
                "must be at most 1GiB",
            ));
        }
        let cache = CacheConfig {
            memory: self.memory.map(|b| b.as_u64()),
            disk: disks.iter().map(|d| d.capacity).sum(),
            disks,
            block_size,
            disk_page,
            readahead,
            inflight: self.inflight.map_or(256 << 20, |b| b.as_u64()),
            inflight_per_read: self
                .inflight_per_read
                .map_or(readahead + 2 * block_size, |b| b.as_u64()),
            inflight_wait: self.inflight_wait.unwrap_or(Duration::from_secs(10)),
            send_timeout: self.send_timeout.unwrap_or(Duration::from_secs(60)),
            warm_on_open: self.warm_on_open,
            pins: self.pin.into_iter().map(|p| p.prefix).collect(),
            pin_share: self.pin_share.unwrap_or(0.1),
        };
        if !(0.0..=0.9).contains(&cache.pin_share) {
            return Err(ConfigError::invalid(
                "cache.pin_share",
                "must be between 0 and 0.9 (0 turns pinning off)",
            ));
        }
        for (i, prefix) in cache.pins.iter().enumerate() {
            if let Err(why) = check_pin(prefix) {
                return Err(ConfigError::invalid(format!("cache.pin[{i}].prefix"), why));
            }
        }
        for (field, value) in [
            ("cache.inflight_wait", cache.inflight_wait),
            ("cache.send_timeout", cache.send_timeout),
        ] {
            if value.is_zero() {
                return Err(ConfigError::invalid(field, "must be longer than 0s"));
            }
        }
        for (i, pattern) in cache.warm_on_open.iter().enumerate() {
            if let Err(e) = globset::Glob::new(pattern) {
                return Err(ConfigError::invalid(
                    format!("cache.warm_on_open[{i}]"),
                    format!("{pattern:?} is not a key pattern: {e}"),
                ));
            }
        }
        Ok(cache)
    }
}

/// Why `prefix` cannot be a pin: it must name a bucket, then optionally a
/// key prefix (`BUCKET/PREFIX`).
pub fn check_pin(prefix: &str) -> std::result::Result<(), String> {
    let bucket = prefix.split('/').next().unwrap_or_default();
    if bucket.is_empty() {
        return Err(format!(
            "{prefix:?} names no bucket: write BUCKET or BUCKET/PREFIX"
        ));
    }
    Ok(())
}
