//! Secrets: generation, keyed digests of client secrets, digests of refresh tokens, argon2id
//! password hashes. Every comparison is constant-time.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

/// 256 bits from the OS generator, base64url.
pub fn random_token() -> String {
    let mut bytes = Zeroizing::new([0u8; 32]);
    rand::rngs::OsRng.fill_bytes(bytes.as_mut_slice());
    B64.encode(bytes.as_slice())
}

/// 128 bits, hex: token ids and family ids.
pub fn random_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// SHA-256 of a refresh token (hex): the only form a refresh token is stored or logged in.
pub fn refresh_digest(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Keyed SHA-256 (HMAC) of client secrets: fast enough that client authentication is never
/// the bottleneck, useless to whoever reads the log without the key.
#[derive(Clone)]
pub struct SecretHasher {
    key: Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for SecretHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretHasher(..)")
    }
}

impl SecretHasher {
    pub fn new(key: Zeroizing<[u8; 32]>) -> Self {
        Self { key }
    }

    pub fn digest(&self, secret: &str) -> String {
        hex::encode(self.mac(secret))
    }

    fn mac(&self, secret: &str) -> [u8; 32] {
        // HMAC takes keys of any length.
        let mut mac = Hmac::<Sha256>::new_from_slice(self.key.as_slice())
            .unwrap_or_else(|_| unreachable_hmac());
        mac.update(secret.as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// Constant-time check of `secret` against a stored hex digest.
    pub fn verify(&self, secret: &str, stored_hex: &str) -> bool {
        let Ok(stored) = hex::decode(stored_hex) else {
            return false;
        };
        self.mac(secret).ct_eq(stored.as_slice()).into()
    }
}

#[allow(clippy::panic)]
fn unreachable_hmac() -> Hmac<Sha256> {
    panic!("HMAC-SHA256 accepts keys of any length")
}

fn argon2() -> Argon2<'static> {
    // OWASP's argon2id baseline: 19 MiB, 2 passes, 1 lane.
    let params = Params::new(19 * 1024, 2, 1, None).unwrap_or_default();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// An argon2id PHC string for `password`.
pub fn hash_password(password: &str) -> Option<String> {
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    argon2()
        .hash_password(password.as_bytes(), &salt)
        .ok()
        .map(|h| h.to_string())
}

/// Checks `password` against a PHC string; `None` hash (unknown user) still costs one
/// verification, so timing does not tell which user names exist.
pub fn verify_password(password: &str, phc: Option<&str>) -> bool {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let dummy = DUMMY.get_or_init(|| hash_password("dummy password").unwrap_or_default());
    let (phc, real) = match phc {
        Some(p) => (p, true),
        None => (dummy.as_str(), false),
    };
    let ok = PasswordHash::new(phc)
        .is_ok_and(|h| argon2().verify_password(password.as_bytes(), &h).is_ok());
    ok && real
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyed_digest_verifies_only_the_right_secret_under_the_right_key() {
        let a = SecretHasher::new(Zeroizing::new([1; 32]));
        let b = SecretHasher::new(Zeroizing::new([2; 32]));
        let secret = random_token();
        assert_eq!(secret.len(), 43);
        let d = a.digest(&secret);
        assert!(a.verify(&secret, &d));
        assert!(!a.verify("wrong", &d));
        assert!(!b.verify(&secret, &d));
        assert!(!a.verify(&secret, "not hex"));
        assert!(!d.contains(&secret));
    }

    #[test]
    fn passwords_hash_with_argon2id_and_verify() {
        let h = hash_password("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password("correct horse", Some(&h)));
        assert!(!verify_password("wrong", Some(&h)));
        assert!(!verify_password("dummy password", None));
        assert!(!verify_password("x", Some("garbage")));
    }

    #[test]
    fn refresh_digest_is_sha256_hex() {
        assert_eq!(
            refresh_digest("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}

/// A secret from a request (password, client secret, refresh token): its `Debug` is redacted,
/// so it never reaches a log by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}
