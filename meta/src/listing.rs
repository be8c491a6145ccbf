//! The listing algorithm shared by engines: merge keys and common prefixes
//! in byte order, and jump over a common prefix's group with one seek
//! instead of reading its keys.
//!
//! Two things keep one call's work bounded whatever the bucket holds (an
//! anonymous listing of a public bucket is one call, and in the Redis
//! engine one script that blocks Redis while it runs):
//!
//! - **Batches grow only while they pay.** After a seek past a group the
//!   next key is as likely to open another group, so the next read is one
//!   key; each batch whose keys were all used doubles the next. A listing
//!   of groups reads about one key per group, and no read wastes more keys
//!   than the page has used so far.
//! - **A read budget** ([`LIST_READ_BUDGET`] keys by default, per call):
//!   once spent, the page ends where it is, truncated, and the next page
//!   resumes after its last key or common prefix. S3 allows a page to hold
//!   fewer keys than `max-keys`; a page always holds at least one.

use crate::error::Result;
use crate::types::{Entry, ListPage, ListQuery};

/// At most this many keys one listing call reads from the key index
/// (including keys it reads and then seeks past), unless the engine was
/// given another budget (`with_list_read_budget`).
pub const LIST_READ_BUDGET: usize = 10_000;

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

/// One page of `query`, reading at most `budget` keys (at least one).
pub(crate) fn list(scan: &mut dyn KeyScan, query: &ListQuery, budget: usize) -> Result<ListPage> {
    let max = query.max.max(1);
    let budget = budget.max(1);
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
    let mut read = 0usize;
    // Without a delimiter there are no groups: every key read is used.
    let mut batch_size = if delimiter.is_some_and(|d| !d.is_empty()) {
        1
    } else {
        usize::MAX
    };
    'outer: loop {
        // One more than fits, so a full page knows whether more follow.
        let want = (max - count + 1).min(batch_size).min(budget - read);
        if want == 0 {
            // The budget is spent: end the page where it is.
            page.truncated = true;
            break;
        }
        let batch = scan.scan(&from, want)?;
        read += batch.len();
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
        if sought {
            batch_size = 1;
        } else if batch_len < want {
            // Fewer than asked for: the bucket has no more keys.
            break;
        } else {
            batch_size = want.saturating_mul(2);
        }
    }
    if !page.truncated {
        page.next_start_after = None;
    }
    Ok(page)
}
