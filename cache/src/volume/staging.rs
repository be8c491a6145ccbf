//! Staging files a crash left in the volume's local stores. object_store's
//! local backend writes a blob as `name#N` and renames it into place; a
//! process killed in between leaves the `#N` file, which no listing shows
//! (object_store hides them) and so neither the collector's queue nor fsck
//! ever names. The collector sweeps them once they are older than the
//! grace period, so no write still in progress is touched.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use ferry_config::StoreKind;

use crate::store::Stores;

/// Removes staging files last written before `older_than` from every
/// local store the volume owns; how many went.
pub(crate) async fn sweep(stores: &Stores, older_than: SystemTime) -> u64 {
    let roots: Vec<PathBuf> = stores
        .iter()
        .filter(|store| store.spec.owned)
        .filter_map(|store| match &store.spec.kind {
            StoreKind::File { root } => Some(root.clone()),
            _ => None,
        })
        .collect();
    let mut removed = 0;
    for root in roots {
        match tokio::task::spawn_blocking(move || sweep_folder(&root, older_than)).await {
            Ok(count) => removed += count,
            Err(e) => tracing::warn!(error = %e, "sweeping staging files failed"),
        }
    }
    removed
}

fn sweep_folder(root: &Path, older_than: SystemTime) -> u64 {
    let mut removed = 0;
    let mut folders = vec![root.to_path_buf()];
    while let Some(folder) = folders.pop() {
        let Ok(entries) = std::fs::read_dir(&folder) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() {
                folders.push(path);
                continue;
            }
            let stale = entry
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|written| written < older_than);
            if kind.is_file() && is_staging(&entry.file_name().to_string_lossy()) && stale {
                match std::fs::remove_file(&path) {
                    Ok(()) => {
                        removed += 1;
                        tracing::info!(file = %path.display(), "removed a staging file left by an interrupted write");
                    }
                    Err(e) => {
                        tracing::warn!(file = %path.display(), error = %e, "cannot remove a staging file")
                    }
                }
            }
        }
    }
    removed
}

/// `name#N`, N decimal: a file object_store's local backend is writing.
fn is_staging(name: &str) -> bool {
    name.rsplit_once('#').is_some_and(|(base, n)| {
        !base.is_empty() && !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())
    })
}

#[cfg(test)]
mod tests {
    use super::is_staging;

    #[test]
    fn only_numbered_staging_names_count() {
        assert!(is_staging("0f3a9c#1"));
        assert!(is_staging("blob#42"));
        assert!(!is_staging("blob"));
        assert!(!is_staging("#1"));
        assert!(!is_staging("blob#"));
        assert!(!is_staging("blob#tmp"));
    }
}
