//! `[tls]`: certificates for every listener (S3, admin with the change
//! feed, peer) and the roots Ferry's own clients trust. No section, or no
//! `cert_file`: plain HTTP, which must then be chosen for non-loopback
//! peer and feed listeners (`trusted_network`).

use std::path::PathBuf;

use serde::Deserialize;

use crate::error::{ConfigError, Result};

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    /// PEM certificate chain served on every listener (leaf first).
    pub cert_file: Option<PathBuf>,
    /// PEM private key of `cert_file`.
    pub key_file: Option<PathBuf>,
    /// PEM CA certificates Ferry's own clients trust: the mirror follower
    /// besides the system roots; the peer client instead of them.
    pub ca_file: Option<PathBuf>,
    /// Require peers to present a client certificate issued by `ca_file`
    /// (mutual TLS on the peer port). Default false.
    #[serde(default)]
    pub peer_client_auth: bool,
}

/// Validated `[tls]`. File contents are read when the node starts (and
/// again on reload), so their errors name the field and path there.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TlsConfig {
    /// Certificate chain and key of the listeners; `None`: plain HTTP.
    pub identity: Option<TlsIdentity>,
    pub ca_file: Option<PathBuf>,
    pub peer_client_auth: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TlsIdentity {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

impl TlsConfig {
    /// Whether the listeners speak TLS.
    pub fn enabled(&self) -> bool {
        self.identity.is_some()
    }
}

impl RawTls {
    pub(crate) fn validate(self) -> Result<TlsConfig> {
        let identity = match (self.cert_file, self.key_file) {
            (Some(cert_file), Some(key_file)) => Some(TlsIdentity {
                cert_file,
                key_file,
            }),
            (None, None) => None,
            (Some(_), None) => {
                return Err(ConfigError::invalid(
                    "tls.key_file",
                    "must be set when tls.cert_file is",
                ));
            }
            (None, Some(_)) => {
                return Err(ConfigError::invalid(
                    "tls.cert_file",
                    "must be set when tls.key_file is",
                ));
            }
        };
        if self.peer_client_auth && (identity.is_none() || self.ca_file.is_none()) {
            return Err(ConfigError::invalid(
                "tls.peer_client_auth",
                "needs tls.cert_file and tls.key_file (this node's certificate, also shown to peers) and tls.ca_file (the CA peers' certificates come from)",
            ));
        }
        Ok(TlsConfig {
            identity,
            ca_file: self.ca_file,
            peer_client_auth: self.peer_client_auth,
        })
    }
}
