//! Revocation (RFC 7009). Unknown, expired, foreign and already-revoked tokens all answer
//! success, so the endpoint tells a caller nothing about tokens it does not hold.

use tokend_domain::model::RefreshStatus;
use tokend_events::{FamilyRevokeReason, TokenFamilyRevoked, TokenRevoked};
use tokend_jwt::{AccessClaims, VerifyPolicy};

use crate::secrets::{self, Secret};
use crate::{ClientCredentials, Result, TokenService};

impl TokenService {
    /// `POST /oauth/revoke`. A refresh token revokes its whole grant (RFC 7009 2.1).
    pub async fn revoke(
        &self,
        creds: &ClientCredentials,
        token: &Secret,
        hint: Option<&str>,
    ) -> Result<()> {
        let client = self.authenticate(creds).await?;
        let refresh_first = hint == Some("refresh_token");
        for as_refresh in [refresh_first, !refresh_first] {
            let done = if as_refresh {
                self.revoke_refresh(&client.client_id, token).await?
            } else {
                self.revoke_access(&client.client_id, token.expose())
                    .await?
            };
            if done {
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
        policy
            .verify(&*self.keys.read(), token, self.clock.now_secs())
            .ok()
    }

    /// `true` when `token` was an access token of ours (revoked now or already).
    async fn revoke_access(&self, client_id: &str, token: &str) -> Result<bool> {
        let Some(claims) = self.own_access_token(token) else {
            return Ok(false);
        };
        if claims.client_id != client_id || self.is_revoked(&claims).await? {
            return Ok(true);
        }
        self.append(TokenRevoked {
            jti: claims.jti,
            sub: claims.sub,
            client_id: claims.client_id,
            exp: claims.exp,
        })
        .await?;
        Ok(true)
    }

    /// `true` when `token` was a live refresh token of ours.
    async fn revoke_refresh(&self, client_id: &str, token: &Secret) -> Result<bool> {
        let digest = secrets::refresh_digest(token.expose());
        let now = self.clock.now_secs();
        let record = match self.store.refresh_status(&digest, now).await? {
            RefreshStatus::Valid(r) | RefreshStatus::Used(r) => r,
            RefreshStatus::Revoked | RefreshStatus::Expired => return Ok(true),
            RefreshStatus::Unknown => return Ok(false),
        };
        if record.client_id == client_id {
            self.append(TokenFamilyRevoked {
                family_id: record.family_id,
                sub: record.sub,
                reason: FamilyRevokeReason::RevokedByClient,
            })
            .await?;
        }
        Ok(true)
    }
}
