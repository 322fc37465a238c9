//! A node restarted on the same data directory finds its clients, users, keys, revocations and
//! refresh families intact.

use axum::http::StatusCode;

use axum::http::Method;

use crate::harness::{ADMIN, TestNode, config};

#[tokio::test]
async fn revocations_and_refresh_families_survive_a_restart() {
    tokend_testkit::time_limit(crate::LIMIT_SECS);
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
    tokend_testkit::time_limit(crate::LIMIT_SECS);
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

#[tokio::test]
async fn damage_before_the_tail_refuses_to_start_and_the_log_commands_repair_it() {
    tokend_testkit::time_limit(crate::LIMIT_SECS);
    let dir = tempfile::tempdir().unwrap();
    let first = TestNode::start(dir.path()).await;
    for _ in 0..3 {
        first.password_grant().await;
    }
    let clock = first.clock.clone();
    drop(first);
    let path = dir.path().join(tokend::EVENT_LOG_FILE);
    let mut bytes = std::fs::read(&path).unwrap();
    let intact = tokend_filelog::recover(&path).unwrap().records;
    // Damage the length field of record 2: it now runs past the end of the file, which a
    // torn tail would too, but intact records follow it.
    let at: usize = intact[..2].iter().map(|r| 8 + r.len()).sum();
    bytes[at + 3] = 0x7f;
    std::fs::write(&path, &bytes).unwrap();

    let refused = tokend::Node::start(&config(dir.path()), clock.clone()).await;
    let error = format!("{:#}", refused.err().expect("a damaged log must not open"));
    assert!(error.contains("tokend log repair --to 2"), "{error}");
    assert_eq!(std::fs::read(&path).unwrap(), bytes, "nothing was cut");

    let cfg = dir.path().join("tokend.toml");
    std::fs::write(
        &cfg,
        format!(
            "[storage]\ndata_dir = {:?}\n",
            dir.path().display().to_string()
        ),
    )
    .unwrap();
    let tokend = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_tokend"))
            .arg("--config")
            .arg(&cfg)
            .args(args)
            .output()
            .unwrap()
    };
    let verify = tokend(&["log", "verify"]);
    assert!(!verify.status.success());
    let said = String::from_utf8_lossy(&verify.stderr);
    assert!(said.contains("record 2"), "{said}");
    let wrong = tokend(&["log", "repair", "--to", "1"]);
    assert!(
        !wrong.status.success(),
        "record 1 is intact: no cut without --force"
    );
    let repair = tokend(&["log", "repair", "--to", "2"]);
    assert!(
        repair.status.success(),
        "{}",
        String::from_utf8_lossy(&repair.stderr)
    );
    let verify = tokend(&["log", "verify"]);
    assert!(verify.status.success());
    assert!(String::from_utf8_lossy(&verify.stdout).contains("2 intact records"));
    assert!(
        tokend::Node::start(&config(dir.path()), clock)
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn cluster_mode_refuses_to_start_without_an_operator_kek() {
    tokend_testkit::time_limit(crate::LIMIT_SECS);
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.storage.backend = tokend::config::Backend::Cluster;
    c.keys.kek = None;
    c.keys.kek_file = None;
    let clock = std::sync::Arc::new(tokend_domain::ManualClock::new(1_700_000_000_000));
    let refused = tokend::Node::start(&c, clock).await;
    let error = format!("{:#}", refused.err().expect("no KEK, no cluster node"));
    assert!(error.contains("key-encryption key"), "{error}");
    assert!(
        !dir.path().join("dev-kek").exists(),
        "no development KEK is made in cluster mode"
    );
}

/// The embedded mode rotates with the cluster's code: on the node's clock, the next key is
/// published ahead of signing, then signs, and the retired key still verifies.
#[tokio::test]
async fn the_embedded_node_rotates_its_keys_on_schedule() {
    tokend_testkit::time_limit(crate::LIMIT_SECS);
    const DAY: i64 = 86_400;
    let dir = tempfile::tempdir().unwrap();
    let n = TestNode::start(dir.path()).await;
    let kids = |reply: &crate::harness::Reply| -> Vec<String> {
        reply.json["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].as_str().unwrap().to_owned())
            .collect()
    };
    let first_token = n.password_grant().await.str("access_token");
    let first = tokend_jwt::token_kid(&first_token).unwrap();
    let now = tokend_domain::Clock::now_secs(&*n.clock);
    let next_start = (now / DAY + 1) * DAY;
    n.clock.advance_secs(next_start - 3600 - now);
    let mut published = Vec::new();
    for _ in 0..50 {
        published = kids(&n.get("/.well-known/jwks.json", None).await);
        if published.len() == 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(
        published.len(),
        2,
        "the next key is published an hour ahead"
    );
    let early = n.password_grant().await.str("access_token");
    assert_eq!(
        tokend_jwt::token_kid(&early).unwrap(),
        first,
        "but does not sign yet"
    );

    n.clock.advance_secs(3600 - 10);
    let old = n.password_grant().await.str("access_token");
    n.clock.advance_secs(20);
    let mut second = first.clone();
    for _ in 0..50 {
        second = tokend_jwt::token_kid(&n.password_grant().await.str("access_token")).unwrap();
        if second != first {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_ne!(second, first);
    assert!(
        published.contains(&second),
        "the key that signs is the one published ahead"
    );
    assert_eq!(
        n.data_status(&old).await,
        StatusCode::OK,
        "the retired key still verifies"
    );
}

#[tokio::test]
async fn a_kek_change_keeps_keys_client_secrets_and_tokens_and_the_old_kek_is_then_refused() {
    use tokend_jwt::Kek;
    tokend_testkit::time_limit(60);
    let dir = tempfile::tempdir().unwrap();
    let (old, new) = ("aa".repeat(32), "bb".repeat(32));
    let new_id = Kek::parse(&new).unwrap().id();
    let with = |kek: &str, previous: Option<&str>| {
        let mut c = config(dir.path());
        c.seed.demo = false;
        c.keys.kek = Some(kek.to_owned());
        c.keys.previous_kek = previous.map(str::to_owned);
        c
    };
    let mut seeded = with(&old, None);
    seeded.seed.demo = true;
    let first = TestNode::with_config(&seeded).await;
    let token = first.password_grant().await.str("access_token");

    // Step 1: the new KEK, and the old one as the previous.
    let changing = first.restart(&with(&new, Some(&old))).await.unwrap();
    assert_eq!(changing.data_status(&token).await, StatusCode::OK);
    // Step 2: the re-seal.
    let r = changing
        .json(Method::POST, "/admin/kek/rotate", "", Some(ADMIN))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(r.json["kek"], new_id.as_str());
    assert_eq!(r.json["resealed_keys"], 1);
    let listed = changing.get_admin("/admin/keys").await;
    assert_eq!(listed.json["kek"], new_id.as_str(), "{}", listed.json);
    assert_eq!(listed.json["keys"][0]["sealed_under"], new_id.as_str());

    // The old KEK alone is now refused, with a message that names the KEK needed.
    let refused = tokend::Node::start(&with(&old, None), changing.clock.clone()).await;
    let why = format!("{:#}", refused.err().expect("the old KEK must not start"));
    assert!(why.contains(&new_id), "{why}");

    // Step 3: the new KEK alone. The signing key, the client secret (its digest key comes
    // from the secrets root) and the token all carry on.
    let after = changing.restart(&with(&new, None)).await.unwrap();
    assert_eq!(after.data_status(&token).await, StatusCode::OK);
    let fresh = after.password_grant().await.str("access_token");
    assert_eq!(
        tokend_jwt::token_kid(&fresh),
        tokend_jwt::token_kid(&token),
        "the same signing key"
    );
}
