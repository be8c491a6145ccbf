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
//!
//! A disk whose filesystem is full (another tenant of the disk, or a
//! `capacity` larger than the free space) pauses its writes: foyer's files
//! are sparse and grow as they are written, and a write into a full
//! filesystem fails inside foyer, uncounted. Free space is read at most
//! once per `ROOM_CHECK`; writes resume when there is room again, and
//! what the disk holds is still read.
//!
//! Pinning: each disk keeps a share of its capacity (`pin_share`) as a
//! second engine, in the folder `pinned` inside the disk's, for the blocks
//! of pinned prefixes. foyer's engine evicts first-in first-out and has no
//! pin; two engines make "unpinned blocks never evict pinned ones" a
//! matter of where a block is written, and the share caps what pins take.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use ferry_config::DiskConfig;
use foyer::{
    BlockEngineConfig, DeviceBuilder, FsDeviceBuilder, HybridCache, HybridCacheBuilder,
    HybridCachePolicy, RecoverMode,
};

use super::foyer_metrics::MetricsBridge;
use super::pages::DiskPage;
use crate::cluster::ring::{self, Candidate};
use crate::metrics as m;

/// A disk engine: a foyer cache used for its storage only.
pub type Engine = HybridCache<String, DiskPage>;

/// How long a disk whose reads failed is left alone.
pub const RETRY_AFTER: Duration = Duration::from_secs(30);

/// How often a disk's free space is read (a statvfs call) while it is
/// written to.
pub const ROOM_CHECK: Duration = Duration::from_secs(1);

/// Failed reads within `FAILURE_WINDOW` that set a disk aside.
pub const FAILURES_TO_SET_ASIDE: u32 = 3;
pub const FAILURE_WINDOW: Duration = Duration::from_secs(10);

/// The disks that opened.
pub struct Disks {
    disks: Vec<Disk>,
}

/// One disk: its engines (used for storage only: nothing stays in their
/// memory), its share, and whether it is set aside.
pub struct Disk {
    /// The disk's folder, as logs and metrics name it.
    pub label: String,
    /// Unpinned blocks.
    pub cache: Engine,
    /// Pinned blocks (the disk's `pin_share`); `None` when pinning is off
    /// or the share is too small for an engine (pinned blocks then go with
    /// the others).
    pub pinned: Option<Engine>,
    /// Capacity in MiB: the disk's share of the blocks.
    weight: u32,
    set_aside_until: Mutex<Option<Instant>>,
    /// Failed reads since the first one of the current window.
    recent_failures: Mutex<(u32, Option<Instant>)>,
    /// The folder, for free space checks.
    dir: std::path::PathBuf,
    /// Free space below which the disk counts as full: an engine block
    /// (what foyer writes at once).
    min_free: u64,
    /// When free space was last read, and whether the disk was full.
    room: Mutex<(Option<Instant>, bool)>,
    /// Held while a block whose pages were dropped is written again, one
    /// at a time, so the rewrites cannot overflow the flush buffers too.
    pub rewrites: tokio::sync::Mutex<()>,
    /// An error every read of this disk fails with (tests of a failing
    /// device).
    #[cfg(feature = "testing")]
    read_fault: Mutex<Option<String>>,
}

impl Disks {
    /// Opens every disk, `pin_share` of each for pinned blocks; one that
    /// cannot be opened is left out, logged and counted, and the tier runs
    /// on the others.
    pub async fn open(configs: &[DiskConfig], block_size: u64, pin_share: f64) -> Disks {
        let mut disks = Vec::with_capacity(configs.len());
        let mut pinned_capacity = 0u64;
        for (i, config) in configs.iter().enumerate() {
            let label = config.dir.display().to_string();
            match open_engines(config, i, block_size, pin_share).await {
                Ok((cache, pinned)) => {
                    pinned_capacity += pinned.as_ref().map_or(0, |(_, bytes)| *bytes);
                    // At 0 from the start, so an alert on their increase
                    // sees the first failure.
                    for op in ["read", "full"] {
                        metrics::counter!(m::CACHE_DISK_ERRORS, "disk" => label.clone(), "op" => op)
                            .increment(0);
                    }
                    for reason in ["damaged", "wrong_length"] {
                        metrics::counter!(m::CACHE_DISK_PAGES_LOST, "reason" => reason)
                            .increment(0);
                    }
                    for reason in ["buffer_full", "queue_full", "not_admitted", "disk_full"] {
                        metrics::counter!(m::CACHE_DISK_WRITES_DROPPED, "reason" => reason)
                            .increment(0);
                    }
                    disks.push(Disk {
                        label,
                        cache,
                        pinned: pinned.map(|(engine, _)| engine),
                        weight: u32::try_from(config.capacity >> 20)
                            .unwrap_or(u32::MAX)
                            .max(1),
                        set_aside_until: Mutex::new(None),
                        recent_failures: Mutex::new((0, None)),
                        dir: config.dir.clone(),
                        min_free: engine_block(block_size),
                        room: Mutex::new((None, false)),
                        rewrites: tokio::sync::Mutex::new(()),
                        #[cfg(feature = "testing")]
                        read_fault: Mutex::new(None),
                    });
                }
                Err(e) => {
                    metrics::counter!(m::CACHE_DISK_ERRORS, "disk" => label.clone(), "op" => "open")
                        .increment(1);
                    tracing::error!(disk = %label, error = %e, "a disk of the cache tier cannot be opened; running without it");
                }
            }
        }
        metrics::gauge!(m::CACHE_PIN_CAPACITY).set(pinned_capacity as f64);
        if pin_share > 0.0 && !disks.is_empty() && pinned_capacity == 0 {
            tracing::info!(
                pin_share,
                "the disks' pinned share is too small for an engine of its own; pinned blocks are kept with the others"
            );
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
    /// The engine blocks are written to: the pinned one for a pinned
    /// block, when the disk has one.
    pub fn engine(&self, pinned: bool) -> &Engine {
        match (&self.pinned, pinned) {
            (Some(engine), true) => engine,
            _ => &self.cache,
        }
    }

    /// The disk's engines, the unpinned one first.
    pub fn engines(&self) -> impl Iterator<Item = &Engine> {
        std::iter::once(&self.cache).chain(self.pinned.as_ref())
    }

    #[cfg(feature = "testing")]
    pub fn inject_read_error(&self, error: Option<String>) {
        if let Ok(mut fault) = self.read_fault.lock() {
            *fault = error;
        }
    }

    #[cfg(feature = "testing")]
    pub fn injected_read_error(&self) -> Option<String> {
        self.read_fault.lock().ok().and_then(|fault| fault.clone())
    }

    /// Whether the disk's filesystem has room for writes (read at most
    /// once per `ROOM_CHECK`). Becoming full is counted and logged once,
    /// as is having room again.
    pub fn has_room(&self) -> bool {
        let Ok(mut room) = self.room.lock() else {
            return false;
        };
        let now = Instant::now();
        if room.0.is_some_and(|at| now.duration_since(at) < ROOM_CHECK) {
            return !room.1;
        }
        let available = fs4::available_space(&self.dir);
        let full = match &available {
            Ok(bytes) => *bytes < self.min_free,
            // Cannot tell: let foyer try.
            Err(_) => false,
        };
        if full && !room.1 {
            metrics::counter!(m::CACHE_DISK_ERRORS, "disk" => self.label.clone(), "op" => "full")
                .increment(1);
            tracing::warn!(disk = %self.label, available = ?available.ok(), "a disk of the cache tier is full; its writes pause until it has room (what it holds is still read)");
        } else if !full && room.1 {
            tracing::info!(disk = %self.label, "a full disk of the cache tier has room again; writing to it");
        }
        *room = (Some(now), full);
        !full
    }

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

/// The folder of a disk's pinned engine, inside the disk's own.
pub const PINNED_DIR: &str = "pinned";

/// An engine needs a few of its blocks to write into one while it
/// reclaims another: a smaller pinned share gets no engine of its own.
const MIN_ENGINE_BLOCKS: u64 = 4;

/// A disk's engines: the unpinned one over its folder and, when its share
/// holds at least `MIN_ENGINE_BLOCKS` engine blocks, the pinned one with
/// its capacity.
async fn open_engines(
    config: &DiskConfig,
    index: usize,
    block_size: u64,
    pin_share: f64,
) -> std::result::Result<(Engine, Option<(Engine, u64)>), String> {
    let engine_block = engine_block(block_size);
    // The share rounded down to whole engine blocks (u64 to f64 and back:
    // a disk's bytes fit f64's 53 bits many times over).
    let pinned_bytes = ((config.capacity as f64 * pin_share) as u64) / engine_block * engine_block;
    if pinned_bytes < MIN_ENGINE_BLOCKS * engine_block {
        let cache = open_engine(
            &config.dir,
            config.capacity,
            format!("ferry-disk{index}"),
            engine_block,
        )
        .await?;
        return Ok((cache, None));
    }
    let cache = open_engine(
        &config.dir,
        config.capacity - pinned_bytes,
        format!("ferry-disk{index}"),
        engine_block,
    )
    .await?;
    let pinned = open_engine(
        &config.dir.join(PINNED_DIR),
        pinned_bytes,
        format!("ferry-disk{index}-pinned"),
        engine_block,
    )
    .await?;
    Ok((cache, Some((pinned, pinned_bytes))))
}

/// A page must fit one engine block (a page is at most a block); leave
/// room for the key and headers.
fn engine_block(block_size: u64) -> u64 {
    block_size.saturating_mul(2).max(16 << 20)
}

async fn open_engine(
    dir: &std::path::Path,
    capacity: u64,
    name: String,
    engine_block: u64,
) -> std::result::Result<Engine, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let device = FsDeviceBuilder::new(dir)
        .with_capacity(usize::try_from(capacity).unwrap_or(usize::MAX))
        .build()
        .map_err(|e| format!("{}: {e}", dir.display()))?;
    // Flush buffers hold a few engine blocks so bursts of fetched blocks
    // are not dropped (drops are counted: CACHE_DISK_WRITES_DROPPED).
    let engine_block = usize::try_from(engine_block).unwrap_or(usize::MAX);
    let engine = BlockEngineConfig::new(device)
        .with_block_size(engine_block)
        .with_buffer_pool_size(engine_block * 4)
        .with_submit_queue_size_threshold(engine_block * 8)
        // Evictions by prefix delete pages; without the log, a restart
        // would find them again.
        .with_tombstone_log(true);
    HybridCacheBuilder::new()
        .with_name(name)
        .with_metrics_registry(Box::new(MetricsBridge))
        .with_policy(HybridCachePolicy::WriteOnInsertion)
        .with_flush_on_close(false)
        // Pages are written with foyer's storage writer and read from its
        // storage: its memory tier holds nothing.
        .memory(1 << 20)
        .with_weighter(|key: &String, value: &DiskPage| key.len() + value.0.len())
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
            0.1,
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
