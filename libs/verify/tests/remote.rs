//! The JWKS cache against a real HTTP issuer on loopback that can be made to hang: requests
//! with known keys never wait on it, and concurrent refreshes are one fetch.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use tokend_jwt::{AccessClaims, KeyPair, KeyState, Keyring, VerifyPolicy};
use tokend_verify::{NoRevocation, RemoteKeys, RemoteOptions, SystemClock, Verifier};
use tokio::sync::Notify;

/// An issuer whose JWKS answers `no-store` (always stale) and, once `hang` is set, only after
/// `release` is notified.
struct Issuer {
    fetches: AtomicUsize,
    hang: AtomicBool,
    release: Notify,
    jwks: serde_json::Value,
}

async fn serve(issuer: Arc<Issuer>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let meta = serde_json::json!({ "issuer": base, "jwks_uri": format!("{base}/jwks") });
    let jwks = {
        let issuer = issuer.clone();
        move || async move {
            issuer.fetches.fetch_add(1, Ordering::SeqCst);
            if issuer.hang.load(Ordering::SeqCst) {
                issuer.release.notified().await;
            }
            (
                [("cache-control", "no-store")],
                axum::Json(issuer.jwks.clone()),
            )
        }
    };
    let app = Router::new()
        .route(
            "/.well-known/oauth-authorization-server",
            get(move || async move { axum::Json(meta) }),
        )
        .route("/jwks", get(jwks));
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    base
}

#[tokio::test]
async fn a_hanging_issuer_never_holds_up_requests_and_refreshes_are_single_flight() {
    tokend_testkit::time_limit(60);
    let ring = Keyring::new(vec![KeyPair::generate(KeyState::Active, 0)]);
    let issuer = Arc::new(Issuer {
        fetches: AtomicUsize::new(0),
        hang: AtomicBool::new(false),
        release: Notify::new(),
        jwks: ring.jwks(),
    });
    let base = serve(issuer.clone()).await;
    let options = RemoteOptions {
        timeout: Duration::from_secs(30),
        ..RemoteOptions::default()
    };
    let keys = RemoteKeys::discover(&base, options).await.unwrap();
    assert_eq!(issuer.fetches.load(Ordering::SeqCst), 1);
    let verifier = Arc::new(Verifier::new(
        Arc::new(keys),
        Arc::new(NoRevocation),
        VerifyPolicy {
            issuer: base.clone(),
            audiences: vec!["api".into()],
            leeway_secs: 0,
        },
        Arc::new(SystemClock),
    ));
    let now = tokend_domain::Clock::now_secs(&SystemClock);
    let token = ring
        .sign(&AccessClaims {
            iss: base.clone(),
            sub: "alice".into(),
            aud: vec!["api".into()],
            client_id: "app".into(),
            scope: "read".into(),
            jti: "j1".into(),
            sid: "s1".into(),
            auth_time_ms: now * 1000,
            iat: now,
            exp: now + 600,
            nbf: None,
            gty: None,
            kid: String::new(),
        })
        .unwrap();

    // The cached set is stale (no-store) and the issuer now hangs: 50 concurrent requests
    // all verify with the cached keys, while exactly one refresh waits on the issuer.
    issuer.hang.store(true, Ordering::SeqCst);
    let requests = (0..50).map(|_| {
        let (verifier, token) = (verifier.clone(), token.clone());
        tokio::spawn(async move { verifier.verify(&token).await })
    });
    let results = tokio::time::timeout(
        Duration::from_secs(20),
        futures_join_all(requests.collect()),
    )
    .await
    .expect("requests waited on the hanging issuer");
    assert!(results.iter().all(Result::is_ok));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        issuer.fetches.load(Ordering::SeqCst),
        2,
        "one background refresh, not one per request"
    );
    issuer.hang.store(false, Ordering::SeqCst);
    issuer.release.notify_waiters();
}

async fn futures_join_all(
    handles: Vec<tokio::task::JoinHandle<Result<AccessClaims, tokend_verify::Rejection>>>,
) -> Vec<Result<AccessClaims, tokend_verify::Rejection>> {
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}
