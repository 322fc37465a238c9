//! Introspection (RFC 7662): `active: false` for anything not currently valid, the claims
//! otherwise. Access tokens are checked like any validator checks them; refresh tokens by
//! their digest.

use serde::Serialize;
use tokend_domain::model::RefreshStatus;

use crate::secrets::{self, Secret};
use crate::{ClientCredentials, Result, TokenService};

/// RFC 7662 2.2. Everything but `active` is omitted for an inactive token.
#[derive(Debug, Default, Serialize, PartialEq, Eq)]
pub struct Introspection {
    pub active: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aud: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
}

impl TokenService {
    /// `POST /oauth/introspect`; the caller must be an authenticated client.
    pub async fn introspect(
        &self,
        creds: &ClientCredentials,
        token: &Secret,
    ) -> Result<Introspection> {
        // Resource servers introspect; a public client (whose id anyone knows) may not.
        if self.authenticate(creds).await?.is_public() {
            return Err(crate::OAuthError::InvalidClient {
                basic: creds.via_basic,
            });
        }
        if let Some(claims) = self.own_access_token(token.expose()) {
            if self.is_revoked(&claims).await? {
                return Ok(Introspection::default());
            }
            let username = (claims.sub != claims.client_id).then(|| claims.sub.clone());
            return Ok(Introspection {
                active: true,
                scope: Some(claims.scope),
                client_id: Some(claims.client_id),
                username,
                token_type: Some("Bearer"),
                exp: Some(claims.exp),
                iat: Some(claims.iat),
                nbf: claims.nbf,
                sub: Some(claims.sub),
                aud: Some(claims.aud),
                iss: Some(claims.iss),
                jti: Some(claims.jti),
            });
        }
        let digest = secrets::refresh_digest(token.expose());
        match self
            .store
            .refresh_status(&digest, self.clock.now_secs())
            .await?
        {
            RefreshStatus::Valid(r) => Ok(Introspection {
                active: true,
                scope: Some(r.scope),
                username: (r.sub != r.client_id).then(|| r.sub.clone()),
                client_id: Some(r.client_id),
                token_type: Some("refresh_token"),
                exp: Some(r.exp),
                iat: Some(r.iat),
                sub: Some(r.sub),
                aud: Some(r.aud),
                iss: Some(self.settings.issuer.clone()),
                ..Introspection::default()
            }),
            _ => Ok(Introspection::default()),
        }
    }
}
