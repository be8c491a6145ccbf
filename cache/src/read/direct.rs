//! Small reads of a file's first block, when it is not cached, answered
//! straight from the store.
//!
//! A loader's first reads of a model file are tiny: 8 bytes, then the
//! safetensors (or GGUF) header. Fetching the whole block for them makes
//! the first answer wait for a 4 MiB read (6-10 ms from a cold local disk,
//! against well under a millisecond for the bytes asked for). So a small
//! read of an uncached first block reads just its range, and once it is
//! answered the block is prefetched for the tensors that follow. Small
//! reads elsewhere are random access: their blocks are fetched on first
//! touch, which serves the reads that follow. A first block read small
//! many times is fetched after a few direct reads, so a herd of loaders
//! still takes each block from the store once, plus a few small ranges.

use std::collections::HashMap;
use std::sync::Mutex;

/// Direct reads of one block before it is fetched whole instead.
const DIRECT_READS_PER_BLOCK: u32 = 4;
/// Blocks whose direct reads are counted at once; the counts are dropped
/// beyond it (a few more direct reads, never a wrong answer).
const MAX_TRACKED: usize = 16_384;

#[derive(Debug)]
pub(crate) struct DirectReads {
    /// Reads of at most this many bytes of one block are small.
    max_len: u64,
    counts: Mutex<HashMap<String, u32>>,
}

impl DirectReads {
    pub(crate) fn new(block_size: u64) -> DirectReads {
        DirectReads {
            max_len: block_size / 16,
            counts: Mutex::new(HashMap::new()),
        }
    }

    /// Whether a read of `len` bytes of a block of `block_len` bytes may go
    /// direct: small in itself and beside its block (the short last block
    /// of a blob, read whole, is fetched and cached like any other).
    pub(crate) fn is_small(&self, len: u64, block_len: u64) -> bool {
        len <= self.max_len && len <= block_len / 4
    }

    /// Counts a direct read of the uncached block `key` and says which it
    /// is (1 for the first); `None` when the block has been read directly
    /// often enough and should be fetched.
    pub(crate) fn admit(&self, key: &str) -> Option<u32> {
        let Ok(mut counts) = self.counts.lock() else {
            return None;
        };
        if counts.len() >= MAX_TRACKED && !counts.contains_key(key) {
            counts.clear();
        }
        // The count stays at its limit: every later read of the block,
        // until it is cached, joins the fetch.
        let count = counts.entry(key.to_string()).or_insert(0);
        if *count >= DIRECT_READS_PER_BLOCK {
            return None;
        }
        *count += 1;
        Some(*count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_block_goes_direct_a_few_times_then_is_fetched() {
        let direct = DirectReads::new(4 << 20);
        assert!(direct.is_small(256 << 10, 4 << 20));
        assert!(!direct.is_small((256 << 10) + 1, 4 << 20));
        assert!(direct.is_small(8, 4 << 20));
        assert!(!direct.is_small(333, 333), "a short block read whole");
        assert!(!direct.is_small(100, 333), "most of a short block");
        for nth in 1..=DIRECT_READS_PER_BLOCK {
            assert_eq!(direct.admit("a"), Some(nth));
        }
        assert_eq!(direct.admit("a"), None, "then the block is fetched");
        assert_eq!(direct.admit("a"), None, "and stays fetched");
        assert_eq!(
            direct.admit("b"),
            Some(1),
            "other blocks count on their own"
        );
    }
}
