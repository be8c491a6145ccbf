//! What a node runs in the background, beside its servers: the collector,
//! scheduled dumps and imports, a mirror's follower and replicator, the
//! metrics upkeep, and the cluster's heartbeat. All go into one set and
//! stop at one signal.

use std::time::Duration;

use ferry_cache::Collector;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::node::{Node, StartError};

/// Spawns every worker of `node` into `set`. Each stops when `stop` is
/// cancelled, except the cluster's heartbeat, which leaves the cluster
/// at `leave` (SIGTERM) so peers route around this node at once.
pub fn spawn(
    node: &mut Node,
    set: &mut JoinSet<()>,
    stop: &CancellationToken,
    leave: &CancellationToken,
) -> Result<(), StartError> {
    let config = &node.config;
    if let Some(interval) = config.volume.dump_interval {
        let store = node.stores.get(&config.data_store)?.clone();
        let (meta, scratch, keep) = (
            node.meta.clone(),
            config.data_dir.clone(),
            config.volume.dump_keep,
        );
        let stop = stop.clone();
        set.spawn(async move {
            ferry_cache::run_scheduled_dumps(
                meta,
                store,
                scratch,
                interval,
                keep,
                stop.cancelled_owned(),
            )
            .await;
        });
    }
    let collector = Collector::new(
        node.meta.clone(),
        node.stores.clone(),
        config.volume.grace,
        config.volume.lease,
    )
    .with_upload_expiry(config.volume.upload_expiry)
    .with_holder(&node.identity);
    // A source's collector keeps what its mirrors have not applied yet.
    let collector = match &node.region.feed {
        Some(feed) => collector.with_feed(feed.source.clone()),
        None => collector,
    };
    let (interval, collector_stop) = (config.volume.interval, stop.clone());
    set.spawn(async move {
        collector
            .run(interval, collector_stop.cancelled_owned())
            .await
    });
    if let Some((follower, replicator)) = node.region.mirror_tasks.take() {
        let (follower_stop, replicator_stop) = (stop.clone(), stop.clone());
        set.spawn(async move { follower.run(follower_stop).await });
        set.spawn(async move { replicator.run(replicator_stop).await });
    }
    for schedule in node.config.imports.clone() {
        let (meta, stores, stop) = (node.meta.clone(), node.stores.clone(), stop.clone());
        let holder = node.identity.clone();
        tracing::info!(import = %schedule.name, every = ?schedule.every, "scheduled import");
        set.spawn(async move {
            ferry_cache::region::import::run_scheduled(meta, stores, schedule, holder, stop).await
        });
    }
    if let Some(handle) = node.metrics.clone() {
        let stop = stop.clone();
        set.spawn(async move {
            let mut ticker = tokio::time::interval(Duration::from_secs(5));
            loop {
                tokio::select! {
                    () = stop.cancelled() => return,
                    _ = ticker.tick() => handle.run_upkeep(),
                }
            }
        });
    }
    if let Some(cluster) = node.cluster.clone() {
        let leave = leave.clone();
        set.spawn(async move { cluster.run(leave.cancelled_owned()).await });
    }
    Ok(())
}
