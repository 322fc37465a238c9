//! The read model the projection maintains, and the rules that read it: one place decides
//! what "revoked", "used" and "expired" mean, for the in-memory store and Redis alike.

use serde::{Deserialize, Serialize};

/// A registered OAuth client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Client {
    pub client_id: String,
    pub name: String,
    /// Keyed SHA-256 digest of the secret (hex); `None` for a public client.
    pub secret_digest: Option<String>,
    pub grant_types: Vec<String>,
    pub scopes: Vec<String>,
    pub default_scopes: Vec<String>,
    pub audiences: Vec<String>,
    pub redirect_uris: Vec<String>,
    pub disabled: bool,
}

impl From<&tokend_events::ClientRegistered> for Client {
    fn from(e: &tokend_events::ClientRegistered) -> Self {
        Self {
            client_id: e.client_id.clone(),
            name: e.name.clone(),
            secret_digest: e.secret_digest.clone(),
            grant_types: e.grant_types.clone(),
            scopes: e.scopes.clone(),
            default_scopes: e.default_scopes.clone(),
            audiences: e.audiences.clone(),
            redirect_uris: e.redirect_uris.clone(),
            disabled: false,
        }
    }
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub username: String,
    pub password_hash: String,
    pub disabled: bool,
}

/// One grant and its rotations (a login session). Recorded only for grants that can mint
/// more than one token (refresh tokens, codes); a lone client-credentials token has none.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FamilyRecord {
    /// Every token of the family is revoked (refresh-token reuse, code replay, revoked by
    /// the client): checked by `sid` at validation, so revoking a family is one write.
    pub revoked: bool,
    /// The latest expiry of any token of the family (seconds): the record lives until then.
    pub until: i64,
}

/// A refresh token, by the SHA-256 digest of its value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefreshRecord {
    pub family_id: String,
    pub sub: String,
    pub client_id: String,
    pub scope: String,
    pub aud: Vec<String>,
    pub iat: i64,
    pub exp: i64,
    /// When the family's grant began (ms): compared with subject and client watermarks.
    pub auth_time_ms: i64,
    /// The `jti` of the issue that consumed this token, once rotated.
    pub used_by: Option<String>,
    /// When it was first rotated (seconds; the rotation's `iat`).
    #[serde(default)]
    pub used_at: i64,
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
    /// The token's family (`sid`).
    pub family_id: String,
    /// The user the token was issued for; `None` for a client's own token (client
    /// credentials, whose `sub` is the client id): revoking a user of the same name must not
    /// touch it.
    pub sub: Option<String>,
    pub client_id: String,
    /// When the token's grant began (ms).
    pub auth_time_ms: i64,
    /// The key that signed the token (its header's `kid`).
    pub kid: String,
}

/// What the revocation rule reads for one token: one round trip's worth of records.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RevocationState {
    /// The token itself was revoked.
    pub token_revoked: bool,
    pub family: Option<FamilyRecord>,
    pub subject_watermark: Option<i64>,
    pub client_watermark: Option<i64>,
    /// The key that signed the token was revoked.
    pub key_revoked: bool,
}

impl RevocationState {
    /// The rule: revoked by `jti`, by its family, by its signing key, or because its grant
    /// began before a subject- or client-wide "revoked before" watermark (ms, exact: no
    /// rounding to seconds).
    pub fn revokes(&self, auth_time_ms: i64) -> bool {
        self.token_revoked
            || self.key_revoked
            || self.family.as_ref().is_some_and(|f| f.revoked)
            || before_watermark(auth_time_ms, self.subject_watermark)
            || before_watermark(auth_time_ms, self.client_watermark)
    }
}

/// `true` when a grant that began at `auth_time_ms` falls before a "revoked before" watermark.
pub fn before_watermark(auth_time_ms: i64, watermark_ms: Option<i64>) -> bool {
    watermark_ms.is_some_and(|wm| auth_time_ms < wm)
}

/// The status of a refresh token from its record and the revocation state of its grant.
/// A refresh token whose family record is gone is revoked (fail closed).
pub fn refresh_status(
    record: Option<RefreshRecord>,
    revocation: &RevocationState,
    now_secs: i64,
) -> RefreshStatus {
    let Some(r) = record else {
        return RefreshStatus::Unknown;
    };
    if revocation.family.is_none() || revocation.revokes(r.auth_time_ms) {
        RefreshStatus::Revoked
    } else if r.used_by.is_some() {
        RefreshStatus::Used(r)
    } else if r.exp <= now_secs {
        RefreshStatus::Expired
    } else {
        RefreshStatus::Valid(r)
    }
}

/// An authorization code, by the SHA-256 digest of its value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CodeRecord {
    pub client_id: String,
    pub sub: String,
    pub redirect_uri: String,
    pub scope: String,
    pub aud: Vec<String>,
    pub code_challenge: String,
    pub exp: i64,
    pub family_id: String,
    /// When the user approved (ms): the family's `auth_time_ms`.
    pub auth_time_ms: i64,
    /// The `jti` of the issue that redeemed it.
    pub redeemed_by: Option<String>,
    /// When it was first redeemed (seconds; the redemption's `iat`).
    #[serde(default)]
    pub redeemed_at: i64,
    /// See `AuthorizationCodeIssued::redirect_uri_implied`.
    #[serde(default)]
    pub redirect_uri_implied: bool,
}

impl CodeRecord {
    /// RFC 6749 4.1.3: the token request's `redirect_uri` is required if the authorization
    /// request carried one, and must then be identical; one sent anyway must be the code's.
    pub fn redirect_uri_matches(&self, given: Option<&str>) -> bool {
        match given {
            Some(uri) => uri == self.redirect_uri,
            None => self.redirect_uri_implied,
        }
    }
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

pub fn code_status(record: Option<CodeRecord>, now_secs: i64) -> CodeStatus {
    match record {
        None => CodeStatus::Unknown,
        Some(c) if c.redeemed_by.is_some() => CodeStatus::Redeemed(c),
        Some(c) if c.exp <= now_secs => CodeStatus::Expired,
        Some(c) => CodeStatus::Valid(c),
    }
}
