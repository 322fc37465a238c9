//! Access-token verification (RFC 8725 / RFC 9068): EdDSA only, a known `kid`, `typ: at+jwt`,
//! then `iss`, `aud`, `exp` and `nbf` against a clock the caller passes in.

use std::collections::{HashMap, HashSet};

use jsonwebtoken::{Algorithm, DecodingKey, Validation};

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
    fn decoding_key(&self, kid: &str) -> Option<&DecodingKey>;
}

impl KeyLookup for Keyring {
    fn decoding_key(&self, kid: &str) -> Option<&DecodingKey> {
        self.get(kid).map(|k| k.decoding())
    }
}

/// Public keys only, as a remote resource server learns them from a JWKS.
#[derive(Default)]
pub struct PublicKeySet {
    keys: HashMap<String, DecodingKey>,
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
                let x = k["x"].as_str()?;
                let key = DecodingKey::from_ed_components(x).ok()?;
                Some((kid.to_owned(), key))
            })
            .collect();
        Self { keys }
    }

    pub fn contains(&self, kid: &str) -> bool {
        self.keys.contains_key(kid)
    }
}

impl KeyLookup for PublicKeySet {
    fn decoding_key(&self, kid: &str) -> Option<&DecodingKey> {
        self.keys.get(kid)
    }
}

/// The `kid` of a token, without verifying anything (to decide whether to refetch keys).
pub fn token_kid(token: &str) -> Option<String> {
    jsonwebtoken::decode_header(token).ok()?.kid
}

impl VerifyPolicy {
    /// Verifies `token` at `now_secs`.
    pub fn verify(
        &self,
        keys: &impl KeyLookup,
        token: &str,
        now_secs: i64,
    ) -> Result<AccessClaims, VerifyError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| VerifyError::Malformed)?;
        if header.alg != Algorithm::EdDSA {
            return Err(VerifyError::Algorithm);
        }
        let typ_ok = header.typ.as_deref().is_some_and(|t| {
            t.eq_ignore_ascii_case(ACCESS_TOKEN_TYP) || t.eq_ignore_ascii_case("application/at+jwt")
        });
        if !typ_ok {
            return Err(VerifyError::Type);
        }
        let kid = header.kid.ok_or(VerifyError::UnknownKey)?;
        let key = keys.decoding_key(&kid).ok_or(VerifyError::UnknownKey)?;

        let mut validation = Validation::new(Algorithm::EdDSA);
        // Time is checked below against the caller's clock, not the system's.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.required_spec_claims = HashSet::new();
        validation.set_issuer(&[&self.issuer]);
        if self.audiences.is_empty() {
            validation.validate_aud = false;
        } else {
            validation.set_audience(&self.audiences);
        }
        let mut claims = jsonwebtoken::decode::<AccessClaims>(token, key, &validation)
            .map_err(|_| VerifyError::Invalid)?
            .claims;
        claims.kid = kid;
        if claims.exp + self.leeway_secs <= now_secs {
            return Err(VerifyError::Expired);
        }
        if claims.nbf.unwrap_or(claims.iat) - self.leeway_secs > now_secs {
            return Err(VerifyError::NotYetValid);
        }
        Ok(claims)
    }
}
