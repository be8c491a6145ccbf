//! A Redis URL whose password never reaches a log line or a printed
//! config: Debug and Display show it redacted, and only [`RedisUrl::expose`]
//! gives the URL to connect with.

use std::fmt;

#[derive(Clone, PartialEq, Eq)]
pub struct RedisUrl(String);

impl RedisUrl {
    /// The URL as configured, password included: for connecting only.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The URL with its password (if any) replaced; a URL that cannot be
    /// parsed is not shown at all, since where its secret sits is unknown.
    pub fn redacted(&self) -> String {
        match url::Url::parse(&self.0) {
            Ok(mut parsed) => {
                if parsed.password().is_some() {
                    // Cannot fail: the URL has a host, since it has a password.
                    let _ = parsed.set_password(Some("redacted"));
                }
                parsed.to_string()
            }
            Err(_) => "<a redis URL that does not parse>".to_string(),
        }
    }
}

impl From<&str> for RedisUrl {
    fn from(url: &str) -> RedisUrl {
        RedisUrl(url.to_string())
    }
}

impl From<String> for RedisUrl {
    fn from(url: String) -> RedisUrl {
        RedisUrl(url)
    }
}

impl fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.redacted())
    }
}

impl fmt::Display for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_is_never_shown() {
        let url = RedisUrl::from("rediss://ferry:s3cr3t-pass@redis.example:6380/2");
        for shown in [format!("{url:?}"), url.to_string()] {
            assert!(!shown.contains("s3cr3t-pass"), "{shown}");
            assert!(shown.contains("redis.example:6380/2"), "{shown}");
            assert!(shown.contains("ferry:redacted@"), "{shown}");
        }
        assert_eq!(
            url.expose(),
            "rediss://ferry:s3cr3t-pass@redis.example:6380/2"
        );
        let bare = RedisUrl::from("redis://127.0.0.1:6379");
        assert_eq!(bare.to_string(), "redis://127.0.0.1:6379");
        let odd = RedisUrl::from("redis://:pa ss@[bad");
        assert!(!format!("{odd:?}").contains("pa ss"));
    }
}
