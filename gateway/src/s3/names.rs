//! Checks on names that s3s leaves to the implementation.

use s3s::{S3Result, s3_error};

/// S3's limit on a key's UTF-8 length.
pub const MAX_KEY_BYTES: usize = 1024;

pub fn check_key(key: &str) -> S3Result<()> {
    if key.is_empty() {
        return Err(s3_error!(
            InvalidArgument,
            "The object key must not be empty"
        ));
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(s3_error!(
            KeyTooLongError,
            "Your key is {} bytes; the limit is {MAX_KEY_BYTES}",
            key.len()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_length_is_counted_in_bytes() {
        assert!(check_key(&"a".repeat(1024)).is_ok());
        assert!(check_key(&"a".repeat(1025)).is_err());
        // 342 three-byte characters are 1026 bytes.
        assert!(check_key(&"\u{65e5}".repeat(342)).is_err());
        assert!(check_key("").is_err());
    }
}
