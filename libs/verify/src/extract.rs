//! The axum extractor: `Bearer(claims)` in a handler's arguments, RFC 6750 errors otherwise.

use std::sync::Arc;

use axum::extract::{FromRef, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tokend_jwt::AccessClaims;

use crate::{Rejection, Verifier};

/// The verified claims of the request's bearer token.
#[derive(Debug, Clone)]
pub struct Bearer(pub AccessClaims);

/// The extractor's rejection: 401 with `WWW-Authenticate: Bearer error="invalid_token"`, or
/// 503 when revocation state cannot be read.
#[derive(Debug)]
pub struct BearerRejection(pub Rejection);

impl IntoResponse for BearerRejection {
    fn into_response(self) -> Response {
        let (status, error) = match self.0 {
            Rejection::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable"),
            _ => (StatusCode::UNAUTHORIZED, "invalid_token"),
        };
        let description = self.0.to_string();
        let body = serde_json::json!({ "error": error, "error_description": description });
        let mut response = (status, axum::Json(body)).into_response();
        if status == StatusCode::UNAUTHORIZED {
            let challenge =
                format!(r#"Bearer error="invalid_token", error_description="{description}""#);
            if let Ok(value) = HeaderValue::from_str(&challenge) {
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, value);
            }
        } else {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

/// The token of an `Authorization: Bearer <token>` header (scheme case-insensitive).
pub fn bearer_token(parts: &Parts) -> Option<&str> {
    let value = parts.headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

impl<S> FromRequestParts<S> for Bearer
where
    S: Send + Sync,
    Arc<Verifier>: FromRef<S>,
{
    type Rejection = BearerRejection;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let token = bearer_token(parts).ok_or(BearerRejection(Rejection::Missing))?;
        let verifier = Arc::<Verifier>::from_ref(state);
        verifier
            .verify(token)
            .await
            .map(Bearer)
            .map_err(BearerRejection)
    }
}
