//! The block read path: a GET's byte range becomes reads of fixed-size
//! blocks ([`BlockCache`]), served from this node's tier and fetched from
//! outside it on a miss, with readahead for streams (`readahead`), small
//! header reads answered directly (`direct`), decoded layouts of recently
//! read entries ([`Layouts`]), blocks handed to clients that may stall
//! (`handoff`), and layout slices for copies
//! ([`slice_layout`]).

pub(crate) mod blocks;
pub(crate) mod direct;
mod handoff;
mod layouts;
pub(crate) mod readahead;
mod slice;

pub use blocks::{BlockCache, BlockCacheConfig, HitCounts};
pub use layouts::Layouts;
pub use slice::slice_layout;
