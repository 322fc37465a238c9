//! Per-operation cost of signing and verifying an access token, with the bare Ed25519
//! signature of a token-sized input measured in the same run as the reference (what signing
//! cannot go below).

use criterion::{Criterion, criterion_group, criterion_main};
use tokend_jwt::{AccessClaims, KeyPair, KeyState, Keyring, VerifyPolicy};

fn bench(c: &mut Criterion) {
    let ring = Keyring::new(vec![KeyPair::generate(KeyState::Active, 0)]);
    let claims = AccessClaims {
        iss: "http://127.0.0.1:8080".into(),
        sub: "alice".into(),
        aud: vec!["api".into()],
        client_id: "demo-client".into(),
        scope: "read write".into(),
        jti: "0f1e2d3c4b5a69788796a5b4c3d2e1f0".into(),
        sid: "5a69788796a5b4c3d2e1f00f1e2d3c4b".into(),
        auth_time_ms: 1_700_000_000_000,
        iat: 1_700_000_000,
        exp: 1_700_000_900,
        nbf: None,
        gty: None,
        kid: String::new(),
    };
    let policy = VerifyPolicy {
        issuer: claims.iss.clone(),
        audiences: vec!["api".into()],
        leeway_secs: 30,
    };
    let token = ring.sign(&claims).unwrap_or_default();
    c.bench_function("jwt_sign_eddsa", |b| b.iter(|| ring.sign(&claims)));
    let bare = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
    let input = token
        .rsplit_once('.')
        .map_or(token.as_str(), |(signed, _)| signed)
        .to_owned();
    c.bench_function("reference_ed25519_sign_only", |b| {
        b.iter(|| ed25519_dalek::Signer::sign(&bare, input.as_bytes()))
    });
    c.bench_function("jwt_verify_eddsa", |b| {
        b.iter(|| policy.verify(&ring, &token, 1_700_000_100))
    });
    let signature = ed25519_dalek::Signer::sign(&bare, input.as_bytes());
    let public = bare.verifying_key();
    c.bench_function("reference_ed25519_verify_only", |b| {
        // The check the bare reference endpoint makes, and `verify` makes (cofactorless).
        b.iter(|| ed25519_dalek::Verifier::verify(&public, input.as_bytes(), &signature))
    });
    c.bench_function("reference_ed25519_verify_strict", |b| {
        b.iter(|| public.verify_strict(input.as_bytes(), &signature))
    });
    let cache = tokend_jwt::VerifiedTokens::default();
    c.bench_function("jwt_verify_seen_before", |b| {
        b.iter(|| {
            cache.verify(
                &policy,
                &token,
                1_700_000_100,
                |kid| ring.get(kid).is_some(),
                || policy.verify(&ring, &token, 1_700_000_100),
            )
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
