//! Rate limits over HTTP: per client on the OAuth endpoints, per user name and per source
//! address on password checks, `429` with `Retry-After`, and the off switch.

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Method, Request, StatusCode, header};

use crate::harness::{TestNode, config, form_request};

fn limited_config(dir: &std::path::Path) -> tokend::Config {
    let mut c = config(dir);
    c.rate_limit.client_per_sec = 1;
    c.rate_limit.client_burst = 3;
    c.rate_limit.password_per_min_per_address = 3;
    c.rate_limit.password_per_min_per_user = 2;
    c
}

fn from(mut req: Request<Body>, peer: &str) -> Request<Body> {
    let addr: SocketAddr = format!("{peer}:40000").parse().unwrap();
    req.extensions_mut().insert(ConnectInfo(addr));
    req
}

#[tokio::test]
async fn a_client_over_its_rate_gets_429_with_retry_after() {
    tokend_testkit::time_limit(crate::LIMIT_SECS);
    let dir = tempfile::tempdir().unwrap();
    let n = TestNode::with_config(&limited_config(dir.path())).await;
    let cc = "grant_type=client_credentials";
    for _ in 0..3 {
        assert_eq!(n.form("/oauth/token", cc).await.status, StatusCode::OK);
    }
    let r = n.form("/oauth/introspect", "token=x").await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.error(), "temporarily_unavailable");
    let wait: u64 = r.header(header::RETRY_AFTER).parse().unwrap();
    assert!((1..=2).contains(&wait), "{wait}");
    // Guessing another client's secret is limited the same way, per client id.
    let victim = crate::harness::basic("victim", "guess");
    let guess = || form_request("/oauth/token", cc, Some(&victim));
    for _ in 0..3 {
        assert_eq!(n.send(guess()).await.status, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(n.send(guess()).await.status, StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn password_checks_are_limited_per_user_and_per_address_on_every_entry_point() {
    tokend_testkit::time_limit(crate::LIMIT_SECS);
    let dir = tempfile::tempdir().unwrap();
    let mut c = limited_config(dir.path());
    c.rate_limit.client_burst = 100;
    let n = TestNode::with_config(&c).await;
    let grant = |user: &str| {
        form_request(
            "/oauth/token",
            &format!("grant_type=password&username={user}&password=wrong-one"),
            Some(&n.basic()),
        )
    };
    // Per user: two guesses at "demo" from two addresses, then the third is refused, on the
    // password grant and on /login alike.
    assert_eq!(
        n.send(from(grant("demo"), "127.0.0.1")).await.error(),
        "invalid_grant"
    );
    assert_eq!(
        n.send(from(grant("demo"), "127.0.0.2")).await.error(),
        "invalid_grant"
    );
    let r = n.send(from(grant("demo"), "127.0.0.3")).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(!r.header(header::RETRY_AFTER).is_empty());
    let login = Request::builder()
        .method(Method::POST)
        .uri("/login")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(r#"{"username":"demo","password":"wrong-one"}"#))
        .unwrap();
    assert_eq!(
        n.send(from(login, "127.0.0.4")).await.status,
        StatusCode::TOO_MANY_REQUESTS
    );

    // Per address: one address trying many user names.
    for user in ["u1", "u2", "u3"] {
        assert_eq!(
            n.send(from(grant(user), "127.0.0.9")).await.error(),
            "invalid_grant"
        );
    }
    let r = n.send(from(grant("u4"), "127.0.0.9")).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.json);
}

#[tokio::test]
async fn the_limits_can_be_switched_off() {
    tokend_testkit::time_limit(crate::LIMIT_SECS);
    let dir = tempfile::tempdir().unwrap();
    let mut c = limited_config(dir.path());
    c.rate_limit.enabled = false;
    let n = TestNode::with_config(&c).await;
    for _ in 0..10 {
        let r = n
            .form("/oauth/token", "grant_type=client_credentials")
            .await;
        assert_eq!(r.status, StatusCode::OK);
    }
}
