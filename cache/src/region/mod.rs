//! Regions: the change feed a source region serves, the mirror that
//! follows it (its follower and blob replication), import of existing
//! buckets, and the entries found changed at their source. (How a logical
//! store resolves to concrete stores here, the store chain, is the store
//! side of the `source` seam.)

pub mod arrivals;
pub mod feed;
pub mod import;
pub mod mirror;
mod prefixes;
mod stale;

pub use arrivals::{ArrivalStatus, WarmOnArrival};
pub use feed::FeedSource;
pub use mirror::{FeedClient, Follower, MirrorState, ReplicationPolicy, Replicator};
pub use prefixes::BucketPrefixes;
pub use stale::StaleEntries;
