//! Buffers for blocks put together from pieces (a peer's answer, pages
//! read from disk), used again once the block is dropped. A block is a
//! fresh 4 MiB buffer; glibc's malloc gives memory that large back to the
//! kernel when it is freed, so every new one came in pages the kernel had
//! to fault in and zero — 15 % of a peer hit's CPU on the asking node.
//! Here a dropped block's buffer goes back to a short free list and the
//! next block of that size is copied into it.

use std::sync::{Arc, Mutex};

use bytes::Bytes;

use crate::metrics as m;

/// Buffers smaller than this are not worth keeping.
const SMALLEST: usize = 256 << 10;

/// A free list of buffers, at most `keep` of them.
pub struct BlockBuffers {
    free: Mutex<Vec<Vec<u8>>>,
    keep: usize,
    /// Whose buffers these are, in the metric's `pool` label.
    pool: &'static str,
}

impl BlockBuffers {
    pub fn new(pool: &'static str, keep: usize) -> Arc<BlockBuffers> {
        Arc::new(BlockBuffers {
            free: Mutex::new(Vec::new()),
            keep,
            pool,
        })
    }

    /// An empty buffer for `size` bytes: a kept one when one fits (holds
    /// `size` and is at most twice it, so parts of blocks use the buffers
    /// of whole ones without pinning much more than they need).
    pub fn take(self: &Arc<Self>, size: usize) -> BlockBuffer {
        let bytes = if size < SMALLEST {
            Vec::with_capacity(size)
        } else {
            let kept = self.kept_of(size);
            let outcome = if kept.is_some() { "reused" } else { "new" };
            metrics::counter!(m::BLOCK_BUFFERS, "pool" => self.pool, "outcome" => outcome)
                .increment(1);
            kept.unwrap_or_else(|| Vec::with_capacity(size))
        };
        BlockBuffer {
            bytes,
            home: Arc::clone(self),
        }
    }

    fn kept_of(&self, size: usize) -> Option<Vec<u8>> {
        let mut free = self.free.lock().ok()?;
        let fits = |b: &&Vec<u8>| (size..=size.saturating_mul(2)).contains(&b.capacity());
        let (at, _) = free
            .iter()
            .enumerate()
            .filter(|(_, b)| fits(b))
            .min_by_key(|(_, b)| b.capacity())?;
        Some(free.swap_remove(at))
    }

    fn give_back(&self, mut buffer: Vec<u8>) {
        if buffer.capacity() < SMALLEST {
            return;
        }
        if let Ok(mut free) = self.free.lock()
            && free.len() < self.keep
        {
            buffer.clear();
            free.push(buffer);
        }
    }

    #[cfg(test)]
    fn kept(&self) -> usize {
        self.free.lock().map(|f| f.len()).unwrap_or(0)
    }
}

/// A buffer being filled; [`freeze`](Self::freeze) makes it a block whose
/// buffer goes back to its list when the last clone of it is dropped.
pub struct BlockBuffer {
    bytes: Vec<u8>,
    home: Arc<BlockBuffers>,
}

impl BlockBuffer {
    pub fn extend_from_slice(&mut self, more: &[u8]) {
        self.bytes.extend_from_slice(more);
    }

    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Appends exactly `len` bytes read from `reader` (copied once, into
    /// memory this buffer already has when it was used before).
    pub fn fill_from(
        &mut self,
        reader: &mut impl std::io::Read,
        len: usize,
    ) -> std::io::Result<()> {
        use std::io::Read;
        let before = self.bytes.len();
        reader
            .take(u64::try_from(len).unwrap_or(u64::MAX))
            .read_to_end(&mut self.bytes)?;
        if self.bytes.len() - before != len {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        Ok(())
    }

    pub fn freeze(self) -> Bytes {
        Bytes::from_owner(self)
    }
}

impl AsRef<[u8]> for BlockBuffer {
    fn as_ref(&self) -> &[u8] {
        &self.bytes
    }
}

impl Drop for BlockBuffer {
    fn drop(&mut self) {
        self.home.give_back(std::mem::take(&mut self.bytes));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIZE: usize = 1 << 20;

    #[test]
    fn a_dropped_block_s_buffer_is_used_again_for_the_next_of_its_size() {
        let buffers = BlockBuffers::new("test", 2);
        let mut first = buffers.take(SIZE);
        first.extend_from_slice(&vec![1u8; SIZE]);
        let block = first.freeze();
        let clone = block.clone();
        let address = block.as_ptr();
        drop(block);
        assert_eq!(buffers.kept(), 0, "kept while a clone still reads it");
        drop(clone);
        assert_eq!(buffers.kept(), 1);
        let mut second = buffers.take(SIZE);
        assert!(second.bytes.is_empty(), "a kept buffer comes back empty");
        second.extend_from_slice(&vec![2u8; SIZE]);
        let block = second.freeze();
        assert_eq!(block.as_ptr(), address, "the same memory, used again");
        assert!(block.iter().all(|&b| b == 2));
        drop(block);
        // A part of at least half a block uses a block's buffer; a smaller
        // one would pin too much memory for what it holds.
        let quarter = buffers.take(SIZE / 4);
        assert_eq!(quarter.bytes.capacity(), SIZE / 4);
        let part = buffers.take(SIZE / 2);
        assert_eq!(part.bytes.capacity(), SIZE, "a part in a block's buffer");
        drop(part);
        // Of two that fit, the smaller.
        let large = buffers.take(SIZE);
        let small = buffers.take(SIZE / 2);
        assert_eq!(small.bytes.capacity(), SIZE / 2);
        drop((large, small));
        assert_eq!(buffers.kept(), 2);
        assert_eq!(buffers.take(SIZE / 2).bytes.capacity(), SIZE / 2);
        drop(quarter);
    }

    #[test]
    fn at_most_keep_buffers_are_kept_and_small_ones_never() {
        let buffers = BlockBuffers::new("test", 2);
        let blocks: Vec<Bytes> = (0..4)
            .map(|_| {
                let mut b = buffers.take(SIZE);
                b.extend_from_slice(&[0u8; 8]);
                b.freeze()
            })
            .collect();
        drop(blocks);
        assert_eq!(buffers.kept(), 2);
        drop(buffers.take(1024));
        assert_eq!(buffers.kept(), 2);
    }
}
