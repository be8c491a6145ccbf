//! Virtual-host style addressing: `bucket.<domain>` names the bucket in the
//! Host header. Any other host (an IP, `localhost`, the bare domain) is
//! path style, so both styles work side by side.

use s3s::S3Result;
use s3s::host::{S3Host, VirtualHost};

#[derive(Debug, Clone)]
pub struct VirtualHosts {
    /// Lower-case base domains, e.g. `s3.example.com`.
    domains: Vec<String>,
}

impl VirtualHosts {
    pub fn new(domains: &[String]) -> VirtualHosts {
        VirtualHosts {
            domains: domains.iter().map(|d| d.to_ascii_lowercase()).collect(),
        }
    }

    /// The bucket a Host header names, if it is `bucket.<domain>`.
    pub(crate) fn bucket_of<'h>(&self, host: &'h str) -> Option<&'h str> {
        let name = strip_port(host);
        self.domains.iter().find_map(|domain| {
            let bucket = name.strip_suffix(domain.as_str())?.strip_suffix('.')?;
            (!bucket.is_empty()).then_some(bucket)
        })
    }
}

fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        // [v6]:port
        return host
            .split_once(']')
            .map_or(host, |(h, _)| &host[..=h.len()]);
    }
    host.rsplit_once(':').map_or(host, |(h, _)| h)
}

impl S3Host for VirtualHosts {
    fn parse_host_header<'a>(&'a self, host: &'a str) -> S3Result<VirtualHost<'a>> {
        let vh = VirtualHost::new(strip_port(host));
        Ok(match self.bucket_of(host) {
            Some(bucket) => vh.with_bucket(bucket.to_ascii_lowercase()),
            None => vh,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_come_from_subdomains_of_the_configured_domains() {
        let hosts = VirtualHosts::new(&["s3.example.com".to_string(), "localhost".to_string()]);
        assert_eq!(hosts.bucket_of("models.s3.example.com"), Some("models"));
        assert_eq!(
            hosts.bucket_of("models.s3.example.com:9000"),
            Some("models")
        );
        assert_eq!(
            hosts.bucket_of("my.dotted.bucket.localhost:9000"),
            Some("my.dotted.bucket")
        );
        assert_eq!(hosts.bucket_of("s3.example.com"), None);
        assert_eq!(hosts.bucket_of("127.0.0.1:9000"), None);
        assert_eq!(hosts.bucket_of("evil-s3.example.com"), None);
        assert_eq!(hosts.bucket_of("[::1]:9000"), None);
    }
}
