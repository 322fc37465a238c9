//! One Ed25519 key pair with its `kid` (the RFC 7638 thumbprint) and its state.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Where a key is in its life: published before it signs, signing, then kept for verification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyState {
    Next,
    Active,
    Retired,
}

/// A key pair ready to sign and verify. Its `Debug` never shows the private half.
pub struct KeyPair {
    kid: String,
    state: KeyState,
    created_at_ms: i64,
    signing: SigningKey,
    /// The JOSE header of its access tokens, base64url-encoded once.
    header: String,
    verifying: VerifyingKey,
    x: String,
}

impl std::fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyPair")
            .field("kid", &self.kid)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

impl KeyPair {
    /// A fresh key from the OS random number generator.
    pub fn generate(state: KeyState, created_at_ms: i64) -> Self {
        let signing = SigningKey::generate(&mut rand::rngs::OsRng);
        Self::from_signing_key(signing, state, created_at_ms)
    }

    /// A key from its 32-byte seed (RFC 8037 `d`).
    pub fn from_seed(seed: &[u8; 32], state: KeyState, created_at_ms: i64) -> Self {
        Self::from_signing_key(SigningKey::from_bytes(seed), state, created_at_ms)
    }

    fn from_signing_key(signing: SigningKey, state: KeyState, created_at_ms: i64) -> Self {
        let verifying = signing.verifying_key();
        let public = verifying.to_bytes();
        let x = B64.encode(public);
        let kid = thumbprint(&x);
        let header = serde_json::json!({
            "typ": crate::ACCESS_TOKEN_TYP,
            "alg": "EdDSA",
            "kid": kid,
        });
        Self {
            header: B64.encode(header.to_string()),
            kid,
            state,
            created_at_ms,
            verifying,
            signing,
            x,
        }
    }

    /// The same key in another state.
    pub fn with_state(&self, state: KeyState) -> Self {
        Self::from_signing_key(self.signing.clone(), state, self.created_at_ms)
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }
    pub fn state(&self) -> KeyState {
        self.state
    }
    pub fn set_state(&mut self, state: KeyState) {
        self.state = state;
    }
    pub fn created_at_ms(&self) -> i64 {
        self.created_at_ms
    }
    /// The public key, base64url (RFC 8037 `x`).
    pub fn x(&self) -> &str {
        &self.x
    }
    pub(crate) fn seed(&self) -> zeroize::Zeroizing<[u8; 32]> {
        zeroize::Zeroizing::new(self.signing.to_bytes())
    }
    /// The base64url Ed25519 signature of `input` (RFC 8037), with the key held in memory:
    /// no key parsing per signature.
    pub(crate) fn signature(&self, input: &[u8]) -> String {
        B64.encode(self.signing.sign(input).to_bytes())
    }

    /// A compact JWS of `payload` (JSON) under this key's access-token header.
    pub(crate) fn sign_jws(&self, payload: &[u8]) -> String {
        let mut token = String::with_capacity(self.header.len() + payload.len() * 4 / 3 + 100);
        token.push_str(&self.header);
        token.push('.');
        B64.encode_string(payload, &mut token);
        let signature = self.signature(token.as_bytes());
        token.push('.');
        token.push_str(&signature);
        token
    }
    pub(crate) fn verifying(&self) -> &VerifyingKey {
        &self.verifying
    }

    /// The public JWK (RFC 8037 OKP).
    pub fn jwk(&self) -> serde_json::Value {
        serde_json::json!({
            "kty": "OKP", "crv": "Ed25519", "x": self.x,
            "kid": self.kid, "alg": "EdDSA", "use": "sig",
        })
    }
}

/// RFC 7638 JWK thumbprint of an Ed25519 public key.
fn thumbprint(x: &str) -> String {
    let canonical = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#);
    B64.encode(Sha256::digest(canonical.as_bytes()))
}
