//! The audit key pair: `plugbus audit keygen` writes it, `plugbus audit verify --pubkey` reads
//! the public half (the audit logger reads the secret half from its `signing_key`).
//!
//! Both files are text: a header line naming the format
//! ([`SECRET_KEY_HEADER`]/[`PUBLIC_KEY_HEADER`]) and the 32 key bytes in hex. The secret key is
//! created with mode 0600 and never overwritten: a key that signed a log must not vanish by
//! accident, or the log could not be told from a forgery made with the new one.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use ed25519_dalek::{SigningKey, VerifyingKey};
use plugbus::contract::audit::{hex, parse_key_file, PUBLIC_KEY_HEADER, SECRET_KEY_HEADER};
use sha2::{Digest, Sha256};

/// The secret key's file name in the directory given to [`keygen`].
pub const SECRET_KEY_FILE: &str = "audit.key";
/// The public key's file name.
pub const PUBLIC_KEY_FILE: &str = "audit.pub";

/// A key file could not be written or read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// Reading or writing failed.
    #[error("{what} '{}': {source}", path.display())]
    Io {
        /// What was being done ("cannot create", "cannot read").
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A key file exists already; it is never overwritten.
    #[error("'{}' exists already: a key that signed logs must not be replaced by accident (move it away first)", path.display())]
    Exists {
        /// The file.
        path: PathBuf,
    },
    /// The file is not a key file of the expected kind.
    #[error("'{}' is not a plugbus audit {kind} key: {reason}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// `public` or `secret`.
        kind: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The operating system gave no randomness.
    #[error("no randomness for a new key: {0}")]
    Random(String),
}

/// The key pair written by [`keygen`].
#[derive(Debug, Clone)]
pub struct KeyPair {
    /// The secret key file (mode 0600).
    pub secret: PathBuf,
    /// The public key file.
    pub public: PathBuf,
    /// The key's id as seals name it.
    pub key_id: String,
}

/// The id of a public key as seals name it: the first 16 hex digits of its SHA-256.
pub fn key_id(key: &VerifyingKey) -> String {
    hex(&Sha256::digest(key.to_bytes())[..8])
}

/// Writes a new Ed25519 key pair into `dir` (created if missing, mode 0700):
/// [`SECRET_KEY_FILE`] (0600) and [`PUBLIC_KEY_FILE`] (0644).
///
/// # Errors
/// Either file exists already, the directory or a file cannot be written, or there is no
/// randomness.
pub fn keygen(dir: &Path) -> Result<KeyPair, KeyError> {
    let io = |what, path: &Path| {
        let path = path.to_path_buf();
        move |source| KeyError::Io { what, path, source }
    };
    if !dir.exists() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io("cannot create directory", dir))?;
    }
    let secret = dir.join(SECRET_KEY_FILE);
    let public = dir.join(PUBLIC_KEY_FILE);
    for path in [&secret, &public] {
        if path.exists() {
            return Err(KeyError::Exists { path: path.clone() });
        }
    }
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| KeyError::Random(e.to_string()))?;
    let key = SigningKey::from_bytes(&seed);
    let write = |path: &Path, mode: u32, text: String| -> Result<(), KeyError> {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(path)
            .map_err(io("cannot create", path))?;
        file.write_all(text.as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(io("cannot write", path))
    };
    write(
        &secret,
        0o600,
        format!("{SECRET_KEY_HEADER}\n{}\n", hex(&seed)),
    )?;
    seed.fill(0);
    let verifying = key.verifying_key();
    write(
        &public,
        0o644,
        format!("{PUBLIC_KEY_HEADER}\n{}\n", hex(&verifying.to_bytes())),
    )?;
    Ok(KeyPair {
        secret,
        public,
        key_id: key_id(&verifying),
    })
}

/// Reads a public key file written by [`keygen`].
///
/// # Errors
/// The file cannot be read, or is not a public key file (a secret key file given by
/// mistake is named as such).
pub fn read_public_key(path: &Path) -> Result<VerifyingKey, KeyError> {
    let text = fs::read_to_string(path).map_err(|source| KeyError::Io {
        what: "cannot read",
        path: path.to_path_buf(),
        source,
    })?;
    let invalid = |reason: String| KeyError::Invalid {
        path: path.to_path_buf(),
        kind: "public",
        reason,
    };
    if text.trim_start().starts_with(SECRET_KEY_HEADER) {
        return Err(invalid(
            "it is the SECRET key: give the public one (audit.pub), and keep the secret one \
             where only the audit logger reads it"
                .to_owned(),
        ));
    }
    let bytes = parse_key_file(&text, PUBLIC_KEY_HEADER).map_err(invalid)?;
    VerifyingKey::from_bytes(&bytes).map_err(|e| invalid(format!("not an Ed25519 key: {e}")))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn keygen_writes_a_pair_once_with_private_modes() {
        let dir = tempfile::tempdir().unwrap();
        let keys = dir.path().join("keys");
        let pair = keygen(&keys).unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&pair.secret), 0o600);
        assert_eq!(mode(&pair.public), 0o644);
        assert_eq!(mode(&keys), 0o700);
        let public = read_public_key(&pair.public).unwrap();
        assert_eq!(key_id(&public), pair.key_id);
        assert!(matches!(keygen(&keys), Err(KeyError::Exists { .. })));
        let err = read_public_key(&pair.secret).unwrap_err().to_string();
        assert!(err.contains("SECRET key"), "{err}");
        fs::write(dir.path().join("junk"), "hello\n").unwrap();
        let err = read_public_key(&dir.path().join("junk"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("first line"), "{err}");
    }
}
