//! The node's ed25519 identity, kept in the data directory so a restarted
//! node keeps its peer id.

use libp2p::identity::Keypair;
use std::path::{Path, PathBuf};

const KEY_FILE: &str = "identity.key";

#[derive(Debug, thiserror::Error)]
#[error("identity key {path}: {reason}")]
pub struct IdentityError {
    pub path: PathBuf,
    pub reason: String,
}

/// Loads the key from `data_dir`, creating one on first start; without a
/// data directory the identity is fresh each run.
pub fn load_or_create(data_dir: Option<&Path>) -> Result<Keypair, IdentityError> {
    let Some(dir) = data_dir else {
        return Ok(Keypair::generate_ed25519());
    };
    let path = dir.join(KEY_FILE);
    let fail = |reason: String| IdentityError {
        path: path.clone(),
        reason,
    };
    match std::fs::read(&path) {
        Ok(bytes) => Keypair::from_protobuf_encoding(&bytes).map_err(|e| {
            fail(format!(
                "cannot decode ({e}); delete it to get a new identity"
            ))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dir)
                .map_err(|e| fail(format!("cannot create the data directory: {e}")))?;
            let keypair = Keypair::generate_ed25519();
            let bytes = keypair
                .to_protobuf_encoding()
                .map_err(|e| fail(format!("cannot encode: {e}")))?;
            write_private(&path, &bytes).map_err(|e| fail(format!("cannot write: {e}")))?;
            Ok(keypair)
        }
        Err(e) => Err(fail(format!("cannot read: {e}"))),
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)?.write_all(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let first = load_or_create(Some(dir.path())).unwrap();
        let second = load_or_create(Some(dir.path())).unwrap();
        assert_eq!(first.public().to_peer_id(), second.public().to_peer_id());
    }

    #[test]
    fn corrupt_key_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(KEY_FILE), b"not a key").unwrap();
        let error = load_or_create(Some(dir.path())).unwrap_err();
        assert!(error.to_string().contains("delete it"), "{error}");
    }
}
