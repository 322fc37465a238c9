//! The one HTTP error type: RFC 6749 `{error, error_description}` bodies with the right status
//! and challenge headers.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tokend_oauth::OAuthError;

#[derive(Debug)]
pub enum ApiError {
    OAuth(OAuthError),
    /// The body is larger than `server.max_body_bytes`.
    TooLarge,
    /// The admin API was called without the admin credential.
    AdminUnauthorized,
    /// `/login` with a wrong user name or password.
    LoginFailed,
    /// Over a rate limit (`http::limits`).
    RateLimited(super::limits::Limited),
    NotFound,
    MethodNotAllowed,
}

impl From<super::limits::Limited> for ApiError {
    fn from(l: super::limits::Limited) -> Self {
        Self::RateLimited(l)
    }
}

impl From<OAuthError> for ApiError {
    fn from(e: OAuthError) -> Self {
        Self::OAuth(e)
    }
}

pub fn bad_request(description: impl Into<String>) -> ApiError {
    ApiError::OAuth(OAuthError::InvalidRequest(description.into()))
}

pub async fn not_found() -> ApiError {
    ApiError::NotFound
}

pub async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

fn status(e: &OAuthError) -> StatusCode {
    match e {
        OAuthError::InvalidClient { .. } => StatusCode::UNAUTHORIZED,
        OAuthError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        OAuthError::NotFound(_) => StatusCode::NOT_FOUND,
        OAuthError::Conflict(_) => StatusCode::CONFLICT,
        OAuthError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::BAD_REQUEST,
    }
}

fn body(status: StatusCode, error: &str, description: &str) -> Response {
    let json = serde_json::json!({ "error": error, "error_description": description });
    (status, axum::Json(json)).into_response()
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            ApiError::OAuth(e) => {
                let mut r = body(status(&e), e.code(), &e.to_string());
                let headers = r.headers_mut();
                match e {
                    OAuthError::InvalidClient { .. } => {
                        headers.insert(
                            header::WWW_AUTHENTICATE,
                            HeaderValue::from_static(r#"Basic realm="tokend", charset="UTF-8""#),
                        );
                    }
                    OAuthError::Unavailable => {
                        headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                    }
                    _ => {}
                }
                r
            }
            ApiError::TooLarge => body(
                StatusCode::PAYLOAD_TOO_LARGE,
                "invalid_request",
                "the request body is too large",
            ),
            ApiError::AdminUnauthorized => {
                let mut r = body(
                    StatusCode::UNAUTHORIZED,
                    "invalid_token",
                    "the admin API needs the admin bearer token",
                );
                r.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(
                        r#"Bearer realm="tokend-admin", error="invalid_token""#,
                    ),
                );
                r
            }
            ApiError::LoginFailed => body(
                StatusCode::UNAUTHORIZED,
                "invalid_grant",
                "invalid username or password",
            ),
            ApiError::RateLimited(limited) => super::pages::with_retry_after(
                body(
                    StatusCode::TOO_MANY_REQUESTS,
                    "temporarily_unavailable",
                    &format!(
                        "too many requests; retry after {} s",
                        limited.retry_after_secs
                    ),
                ),
                limited.retry_after_secs,
            ),
            ApiError::NotFound => body(StatusCode::NOT_FOUND, "not_found", "no such endpoint"),
            ApiError::MethodNotAllowed => body(
                StatusCode::METHOD_NOT_ALLOWED,
                "invalid_request",
                "method not allowed on this endpoint",
            ),
        }
    }
}
