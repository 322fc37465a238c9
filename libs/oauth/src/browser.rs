//! The stateless parts of the browser flow: login sessions and CSRF tokens any node can check
//! (HMAC-SHA256 under keys derived from the KEK), and the PKCE S256 check (RFC 7636).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

/// A browser's login session: who, since when, until when. Its `sid` is a token family id of
/// its own, so ending it (logout) is one `TokenFamilyRevoked`, and "log out everywhere" or a
/// disabled user ends it through the subject watermark, like the user's tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub user: String,
    pub sid: String,
    /// When the user signed in (ms).
    pub auth_time_ms: i64,
    /// Expiry (seconds).
    pub exp: i64,
}

/// Signs and checks session cookies and CSRF tokens.
#[derive(Clone)]
pub struct BrowserKeys {
    session: Zeroizing<[u8; 32]>,
    csrf: Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for BrowserKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BrowserKeys(..)")
    }
}

fn mac(key: &[u8; 32], parts: &[&[u8]]) -> [u8; 32] {
    let Ok(mut m) = Hmac::<Sha256>::new_from_slice(key) else {
        return [0; 32]; // HMAC takes keys of any length: unreachable
    };
    for p in parts {
        m.update(&(p.len() as u64).to_be_bytes());
        m.update(p);
    }
    m.finalize().into_bytes().into()
}

impl BrowserKeys {
    pub fn new(session: Zeroizing<[u8; 32]>, csrf: Zeroizing<[u8; 32]>) -> Self {
        Self { session, csrf }
    }

    /// `base64url(user).sid.auth_time_ms.exp.base64url(mac)`.
    pub fn session(&self, s: &Session) -> String {
        let user = B64.encode(&s.user);
        let (auth, exp) = (s.auth_time_ms.to_string(), s.exp.to_string());
        let fields = [
            user.as_bytes(),
            s.sid.as_bytes(),
            auth.as_bytes(),
            exp.as_bytes(),
        ];
        let tag = mac(&self.session, &fields);
        format!("{user}.{}.{auth}.{exp}.{}", s.sid, B64.encode(tag))
    }

    /// The session of a cookie that is authentic and not expired at `now_secs`. Whether it
    /// was ended since (logout, "log out everywhere", a disabled user) is the log's to say:
    /// `TokenService::session_active`.
    pub fn session_of(&self, value: &str, now_secs: i64) -> Option<Session> {
        let parts: Vec<&str> = value.split('.').collect();
        let [user, sid, auth, exp, tag] = parts.as_slice() else {
            return None;
        };
        let expected = mac(
            &self.session,
            &[
                user.as_bytes(),
                sid.as_bytes(),
                auth.as_bytes(),
                exp.as_bytes(),
            ],
        );
        let tag = B64.decode(tag).ok()?;
        let exp = exp.parse::<i64>().ok()?;
        if !bool::from(expected.as_slice().ct_eq(&tag)) || exp <= now_secs {
            return None;
        }
        Some(Session {
            user: String::from_utf8(B64.decode(user).ok()?).ok()?,
            sid: (*sid).to_owned(),
            auth_time_ms: auth.parse().ok()?,
            exp,
        })
    }

    /// The CSRF token for a browser's CSRF cookie value (double submit, signed).
    pub fn csrf_token(&self, cookie: &str) -> String {
        B64.encode(mac(&self.csrf, &[cookie.as_bytes()]))
    }

    pub fn csrf_ok(&self, cookie: &str, token: &str) -> bool {
        !cookie.is_empty() && bool::from(self.csrf_token(cookie).as_bytes().ct_eq(token.as_bytes()))
    }
}

/// RFC 7636 4.1: 43-128 characters of `[A-Z] / [a-z] / [0-9] / "-" / "." / "_" / "~"`.
pub fn valid_verifier(v: &str) -> bool {
    (43..=128).contains(&v.len())
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
}

/// A well-formed S256 challenge: BASE64URL of 32 bytes.
pub fn valid_challenge(c: &str) -> bool {
    c.len() == 43 && B64.decode(c).is_ok_and(|b| b.len() == 32)
}

/// `BASE64URL(SHA256(verifier)) == challenge`, in constant time.
pub fn pkce_s256_matches(verifier: &str, challenge: &str) -> bool {
    let computed = B64.encode(Sha256::digest(verifier.as_bytes()));
    bool::from(computed.as_bytes().ct_eq(challenge.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> BrowserKeys {
        BrowserKeys::new(Zeroizing::new([1; 32]), Zeroizing::new([2; 32]))
    }

    #[test]
    fn sessions_are_authentic_and_expire() {
        let k = keys();
        let session = Session {
            user: "alice".into(),
            sid: "s1".into(),
            auth_time_ms: 7_000,
            exp: 100,
        };
        let s = k.session(&session);
        assert_eq!(k.session_of(&s, 99), Some(session));
        assert_eq!(k.session_of(&s, 100), None);
        let forged = s.replacen(&B64.encode("alice"), &B64.encode("admin"), 1);
        assert_eq!(k.session_of(&forged, 50), None);
        // A later sign-in time would escape a "log out everywhere": bound by the MAC too.
        let younger = s.replacen(".7000.", ".9000.", 1);
        assert_eq!(k.session_of(&younger, 50), None);
        let other = BrowserKeys::new(Zeroizing::new([9; 32]), Zeroizing::new([2; 32]));
        assert_eq!(other.session_of(&s, 50), None);
        assert_eq!(k.session_of("garbage", 50), None);
    }

    #[test]
    fn csrf_tokens_bind_to_the_cookie() {
        let k = keys();
        let t = k.csrf_token("nonce-1");
        assert!(k.csrf_ok("nonce-1", &t));
        assert!(!k.csrf_ok("nonce-2", &t));
        assert!(!k.csrf_ok("", &k.csrf_token("")));
        assert!(!k.csrf_ok("nonce-1", ""));
    }

    #[test]
    fn rfc7636_appendix_b_vector() {
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
        assert!(valid_verifier(verifier) && valid_challenge(challenge));
        assert!(pkce_s256_matches(verifier, challenge));
        assert!(!pkce_s256_matches("x".repeat(43).as_str(), challenge));
        assert!(!valid_verifier("short"));
        assert!(!valid_challenge("plain-challenge"));
    }
}
