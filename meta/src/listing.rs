//! The listing algorithm shared by engines: merge keys and common prefixes
//! in byte order, and jump over a common prefix's group with one seek
//! instead of reading its keys.

use crate::error::Result;
use crate::types::{Entry, ListPage, ListQuery};

/// An engine's ordered view of one bucket's keys.
pub(crate) trait KeyScan {
    /// Up to `limit` keys `>= from` (bytes), in order, with their entries.
    /// Returns fewer than `limit` only when the bucket has no more keys.
    fn scan(&mut self, from: &[u8], limit: usize) -> Result<Vec<(String, Entry)>>;
}

/// The smallest byte string greater than every string that starts with
/// `prefix`. UTF-8 never contains 0xFF, so appending it is enough.
pub(crate) fn after_group(prefix: &str) -> Vec<u8> {
    let mut bound = prefix.as_bytes().to_vec();
    bound.push(0xFF);
    bound
}

/// The smallest byte string greater than `key`.
fn just_after(key: &str) -> Vec<u8> {
    let mut bound = key.as_bytes().to_vec();
    bound.push(0);
    bound
}

/// The common prefix `key` rolls up into, if any.
fn common_prefix<'k>(key: &'k str, prefix: &str, delimiter: Option<&str>) -> Option<&'k str> {
    let delimiter = delimiter.filter(|d| !d.is_empty())?;
    let rest = key.get(prefix.len()..)?;
    let at = rest.find(delimiter)?;
    Some(&key[..prefix.len() + at + delimiter.len()])
}

pub(crate) fn list(scan: &mut dyn KeyScan, query: &ListQuery) -> Result<ListPage> {
    let max = query.max.max(1);
    let delimiter = query.delimiter.as_deref();
    let mut from: Vec<u8> = query.prefix.as_bytes().to_vec();
    if let Some(after) = &query.start_after {
        let resume = match common_prefix(after, &query.prefix, delimiter) {
            Some(group) if after.starts_with(&query.prefix) => after_group(group),
            _ => just_after(after),
        };
        if resume > from {
            from = resume;
        }
    }

    let mut page = ListPage::default();
    let mut count = 0usize;
    'outer: loop {
        // One more than fits, so a full page knows whether more follow.
        let want = max - count + 1;
        let batch = scan.scan(&from, want)?;
        let batch_len = batch.len();
        let mut sought = false;
        for (key, entry) in batch {
            if !key.starts_with(&query.prefix) {
                break 'outer;
            }
            if count == max {
                page.truncated = true;
                break 'outer;
            }
            count += 1;
            if let Some(group) = common_prefix(&key, &query.prefix, delimiter) {
                let group = group.to_string();
                from = after_group(&group);
                page.next_start_after = Some(group.clone());
                page.common_prefixes.push(group);
                // The rest of this batch may be inside the group: seek past it.
                sought = true;
                break;
            }
            from = just_after(&key);
            page.next_start_after = Some(key.clone());
            page.entries.push((key, entry));
        }
        if !sought && batch_len < want {
            break;
        }
    }
    if !page.truncated {
        page.next_start_after = None;
    }
    Ok(page)
}
