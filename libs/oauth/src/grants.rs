//! The token endpoint's grants (RFC 6749 section 4 and 6): client credentials, refresh with
//! rotation and reuse detection (RFC 9700), resource-owner password, and the authorization
//! code grant with PKCE (RFC 7636), the one grant public clients may use.

use serde::Serialize;
use tokend_domain::model::{Client, CodeStatus, RefreshStatus};
use tokend_events::{FamilyRevokeReason, TokenFamilyRevoked};

use crate::browser::{pkce_s256_matches, valid_verifier};
use crate::secrets::{self, Secret};
use crate::service::Issue;
use crate::{ClientCredentials, OAuthError, Result, TokenService, scope};

#[derive(Debug, Clone)]
pub enum Grant {
    ClientCredentials,
    RefreshToken {
        refresh_token: Secret,
    },
    Password {
        username: String,
        password: Secret,
    },
    AuthorizationCode {
        code: Secret,
        redirect_uri: Option<String>,
        code_verifier: Option<Secret>,
    },
}

impl Grant {
    /// The `grant_type` (RFC 6749).
    pub fn name(&self) -> &'static str {
        match self {
            Grant::ClientCredentials => "client_credentials",
            Grant::RefreshToken { .. } => "refresh_token",
            Grant::Password { .. } => "password",
            Grant::AuthorizationCode { .. } => "authorization_code",
        }
    }
}

#[derive(Debug, Clone)]
pub struct TokenRequest {
    pub grant: Grant,
    pub scope: Option<String>,
    /// Space-separated audiences, within the client's (all of them by default).
    pub audience: Option<String>,
}

/// RFC 6749 5.1.
#[derive(Serialize)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    pub scope: String,
}

impl std::fmt::Debug for TokenResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenResponse")
            .field("expires_in", &self.expires_in)
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

impl TokenService {
    /// `POST /oauth/token`.
    pub async fn token(
        &self,
        creds: &ClientCredentials,
        request: TokenRequest,
    ) -> Result<TokenResponse> {
        if matches!(request.grant, Grant::Password { .. }) && !self.settings.password_grant {
            return Err(OAuthError::UnsupportedGrantType);
        }
        let client = self.authenticate(creds).await?;
        if !client.allows_grant(request.grant.name()) {
            return Err(OAuthError::UnauthorizedClient(format!(
                "this client may not use the {} grant",
                request.grant.name()
            )));
        }
        if client.is_public()
            && !matches!(
                request.grant,
                Grant::AuthorizationCode { .. } | Grant::RefreshToken { .. }
            )
        {
            return Err(OAuthError::UnauthorizedClient(
                "public clients may only use the authorization code and refresh token grants"
                    .into(),
            ));
        }
        let client_audience = || {
            scope::resolve(
                request.audience.as_deref(),
                &client.audiences,
                &client.audiences,
                "audience",
            )
        };
        match request.grant {
            Grant::ClientCredentials => {
                let scope = scope::resolve(
                    request.scope.as_deref(),
                    &client.scopes,
                    &client.default_scopes,
                    "scope",
                )?;
                self.issue(Issue {
                    sub: client.client_id.clone(),
                    client: &client,
                    scope: scope.join(" "),
                    aud: client_audience()?,
                    family_id: secrets::random_id(),
                    auth_time_ms: self.clock.now_ms(),
                    rotated_from: None,
                    from_code: None,
                    retry: false,
                    with_refresh: false,
                    own: true,
                })
                .await
            }
            Grant::Password { username, password } => {
                let aud = client_audience()?;
                self.password(&client, &username, &password, request.scope.as_deref(), aud)
                    .await
            }
            Grant::AuthorizationCode {
                code,
                redirect_uri,
                code_verifier,
            } => {
                self.redeem_code(
                    &client,
                    &code,
                    redirect_uri.as_deref(),
                    code_verifier.as_ref(),
                )
                .await
            }
            Grant::RefreshToken { refresh_token } => {
                let (scope, audience) = (request.scope.as_deref(), request.audience.as_deref());
                self.refresh(&client, &refresh_token, scope, audience).await
            }
        }
    }

    /// `POST /login`: the password grant on behalf of the configured login client.
    pub async fn login(&self, username: &str, password: &Secret) -> Result<TokenResponse> {
        let disabled = || OAuthError::InvalidRequest("/login is not enabled".into());
        if !self.settings.password_grant {
            return Err(disabled());
        }
        let client_id = self
            .settings
            .login_client_id
            .as_deref()
            .ok_or_else(disabled)?;
        let client = self
            .store
            .client(client_id)
            .await?
            .filter(|c| !c.disabled)
            .ok_or_else(disabled)?;
        if !client.allows_grant("password") {
            return Err(OAuthError::UnauthorizedClient(format!(
                "/login issues tokens for the client {client_id}, which may not use the password grant"
            )));
        }
        let aud = client.audiences.clone();
        self.password(&client, username, password, None, aud).await
    }

    async fn password(
        &self,
        client: &Client,
        username: &str,
        password: &Secret,
        requested_scope: Option<&str>,
        aud: Vec<String>,
    ) -> Result<TokenResponse> {
        let scope = scope::resolve(
            requested_scope,
            &client.scopes,
            &client.default_scopes,
            "scope",
        )?;
        self.check_user(username, password).await?;
        self.issue(Issue {
            client,
            sub: username.to_owned(),
            scope: scope.join(" "),
            aud,
            family_id: secrets::random_id(),
            auth_time_ms: self.clock.now_ms(),
            rotated_from: None,
            from_code: None,
            retry: false,
            with_refresh: client.allows_grant("refresh_token"),
            own: false,
        })
        .await
    }

    /// RFC 6749 4.1.3 with RFC 7636 4.6: a valid, unredeemed code of this client, the same
    /// redirect URI, and a verifier matching the challenge. A second redemption revokes every
    /// token the first one produced.
    async fn redeem_code(
        &self,
        client: &Client,
        code: &Secret,
        redirect_uri: Option<&str>,
        verifier: Option<&Secret>,
    ) -> Result<TokenResponse> {
        let digest = secrets::refresh_digest(code.expose());
        let invalid = |why: &str| OAuthError::InvalidGrant(why.to_owned());
        let verifier = verifier.ok_or_else(|| {
            OAuthError::InvalidRequest("missing parameter 'code_verifier'".into())
        })?;
        if !valid_verifier(verifier.expose()) {
            return Err(OAuthError::InvalidRequest(
                "code_verifier is malformed".into(),
            ));
        }
        let record = match self
            .store
            .code_status(&digest, self.clock.now_secs())
            .await?
        {
            CodeStatus::Valid(c) if c.client_id == client.client_id => c,
            CodeStatus::Redeemed(c) if c.client_id == client.client_id => {
                let reason = FamilyRevokeReason::AuthorizationCodeReplay;
                self.revoke_replayed(c.family_id, c.sub, reason).await?;
                return Err(invalid("the authorization code was already used"));
            }
            CodeStatus::Expired => return Err(invalid("the authorization code has expired")),
            _ => return Err(invalid("the authorization code is invalid")),
        };
        if !record.redirect_uri_matches(redirect_uri) {
            return Err(invalid(
                "redirect_uri does not match the authorization request",
            ));
        }
        if !pkce_s256_matches(verifier.expose(), &record.code_challenge) {
            return Err(invalid("code_verifier does not match the code challenge"));
        }
        self.issue(Issue {
            client,
            sub: record.sub,
            scope: record.scope,
            aud: record.aud,
            family_id: record.family_id,
            auth_time_ms: record.auth_time_ms,
            rotated_from: None,
            from_code: Some(digest),
            retry: false,
            with_refresh: client.allows_grant("refresh_token"),
            own: false,
        })
        .await
    }

    /// A refresh token or code presented twice: revoke every token of its grant (RFC 9700,
    /// RFC 6749 4.1.2).
    async fn revoke_replayed(
        &self,
        family_id: String,
        sub: String,
        reason: FamilyRevokeReason,
    ) -> Result<()> {
        tracing::warn!(%family_id, ?reason, "Replayed grant; revoking its token family.");
        self.append(TokenFamilyRevoked {
            family_id,
            sub,
            reason,
            until: 0,
        })
        .await?;
        Ok(())
    }

    async fn refresh(
        &self,
        client: &Client,
        refresh_token: &Secret,
        requested_scope: Option<&str>,
        requested_audience: Option<&str>,
    ) -> Result<TokenResponse> {
        let digest = secrets::refresh_digest(refresh_token.expose());
        let invalid = || OAuthError::InvalidGrant("the refresh token is invalid".into());
        let now = self.clock.now_secs();
        let (record, retry) = match self.store.refresh_status(&digest, now).await? {
            RefreshStatus::Valid(r) if r.client_id == client.client_id => (r, false),
            // Presented again soon after its rotation: a client retrying an answer it never
            // got (a 503 after the log had taken the rotation). Rotate it again. Not for a
            // public client: with no secret, a retry cannot be told from a thief's replay.
            RefreshStatus::Used(r)
                if r.client_id == client.client_id
                    && !client.is_public()
                    && now - r.used_at < self.settings.refresh_reuse_grace_secs =>
            {
                (r, true)
            }
            RefreshStatus::Used(r) if r.client_id == client.client_id => {
                let reason = FamilyRevokeReason::RefreshTokenReuse;
                self.revoke_replayed(r.family_id, r.sub, reason).await?;
                return Err(OAuthError::InvalidGrant(
                    "the refresh token was already used; the grant has been revoked".into(),
                ));
            }
            RefreshStatus::Expired => {
                return Err(OAuthError::InvalidGrant(
                    "the refresh token has expired".into(),
                ));
            }
            _ => return Err(invalid()),
        };
        let granted: Vec<String> = record.scope.split(' ').map(str::to_owned).collect();
        let scope = scope::resolve(requested_scope, &granted, &granted, "scope")?;
        let aud = scope::resolve(requested_audience, &record.aud, &record.aud, "audience")?;
        self.issue(Issue {
            client,
            sub: record.sub,
            scope: scope.join(" "),
            aud,
            family_id: record.family_id,
            auth_time_ms: record.auth_time_ms,
            rotated_from: Some(digest),
            from_code: None,
            retry,
            with_refresh: true,
            own: false,
        })
        .await
    }
}
