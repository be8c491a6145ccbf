//! The cluster's block sources.
//!
//! [`PeerSource`] is what a cluster node's own reads use: it walks the
//! block's members in rendezvous order, skipping those marked down; the
//! first live one loads it — a peer by a `get`, or this node from the
//! store (through [`OwnerSource`]). So a dead owner is replaced by the next
//! node in that order, every reader of a block goes to the same node, and a
//! herd costs one store read for the whole cluster. With replicas, the
//! others fill from the top live replica (by pull, on their own miss).
//!
//! [`OwnerSource`] is how a node loads a block it is to hold: first a
//! tiers-only ask of the block's top live owner when that is another node
//! (a replica fills from the top replica), and of its owner in each earlier
//! view (handoff, so a membership change costs peer reads, not a miss
//! storm), then the store. Tiers-only asks load nothing and ask no one, so
//! nothing is ever forwarded further.

use std::ops::Range;
use std::sync::Arc;

use async_trait::async_trait;

use super::client::{PeerClient, PeerError};
use super::view::{Member, Membership};
use super::wire::Verb;
use crate::error::Result;
use crate::metrics as m;
use crate::source::{BlockAddr, BlockSource, FetchedBlock};

/// A node's place in the cluster, shared by its sources.
pub struct Node {
    pub id: String,
    pub replicas: usize,
    pub membership: Arc<Membership>,
    pub client: PeerClient,
}

impl Node {
    /// Whether this node is one of the block's owners now.
    pub fn owns(&self, key: &[u8]) -> bool {
        self.owns_in(&self.membership.current().ranked(key))
    }

    /// Whether this node is one of the owners in the block's order `ranked`.
    fn owns_in(&self, ranked: &[&Member]) -> bool {
        ranked.iter().take(self.replicas).any(|m| m.id == self.id)
    }

    /// Whether this node keeps the block: it owns it, or it reads it from
    /// the store itself because no member before it in the block's order
    /// is live (it stands in for the owners that are down).
    fn keeps(&self, key: &[u8]) -> bool {
        let view = self.membership.current();
        let ranked = view.ranked(key);
        self.owns_in(&ranked)
            || ranked
                .iter()
                .find(|m| m.id == self.id || !self.client.is_down(&m.id))
                .is_none_or(|m| m.id == self.id)
    }
}

pub struct OwnerSource {
    node: Arc<Node>,
    store: Arc<dyn BlockSource>,
}

impl OwnerSource {
    pub fn new(node: Arc<Node>, store: Arc<dyn BlockSource>) -> OwnerSource {
        OwnerSource { node, store }
    }

    /// The block from a node that holds it already, asked tiers-only (so
    /// asks can never chain): the block's top live owner when that is not
    /// this node (a replica filling from the top replica), then its owner
    /// in each earlier view (handoff after a membership change).
    async fn handoff(&self, addr: &BlockAddr, range: &Range<u64>) -> Option<FetchedBlock> {
        let key = addr.cache_key();
        let mut asked = Vec::new();
        let current = self.node.membership.current();
        let views = std::iter::once(current.clone()).chain(self.node.membership.previous());
        for (i, view) in views.enumerate() {
            let Some(previous) = view
                .ranked(key.as_bytes())
                .into_iter()
                .find(|m| !self.node.client.is_down(&m.id))
                .cloned()
            else {
                continue;
            };
            if previous.id == self.node.id || asked.contains(&previous.id) {
                continue;
            }
            asked.push(previous.id.clone());
            let Some(now) = current.get(&previous.id).cloned() else {
                // It left the cluster; nobody to ask.
                continue;
            };
            let answer = self
                .node
                .client
                .ask(&now, addr, range.clone(), Verb::Get, true)
                .await;
            // The current view's ask is a replica fill, earlier ones handoff.
            let counter = if i == 0 {
                m::REPLICA_FILLS
            } else {
                m::HANDOFF_READS
            };
            let outcome = if answer.is_ok() { "hit" } else { "miss" };
            metrics::counter!(counter, "outcome" => outcome).increment(1);
            if let Ok(answer) = answer {
                return Some(answer.bytes.into());
            }
        }
        None
    }
}

#[async_trait]
impl BlockSource for OwnerSource {
    async fn fetch(&self, addr: &BlockAddr, range: Range<u64>) -> Result<FetchedBlock> {
        if let Some(found) = self.handoff(addr, &range).await {
            return Ok(found);
        }
        self.store.fetch(addr, range).await
    }

    fn check_store(&self, store: &str) -> Result<()> {
        self.store.check_store(store)
    }
}

pub struct PeerSource {
    node: Arc<Node>,
    owner: Arc<OwnerSource>,
}

impl PeerSource {
    pub fn new(node: Arc<Node>, owner: Arc<OwnerSource>) -> PeerSource {
        PeerSource { node, owner }
    }
}

#[async_trait]
impl BlockSource for PeerSource {
    async fn fetch(&self, addr: &BlockAddr, range: Range<u64>) -> Result<FetchedBlock> {
        let key = addr.cache_key();
        let view = self.node.membership.current();
        // Disk holds a block only on its owners: what this node keeps for
        // others stays in memory.
        let ranked = view.ranked(key.as_bytes());
        let memory_only = !self.node.owns_in(&ranked);
        for member in ranked {
            if member.id == self.node.id {
                let mut found = self.owner.fetch(addr, range).await?;
                found.memory_only = memory_only;
                return Ok(found);
            }
            if self.node.client.is_down(&member.id) {
                continue;
            }
            match self
                .node
                .client
                .ask(member, addr, range.clone(), Verb::Get, false)
                .await
            {
                Ok(answer) => {
                    return Ok(FetchedBlock {
                        bytes: answer.bytes,
                        memory_only,
                    });
                }
                // The owner reached the store and it failed: the same store
                // would fail here too.
                Err(PeerError::Store(e)) => return Err(e),
                Err(PeerError::NotCached | PeerError::Failed(_)) => {}
            }
        }
        // No member is live (or none serves): read the store directly.
        metrics::counter!(m::PEER_NO_LIVE_OWNER).increment(1);
        let mut found = self.owner.fetch(addr, range).await?;
        found.memory_only = memory_only;
        Ok(found)
    }

    fn check_store(&self, store: &str) -> Result<()> {
        self.owner.check_store(store)
    }

    fn keeps(&self, addr: &BlockAddr) -> bool {
        self.node.keeps(addr.cache_key().as_bytes())
    }
}
