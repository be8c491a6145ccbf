//! Reading a byte range of a file from its layout, as a stream of `Bytes`.
//!
//! Segments are opened one after another as the stream is consumed, so a
//! 100 GiB object is never held in memory, and a segment that ends early is
//! an error: a client sees a failed response, never a short one.

use std::ops::Range;

use bytes::Bytes;
use ferry_meta::{Layout, Segment};
use futures::stream::{self, BoxStream, StreamExt};
use object_store::path::Path;
use object_store::{GetOptions, GetRange};

use crate::error::{CacheError, Result};
use crate::stores::Stores;

/// A piece of one segment to read: `blob_range` inside the segment's blob.
#[derive(Debug, Clone)]
struct Piece {
    segment: Segment,
    blob_range: Range<u64>,
}

/// The pieces of `layout` that cover `range` (byte offsets in the file).
fn pieces(layout: &Layout, range: &Range<u64>) -> Vec<Piece> {
    let mut out = Vec::new();
    let mut file_offset = 0u64;
    for segment in &layout.segments {
        let seg_start = file_offset;
        let seg_end = file_offset + segment.len;
        file_offset = seg_end;
        let start = range.start.max(seg_start);
        let end = range.end.min(seg_end);
        if start >= end {
            continue;
        }
        out.push(Piece {
            segment: segment.clone(),
            blob_range: (segment.offset + start - seg_start)..(segment.offset + end - seg_start),
        });
    }
    out
}

/// The layout of bytes `range` of a file: what a copy of that range shares.
/// `range` must lie inside the file.
pub fn slice_layout(layout: &Layout, range: Range<u64>) -> Layout {
    Layout {
        segments: pieces(layout, &range)
            .into_iter()
            .map(|p| Segment {
                offset: p.blob_range.start,
                len: p.blob_range.end - p.blob_range.start,
                ..p.segment
            })
            .collect(),
    }
}

/// Streams bytes `range` of the file described by `layout`.
pub fn read_range(
    stores: &Stores,
    layout: &Layout,
    range: Range<u64>,
) -> Result<BoxStream<'static, Result<Bytes>>> {
    let size = layout.total_len();
    if range.start > range.end || range.end > size {
        return Err(CacheError::Range {
            start: range.start,
            end: range.end,
            size,
        });
    }
    let mut opened = Vec::new();
    for piece in pieces(layout, &range) {
        let store = stores.get(&piece.segment.store)?.clone();
        opened.push((store, piece));
    }
    let stream = stream::iter(opened)
        .map(|(store, piece)| {
            let expected = piece.blob_range.end - piece.blob_range.start;
            let name = store.name.clone();
            let fetch = async move {
                let options = GetOptions {
                    range: Some(GetRange::Bounded(piece.blob_range.clone())),
                    ..GetOptions::default()
                };
                let path = Path::from(piece.segment.blob.as_str());
                let result = store
                    .client
                    .get_opts(&path, options)
                    .await
                    .map_err(|e| CacheError::store(&store.name, e))?;
                Ok::<_, CacheError>(result.into_stream())
            };
            stream::once(fetch)
                .map(move |opened| match opened {
                    Ok(body) => exact_len(body, expected, name.clone()).boxed(),
                    Err(e) => stream::once(async move { Err(e) }).boxed(),
                })
                .flatten()
        })
        .flatten();
    Ok(stream.boxed())
}

/// Passes `body` through, failing if it yields more or fewer than
/// `expected` bytes.
fn exact_len(
    body: BoxStream<'static, object_store::Result<Bytes>>,
    expected: u64,
    store: String,
) -> impl futures::Stream<Item = Result<Bytes>> + Send + 'static {
    stream::unfold((body, 0u64, false), move |(mut body, seen, done)| {
        let store = store.clone();
        async move {
            if done {
                return None;
            }
            match body.next().await {
                Some(Ok(chunk)) => {
                    let seen = seen + chunk.len() as u64;
                    if seen > expected {
                        let err = CacheError::Body(format!(
                            "store {store:?} returned more bytes than asked"
                        ));
                        return Some((Err(err), (body, seen, true)));
                    }
                    Some((Ok(chunk), (body, seen, false)))
                }
                Some(Err(e)) => Some((Err(CacheError::store(&store, e)), (body, seen, true))),
                None if seen < expected => {
                    let err = CacheError::Store {
                        store: store.clone(),
                        source: object_store::Error::Generic {
                            store: "ferry",
                            source: format!("blob ended after {seen} of {expected} bytes").into(),
                        },
                    };
                    Some((Err(err), (body, seen, true)))
                }
                None => None,
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment(blob: &str, offset: u64, len: u64) -> Segment {
        Segment {
            store: "data".into(),
            blob: blob.into(),
            offset,
            len,
            version: String::new(),
        }
    }

    #[test]
    fn pieces_cover_exactly_the_range() {
        let layout = Layout {
            segments: vec![
                segment("a", 0, 10),
                segment("b", 5, 10),
                segment("c", 0, 10),
            ],
        };
        let got: Vec<(String, Range<u64>)> = pieces(&layout, &(8..22))
            .into_iter()
            .map(|p| (p.segment.blob, p.blob_range))
            .collect();
        assert_eq!(
            got,
            [("a".into(), 8..10), ("b".into(), 5..15), ("c".into(), 0..2)]
        );
        assert!(pieces(&layout, &(30..30)).is_empty());
        let sliced = slice_layout(&layout, 8..22);
        assert_eq!(sliced.total_len(), 14);
        assert_eq!((sliced.segments[1].offset, sliced.segments[1].len), (5, 10));
        assert_eq!(pieces(&layout, &(10..20)).len(), 1);
    }
}
