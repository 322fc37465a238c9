//! Revocation (RFC 7009). Unknown, expired, foreign and already-revoked tokens all answer
//! success, so the endpoint tells a caller nothing about tokens it does not hold. A revocation
//! answers once durable in the log, or (strict mode) once the projection has applied it.

use tokend_domain::LogPosition;
use tokend_domain::model::RefreshStatus;
use tokend_events::{FamilyRevokeReason, TokenFamilyRevoked, TokenRevoked};
use tokend_jwt::{AccessClaims, VerifyPolicy};

use crate::secrets::{self, Secret};
use crate::{ClientCredentials, OAuthError, Result, TokenService};

impl TokenService {
    /// `POST /oauth/revoke`. A refresh token revokes its whole grant (RFC 7009 2.1).
    pub async fn revoke(
        &self,
        creds: &ClientCredentials,
        token: &Secret,
        hint: Option<&str>,
        consistency: Option<Consistency>,
    ) -> Result<()> {
        let client = self.authenticate(creds).await?;
        let refresh_first = hint == Some("refresh_token");
        for as_refresh in [refresh_first, !refresh_first] {
            let outcome = if as_refresh {
                self.revoke_refresh(&client.client_id, token).await?
            } else {
                self.revoke_access(&client.client_id, token.expose())
                    .await?
            };
            if let Found::Yes(position) = outcome {
                if let Some(position) = position {
                    self.await_consistency(position, consistency).await?;
                }
                break;
            }
        }
        Ok(())
    }

    /// Verifies a token this service issued (any audience) at the service's clock.
    pub(crate) fn own_access_token(&self, token: &str) -> Option<AccessClaims> {
        let policy = VerifyPolicy {
            issuer: self.settings.issuer.clone(),
            audiences: Vec::new(),
            leeway_secs: self.settings.leeway_secs,
        };
        let now = self.clock.now_secs();
        self.verified
            .verify(
                &policy,
                token,
                now,
                |kid| self.keys.read().get(kid).is_some(),
                || policy.verify(&*self.keys.read(), token, now),
            )
            .ok()
    }

    async fn revoke_access(&self, client_id: &str, token: &str) -> Result<Found> {
        let Some(claims) = self.own_access_token(token) else {
            return Ok(Found::No);
        };
        if claims.client_id != client_id || self.is_revoked(&claims).await? {
            return Ok(Found::Yes(None));
        }
        let position = self
            .append(TokenRevoked {
                jti: claims.jti,
                sub: claims.sub,
                client_id: claims.client_id,
                exp: claims.exp,
                family_id: claims.sid,
            })
            .await?;
        Ok(Found::Yes(Some(position)))
    }

    async fn revoke_refresh(&self, client_id: &str, token: &Secret) -> Result<Found> {
        let digest = secrets::refresh_digest(token.expose());
        let now = self.clock.now_secs();
        let record = match self.store.refresh_status(&digest, now).await? {
            RefreshStatus::Valid(r) | RefreshStatus::Used(r) => r,
            RefreshStatus::Revoked | RefreshStatus::Expired => return Ok(Found::Yes(None)),
            RefreshStatus::Unknown => return Ok(Found::No),
        };
        if record.client_id != client_id {
            return Ok(Found::Yes(None));
        }
        let position = self
            .append(TokenFamilyRevoked {
                family_id: record.family_id,
                sub: record.sub,
                reason: FamilyRevokeReason::RevokedByClient,
                until: 0,
            })
            .await?;
        Ok(Found::Yes(Some(position)))
    }

    /// With [`Consistency::Applied`], returns only once the projection has applied the record
    /// at `position`, so no validator can accept the token afterwards; waits at most
    /// `Settings::applied_timeout`, then answers `Unavailable` (the revocation itself is
    /// durable and will apply).
    pub(crate) async fn await_consistency(
        &self,
        position: LogPosition,
        consistency: Option<Consistency>,
    ) -> Result<()> {
        if consistency.unwrap_or(self.settings.revocation_consistency) == Consistency::Durable {
            return Ok(());
        }
        let wait = async {
            poll(|| async {
                Ok(self.store.next_offset(position.partition).await? > position.offset)
            })
            .await?;
            // Applied in Redis; now every node's revocation mirror must have read it too.
            let barrier = self.store.reader_barrier().await?;
            poll(|| self.store.readers_passed(barrier)).await
        };
        match tokio::time::timeout(self.settings.applied_timeout, wait).await {
            Ok(result) => result,
            Err(_) => {
                tracing::warn!(
                    partition = position.partition,
                    offset = position.offset,
                    "Revocation is durable but the projection has not applied it in time."
                );
                Err(OAuthError::Unavailable)
            }
        }
    }
}

/// Asks `done` until it says yes, pausing 1 ms, then twice as long each time up to 20 ms.
async fn poll<F, Fut>(done: F) -> Result<()>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = std::result::Result<bool, tokend_domain::StoreError>>,
{
    let mut pause = std::time::Duration::from_millis(1);
    while !done().await? {
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(std::time::Duration::from_millis(20));
    }
    Ok(())
}

/// Whether a token was ours, and where its revocation landed in the log (if one was needed).
enum Found {
    No,
    Yes(Option<LogPosition>),
}

/// When a revocation answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Consistency {
    /// Once the event is durable in the log (default).
    #[default]
    Durable,
    /// Once the projection has applied it: no validator accepts the token afterwards.
    Applied,
}

impl Consistency {
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "durable" => Some(Self::Durable),
            "applied" => Some(Self::Applied),
            _ => None,
        }
    }
}
