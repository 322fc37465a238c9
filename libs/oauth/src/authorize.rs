//! The authorization endpoint's logic (RFC 6749 4.1, RFC 7636): validating a request, checking
//! the user, and issuing a single-use code bound to client, redirect URI and PKCE challenge.

use std::collections::HashMap;

use tokend_domain::model::{Client, RevocationQuery};
use tokend_events::{AuthorizationCodeIssued, FamilyRevokeReason, TokenFamilyRevoked};

use crate::browser::{Session, valid_challenge};
use crate::secrets::{self, Secret};
use crate::{Consistency, OAuthError, Result, TokenService, scope};

/// A validated authorization request.
#[derive(Debug, Clone)]
pub struct AuthorizeRequest {
    pub client: Client,
    pub redirect_uri: String,
    /// The request named no redirect URI: the client's only registered one is used.
    pub redirect_uri_implied: bool,
    pub scope: Vec<String>,
    pub state: String,
    pub code_challenge: String,
}

/// How an invalid request is answered (RFC 6749 4.1.2.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthorizeError {
    /// The client or redirect URI cannot be trusted: show an error page, never redirect.
    Page(String),
    /// Send the user agent back to the client with `error` (and `state` when known).
    Redirect {
        redirect_uri: String,
        error: &'static str,
        description: String,
        state: Option<String>,
    },
    Unavailable,
}

impl From<OAuthError> for AuthorizeError {
    fn from(e: OAuthError) -> Self {
        match e {
            OAuthError::Unavailable => Self::Unavailable,
            other => Self::Page(other.to_string()),
        }
    }
}

impl TokenService {
    /// Validates the query parameters of `GET /oauth/authorize`.
    pub async fn validate_authorize(
        &self,
        params: &HashMap<String, String>,
    ) -> std::result::Result<AuthorizeRequest, AuthorizeError> {
        let get = |k: &str| params.get(k).map(String::as_str).filter(|v| !v.is_empty());
        let client_id = get("client_id")
            .ok_or_else(|| AuthorizeError::Page("The request names no client.".into()))?;
        let client = self
            .store
            .client(client_id)
            .await
            .map_err(OAuthError::from)?
            .filter(|c| !c.disabled)
            .ok_or_else(|| AuthorizeError::Page("The application is not known here.".into()))?;
        let redirect_uri = match (get("redirect_uri"), client.redirect_uris.as_slice()) {
            (Some(uri), registered) if registered.iter().any(|r| r == uri) => uri.to_owned(),
            (None, [only]) => only.clone(),
            _ => {
                return Err(AuthorizeError::Page(
                    "The redirect URI is not registered for this application.".into(),
                ));
            }
        };
        let state = get("state").map(str::to_owned);
        let fail = |error: &'static str, description: &str| AuthorizeError::Redirect {
            redirect_uri: redirect_uri.clone(),
            error,
            description: description.to_owned(),
            state: state.clone(),
        };
        if get("response_type") != Some("code") {
            return Err(fail(
                "unsupported_response_type",
                "response_type must be code",
            ));
        }
        if !client.allows_grant("authorization_code") {
            return Err(fail(
                "unauthorized_client",
                "this client may not use the code flow",
            ));
        }
        let Some(state_value) = state.clone() else {
            return Err(fail("invalid_request", "state is required"));
        };
        let challenge = get("code_challenge")
            .ok_or_else(|| fail("invalid_request", "PKCE is required: send code_challenge"))?;
        if get("code_challenge_method") != Some("S256") {
            return Err(fail(
                "invalid_request",
                "code_challenge_method must be S256",
            ));
        }
        if !valid_challenge(challenge) {
            return Err(fail("invalid_request", "code_challenge is malformed"));
        }
        let scope = scope::resolve(
            get("scope"),
            &client.scopes,
            &client.default_scopes,
            "scope",
        )
        .map_err(|e| fail("invalid_scope", &e.to_string()))?;
        Ok(AuthorizeRequest {
            redirect_uri_implied: get("redirect_uri").is_none(),
            redirect_uri,
            scope,
            state: state_value,
            code_challenge: challenge.to_owned(),
            client,
        })
    }

    /// Checks a user's password (argon2id, off the async threads).
    pub async fn check_user(&self, username: &str, password: &Secret) -> Result<()> {
        let user = self.store.user(username).await?.filter(|u| !u.disabled);
        let hash = user.map(|u| u.password_hash);
        let password = password.clone();
        let ok = self
            .password_work(move || secrets::verify_password(password.expose(), hash.as_deref()))
            .await?;
        if ok {
            Ok(())
        } else {
            Err(OAuthError::InvalidGrant(
                "invalid username or password".into(),
            ))
        }
    }

    /// Whether a browser session still holds: its user exists and is enabled, it was not
    /// ended by logout, and no "log out everywhere" came after the sign-in. Any node answers
    /// the same (the projection decides, like for tokens).
    pub async fn session_active(&self, session: &Session) -> Result<bool> {
        let enabled = self
            .store
            .user(&session.user)
            .await?
            .is_some_and(|u| !u.disabled);
        if !enabled {
            return Ok(false);
        }
        let query = RevocationQuery {
            jti: String::new(), // a session has no token id
            family_id: session.sid.clone(),
            sub: Some(session.user.clone()),
            client_id: String::new(), // nor a client
            auth_time_ms: session.auth_time_ms,
            kid: String::new(), // nor a signing key
        };
        Ok(!self.store.is_revoked(&query).await?)
    }

    /// Ends a browser session everywhere: its family is revoked through the log. Answers
    /// under the revocation consistency, like the other revocations.
    pub async fn logout(&self, session: &Session) -> Result<()> {
        let position = self
            .append(TokenFamilyRevoked {
                family_id: session.sid.clone(),
                sub: session.user.clone(),
                reason: FamilyRevokeReason::Logout,
                until: session.exp,
            })
            .await?;
        self.await_consistency(position, None).await
    }

    /// The user approved: issue a code (returned once; only its digest is stored).
    pub async fn issue_code(&self, req: &AuthorizeRequest, sub: &str) -> Result<String> {
        let code = secrets::random_token();
        let position = self
            .append(AuthorizationCodeIssued {
                code_digest: secrets::refresh_digest(&code),
                client_id: req.client.client_id.clone(),
                sub: sub.to_owned(),
                redirect_uri: req.redirect_uri.clone(),
                scope: req.scope.join(" "),
                aud: req.client.audiences.clone(),
                code_challenge: req.code_challenge.clone(),
                exp: self.clock.now_secs() + self.settings.code_ttl_secs,
                family_id: secrets::random_id(),
                auth_time_ms: self.clock.now_ms(),
                redirect_uri_implied: req.redirect_uri_implied,
            })
            .await?;
        // The client may redeem the code on any node at once.
        let _ = self
            .await_consistency(position, Some(Consistency::Applied))
            .await;
        Ok(code)
    }
}
