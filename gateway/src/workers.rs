//! What a node runs in the background, beside its servers: the collector,
//! scheduled dumps and imports, a mirror's follower and replicator, warm
//! on arrival, the status samples, the
//! metrics upkeep, the cluster's heartbeat and run-time pins, and the TLS
//! certificate's reload. All go into one set, stop
//! at one signal, and run under supervision: one that panics is started
//! again (see `supervisor`).

use std::sync::Arc;
use std::time::Duration;

use ferry_cache::Collector;
use futures::future::BoxFuture;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::node::{Node, StartError};
use crate::supervisor::supervise;

/// Spawns every worker of `node` into `set`. Each stops when `stop` is
/// cancelled, except the cluster's heartbeat, which leaves the cluster
/// at `leave` (SIGTERM) so peers route around this node at once.
pub fn spawn(
    node: &mut Node,
    set: &mut JoinSet<()>,
    stop: &CancellationToken,
    leave: &CancellationToken,
) -> Result<(), StartError> {
    let workers = node.workers.clone();
    let mut run = |name: &str, start: Box<dyn Fn() -> BoxFuture<'static, ()> + Send>| {
        set.spawn(supervise(
            name.to_string(),
            workers.clone(),
            stop.clone(),
            start,
        ));
    };
    let config = &node.config;
    if let Some(interval) = config.volume.dump_interval {
        let store = node.stores.get(&config.data_store)?.clone();
        let (meta, scratch, keep) = (
            node.meta.clone(),
            config.data_dir.clone(),
            config.volume.dump_keep,
        );
        let stop = stop.clone();
        run(
            "dumps",
            Box::new(move || {
                let (meta, store, scratch, stop) =
                    (meta.clone(), store.clone(), scratch.clone(), stop.clone());
                Box::pin(async move {
                    ferry_cache::run_scheduled_dumps(
                        meta,
                        store,
                        scratch,
                        interval,
                        keep,
                        stop.cancelled_owned(),
                    )
                    .await;
                })
            }),
        );
    }
    let collector = Collector::new(
        node.meta.clone(),
        node.stores.clone(),
        config.volume.grace,
        config.volume.lease,
    )
    .with_upload_expiry(config.volume.upload_expiry)
    .with_log_keep(
        config
            .region
            .as_ref()
            .map_or(ferry_cache::volume::DEFAULT_LOG_KEEP, |r| r.log_keep),
    )
    .with_holder(&node.identity);
    // A source's collector keeps what its mirrors have not applied yet.
    let collector = match &node.region.feed {
        Some(feed) => collector.with_feed(feed.source.clone()),
        None => collector,
    };
    let interval = config.volume.interval;
    {
        let stop = stop.clone();
        run(
            "collector",
            Box::new(move || {
                let (collector, stop) = (collector.clone(), stop.clone());
                Box::pin(async move { collector.run(interval, stop.cancelled_owned()).await })
            }),
        );
    }
    if let Some((follower, replicator)) = node.region.mirror_tasks.take() {
        let follower_stop = stop.clone();
        run(
            "follower",
            Box::new(move || {
                let (follower, stop) = (follower.clone(), follower_stop.clone());
                Box::pin(async move { follower.run(stop).await })
            }),
        );
        let replicator_stop = stop.clone();
        run(
            "replicator",
            Box::new(move || {
                let (replicator, stop) = (replicator.clone(), replicator_stop.clone());
                Box::pin(async move { replicator.run(stop).await })
            }),
        );
    }
    {
        let (status, stop) = (node.status.clone(), stop.clone());
        run(
            "status",
            Box::new(move || {
                let (status, stop) = (status.clone(), stop.clone());
                Box::pin(async move { status.run(stop).await })
            }),
        );
    }
    if let Some(arrivals) = node.region.arrivals.clone() {
        let stop = stop.clone();
        run(
            "warm on arrival",
            Box::new(move || {
                let (arrivals, stop) = (arrivals.clone(), stop.clone());
                Box::pin(async move { arrivals.run(stop).await })
            }),
        );
    }
    for schedule in config.imports.clone() {
        let (meta, stores, import_stop) = (node.meta.clone(), node.stores.clone(), stop.clone());
        let holder = node.identity.clone();
        tracing::info!(import = %schedule.name, every = ?schedule.every, "scheduled import");
        run(
            &format!("import {}", schedule.name),
            Box::new(move || {
                let (meta, stores, schedule, holder, stop) = (
                    meta.clone(),
                    stores.clone(),
                    schedule.clone(),
                    holder.clone(),
                    import_stop.clone(),
                );
                Box::pin(async move {
                    ferry_cache::region::import::run_scheduled(meta, stores, schedule, holder, stop)
                        .await
                })
            }),
        );
    }
    if let Some(handle) = node.metrics.clone() {
        let upkeep_stop = stop.clone();
        run(
            "metrics",
            Box::new(move || {
                let (handle, stop) = (handle.clone(), upkeep_stop.clone());
                Box::pin(async move {
                    let mut ticker = tokio::time::interval(Duration::from_secs(5));
                    loop {
                        tokio::select! {
                            () = stop.cancelled() => return,
                            _ = ticker.tick() => handle.run_upkeep(),
                        }
                    }
                })
            }),
        );
    }
    if let Some(tls) = &node.tls {
        let (certs, reload_stop) = (tls.certs(), stop.clone());
        run(
            "tls-reload",
            Box::new(move || {
                let (certs, stop) = (certs.clone(), reload_stop.clone());
                Box::pin(async move { crate::listen::tls::watch(certs, stop).await })
            }),
        );
    }
    // A cluster's run-time pins, set on any member, are followed here.
    if matches!(*node.kept_pins, ferry_cache::pins::KeptPins::Redis(_)) {
        let (kept, pins, stop) = (
            node.kept_pins.clone(),
            node.cache.pins().clone(),
            stop.clone(),
        );
        run(
            "pins",
            Box::new(move || {
                let (kept, pins, stop) = (kept.clone(), pins.clone(), stop.clone());
                Box::pin(crate::pins::follow(kept, pins, stop))
            }),
        );
    }
    if let Some(cluster) = node.cluster.clone() {
        let leave = leave.clone();
        run(
            "heartbeat",
            Box::new(move || {
                let (cluster, leave): (Arc<_>, _) = (cluster.clone(), leave.clone());
                Box::pin(async move { cluster.run(leave.cancelled_owned()).await })
            }),
        );
    }
    Ok(())
}
