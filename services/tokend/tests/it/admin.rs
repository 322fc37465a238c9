//! The admin API: authentication, client and user management, mass revocation.

use axum::http::{Method, StatusCode};

use crate::harness::{ADMIN, TestNode, basic, form_request};

#[tokio::test]
async fn admin_calls_need_the_admin_token() {
    tokend_testkit::time_limit(crate::LIMIT_SECS);
    let dir = tempfile::tempdir().unwrap();
    let n = TestNode::start(dir.path()).await;
    for bearer in [None, Some("wrong")] {
        let r = n.get("/admin/clients", bearer).await;
        assert_eq!(
            (r.status, r.error()),
            (StatusCode::UNAUTHORIZED, "invalid_token")
        );
    }
    let r = n.get("/admin/clients", Some(ADMIN)).await;
    assert_eq!(r.status, StatusCode::OK);
    let clients = r.json.as_array().unwrap();
    assert_eq!(clients.len(), 1);
    assert!(
        clients[0].get("secret_digest").is_none(),
        "no secret material is listed"
    );
}

#[tokio::test]
async fn register_shows_the_secret_once_and_it_works() {
    tokend_testkit::time_limit(crate::LIMIT_SECS);
    let dir = tempfile::tempdir().unwrap();
    let n = TestNode::start(dir.path()).await;
    let body = r#"{"client_id":"svc","name":"Service","grant_types":["client_credentials"],
                   "scopes":["read","write"],"default_scopes":["read"],"audiences":["api"]}"#;
    let r = n
        .json(Method::POST, "/admin/clients", body, Some(ADMIN))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.json);
    let secret = r.str("client_secret");
    assert_eq!(secret.len(), 43, "256 bits, base64url");
    let again = n
        .json(Method::POST, "/admin/clients", body, Some(ADMIN))
        .await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    let list = n.get("/admin/clients", Some(ADMIN)).await.json.to_string();
    assert!(!list.contains(&secret));
    let log = std::fs::read(dir.path().join("events.log")).unwrap();
    assert!(
        !String::from_utf8_lossy(&log).contains(&secret),
        "the log holds only the keyed digest"
    );

    let auth = basic("svc", &secret);
    let t = n
        .send(form_request(
            "/oauth/token",
            "grant_type=client_credentials",
            Some(&auth),
        ))
        .await;
    assert_eq!(t.status, StatusCode::OK);

    let bad = n
        .json(
            Method::POST,
            "/admin/clients",
            r#"{"name":"x","grant_types":["implicit"],"scopes":[],"audiences":["api"]}"#,
            Some(ADMIN),
        )
        .await;
    assert_eq!(
        (bad.status, bad.error()),
        (StatusCode::BAD_REQUEST, "invalid_request")
    );
    let unknown_field = n
        .json(Method::POST, "/admin/clients", r#"{"name":"x","grant_types":["client_credentials"],"scopes":[],"audiences":["api"],"admin":true}"#, Some(ADMIN))
        .await;
    assert_eq!(unknown_field.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn disabling_a_client_locks_it_out_and_revokes_its_tokens() {
    tokend_testkit::time_limit(crate::LIMIT_SECS);
    let dir = tempfile::tempdir().unwrap();
    let n = TestNode::start(dir.path()).await;
    let at = n.password_grant().await.str("access_token");
    let path = format!("/admin/clients/{}/disable", n.client_id);
    let r = n.json(Method::POST, &path, "", Some(ADMIN)).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(n.data_status(&at).await, StatusCode::UNAUTHORIZED);
    let t = n
        .form("/oauth/token", "grant_type=client_credentials")
        .await;
    assert_eq!(t.error(), "invalid_client");
    let missing = n
        .json(
            Method::POST,
            "/admin/clients/ghost/disable",
            "",
            Some(ADMIN),
        )
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn users_are_created_with_argon2id_and_can_be_disabled() {
    tokend_testkit::time_limit(crate::LIMIT_SECS);
    let dir = tempfile::tempdir().unwrap();
    let n = TestNode::start(dir.path()).await;
    let r = n
        .json(
            Method::POST,
            "/admin/users",
            r#"{"username":"alice","password":"wonderland-42"}"#,
            Some(ADMIN),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let log = String::from_utf8_lossy(&std::fs::read(dir.path().join("events.log")).unwrap())
        .into_owned();
    assert!(log.contains("$argon2id$") && !log.contains("wonderland-42"));

    let login = n
        .json(
            Method::POST,
            "/login",
            r#"{"username":"alice","password":"wonderland-42"}"#,
            None,
        )
        .await;
    assert_eq!(login.status, StatusCode::OK);
    let at = login.str("access_token");
    let r = n
        .json(Method::POST, "/admin/users/alice/disable", "", Some(ADMIN))
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(n.data_status(&at).await, StatusCode::UNAUTHORIZED);
    let again = n
        .json(
            Method::POST,
            "/login",
            r#"{"username":"alice","password":"wonderland-42"}"#,
            None,
        )
        .await;
    assert_eq!(again.error(), "invalid_grant");
}

#[tokio::test]
async fn log_out_everywhere_and_revoke_all_of_a_client() {
    tokend_testkit::time_limit(crate::LIMIT_SECS);
    let dir = tempfile::tempdir().unwrap();
    let n = TestNode::start(dir.path()).await;
    let a = n.password_grant().await;
    let b = n.password_grant().await;
    let cc = n
        .form("/oauth/token", "grant_type=client_credentials")
        .await;
    n.clock.advance_secs(1);

    let r = n
        .json(Method::POST, "/admin/subjects/demo/revoke", "", Some(ADMIN))
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    for t in [&a, &b] {
        assert_eq!(
            n.data_status(&t.str("access_token")).await,
            StatusCode::UNAUTHORIZED
        );
        let refresh = format!(
            "grant_type=refresh_token&refresh_token={}",
            t.str("refresh_token")
        );
        assert_eq!(
            n.form("/oauth/token", &refresh).await.error(),
            "invalid_grant"
        );
    }
    assert_eq!(n.data_status(&cc.str("access_token")).await, StatusCode::OK);
    // A login in the very millisecond of "log out everywhere" counts as before it; the test
    // clock stands still, so move it on.
    n.clock.advance_secs(1);
    let fresh = n.password_grant().await;
    assert_eq!(
        n.data_status(&fresh.str("access_token")).await,
        StatusCode::OK
    );

    let path = format!("/admin/clients/{}/revoke-tokens", n.client_id);
    assert_eq!(
        n.json(Method::POST, &path, "", Some(ADMIN)).await.status,
        StatusCode::NO_CONTENT
    );
    for t in [&cc, &fresh] {
        assert_eq!(
            n.data_status(&t.str("access_token")).await,
            StatusCode::UNAUTHORIZED
        );
    }
}

#[tokio::test]
async fn a_revoked_signing_key_is_withdrawn_and_replaced() {
    tokend_testkit::time_limit(crate::LIMIT_SECS);
    let dir = tempfile::tempdir().unwrap();
    let n = TestNode::start(dir.path()).await;
    let listed = n.get_admin("/admin/keys").await;
    let keys = listed.json["keys"].as_array().unwrap().clone();
    assert_eq!(keys.len(), 1, "{}", listed.json);
    assert_eq!(keys[0]["state"], "active");
    let kid = keys[0]["kid"].as_str().unwrap().to_owned();
    let before = n.password_grant().await.str("access_token");
    assert_eq!(n.data_status(&before).await, StatusCode::OK);

    let path = format!("/admin/keys/{kid}/revoke");
    let r = n.json(Method::POST, &path, "", Some(ADMIN)).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    // What it signed no longer verifies, and it is gone from the JWKS.
    assert_eq!(n.data_status(&before).await, StatusCode::UNAUTHORIZED);
    let jwks = n.get("/.well-known/jwks.json", None).await;
    assert!(!jwks.json.to_string().contains(&kid));
    // Within a rotation check another key signs.
    let mut replaced = None;
    for _ in 0..50 {
        let t = n.password_grant_raw().await;
        if t.status == StatusCode::OK {
            replaced = Some(t.str("access_token"));
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let after = replaced.expect("a new key signs within seconds");
    assert_ne!(tokend_jwt::token_kid(&after).unwrap(), kid);
    assert_eq!(n.data_status(&after).await, StatusCode::OK);
    let again = n.json(Method::POST, &path, "", Some(ADMIN)).await;
    assert_eq!(
        again.status,
        StatusCode::NO_CONTENT,
        "repeating it is harmless"
    );
    let unknown = n
        .json(Method::POST, "/admin/keys/nope/revoke", "", Some(ADMIN))
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn an_early_rotation_publishes_the_next_key_at_once_and_signs_with_it_a_lead_later() {
    tokend_testkit::time_limit(crate::LIMIT_SECS);
    let dir = tempfile::tempdir().unwrap();
    let n = TestNode::start(dir.path()).await;
    let before = n.password_grant().await.str("access_token");
    let first = tokend_jwt::token_kid(&before).unwrap();
    let r = n
        .json(Method::POST, "/admin/keys/rotate", "", Some(ADMIN))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    let next = r.str("next_kid");
    let signs_from = r.json["signs_from"].as_i64().unwrap();
    let lead = tokend::Config::default().keys.publish_lead_secs;
    assert_eq!(signs_from, tokend_domain::Clock::now_secs(&*n.clock) + lead);
    // Published now, not signing yet.
    let jwks = n.get("/.well-known/jwks.json", None).await;
    assert!(jwks.json.to_string().contains(&next));
    let still = n.password_grant().await.str("access_token");
    assert_eq!(tokend_jwt::token_kid(&still).unwrap(), first);

    // A lead later the next key signs (within a rotation check), and the first key's
    // tokens still verify.
    n.clock.advance_secs(lead - 10);
    n.node.keys.manager.refresh();
    let still = n.password_grant().await.str("access_token");
    assert_eq!(tokend_jwt::token_kid(&still).unwrap(), first);
    n.clock.advance_secs(10);
    let mut signed = None;
    for _ in 0..50 {
        let t = n.password_grant().await.str("access_token");
        if tokend_jwt::token_kid(&t).unwrap() == next {
            signed = Some(t);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(signed.is_some(), "the next key signs a lead later");
    assert_eq!(n.data_status(&still).await, StatusCode::OK);
}
