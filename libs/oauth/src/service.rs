//! The service object, its settings, and the two steps every change shares: append an event,
//! and issue a token.

use std::sync::Arc;

use tokend_domain::model::{Client, CodeStatus, RefreshStatus, RevocationQuery};
use tokend_domain::{Clock, EventLog, LogPosition, StateStore};
use tokend_events::{Envelope, Event, RefreshIssued, TokenIssued};
use tokend_jwt::{AccessClaims, CLIENT_CREDENTIALS, SharedKeyring};
use tokend_verify::revocation_query;

use crate::grants::TokenResponse;
use crate::secrets::{self, SecretHasher};
use crate::{Consistency, OAuthError, Result};

/// What the operator configures about tokens.
#[derive(Debug, Clone)]
pub struct Settings {
    pub issuer: String,
    pub access_ttl_secs: i64,
    pub refresh_ttl_secs: i64,
    /// The resource-owner password grant (and `/login`) is off unless turned on.
    pub password_grant: bool,
    pub leeway_secs: i64,
    /// The client `/login` issues tokens for.
    pub login_client_id: Option<String>,
    /// When revocations answer, unless a request says otherwise.
    pub revocation_consistency: crate::Consistency,
    /// How long a strict revocation waits for the projection.
    pub applied_timeout: std::time::Duration,
    /// Lifetime of an authorization code.
    pub code_ttl_secs: i64,
    /// Seconds after a refresh token's rotation within which presenting it again is a retry
    /// (rotated again) or a lost race, not theft; 0: every second use revokes the grant.
    pub refresh_reuse_grace_secs: i64,
    /// Password checks (argon2id, 19 MiB each) that run at once, and how many more may wait;
    /// past that a password request gets 503 with `Retry-After` rather than a queue without
    /// end that eats memory and starves token issuance.
    pub password_checks: usize,
    pub password_check_queue: usize,
    /// Access tokens kept verified for introspection and revocation (0: none).
    pub verified_tokens: usize,
}

pub struct TokenService {
    pub(crate) log: Arc<dyn EventLog>,
    pub(crate) store: Arc<dyn StateStore>,
    pub(crate) keys: Arc<SharedKeyring>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) hasher: SecretHasher,
    pub(crate) settings: Settings,
    /// This issuer's access tokens verified before (introspection, revocation).
    pub(crate) verified: tokend_jwt::VerifiedTokens,
    /// Admission (running + waiting) and running slots for argon2 work.
    password_admission: Arc<tokio::sync::Semaphore>,
    password_running: Arc<tokio::sync::Semaphore>,
}

impl std::fmt::Debug for TokenService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenService")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// What one issue puts into a token.
pub(crate) struct Issue<'a> {
    pub client: &'a Client,
    pub sub: String,
    pub scope: String,
    pub aud: Vec<String>,
    pub family_id: String,
    /// When the grant began (ms): now for a new grant, the family's for a refresh or a code.
    pub auth_time_ms: i64,
    pub rotated_from: Option<String>,
    pub from_code: Option<String>,
    /// A retry of a rotation whose answer the client never received (see `TokenIssued`).
    pub retry: bool,
    pub with_refresh: bool,
    /// The client's own token (client credentials: `sub` is the client, there is no user).
    pub own: bool,
}

impl TokenService {
    pub fn new(
        log: Arc<dyn EventLog>,
        store: Arc<dyn StateStore>,
        keys: Arc<SharedKeyring>,
        clock: Arc<dyn Clock>,
        hasher: SecretHasher,
        settings: Settings,
    ) -> Self {
        let running = settings.password_checks.max(1);
        let verified = tokend_jwt::VerifiedTokens::new(settings.verified_tokens);
        Self {
            password_admission: Arc::new(tokio::sync::Semaphore::new(
                running + settings.password_check_queue,
            )),
            password_running: Arc::new(tokio::sync::Semaphore::new(running)),
            log,
            store,
            keys,
            clock,
            hasher,
            settings,
            verified,
        }
    }

    /// Runs argon2 work off the async threads, within the bounds: `Unavailable` (503) when
    /// as many checks as allowed are already running or waiting.
    pub(crate) async fn password_work<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T> {
        let Ok(_admitted) = self.password_admission.clone().try_acquire_owned() else {
            tracing::warn!("Too many password checks at once; answering 503.");
            return Err(OAuthError::Unavailable);
        };
        let _running = self
            .password_running
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| OAuthError::Internal)?;
        tokio::task::spawn_blocking(work)
            .await
            .map_err(|_| OAuthError::Internal)
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Appends one event; returns once the log has it durably.
    pub(crate) async fn append(&self, event: impl Into<Event>) -> Result<LogPosition> {
        let event = event.into();
        let envelope = Envelope::new(&event, uuid::Uuid::new_v4(), self.clock.now_ms());
        Ok(self.log.append(&envelope, event.partition_key()).await?)
    }

    /// Signs an access token (and makes a refresh token), appends `TokenIssued`, and only then
    /// hands the tokens out.
    pub(crate) async fn issue(&self, issue: Issue<'_>) -> Result<TokenResponse> {
        let now = self.clock.now_secs();
        let claims = AccessClaims {
            iss: self.settings.issuer.clone(),
            sub: issue.sub,
            aud: issue.aud,
            client_id: issue.client.client_id.clone(),
            scope: issue.scope,
            jti: secrets::random_id(),
            sid: issue.family_id,
            auth_time_ms: issue.auth_time_ms,
            iat: now,
            exp: now + self.settings.access_ttl_secs,
            nbf: None,
            gty: issue.own.then(|| CLIENT_CREDENTIALS.to_owned()),
            kid: String::new(), // the header carries it
        };
        let access_token = self.keys.read().sign(&claims).map_err(|e| {
            tracing::error!(error = %e, "Cannot sign an access token.");
            OAuthError::Unavailable
        })?;
        let refresh_token = issue.with_refresh.then(secrets::random_token);
        let refresh = refresh_token.as_ref().map(|t| RefreshIssued {
            digest: secrets::refresh_digest(t),
            exp: now + self.settings.refresh_ttl_secs,
        });
        let query = revocation_query(&claims);
        let AccessClaims {
            sub,
            aud,
            client_id,
            scope,
            jti,
            sid,
            auth_time_ms,
            iat,
            exp,
            ..
        } = claims;
        let contested = issue.rotated_from.is_some() || issue.from_code.is_some();
        let from_code = issue.from_code.clone();
        let refresh_digest = refresh.as_ref().map(|r| r.digest.clone());
        let position = self
            .append(TokenIssued {
                jti,
                sub,
                client_id,
                scope: scope.clone(),
                aud,
                iat,
                exp,
                family_id: sid,
                auth_time_ms,
                refresh,
                rotated_from: issue.rotated_from,
                from_code: issue.from_code,
                reuse_grace_secs: self.settings.refresh_reuse_grace_secs,
                retry: issue.retry,
            })
            .await?;
        if contested {
            // The log decides between concurrent uses of one refresh token or code: answer
            // only once the projection has judged this issue, and hand out only a winner.
            self.await_consistency(position, Some(Consistency::Applied))
                .await?;
            if !self
                .won(&query, refresh_digest.as_deref(), from_code.as_deref())
                .await?
            {
                return Err(OAuthError::InvalidGrant(
                    "the grant was already used".into(),
                ));
            }
        } else if refresh_token.is_some() {
            // Read-your-writes for refresh tokens: the client may redeem it on any node at
            // once. On timeout the tokens are still good (the log has them): hand them out.
            let _ = self
                .await_consistency(position, Some(Consistency::Applied))
                .await;
        }
        Ok(TokenResponse {
            access_token,
            token_type: "Bearer",
            expires_in: self.settings.access_ttl_secs,
            refresh_token,
            scope,
        })
    }

    /// Whether a contested issue (a rotation, a code redemption) won, once applied: its
    /// refresh token is valid, or (no refresh token) the code names it as its redeemer and
    /// its grant is not revoked.
    async fn won(
        &self,
        query: &RevocationQuery,
        refresh_digest: Option<&str>,
        from_code: Option<&str>,
    ) -> Result<bool> {
        let now = self.clock.now_secs();
        if let Some(digest) = refresh_digest {
            let status = self.store.refresh_status(digest, now).await?;
            return Ok(matches!(status, RefreshStatus::Valid(_)));
        }
        let Some(code) = from_code else {
            return Ok(true);
        };
        Ok(match self.store.code_status(code, now).await? {
            CodeStatus::Redeemed(c) if c.redeemed_by.as_deref() == Some(query.jti.as_str()) => {
                !self.store.is_revoked(query).await?
            }
            _ => false,
        })
    }

    /// The revocation lookup for a verified token's claims.
    pub async fn is_revoked(&self, claims: &AccessClaims) -> Result<bool> {
        Ok(self.store.is_revoked(&revocation_query(claims)).await?)
    }

    /// Readiness: a signing key is loaded, the log and the store answer.
    pub async fn ready(&self) -> std::result::Result<(), String> {
        if self.keys.read().active().is_none() {
            return Err("no active signing key".into());
        }
        self.log.ping().await.map_err(|e| e.to_string())?;
        self.store.ping().await.map_err(|e| e.to_string())
    }
}
