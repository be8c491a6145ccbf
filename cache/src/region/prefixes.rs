//! `BUCKET[/PREFIX]` filters, as `[region] replicate` and
//! `[[region.warm]]` write them: which objects a region's worker takes.

/// Parsed `BUCKET[/PREFIX]`es.
#[derive(Debug, Clone, Default)]
pub struct BucketPrefixes(Vec<(String, String)>);

impl BucketPrefixes {
    /// `texts` are checked by the config (each names a bucket).
    pub fn new(texts: &[String]) -> BucketPrefixes {
        BucketPrefixes(
            texts
                .iter()
                .map(|text| match text.split_once('/') {
                    Some((bucket, prefix)) => (bucket.to_string(), prefix.to_string()),
                    None => (text.clone(), String::new()),
                })
                .collect(),
        )
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether any of them holds `key` of `bucket`.
    pub fn covers(&self, bucket: &str, key: &str) -> bool {
        self.0
            .iter()
            .any(|(b, p)| b == bucket && key.starts_with(p.as_str()))
    }

    /// `(bucket, key prefix)` pairs.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(b, p)| (b.as_str(), p.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_alone_covers_all_its_keys_and_a_prefix_only_its_own() {
        let filters = BucketPrefixes::new(&["models/llama-3/".into(), "weights".into()]);
        assert!(filters.covers("models", "llama-3/model.safetensors"));
        assert!(!filters.covers("models", "llama-2/model.safetensors"));
        assert!(filters.covers("weights", "any/key"));
        assert!(!filters.covers("other", "llama-3/x"));
        assert!(!BucketPrefixes::new(&[]).covers("models", "x"));
    }
}
