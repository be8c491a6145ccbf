//! The disks of the disk tier: one foyer disk engine per disk, each block
//! (all its pages) on one disk chosen by capacity-weighted rendezvous
//! hashing, and a failing disk set aside on its own.
//!
//! One engine per disk rather than foyer's combined device: the combined
//! device fills its disks in order and fails as a whole, while here a disk
//! that cannot be opened is left out at start (its blocks go to the
//! others), and a disk whose reads fail (`FAILURES_TO_SET_ASIDE` within
//! `FAILURE_WINDOW`: one transient error costs one miss, not the disk) is
//! set aside for `RETRY_AFTER`:
//! its blocks are misses, read from outside, nothing is written to it, and
//! the next read after the interval tries it again. Blocks do not move
//! while a disk is set aside, so a disk that recovers still holds them.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ferry_config::DiskConfig;
use foyer::{
    BlockEngineConfig, DeviceBuilder, FsDeviceBuilder, HybridCache, HybridCacheBuilder,
    HybridCachePolicy, RecoverMode,
};

use super::foyer_metrics::MetricsBridge;
use crate::cluster::ring::{self, Candidate};
use crate::metrics as m;

/// How long a disk whose reads failed is left alone.
pub const RETRY_AFTER: Duration = Duration::from_secs(30);

/// Failed reads within `FAILURE_WINDOW` that set a disk aside.
pub const FAILURES_TO_SET_ASIDE: u32 = 3;
pub const FAILURE_WINDOW: Duration = Duration::from_secs(10);

/// The disks that opened.
pub struct Disks {
    disks: Vec<Disk>,
}

/// One disk: its engine (used for storage only: nothing stays in its
/// memory), its share, and whether it is set aside.
pub struct Disk {
    /// The disk's folder, as logs and metrics name it.
    pub label: String,
    pub cache: HybridCache<String, Bytes>,
    /// Capacity in MiB: the disk's share of the blocks.
    weight: u32,
    set_aside_until: Mutex<Option<Instant>>,
    /// Failed reads since the first one of the current window.
    recent_failures: Mutex<(u32, Option<Instant>)>,
}

impl Disks {
    /// Opens every disk; one that cannot be opened is left out, logged and
    /// counted, and the tier runs on the others.
    pub async fn open(configs: &[DiskConfig], block_size: u64) -> Disks {
        let mut disks = Vec::with_capacity(configs.len());
        for (i, config) in configs.iter().enumerate() {
            let label = config.dir.display().to_string();
            match open_engine(config, i, block_size).await {
                Ok(cache) => disks.push(Disk {
                    label,
                    cache,
                    weight: u32::try_from(config.capacity >> 20)
                        .unwrap_or(u32::MAX)
                        .max(1),
                    set_aside_until: Mutex::new(None),
                    recent_failures: Mutex::new((0, None)),
                }),
                Err(e) => {
                    metrics::counter!(m::CACHE_DISK_ERRORS, "disk" => label.clone(), "op" => "open")
                        .increment(1);
                    tracing::error!(disk = %label, error = %e, "a disk of the cache tier cannot be opened; running without it");
                }
            }
        }
        Disks { disks }
    }

    pub fn is_empty(&self) -> bool {
        self.disks.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Disk> {
        self.disks.iter()
    }

    /// The disk that holds the block `key` (its pages), by capacity.
    pub fn of_block(&self, key: &str) -> Option<&Disk> {
        if self.disks.len() == 1 {
            return self.disks.first();
        }
        let candidates: Vec<Candidate<'_>> = self
            .disks
            .iter()
            .map(|d| Candidate {
                id: &d.label,
                weight: d.weight,
            })
            .collect();
        let best = ring::ranked(&candidates, key.as_bytes())
            .into_iter()
            .next()?;
        self.disks.iter().find(|d| d.label == best)
    }
}

impl Disk {
    /// Whether the disk may be used now: not set aside, or its interval
    /// is over (then this caller tries it again).
    pub fn usable(&self) -> bool {
        let Ok(mut until) = self.set_aside_until.lock() else {
            return false;
        };
        match *until {
            Some(t) if Instant::now() < t => false,
            Some(_) => {
                *until = None;
                true
            }
            None => true,
        }
    }

    /// A read of this disk failed: counted; the third failure within
    /// `FAILURE_WINDOW` sets the disk aside for `RETRY_AFTER`, logged once
    /// per interval.
    pub fn failed(&self, op: &'static str, error: &str) {
        metrics::counter!(m::CACHE_DISK_ERRORS, "disk" => self.label.clone(), "op" => op)
            .increment(1);
        let now = Instant::now();
        let Ok(mut recent) = self.recent_failures.lock() else {
            return;
        };
        match recent.1 {
            Some(first) if now.duration_since(first) <= FAILURE_WINDOW => recent.0 += 1,
            _ => *recent = (1, Some(now)),
        }
        if recent.0 < FAILURES_TO_SET_ASIDE {
            tracing::debug!(disk = %self.label, error, "a read of a cache disk failed; a miss");
            return;
        }
        *recent = (0, None);
        drop(recent);
        let Ok(mut until) = self.set_aside_until.lock() else {
            return;
        };
        if until.is_none() {
            tracing::warn!(disk = %self.label, error, retry_after_s = RETRY_AFTER.as_secs(), "a disk of the cache tier keeps failing; its blocks are read from outside until it is tried again");
        }
        *until = Some(now + RETRY_AFTER);
    }
}

async fn open_engine(
    config: &DiskConfig,
    index: usize,
    block_size: u64,
) -> std::result::Result<HybridCache<String, Bytes>, String> {
    let dir = &config.dir;
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let device = FsDeviceBuilder::new(dir)
        .with_capacity(usize::try_from(config.capacity).unwrap_or(usize::MAX))
        .build()
        .map_err(|e| format!("{}: {e}", dir.display()))?;
    // A page must fit one engine block (a page is at most a block); leave
    // room for the key and headers. Flush buffers hold a few engine blocks
    // so bursts of fetched blocks are not dropped (drops are counted:
    // CACHE_DISK_WRITES_DROPPED).
    let engine_block = usize::try_from(block_size.saturating_mul(2))
        .unwrap_or(usize::MAX)
        .max(16 << 20);
    let engine = BlockEngineConfig::new(device)
        .with_block_size(engine_block)
        .with_buffer_pool_size(engine_block * 4)
        .with_submit_queue_size_threshold(engine_block * 8)
        // Evictions by prefix delete pages; without the log, a restart
        // would find them again.
        .with_tombstone_log(true);
    HybridCacheBuilder::new()
        .with_name(format!("ferry-disk{index}"))
        .with_metrics_registry(Box::new(MetricsBridge))
        .with_policy(HybridCachePolicy::WriteOnInsertion)
        .with_flush_on_close(false)
        // Pages are written with foyer's storage writer and read from its
        // storage: its memory tier holds nothing.
        .memory(1 << 20)
        .with_weighter(|key: &String, value: &Bytes| key.len() + value.len())
        .storage()
        .with_engine_config(engine)
        .with_recover_mode(RecoverMode::Quiet)
        .build()
        .await
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_disk_is_set_aside_only_when_its_reads_keep_failing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let disks = Disks::open(
            &[DiskConfig {
                dir: dir.path().to_path_buf(),
                capacity: 64 << 20,
            }],
            1 << 20,
        )
        .await;
        let disk = disks.of_block("any block").expect("one disk");
        for _ in 1..FAILURES_TO_SET_ASIDE {
            disk.failed("read", "transient");
            assert!(
                disk.usable(),
                "a transient failure is one miss, not the disk"
            );
        }
        disk.failed("read", "again");
        assert!(!disk.usable(), "a disk that keeps failing is set aside");
    }
}
