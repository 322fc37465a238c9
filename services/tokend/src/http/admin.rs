//! The admin API, behind the admin bearer token: clients, users, and mass revocation.

use axum::extract::{FromRequestParts, Path, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use subtle::ConstantTimeEq;
use tokend_oauth::{NewClient, NewUser, OAuthError};

use super::AppState;
use super::error::ApiError;
use super::extract::JsonBody;
use crate::keys::ResealError;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/clients", get(list_clients).post(register_client))
        .route("/clients/{client_id}/disable", post(disable_client))
        .route(
            "/clients/{client_id}/revoke-tokens",
            post(revoke_client_tokens),
        )
        .route("/users", post(create_user))
        .route("/users/{username}/disable", post(disable_user))
        .route("/subjects/{sub}/revoke", post(revoke_subject))
        .route("/keys", get(list_keys))
        .route("/keys/rotate", post(rotate_keys))
        .route("/keys/{kid}/revoke", post(revoke_key))
        .route("/kek/rotate", post(rotate_kek))
}

/// The adopted keys, the KEK the key log is sealed under, and this node's KEK (ids only).
async fn list_keys(_: Admin, State(s): State<AppState>) -> Json<serde_json::Value> {
    let (log_kek, node_kek) = s.keys.manager.kek_ids();
    Json(serde_json::json!({
        "keys": s.keys.manager.list(),
        "kek": log_kek,
        "node_kek": node_kek,
    }))
}

/// Rotates ahead of the schedule, safely: the next key is published at once and signs a
/// publication lead later, so no verifier meets a `kid` it cannot know.
async fn rotate_keys(
    _: Admin,
    State(s): State<AppState>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let (kid, signs_from) = s.keys.rotate_early().await.map_err(|error| {
        tracing::warn!(error = %format!("{error:#}"), "Early rotation not written.");
        OAuthError::Unavailable
    })?;
    Ok(Json(
        serde_json::json!({ "next_kid": kid, "signs_from": signs_from }),
    ))
}

/// KEK rotation: re-seals the secrets root and the keys in use under this node's KEK (give
/// every node the new KEK as `keys.kek_file` and the old one as `keys.previous_kek_file`
/// first). Repeating it is harmless.
async fn rotate_kek(
    _: Admin,
    State(s): State<AppState>,
) -> Result<Json<serde_json::Value>, ApiError> {
    match s.keys.reseal().await {
        Ok((kek, keys)) => Ok(Json(
            serde_json::json!({ "kek": kek, "resealed_keys": keys }),
        )),
        Err(ResealError::Refused(why)) => Err(OAuthError::Conflict(why).into()),
        Err(error) => {
            tracing::warn!(%error, "KEK rotation not written.");
            Err(OAuthError::Unavailable.into())
        }
    }
}

/// Emergency: every token the key signed is revoked through the event log (so every node
/// and every SDK verifier rejects them, under the revocation consistency), then the key
/// leaves the key set on every node through the key log. Repeating it is harmless (204).
async fn revoke_key(
    _: Admin,
    State(s): State<AppState>,
    Path(kid): Path<String>,
) -> Result<StatusCode, ApiError> {
    if s.keys.manager.is_revoked(&kid) {
        return Ok(StatusCode::NO_CONTENT);
    }
    if !s.keys.manager.knows(&kid) {
        return Err(OAuthError::NotFound(format!("no signing key '{kid}'")).into());
    }
    s.svc.revoke_signing_key(&kid).await?;
    s.keys.revoke(&kid).await.map_err(|error| {
        tracing::warn!(error = %format!("{error:#}"), "Key withdrawal not written.");
        OAuthError::Unavailable
    })?;
    crate::metrics::revocation("signing_key");
    Ok(StatusCode::NO_CONTENT)
}

/// Proof that the caller presented the admin token (compared as SHA-256 digests, in constant
/// time).
pub struct Admin;

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, s: &AppState) -> Result<Self, ApiError> {
        use sha2::{Digest, Sha256};
        let expected = s.admin_token_digest.ok_or(ApiError::AdminUnauthorized)?;
        let presented = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| Sha256::digest(token.trim().as_bytes()))
            .ok_or(ApiError::AdminUnauthorized)?;
        if bool::from(presented.as_slice().ct_eq(&expected)) {
            Ok(Admin)
        } else {
            Err(ApiError::AdminUnauthorized)
        }
    }
}

async fn register_client(
    _: Admin,
    State(s): State<AppState>,
    JsonBody(new): JsonBody<NewClient>,
) -> Result<impl IntoResponse, ApiError> {
    Ok((StatusCode::CREATED, Json(s.svc.register_client(new).await?)))
}

async fn list_clients(_: Admin, State(s): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(s.svc.clients().await?))
}

async fn disable_client(
    _: Admin,
    State(s): State<AppState>,
    Path(client_id): Path<String>,
) -> Result<StatusCode, ApiError> {
    s.svc.disable_client(&client_id).await?;
    crate::metrics::revocation("client_disabled");
    Ok(StatusCode::NO_CONTENT)
}

async fn revoke_client_tokens(
    _: Admin,
    State(s): State<AppState>,
    Path(client_id): Path<String>,
) -> Result<StatusCode, ApiError> {
    s.svc.revoke_client_tokens(&client_id).await?;
    crate::metrics::revocation("client");
    Ok(StatusCode::NO_CONTENT)
}

async fn create_user(
    _: Admin,
    State(s): State<AppState>,
    JsonBody(new): JsonBody<NewUser>,
) -> Result<StatusCode, ApiError> {
    s.svc.create_user(new).await?;
    Ok(StatusCode::CREATED)
}

async fn disable_user(
    _: Admin,
    State(s): State<AppState>,
    Path(username): Path<String>,
) -> Result<StatusCode, ApiError> {
    s.svc.disable_user(&username).await?;
    crate::metrics::revocation("user_disabled");
    Ok(StatusCode::NO_CONTENT)
}

async fn revoke_subject(
    _: Admin,
    State(s): State<AppState>,
    Path(sub): Path<String>,
) -> Result<StatusCode, ApiError> {
    s.svc.revoke_subject(&sub).await?;
    crate::metrics::revocation("subject");
    Ok(StatusCode::NO_CONTENT)
}
