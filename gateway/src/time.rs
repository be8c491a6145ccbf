//! Conversions between Ferry's millisecond timestamps and s3s's.

use ferry_meta::UnixMillis;
use s3s::dto::Timestamp;
use time::OffsetDateTime;

pub fn timestamp(millis: UnixMillis) -> Timestamp {
    let nanos = i128::from(millis) * 1_000_000;
    Timestamp::from(
        OffsetDateTime::from_unix_timestamp_nanos(nanos).unwrap_or(OffsetDateTime::UNIX_EPOCH),
    )
}

/// Whole seconds: HTTP dates carry no more, so comparisons against
/// If-Modified-Since and friends must not see milliseconds.
pub fn unix_seconds(ts: &Timestamp) -> i64 {
    OffsetDateTime::from(ts.clone()).unix_timestamp()
}

/// Formats for storing the `Expires` header as the client gave it.
pub fn http_date(ts: &Timestamp) -> Option<String> {
    let mut out = Vec::new();
    ts.format(s3s::dto::TimestampFormat::HttpDate, &mut out)
        .ok()?;
    String::from_utf8(out).ok()
}

pub fn parse_http_date(text: &str) -> Option<Timestamp> {
    Timestamp::parse(s3s::dto::TimestampFormat::HttpDate, text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_dates_round_trip() {
        let ts = timestamp(1_700_000_000_123);
        assert_eq!(unix_seconds(&ts), 1_700_000_000);
        let text = http_date(&ts).expect("format");
        assert_eq!(
            unix_seconds(&parse_http_date(&text).expect("parse")),
            1_700_000_000
        );
    }
}
