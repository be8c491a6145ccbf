//! Conditional requests: If-Match and friends on reads, and the write
//! preconditions of PutObject.

use ferry_meta::{Entry, Precondition};
use s3s::dto::{ETagCondition, Timestamp};
use s3s::{S3Result, s3_error};

use crate::time::unix_seconds;

fn matches(condition: &ETagCondition, etag: &str) -> bool {
    match condition {
        ETagCondition::Any => true,
        ETagCondition::ETag(tag) => tag.value() == etag,
    }
}

/// The read conditions of a GET or HEAD.
pub struct ReadConditions<'a> {
    pub if_match: Option<&'a ETagCondition>,
    pub if_none_match: Option<&'a ETagCondition>,
    pub if_modified_since: Option<&'a Timestamp>,
    pub if_unmodified_since: Option<&'a Timestamp>,
}

impl ReadConditions<'_> {
    /// Evaluated in RFC 9110 order, as S3 does: If-Match (or else
    /// If-Unmodified-Since) can fail with 412; then If-None-Match (or else
    /// If-Modified-Since) can answer 304.
    pub fn check(&self, entry: &Entry) -> S3Result<()> {
        let modified = entry.last_modified.div_euclid(1000);
        if let Some(condition) = self.if_match {
            if !matches(condition, &entry.etag) {
                return Err(s3_error!(
                    PreconditionFailed,
                    "If-Match did not match the object's ETag"
                ));
            }
        } else if let Some(since) = self.if_unmodified_since
            && modified > unix_seconds(since)
        {
            return Err(s3_error!(
                PreconditionFailed,
                "The object was modified after If-Unmodified-Since"
            ));
        }
        let not_modified = match self.if_none_match {
            Some(condition) => matches(condition, &entry.etag),
            None => self
                .if_modified_since
                .is_some_and(|since| modified <= unix_seconds(since)),
        };
        if not_modified {
            return Err(not_modified_error(entry));
        }
        Ok(())
    }
}

/// A 304 still names the representation it refers to.
fn not_modified_error(entry: &Entry) -> s3s::S3Error {
    let mut error = s3_error!(NotModified);
    let mut headers = http::HeaderMap::new();
    if let Ok(value) = http::HeaderValue::from_str(&format!("\"{}\"", entry.etag)) {
        headers.insert(http::header::ETAG, value);
    }
    if let Some(date) = crate::time::http_date(&crate::time::timestamp(entry.last_modified))
        && let Ok(value) = http::HeaderValue::from_str(&date)
    {
        headers.insert(http::header::LAST_MODIFIED, value);
    }
    error.set_headers(headers);
    error
}

/// The precondition of a write from its If-Match / If-None-Match headers.
/// `If-Match` on an absent key answers NoSuchKey, as S3 does (the engine
/// decides that, atomically with the write); `If-None-Match: <etag>` is
/// HTTP's meaning beyond S3's `*`: refused only when the current ETag
/// matches.
pub fn write_precondition(
    if_match: Option<&ETagCondition>,
    if_none_match: Option<&ETagCondition>,
) -> S3Result<Precondition> {
    match (if_match, if_none_match) {
        (None, None) => Ok(Precondition::None),
        (None, Some(ETagCondition::Any)) => Ok(Precondition::IfAbsent),
        (None, Some(ETagCondition::ETag(tag))) => {
            Ok(Precondition::IfNoneMatch(tag.value().to_string()))
        }
        (Some(ETagCondition::Any), None) => Ok(Precondition::IfExists),
        (Some(ETagCondition::ETag(tag)), None) => {
            Ok(Precondition::IfMatch(tag.value().to_string()))
        }
        (Some(_), Some(_)) => Err(s3_error!(
            InvalidArgument,
            "If-Match and If-None-Match cannot be combined on a write"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use s3s::S3ErrorCode;
    use s3s::dto::ETag;

    fn entry() -> Entry {
        Entry {
            etag: "abc".into(),
            last_modified: 1_700_000_000_500,
            ..Entry::default()
        }
    }

    fn code(result: S3Result<()>) -> Option<S3ErrorCode> {
        result.err().map(|e| e.code().clone())
    }

    fn at(seconds: i64) -> Timestamp {
        crate::time::timestamp(seconds * 1000)
    }

    #[test]
    fn read_conditions_follow_rfc_order() {
        let right = ETagCondition::ETag(ETag::Strong("abc".into()));
        let wrong = ETagCondition::ETag(ETag::Strong("xyz".into()));
        let none = ReadConditions {
            if_match: None,
            if_none_match: None,
            if_modified_since: None,
            if_unmodified_since: None,
        };
        assert_eq!(code(none.check(&entry())), None);
        let c = ReadConditions {
            if_match: Some(&wrong),
            ..none
        };
        assert_eq!(
            code(c.check(&entry())),
            Some(S3ErrorCode::PreconditionFailed)
        );
        // If-Match wins over a failing If-Unmodified-Since.
        let past = at(1_600_000_000);
        let c = ReadConditions {
            if_match: Some(&right),
            if_unmodified_since: Some(&past),
            ..none
        };
        assert_eq!(code(c.check(&entry())), None);
        let c = ReadConditions {
            if_unmodified_since: Some(&past),
            ..none
        };
        assert_eq!(
            code(c.check(&entry())),
            Some(S3ErrorCode::PreconditionFailed)
        );
        let c = ReadConditions {
            if_none_match: Some(&right),
            ..none
        };
        assert_eq!(code(c.check(&entry())), Some(S3ErrorCode::NotModified));
        // Same second as last-modified counts as not modified since.
        let same = at(1_700_000_000);
        let c = ReadConditions {
            if_modified_since: Some(&same),
            ..none
        };
        assert_eq!(code(c.check(&entry())), Some(S3ErrorCode::NotModified));
        let c = ReadConditions {
            if_modified_since: Some(&past),
            ..none
        };
        assert_eq!(code(c.check(&entry())), None);
    }

    #[test]
    fn write_preconditions() {
        assert_eq!(
            write_precondition(None, None).ok(),
            Some(Precondition::None)
        );
        assert_eq!(
            write_precondition(None, Some(&ETagCondition::Any)).ok(),
            Some(Precondition::IfAbsent)
        );
        let tag = ETagCondition::ETag(ETag::Strong("abc".into()));
        assert_eq!(
            write_precondition(Some(&tag), None).ok(),
            Some(Precondition::IfMatch("abc".into()))
        );
        assert_eq!(
            write_precondition(Some(&ETagCondition::Any), None).ok(),
            Some(Precondition::IfExists)
        );
        assert_eq!(
            write_precondition(None, Some(&tag)).ok(),
            Some(Precondition::IfNoneMatch("abc".into()))
        );
        assert!(write_precondition(Some(&tag), Some(&ETagCondition::Any)).is_err());
    }
}
