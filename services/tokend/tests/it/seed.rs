//! The seed tutorials' flow: `/login` with JSON, then `/api/data` with the bearer token.

use axum::http::{Method, StatusCode};

use crate::harness::TestNode;

#[tokio::test]
async fn login_then_protected_data_like_the_tutorials() {
    tokend_testkit::time_limit(crate::LIMIT_SECS);
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
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert_eq!(wrong.error(), "invalid_grant");
    let nobody = r#"{"username":"nobody","password":"nope-nope"}"#;
    let nobody = n.json(Method::POST, "/login", nobody, None).await;
    assert_eq!(nobody.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn login_honours_the_login_clients_grants() {
    tokend_testkit::time_limit(crate::LIMIT_SECS);
    let dir = tempfile::tempdir().unwrap();
    let first = TestNode::start(dir.path()).await;
    let machine = r#"{"client_id":"machine","name":"Machine","grant_types":["client_credentials"],"scopes":["read"],"audiences":["api"]}"#;
    let reg = first
        .json(
            Method::POST,
            "/admin/clients",
            machine,
            Some(crate::harness::ADMIN),
        )
        .await;
    assert_eq!(reg.status, StatusCode::CREATED, "{}", reg.json);
    let (password, clock) = (first.password.clone(), first.clock.clone());
    drop(first);

    // Restarted with /login issuing for a client without the password grant.
    let mut c = crate::harness::config(dir.path());
    c.seed.login_client_id = "machine".into();
    let n = TestNode {
        node: tokend::Node::start(&c, clock.clone()).await.unwrap(),
        clock,
        client_id: String::new(),
        client_secret: String::new(),
        password: String::new(),
    };
    let body = format!(r#"{{"username":"demo","password":"{password}"}}"#);
    let r = n.json(Method::POST, "/login", &body, None).await;
    assert_eq!(r.error(), "unauthorized_client", "{}", r.json);
}

#[tokio::test]
async fn seed_endpoints_can_be_switched_off() {
    tokend_testkit::time_limit(crate::LIMIT_SECS);
    let dir = tempfile::tempdir().unwrap();
    let mut c = crate::harness::config(dir.path());
    c.seed.login_endpoint = false;
    c.seed.sample_api = false;
    let n = TestNode::with_config(&c).await;
    let r = n.json(Method::POST, "/login", "{}", None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(n.get("/api/data", None).await.status, StatusCode::NOT_FOUND);
}
