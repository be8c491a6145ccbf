//! Offline tools on a volume: `ferry meta dump|load` and `ferry fsck`.
//! With the embedded engine they need the server stopped (the metadata file
//! is locked while it runs); with Redis they run beside live gateways.

use std::collections::HashMap;
use std::io::{BufReader, BufWriter, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use ferry_cache::Stores;
use ferry_config::{Config, Overrides};
use ferry_meta::Meta;
use ferry_meta::dump::Summary;
use indicatif::{ProgressBar, ProgressStyle};

use crate::cli::{FsckArgs, VolumeArgs};

fn open_config(volume: &VolumeArgs, env: &HashMap<String, String>) -> Result<Config, String> {
    let flags = Overrides {
        data_dir: volume.data_dir.clone(),
        ..Overrides::default()
    };
    Config::load(volume.config.as_deref(), env, &flags).map_err(|e| e.to_string())
}

async fn open_meta(config: &Config) -> Result<Arc<dyn Meta>, String> {
    ferry_meta::open(&config.meta)
        .await
        .map_err(|e| e.to_string())
}

/// The metadata engine of the volume the arguments name (for the
/// benchmark client, which reports any error the same way).
pub async fn open_volume_meta(
    volume: &VolumeArgs,
    env: &HashMap<String, String>,
) -> Result<Arc<dyn Meta>, String> {
    open_meta(&open_config(volume, env)?).await
}

fn spinner(what: &str) -> ProgressBar {
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} {elapsed} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.set_message(what.to_string());
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

fn describe(summary: &Summary) -> String {
    format!(
        "{} buckets, {} objects, {} uploads, {} parts",
        summary.buckets, summary.objects, summary.uploads, summary.parts
    )
}

pub async fn dump(config: &Config, output: Option<&Path>) -> Result<(), String> {
    let meta = open_meta(config).await?;
    let bar = spinner("dumping");
    let mut progress = |s: &Summary| {
        if s.objects.is_multiple_of(1000) {
            bar.set_message(format!("dumping: {}", describe(s)));
        }
    };
    let summary = match output {
        Some(path) => {
            let file = std::fs::File::create(path)
                .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
            let mut out = BufWriter::new(file);
            let summary = ferry_meta::dump::dump(meta.as_ref(), &mut out, &mut progress)
                .await
                .map_err(|e| e.to_string())?;
            out.into_inner()
                .map_err(|e| e.to_string())?
                .sync_all()
                .map_err(|e| format!("cannot sync {}: {e}", path.display()))?;
            summary
        }
        None => {
            let mut out = BufWriter::new(std::io::stdout());
            let summary = ferry_meta::dump::dump(meta.as_ref(), &mut out, &mut progress)
                .await
                .map_err(|e| e.to_string())?;
            out.flush().map_err(|e| e.to_string())?;
            summary
        }
    };
    bar.finish_and_clear();
    eprintln!("dumped {}", describe(&summary));
    Ok(())
}

pub async fn load(config: &Config, file: &Path) -> Result<(), String> {
    let meta = open_meta(config).await?;
    let input =
        std::fs::File::open(file).map_err(|e| format!("cannot open {}: {e}", file.display()))?;
    let bar = spinner("loading");
    let summary = ferry_meta::dump::load(meta.as_ref(), &mut BufReader::new(input), &mut |s| {
        if s.objects.is_multiple_of(1000) {
            bar.set_message(format!("loading: {}", describe(s)));
        }
    })
    .await
    .map_err(|e| e.to_string())?;
    bar.finish_and_clear();
    eprintln!("loaded {}", describe(&summary));
    Ok(())
}

/// Returns whether the volume is clean.
pub async fn fsck(config: &Config, args: &FsckArgs) -> Result<bool, String> {
    let meta = open_meta(config).await?;
    let stores = Stores::open(&config.stores).map_err(|e| e.to_string())?;
    let bar = spinner("checking every layout against the stores");
    let report = ferry_cache::fsck(meta, &stores, args.repair, args.min_age)
        .await
        .map_err(|e| e.to_string())?;
    bar.finish_and_clear();
    println!(
        "checked {} objects, {} referenced blobs, {} stored blobs",
        report.objects, report.referenced_blobs, report.stored_blobs
    );
    for missing in &report.missing {
        println!(
            "missing: {}/{} -> {}:{}",
            missing.bucket, missing.key, missing.blob.store, missing.blob.blob
        );
    }
    for orphan in &report.orphans {
        println!("orphan: {}:{}", orphan.store, orphan.blob);
    }
    if report.young_unreferenced > 0 {
        println!(
            "{} unreferenced blobs are younger than {} and were not judged",
            report.young_unreferenced,
            humantime::format_duration(args.min_age)
        );
    }
    println!(
        "{} missing, {} orphaned{}",
        report.missing.len(),
        report.orphans.len(),
        if report.repaired {
            "; orphans queued for the collector"
        } else if report.orphans.is_empty() {
            ""
        } else {
            "; run with --repair to queue the orphans for deletion"
        }
    );
    Ok(report.is_clean())
}
