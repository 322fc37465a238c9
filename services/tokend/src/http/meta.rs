//! Discovery and health: RFC 8414 metadata, the RFC 7517 key set, liveness and readiness.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::AppState;

pub async fn metadata(State(s): State<AppState>) -> Json<serde_json::Value> {
    let settings = s.svc.settings();
    let iss = settings.issuer.trim_end_matches('/');
    let mut grants = vec!["authorization_code", "client_credentials", "refresh_token"];
    if settings.password_grant {
        grants.push("password");
    }
    let auth_methods = ["client_secret_basic", "client_secret_post", "none"];
    let confidential = ["client_secret_basic", "client_secret_post"];
    Json(serde_json::json!({
        "issuer": settings.issuer,
        "authorization_endpoint": format!("{iss}/oauth/authorize"),
        "token_endpoint": format!("{iss}/oauth/token"),
        "revocation_endpoint": format!("{iss}/oauth/revoke"),
        "introspection_endpoint": format!("{iss}/oauth/introspect"),
        "jwks_uri": format!("{iss}/.well-known/jwks.json"),
        "grant_types_supported": grants,
        "response_types_supported": ["code"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": auth_methods,
        "revocation_endpoint_auth_methods_supported": auth_methods,
        "introspection_endpoint_auth_methods_supported": confidential,
    }))
}

pub async fn jwks(State(s): State<AppState>) -> Response {
    let body = s.keys.read().jwks();
    let mut r = Json(body).into_response();
    let cache = format!("public, max-age={}", s.jwks_max_age_secs);
    if let Ok(v) = HeaderValue::from_str(&cache) {
        r.headers_mut().insert(header::CACHE_CONTROL, v);
    }
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/jwk-set+json"),
    );
    r
}

pub async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

pub async fn readyz(State(s): State<AppState>) -> Response {
    match s.svc.ready().await {
        Ok(()) => Json(serde_json::json!({ "status": "ready" })).into_response(),
        Err(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({ "status": "not_ready", "reason": reason })),
        )
            .into_response(),
    }
}
