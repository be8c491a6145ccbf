//! Decoded layouts, kept by entry id.
//!
//! A GET needs the key's current entry and its layout. The entry must come
//! from the metadata engine every time (read-after-write), but a layout
//! never changes for a given entry id (ids are fresh for every version), so
//! decoding it again on every ranged GET of a large multipart object — a
//! model file read as thousands of ranges, with a segment per part — is
//! wasted work. A GET reads the entry alone, and the layout only when this
//! entry id's layout is not kept yet.

use std::sync::Arc;

use ferry_meta::{Entry, Layout, Meta, MetaError};
use foyer::{Cache, CacheBuilder};

/// Memory for kept layouts; a segment costs about 150 bytes, so this holds
/// some 200,000 segments (a thousand 8 GiB objects in 64 MiB parts).
const CAPACITY_BYTES: usize = 32 << 20;

#[derive(Clone)]
pub struct Layouts {
    kept: Cache<String, Arc<Layout>>,
}

impl Default for Layouts {
    fn default() -> Self {
        Layouts::with_capacity(CAPACITY_BYTES)
    }
}

impl Layouts {
    pub fn with_capacity(bytes: usize) -> Layouts {
        Layouts {
            kept: CacheBuilder::new(bytes)
                .with_weighter(|id: &String, layout: &Arc<Layout>| {
                    id.len()
                        + layout
                            .segments
                            .iter()
                            .map(|s| 64 + s.store.len() + s.blob.len() + s.version.len())
                            .sum::<usize>()
                })
                .build(),
        }
    }

    /// The current entry of `bucket`/`key` and its layout.
    pub async fn current(
        &self,
        meta: &dyn Meta,
        bucket: &str,
        key: &str,
    ) -> Result<(Entry, Arc<Layout>), MetaError> {
        let entry = meta.head(bucket, key).await?;
        if let Some(kept) = self.kept.get(&entry.id) {
            return Ok((entry, kept.value().clone()));
        }
        // The key may have changed since the head; take the pair as read
        // together.
        let (entry, layout) = meta.get(bucket, key).await?;
        let layout = Arc::new(layout);
        self.kept.insert(entry.id.clone(), layout.clone());
        Ok((entry, layout))
    }
}

#[cfg(test)]
mod tests {
    use ferry_meta::conformance::simple_entry;
    use ferry_meta::{EmbeddedMeta, Precondition};

    use super::*;

    #[tokio::test]
    async fn an_overwritten_key_never_answers_with_the_old_layout() {
        let dir = tempfile::tempdir().expect("tempdir");
        let meta = EmbeddedMeta::open(&dir.path().join("meta.redb")).expect("meta");
        meta.create_bucket("b").await.expect("bucket");
        let layouts = Layouts::default();
        let mut written = Vec::new();
        for round in 0..3 {
            let (entry, layout) = simple_entry(&format!("etag{round}"), 3);
            meta.put("b", "k", entry.clone(), layout.clone(), Precondition::None)
                .await
                .expect("put");
            // Twice: the first read keeps the layout, the second uses it.
            for _ in 0..2 {
                let (got, got_layout) = layouts.current(&meta, "b", "k").await.expect("read");
                assert_eq!(got.id, entry.id);
                assert_eq!(*got_layout, layout);
            }
            written.push(layout);
        }
        assert_ne!(written[0], written[2]);
        meta.delete("b", "k").await.expect("delete");
        assert!(matches!(
            layouts.current(&meta, "b", "k").await,
            Err(MetaError::NoSuchKey { .. })
        ));
    }
}
