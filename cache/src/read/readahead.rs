//! Sequential-access detection across requests. Loaders read a file as
//! one stream or as many parallel ranged GETs over several connections;
//! either way the reads advance through the file. For each blob this keeps
//! the frontier of what was read and prefetched, and when a read lands near
//! the frontier it asks for the next window of blocks, doubling the window
//! while reads stay sequential. A read far from the frontier resets it.
//!
//! It also keeps which prefetched blocks no read has asked for yet, so the
//! metrics can tell prefetches that were used from those that were wasted
//! (the stream reset or was forgotten before a read reached them).

use std::collections::{BTreeSet, HashMap};
use std::ops::Range;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::metrics as m;

/// Streams not touched for this long are forgotten.
const IDLE: Duration = Duration::from_secs(30);
/// Most blobs tracked at once.
const MAX_TRACKED: usize = 4096;

#[derive(Debug)]
struct Stream {
    /// The block after the furthest block read.
    next: u64,
    /// The block after the furthest block prefetched.
    prefetched_to: u64,
    /// Blocks to keep ahead of `next`.
    window: u64,
    touched: Instant,
    /// Prefetched blocks no read has asked for yet.
    unread: BTreeSet<u64>,
}

impl Stream {
    fn new(next: u64, now: Instant) -> Stream {
        Stream {
            next,
            prefetched_to: next,
            window: 1,
            touched: now,
            unread: BTreeSet::new(),
        }
    }
}

/// Prefetched blocks that were read, and that were not.
#[derive(Debug, Default)]
pub(crate) struct ReadaheadStats {
    pub(crate) used: AtomicU64,
    pub(crate) wasted: AtomicU64,
}

impl ReadaheadStats {
    fn used(&self, n: u64) {
        if n > 0 {
            self.used.fetch_add(n, Ordering::Relaxed);
            metrics::counter!(m::READAHEAD_USED).increment(n);
        }
    }

    fn wasted(&self, n: u64) {
        if n > 0 {
            self.wasted.fetch_add(n, Ordering::Relaxed);
            metrics::counter!(m::READAHEAD_WASTED).increment(n);
        }
    }
}

#[derive(Debug)]
pub(crate) struct Readahead {
    streams: Mutex<HashMap<String, Stream>>,
    /// Largest window, in blocks.
    max_window: u64,
    pub(crate) stats: ReadaheadStats,
}

impl Readahead {
    pub(crate) fn new(max_window: u64) -> Readahead {
        Readahead {
            streams: Mutex::new(HashMap::new()),
            max_window: max_window.max(1),
            stats: ReadaheadStats::default(),
        }
    }

    /// Records a read of blocks `read` of the blob `key` (whose blocks end
    /// at `end`) and returns the blocks to prefetch, if any.
    pub(crate) fn on_read(&self, key: &str, read: Range<u64>, end: u64) -> Range<u64> {
        let Ok(mut streams) = self.streams.lock() else {
            return 0..0;
        };
        let now = Instant::now();
        if streams.len() >= MAX_TRACKED {
            let mut forgotten = 0;
            streams.retain(|_, s| {
                let keep = now.duration_since(s.touched) < IDLE;
                if !keep {
                    forgotten += s.unread.len() as u64;
                }
                keep
            });
            if streams.len() >= MAX_TRACKED {
                forgotten += streams.values().map(|s| s.unread.len() as u64).sum::<u64>();
                streams.clear();
            }
            self.stats.wasted(forgotten);
        }
        let Some(stream) = streams.get_mut(key) else {
            streams.insert(key.to_string(), Stream::new(read.end, now));
            return 0..0;
        };
        let before = stream.unread.len();
        stream.unread.retain(|i| !read.contains(i));
        self.stats.used((before - stream.unread.len()) as u64);
        // Near the frontier (parallel readers land a little before or
        // after it): sequential. Elsewhere: a new pattern, start small.
        let sequential = read.start + self.max_window >= stream.next
            && read.start <= stream.next + self.max_window;
        stream.touched = now;
        if !sequential {
            self.stats.wasted(stream.unread.len() as u64);
            *stream = Stream::new(read.end, now);
            return 0..0;
        }
        stream.next = stream.next.max(read.end);
        stream.window = (stream.window * 2).min(self.max_window);
        let from = stream.prefetched_to.max(stream.next);
        let to = (stream.next + stream.window).min(end);
        if from >= to {
            return 0..0;
        }
        stream.prefetched_to = to;
        stream.unread.extend(from..to);
        from..to
    }

    /// Whether block `index` of the blob `key` was prefetched (or is being
    /// prefetched) and no read has asked for it yet.
    pub(crate) fn is_unread(&self, key: &str, index: u64) -> bool {
        self.streams
            .lock()
            .is_ok_and(|streams| streams.get(key).is_some_and(|s| s.unread.contains(&index)))
    }

    /// Memory is short: blocks `skipped` of what `on_read` asked for were
    /// not prefetched. Halves the window of `key`.
    pub(crate) fn back_off(&self, key: &str, skipped: Range<u64>) {
        if let Ok(mut streams) = self.streams.lock()
            && let Some(stream) = streams.get_mut(key)
        {
            stream.window = (stream.window / 2).max(1);
            stream.prefetched_to = stream.next;
            stream.unread.retain(|i| !skipped.contains(i));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequential_reads_grow_the_window_and_random_reads_reset_it() {
        let ra = Readahead::new(16);
        assert_eq!(
            ra.on_read("b", 0..2, 1000),
            0..0,
            "the first read only opens a stream"
        );
        assert_eq!(ra.on_read("b", 2..4, 1000), 4..6);
        assert_eq!(ra.on_read("b", 4..6, 1000), 6..10);
        assert_eq!(ra.on_read("b", 6..8, 1000), 10..16);
        // Parallel readers arriving out of order still count as sequential.
        assert_eq!(ra.on_read("b", 10..12, 1000), 16..28);
        assert_eq!(ra.on_read("b", 8..10, 1000), 0..0, "already prefetched");
        // A jump far away resets.
        assert_eq!(ra.on_read("b", 500..502, 1000), 0..0);
        assert_eq!(ra.on_read("b", 502..504, 1000), 504..506);
        // Never past the end of the blob.
        assert_eq!(ra.on_read("c", 0..1, 3), 0..0);
        assert_eq!(ra.on_read("c", 1..2, 3), 2..3);
        assert_eq!(ra.on_read("c", 2..3, 3), 0..0);
    }

    #[test]
    fn back_off_halves_the_window() {
        let ra = Readahead::new(64);
        ra.on_read("b", 0..1, 1000);
        for i in 1..6 {
            ra.on_read("b", i..i + 1, 1000);
        }
        ra.back_off("b", 0..0);
        let next = ra.on_read("b", 6..7, 1000);
        assert!(next.end - next.start <= 32, "{next:?}");
    }

    #[test]
    fn prefetches_are_counted_as_used_or_wasted() {
        let ra = Readahead::new(8);
        let stats = |ra: &Readahead| {
            (
                ra.stats.used.load(Ordering::Relaxed),
                ra.stats.wasted.load(Ordering::Relaxed),
            )
        };
        ra.on_read("b", 0..1, 1000);
        assert_eq!(ra.on_read("b", 1..2, 1000), 2..4);
        assert_eq!(ra.on_read("b", 2..3, 1000), 4..7);
        assert_eq!(stats(&ra), (1, 0), "block 2 was prefetched and read");
        // Blocks 5 and 6 could not be issued (the budget was spent).
        ra.back_off("b", 5..7);
        ra.on_read("b", 3..5, 1000);
        assert_eq!(stats(&ra).0, 3, "blocks 3 and 4 were read");
        // A jump elsewhere: whatever was prefetched and unread is wasted,
        // and blocks that were never issued are not counted.
        let unread = {
            let streams = ra.streams.lock().expect("lock");
            streams["b"].unread.len() as u64
        };
        ra.on_read("b", 900..901, 1000);
        assert_eq!(stats(&ra), (3, unread));
    }
}
