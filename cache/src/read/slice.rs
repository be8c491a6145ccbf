//! Slicing a file's layout by byte range: what a copy of part of a file
//! (UploadPartCopy) shares with it, without reading a byte.

use std::ops::Range;

use ferry_meta::{Layout, Segment};

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
