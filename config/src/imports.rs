//! `[[imports]]`: imports that re-run on a schedule (the "continuous"
//! import of an existing bucket), each like `ferry import STORE[/PREFIX]
//! --to BUCKET[/PREFIX] [--delete]` every `every`.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use crate::error::{ConfigError, Result};
use crate::region::RegionConfig;
use crate::store::StoreSpec;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawImport {
    /// `STORE[/PREFIX]`: a `[stores.NAME]` with `owned = false`.
    pub from: String,
    /// `BUCKET[/PREFIX]`.
    pub to: String,
    /// Remove entries whose source object is gone. Default false.
    #[serde(default)]
    pub delete: bool,
    #[serde(with = "humantime_serde")]
    pub every: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportSchedule {
    /// `from -> to`, naming it in logs and metrics.
    pub name: String,
    pub store: String,
    pub source_prefix: String,
    pub bucket: String,
    pub target_prefix: String,
    pub delete: bool,
    pub every: Duration,
}

/// `NAME[/REST]` split at its first `/`.
pub fn split_path(text: &str) -> (String, String) {
    match text.split_once('/') {
        Some((head, rest)) => (head.to_string(), rest.trim_matches('/').to_string()),
        None => (text.to_string(), String::new()),
    }
}

/// Validates each entry against `stores`, then refuses imports in a
/// mirror region.
pub(crate) fn validate(
    raw: Vec<RawImport>,
    stores: &BTreeMap<String, StoreSpec>,
    region: Option<&RegionConfig>,
) -> Result<Vec<ImportSchedule>> {
    let mut out = Vec::with_capacity(raw.len());
    for (i, import) in raw.into_iter().enumerate() {
        let field = |name: &str| format!("imports[{i}].{name}");
        let (store, source_prefix) = split_path(&import.from);
        match stores.get(&store) {
            None => {
                return Err(ConfigError::invalid(
                    field("from"),
                    format!("{store:?} is not a [stores.NAME] of this config"),
                ));
            }
            Some(spec) if spec.owned => {
                return Err(ConfigError::invalid(
                    field("from"),
                    format!(
                        "store {store:?} is owned by this volume; import adopts stores with owned = false"
                    ),
                ));
            }
            Some(_) => {}
        }
        let (bucket, target_prefix) = split_path(&import.to);
        if bucket.is_empty() {
            return Err(ConfigError::invalid(
                field("to"),
                format!("{:?} must start with a bucket name", import.to),
            ));
        }
        if import.every < Duration::from_secs(1) {
            return Err(ConfigError::invalid(field("every"), "must be at least 1s"));
        }
        out.push(ImportSchedule {
            name: format!("{} -> {}", import.from, import.to),
            store,
            source_prefix,
            bucket,
            target_prefix,
            delete: import.delete,
            every: import.every,
        });
    }
    if !out.is_empty() && region.is_some_and(|r| r.follow.is_some()) {
        return Err(ConfigError::invalid(
            "imports",
            "a mirror region (region.follow) takes its namespace from the source; schedule imports in the source region",
        ));
    }
    Ok(out)
}
