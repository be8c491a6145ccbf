use ferry_meta::MetaError;

pub type Result<T, E = CacheError> = std::result::Result<T, E>;

/// Failures of the data path. The gateway maps these to S3 codes.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// A layout names a store this gateway has no configuration for.
    #[error("no store named {0:?} is configured")]
    UnknownStore(String),
    /// A configured store could not be built (bad URL, missing feature).
    #[error("store {store:?}: {reason}")]
    StoreConfig { store: String, reason: String },
    /// A blob a committed layout names is missing from its store.
    #[error("blob {blob:?} is missing from store {store:?}")]
    MissingBlob { store: String, blob: String },
    /// An imported object changed at its source since it was imported
    /// (its ETag differs): it must be imported again.
    #[error("object {blob:?} in store {store:?} changed since it was imported")]
    Changed { store: String, blob: String },
    /// The store failed (network, permissions, throttling).
    #[error("store {store:?} failed: {source}")]
    Store {
        store: String,
        #[source]
        source: object_store::Error,
    },
    /// The client's body ended early or failed while uploading.
    #[error("upload body failed: {0}")]
    Body(String),
    /// A range outside the object.
    #[error("range {start}..{end} is outside an object of {size} bytes")]
    Range { start: u64, end: u64, size: u64 },
    /// A cache tier failed (disk I/O, a corrupt entry); the read falls
    /// back to the store.
    #[error("block cache: {0}")]
    Tier(String),
    /// The change feed between regions failed (the source is unreachable,
    /// an answer's signature is wrong, a record cannot be decoded).
    #[error("change feed: {0}")]
    Feed(String),
    /// The cluster cannot be joined or its membership reached (a member
    /// that disagrees on block size, protocol or stores; Redis down).
    #[error("{0}")]
    Cluster(String),
    /// The in-flight budget stayed spent for as long as a read may wait
    /// for it: the node is busy, the client should retry.
    #[error("the in-flight budget stayed spent for {waited:?}")]
    Busy { waited: std::time::Duration },
    /// The client took none of its read's blocks for `send_timeout`: the
    /// read ended, releasing what it held.
    #[error("the client took no data for {send_timeout:?}")]
    ClientStalled { send_timeout: std::time::Duration },
    /// What this node's setup cannot do (run-time pins in a cluster with
    /// static membership, or on a node without a disk tier); says why.
    #[error("{0}")]
    Unsupported(String),
    #[error(transparent)]
    Meta(#[from] MetaError),
}

impl CacheError {
    pub(crate) fn store(store: &str, source: object_store::Error) -> Self {
        match source {
            object_store::Error::NotFound { path, .. } => CacheError::MissingBlob {
                store: store.to_string(),
                blob: path,
            },
            source => CacheError::Store {
                store: store.to_string(),
                source,
            },
        }
    }
}
