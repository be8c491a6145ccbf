use std::path::PathBuf;

pub type Result<T, E = ConfigError> = std::result::Result<T, E>;

/// Everything that can be wrong with a configuration. Each variant names
/// where the problem is (file, field or variable) and why.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// TOML syntax errors, wrong types and unknown keys; the message from the
    /// parser already names the key and the line.
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid value for `{field}`: {reason}")]
    Invalid { field: String, reason: String },
    #[error("invalid environment variable {var}: {reason}")]
    Env { var: String, reason: String },
}

impl ConfigError {
    pub(crate) fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        ConfigError::Invalid {
            field: field.into(),
            reason: reason.into(),
        }
    }
}
