//! Signing-key rotation through the key topic, with three token nodes on one clock that the
//! test moves: no key file is shared (each node has its own data directory), the nodes agree
//! on every key by log order, publish the next key before any token carries it, and keep
//! verifying tokens of the retired key.

use std::sync::Arc;
use std::time::Duration;

use tokend_domain::{Clock, ManualClock};
use tokend_testkit::{kafka, redis};

use crate::LIMIT_SECS;
use crate::cluster::{Cluster, eventually};

const DAY: i64 = 86_400;

async fn signing_kid(c: &Cluster, i: usize) -> String {
    tokend_jwt::token_kid(&c.client_credentials(i).await).unwrap()
}

async fn jwks_kids(c: &Cluster, i: usize) -> Vec<String> {
    let jwks: serde_json::Value = reqwest::get(format!("{}/.well-known/jwks.json", c.nodes[i]))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut kids: Vec<String> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect();
    kids.sort();
    kids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_rotate_through_the_key_topic_and_agree() {
    tokend_testkit::time_limit(LIMIT_SECS);
    let (k, r) = (kafka().await, redis().await);
    let clock = Arc::new(ManualClock::new(tokend_verify::SystemClock.now_ms()));
    let c = Cluster::start_with(&k.bootstrap, &r.url, 3, clock.clone()).await;
    let _projector = c.projecting().await;

    // One key, the same on every node, though each started with an empty directory.
    let first = signing_kid(&c, 0).await;
    for i in 1..3 {
        assert_eq!(signing_kid(&c, i).await, first);
    }

    // An hour before the next epoch its key is due: all three nodes propose it within the
    // same second, and the first proposal in the topic wins everywhere.
    let now = clock.now_secs();
    let next_start = (now / DAY + 1) * DAY;
    clock.advance_secs(next_start - 3600 - now + 1);
    eventually(Duration::from_secs(20), || async {
        let sets = [
            jwks_kids(&c, 0).await,
            jwks_kids(&c, 1).await,
            jwks_kids(&c, 2).await,
        ];
        sets[0].len() == 2 && sets.iter().all(|s| *s == sets[0])
    })
    .await;
    // Published ahead: the next key is in every JWKS while tokens still carry the first.
    for i in 0..3 {
        assert_eq!(signing_kid(&c, i).await, first);
    }

    // Just before the boundary a token signed by the first key; just after, every node signs
    // with the one next key, and the first key's token still verifies everywhere.
    clock.advance_secs(3600 - 11);
    let old = c.client_credentials(1).await;
    clock.advance_secs(20);
    eventually(Duration::from_secs(10), || async {
        let kids = [
            signing_kid(&c, 0).await,
            signing_kid(&c, 1).await,
            signing_kid(&c, 2).await,
        ];
        kids[0] != first && kids.iter().all(|k| *k == kids[0])
    })
    .await;
    let second = signing_kid(&c, 0).await;
    for i in 0..3 {
        assert_eq!(
            c.data(i, &old).await,
            200,
            "a retired key's token on node {i}"
        );
    }

    // A node started now, with an empty directory, reads both keys before it serves.
    let dir = tempfile::tempdir().unwrap();
    let mut config = c.config.clone();
    config.storage.data_dir = dir.path().to_path_buf();
    config.seed.demo = false;
    let started = std::time::Instant::now();
    let late = tokend::Node::start(&config, clock.clone()).await.unwrap();
    println!(
        "a node started after two rotations was ready in {:?} ({} keys adopted from the topic)",
        started.elapsed(),
        late.keys.manager.list().len()
    );
    let ring = late.keys.manager.keyring();
    assert_eq!(
        ring.read().active().map(|k| k.kid().to_owned()),
        Some(second)
    );
    assert!(ring.read().get(&first).is_some(), "the retired key too");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_another_kek_refuses_to_start_with_a_clear_message() {
    tokend_testkit::time_limit(LIMIT_SECS);
    let (k, r) = (kafka().await, redis().await);
    let c = Cluster::start(&k.bootstrap, &r.url, 1).await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = c.config.clone();
    config.storage.data_dir = dir.path().to_path_buf();
    config.seed.demo = false;
    config.keys.kek = Some("99".repeat(32));
    let refused = tokend::Node::start(&config, Arc::new(tokend_verify::SystemClock)).await;
    let error = format!("{:#}", refused.err().expect("another KEK must not start"));
    assert!(error.contains("does not open"), "{error}");
    assert!(error.contains("KEK"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_key_is_rejected_on_every_node_and_by_the_sdk() {
    use tokend_verify::{Rejection, RemoteKeys, RemoteOptions, SystemClock, Verifier};
    tokend_testkit::time_limit(LIMIT_SECS);
    let (k, r) = (kafka().await, redis().await);
    let c = Cluster::start(&k.bootstrap, &r.url, 3).await;
    let _projector = c.projecting().await;
    // A resource server's SDK: the JWKS from node 0 (cached), revocations from Redis.
    let sdk = Verifier::new(
        Arc::new(
            RemoteKeys::discover(&c.nodes[0], RemoteOptions::default())
                .await
                .unwrap(),
        ),
        Arc::new(tokend_redis::RedisRevocation(c.store().await)),
        tokend_jwt::VerifyPolicy {
            issuer: c.nodes[0].clone(),
            audiences: Vec::new(),
            leeway_secs: 0,
        },
        Arc::new(SystemClock),
    );
    let token = c.client_credentials(1).await;
    let kid = tokend_jwt::token_kid(&token).unwrap();
    sdk.verify(&token).await.expect("valid before");
    for i in 0..3 {
        assert_eq!(c.data(i, &token).await, 200);
    }

    let started = std::time::Instant::now();
    assert_eq!(c.admin(2, &format!("/admin/keys/{kid}/revoke")).await, 204);
    let answered = started.elapsed();
    // Within the bound of any revocation (the projector applying one event; the admin call
    // waits for that under `revocation.consistency = "applied"`), no verifier accepts what the
    // key signed: not the nodes, and not the SDK, though its cached key set still holds the
    // key, because the SDK checks revocations in Redis.
    eventually(Duration::from_secs(5), || async {
        let mut all = matches!(sdk.verify(&token).await, Err(Rejection::Revoked));
        for i in 0..3 {
            all &= c.data(i, &token).await == 401;
        }
        all
    })
    .await;
    println!(
        "key revocation answered in {answered:?}, rejected everywhere after {:?}",
        started.elapsed()
    );

    // The key leaves every JWKS, and another key signs everywhere (within a rotation check).
    eventually(Duration::from_secs(20), || async {
        let mut ok = true;
        for i in 0..3 {
            let kids = jwks_kids(&c, i).await;
            ok &= !kids.contains(&kid) && !kids.is_empty();
            ok &= c
                .form(i, "/oauth/token", &[("grant_type", "client_credentials")])
                .await
                .0
                == 200;
        }
        ok
    })
    .await;
    let fresh = c.client_credentials(0).await;
    assert_ne!(tokend_jwt::token_kid(&fresh).unwrap(), kid);
    for i in 0..3 {
        assert_eq!(c.data(i, &fresh).await, 200, "node {i}");
    }
    sdk.verify(&fresh)
        .await
        .expect("the SDK refetches the key set");
}

/// Serves `node` on a loopback port; its base URL.
async fn serve(node: &tokend::Node) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let router = node.router.clone();
    tokio::spawn(async move { axum::serve(listener, router).await });
    url
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kek_change_runs_through_the_key_topic_and_keeps_keys_and_client_secrets() {
    tokend_testkit::time_limit(LIMIT_SECS);
    let (k, r) = (kafka().await, redis().await);
    let c = Cluster::start(&k.bootstrap, &r.url, 1).await;
    let _projector = c.projecting().await;
    let token = c.client_credentials(0).await;
    let (old, new) = (c.config.keys.kek.clone().unwrap(), "22".repeat(32));
    let new_id = tokend_jwt::Kek::parse(&new).unwrap().id();
    let dirs = tempfile::tempdir().unwrap();
    let with = |name: &str, kek: &str, previous: Option<&str>| {
        let mut config = c.config.clone();
        config.storage.data_dir = dirs.path().join(name);
        config.seed.demo = false;
        config.keys.kek = Some(kek.to_owned());
        config.keys.previous_kek = previous.map(str::to_owned);
        config
    };
    let clock: Arc<dyn Clock> = Arc::new(tokend_verify::SystemClock);

    // Step 1: a node given the new KEK and the old one joins and serves.
    let changing = tokend::Node::start(&with("changing", &new, Some(&old)), clock.clone())
        .await
        .unwrap();
    let changing_url = serve(&changing).await;
    // Step 2: it re-seals the key log under the new KEK.
    let resealed: serde_json::Value = c
        .http
        .post(format!("{changing_url}/admin/kek/rotate"))
        .bearer_auth(crate::cluster::ADMIN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(resealed["kek"], new_id.as_str(), "{resealed}");

    // Step 3: a node with the new KEK alone reads the topic: the same signing key, the same
    // client-secret digests (the demo client authenticates), the same tokens.
    let fresh = tokend::Node::start(&with("fresh", &new, None), clock.clone())
        .await
        .unwrap();
    let fresh_url = serve(&fresh).await;
    let issued: serde_json::Value = c
        .http
        .post(format!("{fresh_url}/oauth/token"))
        .basic_auth(&c.client_id, Some(&c.client_secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let fresh_token = issued["access_token"]
        .as_str()
        .expect("the client secret still works");
    assert_eq!(
        tokend_jwt::token_kid(fresh_token),
        tokend_jwt::token_kid(&token)
    );
    let data = c
        .http
        .get(format!("{fresh_url}/api/data"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(data.status(), 200);
    assert_eq!(
        c.data(0, fresh_token).await,
        200,
        "the old node verifies it too"
    );

    // A node given only the old KEK is now refused, and told which KEK it needs.
    let refused = tokend::Node::start(&with("stale", &old, None), clock).await;
    let why = format!("{:#}", refused.err().expect("the old KEK must not start"));
    assert!(why.contains(&new_id), "{why}");
}
