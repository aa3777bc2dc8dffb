//! The development JWT secret of the embedded default: 32 bytes from the OS RNG, hex-encoded,
//! created once beside the SQLite file (mode 0600) and reused, so tokens survive restarts.

use std::io::{ErrorKind, Write as _};
use std::path::Path;

use anyhow::Context as _;
use rand::TryRngCore as _;

use super::{Secret, MIN_SECRET_BYTES};

pub const FILE_NAME: &str = "jwt-secret";

pub fn load_or_create(path: &Path) -> anyhow::Result<Secret> {
    match read(path) {
        Ok(Some(secret)) => return Ok(secret),
        Ok(None) => {}
        Err(err) => return Err(err),
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create DATA_DIR {}", dir.display()))?;
    }
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng
        .try_fill_bytes(&mut bytes)
        .context("the OS random number generator failed")?;
    let secret = hex::encode(bytes);
    match create_private(path) {
        Ok(mut file) => {
            file.write_all(secret.as_bytes())
                .and_then(|()| file.sync_all())
                .with_context(|| format!("cannot write {}", path.display()))?;
            Ok(Secret::new(secret))
        }
        // Another process created it first: use theirs.
        Err(err) if err.kind() == ErrorKind::AlreadyExists => read(path)?
            .with_context(|| format!("{} appeared empty; delete it and restart", path.display())),
        Err(err) => Err(err).with_context(|| format!("cannot create {}", path.display())),
    }
}

fn read(path: &Path) -> anyhow::Result<Option<Secret>> {
    match std::fs::read_to_string(path) {
        Ok(content) => {
            let secret = content.trim();
            if secret.len() < MIN_SECRET_BYTES {
                anyhow::bail!(
                    "the development JWT secret in {} is shorter than {MIN_SECRET_BYTES} bytes; \
                     delete the file to generate a new one, or set JWT_SECRET",
                    path.display()
                );
            }
            Ok(Some(Secret::new(secret)))
        }
        Err(err) if err.kind() == ErrorKind::NotFound => Ok(None),
        Err(err) => Err(err).with_context(|| format!("cannot read {}", path.display())),
    }
}

#[cfg(unix)]
fn create_private(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt as _;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
}

#[cfg(not(unix))]
fn create_private(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
}
