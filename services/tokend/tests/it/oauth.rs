//! The OAuth endpoints' happy paths and their RFC-defined outcomes.

use axum::body::Body;
use axum::http::{Request, StatusCode, header};

use crate::harness::{TestNode, form_request};

#[tokio::test]
async fn client_credentials_with_basic_and_post_authentication() {
    tokend_testkit::time_limit(crate::LIMIT_SECS);
    let dir = tempfile::tempdir().unwrap();
    let n = TestNode::start(dir.path()).await;
    let r = n
        .form(
            "/oauth/token",
            "grant_type=client_credentials&scope=read+write",
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(r.str("token_type"), "Bearer");
    assert_eq!(r.str("scope"), "read write");
    assert_eq!(r.json["expires_in"], 900);
    assert!(r.json.get("refresh_token").is_none());
    assert_eq!(r.header(header::CACHE_CONTROL), "no-store");
    assert_eq!(n.data_status(&r.str("access_token")).await, StatusCode::OK);

    let body = format!(
        "grant_type=client_credentials&client_id={}&client_secret={}",
        n.client_id, n.client_secret
    );
    let r = n.send(form_request("/oauth/token", &body, None)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(
        r.str("scope"),
        "read",
        "no scope parameter: the client's defaults"
    );
}

#[tokio::test]
async fn password_refresh_rotation_and_reuse_detection() {
    tokend_testkit::time_limit(crate::LIMIT_SECS);
    let dir = tempfile::tempdir().unwrap();
    let n = TestNode::start(dir.path()).await;
    let first = n.password_grant().await;
    let r1 = first.str("refresh_token");
    let second = n
        .form(
            "/oauth/token",
            &format!("grant_type=refresh_token&refresh_token={r1}"),
        )
        .await;
    assert_eq!(second.status, StatusCode::OK, "{}", second.json);
    let r2 = second.str("refresh_token");
    assert_ne!(r1, r2, "every refresh returns a new refresh token");
    assert_eq!(
        n.data_status(&second.str("access_token")).await,
        StatusCode::OK
    );

    // Past the retry grace, presenting a rotated refresh token again is theft.
    n.clock.advance_secs(11);
    let reuse = n
        .form(
            "/oauth/token",
            &format!("grant_type=refresh_token&refresh_token={r1}"),
        )
        .await;
    assert_eq!(reuse.status, StatusCode::BAD_REQUEST);
    assert_eq!(reuse.error(), "invalid_grant");
    for t in [first.str("access_token"), second.str("access_token")] {
        assert_eq!(n.data_status(&t).await, StatusCode::UNAUTHORIZED);
    }
    let after = n
        .form(
            "/oauth/token",
            &format!("grant_type=refresh_token&refresh_token={r2}"),
        )
        .await;
    assert_eq!(after.error(), "invalid_grant", "the whole family is dead");
}

/// A client whose rotation answer was lost (a 503 after the log took the event) retries
/// with the same refresh token within `tokens.refresh_reuse_grace_secs`: it is rotated
/// again, and the grant lives on.
#[tokio::test]
async fn a_retried_refresh_within_the_grace_is_rotated_again_not_revoked() {
    tokend_testkit::time_limit(crate::LIMIT_SECS);
    let dir = tempfile::tempdir().unwrap();
    let n = TestNode::start(dir.path()).await;
    let first = n.password_grant().await;
    let r1 = first.str("refresh_token");
    let body = format!("grant_type=refresh_token&refresh_token={r1}");
    let lost = n.form("/oauth/token", &body).await;
    assert_eq!(lost.status, StatusCode::OK);
    n.clock.advance_secs(5);
    let retried = n.form("/oauth/token", &body).await;
    assert_eq!(retried.status, StatusCode::OK, "{}", retried.json);
    for t in [&first, &lost, &retried] {
        assert_eq!(n.data_status(&t.str("access_token")).await, StatusCode::OK);
    }
    let next = format!(
        "grant_type=refresh_token&refresh_token={}",
        retried.str("refresh_token")
    );
    assert_eq!(n.form("/oauth/token", &next).await.status, StatusCode::OK);
}

#[tokio::test]
async fn refresh_may_narrow_but_not_widen_scope() {
    tokend_testkit::time_limit(crate::LIMIT_SECS);
    let dir = tempfile::tempdir().unwrap();
    let n = TestNode::start(dir.path()).await;
    let body = format!(
        "grant_type=password&username=demo&password={}&scope=read+write",
        n.password
    );
    let t = n.form("/oauth/token", &body).await;
    let rt = t.str("refresh_token");
    let wide = n
        .form(
            "/oauth/token",
            &format!("grant_type=refresh_token&refresh_token={rt}&scope=read+write+admin"),
        )
        .await;
    assert_eq!(wide.error(), "invalid_scope");
    let narrow = n
        .form(
            "/oauth/token",
            &format!("grant_type=refresh_token&refresh_token={rt}&scope=read"),
        )
        .await;
    assert_eq!(narrow.status, StatusCode::OK, "{}", narrow.json);
    assert_eq!(narrow.str("scope"), "read");
}

#[tokio::test]
async fn revocation_of_access_and_refresh_tokens_rfc7009() {
    tokend_testkit::time_limit(crate::LIMIT_SECS);
    let dir = tempfile::tempdir().unwrap();
    let n = TestNode::start(dir.path()).await;
    let t = n.password_grant().await;
    let (at, rt) = (t.str("access_token"), t.str("refresh_token"));

    let r = n.form("/oauth/revoke", &format!("token={at}")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(n.data_status(&at).await, StatusCode::UNAUTHORIZED);
    assert!(!n.active(&at).await);
    for body in [format!("token={at}"), "token=unknown-token".into()] {
        assert_eq!(n.form("/oauth/revoke", &body).await.status, StatusCode::OK);
    }

    assert!(n.active(&rt).await);
    let r = n
        .form(
            "/oauth/revoke",
            &format!("token={rt}&token_type_hint=refresh_token"),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(!n.active(&rt).await);
    let refresh = n
        .form(
            "/oauth/token",
            &format!("grant_type=refresh_token&refresh_token={rt}"),
        )
        .await;
    assert_eq!(refresh.error(), "invalid_grant");
}

#[tokio::test]
async fn introspection_rfc7662() {
    tokend_testkit::time_limit(crate::LIMIT_SECS);
    let dir = tempfile::tempdir().unwrap();
    let n = TestNode::start(dir.path()).await;
    let t = n.password_grant().await;
    let at = t.str("access_token");
    let r = n.form("/oauth/introspect", &format!("token={at}")).await;
    assert_eq!(r.json["active"], true);
    assert_eq!(r.str("sub"), "demo");
    assert_eq!(r.str("username"), "demo");
    assert_eq!(r.str("client_id"), n.client_id);
    assert_eq!(r.str("scope"), "read");
    assert_eq!(r.str("token_type"), "Bearer");
    assert_eq!(r.json["aud"], serde_json::json!(["api"]));
    assert!(r.json["exp"].as_i64().unwrap() > r.json["iat"].as_i64().unwrap());

    // Unknown, badly signed and expired tokens are inactive, with nothing else said.
    let mut forged = at.clone();
    forged.replace_range(forged.len() - 4.., "AAAA");
    for token in ["nope".to_owned(), forged] {
        let r = n.form("/oauth/introspect", &format!("token={token}")).await;
        assert_eq!(r.json, serde_json::json!({"active": false}));
    }
    n.clock.advance_secs(901);
    assert!(!n.active(&at).await);
    assert_eq!(n.data_status(&at).await, StatusCode::UNAUTHORIZED);

    let anonymous = n
        .send(form_request(
            "/oauth/introspect",
            &format!("token={at}"),
            None,
        ))
        .await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    assert_eq!(anonymous.error(), "invalid_client");
}

#[tokio::test]
async fn metadata_and_jwks() {
    tokend_testkit::time_limit(crate::LIMIT_SECS);
    let dir = tempfile::tempdir().unwrap();
    let n = TestNode::start(dir.path()).await;
    let m = n.get("/.well-known/oauth-authorization-server", None).await;
    assert_eq!(m.str("issuer"), "http://127.0.0.1:8080");
    assert_eq!(m.str("token_endpoint"), "http://127.0.0.1:8080/oauth/token");
    assert_eq!(
        m.str("jwks_uri"),
        "http://127.0.0.1:8080/.well-known/jwks.json"
    );
    assert!(
        m.json["grant_types_supported"]
            .as_array()
            .unwrap()
            .contains(&"password".into())
    );
    // Only client authentication that exists is advertised: secrets, no signed JWTs
    // (RFC 8414 2: the signing algorithms go with private_key_jwt / client_secret_jwt).
    assert!(
        m.json
            .get("token_endpoint_auth_signing_alg_values_supported")
            .is_none()
    );
    for method in m.json["token_endpoint_auth_methods_supported"]
        .as_array()
        .unwrap()
    {
        assert!(!method.as_str().unwrap().ends_with("_jwt"), "{method}");
    }

    let j = n.get("/.well-known/jwks.json", None).await;
    assert_eq!(j.header(header::CACHE_CONTROL), "public, max-age=300");
    assert_eq!(j.header(header::CONTENT_TYPE), "application/jwk-set+json");
    // Revalidation: the same entity tag answers 304 with no body.
    let etag = j.header(header::ETAG);
    assert!(etag.starts_with('"') && etag.len() > 10, "{etag}");
    let revalidate = Request::builder()
        .uri("/.well-known/jwks.json")
        .header(header::IF_NONE_MATCH, &etag)
        .body(Body::empty())
        .unwrap();
    let (status, headers, body) = n.send_raw(revalidate).await;
    assert_eq!(status, StatusCode::NOT_MODIFIED);
    assert!(body.is_empty());
    assert_eq!(headers.get(header::ETAG).unwrap().to_str().unwrap(), etag);
    let key = &j.json["keys"][0];
    assert_eq!(
        (key["kty"].as_str(), key["crv"].as_str()),
        (Some("OKP"), Some("Ed25519"))
    );
    assert!(key.get("d").is_none());

    // A token's kid is in the JWKS, and the JWKS alone verifies it.
    let at = n.password_grant().await.str("access_token");
    let keys = tokend_jwt::PublicKeySet::from_jwks(&j.json);
    let policy = tokend_jwt::VerifyPolicy {
        issuer: "http://127.0.0.1:8080".into(),
        audiences: vec!["api".into()],
        leeway_secs: 0,
    };
    assert!(policy.verify(&keys, &at, 1_800_000_001).is_ok());
}

#[tokio::test]
async fn health_readiness_and_cors() {
    tokend_testkit::time_limit(crate::LIMIT_SECS);
    let dir = tempfile::tempdir().unwrap();
    let n = TestNode::start(dir.path()).await;
    assert_eq!(n.get("/healthz", None).await.json["status"], "ok");
    assert_eq!(n.get("/readyz", None).await.json["status"], "ready");

    let preflight = axum::http::Request::builder()
        .method("OPTIONS")
        .uri("/oauth/token")
        .header(header::ORIGIN, "http://app.test")
        .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
        .body(axum::body::Body::empty())
        .unwrap();
    let resp = tower::ServiceExt::oneshot(n.node.router.clone(), preflight)
        .await
        .unwrap();
    assert_eq!(
        resp.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN],
        "http://app.test"
    );
    let other = axum::http::Request::builder()
        .method("OPTIONS")
        .uri("/oauth/token")
        .header(header::ORIGIN, "http://evil.test")
        .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
        .body(axum::body::Body::empty())
        .unwrap();
    let resp = tower::ServiceExt::oneshot(n.node.router.clone(), other)
        .await
        .unwrap();
    assert!(
        resp.headers()
            .get(header::ACCESS_CONTROL_ALLOW_ORIGIN)
            .is_none()
    );
}
