//! `[cache]`: the memory and disk tiers and how reads use them.

use std::path::{Path, PathBuf};

use bytesize::ByteSize;
use serde::Deserialize;

use crate::CacheConfig;
use crate::error::{ConfigError, Result};

/// `[cache]`: the block cache in front of the stores.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCache {
    /// Memory tier. Default: a quarter of the machine's memory, at most 8 GiB.
    pub memory: Option<ByteSize>,
    /// Disk tier; `0` turns it off. Default `10GiB`.
    pub disk: Option<ByteSize>,
    /// Folder of the disk tier. Default `<data_dir>/cache`.
    pub dir: Option<PathBuf>,
    /// Block size, 1 MiB to 64 MiB. Default `4MiB`.
    pub block_size: Option<ByteSize>,
    /// Bytes one streaming read keeps in flight ahead of the client.
    /// Default `64MiB`.
    pub readahead: Option<ByteSize>,
    /// Bytes of blocks all reads together may hold between fetch and send;
    /// when spent, reads wait. Part of `memory`, at most half of it.
    /// Default `256MiB`.
    pub inflight: Option<ByteSize>,
    /// Key patterns (`*` any characters, `?` one) under which the first
    /// read of an object's first block warms the whole object into the
    /// cluster in the background, once per object version. Default none.
    #[serde(default)]
    pub warm_on_open: Vec<String>,
}

impl RawCache {
    pub(crate) fn validate(self, data_dir: &Path) -> Result<CacheConfig> {
        let block_size = self.block_size.map_or(4 << 20, |b| b.as_u64());
        if !((1 << 20)..=(64 << 20)).contains(&block_size) {
            return Err(ConfigError::invalid(
                "cache.block_size",
                "must be between 1MiB and 64MiB",
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
            disk: self.disk.map_or(10 << 30, |b| b.as_u64()),
            dir: self.dir.unwrap_or_else(|| data_dir.join("cache")),
            block_size,
            readahead,
            inflight: self.inflight.map_or(256 << 20, |b| b.as_u64()),
            warm_on_open: self.warm_on_open,
        };
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
