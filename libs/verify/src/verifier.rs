//! The verifier and its two seams: where keys come from and where revocations are looked up.

use std::sync::Arc;

use async_trait::async_trait;
use tokend_domain::Clock;
use tokend_domain::model::RevocationQuery;
use tokend_jwt::{AccessClaims, SharedKeyring, VerifiedTokens, VerifyError, VerifyPolicy};

/// What the revocation rule needs of a verified token: its `jti`, family (`sid`), subject,
/// client, the start of its grant and the key that signed it.
pub fn revocation_query(claims: &AccessClaims) -> RevocationQuery {
    RevocationQuery {
        jti: claims.jti.clone(),
        family_id: claims.sid.clone(),
        sub: claims.user().map(str::to_owned),
        client_id: claims.client_id.clone(),
        auth_time_ms: claims.auth_time_ms,
        kid: claims.kid.clone(),
    }
}

/// Verification keys by `kid`.
#[async_trait]
pub trait KeySet: Send + Sync {
    fn verify_token(
        &self,
        policy: &VerifyPolicy,
        token: &str,
        now_secs: i64,
    ) -> Result<AccessClaims, VerifyError>;

    /// Whether a key of this `kid` is in the set now (a cached verification holds only while
    /// its key does).
    fn knows(&self, kid: &str) -> bool;

    /// Called before each verification, and must not wait: a cached remote key set starts a
    /// background refetch once expired and keeps serving what it has.
    fn refresh_if_stale(&self) {}

    /// Called when a token names an unknown `kid`; `true` when the keys were refetched (a
    /// remote key set rate-limits this).
    async fn refresh_for_unknown_kid(&self) -> bool {
        false
    }
}

#[async_trait]
impl KeySet for SharedKeyring {
    fn verify_token(
        &self,
        policy: &VerifyPolicy,
        token: &str,
        now_secs: i64,
    ) -> Result<AccessClaims, VerifyError> {
        policy.verify(&*self.read(), token, now_secs)
    }

    fn knows(&self, kid: &str) -> bool {
        self.read().get(kid).is_some()
    }
}

/// The revocation lookup: one round trip to wherever revocations are projected.
#[async_trait]
pub trait RevocationCheck: Send + Sync {
    /// `Err` when the state cannot be reached: the caller must not accept the token then.
    async fn is_revoked(&self, claims: &AccessClaims) -> Result<bool, String>;
}

/// For resource servers that accept revocation only at expiry (signature and claims only).
#[derive(Debug, Clone, Copy)]
pub struct NoRevocation;

#[async_trait]
impl RevocationCheck for NoRevocation {
    async fn is_revoked(&self, _claims: &AccessClaims) -> Result<bool, String> {
        Ok(false)
    }
}

/// Why a token was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("no bearer token")]
    Missing,
    #[error("{0}")]
    Invalid(#[from] VerifyError),
    #[error("the token has been revoked")]
    Revoked,
    /// Revocation state could not be read: fail closed, but as 503, not as the client's fault.
    #[error("revocation state is unavailable")]
    Unavailable,
}

pub struct Verifier {
    keys: Arc<dyn KeySet>,
    revocation: Arc<dyn RevocationCheck>,
    policy: VerifyPolicy,
    clock: Arc<dyn Clock>,
    /// Tokens whose signature was checked before (see [`VerifiedTokens`]).
    verified: VerifiedTokens,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl Verifier {
    pub fn new(
        keys: Arc<dyn KeySet>,
        revocation: Arc<dyn RevocationCheck>,
        policy: VerifyPolicy,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            keys,
            revocation,
            policy,
            clock,
            verified: VerifiedTokens::default(),
        }
    }

    /// Keeps at most `capacity` verified tokens (0: none; default
    /// [`VERIFIED_TOKENS_DEFAULT`](tokend_jwt::VERIFIED_TOKENS_DEFAULT)).
    #[must_use]
    pub fn with_verified_tokens(mut self, capacity: usize) -> Self {
        self.verified = VerifiedTokens::new(capacity);
        self
    }

    pub fn policy(&self) -> &VerifyPolicy {
        &self.policy
    }

    /// Signature and claims only, no revocation lookup (a token verified before and still in
    /// the cache costs a lookup).
    pub fn check_signature(&self, token: &str) -> Result<AccessClaims, VerifyError> {
        let now = self.clock.now_secs();
        self.verified.verify(
            &self.policy,
            token,
            now,
            |kid| self.keys.knows(kid),
            || self.keys.verify_token(&self.policy, token, now),
        )
    }

    /// The whole check; its outcome is counted (`tokend.validations`, by outcome).
    pub async fn verify(&self, token: &str) -> Result<AccessClaims, Rejection> {
        let checked = self.check(token).await;
        count(&checked);
        checked
    }

    async fn check(&self, token: &str) -> Result<AccessClaims, Rejection> {
        self.keys.refresh_if_stale();
        let claims = match self.check_signature(token) {
            Err(VerifyError::UnknownKey) if self.keys.refresh_for_unknown_kid().await => {
                self.check_signature(token)?
            }
            other => other?,
        };
        match self.revocation.is_revoked(&claims).await {
            Ok(false) => Ok(claims),
            Ok(true) => Err(Rejection::Revoked),
            Err(_) => Err(Rejection::Unavailable),
        }
    }
}

/// Counts a validation by outcome (a fixed set of values). The SDK depends on `opentelemetry`
/// alone (not on the services' telemetry crate and its exporters), hence no shared macro.
fn count(checked: &Result<AccessClaims, Rejection>) {
    static VALIDATIONS: std::sync::OnceLock<opentelemetry::metrics::Counter<u64>> =
        std::sync::OnceLock::new();
    let outcome = match checked {
        Ok(_) => "valid",
        Err(Rejection::Revoked) => "revoked",
        Err(Rejection::Unavailable) => "unavailable",
        Err(Rejection::Missing) => "missing",
        Err(Rejection::Invalid(VerifyError::Expired)) => "expired",
        Err(Rejection::Invalid(VerifyError::NotYetValid)) => "not_yet_valid",
        Err(Rejection::Invalid(VerifyError::UnknownKey)) => "unknown_key",
        Err(Rejection::Invalid(VerifyError::Invalid)) => "bad_signature",
        Err(Rejection::Invalid(
            VerifyError::Malformed | VerifyError::Algorithm | VerifyError::Type,
        )) => "malformed",
    };
    VALIDATIONS
        .get_or_init(|| {
            opentelemetry::global::meter("tokend-verify")
                .u64_counter("tokend.validations")
                .with_description("access tokens checked, by outcome")
                .build()
        })
        .add(1, &[opentelemetry::KeyValue::new("outcome", outcome)]);
}
