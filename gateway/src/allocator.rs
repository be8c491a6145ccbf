//! The memory allocator's own figures, as gauges read whenever the node's
//! metrics are rendered (`crate::metrics::render`: each scrape of
//! `/metrics` and each status sample). A node's resident memory alone
//! cannot tell a leak from memory kept for reuse: `allocated` is what the
//! node holds live, `resident` what the allocator keeps in RAM for it
//! (live, kept for the next burst, and its own bookkeeping), `retained`
//! address space it has given back to the kernel.

/// Sets the gauges; a build with the C library's malloc has none.
pub fn record() {
    #[cfg(feature = "jemalloc")]
    jemalloc::record();
}

#[cfg(feature = "jemalloc")]
mod jemalloc {
    use tikv_jemalloc_ctl::{epoch, stats};

    use crate::metrics::ALLOCATOR_BYTES;

    pub fn record() {
        // jemalloc's statistics are a snapshot taken when the epoch moves.
        if let Err(e) = epoch::advance() {
            tracing::debug!(error = %e, "jemalloc statistics unavailable");
            return;
        }
        let figures = [
            ("allocated", stats::allocated::read()),
            ("active", stats::active::read()),
            ("resident", stats::resident::read()),
            ("metadata", stats::metadata::read()),
            ("retained", stats::retained::read()),
        ];
        for (state, bytes) in figures {
            if let Ok(bytes) = bytes {
                metrics::gauge!(ALLOCATOR_BYTES, "state" => state).set(bytes as f64);
            }
        }
    }
}
