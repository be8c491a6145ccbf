//! Why a node could not start: each failure names what it was doing and
//! the setting or file involved, printed as `error: ...` by the binary.

use std::net::SocketAddr;
use std::path::PathBuf;

use ferry_cache::CacheError;
use ferry_meta::MetaError;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen for {what} on {addr}: {source}")]
    Bind {
        what: &'static str,
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    /// A file or folder of the data dir (`action` is e.g. "create").
    #[error("cannot {action} {}: {source}", path.display())]
    File {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A combination of settings this node cannot run with; the message
    /// names the field.
    #[error("{0}")]
    Config(String),
    /// The generated credentials file cannot be read or written.
    #[error("{0}")]
    Credentials(String),
    #[error(transparent)]
    Meta(#[from] MetaError),
    #[error(transparent)]
    Cache(#[from] CacheError),
}

impl StartError {
    pub(crate) fn file(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> StartError {
        let path = path.into();
        move |source| StartError::File {
            action,
            path,
            source,
        }
    }
}
