//! This node's part in a multi-region deployment (`[region]`): the
//! change feed a source serves, or a mirror's follower and replicator.

use std::sync::Arc;

use ferry_cache::region::{
    FeedClient, FeedSource, Follower, MirrorState, ReplicationPolicy, Replicator,
};
use ferry_cache::{ClientTls, Stores};
use ferry_config::Config;
use ferry_meta::Meta;

use super::StartError;

/// This node's part in a multi-region deployment: the change feed it
/// serves (a source with a feed secret), or the follower and replication
/// worker of a mirror.
#[derive(Default)]
pub struct Region {
    pub feed: Option<crate::feed::FeedState>,
    pub mirror: Option<Arc<MirrorState>>,
    pub(crate) mirror_tasks: Option<(Follower, Arc<Replicator>)>,
}

impl Region {
    pub(crate) fn start(
        config: &Config,
        meta: &Arc<dyn Meta>,
        stores: &Stores,
        identity: &str,
        tls: &ClientTls,
    ) -> Result<Region, StartError> {
        let Some(region) = &config.region else {
            return Ok(Region::default());
        };
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
                ..Region::default()
            });
        };
        let policy = ReplicationPolicy::new(&region.replicate, stores);
        if policy.stores().next().is_none() {
            tracing::warn!(
                "mirror region without an owned store that falls back to another: no blob is replicated, every read goes to the source's store"
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
        })
    }
}
