//! Access-token verification (RFC 8725 / RFC 9068): EdDSA only, a known `kid`, `typ: at+jwt`,
//! then `iss`, `aud`, `exp` and `nbf` against a clock the caller passes in.
//!
//! Written on `ed25519-dalek` directly rather than through `jsonwebtoken`'s `decode`, which
//! rebuilds the verifying key from its bytes on every call (an Edwards point decompression)
//! and parses the claims twice; here each key is decompressed once, when it is learnt, and
//! the token's header and claims are each parsed once. The crypto stays the crate's.
//!
//! The signature check is RFC 8032's cofactorless equation (`[S]B = R + [k]A`, `S` canonical,
//! `R` compared in its canonical encoding), the check the bare reference endpoint makes too,
//! and not `verify_strict`, which also decompresses `R` to refuse small-order points. That
//! refusal matters only with a small-order (weak) public key, for which some signatures verify
//! on any message: no key of ours is one, and a key read from a JWKS that is one is dropped
//! ([`PublicKeySet::from_jwks`]). With a key that is not weak, forging (or altering) a
//! signature still needs the discrete logarithm, with or without a small-order `R`.

use std::collections::HashMap;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use ed25519_dalek::{Signature, Verifier as _, VerifyingKey};
use serde::Deserialize;

use crate::{ACCESS_TOKEN_TYP, AccessClaims, Keyring};

/// What a verifier accepts.
#[derive(Debug, Clone)]
pub struct VerifyPolicy {
    pub issuer: String,
    /// The token must name at least one of these audiences (empty: any audience, as for
    /// introspection at the issuer).
    pub audiences: Vec<String>,
    pub leeway_secs: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("the token is malformed")]
    Malformed,
    #[error("the token's algorithm is not EdDSA")]
    Algorithm,
    #[error("the token's type is not at+jwt")]
    Type,
    #[error("the token was signed by an unknown key")]
    UnknownKey,
    #[error("the token's signature or claims are invalid")]
    Invalid,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not yet valid")]
    NotYetValid,
}

/// A source of verification keys by `kid`.
pub trait KeyLookup {
    fn verifying_key(&self, kid: &str) -> Option<&VerifyingKey>;
}

impl KeyLookup for Keyring {
    fn verifying_key(&self, kid: &str) -> Option<&VerifyingKey> {
        self.get(kid).map(|k| k.verifying())
    }
}

/// Public keys only, as a remote resource server learns them from a JWKS.
#[derive(Default)]
pub struct PublicKeySet {
    keys: HashMap<String, VerifyingKey>,
}

impl std::fmt::Debug for PublicKeySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.keys.keys()).finish()
    }
}

impl PublicKeySet {
    /// Reads the Ed25519 OKP keys of a JWKS document; other keys are ignored.
    pub fn from_jwks(jwks: &serde_json::Value) -> Self {
        let keys = jwks["keys"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|k| k["kty"] == "OKP" && k["crv"] == "Ed25519")
            .filter_map(|k| {
                let kid = k["kid"].as_str()?;
                let x = B64.decode(k["x"].as_str()?).ok()?;
                let key = VerifyingKey::from_bytes(&x.try_into().ok()?).ok()?;
                // A small-order key would accept forged signatures: never used.
                (!key.is_weak()).then(|| (kid.to_owned(), key))
            })
            .collect();
        Self { keys }
    }

    pub fn contains(&self, kid: &str) -> bool {
        self.keys.contains_key(kid)
    }
}

impl KeyLookup for PublicKeySet {
    fn verifying_key(&self, kid: &str) -> Option<&VerifyingKey> {
        self.keys.get(kid)
    }
}

/// The JOSE header fields verification looks at (others are ignored, `crit` refused).
#[derive(Deserialize)]
struct Header {
    alg: String,
    typ: Option<String>,
    kid: Option<String>,
    crit: Option<serde::de::IgnoredAny>,
}

/// A compact JWS split into its parts: the signed input, the header and the signature.
struct Parts<'a> {
    signed: &'a str,
    payload: &'a str,
    header: Header,
    signature: &'a str,
}

fn parts(token: &str) -> Result<Parts<'_>, VerifyError> {
    let (signed, signature) = token.rsplit_once('.').ok_or(VerifyError::Malformed)?;
    let (header, payload) = signed.split_once('.').ok_or(VerifyError::Malformed)?;
    if payload.contains('.') {
        return Err(VerifyError::Malformed);
    }
    let header = B64.decode(header).map_err(|_| VerifyError::Malformed)?;
    let header = serde_json::from_slice(&header).map_err(|_| VerifyError::Malformed)?;
    Ok(Parts {
        signed,
        payload,
        header,
        signature,
    })
}

/// The `kid` of a token, without verifying anything (to decide whether to refetch keys).
pub fn token_kid(token: &str) -> Option<String> {
    parts(token).ok()?.header.kid
}

impl VerifyPolicy {
    /// Verifies `token` at `now_secs`.
    pub fn verify(
        &self,
        keys: &impl KeyLookup,
        token: &str,
        now_secs: i64,
    ) -> Result<AccessClaims, VerifyError> {
        let Parts {
            signed,
            payload,
            header,
            signature,
        } = parts(token)?;
        if header.alg != "EdDSA" {
            return Err(VerifyError::Algorithm);
        }
        let typ_ok = header.typ.as_deref().is_some_and(|t| {
            t.eq_ignore_ascii_case(ACCESS_TOKEN_TYP) || t.eq_ignore_ascii_case("application/at+jwt")
        });
        if !typ_ok {
            return Err(VerifyError::Type);
        }
        if header.crit.is_some() {
            // RFC 7515 §4.1.11: no extension is understood here.
            return Err(VerifyError::Malformed);
        }
        let kid = header.kid.ok_or(VerifyError::UnknownKey)?;
        let key = keys.verifying_key(&kid).ok_or(VerifyError::UnknownKey)?;
        let mut raw = [0u8; 64];
        match B64.decode_slice(signature, &mut raw) {
            Ok(64) => {}
            _ => return Err(VerifyError::Invalid),
        }
        key.verify(signed.as_bytes(), &Signature::from_bytes(&raw))
            .map_err(|_| VerifyError::Invalid)?;
        let payload = B64.decode(payload).map_err(|_| VerifyError::Invalid)?;
        let mut claims: AccessClaims =
            serde_json::from_slice(&payload).map_err(|_| VerifyError::Invalid)?;
        if claims.iss != self.issuer {
            return Err(VerifyError::Invalid);
        }
        if !self.audiences.is_empty() && !claims.aud.iter().any(|a| self.audiences.contains(a)) {
            return Err(VerifyError::Invalid);
        }
        claims.kid = kid;
        self.check_times(&claims, now_secs)?;
        Ok(claims)
    }

    /// `exp` and `nbf` (or `iat`) against `now_secs`, with the leeway.
    pub fn check_times(&self, claims: &AccessClaims, now_secs: i64) -> Result<(), VerifyError> {
        if claims.exp + self.leeway_secs <= now_secs {
            return Err(VerifyError::Expired);
        }
        if claims.nbf.unwrap_or(claims.iat) - self.leeway_secs > now_secs {
            return Err(VerifyError::NotYetValid);
        }
        Ok(())
    }
}
