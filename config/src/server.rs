//! `[server]`: the S3 and admin listeners and what clients are told.

use std::net::SocketAddr;
use std::time::Duration;

use bytesize::ByteSize;
use serde::Deserialize;

use crate::error::{ConfigError, Result};
use crate::{ConnectionLimits, ServerConfig};

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    /// Default `127.0.0.1:9000`.
    pub listen: Option<String>,
    /// Default `127.0.0.1:9001`.
    pub admin_listen: Option<String>,
    /// Default `us-east-1`.
    pub region: Option<String>,
    /// Default `30s`.
    #[serde(default, with = "humantime_serde")]
    pub shutdown_grace: Option<Duration>,
    /// Default `5GiB`.
    pub max_put_size: Option<ByteSize>,
    /// PUT bodies without a Content-Length collected at once. Default `8`.
    pub max_spools: Option<usize>,
    /// Bytes those bodies may hold together, memory and disk. Default `16GiB`.
    pub max_spool_bytes: Option<ByteSize>,
    /// Base domains for virtual-host style requests (`bucket.<domain>`).
    /// Default none: path style only.
    #[serde(default)]
    pub domains: Vec<String>,
    /// A request's headers (and the wait for the next request on a kept-
    /// alive connection, and a TLS handshake). Default `20s`.
    #[serde(default, with = "humantime_serde")]
    pub header_timeout: Option<Duration>,
    /// No byte either way for this long ends a connection. Default `60s`;
    /// keep it above 30 s, the longest a mirror's long poll of the change
    /// feed waits without a byte.
    #[serde(default, with = "humantime_serde")]
    pub idle_timeout: Option<Duration>,
    /// A client that takes no byte of an answer for this long is cut off.
    /// Default `30s`.
    #[serde(default, with = "humantime_serde")]
    pub write_timeout: Option<Duration>,
    /// Open connections per listener (S3, admin, peer). Default 4096.
    pub max_connections: Option<usize>,
}

impl RawServer {
    pub(crate) fn validate(self) -> Result<ServerConfig> {
        let server = ServerConfig {
            listen: parse_addr("server.listen", self.listen.as_deref(), "127.0.0.1:9000")?,
            admin_listen: parse_addr(
                "server.admin_listen",
                self.admin_listen.as_deref(),
                "127.0.0.1:9001",
            )?,
            region: match self.region {
                Some(r)
                    if r.is_empty()
                        || !r.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') =>
                {
                    return Err(ConfigError::invalid(
                        "server.region",
                        format!("{r:?} is not a region name (letters, digits and '-')"),
                    ));
                }
                Some(r) => r,
                None => "us-east-1".to_string(),
            },
            shutdown_grace: self.shutdown_grace.unwrap_or(Duration::from_secs(30)),
            domains: self.domains,
            max_put_size: self.max_put_size.map_or(5 << 30, |s| s.as_u64()),
            limits: ConnectionLimits {
                header_timeout: positive("server.header_timeout", self.header_timeout, 20)?,
                idle_timeout: positive("server.idle_timeout", self.idle_timeout, 60)?,
                write_timeout: positive("server.write_timeout", self.write_timeout, 30)?,
                max_connections: match self.max_connections {
                    Some(0) => {
                        return Err(ConfigError::invalid(
                            "server.max_connections",
                            "must be greater than 0",
                        ));
                    }
                    Some(n) => n,
                    None => 4096,
                },
            },
            max_spools: self.max_spools.unwrap_or(8),
            max_spool_bytes: self.max_spool_bytes.map_or(16 << 30, |s| s.as_u64()),
        };
        for (i, domain) in server.domains.iter().enumerate() {
            let valid = !domain.is_empty()
                && domain.split('.').all(|label| {
                    !label.is_empty()
                        && label.len() <= 63
                        && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                });
            if !valid {
                return Err(ConfigError::invalid(
                    format!("server.domains[{i}]"),
                    format!("{domain:?} is not a DNS name like s3.example.com"),
                ));
            }
        }
        if server.max_spools == 0 {
            return Err(ConfigError::invalid(
                "server.max_spools",
                "must be at least 1",
            ));
        }
        if server.max_spool_bytes == 0 {
            return Err(ConfigError::invalid(
                "server.max_spool_bytes",
                "must be greater than 0",
            ));
        }
        if server.max_put_size == 0 {
            return Err(ConfigError::invalid(
                "server.max_put_size",
                "must be greater than 0",
            ));
        }
        Ok(server)
    }
}

fn parse_addr(field: &str, value: Option<&str>, default: &str) -> Result<SocketAddr> {
    let text = value.unwrap_or(default);
    text.parse().map_err(|_| {
        ConfigError::invalid(
            field,
            format!("{text:?} is not a socket address like 127.0.0.1:9000 or [::]:9000"),
        )
    })
}

/// A timeout that must be set and non-zero (a zero one would end every
/// connection at once).
fn positive(field: &str, value: Option<Duration>, default_secs: u64) -> Result<Duration> {
    match value {
        Some(d) if d.is_zero() => Err(ConfigError::invalid(field, "must be greater than 0")),
        Some(d) => Ok(d),
        None => Ok(Duration::from_secs(default_secs)),
    }
}
