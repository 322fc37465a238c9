//! The application's error: RFC 6749 error codes plus the few the admin API needs. The HTTP
//! layer maps each to a status and a `{error, error_description}` body.

/// One error of the token service. Descriptions never contain a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OAuthError {
    #[error("{0}")]
    InvalidRequest(String),
    /// Client authentication failed. `basic` says the client tried HTTP Basic, so the answer
    /// must carry a `WWW-Authenticate: Basic` challenge.
    #[error("client authentication failed")]
    InvalidClient { basic: bool },
    #[error("{0}")]
    InvalidGrant(String),
    #[error("{0}")]
    UnauthorizedClient(String),
    #[error("the grant type is not supported")]
    UnsupportedGrantType,
    #[error("{0}")]
    InvalidScope(String),
    /// The log or the store cannot take the request now: 503 with `Retry-After`.
    #[error("the service is temporarily unavailable, retry shortly")]
    Unavailable,
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("internal error")]
    Internal,
}

impl OAuthError {
    /// The RFC 6749 `error` code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidRequest(_) => "invalid_request",
            Self::InvalidClient { .. } => "invalid_client",
            Self::InvalidGrant(_) => "invalid_grant",
            Self::UnauthorizedClient(_) => "unauthorized_client",
            Self::UnsupportedGrantType => "unsupported_grant_type",
            Self::InvalidScope(_) => "invalid_scope",
            Self::Unavailable => "temporarily_unavailable",
            Self::NotFound(_) => "not_found",
            Self::Conflict(_) => "conflict",
            Self::Internal => "server_error",
        }
    }
}

impl From<tokend_domain::LogError> for OAuthError {
    fn from(e: tokend_domain::LogError) -> Self {
        tracing::warn!(error = %e, "Event log did not take an event.");
        Self::Unavailable
    }
}

impl From<tokend_domain::StoreError> for OAuthError {
    fn from(e: tokend_domain::StoreError) -> Self {
        tracing::warn!(error = %e, "State store did not answer.");
        Self::Unavailable
    }
}

pub type Result<T, E = OAuthError> = std::result::Result<T, E>;
