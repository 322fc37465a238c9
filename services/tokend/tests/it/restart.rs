//! A node restarted on the same data directory finds its clients, users, keys, revocations and
//! refresh families intact.

use axum::http::StatusCode;

use crate::harness::{TestNode, config};

#[tokio::test]
async fn revocations_and_refresh_families_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let first = TestNode::start(dir.path()).await;
    let revoked = first.password_grant().await;
    let rotated = first.password_grant().await;
    let kept = first.password_grant().await;
    first
        .form(
            "/oauth/revoke",
            &format!("token={}", revoked.str("access_token")),
        )
        .await;
    let old_rt = rotated.str("refresh_token");
    let next = first
        .form(
            "/oauth/token",
            &format!("grant_type=refresh_token&refresh_token={old_rt}"),
        )
        .await;
    assert_eq!(next.status, StatusCode::OK);
    let (client_id, client_secret, clock) = (
        first.client_id.clone(),
        first.client_secret.clone(),
        first.clock.clone(),
    );
    drop(first);

    let node = tokend::Node::start(&config(dir.path()), clock.clone())
        .await
        .unwrap();
    assert!(node.demo.is_none(), "the demo is seeded only once");
    let again = TestNode {
        node,
        clock,
        client_id,
        client_secret,
        password: String::new(),
    };
    assert_eq!(
        again.data_status(&revoked.str("access_token")).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        again.data_status(&kept.str("access_token")).await,
        StatusCode::OK
    );
    assert_eq!(
        again.data_status(&next.str("access_token")).await,
        StatusCode::OK
    );

    // The used refresh token is still known as used: presenting it (past the retry grace)
    // is reuse.
    again.clock.advance_secs(11);
    let reuse = again
        .form(
            "/oauth/token",
            &format!("grant_type=refresh_token&refresh_token={old_rt}"),
        )
        .await;
    assert_eq!(reuse.error(), "invalid_grant");
    assert_eq!(
        again.data_status(&next.str("access_token")).await,
        StatusCode::UNAUTHORIZED
    );
    let kept_rt = format!(
        "grant_type=refresh_token&refresh_token={}",
        kept.str("refresh_token")
    );
    assert_eq!(
        again.form("/oauth/token", &kept_rt).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_torn_tail_is_survived() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let first = TestNode::start(dir.path()).await;
    let t = first.password_grant().await;
    let clock = first.clock.clone();
    drop(first);
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(dir.path().join("events.log"))
        .unwrap();
    f.write_all(&[200, 0, 0, 0, 9, 9, 9, 9, b'{']).unwrap();
    drop(f);
    let node = tokend::Node::start(&config(dir.path()), clock)
        .await
        .unwrap();
    let req = axum::http::Request::builder()
        .uri("/api/data")
        .header("authorization", format!("Bearer {}", t.str("access_token")))
        .body(axum::body::Body::empty())
        .unwrap();
    let resp = tower::ServiceExt::oneshot(node.router.clone(), req)
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
}
