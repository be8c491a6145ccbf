use std::path::PathBuf;

use crate::location::Location;

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
    /// TOML syntax errors, wrong types and unknown keys, at the line the
    /// parser points to.
    #[error("config file {at}: {message}{}", .at.excerpt())]
    Parse { at: Location, message: String },
    #[error("invalid value for `{field}`: {reason}")]
    Invalid { field: String, reason: String },
    /// A value the file sets that validation refused, at the file's line
    /// that sets it.
    #[error("config file {at}: {problem}{}", .at.excerpt())]
    InFile {
        at: Location,
        problem: Box<ConfigError>,
    },
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
