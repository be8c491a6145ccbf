//! How a block lies on the disk tier: as fixed-size pages, each an entry of
//! its own under a key derived from the block's.
//!
//! foyer's disk engine reads, checks and decodes whole entries. With a
//! block (4 MiB by default) as one entry, a 256 KiB range read of a block
//! on disk loaded, hashed and copied the whole block, then pushed it into
//! memory; with pages it loads only the pages the range covers. The page
//! size is in the page's key, so a changed setting never reads a page cut
//! another way.

use std::ops::Range;
use std::sync::{Arc, LazyLock};

use bytes::Bytes;

use crate::buffers::BlockBuffers;

/// The page size when none is configured. Each page is a disk read and a
/// separate write to the client's socket: measured on a 4 MiB block
/// (`benches/ab.sh`, disk config), 256 KiB pages served random 256 KiB
/// reads 3.3x faster than whole-block entries but streams 12 % slower;
/// 512 KiB pages keep streams and 4 MiB ranges at the old speed and still
/// serve small reads 2.8x faster.
pub const DEFAULT_PAGE_SIZE: u64 = 512 << 10;

/// The pages of one block: its key, its length and the page size.
#[derive(Debug, Clone)]
pub struct BlockPages<'a> {
    pub key: &'a str,
    pub len: u64,
    pub page_size: u64,
}

impl BlockPages<'_> {
    /// How many pages the block has.
    pub fn count(&self) -> u64 {
        self.len.div_ceil(self.page_size)
    }

    /// The indexes of the pages holding bytes `want` of the block.
    pub fn covering(&self, want: &Range<u64>) -> Range<u64> {
        if want.start >= want.end {
            return 0..0;
        }
        want.start / self.page_size..want.end.div_ceil(self.page_size)
    }

    /// Where page `index` lies in the block.
    pub fn span(&self, index: u64) -> Range<u64> {
        let start = index * self.page_size;
        start..(start + self.page_size).min(self.len)
    }

    /// The key of page `index`. Block keys are six fields separated by NUL;
    /// a page key has nine, so the two never collide.
    pub fn key(&self, index: u64) -> String {
        format!("{}\u{0}page\u{0}{}\u{0}{index}", self.key, self.page_size)
    }
}

/// The parts of pages `first..` (in order) that hold bytes `want` of the
/// block: slices, no copies.
pub fn pieces(
    pages: &BlockPages<'_>,
    first: u64,
    found: &[Bytes],
    want: &Range<u64>,
) -> Vec<Bytes> {
    found
        .iter()
        .zip(first..)
        .map(|(page, index)| {
            let span = pages.span(index);
            let from = want.start.max(span.start) - span.start;
            let to = want.end.min(span.end) - span.start;
            slice(page, from..to)
        })
        .collect()
}

fn slice(bytes: &Bytes, range: Range<u64>) -> Bytes {
    let start = usize::try_from(range.start).unwrap_or(usize::MAX);
    let end = usize::try_from(range.end).unwrap_or(usize::MAX);
    bytes.slice(start.min(bytes.len())..end.min(bytes.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pages(len: u64) -> BlockPages<'static> {
        BlockPages {
            key: "s\0b\0v\u{0}4096\u{0}0\u{0}10000",
            len,
            page_size: 4096,
        }
    }

    #[test]
    fn pages_cover_exactly_the_wanted_bytes() {
        let p = pages(10_000);
        assert_eq!(p.count(), 3);
        assert_eq!(p.covering(&(0..10_000)), 0..3);
        assert_eq!(p.covering(&(4095..4097)), 0..2);
        assert_eq!(p.covering(&(4096..8192)), 1..2);
        assert_eq!(p.covering(&(9000..9000)), 0..0);
        assert_eq!(p.span(2), 8192..10_000);
    }

    #[test]
    fn the_pieces_of_a_range_are_the_blocks_bytes() {
        let p = pages(10_000);
        let block: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        let all: Vec<Bytes> = (0..p.count())
            .map(|i| {
                let s = p.span(i);
                Bytes::copy_from_slice(&block[s.start as usize..s.end as usize])
            })
            .collect();
        for want in [
            0..10_000,
            100..200,
            4000..9000,
            4096..8192,
            8191..8193,
            9999..10_000,
        ] {
            let cover = p.covering(&want);
            let found = &all[cover.start as usize..cover.end as usize];
            let got: Vec<u8> = pieces(&p, cover.start, found, &want).concat();
            assert_eq!(
                &got[..],
                &block[want.start as usize..want.end as usize],
                "{want:?}"
            );
        }
    }

    #[test]
    fn page_keys_name_the_page_size_and_never_a_block() {
        let p = pages(10_000);
        assert_ne!(p.key(0), p.key(1));
        let other = BlockPages {
            page_size: 8192,
            ..p.clone()
        };
        assert_ne!(p.key(0), other.key(0));
        assert_eq!(p.key(0).split('\0').count(), 9);
    }
}

/// A page as the disk engines keep it. Stored as foyer stores `Bytes` (its
/// length, then its bytes: files written before are read alike), but read
/// into a buffer from a pool: foyer decodes every entry it loads into a
/// fresh allocation, and page-sized mallocs and frees were about 5 % of a
/// disk hit's CPU (`benches/ab.sh`, disk config: random 256 KiB 2.19 ->
/// 2.05 s/GB with the pool).
#[derive(Debug, Clone)]
pub struct DiskPage(pub Bytes);

/// Buffers of pages read from disk: as many as a few dozen reads have in
/// flight.
static PAGE_BUFFERS: LazyLock<Arc<BlockBuffers>> =
    LazyLock::new(|| BlockBuffers::new("disk_page", 64));

impl foyer::Code for DiskPage {
    fn encode(&self, writer: &mut impl std::io::Write) -> foyer::Result<()> {
        self.0.encode(writer)
    }

    fn decode(reader: &mut impl std::io::Read) -> foyer::Result<Self> {
        let len = usize::decode(reader)?;
        let mut buffer = PAGE_BUFFERS.take(len);
        buffer
            .fill_from(reader, len)
            .map_err(foyer::Error::io_error)?;
        Ok(DiskPage(buffer.freeze()))
    }

    fn estimated_size(&self) -> usize {
        self.0.estimated_size()
    }
}
