//! Scale and faults: Redis losing its data (nodes fail closed, the projector heals by itself),
//! three projector processes with one killed under load, `rebuild` under live traffic, and
//! shutdown with Kafka gone.

use std::process::{Child, Command};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokend_testkit::{Kafka, Redis, docker, free_port, kafka, redis};

use crate::LIMIT_SECS;
use crate::cluster::{
    Cluster, eventually, live_and_clean_digests, projector_config, run_projector,
};
use crate::replay::stream;

/// Revokes `token` on node `i` and returns once no node can accept it (strict mode).
pub async fn revoke_strict(c: &Cluster, i: usize, token: &str) {
    let (status, body) = c
        .form(
            i,
            "/oauth/revoke",
            &[("token", token), ("consistency", "applied")],
        )
        .await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_losing_its_data_fails_closed_and_the_projector_heals_it_unprompted() {
    tokend_testkit::time_limit(LIMIT_SECS);
    let private = Redis::start().await;
    let c = Cluster::start(&kafka().await.bootstrap, &private.url, 2).await;
    let _projector = c.projecting().await;
    let revoked = c.client_credentials(0).await;
    let live = c.client_credentials(0).await;
    revoke_strict(&c, 0, &revoked).await;
    assert_eq!(c.data(1, &revoked).await, 401);

    let flushed = Command::new("docker")
        .args([
            "exec",
            private.id(),
            "redis-cli",
            "-p",
            &private.port.to_string(),
            "FLUSHALL",
        ])
        .status()
        .unwrap();
    assert!(flushed.success());
    let lost = Instant::now();

    // No new record is written from here on: the projector must notice by itself. Until
    // it has replayed, nodes answer 503 (never 200 for the revoked token, never
    // invalid_client for a good client).
    let (mut unavailable, mut healed_at) = (0, None);
    while healed_at.is_none() {
        assert!(
            lost.elapsed() < Duration::from_secs(60),
            "not healed in 60 s"
        );
        let status = c.data(1, &revoked).await;
        assert_ne!(
            status, 200,
            "a revoked token was accepted after Redis lost its data"
        );
        let (issue, body) = c
            .form(1, "/oauth/introspect", &[("token", live.as_str())])
            .await;
        assert!(
            issue == 200 || issue == 503,
            "introspection answered {issue}: {body}"
        );
        if status == 503 {
            unavailable += 1;
        } else if status == 401 && issue == 200 {
            healed_at = Some(lost.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert!(unavailable > 0, "the loss went unnoticed by readers");
    assert_eq!(c.data(0, &live).await, 200);
    assert_eq!(c.data(1, &revoked).await, 401);
    println!(
        "Redis data loss: readers answered 503 {unavailable} times, healed {:?} after the loss",
        healed_at.unwrap_or_default()
    );
}

/// A Redis restart (every connection dropped, the data back from its snapshot or gone):
/// nodes and an SDK verifier with revocation mirrors never accept a revoked token meanwhile,
/// answer again by themselves, and the SDK's mirror steps aside and comes back current.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restart_never_lets_a_revoked_token_through_and_the_mirrors_come_back() {
    tokend_testkit::time_limit(LIMIT_SECS);
    let private = Redis::start().await;
    let c = Cluster::start(&kafka().await.bootstrap, &private.url, 2).await;
    let _projector = c.projecting().await;
    let sdk = c.store().await.with_revocation_mirror(1000);
    let mirror = sdk.revocation_mirror().unwrap();
    eventually(Duration::from_secs(10), || async { mirror.is_current() }).await;
    let revoked = c.client_credentials(0).await;
    let live = c.client_credentials(0).await;
    revoke_strict(&c, 0, &revoked).await;
    // The revocation queries of the two tokens (their claims, read without verifying).
    let query = |token: &str| {
        use base64::Engine;
        let payload = token.split('.').nth(1).unwrap();
        let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap();
        let claims: tokend_jwt::AccessClaims = serde_json::from_slice(&json).unwrap();
        tokend_verify::revocation_query(&claims)
    };
    assert!(
        tokend_domain::StateStore::is_revoked(&sdk, &query(&revoked))
            .await
            .unwrap()
    );
    let steps = mirror.step_asides();

    docker("restart", private.id());
    let restarted = Instant::now();
    let mut healed_at = None;
    while healed_at.is_none() {
        assert!(
            restarted.elapsed() < Duration::from_secs(40),
            "not back in 40 s"
        );
        for node in 0..2 {
            let status = c.data(node, &revoked).await;
            assert!(
                status == 401 || status == 503,
                "node {node} answered {status}"
            );
        }
        // An error is failing closed; an answer must be "revoked".
        if let Ok(answer) = tokend_domain::StateStore::is_revoked(&sdk, &query(&revoked)).await {
            assert!(answer, "the SDK accepted a revoked token");
        }
        if c.data(1, &live).await == 200 && c.data(0, &live).await == 200 && mirror.is_current() {
            healed_at = Some(restarted.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        mirror.step_asides() > steps,
        "the SDK's mirror stepped aside"
    );
    assert!(
        tokend_domain::StateStore::is_revoked(&sdk, &query(&revoked))
            .await
            .unwrap()
    );
    assert!(
        !tokend_domain::StateStore::is_revoked(&sdk, &query(&live))
            .await
            .unwrap()
    );
    println!(
        "Redis restart: answering again {:?} after it",
        healed_at.unwrap_or_default()
    );
}

/// A projector as a process of its own (so it can be killed with SIGKILL).
fn projector_process(c: &Cluster) -> Child {
    let config = projector_config(c);
    Command::new(env!("CARGO_BIN_EXE_projector"))
        .env(
            "PROJECTOR_KAFKA__BOOTSTRAP_SERVERS",
            &config.kafka.bootstrap_servers,
        )
        .env("PROJECTOR_KAFKA__TOPIC", &config.kafka.topic)
        .env(
            "PROJECTOR_KAFKA__DEAD_LETTER_TOPIC",
            &config.kafka.dead_letter_topic,
        )
        .env(
            "PROJECTOR_KAFKA__PARTITIONS",
            config.kafka.partitions.to_string(),
        )
        .env("PROJECTOR_KAFKA__REPLICATION_FACTOR", "1")
        .env("PROJECTOR_KAFKA__MIN_INSYNC_REPLICAS", "1")
        .env("PROJECTOR_REDIS__URL", &config.redis.url)
        .env("PROJECTOR_REDIS__KEY_PREFIX", &config.redis.key_prefix)
        .env("PROJECTOR_GROUP_ID", &config.group_id)
        .env(
            "PROJECTOR_METRICS_ADDR",
            format!("127.0.0.1:{}", free_port()),
        )
        .env("RUST_LOG", "warn")
        .spawn()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_projectors_one_killed_under_load_converge_to_a_clean_replay() {
    tokend_testkit::time_limit(LIMIT_SECS);
    let (k, r) = (kafka().await, redis().await);
    let c = Arc::new(Cluster::start(&k.bootstrap, &r.url, 1).await);
    let mut projectors: Vec<Child> = (0..3).map(|_| projector_process(&c)).collect();
    c.ready().await;
    let load = tokio::spawn({
        let c = c.clone();
        async move { stream(&c, 4, 30).await }
    });
    tokio::time::sleep(Duration::from_millis(800)).await;
    projectors[0].kill().unwrap(); // SIGKILL, wherever it is
    projectors[0].wait().unwrap();
    let received = load.await.unwrap();
    assert!(received.len() >= 4 * 30 * 2);

    let (live, clean, _) = live_and_clean_digests(&c).await;
    assert_eq!(clean, live, "survivors == clean replay");
    for p in &mut projectors[1..] {
        p.kill().unwrap();
        p.wait().unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebuild_under_live_revocations_rolls_nothing_back() {
    tokend_testkit::time_limit(LIMIT_SECS);
    let (k, r) = (kafka().await, redis().await);
    let c = Arc::new(Cluster::start(&k.bootstrap, &r.url, 2).await);
    let _projector = c.projecting().await;
    stream(&c, 2, 20).await; // some history to replay

    let revoker = tokio::spawn({
        let c = c.clone();
        async move {
            let mut revoked = Vec::new();
            for _ in 0..60 {
                let t = c.client_credentials(0).await;
                revoke_strict(&c, 0, &t).await;
                revoked.push(t);
            }
            revoked
        }
    });
    // Steady traffic besides, so the live projector keeps moving while the rebuild
    // catches up (the last catch-up runs behind a brief fence).
    let traffic = tokio::spawn({
        let c = c.clone();
        async move { stream(&c, 2, 15).await }
    });
    let store = c.store().await;
    let report = tokend_projector::rebuild(&projector_config(&c), &store, false)
        .await
        .unwrap();
    traffic.await.unwrap();
    // Every revocation that answered (strict: applied to the live generation) is in force
    // in the generation readers were switched to.
    let revoked = revoker.await.unwrap();
    for t in &revoked {
        assert_eq!(
            c.data(1, t).await,
            401,
            "a revocation was rolled back by the rebuild"
        );
    }
    println!("rebuild under load: {report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_projector_stops_within_bounds_when_kafka_is_gone() {
    tokend_testkit::time_limit(LIMIT_SECS);
    let private = Kafka::start().await;
    let c = Cluster::start(&private.bootstrap, &redis().await.url, 1).await;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let projector = tokio::spawn(run_projector(projector_config(&c), async move {
        let _ = stopped.await;
    }));
    c.ready().await;
    docker("stop", private.id());
    let asked = Instant::now();
    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(20), projector)
        .await
        .expect("the projector stops within 20 s with Kafka gone")
        .unwrap();
    println!(
        "projector stopped {:?} after shutdown with Kafka gone",
        asked.elapsed()
    );
}
