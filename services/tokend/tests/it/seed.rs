//! The seed tutorials' flow: `/login` with JSON, then `/api/data` with the bearer token.

use axum::http::{Method, StatusCode};

use crate::harness::TestNode;

#[tokio::test]
async fn login_then_protected_data_like_the_tutorials() {
    let dir = tempfile::tempdir().unwrap();
    let n = TestNode::start(dir.path()).await;
    let body = format!(r#"{{"username":"demo","password":"{}"}}"#, n.password);
    let r = n.json(Method::POST, "/login", &body, None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    let at = r.str("access_token");
    assert!(!at.is_empty() && !r.str("refresh_token").is_empty());
    let data = n.get("/api/data", Some(&at)).await;
    assert_eq!(data.status, StatusCode::OK);
    assert_eq!(data.str("data"), "This is protected data.");
    assert_eq!(data.str("sub"), "demo");

    let wrong = n
        .json(
            Method::POST,
            "/login",
            r#"{"username":"demo","password":"nope-nope"}"#,
            None,
        )
        .await;
    assert_eq!(wrong.error(), "invalid_grant");
}

#[tokio::test]
async fn seed_endpoints_can_be_switched_off() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = crate::harness::config(dir.path());
    c.seed.login_endpoint = false;
    c.seed.sample_api = false;
    let n = TestNode::with_config(&c).await;
    let r = n.json(Method::POST, "/login", "{}", None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(n.get("/api/data", None).await.status, StatusCode::NOT_FOUND);
}
