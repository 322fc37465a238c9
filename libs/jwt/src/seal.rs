//! Private keys at rest and in transit: sealed with XChaCha20-Poly1305 under the operator's
//! key-encryption key (KEK), with everything else the record says (format version, `kid`,
//! state, creation time) bound as associated data: changing any of them, say turning a
//! retired key back into the active one, makes the record fail to open.

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
    #[error("a sealed key does not open under this key-encryption key (wrong KEK or tampered)")]
    Open,
    #[error("a sealed key is malformed")]
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

    /// Derives a purpose-bound 32-byte subkey (HMAC-free: SHA-256 over KEK ‖ label).
    pub fn derive(&self, label: &str) -> Zeroizing<[u8; 32]> {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        h.update(b"tokend-kek-derive\0");
        h.update(label.as_bytes());
        h.update([0]);
        h.update(self.0.as_slice());
        Zeroizing::new(h.finalize().into())
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
        let cipher = XChaCha20Poly1305::new(kek.0.as_slice().into());
        let nonce = XChaCha20Poly1305::generate_nonce(&mut rand::rngs::OsRng);
        let mut sealed = Self {
            version: SEAL_VERSION,
            kid: key.kid().to_owned(),
            state: key.state(),
            created_at_ms: key.created_at_ms(),
            nonce: B64.encode(nonce),
            ciphertext: String::new(),
        };
        let seed = key.seed();
        let aad = sealed.aad();
        let payload = Payload {
            msg: seed.as_slice(),
            aad: &aad,
        };
        // Encrypting 32 bytes with a valid key and nonce cannot fail.
        let ciphertext = cipher.encrypt(&nonce, payload).unwrap_or_default();
        sealed.ciphertext = B64.encode(ciphertext);
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
        let cipher = XChaCha20Poly1305::new(kek.0.as_slice().into());
        let nonce = B64.decode(&self.nonce).map_err(|_| SealError::Malformed)?;
        if nonce.len() != 24 {
            return Err(SealError::Malformed);
        }
        if self.version != SEAL_VERSION && self.version != SEAL_V1 {
            return Err(SealError::Malformed);
        }
        let ciphertext = B64
            .decode(&self.ciphertext)
            .map_err(|_| SealError::Malformed)?;
        let aad = self.aad();
        let payload = Payload {
            msg: &ciphertext,
            aad: &aad,
        };
        let seed = Zeroizing::new(
            cipher
                .decrypt(XNonce::from_slice(&nonce), payload)
                .map_err(|_| SealError::Open)?,
        );
        let seed: [u8; 32] = seed
            .as_slice()
            .try_into()
            .map_err(|_| SealError::Malformed)?;
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
    fn kek_parses_hex_and_base64_only_at_32_bytes() {
        assert!(Kek::parse(&"ab".repeat(32)).is_ok());
        assert!(Kek::parse(&STANDARD.encode([1u8; 32])).is_ok());
        assert!(Kek::parse(&B64.encode([1u8; 32])).is_ok());
        assert!(Kek::parse("short").is_err());
        assert!(Kek::parse(&STANDARD.encode([1u8; 16])).is_err());
        assert_eq!(format!("{:?}", Kek::from_bytes([9; 32])), "Kek(..)");
    }
}
