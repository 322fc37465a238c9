//! Every kind of bad input gets an RFC 6749 error with the right status, and nothing is
//! appended to the log for it.

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};

use crate::harness::{ADMIN, TestNode, basic, config, form_request};

fn log_len(dir: &std::path::Path) -> u64 {
    std::fs::metadata(dir.join("events.log")).unwrap().len()
}

fn raw(content_type: Option<&str>, body: Vec<u8>, auth: &str) -> Request<Body> {
    let mut req = Request::builder()
        .method(Method::POST)
        .uri("/oauth/token")
        .header(header::AUTHORIZATION, auth);
    if let Some(ct) = content_type {
        req = req.header(header::CONTENT_TYPE, ct);
    }
    req.body(Body::from(body)).unwrap()
}

#[tokio::test]
async fn token_endpoint_errors_are_rfc6749_and_append_nothing() {
    tokend_testkit::time_limit(crate::LIMIT_SECS);
    let dir = tempfile::tempdir().unwrap();
    let n = TestNode::start(dir.path()).await;
    let before = log_len(dir.path());
    let auth = n.basic();
    let form = Some("application/x-www-form-urlencoded");
    let cases: Vec<(Request<Body>, StatusCode, &str)> = vec![
        (
            raw(None, b"grant_type=client_credentials".to_vec(), &auth),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            raw(
                Some("application/json"),
                br#"{"grant_type":"client_credentials"}"#.to_vec(),
                &auth,
            ),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            raw(
                form,
                b"grant_type=client_credentials&scope=%ff%fe".to_vec(),
                &auth,
            ),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            raw(
                form,
                b"grant_type=client_credentials&grant_type=password".to_vec(),
                &auth,
            ),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            raw(form, b"scope=read".to_vec(), &auth),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            raw(form, b"grant_type=implicit".to_vec(), &auth),
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
        ),
        (
            raw(form, b"grant_type=refresh_token".to_vec(), &auth),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            raw(
                form,
                b"grant_type=refresh_token&refresh_token=made-up".to_vec(),
                &auth,
            ),
            StatusCode::BAD_REQUEST,
            "invalid_grant",
        ),
        (
            raw(
                form,
                b"grant_type=password&username=demo&password=wrong-password".to_vec(),
                &auth,
            ),
            StatusCode::BAD_REQUEST,
            "invalid_grant",
        ),
        (
            raw(
                form,
                b"grant_type=password&username=ghost&password=wrong-password".to_vec(),
                &auth,
            ),
            StatusCode::BAD_REQUEST,
            "invalid_grant",
        ),
        (
            raw(form, b"grant_type=password&username=demo".to_vec(), &auth),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            raw(
                form,
                b"grant_type=client_credentials&scope=read+admin".to_vec(),
                &auth,
            ),
            StatusCode::BAD_REQUEST,
            "invalid_scope",
        ),
        (
            raw(
                form,
                b"grant_type=client_credentials&audience=billing".to_vec(),
                &auth,
            ),
            StatusCode::BAD_REQUEST,
            "invalid_scope",
        ),
        (
            raw(
                form,
                format!(
                    "grant_type=client_credentials&client_secret={}",
                    n.client_secret
                )
                .into_bytes(),
                &auth,
            ),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            raw(form, vec![b'a'; 20 * 1024], &auth),
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_request",
        ),
        (
            raw(
                form,
                b"grant_type=client_credentials".to_vec(),
                &basic(&n.client_id, "wrong"),
            ),
            StatusCode::UNAUTHORIZED,
            "invalid_client",
        ),
        (
            raw(
                form,
                b"grant_type=client_credentials".to_vec(),
                &basic("ghost", "wrong"),
            ),
            StatusCode::UNAUTHORIZED,
            "invalid_client",
        ),
        (
            raw(form, b"grant_type=client_credentials".to_vec(), "Basic %%%"),
            StatusCode::UNAUTHORIZED,
            "invalid_client",
        ),
        (
            form_request("/oauth/token", "grant_type=client_credentials", None),
            StatusCode::UNAUTHORIZED,
            "invalid_client",
        ),
    ];
    for (i, (req, status, error)) in cases.into_iter().enumerate() {
        let r = n.send(req).await;
        assert_eq!(
            (r.status, r.error()),
            (status, error),
            "case {i}: {}",
            r.json
        );
        assert!(!r.str("error_description").is_empty(), "case {i}");
        if status == StatusCode::UNAUTHORIZED {
            assert!(
                r.header(header::WWW_AUTHENTICATE).starts_with("Basic"),
                "case {i}"
            );
        }
    }
    assert_eq!(
        log_len(dir.path()),
        before,
        "nothing appended for rejected requests"
    );
}

#[tokio::test]
async fn grants_the_client_may_not_use_are_unauthorized_client() {
    tokend_testkit::time_limit(crate::LIMIT_SECS);
    let dir = tempfile::tempdir().unwrap();
    let n = TestNode::start(dir.path()).await;
    let body = r#"{"client_id":"machine","name":"Machine","grant_types":["client_credentials"],
                   "scopes":["read"],"audiences":["api"]}"#;
    let reg = n
        .json(Method::POST, "/admin/clients", body, Some(ADMIN))
        .await;
    assert_eq!(reg.status, StatusCode::CREATED, "{}", reg.json);
    let auth = basic("machine", &reg.str("client_secret"));
    let before = log_len(dir.path());
    let req = raw(
        Some("application/x-www-form-urlencoded"),
        format!("grant_type=password&username=demo&password={}", n.password).into_bytes(),
        &auth,
    );
    let r = n.send(req).await;
    assert_eq!(
        (r.status, r.error()),
        (StatusCode::BAD_REQUEST, "unauthorized_client")
    );
    assert_eq!(log_len(dir.path()), before);
}

#[tokio::test]
async fn password_grant_is_off_by_default() {
    tokend_testkit::time_limit(crate::LIMIT_SECS);
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.grants.password = false;
    let n = TestNode::with_config(&c).await;
    let body = format!("grant_type=password&username=demo&password={}", n.password);
    let r = n.form("/oauth/token", &body).await;
    assert_eq!(r.error(), "unsupported_grant_type");
    let login = format!(r#"{{"username":"demo","password":"{}"}}"#, n.password);
    let r = n.json(Method::POST, "/login", &login, None).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let m = n.get("/.well-known/oauth-authorization-server", None).await;
    assert!(
        !m.json["grant_types_supported"]
            .as_array()
            .unwrap()
            .contains(&"password".into())
    );
}

#[tokio::test]
async fn protected_resource_answers_401_with_a_bearer_challenge() {
    tokend_testkit::time_limit(crate::LIMIT_SECS);
    let dir = tempfile::tempdir().unwrap();
    let n = TestNode::start(dir.path()).await;
    for bearer in [None, Some("garbage"), Some("a.b.c")] {
        let r = n.get("/api/data", bearer).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        assert!(
            r.header(header::WWW_AUTHENTICATE)
                .starts_with(r#"Bearer error="invalid_token""#)
        );
        assert_eq!(r.error(), "invalid_token");
    }
    // A token for another audience is not accepted by this resource.
    let reg = n
        .json(
            Method::POST,
            "/admin/clients",
            r#"{"name":"B","grant_types":["client_credentials"],"scopes":["read"],"audiences":["billing"]}"#,
            Some(ADMIN),
        )
        .await;
    let auth = basic(&reg.str("client_id"), &reg.str("client_secret"));
    let t = n
        .send(form_request(
            "/oauth/token",
            "grant_type=client_credentials",
            Some(&auth),
        ))
        .await;
    assert_eq!(
        n.data_status(&t.str("access_token")).await,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn json_endpoints_refuse_bad_bodies_without_echoing_secrets() {
    tokend_testkit::time_limit(crate::LIMIT_SECS);
    let dir = tempfile::tempdir().unwrap();
    let n = TestNode::start(dir.path()).await;
    let cases = [
        (Some("text/plain"), r#"{"username":"demo","password":"x"}"#),
        (Some("application/json"), r#"{"username":"demo","#),
        (Some("application/json"), r#"{"username":"demo"}"#),
        (
            Some("application/json"),
            r#"{"username":"demo","password":12345678}"#,
        ),
        (None, r#"{"username":"demo","password":"pw"}"#),
    ];
    for (ct, body) in cases {
        let mut req = Request::builder().method(Method::POST).uri("/login");
        if let Some(ct) = ct {
            req = req.header(header::CONTENT_TYPE, ct);
        }
        let r = n.send(req.body(Body::from(body)).unwrap()).await;
        assert_eq!(
            (r.status, r.error()),
            (StatusCode::BAD_REQUEST, "invalid_request"),
            "{body}"
        );
        assert!(!r.json.to_string().contains("12345678"));
    }
    let r = n.get("/nope", None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = n.get("/oauth/token", None).await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
}

/// A burst of password checks beyond the configured bound gets 503 with `Retry-After`
/// (argon2 takes 19 MiB each), never a 500 and never an unbounded queue; within the bound
/// every check answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_password_checks_beyond_the_bound_gets_503_with_retry_after() {
    tokend_testkit::time_limit(crate::LIMIT_SECS);
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path());
    config.grants.password_checks = 1;
    config.grants.password_check_queue = 1;
    let n = std::sync::Arc::new(TestNode::with_config(&config).await);
    let body = format!("grant_type=password&username=demo&password={}", n.password);
    let mut burst = tokio::task::JoinSet::new();
    for _ in 0..24 {
        let (n, body) = (n.clone(), body.clone());
        burst.spawn(async move { n.form("/oauth/token", &body).await });
    }
    let replies = burst.join_all().await;
    let ok = replies
        .iter()
        .filter(|r| r.status == StatusCode::OK)
        .count();
    let busy: Vec<_> = replies
        .iter()
        .filter(|r| r.status == StatusCode::SERVICE_UNAVAILABLE)
        .collect();
    assert_eq!(ok + busy.len(), replies.len(), "only 200 or 503");
    assert!(ok >= 1, "checks within the bound answer");
    assert!(!busy.is_empty(), "checks beyond the bound are refused");
    for r in busy {
        assert_eq!(r.error(), "temporarily_unavailable");
        assert!(!r.header(header::RETRY_AFTER).is_empty());
    }
    // Once the burst is over, password checks work again.
    n.password_grant().await;
}
