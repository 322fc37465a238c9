//! Tokens already verified, so that a token presented again costs a lookup instead of a
//! signature check (about 40 µs of CPU with Ed25519).
//!
//! - The whole token is the key, compared in full on a hit: the signature covers every byte,
//!   so only the very token that was verified can hit.
//! - Only what cannot change is cached (a valid signature by a known key, and the claims). On
//!   every hit the times are checked again against the caller's clock, and the signing key
//!   must still be known (a key revoked or dropped from the key set misses and fails as it
//!   would the first time).
//! - Revocation is not cached here: the caller checks it on every use, as before.
//! - Bounded by entries (S3-FIFO eviction, `quick_cache`); an entry is about 1 KB, so the
//!   default 10,000 entries hold at most about 10 MB.
//! - One cache serves one [`VerifyPolicy`] (its owner's): entries were checked against it.

use std::sync::Arc;

use crate::{AccessClaims, VerifyError, VerifyPolicy};

/// The default bound, in tokens.
pub const VERIFIED_TOKENS_DEFAULT: usize = 10_000;

pub struct VerifiedTokens {
    cache: Option<quick_cache::sync::Cache<Box<str>, Arc<AccessClaims>>>,
}

impl std::fmt::Debug for VerifiedTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifiedTokens")
            .field("len", &self.cache.as_ref().map_or(0, |c| c.len()))
            .finish()
    }
}

impl Default for VerifiedTokens {
    fn default() -> Self {
        Self::new(VERIFIED_TOKENS_DEFAULT)
    }
}

impl VerifiedTokens {
    /// At most `capacity` tokens; 0 turns the cache off.
    pub fn new(capacity: usize) -> Self {
        Self {
            cache: (capacity > 0).then(|| quick_cache::sync::Cache::new(capacity)),
        }
    }

    /// The claims of `token` under `policy` at `now_secs`: from the cache when this token
    /// was verified before and its key is still `known`, else from `verify` (and then kept
    /// when valid).
    pub fn verify(
        &self,
        policy: &VerifyPolicy,
        token: &str,
        now_secs: i64,
        known: impl Fn(&str) -> bool,
        verify: impl FnOnce() -> Result<AccessClaims, VerifyError>,
    ) -> Result<AccessClaims, VerifyError> {
        let Some(cache) = &self.cache else {
            return verify();
        };
        if let Some(claims) = cache.get(token) {
            if known(&claims.kid) {
                policy.check_times(&claims, now_secs)?;
                return Ok(AccessClaims::clone(&claims));
            }
            cache.remove(token);
        }
        let claims = verify()?;
        cache.insert(token.into(), Arc::new(claims.clone()));
        Ok(claims)
    }

    pub fn len(&self) -> usize {
        self.cache.as_ref().map_or(0, |c| c.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
