//! Imported entries whose source object was found changed: the next GET
//! of such an entry is refused at once, without asking the source again
//! (and without a conditional request that some servers would ignore).
//!
//! Kept by entry id in memory, per node: a re-import gives the key a new
//! entry id, which is not stale, and other nodes learn it from their own
//! first (refused) read.

use foyer::{Cache, CacheBuilder};

/// Entry ids remembered at most.
const CAPACITY: usize = 100_000;

#[derive(Clone)]
pub struct StaleEntries {
    ids: Cache<String, ()>,
}

impl Default for StaleEntries {
    fn default() -> Self {
        StaleEntries {
            ids: CacheBuilder::new(CAPACITY).build(),
        }
    }
}

impl StaleEntries {
    pub fn mark(&self, entry_id: &str) {
        self.ids.insert(entry_id.to_string(), ());
    }

    pub fn is_stale(&self, entry_id: &str) -> bool {
        self.ids.contains(entry_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_marked_entry_is_stale_and_another_is_not() {
        let stale = StaleEntries::default();
        stale.mark("entry-1");
        assert!(stale.is_stale("entry-1"));
        assert!(!stale.is_stale("entry-2"));
    }
}
