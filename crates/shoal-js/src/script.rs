//! A script, as the node hands it to the pool, and the functions its
//! `shoal.register` calls left behind once it was loaded.

/// A script: its file name (for messages) and its source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Script {
    pub name: String,
    pub source: String,
}

impl Script {
    pub fn new(name: impl Into<String>, source: impl Into<String>) -> Script {
        Script {
            name: name.into(),
            source: source.into(),
        }
    }

    /// The script's identity: the SHA-256 of its source, in hex.
    pub fn hash(&self) -> String {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(self.source.as_bytes());
        digest.iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// A function a script registered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegisteredFunction {
    pub name: String,
    pub memoize: bool,
}
