//! `[server]`: the S3 and admin listeners and what clients are told.

use std::net::SocketAddr;
use std::time::Duration;

use bytesize::ByteSize;
use serde::Deserialize;

use crate::ServerConfig;
use crate::error::{ConfigError, Result};

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
