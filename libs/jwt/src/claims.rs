//! The claims of an RFC 9068 JWT access token.

use serde::{Deserialize, Deserializer, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    pub iss: String,
    pub sub: String,
    #[serde(deserialize_with = "one_or_many")]
    pub aud: Vec<String>,
    pub client_id: String,
    pub scope: String,
    pub jti: String,
    /// The token family (one grant and its rotations; OpenID's session id): revoking the
    /// family revokes the token.
    #[serde(default)]
    pub sid: String,
    /// When the grant began, in ms: subject- and client-wide revocations compare their
    /// watermark with it exactly (a token without it counts as older than any watermark).
    #[serde(default)]
    pub auth_time_ms: i64,
    pub iat: i64,
    pub exp: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    /// The grant type, set only for a client's own token (`client_credentials`, whose `sub`
    /// is the client id): such a token has no user, so user-wide revocations pass it by.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gty: Option<String>,
    /// The key that signed the token (its header's `kid`): set by verification, never a
    /// claim of its own.
    #[serde(skip)]
    pub kid: String,
}

/// `gty` of a client's own token.
pub const CLIENT_CREDENTIALS: &str = "client_credentials";

impl AccessClaims {
    /// The user the token was issued for: `None` for a client's own token.
    pub fn user(&self) -> Option<&str> {
        (self.gty.as_deref() != Some(CLIENT_CREDENTIALS)).then_some(self.sub.as_str())
    }

    /// Whether the token grants `scope` (one space-separated entry).
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scope.split(' ').any(|s| s == scope)
    }
}

/// RFC 7519 allows `aud` to be one string or an array of strings. A visitor rather than an
/// untagged enum: that buffered the value and built (and formatted) an error for every array,
/// on every verification.
fn one_or_many<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    struct Audience;
    impl<'de> serde::de::Visitor<'de> for Audience {
        type Value = Vec<String>;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a string or an array of strings")
        }

        fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Self::Value, E> {
            Ok(vec![s.to_owned()])
        }

        fn visit_seq<A: serde::de::SeqAccess<'de>>(
            self,
            mut seq: A,
        ) -> Result<Self::Value, A::Error> {
            let mut all = Vec::with_capacity(seq.size_hint().unwrap_or(1));
            while let Some(one) = seq.next_element()? {
                all.push(one);
            }
            Ok(all)
        }
    }
    d.deserialize_any(Audience)
}
