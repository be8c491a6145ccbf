//! What Ferry's own HTTP clients (the peer client, the mirror's feed
//! client) trust and show, from `[tls]`; read by the gateway at start.

/// Certificates for a client.
#[derive(Clone, Default)]
pub struct ClientTls {
    /// `ca_file`'s certificates.
    pub roots: Vec<reqwest::Certificate>,
    /// This node's certificate and key, shown to servers that ask for one
    /// (the peer port under mutual TLS).
    pub identity: Option<reqwest::Identity>,
}

/// Which roots a client trusts.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Trust {
    /// `ca_file` only when it is set (the cluster's own CA: a certificate a
    /// public CA issued for some other name must not pass for a peer).
    OwnRootsOnly,
    /// The system roots, and `ca_file` besides.
    SystemAndOwn,
}

impl ClientTls {
    /// `builder` with these roots and identity.
    pub fn apply(&self, builder: reqwest::ClientBuilder, trust: Trust) -> reqwest::ClientBuilder {
        let mut builder = match trust {
            Trust::OwnRootsOnly if !self.roots.is_empty() => {
                builder.tls_certs_only(self.roots.iter().cloned())
            }
            _ => builder.tls_certs_merge(self.roots.iter().cloned()),
        };
        if let Some(identity) = &self.identity {
            builder = builder.identity(identity.clone());
        }
        builder
    }
}
