//! The keyring: every key this node knows, at most one of them active. Signing uses the active
//! key; verification accepts any key in the ring by `kid`.

use crate::{AccessClaims, KeyPair, KeyState};

#[derive(Debug, Default)]
pub struct Keyring {
    keys: Vec<KeyPair>,
    /// The JWKS document and its entity tag, made once per change of the keys (serving the
    /// key set costs no serialisation).
    document: Document,
}

/// The serialised JWKS and a strong entity tag for it.
#[derive(Debug, Default, Clone)]
pub struct Document {
    pub body: std::sync::Arc<[u8]>,
    pub etag: String,
}

#[derive(Debug, thiserror::Error)]
pub enum KeyringError {
    #[error("no active signing key")]
    NoActiveKey,
    #[error("signing failed")]
    Sign,
}

impl Keyring {
    pub fn new(keys: Vec<KeyPair>) -> Self {
        let mut ring = Self {
            keys,
            document: Document::default(),
        };
        ring.publish();
        ring
    }

    fn publish(&mut self) {
        use sha2::{Digest, Sha256};
        let body = serde_json::to_vec(&self.jwks()).unwrap_or_default();
        let digest = Sha256::digest(&body);
        // The first 16 bytes of the digest: an entity tag needs no more.
        let etag = format!("\"{}\"", hex::encode(&digest[..16]));
        self.document = Document {
            body: body.into(),
            etag,
        };
    }

    /// The JWKS, serialised, with its entity tag.
    pub fn document(&self) -> &Document {
        &self.document
    }

    /// Adds a key; a key with the same `kid` is replaced. Adding an active key retires the
    /// previously active one.
    pub fn insert(&mut self, key: KeyPair) {
        if key.state() == KeyState::Active {
            for k in self
                .keys
                .iter_mut()
                .filter(|k| k.state() == KeyState::Active)
            {
                k.set_state(KeyState::Retired);
            }
        }
        self.keys.retain(|k| k.kid() != key.kid());
        self.keys.push(key);
        self.publish();
    }

    pub fn active(&self) -> Option<&KeyPair> {
        self.keys.iter().find(|k| k.state() == KeyState::Active)
    }

    pub fn get(&self, kid: &str) -> Option<&KeyPair> {
        self.keys.iter().find(|k| k.kid() == kid)
    }

    pub fn keys(&self) -> &[KeyPair] {
        &self.keys
    }

    /// Signs the claims with the active key as an RFC 9068 access token.
    pub fn sign(&self, claims: &AccessClaims) -> Result<String, KeyringError> {
        let key = self.active().ok_or(KeyringError::NoActiveKey)?;
        let payload = serde_json::to_vec(claims).map_err(|_| KeyringError::Sign)?;
        Ok(key.sign_jws(&payload))
    }

    /// The RFC 7517 key set: every key, next and retired included.
    pub fn jwks(&self) -> serde_json::Value {
        let keys: Vec<_> = self.keys.iter().map(KeyPair::jwk).collect();
        serde_json::json!({ "keys": keys })
    }
}

/// A keyring shared by the signers and verifiers of one process; swapped as keys rotate.
#[derive(Debug, Default)]
pub struct SharedKeyring(std::sync::RwLock<Keyring>);

impl SharedKeyring {
    pub fn new(ring: Keyring) -> Self {
        Self(std::sync::RwLock::new(ring))
    }

    pub fn read(&self) -> std::sync::RwLockReadGuard<'_, Keyring> {
        self.0
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn write(&self) -> std::sync::RwLockWriteGuard<'_, Keyring> {
        self.0
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
