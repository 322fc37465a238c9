//! The seed tutorials' endpoints: `POST /login` (JSON user name and password) and the sample
//! protected resource `GET /api/data`.

use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use tokend_oauth::OAuthError;
use tokend_oauth::secrets::Secret;
use tokend_verify::Bearer;

use super::AppState;
use super::error::ApiError;
use super::extract::{JsonBody, Peer};

#[derive(Deserialize)]
pub struct Login {
    username: String,
    password: String,
}

pub async fn login(
    State(s): State<AppState>,
    Peer(peer): Peer,
    JsonBody(body): JsonBody<Login>,
) -> Result<Json<tokend_oauth::TokenResponse>, ApiError> {
    s.limits.password(peer, &body.username)?;
    let password = Secret::new(body.password);
    match s.svc.login(&body.username, &password).await {
        Ok(tokens) => Ok(Json(tokens)),
        // The tutorials (and every client written against them) expect 401 here.
        Err(OAuthError::InvalidGrant(_)) => Err(ApiError::LoginFailed),
        Err(e) => Err(e.into()),
    }
}

pub async fn api_data(Bearer(claims): Bearer) -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "data": "This is protected data.",
        "sub": claims.sub,
        "scope": claims.scope,
    }))
}
