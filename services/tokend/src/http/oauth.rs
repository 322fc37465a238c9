//! `/oauth/token`, `/oauth/revoke`, `/oauth/introspect`: extract, call the service, map.

use axum::Json;
use axum::extract::State;
use axum::response::IntoResponse;
use tokend_oauth::secrets::Secret;
use tokend_oauth::{Consistency, Grant, OAuthError, TokenRequest};

use super::AppState;
use super::error::{ApiError, bad_request};
use super::extract::{OAuthForm, OAuthRequest};

fn grant(form: &OAuthForm) -> Result<Grant, ApiError> {
    match form.require("grant_type")? {
        "client_credentials" => Ok(Grant::ClientCredentials),
        "refresh_token" => Ok(Grant::RefreshToken {
            refresh_token: form.secret("refresh_token")?,
        }),
        "password" => Ok(Grant::Password {
            username: form.require("username")?.to_owned(),
            password: form.secret("password")?,
        }),
        "authorization_code" => Ok(Grant::AuthorizationCode {
            code: form.secret("code")?,
            redirect_uri: form.get("redirect_uri").map(str::to_owned),
            code_verifier: form.get("code_verifier").map(Secret::new),
        }),
        _ => Err(OAuthError::UnsupportedGrantType.into()),
    }
}

pub async fn token(
    State(s): State<AppState>,
    req: OAuthRequest,
) -> Result<impl IntoResponse, ApiError> {
    let creds = req.client()?;
    s.limits.client(&creds.client_id)?;
    let grant = grant(&req.form)?;
    if let Grant::Password { username, .. } = &grant {
        s.limits.password(req.peer, username)?;
    }
    let kind = grant.name();
    let request = TokenRequest {
        grant,
        scope: req.form.get("scope").map(str::to_owned),
        audience: req.form.get("audience").map(str::to_owned),
    };
    let issued = s.svc.token(&creds, request).await?;
    crate::metrics::token_issued(kind);
    Ok(Json(issued))
}

pub async fn revoke(
    State(s): State<AppState>,
    req: OAuthRequest,
) -> Result<impl IntoResponse, ApiError> {
    let creds = req.client()?;
    s.limits.client(&creds.client_id)?;
    let token = req.form.secret("token")?;
    let consistency = match req.form.get("consistency") {
        None => None,
        Some(c) => Some(
            Consistency::parse(c)
                .ok_or_else(|| bad_request("consistency must be 'durable' or 'applied'"))?,
        ),
    };
    let hint = req.form.get("token_type_hint");
    s.svc.revoke(&creds, &token, hint, consistency).await?;
    crate::metrics::revocation("token");
    Ok(Json(serde_json::json!({})))
}

pub async fn introspect(
    State(s): State<AppState>,
    req: OAuthRequest,
) -> Result<impl IntoResponse, ApiError> {
    let creds = req.client()?;
    s.limits.client(&creds.client_id)?;
    let token = req
        .form
        .secret("token")
        .map_err(|_| bad_request("missing parameter 'token'"))?;
    Ok(Json(s.svc.introspect(&creds, &token).await?))
}
