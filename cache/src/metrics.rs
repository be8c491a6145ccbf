//! Metric names of the data path, with their descriptions, in one place.

pub const GC_DELETED: &str = "ferry_gc_blobs_deleted_total";
pub const GC_FAILED: &str = "ferry_gc_delete_failures_total";
pub const STORE_REQUESTS: &str = "ferry_store_get_requests_total";
pub const STORE_BYTES_READ: &str = "ferry_store_bytes_read_total";
pub const STORE_ERRORS: &str = "ferry_store_get_errors_total";
pub const STORE_ADMISSION_WAIT_SECONDS: &str = "ferry_store_admission_wait_seconds";
pub const CACHE_HITS: &str = "ferry_cache_hits_total";
pub const CACHE_MISSES: &str = "ferry_cache_misses_total";
pub const CACHE_BYTES_SERVED: &str = "ferry_cache_bytes_served_total";
pub const CACHE_SINGLE_FLIGHT_JOINS: &str = "ferry_cache_single_flight_joins_total";
pub const CACHE_ERRORS: &str = "ferry_cache_errors_total";
pub const CACHE_DIRECT_READS: &str = "ferry_cache_direct_reads_total";
pub const CACHE_INFLIGHT_BYTES: &str = "ferry_cache_inflight_bytes";
pub const INFLIGHT_TIMEOUTS: &str = "ferry_cache_inflight_wait_timeouts_total";
pub const READS_STALLED: &str = "ferry_cache_reads_stalled_total";
pub const BLOCK_FETCH_SECONDS: &str = "ferry_block_fetch_seconds";
pub const READAHEAD_ISSUED: &str = "ferry_readahead_blocks_issued_total";
pub const READAHEAD_SKIPPED: &str = "ferry_readahead_blocks_skipped_total";
pub const READAHEAD_USED: &str = "ferry_readahead_blocks_used_total";
pub const READAHEAD_WASTED: &str = "ferry_readahead_blocks_wasted_total";
pub const CACHE_DISK_WRITES_DROPPED: &str = "ferry_cache_disk_writes_dropped_total";
pub const CACHE_DISK_REWRITES: &str = "ferry_cache_disk_rewrites_total";
pub const CACHE_DISK_PAGES_LOST: &str = "ferry_cache_disk_pages_lost_total";
pub const CACHE_DISK_ERRORS: &str = "ferry_cache_disk_errors_total";
pub const CACHE_BLOCKS_PINNED: &str = "ferry_cache_blocks_pinned_total";
pub const CACHE_PINS: &str = "ferry_cache_pins";
pub const CACHE_PIN_CAPACITY: &str = "ferry_cache_pin_capacity_bytes";
pub const PEER_REQUESTS: &str = "ferry_peer_requests_total";
pub const PEER_REQUEST_SECONDS: &str = "ferry_peer_request_seconds";
pub const PEER_BYTES_RECEIVED: &str = "ferry_peer_bytes_received_total";
pub const PEER_CORRUPT: &str = "ferry_peer_corrupt_answers_total";
pub const PEER_NO_LIVE_OWNER: &str = "ferry_peer_no_live_owner_total";
pub const PEER_SERVED: &str = "ferry_peer_served_total";
pub const PEER_BYTES_SERVED: &str = "ferry_peer_bytes_served_total";
pub const PEER_ANSWER_DIGESTS: &str = "ferry_peer_answer_digests_total";
pub const BLOCK_BUFFERS: &str = "ferry_block_buffers_total";
pub const PEER_REFUSED: &str = "ferry_peer_refused_total";
pub const HANDOFF_READS: &str = "ferry_handoff_reads_total";
pub const REPLICA_FILLS: &str = "ferry_replica_fills_total";
pub const WARM_ON_OPEN: &str = "ferry_warm_on_open_total";
pub const STORE_FALLBACKS: &str = "ferry_store_fallbacks_total";
pub const STORE_HEDGES: &str = "ferry_store_hedges_total";
pub const STORE_UNHEALTHY: &str = "ferry_store_unhealthy_total";
pub const FEED_MIRRORS: &str = "ferry_feed_mirrors";
pub const FEED_MIRROR_BEHIND: &str = "ferry_feed_mirror_behind_records";
pub const FEED_MIRRORS_DROPPED: &str = "ferry_feed_mirrors_dropped_total";
pub const FEED_TRIMMED: &str = "ferry_feed_log_trimmed_total";
pub const MIRROR_APPLIED: &str = "ferry_mirror_changes_applied_total";
pub const MIRROR_POSITION: &str = "ferry_mirror_position";
pub const MIRROR_LAG_SECONDS: &str = "ferry_mirror_lag_seconds";
pub const MIRROR_RESYNCS: &str = "ferry_mirror_resyncs_total";
pub const MIRROR_FEED_ERRORS: &str = "ferry_mirror_feed_errors_total";
pub const REPLICATION_QUEUE: &str = "ferry_replication_queue";
pub const REPLICATION_BLOBS: &str = "ferry_replication_blobs_total";
pub const REPLICATION_BYTES: &str = "ferry_replication_bytes_total";
pub const REPLICATION_COPY_SECONDS: &str = "ferry_replication_copy_seconds";
pub const IMPORT_RUNS: &str = "ferry_import_runs_total";
pub const IMPORT_LAST: &str = "ferry_import_last";
pub const IMPORT_LAST_RUN: &str = "ferry_import_last_run_timestamp_seconds";
pub const WARM_ARRIVAL_OBJECTS: &str = "ferry_warm_arrival_objects_total";
pub const WARM_ARRIVAL_BYTES: &str = "ferry_warm_arrival_bytes_total";
pub const WARM_ARRIVAL_QUEUE: &str = "ferry_warm_arrival_queue";
pub const WARM_ARRIVAL_LAG_SECONDS: &str = "ferry_warm_arrival_lag_seconds";
pub const WARM_ARRIVAL_OVER_CAPACITY: &str = "ferry_warm_arrival_over_capacity";
pub const WARM_ARRIVAL_EVICTED: &str = "ferry_warm_arrival_evicted_bytes_total";
pub const CLUSTER_MEMBERSHIP_CHANGES: &str = "ferry_cluster_membership_changes_total";
pub const CLUSTER_EXPECTED_SHARE: &str = "ferry_cluster_expected_share";

/// Registers descriptions with the installed recorder; call once at start.
pub fn describe() {
    metrics::describe_gauge!(
        CACHE_INFLIGHT_BYTES,
        metrics::Unit::Bytes,
        "Bytes of the in-flight budget held by reads and prefetches"
    );
    metrics::describe_counter!(
        INFLIGHT_TIMEOUTS,
        "Reads that waited cache.inflight_wait for the in-flight budget and were answered SlowDown"
    );
    metrics::describe_counter!(
        READS_STALLED,
        "Reads ended because their client took no block for cache.send_timeout"
    );
    metrics::describe_counter!(
        PEER_REQUESTS,
        "Requests to peers, by verb (get|prefetch|probe) and outcome (ok|not_cached|store_error|failed)"
    );
    metrics::describe_histogram!(
        PEER_REQUEST_SECONDS,
        metrics::Unit::Seconds,
        "Time of a request to a peer, by verb"
    );
    metrics::describe_counter!(
        PEER_BYTES_RECEIVED,
        metrics::Unit::Bytes,
        "Block bytes received from peers"
    );
    metrics::describe_counter!(
        PEER_CORRUPT,
        "Peer answers refused for a wrong length, checksum or MAC (the peer is marked down)"
    );
    metrics::describe_counter!(
        BLOCK_BUFFERS,
        "Buffers for blocks put together from pieces, by pool (peer: blocks received from peers; disk: blocks read from disk pages; disk_page: pages as the disk tier loads them) and outcome: reused (left by a dropped block) or new"
    );
    metrics::describe_counter!(
        PEER_ANSWER_DIGESTS,
        "Block answers' body digests for their MAC, by outcome: kept from an earlier answer, or computed"
    );
    metrics::describe_counter!(
        PEER_NO_LIVE_OWNER,
        "Block reads that found no live member and read the store directly"
    );
    metrics::describe_counter!(
        PEER_SERVED,
        "Peer requests answered, by verb and outcome (hit|loaded|not_cached|error)"
    );
    metrics::describe_counter!(
        PEER_BYTES_SERVED,
        metrics::Unit::Bytes,
        "Block bytes sent to peers"
    );
    metrics::describe_counter!(
        PEER_REFUSED,
        "Peer requests refused, by reason (signature|expired|protocol|malformed)"
    );
    metrics::describe_counter!(
        HANDOFF_READS,
        "Asks of a block's previous owner after a membership change, by outcome (hit|miss)"
    );
    metrics::describe_counter!(
        STORE_FALLBACKS,
        "Block reads answered by a later store of their chain, by logical store, answering store and reason (missing|failed|timeout|skipped|hedge)"
    );
    metrics::describe_counter!(
        STORE_HEDGES,
        "Hedged reads, by first store and outcome (won|lost|no_budget)"
    );
    metrics::describe_counter!(
        STORE_UNHEALTHY,
        "Times a store was marked unhealthy and skipped in its chain for a while"
    );
    metrics::describe_counter!(
        WARM_ON_OPEN,
        "Objects whose first read started a warm-up, by outcome (started|elsewhere: another node started it)"
    );
    metrics::describe_counter!(
        REPLICA_FILLS,
        "Asks of a block's top owner by another owner filling its copy, by outcome (hit|miss)"
    );
    metrics::describe_counter!(
        CLUSTER_MEMBERSHIP_CHANGES,
        "Changes of this node's view of the cluster"
    );
    metrics::describe_gauge!(
        CLUSTER_EXPECTED_SHARE,
        "Each member's expected share of the blocks (weight over total), by node"
    );
    metrics::describe_counter!(GC_DELETED, "Blobs the collector deleted from owned stores");
    metrics::describe_counter!(GC_FAILED, "Blob deletions that failed and were re-queued");
    metrics::describe_counter!(
        STORE_REQUESTS,
        "Read requests sent to a data store, by store"
    );
    metrics::describe_counter!(
        STORE_ERRORS,
        "Read requests a data store failed, by store (a missing object is not counted: a chain reads on)"
    );
    metrics::describe_counter!(
        STORE_BYTES_READ,
        metrics::Unit::Bytes,
        "Bytes read from a data store, by store"
    );
    metrics::describe_histogram!(
        STORE_ADMISSION_WAIT_SECONDS,
        metrics::Unit::Seconds,
        "Time a store read waited for a request slot and byte budget, by store and priority (demand|readahead|warmup)"
    );
    metrics::describe_counter!(
        CACHE_HITS,
        "Block reads served by a cache tier (tier=memory|disk)"
    );
    metrics::describe_counter!(CACHE_MISSES, "Block reads that went to the data store");
    metrics::describe_counter!(
        CACHE_BYTES_SERVED,
        metrics::Unit::Bytes,
        "Bytes of blocks served, by source (memory|disk|store)"
    );
    metrics::describe_counter!(
        CACHE_SINGLE_FLIGHT_JOINS,
        "Block misses that waited for another request's fetch instead of fetching"
    );
    metrics::describe_counter!(CACHE_ERRORS, "Cache tier failures answered as misses");
    metrics::describe_counter!(
        CACHE_DIRECT_READS,
        "Small reads of uncached blocks answered with just their range from the store"
    );
    metrics::describe_counter!(
        READAHEAD_ISSUED,
        "Blocks prefetched because reads of a blob were sequential"
    );
    metrics::describe_counter!(
        READAHEAD_SKIPPED,
        "Prefetches skipped because the in-flight budget was spent"
    );
    metrics::describe_counter!(
        READAHEAD_USED,
        "Prefetched blocks that a read then asked for"
    );
    metrics::describe_counter!(
        READAHEAD_WASTED,
        "Prefetched blocks no read asked for before their stream was reset or forgotten"
    );
    metrics::describe_counter!(
        CACHE_DISK_WRITES_DROPPED,
        "Pages the disk tier did not write because its flush buffers (reason=buffer_full) or queue (reason=queue_full) were full, its admission refused them (reason=not_admitted), or its disk's filesystem was full (reason=disk_full); such a page is a later miss"
    );
    metrics::describe_counter!(
        CACHE_DISK_ERRORS,
        "Failures of a disk of the cache tier, by disk (its folder) and op (open: left out at start; read: a miss, and three within 10 s set the disk aside, its blocks read from outside, tried again after 30 s; full: its filesystem filled up and its writes pause until it has room)"
    );
    metrics::describe_counter!(
        CACHE_DISK_REWRITES,
        "Blocks a warm-up's prefetch wrote to disk again because their pages were dropped on the way (the disk's write buffers were full)"
    );
    metrics::describe_counter!(
        CACHE_BLOCKS_PINNED,
        "Blocks written to the pinned share of a disk, by how: fetched (a block of a pinned prefix loaded from outside) or moved (cached before its prefix was pinned, moved by a whole-block read such as a warm-up)"
    );
    metrics::describe_gauge!(
        CACHE_PINS,
        "Prefixes pinned on this node, from the config (source=config) and set at run time (source=runtime)"
    );
    metrics::describe_gauge!(
        CACHE_PIN_CAPACITY,
        "Bytes of the disk tier kept for pinned blocks (the disks' pin_share); 0: pinning is off"
    );
    metrics::describe_counter!(
        CACHE_DISK_PAGES_LOST,
        "Pages the disk tier listed but could not serve: damaged on disk (reason=damaged: checksum or header mismatch, the page is dropped) or of the wrong length (reason=wrong_length); each is a miss, never wrong bytes"
    );
    metrics::describe_histogram!(
        BLOCK_FETCH_SECONDS,
        metrics::Unit::Seconds,
        "Time to obtain a block, by source (memory|disk|store)"
    );
    for (name, help) in [
        (FEED_MIRRORS, "Mirror regions registered at this source"),
        (
            FEED_MIRROR_BEHIND,
            "Change-log records a mirror has not applied yet, by mirror",
        ),
        (
            MIRROR_POSITION,
            "The last source sequence number this mirror applied",
        ),
        (
            MIRROR_LAG_SECONDS,
            "Age of the last applied source record while behind (0 when caught up)",
        ),
        (
            REPLICATION_QUEUE,
            "Blobs waiting to be copied into this region's store",
        ),
        (
            IMPORT_LAST,
            "The last scheduled run's summary, by import and count",
        ),
        (
            IMPORT_LAST_RUN,
            "When a scheduled import last ran (Unix seconds)",
        ),
    ] {
        metrics::describe_gauge!(name, help);
    }
    for (name, help) in [
        (
            FEED_MIRRORS_DROPPED,
            "Mirrors dropped for being silent longer than region.mirror_timeout",
        ),
        (FEED_TRIMMED, "Change-log records trimmed"),
        (MIRROR_APPLIED, "Source records applied by this mirror"),
        (
            MIRROR_RESYNCS,
            "Resyncs of this mirror from the source's snapshot",
        ),
        (
            MIRROR_FEED_ERRORS,
            "Failed requests of the follower to the source's feed",
        ),
        (
            REPLICATION_BLOBS,
            "Replication jobs finished, by outcome (copied|present|unreferenced|missing|failed)",
        ),
        (
            IMPORT_RUNS,
            "Scheduled import runs, by import and outcome (ok|failed|refused)",
        ),
    ] {
        metrics::describe_counter!(name, help);
    }
    metrics::describe_counter!(
        REPLICATION_BYTES,
        metrics::Unit::Bytes,
        "Bytes copied into this region's store"
    );
    metrics::describe_counter!(
        WARM_ARRIVAL_OBJECTS,
        "Objects under a [[region.warm]] prefix, by outcome: warmed (every block on its owners), failed (some block failed; tried again later), skipped (the prefixes hold more than the cluster's tiers)"
    );
    metrics::describe_counter!(
        WARM_ARRIVAL_BYTES,
        metrics::Unit::Bytes,
        "Bytes warmed on arrival, by how: loaded (from the store by their owner) or cached (already there)"
    );
    metrics::describe_gauge!(
        WARM_ARRIVAL_QUEUE,
        "Objects waiting to be warmed on arrival on this node (the lease holder)"
    );
    metrics::describe_histogram!(
        WARM_ARRIVAL_LAG_SECONDS,
        metrics::Unit::Seconds,
        "From an object's commit (at the source) to every block of it on its owners in this region"
    );
    metrics::describe_gauge!(
        WARM_ARRIVAL_OVER_CAPACITY,
        "1 while warm on arrival is stopped because its prefixes hold more than the cluster's tiers"
    );
    metrics::describe_counter!(
        WARM_ARRIVAL_EVICTED,
        metrics::Unit::Bytes,
        "Bytes of replaced or deleted versions evicted from the cluster by warm on arrival"
    );
    metrics::describe_histogram!(
        REPLICATION_COPY_SECONDS,
        metrics::Unit::Seconds,
        "Time to copy one blob into this region's store"
    );
}
