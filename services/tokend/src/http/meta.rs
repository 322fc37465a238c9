//! Discovery and health: RFC 8414 metadata, the RFC 7517 key set, liveness and readiness.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
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

/// The key set, served from the document the keyring made when its keys last changed, with
/// `ETag` (a verifier revalidating with `If-None-Match` gets `304` and no body) and
/// `Cache-Control`.
pub async fn jwks(State(s): State<AppState>, headers: HeaderMap) -> Response {
    let document = s.keys.manager.keyring().read().document().clone();
    let unchanged = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|tags| {
            tags.split(',')
                .any(|t| t.trim() == document.etag || t.trim() == "*")
        });
    let mut r = if unchanged {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let mut r =
            axum::body::Body::from(axum::body::Bytes::from_owner(document.body)).into_response();
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/jwk-set+json"),
        );
        r
    };
    let cache = format!("public, max-age={}", s.jwks_max_age_secs);
    for (name, value) in [
        (header::CACHE_CONTROL, cache),
        (header::ETAG, document.etag),
    ] {
        if let Ok(v) = HeaderValue::from_str(&value) {
            r.headers_mut().insert(name, v);
        }
    }
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
