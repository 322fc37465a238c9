//! Tests of keys, signing and verification, including the RFC 8037 Appendix A vectors.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use jsonwebtoken::{Algorithm, DecodingKey};

use super::*;

const RFC8037_D: &str = "nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A";
const RFC8037_X: &str = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";
const RFC8037_THUMBPRINT: &str = "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k";
const RFC8037_SIGNING_INPUT: &str = "eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc";
const RFC8037_SIGNATURE: &str =
    "hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg";

fn rfc_key() -> KeyPair {
    let seed: [u8; 32] = B64.decode(RFC8037_D).unwrap().try_into().unwrap();
    KeyPair::from_seed(&seed, KeyState::Active, 0)
}

#[test]
fn rfc8037_a1_a3_public_key_and_thumbprint() {
    let key = rfc_key();
    assert_eq!(key.x(), RFC8037_X);
    assert_eq!(key.kid(), RFC8037_THUMBPRINT);
    let jwk = key.jwk();
    assert_eq!(jwk["kty"], "OKP");
    assert_eq!(jwk["crv"], "Ed25519");
    assert!(
        jwk.get("d").is_none(),
        "the JWKS must never carry the private key"
    );
}

#[test]
fn rfc8037_a4_a5_sign_and_verify() {
    let key = rfc_key();
    let sig = key.signature(RFC8037_SIGNING_INPUT.as_bytes());
    assert_eq!(sig, RFC8037_SIGNATURE);
    let public = DecodingKey::from_ed_components(RFC8037_X).unwrap();
    let ok = jsonwebtoken::crypto::verify(
        RFC8037_SIGNATURE,
        RFC8037_SIGNING_INPUT.as_bytes(),
        &public,
        Algorithm::EdDSA,
    )
    .unwrap();
    assert!(ok);
    let tampered = jsonwebtoken::crypto::verify(
        RFC8037_SIGNATURE,
        b"eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmd",
        &public,
        Algorithm::EdDSA,
    )
    .unwrap_or(false);
    assert!(!tampered);
}

fn policy() -> VerifyPolicy {
    VerifyPolicy {
        issuer: "https://issuer.test".into(),
        audiences: vec!["api".into()],
        leeway_secs: 5,
    }
}

fn claims(iat: i64, exp: i64) -> AccessClaims {
    AccessClaims {
        iss: "https://issuer.test".into(),
        sub: "alice".into(),
        aud: vec!["api".into()],
        client_id: "app".into(),
        scope: "read write".into(),
        jti: "j1".into(),
        sid: "f1".into(),
        auth_time_ms: iat * 1000,
        iat,
        exp,
        nbf: None,
        gty: None,
        kid: String::new(),
    }
}

fn ring() -> Keyring {
    Keyring::new(vec![KeyPair::generate(KeyState::Active, 0)])
}

#[test]
fn sign_then_verify_round_trip_with_at_jwt_header() {
    let ring = ring();
    let token = ring.sign(&claims(1000, 1600)).unwrap();
    let header = jsonwebtoken::decode_header(&token).unwrap();
    assert_eq!(header.typ.as_deref(), Some("at+jwt"));
    assert_eq!(header.kid.as_deref(), ring.active().map(|k| k.kid()));
    let got = policy().verify(&ring, &token, 1100).unwrap();
    let kid = header.kid.unwrap();
    assert_eq!(
        got,
        AccessClaims {
            kid,
            ..claims(1000, 1600)
        },
        "verification names the key"
    );
    assert!(got.has_scope("write") && !got.has_scope("wri"));
}

#[test]
fn expiry_and_not_before_use_the_given_clock_with_leeway() {
    let ring = ring();
    let token = ring.sign(&claims(1000, 1600)).unwrap();
    assert!(policy().verify(&ring, &token, 1604).is_ok());
    assert_eq!(
        policy().verify(&ring, &token, 1605),
        Err(VerifyError::Expired)
    );
    assert!(policy().verify(&ring, &token, 996).is_ok());
    assert_eq!(
        policy().verify(&ring, &token, 994),
        Err(VerifyError::NotYetValid)
    );
}

#[test]
fn wrong_issuer_audience_key_or_signature_is_rejected() {
    let ring = ring();
    let token = ring.sign(&claims(1000, 1600)).unwrap();
    let mut p = policy();
    p.issuer = "https://other".into();
    assert_eq!(p.verify(&ring, &token, 1100), Err(VerifyError::Invalid));
    let mut p = policy();
    p.audiences = vec!["billing".into()];
    assert_eq!(p.verify(&ring, &token, 1100), Err(VerifyError::Invalid));
    assert_eq!(
        policy().verify(&self::ring(), &token, 1100),
        Err(VerifyError::UnknownKey)
    );
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    let mut body: serde_json::Value =
        serde_json::from_slice(&B64.decode(&parts[1]).unwrap()).unwrap();
    body["scope"] = "admin".into();
    parts[1] = B64.encode(body.to_string());
    assert_eq!(
        policy().verify(&ring, &parts.join("."), 1100),
        Err(VerifyError::Invalid)
    );
    assert_eq!(
        policy().verify(&ring, "not.a.jwt", 1100),
        Err(VerifyError::Malformed)
    );
    assert_eq!(
        policy().verify(&ring, "", 1100),
        Err(VerifyError::Malformed)
    );
}

/// Tokens cut, padded or given a signature of the wrong length are refused, never a panic.
#[test]
fn damaged_tokens_are_refused() {
    let ring = ring();
    let token = ring.sign(&claims(1000, 1600)).unwrap();
    let (signed, signature) = token.rsplit_once('.').unwrap();
    for bad in [
        format!("{token}.x"),
        format!("{signed}."),
        format!("{signed}.{}", &signature[..signature.len() - 2]),
        format!("{signed}.{signature}AAAA"),
        format!("{signed}.{signature}="),
        format!("{signed}.!{}", &signature[1..]),
        format!("{}.{signature}", signed.split_once('.').unwrap().0),
    ] {
        let refused = policy().verify(&ring, &bad, 1100);
        assert!(
            matches!(refused, Err(VerifyError::Malformed | VerifyError::Invalid)),
            "{bad}: {refused:?}"
        );
    }
}

/// An independent implementation (`jsonwebtoken`) accepts what this one signs, and this one
/// accepts the RFC 8037 A.4 signature under the RFC's public key.
#[test]
fn tokens_verify_under_an_independent_implementation() {
    let ring = ring();
    let token = ring.sign(&claims(1000, 1600)).unwrap();
    let x = ring.active().unwrap().x().to_owned();
    let key = DecodingKey::from_ed_components(&x).unwrap();
    let mut validation = jsonwebtoken::Validation::new(Algorithm::EdDSA);
    validation.validate_exp = false;
    validation.set_audience(&["api"]);
    let theirs = jsonwebtoken::decode::<AccessClaims>(&token, &key, &validation).unwrap();
    assert_eq!(theirs.claims, claims(1000, 1600));

    let jwks = serde_json::json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "kid": "rfc", "x": RFC8037_X}]});
    let keys = PublicKeySet::from_jwks(&jwks);
    let vk = keys.verifying_key("rfc").unwrap();
    let sig: [u8; 64] = B64.decode(RFC8037_SIGNATURE).unwrap().try_into().unwrap();
    assert!(
        vk.verify_strict(
            RFC8037_SIGNING_INPUT.as_bytes(),
            &ed25519_dalek::Signature::from_bytes(&sig)
        )
        .is_ok()
    );
}

#[test]
fn other_algorithms_and_types_are_refused() {
    let ring = ring();
    let kid = ring.active().unwrap().kid().to_owned();
    let body = B64.encode(serde_json::to_vec(&claims(1000, 1600)).unwrap());
    let forge = |header: serde_json::Value| {
        format!(
            "{}.{}.{}",
            B64.encode(header.to_string()),
            body,
            B64.encode([0u8; 64])
        )
    };
    let hs = forge(serde_json::json!({"alg": "HS256", "typ": "at+jwt", "kid": kid}));
    assert_eq!(
        policy().verify(&ring, &hs, 1100),
        Err(VerifyError::Algorithm)
    );
    let none = forge(serde_json::json!({"alg": "none", "typ": "at+jwt", "kid": kid}));
    assert_eq!(
        policy().verify(&ring, &none, 1100),
        Err(VerifyError::Algorithm)
    );
    let crit =
        forge(serde_json::json!({"alg": "EdDSA", "typ": "at+jwt", "kid": kid, "crit": ["exp"]}));
    assert_eq!(
        policy().verify(&ring, &crit, 1100),
        Err(VerifyError::Malformed),
        "an extension this verifier does not know must not be passed over"
    );
    let jwt = forge(serde_json::json!({"alg": "EdDSA", "typ": "JWT", "kid": kid}));
    assert_eq!(policy().verify(&ring, &jwt, 1100), Err(VerifyError::Type));
}

#[test]
fn keyring_verifies_tokens_of_retired_keys_and_publishes_all() {
    let mut ring = ring();
    let old = ring.sign(&claims(1000, 1600)).unwrap();
    ring.insert(KeyPair::generate(KeyState::Active, 1));
    ring.insert(KeyPair::generate(KeyState::Next, 2));
    let states: Vec<_> = ring.keys().iter().map(KeyPair::state).collect();
    assert_eq!(
        states,
        [KeyState::Retired, KeyState::Active, KeyState::Next]
    );
    let new = ring.sign(&claims(1000, 1600)).unwrap();
    assert_ne!(token_kid(&old), token_kid(&new));
    assert!(policy().verify(&ring, &old, 1100).is_ok());
    assert!(policy().verify(&ring, &new, 1100).is_ok());

    let jwks = ring.jwks();
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 3);
    let public = PublicKeySet::from_jwks(&jwks);
    assert!(policy().verify(&public, &old, 1100).is_ok());
    assert!(policy().verify(&public, &new, 1100).is_ok());
}

#[test]
fn aud_may_be_a_single_string() {
    let c: AccessClaims = serde_json::from_value(serde_json::json!({
        "iss": "i", "sub": "s", "aud": "api", "client_id": "c", "scope": "",
        "jti": "j", "iat": 1, "exp": 2
    }))
    .unwrap();
    assert_eq!(c.aud, vec!["api".to_owned()]);
    let claims = |aud: serde_json::Value| {
        serde_json::from_str::<AccessClaims>(&format!(
            r#"{{"iss":"i","sub":"s","aud":{aud},"client_id":"c","scope":"","jti":"j","iat":1,"exp":2}}"#
        ))
    };
    assert_eq!(
        claims(serde_json::json!(["api", "billing"])).unwrap().aud,
        vec!["api".to_owned(), "billing".to_owned()]
    );
    assert!(claims(serde_json::json!([])).unwrap().aud.is_empty());
    for bad in [
        serde_json::json!(7),
        serde_json::json!([7]),
        serde_json::json!({"a": 1}),
    ] {
        assert!(claims(bad).is_err());
    }
}

#[test]
fn empty_audience_list_accepts_any_audience() {
    let ring = ring();
    let token = ring.sign(&claims(1000, 1600)).unwrap();
    let mut p = policy();
    p.audiences.clear();
    assert!(p.verify(&ring, &token, 1100).is_ok());
}

/// A token seen again is answered from the cache, but its times are checked again, a key no
/// longer known sends it back to full verification, and a token differing anywhere misses.
#[test]
fn verified_tokens_are_reused_only_while_they_would_still_verify() {
    let ring = ring();
    let token = ring.sign(&claims(1000, 1600)).unwrap();
    let cache = VerifiedTokens::new(16);
    let calls = std::cell::Cell::new(0);
    let check = |token: &str, now: i64, known: bool| {
        cache.verify(
            &policy(),
            token,
            now,
            |_| known,
            || {
                calls.set(calls.get() + 1);
                policy().verify(&ring, token, now)
            },
        )
    };
    let first = check(&token, 1100, true).unwrap();
    assert_eq!(check(&token, 1200, true).unwrap(), first);
    assert_eq!(calls.get(), 1, "the second check was a lookup");
    assert_eq!(check(&token, 1605, true), Err(VerifyError::Expired));
    assert_eq!(check(&token, 994, true), Err(VerifyError::NotYetValid));
    assert_eq!(calls.get(), 1);

    assert_eq!(check(&token, 1100, false).unwrap(), first);
    assert_eq!(calls.get(), 2, "an unknown key means a full verification");

    let (signed, signature) = token.rsplit_once('.').unwrap();
    let (header, _) = signed.split_once('.').unwrap();
    let mut body = claims(1000, 1600);
    body.scope = "admin".into();
    let forged = format!(
        "{header}.{}.{signature}",
        B64.encode(serde_json::to_vec(&body).unwrap())
    );
    assert_eq!(check(&forged, 1100, true), Err(VerifyError::Invalid));
    assert_eq!(calls.get(), 3);

    let off = VerifiedTokens::new(0);
    for _ in 0..2 {
        off.verify(
            &policy(),
            &token,
            1100,
            |_| true,
            || {
                calls.set(calls.get() + 1);
                policy().verify(&ring, &token, 1100)
            },
        )
        .unwrap();
    }
    assert_eq!(calls.get(), 5, "capacity 0 keeps nothing");
    assert!(off.is_empty());
}

/// Verification is cofactorless (as the crate's `verify`): what keeps it as strong as
/// `verify_strict` for us is that a weak (small-order) key from a JWKS is never used and a
/// signature's `S` must be canonical, so a valid signature cannot be altered into another.
#[test]
fn weak_jwks_keys_are_dropped_and_signatures_cannot_be_altered() {
    // The identity point and a point of order 2: small order, so weak.
    let mut order_two = [0u8; 32];
    order_two[0] = 0xec;
    order_two[1..31].fill(0xff);
    order_two[31] = 0x7f;
    let mut identity = [0u8; 32];
    identity[0] = 1;
    let jwks = serde_json::json!({"keys": [
        {"kty": "OKP", "crv": "Ed25519", "kid": "identity", "x": B64.encode(identity)},
        {"kty": "OKP", "crv": "Ed25519", "kid": "order-two", "x": B64.encode(order_two)},
        {"kty": "OKP", "crv": "Ed25519", "kid": "rfc", "x": RFC8037_X},
    ]});
    let keys = PublicKeySet::from_jwks(&jwks);
    assert!(!keys.contains("identity"));
    assert!(!keys.contains("order-two"));
    assert!(keys.contains("rfc"));

    // S + l (the group order) is the same scalar, not canonical: refused.
    let ring = ring();
    let token = ring.sign(&claims(1000, 1600)).unwrap();
    assert!(policy().verify(&ring, &token, 1100).is_ok());
    let (signed, signature) = token.rsplit_once('.').unwrap();
    let mut raw: [u8; 64] = B64.decode(signature).unwrap().try_into().unwrap();
    const L: [u8; 32] = [
        0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde,
        0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
    ];
    let mut carry = 0u16;
    for (s, l) in raw[32..].iter_mut().zip(L) {
        let sum = u16::from(*s) + u16::from(l) + carry;
        *s = sum as u8;
        carry = sum >> 8;
    }
    let altered = format!("{signed}.{}", B64.encode(raw));
    assert_eq!(
        policy().verify(&ring, &altered, 1100),
        Err(VerifyError::Invalid)
    );
}
