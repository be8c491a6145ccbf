//! TLS for the listeners and the roots Ferry's own clients trust, from
//! `[tls]`. The certificate is read at start (a missing or bad file stops
//! the start, naming the field and path) and again on reload (SIGHUP, or a
//! file that changed): a bad file at reload keeps the current certificate
//! and is logged. A reload changes what new handshakes get; established
//! connections keep the certificate they were made with.

use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use ferry_cache::ClientTls;
use ferry_config::{TlsConfig, TlsIdentity};
use rustls::RootCertStore;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use tokio_util::sync::CancellationToken;

use crate::metrics as m;
use crate::node::StartError;

/// The server side of `[tls]`: one certificate for every listener, and
/// on the peer port (with `peer_client_auth`) a client certificate from
/// `ca_file` required.
pub struct ServerTls {
    certs: Arc<Certs>,
    /// S3 and admin: HTTP/2 and HTTP/1.1 by ALPN.
    pub public: Arc<rustls::ServerConfig>,
    pub peer: Arc<rustls::ServerConfig>,
}

fn provider() -> Arc<CryptoProvider> {
    CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
}

fn bad_file(field: &str, path: &Path, why: impl std::fmt::Display) -> String {
    format!("{field}: {}: {why}", path.display())
}

fn read_certs(field: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let bytes = std::fs::read(path).map_err(|e| bad_file(field, path, e))?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad_file(field, path, format!("not PEM certificates ({e})")))?;
    if certs.is_empty() {
        return Err(bad_file(field, path, "holds no PEM certificate"));
    }
    Ok(certs)
}

fn read_identity(identity: &TlsIdentity) -> Result<CertifiedKey, String> {
    let chain = read_certs("tls.cert_file", &identity.cert_file)?;
    let key_bytes = std::fs::read(&identity.key_file)
        .map_err(|e| bad_file("tls.key_file", &identity.key_file, e))?;
    let key = PrivateKeyDer::from_pem_slice(&key_bytes).map_err(|e| {
        bad_file(
            "tls.key_file",
            &identity.key_file,
            format!("no PEM private key ({e})"),
        )
    })?;
    CertifiedKey::from_der(chain, key, &provider()).map_err(|e| {
        bad_file(
            "tls.key_file",
            &identity.key_file,
            format!("does not match tls.cert_file ({e})"),
        )
    })
}

/// When a file was last changed, and its size: what tells a reload is due.
type Stamp = Vec<Option<(SystemTime, u64)>>;

fn stamp(identity: &TlsIdentity) -> Stamp {
    [&identity.cert_file, &identity.key_file]
        .iter()
        .map(|path| {
            std::fs::metadata(path)
                .ok()
                .and_then(|meta| Some((meta.modified().ok()?, meta.len())))
        })
        .collect()
}

/// The certificate every new handshake gets, swapped on reload.
#[derive(Debug)]
pub struct Certs {
    identity: TlsIdentity,
    current: RwLock<Arc<CertifiedKey>>,
    seen: Mutex<Stamp>,
}

impl Certs {
    fn load(identity: &TlsIdentity) -> Result<Certs, String> {
        let seen = stamp(identity);
        let key = read_identity(identity)?;
        Ok(Certs {
            identity: identity.clone(),
            current: RwLock::new(Arc::new(key)),
            seen: Mutex::new(seen),
        })
    }

    /// Whether either file changed since it was last read.
    pub fn changed_on_disk(&self) -> bool {
        let now = stamp(&self.identity);
        self.seen.lock().map(|seen| *seen != now).unwrap_or(true)
    }

    /// Reads the files again; on error the current certificate stays.
    pub fn reload(&self) -> Result<(), String> {
        let seen = stamp(&self.identity);
        let outcome = read_identity(&self.identity).map(|key| {
            if let Ok(mut current) = self.current.write() {
                *current = Arc::new(key);
            }
        });
        // A bad file is reported once, not at every check until it changes.
        if let Ok(mut last) = self.seen.lock() {
            *last = seen;
        }
        let result = if outcome.is_ok() { "ok" } else { "failed" };
        metrics::counter!(m::TLS_RELOADS, "result" => result).increment(1);
        outcome
    }
}

impl ResolvesServerCert for Certs {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current.read().ok().map(|key| key.clone())
    }
}

impl ServerTls {
    /// `None` without a certificate: plain HTTP.
    pub fn load(config: &TlsConfig) -> Result<Option<ServerTls>, StartError> {
        let Some(identity) = &config.identity else {
            return Ok(None);
        };
        let certs = Arc::new(Certs::load(identity).map_err(StartError::Config)?);
        let provider = provider();
        let public = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| StartError::Config(format!("tls: {e}")))?
            .with_no_client_auth()
            .with_cert_resolver(certs.clone());
        let peer_builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| StartError::Config(format!("tls: {e}")))?;
        let peer = match (&config.ca_file, config.peer_client_auth) {
            (Some(ca_file), true) => {
                let mut roots = RootCertStore::empty();
                for cert in read_certs("tls.ca_file", ca_file).map_err(StartError::Config)? {
                    roots
                        .add(cert)
                        .map_err(|e| StartError::Config(bad_file("tls.ca_file", ca_file, e)))?;
                }
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                        .build()
                        .map_err(|e| StartError::Config(bad_file("tls.ca_file", ca_file, e)))?;
                peer_builder
                    .with_client_cert_verifier(verifier)
                    .with_cert_resolver(certs.clone())
            }
            _ => peer_builder
                .with_no_client_auth()
                .with_cert_resolver(certs.clone()),
        };
        Ok(Some(ServerTls {
            certs,
            public: Arc::new(with_alpn(public)),
            peer: Arc::new(with_alpn(peer)),
        }))
    }

    pub fn certs(&self) -> Arc<Certs> {
        self.certs.clone()
    }
}

fn with_alpn(mut config: rustls::ServerConfig) -> rustls::ServerConfig {
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    config
}

/// What Ferry's own clients (peer client, mirror follower) trust and
/// show, from `[tls]`.
pub fn client_tls(config: &TlsConfig) -> Result<ClientTls, StartError> {
    let roots = match &config.ca_file {
        Some(ca_file) => {
            let bytes = std::fs::read(ca_file)
                .map_err(|e| StartError::Config(bad_file("tls.ca_file", ca_file, e)))?;
            let roots = reqwest::Certificate::from_pem_bundle(&bytes).map_err(|e| {
                StartError::Config(bad_file("tls.ca_file", ca_file, format!("not PEM ({e})")))
            })?;
            if roots.is_empty() {
                return Err(StartError::Config(bad_file(
                    "tls.ca_file",
                    ca_file,
                    "holds no PEM certificate",
                )));
            }
            roots
        }
        None => Vec::new(),
    };
    let identity = match &config.identity {
        Some(identity) => {
            let mut pem = std::fs::read(&identity.cert_file).map_err(|e| {
                StartError::Config(bad_file("tls.cert_file", &identity.cert_file, e))
            })?;
            pem.push(b'\n');
            pem.extend(std::fs::read(&identity.key_file).map_err(|e| {
                StartError::Config(bad_file("tls.key_file", &identity.key_file, e))
            })?);
            Some(reqwest::Identity::from_pem(&pem).map_err(|e| {
                StartError::Config(bad_file("tls.cert_file", &identity.cert_file, e))
            })?)
        }
        None => None,
    };
    Ok(ClientTls { roots, identity })
}

/// How often the certificate files are checked for a change (a renewal
/// tool, or a Kubernetes secret swapped in place).
const CHECK_EVERY: Duration = Duration::from_secs(5);

/// Reloads the certificate on SIGHUP, or when its files change, until
/// `stop`.
pub async fn watch(certs: Arc<Certs>, stop: CancellationToken) {
    let mut hangup = hangup_signal();
    let mut ticker = tokio::time::interval(CHECK_EVERY);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let asked = tokio::select! {
            () = stop.cancelled() => return,
            () = next_hangup(&mut hangup) => true,
            _ = ticker.tick() => false,
        };
        if !asked && !certs.changed_on_disk() {
            continue;
        }
        match certs.reload() {
            Ok(()) => tracing::info!(on_signal = asked, "TLS certificate reloaded"),
            Err(e) => {
                tracing::error!(error = %e, "TLS certificate not reloaded; the current one stays")
            }
        }
    }
}

#[cfg(unix)]
type Hangup = Option<tokio::signal::unix::Signal>;
#[cfg(not(unix))]
type Hangup = ();

#[cfg(unix)]
fn hangup_signal() -> Hangup {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::hangup()) {
        Ok(signal) => Some(signal),
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch SIGHUP; certificates reload on file change only");
            None
        }
    }
}

#[cfg(not(unix))]
fn hangup_signal() -> Hangup {}

#[cfg(unix)]
async fn next_hangup(hangup: &mut Hangup) {
    let received = match hangup {
        Some(signal) => signal.recv().await.is_some(),
        None => false,
    };
    if !received {
        // No signal stream (or it ended): never again.
        std::future::pending::<()>().await;
    }
}

#[cfg(not(unix))]
async fn next_hangup(_hangup: &mut Hangup) {
    std::future::pending().await
}
