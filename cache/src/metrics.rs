//! Metric names of the data path, with their descriptions, in one place.

pub const GC_DELETED: &str = "ferry_gc_blobs_deleted_total";
pub const GC_FAILED: &str = "ferry_gc_delete_failures_total";
pub const STORE_BYTES_WRITTEN: &str = "ferry_store_bytes_written_total";

/// Registers descriptions with the installed recorder; call once at start.
pub fn describe() {
    metrics::describe_counter!(GC_DELETED, "Blobs the collector deleted from owned stores");
    metrics::describe_counter!(GC_FAILED, "Blob deletions that failed and were re-queued");
    metrics::describe_counter!(STORE_BYTES_WRITTEN, metrics::Unit::Bytes, "Bytes written to data stores as new blobs");
}
