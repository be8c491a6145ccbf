//! The BLAKE3 digests of block answers this node sent, so a block served
//! to many peers is hashed once, not once per answer (protocol 2's MAC
//! covers a body through its digest: see `wire::AnswerMac`).
//!
//! Kept by block address and byte range. A block's address names
//! immutable bytes (blob keys are never rewritten; an imported object
//! that changed has another version, so another address), so a digest
//! never goes stale; if it ever were, the asker, which hashes what it
//! received, would refuse the answer and read elsewhere — a failed peer
//! read, never a wrong byte.

use std::ops::Range;

use foyer::{Cache, CacheBuilder};

use crate::metrics as m;
use crate::source::BlockAddr;

/// Digests remembered at most: with 4 MiB blocks, 256 GiB of served
/// blocks, in under 20 MiB (keys included).
const CAPACITY: usize = 65_536;

#[derive(Clone)]
pub struct AnswerDigests {
    digests: Cache<String, [u8; 32]>,
}

impl Default for AnswerDigests {
    fn default() -> Self {
        AnswerDigests {
            digests: CacheBuilder::new(CAPACITY).build(),
        }
    }
}

impl AnswerDigests {
    /// The digest of `body`, the bytes `range` of `addr`: remembered, or
    /// computed now and remembered. Only whole blocks are remembered: a
    /// part is what a node that does not keep the block asks for, rarely
    /// the same part twice, and would crowd out the blocks' digests.
    pub fn of(&self, addr: &BlockAddr, range: &Range<u64>, body: &[u8]) -> [u8; 32] {
        if *range != (0..addr.len) {
            metrics::counter!(m::PEER_ANSWER_DIGESTS, "outcome" => "computed").increment(1);
            return super::wire::body_digest(body);
        }
        let key = format!("{}\u{0}{}\u{0}{}", addr.cache_key(), range.start, range.end);
        if let Some(entry) = self.digests.get(&key) {
            metrics::counter!(m::PEER_ANSWER_DIGESTS, "outcome" => "kept").increment(1);
            return *entry.value();
        }
        metrics::counter!(m::PEER_ANSWER_DIGESTS, "outcome" => "computed").increment(1);
        let digest = super::wire::body_digest(body);
        self.digests.insert(key, digest);
        digest
    }
}

#[cfg(test)]
mod tests {
    use super::super::wire::body_digest;
    use super::*;

    fn addr(index: u64) -> BlockAddr {
        BlockAddr {
            store: "data".into(),
            blob: "blobs/ab/cd/x".into(),
            version: String::new(),
            block_size: 16,
            index,
            len: 16,
            pinned: false,
        }
    }

    #[test]
    fn a_digest_is_of_its_block_and_range() {
        let digests = AnswerDigests::default();
        let block = b"0123456789abcdef";
        let whole = digests.of(&addr(0), &(0..16), block);
        assert_eq!(whole, body_digest(block));
        // Kept: the same address and range answer the kept digest.
        assert_eq!(digests.of(&addr(0), &(0..16), block), whole);
        // Another range, or another block, is hashed for itself.
        assert_eq!(
            digests.of(&addr(0), &(4..8), &block[4..8]),
            body_digest(b"4567")
        );
        // A part is never remembered: asked again, it is hashed again.
        assert_eq!(digests.of(&addr(0), &(4..8), b"WXYZ"), body_digest(b"WXYZ"));
        assert_eq!(
            digests.of(&addr(1), &(0..16), b"fedcba9876543210"),
            body_digest(b"fedcba9876543210")
        );
    }
}
