//! Private keys at rest and in transit: sealed with XChaCha20-Poly1305 under the operator's
//! key-encryption key (KEK), with everything else the record says (format version, `kid`,
//! state, creation time) bound as associated data: changing any of them, say turning a
//! retired key back into the active one, makes the record fail to open. The installation's
//! [`SecretsRoot`] travels the same way.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD as B64};
use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::{KeyPair, KeyState};

/// The key-encryption key. `Debug` does not show it.
#[derive(Clone)]
pub struct Kek(Zeroizing<[u8; 32]>);

impl std::fmt::Debug for Kek {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Kek(..)")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("the key-encryption key must be 32 bytes, base64 or hex encoded")]
    BadKek,
    #[error("a sealed secret does not open under this key-encryption key (wrong KEK or tampered)")]
    Open,
    #[error("a sealed secret is malformed")]
    Malformed,
}

impl Kek {
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// Parses 32 bytes given as base64 (standard or URL-safe) or 64 hex digits.
    pub fn parse(text: &str) -> Result<Self, SealError> {
        let text = text.trim();
        let bytes = Zeroizing::new(
            decode_hex(text)
                .or_else(|| STANDARD.decode(text).ok())
                .or_else(|| B64.decode(text.trim_end_matches('=')).ok())
                .ok_or(SealError::BadKek)?,
        );
        let arr: [u8; 32] = bytes.as_slice().try_into().map_err(|_| SealError::BadKek)?;
        Ok(Self::from_bytes(arr))
    }

    /// A public fingerprint (16 hex digits) that tells KEKs apart in listings and messages;
    /// it reveals nothing of the KEK.
    pub fn id(&self) -> String {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        h.update(b"tokend-kek-id\0");
        h.update(self.0.as_slice());
        hex::encode(&h.finalize()[..8])
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new(self.0.as_slice().into())
    }

    /// Encrypts `msg` bound to `aad`: the nonce and the ciphertext, base64url.
    fn seal(&self, msg: &[u8], aad: &[u8]) -> (String, String) {
        let nonce = XChaCha20Poly1305::generate_nonce(&mut rand::rngs::OsRng);
        // Encrypting with a valid key and nonce cannot fail.
        let ciphertext = self
            .cipher()
            .encrypt(&nonce, Payload { msg, aad })
            .unwrap_or_default();
        (B64.encode(nonce), B64.encode(ciphertext))
    }

    /// Opens what [`Kek::seal`] made; exactly 32 bytes.
    fn open(&self, nonce: &str, ciphertext: &str, aad: &[u8]) -> Result<[u8; 32], SealError> {
        let nonce = B64.decode(nonce).map_err(|_| SealError::Malformed)?;
        if nonce.len() != 24 {
            return Err(SealError::Malformed);
        }
        let ciphertext = B64.decode(ciphertext).map_err(|_| SealError::Malformed)?;
        let plain = Zeroizing::new(
            self.cipher()
                .decrypt(
                    XNonce::from_slice(&nonce),
                    Payload {
                        msg: &ciphertext,
                        aad,
                    },
                )
                .map_err(|_| SealError::Open)?,
        );
        plain
            .as_slice()
            .try_into()
            .map_err(|_| SealError::Malformed)
    }
}

/// The root of a node's other secrets (the client-secret digest key, the session and CSRF
/// keys). Made once per installation and kept sealed in the key log, and re-sealed with the
/// signing keys when the KEK changes, so that changing the KEK changes none of them.
#[derive(Clone)]
pub struct SecretsRoot(Zeroizing<[u8; 32]>);

impl std::fmt::Debug for SecretsRoot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretsRoot(..)")
    }
}

impl SecretsRoot {
    pub fn generate() -> Self {
        use rand::RngCore;
        let mut bytes = Zeroizing::new([0u8; 32]);
        rand::rngs::OsRng.fill_bytes(bytes.as_mut_slice());
        Self(bytes)
    }

    /// Installations from before the secrets root derived these secrets from the KEK: the
    /// KEK's bytes as the root derive the very same ones.
    pub fn of_installation_before_roots(kek: &Kek) -> Self {
        Self(kek.0.clone())
    }

    /// A purpose-bound 32-byte subkey: SHA-256 over a label and the root.
    pub fn derive(&self, label: &str) -> Zeroizing<[u8; 32]> {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        h.update(b"tokend-kek-derive\0");
        h.update(label.as_bytes());
        h.update([0]);
        h.update(self.0.as_slice());
        Zeroizing::new(h.finalize().into())
    }

    pub fn seal(&self, kek: &Kek) -> SealedSecret {
        let (nonce, ciphertext) = kek.seal(self.0.as_slice(), SealedSecret::AAD);
        SealedSecret { nonce, ciphertext }
    }
}

/// A [`SecretsRoot`] sealed under a KEK.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedSecret {
    pub nonce: String,
    pub ciphertext: String,
}

impl SealedSecret {
    const AAD: &'static [u8] = b"tokend-secrets-root\x01";

    pub fn open(&self, kek: &Kek) -> Result<SecretsRoot, SealError> {
        let bytes = kek.open(&self.nonce, &self.ciphertext, Self::AAD)?;
        Ok(SecretsRoot(Zeroizing::new(bytes)))
    }
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    (text.len() == 64).then(|| hex::decode(text).ok()).flatten()
}

/// The format sealed today: every field bound (see [`SealedKey::aad`]).
pub const SEAL_VERSION: u8 = 2;
/// The first format (no `version` field): only the `kid` was bound. Still opened, so
/// existing key files keep working; written again at [`SEAL_VERSION`] when re-sealed.
const SEAL_V1: u8 = 1;

fn v1() -> u8 {
    SEAL_V1
}

/// A private key as it may be written to disk or to the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedKey {
    #[serde(default = "v1")]
    pub version: u8,
    pub kid: String,
    pub state: KeyState,
    pub created_at_ms: i64,
    pub nonce: String,
    pub ciphertext: String,
}

impl SealedKey {
    pub fn seal(key: &KeyPair, kek: &Kek) -> Self {
        let mut sealed = Self {
            version: SEAL_VERSION,
            kid: key.kid().to_owned(),
            state: key.state(),
            created_at_ms: key.created_at_ms(),
            nonce: String::new(),
            ciphertext: String::new(),
        };
        (sealed.nonce, sealed.ciphertext) = kek.seal(key.seed().as_slice(), &sealed.aad());
        sealed
    }

    /// The associated data: each field length-prefixed, so no two records share it.
    fn aad(&self) -> Vec<u8> {
        if self.version == SEAL_V1 {
            return self.kid.as_bytes().to_vec();
        }
        let state = match self.state {
            KeyState::Next => "next",
            KeyState::Active => "active",
            KeyState::Retired => "retired",
        };
        let created = self.created_at_ms.to_string();
        let mut aad = b"tokend-sealed-key".to_vec();
        aad.push(self.version);
        for field in [self.kid.as_bytes(), state.as_bytes(), created.as_bytes()] {
            aad.extend_from_slice(&(field.len() as u64).to_be_bytes());
            aad.extend_from_slice(field);
        }
        aad
    }

    pub fn open(&self, kek: &Kek) -> Result<KeyPair, SealError> {
        if self.version != SEAL_VERSION && self.version != SEAL_V1 {
            return Err(SealError::Malformed);
        }
        let seed = Zeroizing::new(kek.open(&self.nonce, &self.ciphertext, &self.aad())?);
        let key = KeyPair::from_seed(&seed, self.state, self.created_at_ms);
        if key.kid() != self.kid {
            return Err(SealError::Malformed);
        }
        Ok(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_round_trip_and_wrong_kek_fails() {
        let kek = Kek::from_bytes([7; 32]);
        let key = KeyPair::generate(KeyState::Active, 42);
        let sealed = SealedKey::seal(&key, &kek);
        assert!(!sealed.ciphertext.contains(key.x()));
        let opened = sealed.open(&kek).unwrap();
        assert_eq!(opened.kid(), key.kid());
        assert_eq!(opened.x(), key.x());
        assert!(matches!(
            sealed.open(&Kek::from_bytes([8; 32])),
            Err(SealError::Open)
        ));
        let mut tampered = sealed.clone();
        tampered.kid = "other".into();
        assert!(tampered.open(&kek).is_err());
    }

    #[test]
    fn every_field_is_bound() {
        let kek = Kek::from_bytes([7; 32]);
        let sealed = SealedKey::seal(&KeyPair::generate(KeyState::Retired, 42), &kek);
        assert_eq!(sealed.version, SEAL_VERSION);
        let tampered = [
            SealedKey {
                state: KeyState::Active,
                ..sealed.clone()
            },
            SealedKey {
                created_at_ms: 43,
                ..sealed.clone()
            },
            SealedKey {
                version: SEAL_V1,
                ..sealed.clone()
            },
            SealedKey {
                version: 9,
                ..sealed.clone()
            },
        ];
        for t in tampered {
            assert!(t.open(&kek).is_err(), "{t:?} opened");
        }
    }

    #[test]
    fn records_of_the_first_format_still_open() {
        let kek = Kek::from_bytes([7; 32]);
        let key = KeyPair::generate(KeyState::Active, 42);
        // Sealed the first way: the kid alone as associated data, no version field.
        let cipher = XChaCha20Poly1305::new(kek.0.as_slice().into());
        let nonce = XChaCha20Poly1305::generate_nonce(&mut rand::rngs::OsRng);
        let seed = key.seed();
        let payload = Payload {
            msg: seed.as_slice(),
            aad: key.kid().as_bytes(),
        };
        let json = serde_json::json!({
            "kid": key.kid(),
            "state": "active",
            "created_at_ms": 42,
            "nonce": B64.encode(nonce),
            "ciphertext": B64.encode(cipher.encrypt(&nonce, payload).unwrap()),
        });
        let old: SealedKey = serde_json::from_value(json).unwrap();
        assert_eq!(old.version, SEAL_V1);
        assert_eq!(old.open(&kek).unwrap().x(), key.x());
    }

    #[test]
    fn the_secrets_root_round_trips_and_opens_under_its_kek_only() {
        let (kek, other) = (Kek::from_bytes([7; 32]), Kek::from_bytes([8; 32]));
        let root = SecretsRoot::generate();
        let sealed = root.seal(&kek);
        let opened = sealed.open(&kek).unwrap();
        assert_eq!(opened.derive("x"), root.derive("x"));
        assert_ne!(
            root.derive("x"),
            root.derive("y"),
            "labels separate subkeys"
        );
        assert!(matches!(sealed.open(&other), Err(SealError::Open)));
        // Re-sealed under another KEK (a KEK rotation): the same secret.
        assert_eq!(
            root.seal(&other).open(&other).unwrap().derive("x"),
            root.derive("x")
        );
        let mut tampered = sealed.clone();
        tampered.ciphertext.replace_range(0..1, "A");
        tampered.ciphertext.replace_range(1..2, "B");
        assert!(tampered.open(&kek).is_err());
        assert_eq!(format!("{root:?}"), "SecretsRoot(..)");
    }

    #[test]
    fn an_installation_from_before_the_root_keeps_its_derived_secrets() {
        // What earlier builds derived from the KEK itself.
        use sha2::{Digest, Sha256};
        let bytes = [3u8; 32];
        let mut h = Sha256::new();
        h.update(b"tokend-kek-derive\0client-secret-digest\0");
        h.update(bytes);
        let before: [u8; 32] = h.finalize().into();
        let root = SecretsRoot::of_installation_before_roots(&Kek::from_bytes(bytes));
        assert_eq!(*root.derive("client-secret-digest"), before);
    }

    #[test]
    fn kek_ids_tell_keks_apart_and_reveal_nothing() {
        let kek = Kek::from_bytes([7; 32]);
        assert_eq!(kek.id().len(), 16);
        assert_eq!(kek.id(), Kek::from_bytes([7; 32]).id());
        assert_ne!(kek.id(), Kek::from_bytes([8; 32]).id());
        assert!(!kek.id().contains("0707"));
    }

    #[test]
    fn kek_parses_hex_and_base64_only_at_32_bytes() {
        assert!(Kek::parse(&"ab".repeat(32)).is_ok());
        assert!(Kek::parse(&STANDARD.encode([1u8; 32])).is_ok());
        assert!(Kek::parse(&B64.encode([1u8; 32])).is_ok());
        assert!(Kek::parse("short").is_err());
        assert!(Kek::parse(&STANDARD.encode([1u8; 16])).is_err());
        assert_eq!(format!("{:?}", Kek::from_bytes([9; 32])), "Kek(..)");
    }
}
