//! Dumping a namespace as JSON lines and loading it back, through the
//! `Meta` seam only, so a dump moves between engines.
//!
//! A dump taken while writes go on is consistent per object (each entry
//! with its layout) but not across objects; stop writers for an exact copy.

use std::io::{BufRead, Write};

use serde::{Deserialize, Serialize};

use crate::Meta;
use crate::error::{MetaError, Result};
use crate::types::*;

pub const FORMAT: &str = "ferry-meta-dump";
pub const VERSION: u32 = 1;

/// One line of a dump.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Record {
    Header {
        format: String,
        version: u32,
    },
    Bucket(BucketInfo),
    Object {
        bucket: String,
        key: String,
        entry: Box<Entry>,
        layout: Layout,
    },
    Upload {
        bucket: String,
        upload: Box<Upload>,
    },
    Part {
        bucket: String,
        key: String,
        upload_id: String,
        part: Part,
    },
}

/// Counts of what a dump or load handled.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    pub buckets: u64,
    pub objects: u64,
    pub uploads: u64,
    pub parts: u64,
}

fn write_record(out: &mut (dyn Write + Send), record: &Record) -> Result<()> {
    serde_json::to_writer(&mut *out, record).map_err(MetaError::internal)?;
    out.write_all(b"\n").map_err(MetaError::internal)
}

/// Writes every bucket, object (with its layout), upload and part.
/// `progress` is called after each object.
pub async fn dump(
    meta: &dyn Meta,
    out: &mut (dyn Write + Send),
    progress: &mut (dyn FnMut(&Summary) + Send),
) -> Result<Summary> {
    let mut summary = Summary::default();
    write_record(
        out,
        &Record::Header {
            format: FORMAT.into(),
            version: VERSION,
        },
    )?;
    for bucket in meta.list_buckets().await? {
        let name = bucket.name.clone();
        write_record(out, &Record::Bucket(bucket))?;
        summary.buckets += 1;
        let mut start_after = None;
        loop {
            let page = meta
                .list(
                    &name,
                    &ListQuery {
                        start_after: start_after.clone(),
                        max: 1000,
                        ..ListQuery::default()
                    },
                )
                .await?;
            for (key, _) in page.entries {
                // Entry and layout from one read, so they belong together.
                let (entry, layout) = match meta.get(&name, &key).await {
                    Ok(found) => found,
                    Err(MetaError::NoSuchKey { .. }) => continue, // deleted meanwhile
                    Err(e) => return Err(e),
                };
                write_record(
                    out,
                    &Record::Object {
                        bucket: name.clone(),
                        key,
                        entry: Box::new(entry),
                        layout,
                    },
                )?;
                summary.objects += 1;
                progress(&summary);
            }
            if !page.truncated {
                break;
            }
            start_after = page.next_start_after;
        }
        let mut query = UploadQuery {
            max: 1000,
            ..UploadQuery::default()
        };
        loop {
            let page = meta.list_uploads(&name, &query).await?;
            for upload in &page.uploads {
                write_record(
                    out,
                    &Record::Upload {
                        bucket: name.clone(),
                        upload: Box::new(upload.clone()),
                    },
                )?;
                summary.uploads += 1;
                let mut after = 0;
                loop {
                    let (parts, more) = match meta
                        .list_parts(&name, &upload.key, &upload.id, after, 1000)
                        .await
                    {
                        Ok(found) => found,
                        Err(MetaError::NoSuchUpload { .. }) => break,
                        Err(e) => return Err(e),
                    };
                    after = parts.last().map_or(after, |p| p.number);
                    for part in parts {
                        write_record(
                            out,
                            &Record::Part {
                                bucket: name.clone(),
                                key: upload.key.clone(),
                                upload_id: upload.id.clone(),
                                part,
                            },
                        )?;
                        summary.parts += 1;
                    }
                    if !more {
                        break;
                    }
                }
            }
            if !page.truncated {
                break;
            }
            let last = page.uploads.last().cloned();
            query.key_marker = last.as_ref().map(|u| u.key.clone());
            query.upload_id_marker = last.map(|u| u.id);
        }
    }
    out.flush().map_err(MetaError::internal)?;
    Ok(summary)
}

/// Loads a dump into `meta`, which must hold no buckets.
pub async fn load(
    meta: &dyn Meta,
    input: &mut (dyn BufRead + Send),
    progress: &mut (dyn FnMut(&Summary) + Send),
) -> Result<Summary> {
    if !meta.list_buckets().await?.is_empty() {
        return Err(MetaError::Internal(
            "the target namespace is not empty; load only into an empty one".into(),
        ));
    }
    let mut summary = Summary::default();
    let mut line = String::new();
    let mut number = 0usize;
    loop {
        line.clear();
        if input.read_line(&mut line).map_err(MetaError::internal)? == 0 {
            break;
        }
        number += 1;
        if line.trim().is_empty() {
            continue;
        }
        let record: Record = serde_json::from_str(&line)
            .map_err(|e| MetaError::Internal(format!("dump line {number}: {e}")))?;
        match record {
            Record::Header { format, version } => {
                if format != FORMAT || version != VERSION {
                    return Err(MetaError::Internal(format!(
                        "dump line {number}: format {format} v{version}; this ferry reads {FORMAT} v{VERSION}"
                    )));
                }
            }
            Record::Bucket(info) => {
                meta.restore_bucket(&info).await?;
                summary.buckets += 1;
            }
            Record::Object {
                bucket,
                key,
                entry,
                layout,
            } => {
                meta.put(&bucket, &key, *entry, layout, Precondition::IfAbsent)
                    .await?;
                summary.objects += 1;
                progress(&summary);
            }
            Record::Upload { bucket, upload } => {
                meta.create_upload(&bucket, *upload).await?;
                summary.uploads += 1;
            }
            Record::Part {
                bucket,
                key,
                upload_id,
                part,
            } => {
                meta.put_part(&bucket, &key, &upload_id, part).await?;
                summary.parts += 1;
            }
        }
    }
    if number == 0 {
        return Err(MetaError::Internal("the dump is empty".into()));
    }
    Ok(summary)
}
