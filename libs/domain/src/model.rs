//! The read model the projection maintains.

use serde::{Deserialize, Serialize};

/// A registered OAuth client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Client {
    pub client_id: String,
    pub name: String,
    /// Keyed SHA-256 digest of the secret (hex); `None` for a public client.
    #[serde(skip_serializing)]
    pub secret_digest: Option<String>,
    pub grant_types: Vec<String>,
    pub scopes: Vec<String>,
    pub default_scopes: Vec<String>,
    pub audiences: Vec<String>,
    pub redirect_uris: Vec<String>,
    pub disabled: bool,
}

impl Client {
    pub fn allows_grant(&self, grant_type: &str) -> bool {
        self.grant_types.iter().any(|g| g == grant_type)
    }
    pub fn is_public(&self) -> bool {
        self.secret_digest.is_none()
    }
}

/// A resource owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub username: String,
    pub password_hash: String,
    pub disabled: bool,
}

/// An access token the projection has seen issued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRecord {
    pub sub: String,
    pub client_id: String,
    pub family_id: String,
    pub iat: i64,
    pub exp: i64,
}

/// A refresh token, by the SHA-256 digest of its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshRecord {
    pub family_id: String,
    pub sub: String,
    pub client_id: String,
    pub scope: String,
    pub aud: Vec<String>,
    pub iat: i64,
    pub exp: i64,
    /// The `jti` of the issue that consumed this token, once rotated.
    pub used_by: Option<String>,
}

/// What presenting a refresh token means now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefreshStatus {
    Valid(RefreshRecord),
    /// Already rotated: presenting it again is reuse.
    Used(RefreshRecord),
    Revoked,
    Expired,
    Unknown,
}

/// What the revocation check needs to know of a token (all from its claims).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevocationQuery {
    pub jti: String,
    pub sub: String,
    pub client_id: String,
    pub iat: i64,
}

/// `true` when a token issued at `iat` (seconds) falls before a "revoked before" watermark
/// (milliseconds). Tokens from the watermark's own second are caught by the index instead.
pub fn before_watermark(iat_secs: i64, watermark_ms: Option<i64>) -> bool {
    watermark_ms.is_some_and(|wm| iat_secs < wm.div_euclid(1000))
}

/// An authorization code, by the SHA-256 digest of its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeRecord {
    pub client_id: String,
    pub sub: String,
    pub redirect_uri: String,
    pub scope: String,
    pub aud: Vec<String>,
    pub code_challenge: String,
    pub exp: i64,
    pub family_id: String,
    /// The `jti` of the issue that redeemed it.
    pub redeemed_by: Option<String>,
}

/// What presenting an authorization code means now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CodeStatus {
    Valid(CodeRecord),
    /// Redeemed before: a second redemption revokes what the first produced.
    Redeemed(CodeRecord),
    Expired,
    Unknown,
}
