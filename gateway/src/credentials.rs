//! The credential pair a zero-setup gateway makes for itself: generated on
//! first start, kept in the data dir readable only by its owner.

use std::io::Write;
use std::path::{Path, PathBuf};

use ferry_config::Credential;
use rand::distr::{Alphanumeric, SampleString};
use serde::{Deserialize, Serialize};

const FILE_NAME: &str = "credentials.toml";

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Stored {
    access_key: String,
    secret_key: String,
}

/// What [`load_or_generate`] did, so `serve` can tell the user.
pub enum Origin {
    Generated(PathBuf),
    Loaded(PathBuf),
}

/// Reads the generated pair from `data_dir`, or makes and stores a new one.
pub fn load_or_generate(data_dir: &Path) -> Result<(Credential, Origin), String> {
    let path = data_dir.join(FILE_NAME);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let stored: Stored =
                toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
            Ok((credential(stored), Origin::Loaded(path)))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut rng = rand::rng();
            let stored = Stored {
                access_key: format!(
                    "FERRY{}",
                    Alphanumeric.sample_string(&mut rng, 15).to_uppercase()
                ),
                secret_key: Alphanumeric.sample_string(&mut rng, 40),
            };
            write_private(&path, &toml::to_string(&stored).map_err(|e| e.to_string())?)
                .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
            Ok((credential(stored), Origin::Generated(path)))
        }
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

fn credential(stored: Stored) -> Credential {
    Credential {
        access_key: stored.access_key,
        secret_key: stored.secret_key,
        buckets: None,
        read_only: false,
    }
}

/// Creates `path` with mode 0600 before any secret is written to it.
fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(contents.as_bytes())?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_once_then_reused_and_private() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (first, origin) = load_or_generate(dir.path()).expect("generate");
        assert!(matches!(origin, Origin::Generated(_)));
        assert!(first.secret_key.len() >= 40);
        let (second, origin) = load_or_generate(dir.path()).expect("load");
        assert!(matches!(origin, Origin::Loaded(_)));
        assert_eq!(first.access_key, second.access_key);
        assert_eq!(first.secret_key, second.secret_key);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(FILE_NAME))
                .expect("stat")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
