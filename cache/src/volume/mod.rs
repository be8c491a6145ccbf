//! The volume's lifecycle: writing immutable blobs ([`BlobUpload`]),
//! collecting blobs nothing references any more ([`Collector`]), checking
//! the metadata against the stores ([`fsck`]), sweeping the staging files
//! an interrupted local write leaves (`staging`), and scheduled metadata
//! dumps into the data store.

pub(crate) mod blob;
pub(crate) mod collector;
mod dumps;
mod fsck;
mod staging;

pub use blob::{BLOB_PREFIX, BlobTags, BlobUpload, fresh_blob_key};
pub use collector::{CollectStats, Collector, DEFAULT_LOG_KEEP};
pub use dumps::{DUMP_PREFIX, dump_to_store, run_scheduled as run_scheduled_dumps};
pub use fsck::{FsckReport, MissingBlob, fsck};
