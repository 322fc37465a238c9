//! Event payloads. Adding a field with `#[serde(default)]` keeps the version; changing the
//! meaning of one bumps it.

use serde::{Deserialize, Serialize};

macro_rules! events {
    ($($name:ident => $version:literal),* $(,)?) => {
        /// Every event this build knows.
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub enum Event { $($name($name)),* }

        impl Event {
            /// The envelope's `type`.
            pub fn kind(&self) -> &'static str {
                match self { $(Event::$name(_) => stringify!($name)),* }
            }

            /// The envelope's `version`.
            pub fn version(&self) -> u16 {
                match self { $(Event::$name(_) => $version),* }
            }

            /// The envelope's `type` and the payload as JSON text.
            pub fn to_parts(&self) -> (&'static str, Box<serde_json::value::RawValue>) {
                let value = match self {
                    $(Event::$name(p) => serde_json::value::to_raw_value(p)),*
                };
                // Serialising plain data with string keys cannot fail.
                (self.kind(), value.unwrap_or_else(|_| empty_object()))
            }

            /// `None` for an unknown type or version.
            pub(crate) fn from_parts(
                kind: &str,
                version: u16,
                payload: &serde_json::value::RawValue,
            ) -> Option<Result<Event, serde_json::Error>> {
                match (kind, version) {
                    $((stringify!($name), $version) => Some(
                        serde_json::from_str::<$name>(payload.get()).map(Event::$name)
                    ),)*
                    _ => None,
                }
            }
        }

        $(impl From<$name> for Event {
            fn from(p: $name) -> Self { Event::$name(p) }
        })*
    };
}

fn empty_object() -> Box<serde_json::value::RawValue> {
    serde_json::value::RawValue::from_string("{}".to_owned()).unwrap_or_else(|_| {
        // "{}" is valid JSON; this branch cannot run.
        Box::<serde_json::value::RawValue>::default()
    })
}

events! {
    ClientRegistered => 1,
    ClientDisabled => 1,
    ClientRevoked => 1,
    UserCreated => 1,
    UserDisabled => 1,
    TokenIssued => 1,
    TokenRevoked => 1,
    TokenFamilyRevoked => 1,
    SubjectRevoked => 1,
    AuthorizationCodeIssued => 1,
    SigningKeyRevoked => 1,
}

impl Event {
    /// The Kafka partition key (see the crate docs for the rule and why).
    pub fn partition_key(&self) -> &str {
        match self {
            Event::ClientRegistered(e) => &e.client_id,
            Event::ClientDisabled(e) => &e.client_id,
            Event::ClientRevoked(e) => &e.client_id,
            Event::UserCreated(e) => &e.username,
            Event::UserDisabled(e) => &e.username,
            Event::TokenIssued(e) => &e.family_id,
            Event::TokenRevoked(e) => &e.family_id,
            Event::TokenFamilyRevoked(e) => &e.family_id,
            Event::SubjectRevoked(e) => &e.sub,
            Event::AuthorizationCodeIssued(e) => &e.family_id,
            Event::SigningKeyRevoked(e) => &e.kid,
        }
    }
}

/// A client was registered (the first registration of an id wins; a later one changes nothing).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientRegistered {
    pub client_id: String,
    pub name: String,
    /// Keyed SHA-256 digest of the secret (hex); `None` for a public client.
    pub secret_digest: Option<String>,
    pub grant_types: Vec<String>,
    pub scopes: Vec<String>,
    pub default_scopes: Vec<String>,
    pub audiences: Vec<String>,
    #[serde(default)]
    pub redirect_uris: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
/// The client can no longer authenticate, and every token it holds is revoked.
pub struct ClientDisabled {
    pub client_id: String,
    pub revoked_before_ms: i64,
}

/// Every token of the client issued before the watermark is revoked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientRevoked {
    pub client_id: String,
    pub revoked_before_ms: i64,
}

/// A resource owner. Only an argon2id PHC hash of the password is ever written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserCreated {
    pub username: String,
    pub password_hash: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
/// The user can no longer log in, and every token issued to them is revoked.
pub struct UserDisabled {
    pub username: String,
    pub revoked_before_ms: i64,
}

/// An access token (and maybe a refresh token) was handed to a client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenIssued {
    pub jti: String,
    pub sub: String,
    pub client_id: String,
    pub scope: String,
    pub aud: Vec<String>,
    /// Seconds since the Unix epoch.
    pub iat: i64,
    pub exp: i64,
    /// The grant this token descends from: every rotation keeps it (the token's `sid`).
    pub family_id: String,
    /// When the grant began (ms since the epoch, the issuing node's clock): the login, the
    /// consent, or the client credentials issue. Every rotation keeps it; subject and client
    /// watermarks compare against it, so a refresh family started before a revocation dies
    /// with it, whenever its later tokens were minted.
    #[serde(default)]
    pub auth_time_ms: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh: Option<RefreshIssued>,
    /// Digest of the refresh token this issue consumed (refresh grant).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotated_from: Option<String>,
    /// Digest of the authorization code this issue redeemed (authorization code grant).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_code: Option<String>,
    /// Seconds after the first use of `rotated_from` (or `from_code`) within which another
    /// use is a lost race or a retry rather than theft (the appending node's
    /// `tokens.refresh_reuse_grace_secs`; 0: none).
    #[serde(default)]
    pub reuse_grace_secs: i64,
    /// The node saw `rotated_from` already used, within the grace: the client is retrying a
    /// rotation whose answer it never received, and gets a sibling.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub retry: bool,
}

/// The refresh token that came with an issue; only its SHA-256 digest is stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefreshIssued {
    pub digest: String,
    pub exp: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRevoked {
    pub jti: String,
    pub sub: String,
    pub client_id: String,
    pub exp: i64,
    /// The token's family (its `sid`): the partition key, so the revocation is ordered with
    /// the family's other events.
    #[serde(default)]
    pub family_id: String,
}

/// Every access and refresh token of one grant is revoked (refresh-token reuse, or the
/// client revoked its refresh token).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenFamilyRevoked {
    pub family_id: String,
    pub sub: String,
    pub reason: FamilyRevokeReason,
    /// Set when the family may have no record yet (a browser session ended by logout): the
    /// revoked family is recorded until then (seconds). Zero: only an existing one is revoked.
    #[serde(default)]
    pub until: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FamilyRevokeReason {
    RefreshTokenReuse,
    AuthorizationCodeReplay,
    RevokedByClient,
    /// The user signed out of a browser session.
    Logout,
}

/// "Log out everywhere": every token of the subject issued before the watermark is revoked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubjectRevoked {
    pub sub: String,
    pub revoked_before_ms: i64,
}

/// A user approved a client: a single-use authorization code (RFC 6749 4.1, RFC 7636), bound
/// to the client, the redirect URI and the PKCE challenge. Only its SHA-256 digest is written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthorizationCodeIssued {
    pub code_digest: String,
    pub client_id: String,
    pub sub: String,
    pub redirect_uri: String,
    pub scope: String,
    pub aud: Vec<String>,
    /// BASE64URL(SHA-256(code_verifier)).
    pub code_challenge: String,
    pub exp: i64,
    /// The token family the redemption starts.
    pub family_id: String,
    /// When the user approved (ms): the `auth_time_ms` of the family the code starts.
    #[serde(default)]
    pub auth_time_ms: i64,
    /// The authorization request named no redirect URI (the client's only registered one was
    /// used), so the token request need not send it (RFC 6749 4.1.3). Absent: it did.
    #[serde(default)]
    pub redirect_uri_implied: bool,
}

/// Emergency: every token signed by the key `kid` is revoked, wherever it is verified (the
/// key also leaves the JWKS through the key log).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SigningKeyRevoked {
    pub kid: String,
    /// When it was revoked (ms).
    pub at_ms: i64,
}
