//! This node's part in a multi-region deployment (`[region]`): the
//! change feed a source serves, or a mirror's follower and replicator;
//! and in either, warm on arrival.

use std::sync::Arc;

use ferry_cache::cluster::Node;
use ferry_cache::region::{
    FeedClient, FeedSource, Follower, MirrorState, ReplicationPolicy, Replicator, WarmOnArrival,
};
use ferry_cache::{BlockCache, ClientTls, Stores};
use ferry_config::Config;
use ferry_meta::Meta;

use super::StartError;

/// This node's part in a multi-region deployment: the change feed it
/// serves (a source with a feed secret), or the follower and replication
/// worker of a mirror; and warm on arrival (`[[region.warm]]`).
#[derive(Default)]
pub struct Region {
    pub feed: Option<crate::feed::FeedState>,
    pub mirror: Option<Arc<MirrorState>>,
    pub(crate) mirror_tasks: Option<(Follower, Arc<Replicator>)>,
    pub arrivals: Option<Arc<WarmOnArrival>>,
}

/// What warm on arrival works with: the block cache and, in a cluster,
/// this node's place in it.
pub(crate) struct Warming<'a> {
    pub cache: &'a Arc<BlockCache>,
    pub node: Option<Arc<Node>>,
}

impl Region {
    pub(crate) fn start(
        config: &Config,
        meta: &Arc<dyn Meta>,
        stores: &Stores,
        identity: &str,
        tls: &ClientTls,
        warming: Warming<'_>,
    ) -> Result<Region, StartError> {
        let Some(region) = &config.region else {
            return Ok(Region::default());
        };
        let arrivals = arrivals(config, meta, identity, warming);
        let (Some(follow), Some(secret)) = (&region.follow, &region.feed_secret) else {
            let feed = region
                .feed_secret
                .as_ref()
                .map(|secret| crate::feed::FeedState {
                    source: Arc::new(FeedSource::new(
                        meta.clone(),
                        &region.name,
                        config.volume.grace,
                        region.mirror_timeout,
                        region.log_keep,
                    )),
                    secret: secret.as_bytes().into(),
                });
            tracing::info!(region = %region.name, feed = feed.is_some(), "source region");
            return Ok(Region {
                feed,
                arrivals,
                ..Region::default()
            });
        };
        let policy = ReplicationPolicy::new(&region.replicate, stores);
        if policy.stores().next().is_none() {
            tracing::info!(
                "mirror region without a bucket of its own: nothing is replicated, every read goes through the cache to the source's bucket"
            );
        }
        let state = Arc::new(MirrorState::new(follow));
        let wake = Arc::new(tokio::sync::Notify::new());
        let client = FeedClient::new(follow, secret, &region.name, tls)?;
        let follower = Follower::new(
            meta.clone(),
            client,
            policy.clone(),
            state.clone(),
            wake.clone(),
            identity,
        );
        let replicator = Arc::new(Replicator::new(
            meta.clone(),
            stores.clone(),
            region.replication_concurrency,
            wake,
        ));
        tracing::info!(region = %region.name, %follow, replicated_stores = ?policy.stores().collect::<Vec<_>>(), "mirror region: writes are refused, the namespace follows the source");
        Ok(Region {
            feed: None,
            mirror: Some(state),
            mirror_tasks: Some((follower, replicator)),
            arrivals,
        })
    }
}

/// Warm on arrival, when `[[region.warm]]` names prefixes and the cache
/// keeps blocks.
fn arrivals(
    config: &Config,
    meta: &Arc<dyn Meta>,
    identity: &str,
    warming: Warming<'_>,
) -> Option<Arc<WarmOnArrival>> {
    let region = config.region.as_ref()?;
    if region.warm.is_empty() {
        return None;
    }
    if !warming.cache.keeps_blocks() {
        tracing::warn!(
            "[[region.warm]] is configured but the cache keeps no blocks: nothing is warmed"
        );
        return None;
    }
    Some(Arc::new(WarmOnArrival::new(
        meta.clone(),
        warming.cache.clone(),
        warming.node,
        &region.warm,
        region.warm_concurrency,
        super::cache::tier_capacity(config),
        identity,
    )))
}
